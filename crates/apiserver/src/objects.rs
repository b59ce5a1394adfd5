//! Objects in the store: the JSON encoding of stored values, `resourceVersion` as the key's
//! `mod_revision`, and list continue tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use corten_store::{KeyValue, RangeRequest, Revision, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{ApiError, Result};
use crate::meta::metadata_mut;
use crate::registry::ResourceInfo;

/// Decodes a stored object as an object of `info` and stamps its `resourceVersion` (the key's
/// last write revision).
pub fn decode(info: &ResourceInfo, kv: &KeyValue) -> Result<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::Internal(format!(
            "stored object {} is not valid JSON: {e}",
            String::from_utf8_lossy(&kv.key)
        ))
    })?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(info.from_storage(obj))
}

/// Encodes an object of `info` for the store; `resourceVersion` is not stored (the revision is).
pub fn encode(info: &ResourceInfo, obj: &Value) -> Result<Vec<u8>> {
    let mut obj = info.to_storage(obj.clone());
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    serde_json::to_vec(&obj).map_err(|e| ApiError::Internal(format!("encoding an object: {e}")))
}

pub fn set_resource_version(obj: &mut Value, revision: Revision) {
    metadata_mut(obj).insert("resourceVersion".into(), json!(revision.to_string()));
}

/// The object at `key` with its `mod_revision`, read linearizably (or locally for
/// `serializable`).
pub async fn get<S: Store>(
    store: &S,
    info: &ResourceInfo,
    key: &str,
    serializable: bool,
) -> Result<Option<(Value, Revision)>> {
    let mut req = RangeRequest::key(key.as_bytes().to_vec());
    if serializable {
        req = req.serializable();
    }
    let resp = store.range(req).await?;
    match resp.kvs.first() {
        Some(kv) => Ok(Some((decode(info, kv)?, kv.mod_revision))),
        None => Ok(None),
    }
}

/// Parses a `resourceVersion` query or body value.
pub fn parse_resource_version(rv: &str) -> Result<Revision> {
    rv.parse::<Revision>().map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))
}

/// A list continue token: the revision the first page was read at and the key to resume at.
/// Same shape as kube-apiserver's (`{"v":"meta.k8s.io/v1","rv":N,"start":"..."}`, base64url).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continue {
    pub v: String,
    pub rv: Revision,
    pub start: String,
}

impl Continue {
    pub fn new(rv: Revision, start: String) -> Self {
        Continue { v: "meta.k8s.io/v1".into(), rv, start }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(token: &str) -> Result<Self> {
        let bad = || ApiError::BadRequest(format!("continue key is not valid: {token:?}"));
        let raw = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).map_err(|_| bad())?;
        let c: Continue = serde_json::from_slice(&raw).map_err(|_| bad())?;
        if c.v != "meta.k8s.io/v1" || c.rv == 0 || c.start.contains("..") {
            return Err(bad());
        }
        Ok(c)
    }
}

/// The 410 of a continue token whose revision was compacted.
pub fn expired_continue() -> ApiError {
    ApiError::Expired(
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let c = Continue::new(42, "default/web\0".into());
        assert_eq!(Continue::decode(&c.encode()).ok(), Some(c));
        assert!(Continue::decode("not-a-token").is_err());
        assert!(Continue::decode(&Continue::new(0, "a".into()).encode()).is_err());
    }

    #[test]
    fn resource_version_is_not_stored_but_stamped_on_read() {
        let reg = crate::registry::Registry::builtin();
        let info = reg.get("", "v1", "configmaps").unwrap_or_else(|| panic!("configmaps registered"));
        let obj = json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        let bytes = encode(info, &obj).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let kv = KeyValue {
            key: b"/k".to_vec(),
            value: bytes,
            create_revision: 3,
            mod_revision: 9,
            version: 2,
            lease: 0,
        };
        assert_eq!(
            decode(info, &kv).ok().map(|o| o["metadata"]["resourceVersion"].clone()),
            Some(json!("9"))
        );
    }
}
