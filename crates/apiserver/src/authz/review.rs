//! The authorization reviews (authorization.k8s.io/v1), answered from the RBAC cache and never
//! stored: SelfSubjectAccessReview (`kubectl auth can-i`), SubjectAccessReview,
//! LocalSubjectAccessReview and SelfSubjectRulesReview (`kubectl auth can-i --list`).

use serde_json::{json, Value};

use super::{Attributes, Authorizer, Rule};
use crate::error::{ApiError, Cause, Result};
use crate::registry::ResourceInfo;
use crate::Identity;

fn s(v: &Value, field: &str) -> String {
    v.get(field).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The attributes a review's `spec` asks about.
fn attributes(info: &ResourceInfo, spec: &Value) -> Result<Attributes> {
    let resource = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    match (resource, non_resource) {
        (Some(r), None) => Ok(Attributes {
            verb: s(r, "verb"),
            resource_request: true,
            group: s(r, "group"),
            version: s(r, "version"),
            resource: s(r, "resource"),
            subresource: s(r, "subresource"),
            name: s(r, "name"),
            namespace: s(r, "namespace"),
            path: String::new(),
        }),
        (None, Some(n)) => Ok(Attributes { verb: s(n, "verb"), path: s(n, "path"), ..Attributes::default() }),
        (r, _) => Err(ApiError::invalid(
            info,
            "",
            vec![Cause::invalid(
                "spec.resourceAttributes",
                r.unwrap_or(&Value::Null),
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        )),
    }
}

fn decide(authz: &Authorizer, user: &Identity, a: &Attributes) -> Value {
    let d = authz.authorize(user, a);
    let mut status = json!({"allowed": d.allowed});
    if !d.reason.is_empty() {
        status["reason"] = json!(d.reason);
    }
    status
}

/// Fills `status` of an access review `obj` of kind `info.kind` sent by `requester` to
/// `namespace` (LocalSubjectAccessReview only).
pub(crate) fn answer(
    authz: &Authorizer,
    info: &ResourceInfo,
    requester: &Identity,
    namespace: Option<&str>,
    obj: &mut Value,
) -> Result<()> {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let status = match info.kind {
        "SelfSubjectAccessReview" => decide(authz, requester, &attributes(info, &spec)?),
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let a = attributes(info, &spec)?;
            if info.kind == "LocalSubjectAccessReview" {
                let ns = namespace.unwrap_or("");
                if !a.resource_request {
                    return Err(ApiError::invalid(
                        info,
                        "",
                        vec![Cause::invalid(
                            "spec.nonResourceAttributes",
                            &spec["nonResourceAttributes"],
                            "disallowed on this kind of request",
                        )],
                    ));
                }
                if a.namespace != ns {
                    return Err(ApiError::BadRequest(format!(
                        "spec.resourceAttributes.namespace must match namespace: {ns}"
                    )));
                }
            }
            let user = s(&spec, "user");
            let groups: Vec<String> = spec
                .get("groups")
                .and_then(Value::as_array)
                .map(|g| g.iter().filter_map(Value::as_str).map(String::from).collect())
                .unwrap_or_default();
            if user.is_empty() && groups.is_empty() {
                return Err(ApiError::invalid(
                    info,
                    "",
                    vec![Cause::invalid(
                        "spec.user",
                        &json!(""),
                        "at least one of user or group must be specified",
                    )],
                ));
            }
            decide(authz, &Identity { user, groups }, &a)
        }
        "SelfSubjectRulesReview" => rules_review(authz, requester, &s(&spec, "namespace")),
        _ => return Err(ApiError::MethodNotAllowed),
    };
    obj["status"] = status;
    Ok(())
}

/// What `user` may do in `namespace`: its resource and non-resource rules.
fn rules_review(authz: &Authorizer, user: &Identity, namespace: &str) -> Value {
    let (mut rules, errors) = authz.rules_for(user, namespace);
    if user.groups.iter().any(|g| g == super::SUPERUSER_GROUP) {
        let all = || vec!["*".to_string()];
        rules.insert(0, Rule { verbs: all(), api_groups: all(), resources: all(), ..Rule::default() });
        rules.insert(1, Rule { verbs: all(), non_resource_urls: all(), ..Rule::default() });
    }
    let mut resource_rules: Vec<Value> = Vec::new();
    let mut non_resource_rules: Vec<Value> = Vec::new();
    for r in &rules {
        if !r.resources.is_empty() {
            let mut v = json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                v["resourceNames"] = json!(r.resource_names);
            }
            if !resource_rules.contains(&v) {
                resource_rules.push(v);
            }
        }
        if !r.non_resource_urls.is_empty() {
            let v = json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls});
            if !non_resource_rules.contains(&v) {
                non_resource_rules.push(v);
            }
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty(),
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    status
}
