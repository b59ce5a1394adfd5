//! Errors of the API server, rendered as `metav1.Status` the way kube-apiserver words them, so
//! clients print their usual messages (`Error from server (NotFound): pods "x" not found`).
//!
//! Store errors are mapped to HTTP here and nowhere else (ARCHITECTURE rule 5).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::registry::ResourceInfo;

/// A field-level validation failure (one `details.causes` entry of a 422).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, `FieldValueForbidden`,
    /// `FieldValueDuplicate`, `FieldValueTooLong`.
    pub reason: &'static str,
    /// The field path, `spec.containers[0].name`.
    pub field: String,
    /// The message after the field path: `Required value`, `Invalid value: "x": ...`.
    pub message: String,
}

impl Cause {
    /// A missing field.
    pub fn required(field: impl Into<String>) -> Self {
        Cause { reason: "FieldValueRequired", field: field.into(), message: "Required value".into() }
    }

    /// A field whose value is wrong; `value` is shown JSON-encoded like kube-apiserver does.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl AsRef<str>) -> Self {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {value}: {}", detail.as_ref()),
        }
    }

    /// A field that may not be set or changed.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {}", detail.into()),
        }
    }

    /// A value outside a fixed set.
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Self {
        let list = supported.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!("Unsupported value: {value}: supported values: {list}"),
        }
    }

    /// A value that appears twice where it must be unique.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Cause {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {value}"),
        }
    }
}

/// Why a request failed; [`IntoResponse`] renders it as a `Status`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{qualified} \"{name}\" not found")]
    NotFound { qualified: String, group: String, plural: String, name: String },
    #[error("{qualified} \"{name}\" already exists")]
    AlreadyExists { qualified: String, group: String, plural: String, name: String },
    #[error("Operation cannot be fulfilled on {qualified} \"{name}\": {message}")]
    Conflict { qualified: String, group: String, plural: String, name: String, message: String },
    /// A server-side apply that would change fields other managers own; each cause is a
    /// `FieldManagerConflict` naming the owner and the field.
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Cause> },
    #[error("{}", invalid_message(group, kind, name, causes))]
    Invalid { group: String, kind: String, name: String, causes: Vec<Cause> },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A 403 about a resource (`pods "web" is forbidden: ...`), with its details.
    #[error("{message}")]
    ForbiddenResource { group: String, resource: String, name: String, message: String },
    #[error("the server could not find the requested resource")]
    UnknownPath,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Expired(String),
    #[error("Request entity too large: limit is {0}")]
    TooLarge(usize),
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion { requested: u64, current: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// 429: the request may succeed later (an eviction a disruption budget refuses now); each
    /// cause is `(reason, message)`, and a non-zero `retry_after` becomes `Retry-After`.
    #[error("{message}")]
    TooManyRequests { message: String, causes: Vec<(&'static str, String)>, retry_after: u32 },
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// A failure that is not an API status (reason `Unknown`, code 500), such as a kubelet that
    /// cannot be reached: kube-apiserver renders those with the bare error text.
    #[error("{0}")]
    Unknown(String),
}

/// kube-apiserver's `NewInvalid` message; the kind is group-qualified (`Deployment.apps`).
fn invalid_message(group: &str, kind: &str, name: &str, causes: &[Cause]) -> String {
    let kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
    let list: Vec<String> = causes
        .iter()
        .map(|c| if c.field.is_empty() { c.message.clone() } else { format!("{}: {}", c.field, c.message) })
        .collect();
    match list.len() {
        0 => format!("{kind} \"{name}\" is invalid"),
        1 => format!("{kind} \"{name}\" is invalid: {}", list[0]),
        _ => format!("{kind} \"{name}\" is invalid: [{}]", list.join(", ")),
    }
}

/// `Result` with [`ApiError`].
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        ApiError::NotFound {
            qualified: info.qualified(),
            group: info.group.into(),
            plural: info.plural.into(),
            name: name.into(),
        }
    }

    pub fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        ApiError::AlreadyExists {
            qualified: info.qualified(),
            group: info.group.into(),
            plural: info.plural.into(),
            name: name.into(),
        }
    }

    pub fn conflict(info: &ResourceInfo, name: &str, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            qualified: info.qualified(),
            group: info.group.into(),
            plural: info.plural.into(),
            name: name.into(),
            message: message.into(),
        }
    }

    /// The optimistic-concurrency conflict of a stale resourceVersion.
    pub fn modified(info: &ResourceInfo, name: &str) -> Self {
        Self::conflict(
            info,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// Upstream `NewForbidden`: `deployments.apps "web" is forbidden: <err>`, `forbidden: <err>`
    /// without a resource.
    pub fn forbidden(group: &str, resource: &str, name: &str, err: impl std::fmt::Display) -> Self {
        let qualified = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
        let message = match (resource.is_empty(), name.is_empty()) {
            (true, _) => format!("forbidden: {err}"),
            (false, true) => format!("{qualified} is forbidden: {err}"),
            (false, false) => format!("{qualified} {name:?} is forbidden: {err}"),
        };
        ApiError::ForbiddenResource {
            group: group.into(),
            resource: resource.into(),
            name: name.into(),
            message,
        }
    }

    pub fn invalid(info: &ResourceInfo, name: &str, causes: Vec<Cause>) -> Self {
        ApiError::Invalid { group: info.group.into(), kind: info.kind.into(), name: name.into(), causes }
    }

    /// The HTTP code and `reason` of the Status.
    pub fn code_reason(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownPath => (StatusCode::NOT_FOUND, "NotFound"),
            ApiError::AlreadyExists { .. } => (StatusCode::CONFLICT, "AlreadyExists"),
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => (StatusCode::CONFLICT, "Conflict"),
            ApiError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            ApiError::Forbidden(_) | ApiError::ForbiddenResource { .. } => {
                (StatusCode::FORBIDDEN, "Forbidden")
            }
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            ApiError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "NotAcceptable"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType"),
            ApiError::Gone(_) => (StatusCode::GONE, "Gone"),
            ApiError::Expired(_) => (StatusCode::GONE, "Expired"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
            ApiError::TooLargeResourceVersion { .. } => (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            ApiError::Unknown(_) => (StatusCode::INTERNAL_SERVER_ERROR, ""),
        }
    }

    /// The `metav1.Status` object of this error.
    pub fn status(&self) -> Value {
        let (code, reason) = self.code_reason();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code.as_u16(),
        });
        let details = match self {
            ApiError::NotFound { group, plural, name, .. }
            | ApiError::AlreadyExists { group, plural, name, .. }
            | ApiError::Conflict { group, plural, name, .. } => {
                Some(details(name, group, plural, Vec::new()))
            }
            ApiError::Invalid { group, kind, name, causes } => {
                let causes = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                Some(details(name, group, kind, causes))
            }
            ApiError::ForbiddenResource { group, resource, name, .. } => {
                // Empty fields are left out, as `omitempty` does.
                let fields = [("name", name), ("group", group), ("kind", resource)];
                let d: serde_json::Map<String, Value> = fields
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect();
                Some(Value::Object(d))
            }
            ApiError::ApplyConflict { causes, .. } => Some(json!({
                "causes": causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect::<Vec<_>>(),
            })),
            ApiError::TooLargeResourceVersion { .. } => Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            })),
            ApiError::Unavailable(_) => Some(json!({"retryAfterSeconds": 1})),
            ApiError::TooManyRequests { causes, retry_after, .. } => {
                let mut d = json!({});
                if !causes.is_empty() {
                    let causes: Vec<Value> = causes
                        .iter()
                        .map(|(reason, message)| json!({"reason": reason, "message": message}))
                        .collect();
                    d["causes"] = Value::Array(causes);
                }
                if *retry_after > 0 {
                    d["retryAfterSeconds"] = json!(retry_after);
                }
                Some(d)
            }
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        if reason.is_empty() {
            // `StatusReasonUnknown` is the empty string, left out like any empty field.
            if let Some(obj) = status.as_object_mut() {
                obj.remove("reason");
            }
        }
        status
    }
}

