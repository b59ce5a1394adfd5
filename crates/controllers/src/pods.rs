//! What the workload controllers share about pods: making a pod from a template with a
//! controller reference, whether a pod counts (active, ready, available), selector matching and
//! the order in which surplus pods are deleted. The job controller may reuse it.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tracing::debug;

use crate::error::api as api_err;
use crate::{Error, Result};

/// The annotation that lowers (or raises) the cost of deleting a pod when scaling down.
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The controller reference (`controller: true`, `blockOwnerDeletion: true`) pointing at `owner`.
pub(crate) fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The owner reference of `meta` that has `controller: true`, if any.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// A pod to create from `template` for the owner `owner_ref`: labels, annotations and finalizers
/// of the template, the name generated from `prefix` by the API server.
pub(crate) fn pod_from_template(template: &PodTemplateSpec, prefix: &str, owner_ref: OwnerReference) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name_prefix(prefix)),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner_ref]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// `<name>-`, or `<name>` when the dash would make the generated name too long (upstream
/// `getPodsPrefix`: a name is at most 63 characters and the server adds five).
fn generate_name_prefix(name: &str) -> String {
    if name.len() + 1 + 5 > 63 {
        name.to_string()
    } else {
        format!("{name}-")
    }
}

/// The selector of a workload as a [`Selector`]; `None` when it is missing, empty (which selects
/// nothing for a controller) or invalid.
pub(crate) fn selector(sel: Option<&LabelSelector>) -> Option<Selector> {
    let sel = sel?;
    let empty = sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && sel.match_expressions.as_ref().is_none_or(Vec::is_empty);
    if empty {
        return None;
    }
    Selector::try_from(sel.clone()).ok()
}

/// Whether `selector` selects an object with `labels`.
pub(crate) fn selects(selector: &Selector, labels: &BTreeMap<String, String>) -> bool {
    selector.matches(labels)
}

/// Whether the pod still counts for its controller: not terminating, not Succeeded or Failed.
pub(crate) fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// When the pod's Ready condition last became True, if it is True now.
pub(crate) fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let cond = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    if cond.status != "True" {
        return None;
    }
    Some(cond.last_transition_time.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0))
}

/// Whether the pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Whether the pod has been ready for at least `min_ready_seconds` at `now`.
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since + SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now,
    }
}

/// How long until a ready pod becomes available, if it is ready but not available yet.
pub(crate) fn until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<SignedDuration> {
    let since = ready_since(pod)?;
    let at = since + SignedDuration::from_secs(i64::from(min_ready_seconds));
    (min_ready_seconds > 0 && at > now).then(|| at.duration_since(now))
}

/// Sorts `pods` so that the ones to delete first come first, like upstream `ActivePodsWithRanks`:
/// unscheduled before scheduled, pending before unknown before running, not ready before ready,
/// lower deletion cost first, pods doubled up on a node first, ready more recently first, more
/// restarts first, newer first.
pub(crate) fn sort_for_deletion(pods: &mut [&Pod]) {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for pod in pods.iter() {
        if let Some(node) = node_of(pod) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let rank = |pod: &Pod| node_of(pod).map_or(0, |n| per_node.get(n).copied().unwrap_or(0));
    pods.sort_by(|a, b| deletion_order(a, b, rank(a), rank(b)));
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

fn deletion_order(a: &Pod, b: &Pod, rank_a: usize, rank_b: usize) -> Ordering {
    let phase = |p: &Pod| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Running") => 2,
        Some("Unknown") => 1,
        _ => 0,
    };
    let cost = |p: &Pod| p.annotations().get(DELETION_COST).and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
    let restarts = |p: &Pod| -> i32 {
        let statuses = p.status.as_ref().and_then(|s| s.container_statuses.as_ref());
        statuses.into_iter().flatten().map(|c| c.restart_count).sum()
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    node_of(a)
        .is_some()
        .cmp(&node_of(b).is_some())
        .then_with(|| phase(a).cmp(&phase(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| cost(a).cmp(&cost(b)))
        .then_with(|| rank_b.cmp(&rank_a))
        .then_with(|| ready_since(b).cmp(&ready_since(a)))
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| match (created(a), created(b)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => y.cmp(&x),
        })
}

/// Makes `owner` the controller of the orphan object `meta`, guarded by a JSON-patch test of its
/// UID and owner references; the patched object, or `None` when it is gone or changed (the next
/// event brings it back).
pub(crate) async fn adopt<K>(api: &Api<K>, meta: &ObjectMeta, owner: OwnerReference) -> Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let refs = meta.owner_references.clone().unwrap_or_default();
    let mut ops = vec![json!({"op": "test", "path": "/metadata/uid", "value": meta.uid})];
    if refs.is_empty() {
        ops.push(json!({"op": "add", "path": "/metadata/ownerReferences", "value": [owner]}));
    } else {
        ops.push(json!({"op": "test", "path": "/metadata/ownerReferences", "value": refs}));
        ops.push(json!({"op": "add", "path": "/metadata/ownerReferences/-", "value": owner}));
    }
    json_patch(api, meta, ops, "adopting").await
}

/// Removes the controller reference to the owner with UID `owner` from the object `meta`, which
/// its selector no longer selects.
pub(crate) async fn release<K>(api: &Api<K>, meta: &ObjectMeta, owner: &str) -> Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let refs = meta.owner_references.clone().unwrap_or_default();
    let Some(i) = refs.iter().position(|r| r.uid == owner) else { return Ok(None) };
    let ops = vec![
        json!({"op": "test", "path": "/metadata/uid", "value": meta.uid}),
        json!({"op": "test", "path": format!("/metadata/ownerReferences/{i}/uid"), "value": owner}),
        json!({"op": "remove", "path": format!("/metadata/ownerReferences/{i}")}),
    ];
    json_patch(api, meta, ops, "releasing").await
}

async fn json_patch<K>(api: &Api<K>, meta: &ObjectMeta, ops: Vec<Value>, what: &str) -> Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let name = meta.name.clone().unwrap_or_default();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
        .map_err(|e| Error::Invalid(format!("building the patch of {name}: {e}")))?;
    match api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(obj) => Ok(Some(obj)),
        // Gone, or changed under us (a failed test is 422 or 409): the next event retries.
        Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409 | 422) => {
            debug!(object = %name, code = s.code, "object changed while {what} it");
            Ok(None)
        }
        Err(e) => Err(api_err(format!("{what} {name}"))(e)),
    }
}

