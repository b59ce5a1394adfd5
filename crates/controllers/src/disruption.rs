//! The disruption controller: keeps the status of every PodDisruptionBudget true, like
//! kube-controller-manager's. `expectedPods` is the scale of the controllers of the selected pods
//! (ReplicaSet, Deployment through its ReplicaSets, ReplicationController, StatefulSet, or any
//! kind with a `scale` subresource) — or simply the number of selected pods for an integer
//! `minAvailable`; `currentHealthy` counts the ready pods that are neither terminating nor
//! recently evicted; `desiredHealthy` follows `minAvailable` or `maxUnavailable` (percentages
//! rounded up); `disruptionsAllowed` is what is left over. Entries of `disruptedPods` (written by
//! the eviction subresource) are dropped once their pod is gone or after [`DELETION_TIMEOUT`].
//!
//! When the status cannot be computed, no disruption is allowed (condition `DisruptionAllowed`
//! False, reason `SyncFailed`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DynamicObject, GroupVersionKind, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use tracing::debug;

use crate::error::api;
use crate::pods::{self, controller_of};
use crate::{Ctx, Error, Result};

/// How long an evicted pod may take to be deleted before it counts again (upstream
/// `DeletionTimeout`).
const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_mins(2);
/// How soon a failed sync is retried.
const RETRY: Duration = Duration::from_secs(5);
/// The reporting component of the events.
const CONTROLLER: &str = "controllermanager";

const CONDITION: &str = "DisruptionAllowed";

struct State {
    client: Client,
    recorder: Recorder,
    pods: Store<Pod>,
    clock: crate::Clock,
}

/// Runs the disruption controller until shutdown.
pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    let client = ctx.client.clone();
    let (pod_store, writer) = reflector::store();
    let pod_events =
        reflector::reflector(writer, watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()))
            .default_backoff()
            .touched_objects();
    let controller =
        Controller::new(Api::<PodDisruptionBudget>::all(client.clone()), watcher::Config::default());
    let budgets = controller.store();
    let controller = controller
        .watches_stream(pod_events, move |pod: Pod| budgets_of(&budgets, &pod))
        // A manual clock (tests) makes every budget look at its disrupted pods again.
        .reconcile_all_on(ctx.clock.ticks());
    let reporter = Reporter { controller: CONTROLLER.into(), instance: None };
    let recorder = Recorder::new(client.clone(), reporter);
    let state = Arc::new(State { client, recorder, pods: pod_store, clock: ctx.clock.clone() });
    pods::drive(controller, reconcile, state, RETRY, ctx.shutdown.clone(), "disruption").await;
    Ok(())
}

/// The budgets in the pod's namespace that select it.
fn budgets_of(budgets: &Store<PodDisruptionBudget>, pod: &Pod) -> Vec<ObjectRef<PodDisruptionBudget>> {
    let ns = pod.namespace();
    budgets
        .state()
        .iter()
        .filter(|b| b.namespace() == ns)
        .filter(|b| selector_of(b).is_some_and(|s| pods::selects(&s, pod.labels())))
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

fn selector_of(pdb: &PodDisruptionBudget) -> Option<kube::core::Selector> {
    pods::selector(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()))
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, state: Arc<State>) -> Result<Action> {
    if state.pods.wait_until_ready().await.is_err() {
        return Err(Error::Invalid("the pod cache was dropped".into()));
    }
    match sync(&pdb, &state).await {
        Ok(action) => Ok(action),
        // A conflict is retried at once without giving up on the budget.
        Err(e) if is_conflict(&e) => Err(e),
        Err(e) => {
            debug!(error = %e, pdb = %pdb.name_any(), "disruption budget sync failed");
            fail_safe(&pdb, &state, &e).await?;
            Ok(Action::requeue(RETRY * 6))
        }
    }
}

fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Api { source: kube::Error::Api(s), .. } if s.code == 409)
}

