//! Subresources (`status`, `scale`, `binding`, `finalize`, `approval`) and the create-only
//! review resources (`SelfSubjectReview`, `SelfSubjectAccessReview`, ...).

use axum::http::StatusCode;
use axum::response::Response;
use corten_store::Store;
use serde_json::{json, Value};

use super::write::{check_kind, decode_object, update_object, Half};
use super::{object_response, ApiRequest};
use crate::codec::{self, Negotiated};
use crate::error::{ApiError, Result};
use crate::meta;
use crate::objects;
use crate::registry::ResourceInfo;
use crate::request::Verb;
use crate::{Identity, Shared};

pub(crate) async fn subresource<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    verb: Verb,
    req: &ApiRequest,
    n: Negotiated,
    sub: &str,
) -> Result<Response> {
    let ns = req.namespace().unwrap_or("").to_string();
    let name = req.name().to_string();
    let q = &req.query;
    match (sub, verb) {
        ("status", Verb::Get) => super::read::get(shared, info, req, n).await,
        ("status", Verb::Update | Verb::Patch) => {
            let mutate = body_or_patch(info, req)?;
            let updated = update_object(shared, info, &ns, &name, Half::Status, q, &*mutate).await?;
            Ok(object_response(StatusCode::OK, info, updated, n, q))
        }
        ("finalize", Verb::Update) | ("approval", Verb::Update | Verb::Patch) => {
            // Each owns one field: a namespace's spec.finalizers, a CSR's status.conditions.
            let mutate = body_or_patch(info, req)?;
            let (field, half) =
                if sub == "finalize" { ("finalizers", Half::Main) } else { ("conditions", Half::Status) };
            let parent = if sub == "finalize" { "spec" } else { "status" };
            let updated = update_object(shared, info, &ns, &name, half, q, &|cur| {
                let desired = mutate(cur)?;
                let mut new = cur.clone();
                if !new.get(parent).is_some_and(Value::is_object) {
                    new[parent] = json!({});
                }
                new[parent][field] =
                    desired.get(parent).and_then(|p| p.get(field)).cloned().unwrap_or(Value::Null);
                Ok(new)
            })
            .await?;
            Ok(object_response(StatusCode::OK, info, updated, n, q))
        }
        ("scale", Verb::Get) => {
            let (obj, _) = objects::get(&shared.store, info, &info.key(&ns, &name), false)
                .await?
                .ok_or_else(|| ApiError::not_found(info, &name))?;
            Ok(codec::respond(StatusCode::OK, &scale_of(&obj), n.format))
        }
        ("scale", Verb::Update | Verb::Patch) => {
            let patch = if verb == Verb::Patch {
                Some(crate::patch::Patch::decode(req.content_type(), &req.body, q)?)
            } else {
                None
            };
            let body = if verb == Verb::Update {
                Some(codec::decode_body(req.content_type(), &req.body)?)
            } else {
                None
            };
            let scale_info = scale_info();
            let updated = update_object(shared, info, &ns, &name, Half::Main, q, &|cur| {
                let scale = scale_of(cur);
                let wanted = match (&patch, &body) {
                    (Some(p), _) => p.apply(&scale_info, &scale)?,
                    (None, Some(b)) => b.clone(),
                    (None, None) => scale.clone(),
                };
                if let Some(rv) = meta::meta_str(&wanted, "resourceVersion") {
                    if Some(rv) != meta::meta_str(cur, "resourceVersion") {
                        return Err(ApiError::modified(info, &name));
                    }
                }
                let replicas = wanted.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
                if replicas < 0 {
                    return Err(ApiError::invalid(
                        info,
                        &name,
                        vec![crate::error::Cause::invalid(
                            "spec.replicas",
                            &json!(replicas),
                            "must be greater than or equal to 0",
                        )],
                    ));
                }
                let mut new = cur.clone();
                new["spec"]["replicas"] = json!(replicas);
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                Ok(new)
            })
            .await?;
            Ok(codec::respond(StatusCode::OK, &scale_of(&updated), n.format))
        }
        ("eviction", Verb::Create) => super::eviction::evict(shared, info, req, n).await,
        ("binding", Verb::Create) => {
            let binding = codec::decode_body(req.content_type(), &req.body)?;
            let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
            bind(shared, info, &ns, &name, &node).await?;
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
            Ok(codec::respond(StatusCode::CREATED, &status, n.format))
        }
        ("token", Verb::Create) => {
            let request = codec::decode_body(req.content_type(), &req.body)?;
            let answered = crate::tokens::request_token(shared, &ns, &name, request).await?;
            Ok(codec::respond(StatusCode::CREATED, &answered, n.format))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// An owned mutation of the current object.
type BoxedMutation = Box<dyn Fn(&Value) -> Result<Value> + Send + Sync>;

/// A mutation that is either the request body (PUT) or the patch applied to the current
/// object (PATCH).
fn body_or_patch(info: &ResourceInfo, req: &ApiRequest) -> Result<BoxedMutation> {
    if req.method == axum::http::Method::PATCH {
        let patch = crate::patch::Patch::decode(req.content_type(), &req.body, &req.query)?;
        let info = info.clone();
        Ok(Box::new(move |cur: &Value| patch.apply(&info, cur)))
    } else {
        let body = decode_object(info, req)?;
        Ok(Box::new(move |_: &Value| Ok(body.clone())))
    }
}

/// Sets a pod's node (the `pods/binding` subresource the scheduler uses).
async fn bind<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    ns: &str,
    name: &str,
    node: &str,
) -> Result<()> {
    if node.is_empty() {
        return Err(ApiError::invalid(info, name, vec![crate::error::Cause::required("target.name")]));
    }
    let q = crate::request::Query::default();
    update_object(shared, info, ns, name, Half::Main, &q, &|cur| {
        let current = cur.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
        if !current.is_empty() {
            return Err(ApiError::conflict(
                info,
                name,
                format!("pod {name} is already assigned to node \"{current}\""),
            ));
        }
        if meta::is_deleting(cur) {
            return Err(ApiError::conflict(
                info,
                name,
                format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        let mut new = cur.clone();
        new["spec"]["nodeName"] = json!(node);
        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        Ok(new)
    })
    .await?;
    // The PodScheduled condition goes with the binding (the status half).
    update_object(shared, info, ns, name, Half::Status, &q, &|cur| {
        let mut new = cur.clone();
        let mut conditions: Vec<Value> = cur
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"))
            .collect();
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now_rfc3339()}));
        new["status"]["conditions"] = json!(conditions);
        Ok(new)
    })
    .await?;
    Ok(())
}

/// The `autoscaling/v1` Scale of a scalable object.
fn scale_of(obj: &Value) -> Value {
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let selector = obj.pointer("/spec/selector").map(label_selector_string).unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
            "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// A LabelSelector (or a ReplicationController's plain map) as a selector string.
fn label_selector_string(sel: &Value) -> String {
    let mut terms = Vec::new();
    let labels =
        sel.get("matchLabels").or(if sel.get("matchExpressions").is_none() { Some(sel) } else { None });
    for (k, v) in labels.and_then(Value::as_object).into_iter().flatten() {
        if let Some(v) = v.as_str() {
            terms.push(format!("{k}={v}"));
        }
    }
    for e in sel.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e.get("operator").and_then(Value::as_str) {
            Some("In") => terms.push(format!("{key} in ({})", values.join(","))),
            Some("NotIn") => terms.push(format!("{key} notin ({})", values.join(","))),
            Some("Exists") => terms.push(key.to_string()),
            Some("DoesNotExist") => terms.push(format!("!{key}")),
            _ => {}
        }
    }
    terms.join(",")
}

/// The resource info a Scale is patched as (strategic merge patches of a Scale).
fn scale_info() -> ResourceInfo {
    crate::registry::scale_resource()
}

/// Create-only reviews: answered from the request, never stored.
pub(crate) async fn review<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    req: &ApiRequest,
    n: Negotiated,
) -> Result<Response> {
    let mut obj = decode_object(info, req)?;
    check_kind(info, &mut obj)?;
    let user = req.identity.clone().unwrap_or_else(Identity::anonymous);
    match info.kind {
        "SelfSubjectReview" => {
            obj["status"] = json!({"userInfo": {"username": user.user, "groups": user.groups}});
        }
        "SelfSubjectAccessReview"
        | "SubjectAccessReview"
        | "LocalSubjectAccessReview"
        | "SelfSubjectRulesReview" => {
            crate::authz::review::answer(&shared.authz, info, &user, req.namespace(), &mut obj)?;
        }
        "TokenReview" => {
            let token = obj.pointer("/spec/token").and_then(Value::as_str).unwrap_or("");
            obj["status"] = match shared.authenticate_token(token).await {
                Some(id) => {
                    json!({"authenticated": true, "user": {"username": id.user, "groups": id.groups}})
                }
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
        }
        _ => return Err(ApiError::MethodNotAllowed),
    }
    Ok(codec::respond(StatusCode::CREATED, &obj, n.format))
}
