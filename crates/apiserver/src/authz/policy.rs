//! The bootstrap RBAC policy (`policy.yaml`): kube-apiserver's default ClusterRoles and
//! ClusterRoleBindings and those of Corten's components, created at every start when missing.
//! The aggregated roles (`admin`, `edit`, `view`) are created with their rules filled in; the
//! ClusterRole aggregation controller keeps them current afterwards.

use std::collections::BTreeMap;

use corten_store::Store;
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, Result};
use crate::request::Query;
use crate::{rest, Shared};

const POLICY: &str = include_str!("policy.yaml");
const AGGREGATE_LABEL: &str = "rbac.authorization.k8s.io/aggregate-to-";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyFile {
    cluster_roles: Vec<RoleSpec>,
    cluster_role_bindings: Vec<BindingSpec>,
}

#[derive(Debug, Deserialize)]
struct RoleSpec {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Aggregates the roles labelled `rbac.authorization.k8s.io/aggregate-to-<this>: "true"`.
    #[serde(default)]
    aggregate: Option<String>,
    #[serde(default)]
    rules: Vec<PolicyRule>,
}

#[derive(Debug, Deserialize)]
struct BindingSpec {
    name: String,
    role: String,
    subjects: Vec<String>,
}

fn metadata(name: &str, labels: &BTreeMap<String, String>) -> Value {
    let mut all: BTreeMap<String, String> = labels.clone();
    all.insert("kubernetes.io/bootstrapping".into(), "rbac-defaults".into());
    json!({
        "name": name,
        "labels": all,
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

/// `User:<name>`, `Group:<name>` or `ServiceAccount:<namespace>:<name>` as an RBAC subject.
fn subject(spec: &str) -> Value {
    match spec.split_once(':') {
        Some(("ServiceAccount", rest)) => {
            let (ns, name) = rest.split_once(':').unwrap_or(("default", rest));
            json!({"kind": "ServiceAccount", "name": name, "namespace": ns})
        }
        Some((kind, name)) => json!({"kind": kind, "apiGroup": "rbac.authorization.k8s.io", "name": name}),
        None => json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": spec}),
    }
}

/// The bootstrap ClusterRoles and ClusterRoleBindings as API objects.
pub(crate) fn objects() -> Result<(Vec<Value>, Vec<Value>)> {
    let file: PolicyFile = serde_yaml::from_str(POLICY)
        .map_err(|e| ApiError::Internal(format!("the bootstrap RBAC policy does not parse: {e}")))?;
    // Fill in aggregated rules; three passes reach admin through edit through view.
    let mut rules: BTreeMap<String, Vec<PolicyRule>> =
        file.cluster_roles.iter().map(|r| (r.name.clone(), r.rules.clone())).collect();
    for _ in 0..3 {
        for role in file.cluster_roles.iter().filter(|r| r.aggregate.is_some()) {
            let label = format!("{AGGREGATE_LABEL}{}", role.aggregate.as_deref().unwrap_or(""));
            let mut sources: Vec<&RoleSpec> = file
                .cluster_roles
                .iter()
                .filter(|r| r.name != role.name && r.labels.get(&label).is_some_and(|v| v == "true"))
                .collect();
            sources.sort_by(|a, b| a.name.cmp(&b.name));
            let mut merged: Vec<PolicyRule> = Vec::new();
            for source in sources {
                for rule in rules.get(&source.name).into_iter().flatten() {
                    if !merged.contains(rule) {
                        merged.push(rule.clone());
                    }
                }
            }
            rules.insert(role.name.clone(), merged);
        }
    }
    let roles = file
        .cluster_roles
        .iter()
        .map(|r| {
            let mut obj = json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": metadata(&r.name, &r.labels),
                "rules": rules.get(&r.name).cloned().unwrap_or_default(),
            });
            if let Some(agg) = &r.aggregate {
                obj["aggregationRule"] =
                    json!({"clusterRoleSelectors": [{"matchLabels": {format!("{AGGREGATE_LABEL}{agg}"): "true"}}]});
            }
            obj
        })
        .collect();
    let bindings = file
        .cluster_role_bindings
        .iter()
        .map(|b| {
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": metadata(&b.name, &BTreeMap::new()),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": b.role},
                "subjects": b.subjects.iter().map(|s| subject(s)).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok((roles, bindings))
}

/// Creates the bootstrap ClusterRoles and ClusterRoleBindings that are missing.
pub(crate) async fn ensure<S: Store>(shared: &Shared<S>) -> Result<()> {
    let (roles, bindings) = objects()?;
    for (plural, objs) in [("clusterroles", roles), ("clusterrolebindings", bindings)] {
        let info = shared
            .registry
            .get("rbac.authorization.k8s.io", "v1", plural)
            .cloned()
            .ok_or(ApiError::UnknownPath)?;
        for obj in objs {
            match rest::create_object(shared, &info, None, obj, &Query::default()).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_roles_are_filled_in_through_the_chain() {
        let (roles, bindings) = objects().unwrap_or_else(|e| panic!("{e}"));
        let role =
            |name: &str| roles.iter().find(|r| r["metadata"]["name"] == name).cloned().unwrap_or_default();
        let has = |name: &str, resource: &str, verb: &str| {
            role(name)["rules"].as_array().into_iter().flatten().any(|r| {
                r["resources"].as_array().is_some_and(|v| v.iter().any(|x| x == resource))
                    && r["verbs"].as_array().is_some_and(|v| v.iter().any(|x| x == verb))
            })
        };
        assert!(has("view", "pods", "list") && !has("view", "pods", "create"));
        assert!(
            has("edit", "pods", "list") && has("edit", "pods", "create") && !has("edit", "roles", "create")
        );
        assert!(
            has("admin", "pods", "list") && has("admin", "pods", "create") && has("admin", "roles", "create")
        );
        assert!(!has("view", "secrets", "get"));
        assert_eq!(role("admin")["metadata"]["labels"]["kubernetes.io/bootstrapping"], "rbac-defaults");
        let masters =
            bindings.iter().find(|b| b["metadata"]["name"] == "cluster-admin").cloned().unwrap_or_default();
        assert_eq!(masters["subjects"][0]["name"], "system:masters");
    }
}