/// Computes and writes the status; the action says when disrupted pods need another look.
async fn sync(pdb: &PodDisruptionBudget, state: &State) -> Result<Action> {
    let ns = pdb.namespace().unwrap_or_default();
    let selected: Vec<Arc<Pod>> = match selector_of(pdb) {
        Some(sel) => state
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && pods::selects(&sel, p.labels()))
            .collect(),
        None => Vec::new(),
    };
    if selected.is_empty() {
        pods::emit(&state.recorder, pdb, false, "NoPods", "No matching pods found".into()).await;
    }
    let counts = match expected_counts(state, pdb, &selected).await {
        Ok(c) => c,
        Err(e) => {
            let note = format!("Failed to calculate the number of expected pods: {e}");
            pods::emit(&state.recorder, pdb, true, "CalculateExpectedPodCountFailed", note).await;
            return Err(e);
        }
    };
    if counts.unmanaged > 0 {
        let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        let note = format!(
            "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
            selector.map(|s| format!("{s:?}")).unwrap_or_default()
        );
        pods::emit(&state.recorder, pdb, true, "UnmanagedPods", note).await;
    }
    let now = state.clock.now();
    let (disrupted, recheck) = disrupted_pods(pdb, &selected, now);
    let healthy = count_healthy(&selected, &disrupted, now);
    write_status(state, pdb, healthy, counts.desired, counts.expected, disrupted).await?;
    Ok(match recheck {
        Some(at) => Action::requeue(at.duration_since(now).unsigned_abs() + Duration::from_millis(100)),
        None => Action::await_change(),
    })
}

/// `expectedPods`, `desiredHealthy` and how many selected pods have no controller.
#[derive(Debug, PartialEq)]
struct Counts {
    expected: i32,
    desired: i32,
    unmanaged: usize,
}

/// Upstream `getExpectedPodCount`.
async fn expected_counts(state: &State, pdb: &PodDisruptionBudget, selected: &[Arc<Pod>]) -> Result<Counts> {
    let spec = pdb.spec.as_ref();
    let name = pdb.name_any();
    if let Some(max) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        let (expected, unmanaged) = expected_scale(state, selected).await?;
        let max = scaled(max, expected, &name)?;
        return Ok(Counts { expected, desired: (expected - max).max(0), unmanaged });
    }
    match spec.and_then(|s| s.min_available.as_ref()) {
        Some(IntOrString::Int(min)) => {
            Ok(Counts { expected: len_i32(selected.len()), desired: *min, unmanaged: 0 })
        }
        Some(min @ IntOrString::String(_)) => {
            let (expected, unmanaged) = expected_scale(state, selected).await?;
            Ok(Counts { expected, desired: scaled(min, expected, &name)?, unmanaged })
        }
        None => Ok(Counts { expected: 0, desired: 0, unmanaged: 0 }),
    }
}

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// An integer, or a percentage of `total` rounded up (upstream
/// `GetScaledValueFromIntOrPercent(_, total, true)`).
fn scaled(value: &IntOrString, total: i32, pdb: &str) -> Result<i32> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent = s
                .strip_suffix('%')
                .and_then(|p| p.parse::<i64>().ok())
                .ok_or_else(|| Error::Invalid(format!("invalid value for IntOrString: invalid type: string is not a percentage ({s:?} in {pdb})")))?;
            let value = (percent * i64::from(total) + 99).div_euclid(100);
            Ok(i32::try_from(value).unwrap_or(i32::MAX))
        }
    }
}

/// The sum of the scales of the controllers of `selected` and the number of pods without a
/// controller (upstream `getExpectedScale`).
async fn expected_scale(state: &State, selected: &[Arc<Pod>]) -> Result<(i32, usize)> {
    let mut scales: HashMap<String, i32> = HashMap::new();
    let mut unmanaged = 0;
    for pod in selected {
        let Some(owner) = controller_of(&pod.metadata) else {
            unmanaged += 1;
            continue;
        };
        if scales.contains_key(&owner.uid) {
            continue;
        }
        let ns = pod.namespace().unwrap_or_default();
        match scale_of(state, &ns, owner).await? {
            Some((uid, scale)) => {
                scales.insert(uid, scale);
            }
            None => return Err(Error::Invalid(format!("found no controllers for pod {:?}", pod.name_any()))),
        }
    }
    let total = scales.values().map(|&s| i64::from(s)).sum::<i64>();
    Ok((i32::try_from(total).unwrap_or(i32::MAX), unmanaged))
}

