//! The ResourceQuota controller: keeps each quota's `status.hard` equal to `spec.hard` and
//! recomputes `status.used` from the objects in its namespace, so usage that admission charged
//! is released when objects are deleted or pods finish. A quota is recomputed when it changes,
//! when a pod, service, claim, config map, secret or replication controller of its namespace
//! changes, and every [`RESYNC`] (which also catches `count/<resource>` of other kinds).
//!
//! The quota is read before the objects are listed and written back on its `resourceVersion`:
//! a create that admission charged meanwhile changed that version, so the write fails and the
//! quota is computed again rather than losing the charge.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use corten_schema::quantity::Quantity;
use corten_schema::resources::{self, quota_matches, tracks, usage, QuotaResource};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, ResourceQuotaStatus, Secret,
    Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::{json, Value};
use tracing::{debug, warn};

use crate::error::{api, Error, Result};
use crate::Ctx;

/// How often every quota is recomputed without a triggering change (upstream: 5 minutes).
const RESYNC: Duration = Duration::from_secs(60);

/// The resources with an evaluator of their own, by kind.
fn core_resources() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<Pod>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<PersistentVolumeClaim>(&()),
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<Secret>(&()),
        ApiResource::erase::<ReplicationController>(&()),
        ApiResource::erase::<ResourceQuota>(&()),
    ]
}

pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    let client = ctx.client.clone();
    let shutdown = ctx.shutdown.clone();
    let controller = Controller::new(Api::<ResourceQuota>::all(client.clone()), watcher::Config::default());
    let quotas = controller.store();
    let cfg = watcher::Config::default;
    controller
        .watches(Api::<Pod>::all(client.clone()), cfg(), quotas_of(quotas.clone()))
        .watches(Api::<Service>::all(client.clone()), cfg(), quotas_of(quotas.clone()))
        .watches(Api::<PersistentVolumeClaim>::all(client.clone()), cfg(), quotas_of(quotas.clone()))
        .watches(Api::<ConfigMap>::all(client.clone()), cfg(), quotas_of(quotas.clone()))
        .watches(Api::<Secret>::all(client.clone()), cfg(), quotas_of(quotas.clone()))
        .watches(Api::<ReplicationController>::all(client), cfg(), quotas_of(quotas))
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| async {})
        .await;
    Ok(())
}

/// Maps a changed object to the quotas of its namespace.
fn quotas_of<K: Resource>(
    store: Store<ResourceQuota>,
) -> impl Fn(K) -> Vec<ObjectRef<ResourceQuota>> + Send + Sync + 'static {
    move |obj| {
        let ns = obj.meta().namespace.clone();
        store
            .state()
            .iter()
            .filter(|q| q.metadata.namespace == ns)
            .map(|q| ObjectRef::from_obj(q.as_ref()))
            .collect()
    }
}

fn error_policy(quota: Arc<ResourceQuota>, error: &Error, _: Arc<Ctx>) -> Action {
    warn!(quota = %quota.name_any(), namespace = ?quota.namespace(), error = %error, "computing quota usage failed");
    Action::requeue(Duration::from_secs(5))
}

/// The resource a `count/<plural>[.<group>]` name counts, as `(group, plural)`.
fn counted(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("count/")?;
    Some(match rest.split_once('.') {
        Some((plural, group)) => (group, plural),
        None => ("", rest),
    })
}

/// The served resource `plural` of `group`, found by discovery.
async fn discover(ctx: &Ctx, group: &str, plural: &str) -> Result<Option<ApiResource>> {
    let found = match kube::discovery::group(&ctx.client, group).await {
        Ok(g) => g,
        // A group that is not served has nothing to count.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(api(format!("discovering API group {group:?}"))(e)),
    };
    Ok(found.resources_by_stability().into_iter().map(|(r, _)| r).find(|r| r.plural == plural))
}

