//! What every cluster has from its first start: the system namespaces, the `kubernetes`
//! Service on the first service IP, the system PriorityClasses and the bootstrap RBAC policy. Created through the same
//! path as any client's create, and idempotent, so every server start may run it.

use corten_store::Store;
use serde_json::{json, Value};

use crate::error::{ApiError, Result};
use crate::request::Query;
use crate::{rest, Shared};

/// The namespaces kube-apiserver creates.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The PriorityClasses kube-apiserver creates: name, value, description.
pub const SYSTEM_PRIORITY_CLASSES: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

async fn create_if_missing<S: Store>(
    shared: &Shared<S>,
    group: &str,
    plural: &str,
    namespace: Option<&str>,
    obj: Value,
) -> Result<()> {
    let info = shared.registry.get(group, "v1", plural).cloned().ok_or(ApiError::UnknownPath)?;
    match rest::create_object(shared, &info, namespace, obj, &Query::default()).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the system namespaces, the `kubernetes` Service and the system PriorityClasses when
/// missing.
pub(crate) async fn ensure_defaults<S: Store>(shared: &Shared<S>) -> Result<()> {
    for ns in SYSTEM_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        create_if_missing(shared, "", "namespaces", None, obj).await?;
    }
    let ip = shared.config.service_cidr.first().to_string();
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
            "sessionAffinity": "None",
        },
    });
    create_if_missing(shared, "", "services", Some("default"), service).await?;
    for (name, value, description) in SYSTEM_PRIORITY_CLASSES {
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": description,
        });
        create_if_missing(shared, "scheduling.k8s.io", "priorityclasses", None, class).await?;
    }
    crate::authz::policy::ensure(shared).await?;
    tracing::debug!(namespaces = ?SYSTEM_NAMESPACES, service_ip = %ip, "cluster defaults present");
    Ok(())
}
