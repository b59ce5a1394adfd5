//! Content negotiation: request bodies in JSON, YAML or Kubernetes protobuf, responses in JSON or
//! YAML, and the
//! `as=Table` / `as=PartialObjectMetadata` transformations clients ask for in `Accept`.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::{ApiError, Result};

/// Largest request body accepted (kube-apiserver's limit is 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The wire format of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// What shape the client wants objects in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The objects themselves.
    Object,
    /// A `meta.k8s.io/v1` Table (server-side printing).
    Table,
    /// `PartialObjectMetadata` (or `...List`): metadata only.
    PartialMetadata,
}

/// The negotiated response format and shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub format: Format,
    pub shape: Shape,
    /// The `meta.k8s.io` version the Table or PartialObjectMetadata is requested in.
    pub meta_version: &'static str,
}

impl Negotiated {
    pub const JSON: Negotiated =
        Negotiated { format: Format::Json, shape: Shape::Object, meta_version: "v1" };

    /// Picks the first acceptable media type of `Accept`, in order (kubectl lists Table first,
    /// then plain JSON as a fallback). Protobuf is never chosen; when only protobuf is acceptable
    /// the request fails with 406.
    pub fn from_headers(headers: &HeaderMap) -> Result<Negotiated> {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        if accept.trim().is_empty() {
            return Ok(Self::JSON);
        }
        for entry in accept.split(',') {
            let mut parts = entry.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let format = match media.as_str() {
                "application/json" | "application/*" | "*/*" | "" => Format::Json,
                "application/yaml" => Format::Yaml,
                _ => continue,
            };
            let (mut as_, mut g, mut v) = (None, None, None);
            for p in parts {
                match p.split_once('=') {
                    Some(("as", x)) => as_ = Some(x),
                    Some(("g", x)) => g = Some(x),
                    Some(("v", x)) => v = Some(x),
                    _ => {}
                }
            }
            let shape = match (as_, g) {
                (None, _) => Shape::Object,
                (Some("Table"), Some("meta.k8s.io")) => Shape::Table,
                (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io")) => {
                    Shape::PartialMetadata
                }
                // Aggregated discovery and unknown transformations are handled elsewhere or skipped.
                _ => continue,
            };
            let meta_version = match v {
                Some("v1beta1") => "v1beta1",
                _ => "v1",
            };
            return Ok(Negotiated { format, shape, meta_version });
        }
        Err(ApiError::NotAcceptable(format!(
            "only the following media types are accepted: application/json, application/yaml (requested: {accept})"
        )))
    }
}

/// Decodes a JSON, YAML or protobuf request body into a JSON value (YAML is converted the way
/// kube-apiserver does: into JSON first; protobuf into the JSON of the same object).
pub fn decode_body(content_type: &str, body: &[u8]) -> Result<Value> {
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("the request body is empty: send a JSON or YAML object".into()));
    }
    let yaml = matches!(media.as_str(), "application/yaml" | "application/apply-patch+yaml");
    let value: Value = if yaml {
        serde_yaml::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: {e}")))?
    } else {
        match media.as_str() {
            "" | "application/json"
            | "application/merge-patch+json"
            | "application/json-patch+json"
            | "application/strategic-merge-patch+json"
            | "*/*" => {}
            corten_schema::PROTOBUF_CONTENT_TYPE => return decode_protobuf(body),
            other => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format ({other}) - accepted media types include: application/json, application/yaml"
                )))
            }
        }
        serde_json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!("the body of the request could not be decoded as JSON: {e}"))
        })?
    };
    Ok(value)
}

/// Decodes a Kubernetes protobuf body (what client-go's typed clients send) into its JSON object.
fn decode_protobuf(body: &[u8]) -> Result<Value> {
    corten_schema::decode_protobuf(body).map_err(|e| match e.http_status() {
        400 => ApiError::BadRequest(format!("the body of the request could not be decoded as protobuf: {e}")),
        _ => ApiError::Internal(e.to_string()),
    })
}

/// Encodes `value` in the negotiated format with status `code`.
pub fn respond(code: StatusCode, value: &Value, format: Format) -> Response {
    let (bytes, ctype) = match format {
        Format::Json => (serde_json::to_vec(value).map_err(|e| e.to_string()), "application/json"),
        Format::Yaml => (
            serde_yaml::to_string(value).map(String::into_bytes).map_err(|e| e.to_string()),
            "application/yaml",
        ),
    };
    match bytes {
        Ok(b) => {
            let mut resp = (code, b).into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
            resp
        }
        Err(e) => ApiError::Internal(format!("encoding the response: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Result<Negotiated> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")));
        Negotiated::from_headers(&h)
    }

    #[test]
    fn kubectl_get_negotiates_a_table() {
        let n = accept("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json");
        assert_eq!(n.map(|n| n.shape).ok(), Some(Shape::Table));
    }

    #[test]
    fn protobuf_first_falls_back_to_json_and_protobuf_only_is_406() {
        let n = accept("application/vnd.kubernetes.protobuf, application/json");
        assert_eq!(n.ok(), Some(Negotiated::JSON));
        assert!(accept("application/vnd.kubernetes.protobuf").is_err());
    }

    #[test]
    fn yaml_bodies_become_json_and_garbage_is_a_bad_request() {
        let v = decode_body("application/yaml", b"kind: Pod\nmetadata:\n  name: a\n").ok();
        assert_eq!(v.as_ref().and_then(|v| v["metadata"]["name"].as_str()), Some("a"));
        let err = decode_body("application/json", b"{nope").map_err(|e| e.code_reason().0);
        assert_eq!(err.err(), Some(StatusCode::BAD_REQUEST));
        let err = decode_body("application/x-unknown", b"x").map_err(|e| e.code_reason().0);
        assert_eq!(err.err(), Some(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }

    #[test]
    fn protobuf_bodies_become_json_and_garbage_is_a_bad_request() {
        // `kubectl create configmap a --from-literal=k=v` as kubectl 1.33.1 sent it
        let body = b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x1b\x0a\x11\x0a\x01a\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12\x06\x0a\x01k\x12\x01v\x1a\x00\x22\x00";
        let v = decode_body("application/vnd.kubernetes.protobuf", body).ok();
        let want = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        assert_eq!(v, Some(want));
        let err = decode_body("application/vnd.kubernetes.protobuf", b"x").map_err(|e| e.code_reason().0);
        assert_eq!(err.err(), Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn every_served_kind_decodes_from_protobuf() {
        let registry = crate::registry::Registry::builtin();
        let kinds = registry.resources().map(|r| (r.api_version(), r.kind)).chain([
            ("autoscaling/v1".to_string(), "Scale"),
            ("policy/v1".to_string(), "Eviction"),
            ("authentication.k8s.io/v1".to_string(), "TokenRequest"),
            ("v1".to_string(), "DeleteOptions"),
        ]);
        let missing: Vec<String> = kinds
            .filter(|(api_version, kind)| !corten_schema::protobuf_decodes(api_version, kind))
            .map(|(api_version, kind)| format!("{api_version} {kind}"))
            .collect();
        assert!(missing.is_empty(), "served kinds without protobuf: {missing:?}");
    }
}