async fn reconcile(cached: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action> {
    let (Some(ns), name) = (cached.namespace(), cached.name_any()) else { return Ok(Action::await_change()) };
    let quotas: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
    // Read the quota first: a charge after this read changes its resourceVersion.
    let Some(mut quota) = quotas.get_opt(&name).await.map_err(api(format!("reading quota {ns}/{name}")))?
    else {
        return Ok(Action::await_change());
    };
    if quota.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let hard: BTreeMap<String, Quantity> = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), q.0.parse::<Quantity>().ok()?)))
        .collect();
    let used = compute_used(&ctx, &ns, &quota, &hard).await?;
    let to_kube = |l: &BTreeMap<String, Quantity>| -> BTreeMap<String, KubeQuantity> {
        l.iter().map(|(k, q)| (k.clone(), KubeQuantity(q.to_string()))).collect()
    };
    let status = ResourceQuotaStatus { hard: Some(to_kube(&hard)), used: Some(to_kube(&used)) };
    if quota.status.as_ref() == Some(&status) {
        return Ok(Action::requeue(RESYNC));
    }
    debug!(quota = %name, namespace = %ns, "updating quota usage");
    quota.status = Some(status);
    match quotas.replace_status(&name, &PostParams::default(), &quota).await {
        Ok(_) => Ok(Action::requeue(RESYNC)),
        // Charged or changed meanwhile: compute again on the new version.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::requeue(Duration::from_millis(50))),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(api(format!("updating the status of quota {ns}/{name}"))(e)),
    }
}

/// What the objects of `ns` use of every resource in `hard` that `quota`'s scopes select.
async fn compute_used(
    ctx: &Ctx,
    ns: &str,
    quota: &ResourceQuota,
    hard: &BTreeMap<String, Quantity>,
) -> Result<BTreeMap<String, Quantity>> {
    // Match as admission does, on the hard limits about to be published.
    let mut view =
        serde_json::to_value(quota).map_err(|e| Error::Invalid(format!("encoding a quota: {e}")))?;
    view["status"] = json!({"hard": resources::to_json(hard)});
    let mut candidates = core_resources();
    for name in hard.keys() {
        let Some((group, plural)) = counted(name) else { continue };
        if candidates.iter().any(|r| r.group == group && r.plural == plural) {
            continue;
        }
        if let Some(found) = discover(ctx, group, plural).await? {
            candidates.push(found);
        }
    }
    let mut used: BTreeMap<String, Quantity> = hard.keys().map(|k| (k.clone(), Quantity::ZERO)).collect();
    for ar in candidates {
        let res = QuotaResource { group: &ar.group, kind: &ar.kind, plural: &ar.plural };
        let tracked: Vec<&String> = hard.keys().filter(|k| tracks(&res, k)).collect();
        if tracked.is_empty() {
            continue;
        }
        let objects: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
        let list = objects
            .list(&ListParams::default())
            .await
            .map_err(api(format!("listing {} in {ns}", ar.plural)))?;
        for obj in list.items {
            let obj: Value =
                serde_json::to_value(&obj).map_err(|e| Error::Invalid(format!("encoding an object: {e}")))?;
            if !quota_matches(&view, &res, &obj) {
                continue;
            }
            let u = usage(&res, &obj);
            for k in &tracked {
                if let (Some(add), Some(sum)) = (u.get(*k), used.get_mut(*k)) {
                    *sum = sum.saturating_add(add);
                }
            }
        }
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_names_split_into_group_and_plural() {
        assert_eq!(counted("count/pods"), Some(("", "pods")));
        assert_eq!(counted("count/deployments.apps"), Some(("apps", "deployments")));
        assert_eq!(counted("count/widgets.example.com"), Some(("example.com", "widgets")));
        assert_eq!(counted("pods"), None);
    }

    #[test]
    fn every_core_resource_is_known_by_its_kind() {
        let kinds: Vec<String> = core_resources().into_iter().map(|r| r.kind).collect();
        assert!(kinds.iter().any(|k| k == "Pod") && kinds.iter().any(|k| k == "ResourceQuota"));
    }
}
