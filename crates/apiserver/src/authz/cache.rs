//! The RBAC objects in memory: Roles, ClusterRoles and their bindings, loaded once and kept
//! current by a store watch, so authorizing a request never reads the store. Like upstream's
//! informer-fed authorizer the cache is eventually consistent: a write is seen once the watch
//! delivers it (normally within milliseconds).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use corten_store::{
    EventKind, KeyRange, KeyValue, RangeRequest, Revision, Store, WatchRequest, WatchResponse,
};
use futures::StreamExt;
use k8s_openapi::api::rbac::v1::Role;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::rules::Rule;

/// Where every RBAC object is stored.
const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// A binding's target role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoleKind {
    Role,
    ClusterRole,
}

/// A RoleBinding or ClusterRoleBinding.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub name: String,
    pub role_kind: RoleKind,
    pub role_name: String,
    pub subjects: Vec<Subject>,
}

impl Binding {
    fn new(name: String, role_ref: &RoleRef, subjects: Option<Vec<Subject>>) -> Self {
        let role_kind = if role_ref.kind == "Role" { RoleKind::Role } else { RoleKind::ClusterRole };
        Binding { name, role_kind, role_name: role_ref.name.clone(), subjects: subjects.unwrap_or_default() }
    }
}

/// A snapshot of the RBAC objects.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    pub cluster_roles: HashMap<String, Vec<Rule>>,
    /// By `(namespace, name)`.
    pub roles: HashMap<(String, String), Vec<Rule>>,
    pub cluster_role_bindings: BTreeMap<String, Binding>,
    /// By namespace, then name.
    pub role_bindings: HashMap<String, BTreeMap<String, Binding>>,
    /// The store revision this snapshot reflects.
    pub revision: Revision,
}

fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Option<T> {
    match serde_json::from_slice(&kv.value) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(key = %String::from_utf8_lossy(&kv.key), error = %e, "undecodable RBAC object ignored");
            None
        }
    }
}

fn rules(rules: Option<&Vec<k8s_openapi::api::rbac::v1::PolicyRule>>) -> Vec<Rule> {
    rules.map(|r| r.iter().map(Rule::from).collect()).unwrap_or_default()
}

impl Policy {
    /// Applies one put (`put == true`) or delete of `kv`.
    fn apply(&mut self, kv: &KeyValue, put: bool) {
        let key = String::from_utf8_lossy(&kv.key);
        let Some(rest) = key.strip_prefix(PREFIX) else { return };
        let Some((plural, rest)) = rest.split_once('/') else { return };
        let namespaced = || rest.split_once('/').map(|(ns, name)| (ns.to_string(), name.to_string()));
        match plural {
            "clusterroles" => {
                self.cluster_roles.remove(rest);
                if put {
                    if let Some(r) = decode::<ClusterRole>(kv) {
                        self.cluster_roles.insert(rest.to_string(), rules(r.rules.as_ref()));
                    }
                }
            }
            "roles" => {
                let Some(id) = namespaced() else { return };
                self.roles.remove(&id);
                if put {
                    if let Some(r) = decode::<Role>(kv) {
                        self.roles.insert(id, rules(r.rules.as_ref()));
                    }
                }
            }
            "clusterrolebindings" => {
                self.cluster_role_bindings.remove(rest);
                if put {
                    if let Some(b) = decode::<ClusterRoleBinding>(kv) {
                        let binding = Binding::new(rest.to_string(), &b.role_ref, b.subjects);
                        self.cluster_role_bindings.insert(rest.to_string(), binding);
                    }
                }
            }
            "rolebindings" => {
                let Some((ns, name)) = namespaced() else { return };
                let in_ns = self.role_bindings.entry(ns.clone()).or_default();
                in_ns.remove(&name);
                if put {
                    if let Some(b) = decode::<RoleBinding>(kv) {
                        in_ns.insert(name.clone(), Binding::new(name, &b.role_ref, b.subjects));
                    }
                }
                if in_ns.is_empty() {
                    self.role_bindings.remove(&ns);
                }
            }
            _ => {}
        }
    }
}

/// Keeps `policy` current until `shutdown`: lists, then watches, and lists again when the watch
/// ends (compaction, a restarted store). `synced` is set once the first list is in.
pub(crate) async fn run<S: Store>(
    store: &S,
    policy: &parking_lot::RwLock<Policy>,
    synced: &tokio::sync::watch::Sender<Revision>,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = sync_once(store, policy, synced) => outcome,
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, ?delay, "the RBAC cache lost its watch; listing again");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn sync_once<S: Store>(
    store: &S,
    policy: &parking_lot::RwLock<Policy>,
    synced: &tokio::sync::watch::Sender<Revision>,
) -> corten_store::Result<()> {
    let listed = store.range(RangeRequest::prefix(PREFIX.as_bytes().to_vec())).await?;
    let mut fresh = Policy { revision: listed.revision, ..Policy::default() };
    for kv in &listed.kvs {
        fresh.apply(kv, true);
    }
    *policy.write() = fresh;
    synced.send_replace(listed.revision);
    let req = WatchRequest::new(KeyRange::Prefix(PREFIX.as_bytes().to_vec()), listed.revision + 1)
        .progress(Duration::from_secs(1));
    let mut stream = store.watch(req).await?;
    while let Some(resp) = stream.next().await {
        let revision = match resp? {
            WatchResponse::Events { revision, events } => {
                let mut p = policy.write();
                for ev in &events {
                    p.apply(&ev.kv, ev.kind == EventKind::Put);
                }
                p.revision = revision;
                revision
            }
            WatchResponse::Progress { revision } => {
                policy.write().revision = revision;
                revision
            }
        };
        synced.send_replace(revision);
    }
    Err(corten_store::Error::Stopped)
}