fn details(name: &str, group: &str, kind: &str, causes: Vec<Value>) -> Value {
    let mut d = json!({ "name": name, "kind": kind });
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    if !causes.is_empty() {
        d["causes"] = Value::Array(causes);
    }
    d
}

impl From<corten_store::Error> for ApiError {
    fn from(e: corten_store::Error) -> Self {
        use corten_store::Error as E;
        match e {
            E::Compacted { .. } => {
                ApiError::Expired(format!("The resourceVersion for the provided list is too old: {e}"))
            }
            E::FutureRevision { requested, current } => {
                ApiError::TooLargeResourceVersion { requested, current }
            }
            E::ValueTooLarge { .. } => ApiError::TooLarge(corten_store::MAX_VALUE_BYTES),
            E::InvalidKey { .. } | E::InvalidTxn(_) => ApiError::BadRequest(e.to_string()),
            E::LeaseNotFound(_) => ApiError::Internal(e.to_string()),
            E::Unavailable(_) | E::Stopped => ApiError::Unavailable(format!("storage is not available: {e}")),
            E::Fatal(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, _) = self.code_reason();
        if code.is_server_error() {
            tracing::warn!(error = %self, code = code.as_u16(), "request failed");
        }
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if matches!(self, ApiError::Unavailable(_) | ApiError::TooLargeResourceVersion { .. }) {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::TooManyRequests { retry_after, .. } = &self {
            if *retry_after > 0 {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_every_cause_like_kube_apiserver() {
        let e = ApiError::Invalid {
            group: String::new(),
            kind: "Pod".into(),
            name: "x".into(),
            causes: vec![Cause::required("spec.containers"), Cause::required("spec.volumes[0].name")],
        };
        assert_eq!(
            e.to_string(),
            "Pod \"x\" is invalid: [spec.containers: Required value, spec.volumes[0].name: Required value]"
        );
        let s = e.status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["details"]["causes"][1]["field"], "spec.volumes[0].name");
    }

    #[test]
    fn compacted_store_reads_become_410_expired() {
        let e: ApiError = corten_store::Error::Compacted { requested: 3, compacted: 9 }.into();
        assert_eq!(e.code_reason(), (StatusCode::GONE, "Expired"));
    }
}
