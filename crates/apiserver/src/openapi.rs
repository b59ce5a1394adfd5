//! `/openapi/v2` and `/openapi/v3`: the documents `kubectl explain`, client-side `kubectl apply`
//! and clients read, generated from the schema for the served resources on first request and
//! kept as bytes (v3 per group-version, addressed by a content hash kubectl caches by).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use corten_schema::{Schema, ServedResource};
use corten_store::Store;
use parking_lot::Mutex;

use crate::error::{ApiError, Result};
use crate::registry::Registry;
use crate::{authenticate, Shared};

/// The OpenAPI documents of the served resources, generated lazily.
pub struct Documents {
    served: Vec<ServedResource>,
    v2: OnceLock<Bytes>,
    index: OnceLock<Bytes>,
    v3: Mutex<HashMap<String, Bytes>>,
}

impl Documents {
    pub fn new(registry: &Registry) -> Self {
        let served = registry
            .resources()
            .map(|r| {
                ServedResource::new(r.group, r.version, r.kind, r.plural, r.namespaced)
                    .with_verbs(r.verbs)
                    .with_subresources(r.subresources)
            })
            .collect();
        Documents { served, v2: OnceLock::new(), index: OnceLock::new(), v3: Mutex::new(HashMap::new()) }
    }

    fn schema() -> Result<&'static Schema> {
        Schema::try_builtin().map_err(|e| ApiError::Internal(format!("loading the built-in schema: {e}")))
    }

    fn v2(&self) -> Result<Bytes> {
        if let Some(b) = self.v2.get() {
            return Ok(b.clone());
        }
        let bytes = corten_schema::openapi_v2_bytes(Self::schema()?, &self.served);
        Ok(self.v2.get_or_init(|| Bytes::from(bytes)).clone())
    }

    fn index(&self) -> Result<Bytes> {
        if let Some(b) = self.index.get() {
            return Ok(b.clone());
        }
        let index = corten_schema::openapi_v3_index(Self::schema()?, &self.served);
        let bytes = serde_json::to_vec(&index).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(self.index.get_or_init(|| Bytes::from(bytes)).clone())
    }

    /// The v3 document of `group/version` ("" group for core).
    fn v3(&self, group: &str, version: &str) -> Result<Option<Bytes>> {
        let key = format!("{group}/{version}");
        if let Some(b) = self.v3.lock().get(&key) {
            return Ok(Some(b.clone()));
        }
        let doc = corten_schema::openapi_v3_bytes(Self::schema()?, group, version, &self.served);
        Ok(doc.map(|bytes| {
            let bytes = Bytes::from(bytes);
            self.v3.lock().insert(key, bytes.clone());
            bytes
        }))
    }
}

fn json_bytes(bytes: Bytes) -> Response {
    let mut resp = (StatusCode::OK, bytes).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub(crate) async fn v2<S: Store>(State(shared): State<Arc<Shared<S>>>, req: Request) -> Response {
    if let Err(e) = authenticate(&shared, &req).await {
        return e.into_response();
    }
    let run = || -> Result<Response> { Ok(json_bytes(shared.openapi.v2()?)) };
    run().unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn v3_index<S: Store>(State(shared): State<Arc<Shared<S>>>, req: Request) -> Response {
    if let Err(e) = authenticate(&shared, &req).await {
        return e.into_response();
    }
    let run = || -> Result<Response> { Ok(json_bytes(shared.openapi.index()?)) };
    run().unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn v3<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    Path(path): Path<String>,
    req: Request,
) -> Response {
    if let Err(e) = authenticate(&shared, &req).await {
        return e.into_response();
    }
    let run = || -> Result<Response> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version) = match parts.as_slice() {
            ["api", v] => ("", *v),
            ["apis", g, v] => (*g, *v),
            _ => return Err(ApiError::UnknownPath),
        };
        let doc = shared.openapi.v3(group, version)?.ok_or(ApiError::UnknownPath)?;
        let mut resp = json_bytes(doc);
        // Addressed by content hash: immutable for clients.
        if req.uri().query().is_some_and(|q| q.contains("hash=")) {
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
        }
        Ok(resp)
    };
    run().unwrap_or_else(IntoResponse::into_response)
}