/// The group of an `apiVersion` (`""` for the core group).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The UID and desired scale of the controller `owner` (the Deployment, for a ReplicaSet a
/// Deployment controls); `None` when it does not exist or is another object by that name.
async fn scale_of(state: &State, ns: &str, owner: &OwnerReference) -> Result<Option<(String, i32)>> {
    let group = group_of(&owner.api_version);
    let apps = matches!(group, "apps" | "extensions");
    let get = |what: &'static str| api(format!("reading {what} {ns}/{}", owner.name));
    match owner.kind.as_str() {
        "ReplicaSet" if apps => {
            let rs = Api::<ReplicaSet>::namespaced(state.client.clone(), ns);
            let Some(rs) = rs.get_opt(&owner.name).await.map_err(get("replicaset"))? else { return Ok(None) };
            if rs.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
                return Ok(None);
            }
            match controller_of(&rs.metadata) {
                Some(dep) if dep.kind == "Deployment" => deployment_scale(state, ns, dep).await,
                _ => Ok(Some((owner.uid.clone(), rs.spec.and_then(|s| s.replicas).unwrap_or(1)))),
            }
        }
        "ReplicationController" if group.is_empty() => {
            let rcs = Api::<ReplicationController>::namespaced(state.client.clone(), ns);
            let Some(rc) = rcs.get_opt(&owner.name).await.map_err(get("replicationcontroller"))? else {
                return Ok(None);
            };
            let same = rc.metadata.uid.as_deref() == Some(owner.uid.as_str());
            Ok(same.then(|| (owner.uid.clone(), rc.spec.and_then(|s| s.replicas).unwrap_or(1))))
        }
        "StatefulSet" if apps => {
            let sets = Api::<StatefulSet>::namespaced(state.client.clone(), ns);
            let Some(set) = sets.get_opt(&owner.name).await.map_err(get("statefulset"))? else {
                return Ok(None);
            };
            let same = set.metadata.uid.as_deref() == Some(owner.uid.as_str());
            Ok(same.then(|| (owner.uid.clone(), set.spec.and_then(|s| s.replicas).unwrap_or(1))))
        }
        _ => generic_scale(state, ns, owner).await,
    }
}

async fn deployment_scale(state: &State, ns: &str, owner: &OwnerReference) -> Result<Option<(String, i32)>> {
    if !matches!(group_of(&owner.api_version), "apps" | "extensions") {
        return Ok(None);
    }
    let deployments = Api::<Deployment>::namespaced(state.client.clone(), ns);
    let found = deployments
        .get_opt(&owner.name)
        .await
        .map_err(api(format!("reading deployment {ns}/{}", owner.name)))?;
    Ok(found
        .filter(|d| d.metadata.uid.as_deref() == Some(owner.uid.as_str()))
        .map(|d| (owner.uid.clone(), d.spec.and_then(|s| s.replicas).unwrap_or(1))))
}

