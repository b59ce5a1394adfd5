//! What the API server's integration tests share. Each test binary uses a part of it.
#![allow(dead_code)]

use anyhow::{bail, Result};
use kube::core::Status;
use serde_json::Value;

/// A typed object from JSON.
pub fn from<T: serde::de::DeserializeOwned>(v: Value) -> Result<T> {
    Ok(serde_json::from_value(v)?)
}

/// The `Status` of a request that had to fail.
pub fn rejected<T: std::fmt::Debug>(result: kube::Result<T>) -> Result<Status> {
    match result {
        Err(kube::Error::Api(s)) => Ok(*s),
        other => bail!("expected an API error, got {other:?}"),
    }
}
