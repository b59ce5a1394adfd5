//! What DaemonSets and StatefulSets share: ControllerRevisions, the snapshots of their pod
//! templates named `<owner>-<hash>` and labelled with `controller-revision-hash` that rollouts
//! compare pods against (upstream `controller/history`), and the claiming of their pods.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{json, Value};

use crate::deployment::util::template_hash;
use crate::error::api;
use crate::pods::{self, controller_of, controller_ref};
use crate::Result;

/// The label that names the revision of a pod (and of a ControllerRevision).
pub(crate) const REVISION_HASH: &str = "controller-revision-hash";

/// The hash of a pod template, the `controller-revision-hash` of pods made from it.
pub(crate) fn hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    template_hash(template, collision_count)
}

/// The `controller-revision-hash` label of a pod, if any.
pub(crate) fn revision_of(meta: &ObjectMeta) -> Option<&str> {
    meta.labels.as_ref()?.get(REVISION_HASH).map(String::as_str)
}

/// The ControllerRevisions controlled by `owner`, oldest revision first.
pub(crate) async fn owned<K: Resource<DynamicType = ()>>(
    client: &Client,
    owner: &K,
) -> Result<Vec<ControllerRevision>> {
    let ns = owner.namespace().unwrap_or_default();
    let uid = owner.uid().unwrap_or_default();
    let api_ = Api::<ControllerRevision>::namespaced(client.clone(), &ns);
    let list = api_
        .list(&ListParams::default())
        .await
        .map_err(api(format!("listing controller revisions in {ns}")))?;
    let mut revs: Vec<_> =
        list.items.into_iter().filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == uid)).collect();
    revs.sort_by_key(|r| r.revision);
    Ok(revs)
}

/// Makes sure the revision of `template` (hash `hash`) exists for `owner`, creating it with the
/// next revision number when it does not; returns its revision number.
pub(crate) async fn ensure<K: Resource<DynamicType = ()>>(
    client: &Client,
    owner: &K,
    template: &PodTemplateSpec,
    hash: &str,
    revisions: &[ControllerRevision],
) -> Result<i64> {
    if let Some(r) = revisions.iter().find(|r| revision_of(&r.metadata) == Some(hash)) {
        return Ok(r.revision);
    }
    let ns = owner.namespace().unwrap_or_default();
    let next = revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(REVISION_HASH.into(), hash.into());
    let mut snapshot = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut snapshot {
        m.insert("$patch".into(), json!("replace"));
    }
    let rev = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", owner.name_any())),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref(owner)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(json!({"spec": {"template": snapshot}}))),
        revision: next,
    };
    let api_ = Api::<ControllerRevision>::namespaced(client.clone(), &ns);
    match api_.create(&PostParams::default(), &rev).await {
        Ok(_) => Ok(next),
        // Created by an earlier sync that this one did not see yet.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(next),
        Err(e) => Err(api(format!("creating controller revision {}", rev.name_any()))(e)),
    }
}

/// The pod template a revision holds.
pub(crate) fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Value::Object(m) = &mut t {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Deletes the oldest revisions beyond `limit` that no live revision in `keep` names.
pub(crate) async fn prune(client: &Client, revisions: &[ControllerRevision], keep: &[&str], limit: i32) {
    let limit = usize::try_from(limit).unwrap_or(0);
    let old: Vec<_> =
        revisions.iter().filter(|r| !revision_of(&r.metadata).is_some_and(|h| keep.contains(&h))).collect();
    if old.len() <= limit {
        return;
    }
    for r in &old[..old.len() - limit] {
        let ns = r.namespace().unwrap_or_default();
        let api_ = Api::<ControllerRevision>::namespaced(client.clone(), &ns);
        if let Err(e) = api_.delete(&r.name_any(), &Default::default()).await {
            tracing::debug!(error = %e, revision = %r.name_any(), "old controller revision not deleted");
        }
    }
}

/// Whether merging the `status` of `patch` into `current` (an object's status as JSON) would
/// change anything; a missing field counts as null.
pub(crate) fn status_changed(current: &Value, patch: &Value) -> bool {
    let Some(fields) = patch.get("status").and_then(Value::as_object) else { return false };
    fields.iter().any(|(k, v)| current.get(k).unwrap_or(&Value::Null) != v)
}

/// The pods of `owner` among `pods` (upstream `ClaimPods`): those it controls that its
/// `selector` still selects, plus orphans it selects and `member` accepts, which it adopts.
/// Controlled pods it no longer selects are released.
pub(crate) async fn claim_pods<K: Resource<DynamicType = ()>>(
    client: &Client,
    owner: &K,
    selector: Option<&LabelSelector>,
    pods: Vec<Pod>,
    member: impl Fn(&Pod) -> bool,
) -> Result<Vec<Pod>> {
    let ns = owner.namespace().unwrap_or_default();
    let uid = owner.uid().unwrap_or_default();
    let selector = pods::selector(selector);
    let api_ = Api::<Pod>::namespaced(client.clone(), &ns);
    let mut claimed = Vec::new();
    for pod in pods {
        let matches = selector.as_ref().is_some_and(|s| pods::selects(s, pod.labels()));
        let terminating = pod.metadata.deletion_timestamp.is_some();
        match controller_of(&pod.metadata) {
            Some(r) if r.uid == uid && matches => claimed.push(pod),
            Some(r) if r.uid == uid && !terminating => {
                pods::release(&api_, &pod.metadata, &uid).await?;
            }
            None if matches && !terminating && member(&pod) => {
                if let Some(adopted) = pods::adopt(&api_, &pod.metadata, controller_ref(owner)).await? {
                    claimed.push(adopted);
                }
            }
            _ => {}
        }
    }
    Ok(claimed)
}