/// Any other controller through its `scale` subresource (upstream `getScaleController`).
async fn generic_scale(state: &State, ns: &str, owner: &OwnerReference) -> Result<Option<(String, i32)>> {
    let (group, version) = match owner.api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", owner.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &owner.kind);
    let (resource, caps) = kube::discovery::pinned_kind(&state.client, &gvk)
        .await
        .map_err(api(format!("finding the resource of kind {} {}", owner.api_version, owner.kind)))?;
    if !caps.subresources.iter().any(|(sub, _)| sub.plural == "scale") {
        let qualified =
            if group.is_empty() { resource.plural.clone() } else { format!("{}.{group}", resource.plural) };
        return Err(Error::Invalid(format!("{qualified} does not implement the scale subresource")));
    }
    let objects = Api::<DynamicObject>::namespaced_with(state.client.clone(), ns, &resource);
    match objects.get_scale(&owner.name).await {
        Ok(scale) => {
            let same = scale.metadata.uid.as_deref() == Some(owner.uid.as_str());
            Ok(same.then(|| (owner.uid.clone(), scale.spec.and_then(|s| s.replicas).unwrap_or(0))))
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(api(format!("reading the scale of {} {ns}/{}", owner.kind, owner.name))(e)),
    }
}

/// The entries of `status.disruptedPods` still pending (their pod exists, is not terminating
/// and the timeout has not passed) and when the first of them times out.
fn disrupted_pods(
    pdb: &PodDisruptionBudget,
    selected: &[Arc<Pod>],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let Some(recorded) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (kept, None);
    };
    for pod in selected {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.name_any();
        let Some(at) = recorded.get(&name) else { continue };
        let expires = at.0 + DELETION_TIMEOUT;
        if expires < now {
            debug!(pod = %name, pdb = %pdb.name_any(), "pod was expected to be deleted but it wasn't");
        } else {
            recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
            kept.insert(name, at.clone());
        }
    }
    (kept, recheck)
}

/// Ready pods that are not terminating and not about to be deleted by an eviction.
fn count_healthy(selected: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    let healthy = selected.iter().filter(|pod| {
        if pod.metadata.deletion_timestamp.is_some() {
            return false;
        }
        let evicted = disrupted.get(&pod.name_any()).is_some_and(|at| at.0 + DELETION_TIMEOUT > now);
        !evicted && pods::is_ready(pod)
    });
    len_i32(healthy.count())
}

/// Writes the computed status unless it is what the budget already says (upstream
/// `updatePdbStatus`).
async fn write_status(
    state: &State,
    pdb: &PodDisruptionBudget,
    healthy: i32,
    desired: i32,
    expected: i32,
    disrupted: BTreeMap<String, Time>,
) -> Result<()> {
    // No disruption while the budget selects nothing: its first pods may appear before the
    // next sync.
    let allowed = if expected <= 0 { 0 } else { (healthy - desired).max(0) };
    let generation = pdb.metadata.generation.unwrap_or(0);
    let old = pdb.status.clone().unwrap_or_default();
    let old_disrupted = old.disrupted_pods.clone().unwrap_or_default();
    let unchanged = old.current_healthy == healthy
        && old.desired_healthy == desired
        && old.expected_pods == expected
        && old.disruptions_allowed == allowed
        && old_disrupted == disrupted
        && old.observed_generation.unwrap_or(0) == generation
        && conditions_up_to_date(&old, generation);
    if unchanged {
        return Ok(());
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: Some(generation),
        conditions: old.conditions.clone(),
    };
    let (value, reason) =
        if allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
    set_condition(&mut status, value, reason, String::new(), state.clock.now());
    replace_status(state, pdb, status).await
}

/// Whether the DisruptionAllowed condition agrees with the counts (upstream
/// `ConditionsAreUpToDate`).
fn conditions_up_to_date(status: &PodDisruptionBudgetStatus, generation: i64) -> bool {
    let Some(c) = status.conditions.iter().flatten().find(|c| c.type_ == CONDITION) else { return false };
    if status.observed_generation.unwrap_or(0) != generation {
        return false;
    }
    if status.disruptions_allowed > 0 {
        c.status == "True" && c.reason == "SufficientPods"
    } else {
        c.status == "False" && c.reason == "InsufficientPods"
    }
}