/// Publishes an event about `obj` (what `kubectl describe` shows); best effort, a failure is
/// only logged.
pub(crate) async fn emit<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    obj: &K,
    warning: bool,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &obj.object_ref(&())).await {
        debug!(error = %e, reason, object = %obj.meta().name.as_deref().unwrap_or_default(), "event not recorded");
    }
}

/// How soon to retry a failed sync: at once after a write conflict (someone else changed the
/// object; a fresh read resolves it), after `otherwise` for anything else.
pub(crate) fn retry_delay(e: &Error, otherwise: std::time::Duration) -> std::time::Duration {
    match e {
        Error::Api { source: kube::Error::Api(s), .. } if s.code == 409 => {
            std::time::Duration::from_millis(100)
        }
        _ => otherwise,
    }
}

/// Runs `controller` until `shutdown`: `reconcile` each object with `state`; a failed sync is
/// retried after `retry` (sooner after a conflict) and logged as a warning naming `what`.
/// Triggers for objects that are already gone are routine and not logged.
pub(crate) async fn drive<K, S, F, Fut>(
    controller: kube::runtime::Controller<K>,
    reconcile: F,
    state: std::sync::Arc<S>,
    retry: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
    what: &'static str,
) where
    K: Clone + Resource + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Debug + Eq + std::hash::Hash + Clone + Unpin,
    S: Send + Sync + 'static,
    F: FnMut(std::sync::Arc<K>, std::sync::Arc<S>) -> Fut,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action>> + Send + 'static,
{
    use futures::StreamExt;
    use kube::runtime::controller::{Action, Error as ControllerError};
    controller
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, move |_, e, _| Action::requeue(retry_delay(e, retry)), state)
        .for_each(|outcome| {
            match outcome {
                Ok(_) | Err(ControllerError::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!(error = %e, "{what} sync failed"),
            }
            futures::future::ready(())
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: Option<i64>, created: i64) -> Pod {
        let conditions = ready.map(|at| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(Timestamp::from_second(at).unwrap_or_default())),
                ..PodCondition::default()
            }]
        });
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap_or_default())),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec { node_name: node.map(Into::into), ..PodSpec::default() }),
            status: Some(PodStatus { phase: Some(phase.into()), conditions, ..PodStatus::default() }),
        }
    }

    fn order(mut pods: Vec<&Pod>) -> Vec<String> {
        sort_for_deletion(&mut pods);
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn surplus_pods_are_deleted_unscheduled_then_pending_then_not_ready_then_newest() {
        let running_ready_old = pod("ready-old", Some("n1"), "Running", Some(10), 1);
        let running_ready_new = pod("ready-new", Some("n2"), "Running", Some(10), 5);
        let running_not_ready = pod("not-ready", Some("n3"), "Running", None, 1);
        let pending = pod("pending", Some("n4"), "Pending", None, 1);
        let unscheduled = pod("unscheduled", None, "Pending", None, 1);
        let got =
            order(vec![&running_ready_old, &running_not_ready, &running_ready_new, &pending, &unscheduled]);
        assert_eq!(got, ["unscheduled", "pending", "not-ready", "ready-new", "ready-old"]);
    }

    #[test]
    fn pods_doubled_up_on_a_node_are_deleted_before_lonely_ones() {
        let alone = pod("alone", Some("n1"), "Running", Some(10), 5);
        let crowded_a = pod("crowded-a", Some("n2"), "Running", Some(10), 1);
        let crowded_b = pod("crowded-b", Some("n2"), "Running", Some(10), 2);
        assert_eq!(order(vec![&alone, &crowded_a, &crowded_b]), ["crowded-b", "crowded-a", "alone"]);
    }

    #[test]
    fn a_pod_is_available_only_after_min_ready_seconds_of_readiness() {
        let p = pod("p", Some("n"), "Running", Some(100), 1);
        let at = |s| Timestamp::from_second(s).unwrap_or_default();
        assert!(!is_available(&p, 10, at(105)));
        assert_eq!(until_available(&p, 10, at(105)), Some(SignedDuration::from_secs(5)));
        assert!(is_available(&p, 10, at(110)));
        assert!(is_available(&p, 0, at(100)));
        assert!(!is_available(&pod("q", None, "Pending", None, 1), 0, at(100)));
    }

    #[test]
    fn terminating_and_finished_pods_are_not_active() {
        let mut p = pod("p", None, "Running", None, 1);
        assert!(is_active(&p));
        p.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(!is_active(&p));
        assert!(!is_active(&pod("s", None, "Succeeded", None, 1)));
        assert!(!is_active(&pod("f", None, "Failed", None, 1)));
    }

    #[test]
    fn an_empty_selector_selects_nothing() {
        assert!(selector(Some(&LabelSelector::default())).is_none());
        assert!(selector(None).is_none());
        let sel = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..LabelSelector::default()
        };
        let s = selector(Some(&sel));
        let labels = BTreeMap::from([("app".to_string(), "web".to_string()), ("x".into(), "y".into())]);
        assert!(s.is_some_and(|s| selects(&s, &labels)));
    }
}
