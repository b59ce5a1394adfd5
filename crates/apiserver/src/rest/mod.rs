//! The generic REST machinery: every resource request, whatever its type, goes through
//! [`serve`], which resolves the resource in the registry and runs one verb on plain JSON
//! objects. Type-specific behaviour (defaults, validation, allocation, printing) is looked up
//! by kind in the modules beside this one.

pub(crate) mod connect;
mod eviction;
mod read;
mod subresources;
mod watch;
mod write;

pub(crate) use write::create_object;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use corten_store::Store;
use serde_json::Value;

use crate::codec::{self, Negotiated, Shape};
use crate::error::{ApiError, Result};
use crate::registry::ResourceInfo;
use crate::request::{Query, Target, Verb};
use crate::{table, Identity, Shared};

/// One decoded resource request.
#[derive(Debug)]
pub struct ApiRequest {
    pub method: Method,
    pub target: Target,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Who sent it (set by authentication).
    pub identity: Option<Identity>,
}

impl ApiRequest {
    fn content_type(&self) -> &str {
        self.headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn namespace(&self) -> Option<&str> {
        self.target.namespace.as_deref()
    }

    fn name(&self) -> &str {
        self.target.name.as_deref().unwrap_or("")
    }
}

/// Serves a resource request.
pub async fn serve<S: Store>(shared: &Shared<S>, req: ApiRequest) -> Result<Response> {
    let t = &req.target;
    let info =
        shared.registry.get(&t.group, &t.version, &t.resource).cloned().ok_or(ApiError::UnknownPath)?;
    if info.namespaced && t.namespace.is_none() && t.name.is_some() {
        return Err(ApiError::UnknownPath);
    }
    if !info.namespaced && t.namespace.is_some() && info.kind != "Namespace" {
        return Err(ApiError::UnknownPath);
    }
    let verb = Verb::of(&req.method, t, &req.query)?;
    let negotiated = Negotiated::from_headers(&req.headers)?;
    match t.subresource.as_deref() {
        None => {}
        Some(sub) if info.has_subresource(sub) => {
            return write::subresource(shared, &info, verb, &req, negotiated, sub).await;
        }
        Some(_) => return Err(ApiError::UnknownPath),
    }
    if !info.verbs.contains(&verb.as_str()) {
        return Err(ApiError::MethodNotAllowed);
    }
    if !info.is_stored() {
        return write::review(shared, &info, &req, negotiated).await;
    }
    match verb {
        Verb::Get => read::get(shared, &info, &req, negotiated).await,
        Verb::List => read::list(shared, &info, &req, negotiated).await,
        Verb::Watch => watch::watch(shared, &info, &req, negotiated).await,
        Verb::Create => write::create(shared, &info, &req, negotiated).await,
        Verb::Update => write::update(shared, &info, &req, negotiated).await,
        Verb::Patch => write::patch(shared, &info, &req, negotiated).await,
        Verb::Delete => write::delete(shared, &info, &req, negotiated).await,
        Verb::DeleteCollection => write::delete_collection(shared, &info, &req, negotiated).await,
    }
}

/// Renders one object in the negotiated shape.
fn object_response(code: StatusCode, info: &ResourceInfo, obj: Value, n: Negotiated, q: &Query) -> Response {
    let body = match n.shape {
        Shape::Object => obj,
        Shape::Table => table::table(info, &[obj], &q_include(q), n.meta_version, None),
        Shape::PartialMetadata => partial_metadata(info, &obj, n.meta_version),
    };
    codec::respond(code, &body, n.format)
}

fn q_include(q: &Query) -> table::Include {
    q.include_object
}

/// `PartialObjectMetadata` of an object.
pub fn partial_metadata(_info: &ResourceInfo, obj: &Value, meta_version: &str) -> Value {
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{meta_version}"),
        "metadata": obj.get("metadata").cloned().unwrap_or(Value::Null),
    })
}

/// Status responses for deletes of resources that return Status instead of the object.
fn success_status(info: &ResourceInfo, name: &str, uid: Option<&str>) -> Value {
    let mut details = serde_json::json!({"name": name, "kind": info.plural});
    if !info.group.is_empty() {
        details["group"] = info.group.into();
    }
    if let Some(uid) = uid {
        details["uid"] = uid.into();
    }
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