/// Sets the DisruptionAllowed condition like `apimeta.SetStatusCondition`: the transition time
/// moves only when the status changes.
fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    value: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    let observed = status.observed_generation;
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == CONDITION) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Time(now);
            }
            c.status = value.into();
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = observed;
        }
        None => conditions.push(Condition {
            type_: CONDITION.into(),
            status: value.into(),
            reason: reason.into(),
            message,
            observed_generation: observed,
            last_transition_time: Time(now),
        }),
    }
}

/// Allows no disruption when the status cannot be computed (upstream `failSafe`).
async fn fail_safe(pdb: &PodDisruptionBudget, state: &State, e: &Error) -> Result<()> {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    set_condition(&mut status, "False", "SyncFailed", error_message(e), state.clock.now());
    replace_status(state, pdb, status).await
}

/// What an error says, the API server's message for an API error.
fn error_message(e: &Error) -> String {
    match e {
        Error::Api { source: kube::Error::Api(s), .. } => s.message.clone(),
        other => other.to_string(),
    }
}

/// Replaces the status of the version of `pdb` that was read: a racing write (an eviction)
/// makes this a conflict, and the next sync starts from the newer version.
async fn replace_status(
    state: &State,
    pdb: &PodDisruptionBudget,
    status: PodDisruptionBudgetStatus,
) -> Result<()> {
    let ns = pdb.namespace().unwrap_or_default();
    let name = pdb.name_any();
    let mut new = pdb.clone();
    new.status = Some(status);
    new.metadata.managed_fields = None;
    Api::<PodDisruptionBudget>::namespaced(state.client.clone(), &ns)
        .replace_status(&name, &PostParams::default(), &new)
        .await
        .map(drop)
        .map_err(api(format!("updating the status of poddisruptionbudget {ns}/{name}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, ready: bool, deleting: bool) -> Arc<Pod> {
        let mut p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap_or_default();
        if deleting {
            p.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        }
        Arc::new(p)
    }

    #[test]
    fn percentages_are_rounded_up() -> Result<()> {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3, "p")?, 2);
        assert_eq!(scaled(&IntOrString::String("10%".into()), 10, "p")?, 1);
        assert_eq!(scaled(&IntOrString::String("0%".into()), 10, "p")?, 0);
        assert_eq!(scaled(&IntOrString::Int(4), 10, "p")?, 4);
        assert!(scaled(&IntOrString::String("half".into()), 10, "p").is_err());
        Ok(())
    }

    #[test]
    fn evicted_and_terminating_pods_are_not_healthy() {
        let now = Timestamp::from_second(1_000).unwrap_or_default();
        let pods =
            vec![pod("a", true, false), pod("b", true, false), pod("c", true, true), pod("d", false, false)];
        let recent = Time(now - SignedDuration::from_secs(10));
        let disrupted = BTreeMap::from([("b".to_string(), recent)]);
        assert_eq!(count_healthy(&pods, &disrupted, now), 1);
        assert_eq!(count_healthy(&pods, &BTreeMap::new(), now), 2);
    }

    #[test]
    fn disrupted_pods_are_dropped_when_gone_terminating_or_timed_out() {
        let now = Timestamp::from_second(10_000).unwrap_or_default();
        let at = |ago: i64| Time(now - SignedDuration::from_secs(ago));
        let pdb = PodDisruptionBudget {
            metadata: ObjectMeta { name: Some("web".into()), ..ObjectMeta::default() },
            status: Some(PodDisruptionBudgetStatus {
                disrupted_pods: Some(BTreeMap::from([
                    ("fresh".to_string(), at(30)),
                    ("old".to_string(), at(300)),
                    ("gone".to_string(), at(1)),
                    ("leaving".to_string(), at(1)),
                ])),
                ..PodDisruptionBudgetStatus::default()
            }),
            ..PodDisruptionBudget::default()
        };
        let pods = vec![pod("fresh", true, false), pod("old", true, false), pod("leaving", true, true)];
        let (kept, recheck) = disrupted_pods(&pdb, &pods, now);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["fresh"]);
        assert_eq!(recheck, Some(now - SignedDuration::from_secs(30) + DELETION_TIMEOUT));
    }
}
