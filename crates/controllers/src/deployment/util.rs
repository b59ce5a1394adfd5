//! The pure rules of the deployment controller, after upstream `deployment/util`: surge and
//! unavailability fenceposts, the pod-template hash, revision and replica annotations,
//! conditions, proportional scaling and the computed status.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

/// The label (and selector) that ties a ReplicaSet and its pods to one pod template.
pub(crate) const HASH_LABEL: &str = "pod-template-hash";
/// The revision of a ReplicaSet (and of its deployment: the newest).
pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
/// The earlier revisions of a ReplicaSet that was rolled back to.
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The deployment's replicas when the ReplicaSet was last scaled.
pub(crate) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The deployment's replicas plus surge when the ReplicaSet was last scaled.
pub(crate) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The longest revision-history annotation.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Condition reasons, as kubectl and users read them.
pub(crate) const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub(crate) const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub(crate) const RS_UPDATED: &str = "ReplicaSetUpdated";
pub(crate) const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub(crate) const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub(crate) const PAUSED: &str = "DeploymentPaused";
pub(crate) const RESUMED: &str = "DeploymentResumed";
pub(crate) const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub(crate) const PROGRESSING: &str = "Progressing";
pub(crate) const AVAILABLE: &str = "Available";
pub(crate) const REPLICA_FAILURE: &str = "ReplicaFailure";

/// `spec.replicas` of the deployment (1 when unset, as defaulted).
pub(crate) fn desired(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.replicas` of a ReplicaSet.
pub(crate) fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Sets `spec.replicas` of a ReplicaSet.
pub(crate) fn set_spec_replicas(rs: &mut ReplicaSet, n: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
}

fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    rs.status
        .as_ref()
        .map_or((0, 0, 0), |s| (s.replicas, s.ready_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0)))
}

/// `status.replicas` of a ReplicaSet.
pub(crate) fn actual_replicas(rs: &ReplicaSet) -> i32 {
    status_of(rs).0
}

/// `status.availableReplicas` of a ReplicaSet.
pub(crate) fn available_replicas(rs: &ReplicaSet) -> i32 {
    status_of(rs).2
}

/// The sum of `spec.replicas` over `rss`.
pub(crate) fn sum_spec(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| spec_replicas(rs)).sum()
}

/// Whether the deployment uses the RollingUpdate strategy (the default).
pub(crate) fn is_rolling(d: &Deployment) -> bool {
    let ty = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref());
    ty != Some("Recreate")
}

/// An int-or-percent scaled against `total`, percentages rounded up or down
/// (upstream `GetScaledValueFromIntOrPercent`).
pub(crate) fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let scaled = pct * i64::from(total);
            let v = if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) };
            Ok(i32::try_from(v).unwrap_or(i32::MAX))
        }
    }
}

/// (maxSurge, maxUnavailable) of a rolling deployment, never both zero
/// (upstream `ResolveFenceposts`); both zero for Recreate.
pub(crate) fn fenceposts(d: &Deployment) -> (i32, i32) {
    if !is_rolling(d) {
        return (0, 0);
    }
    let rolling = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let quarter = IntOrString::String("25%".into());
    let surge = rolling.and_then(|r| r.max_surge.clone()).unwrap_or_else(|| quarter.clone());
    let unavailable = rolling.and_then(|r| r.max_unavailable.clone()).unwrap_or(quarter);
    let desired = desired(d);
    let surge = scaled_value(&surge, desired, true).unwrap_or(0);
    let unavailable = scaled_value(&unavailable, desired, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

/// How many pods above `replicas` a rolling update may run.
pub(crate) fn max_surge(d: &Deployment) -> i32 {
    fenceposts(d).0
}

/// How many of `replicas` may be unavailable during a rolling update.
pub(crate) fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || desired(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(desired(d))
}

/// The pod-template hash: FNV-1a (32 bit) of the template and the collision count, encoded
/// with the alphabet of upstream `SafeEncodeString`.
pub(crate) fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u32 = 0x811c_9dc5;
    let mut write = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    write(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(c) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&c.to_le_bytes());
        write(&bytes);
    }
    h.to_string().bytes().map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()])).collect()
}

fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            if let Some(m) = t.metadata.as_mut() {
                m.labels = None;
            }
        }
    }
    t
}

/// Whether two pod templates are equal ignoring the pod-template-hash label.
pub(crate) fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// The revision annotation of an object (0 when missing or not a number).
pub(crate) fn revision(annotations: &BTreeMap<String, String>) -> i64 {
    annotations.get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// The highest revision among `rss`.
pub(crate) fn max_revision(rss: &[&ReplicaSet]) -> i64 {
    rss.iter().map(|rs| revision(rs.annotations())).max().unwrap_or(0)
}

fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        "kubectl.kubernetes.io/last-applied-configuration"
            | REVISION
            | REVISION_HISTORY
            | DESIRED_REPLICAS
            | MAX_REPLICAS
            | "deprecated.deployment.rollback.to"
    )
}

/// Copies the deployment's annotations (but not its own bookkeeping) to the new ReplicaSet,
/// raises its revision to `new_revision` keeping the old one in the revision history, and, for a
/// ReplicaSet about to be created, sets the replica annotations. Whether anything changed.
pub(crate) fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.annotations() {
        if skip_copy(k) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = annotations.get(REVISION).cloned();
    let old_revision = match old.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(r)) => r,
        Some(Err(_)) => return changed,
    };
    if old_revision < new_revision {
        annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = annotations.get(REVISION_HISTORY).cloned().unwrap_or_default();
            let mut revisions: Vec<&str> = history.split(',').filter(|r| !r.is_empty()).collect();
            revisions.push(&old);
            let mut len = revisions.iter().map(|r| r.len() + 1).sum::<usize>().saturating_sub(1);
            while len > MAX_REVISION_HISTORY_CHARS && revisions.len() > 1 {
                len -= revisions.remove(0).len() + 1;
            }
            annotations.insert(REVISION_HISTORY.into(), revisions.join(","));
        }
    }
    if !exists && set_replicas_annotations(rs, desired(d), desired(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// Sets the desired-replicas and max-replicas annotations; whether they changed.
pub(crate) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if annotations.get(k) != Some(&v) {
            annotations.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

/// Whether the replica annotations of `rs` differ from `desired` and `max`.
pub(crate) fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.annotations();
    a.get(DESIRED_REPLICAS) != Some(&desired.to_string()) || a.get(MAX_REPLICAS) != Some(&max.to_string())
}

/// The desired-replicas annotation of `rs`.
pub(crate) fn desired_annotation(rs: &ReplicaSet) -> Option<i32> {
    rs.annotations().get(DESIRED_REPLICAS)?.parse().ok()
}

fn max_annotation(rs: &ReplicaSet) -> Option<i32> {
    rs.annotations().get(MAX_REPLICAS)?.parse().ok()
}

/// How many replicas the new ReplicaSet should have now (upstream `NewRSNewReplicas`).
pub(crate) fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new: &ReplicaSet) -> i32 {
    if !is_rolling(d) {
        return desired(d);
    }
    let current = sum_spec(all);
    let max_total = desired(d) + max_surge(d);
    if current >= max_total {
        return spec_replicas(new);
    }
    let up = (max_total - current).min(desired(d) - spec_replicas(new));
    spec_replicas(new) + up
}

/// Whether `rs` runs all the deployment's replicas, available (upstream `IsSaturated`).
pub(crate) fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    desired_annotation(rs) == Some(desired(d))
        && spec_replicas(rs) == desired(d)
        && available_replicas(rs) == desired(d)
}

/// The share of `to_add` that `rs` gets in a proportional scale (upstream `GetProportion`).
pub(crate) fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if spec_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

fn fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if desired(d) == 0 {
        return -spec_replicas(rs);
    }
    let deployment_replicas = desired(d) + max_surge(d);
    let annotated =
        max_annotation(rs).unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(spec_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    // Rounded half away from zero, like Go's math.Round.
    (size.round() as i32) - spec_replicas(rs)
}

fn created(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Oldest first, then by name (upstream `ReplicaSetsByCreationTimestamp`).
pub(crate) fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    created(a).cmp(&created(b)).then_with(|| a.name_any().cmp(&b.name_any()))
}

/// Larger first, ties newer first (upstream `ReplicaSetsBySizeNewer`).
pub(crate) fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| by_creation(b, a))
}

/// Larger first, ties older first (upstream `ReplicaSetsBySizeOlder`).
pub(crate) fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| by_creation(a, b))
}

/// Lower revision first, then oldest (upstream `ReplicaSetsByRevision`).
pub(crate) fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    revision(a.annotations()).cmp(&revision(b.annotations())).then_with(|| by_creation(a, b))
}

/// The condition of `type_` in `status`.
pub(crate) fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == type_)
}

/// A condition stamped `now`.
pub(crate) fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets `cond` unless one with the same status and reason is there; keeps the transition time
/// when the status does not change (upstream `SetDeploymentCondition`).
pub(crate) fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = condition(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_);
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

/// Removes the condition of `type_`.
pub(crate) fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = status.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
        if c.is_empty() {
            status.conditions = None;
        }
    }
}

/// The progress deadline, unless unset or "never" (MaxInt32).
pub(crate) fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec.as_ref()?.progress_deadline_seconds.filter(|s| *s != i32::MAX)
}

fn counts(s: &DeploymentStatus) -> (i32, i32, i32, i32) {
    (
        s.replicas.unwrap_or(0),
        s.updated_replicas.unwrap_or(0),
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    )
}

/// Whether every replica is updated and available and the spec observed.
pub(crate) fn is_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let (replicas, updated, _, available) = counts(s);
    let n = desired(d);
    updated == n
        && replicas == n
        && available == n
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Whether `new` shows progress over the deployment's current status.
pub(crate) fn is_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let (o_replicas, o_updated, o_ready, o_available) = counts(&old);
    let (n_replicas, n_updated, n_ready, n_available) = counts(new);
    n_updated > o_updated
        || (n_replicas - n_updated) < (o_replicas - o_updated)
        || n_ready > o_ready
        || n_available > o_available
}

/// Whether the rollout has made no progress for longer than its deadline.
pub(crate) fn is_timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else { return false };
    let Some(cond) = condition(s, PROGRESSING) else { return false };
    match cond.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => {
            let from = cond.last_update_time.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0);
            from + SignedDuration::from_secs(i64::from(deadline)) < now
        }
    }
}

/// The status computed from the ReplicaSets, with the Available condition
/// (upstream `calculateStatus`).
pub(crate) fn calculate_status(
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let available: i32 = all.iter().map(|rs| available_replicas(rs)).sum();
    let total = sum_spec(all);
    let nz = |n: i32| (n != 0).then_some(n);
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation.filter(|g| *g != 0),
        replicas: nz(all.iter().map(|rs| actual_replicas(rs)).sum()),
        updated_replicas: nz(new.map_or(0, actual_replicas)),
        ready_replicas: nz(all.iter().map(|rs| status_of(rs).1).sum()),
        available_replicas: nz(available),
        unavailable_replicas: nz((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions,
        terminating_replicas: None,
    };
    if available >= desired(d) - max_unavailable(d) {
        let msg = "Deployment has minimum availability.".to_string();
        set_condition(&mut status, new_condition(AVAILABLE, "True", "MinimumReplicasAvailable", msg, now));
    } else {
        let msg = "Deployment does not have minimum availability.".to_string();
        set_condition(&mut status, new_condition(AVAILABLE, "False", "MinimumReplicasUnavailable", msg, now));
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, RollingUpdateDeployment,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    fn rs(replicas: i32, max: Option<i32>) -> ReplicaSet {
        let annotations = max.map(|m| BTreeMap::from([(MAX_REPLICAS.to_string(), m.to_string())]));
        ReplicaSet {
            metadata: ObjectMeta { annotations, ..ObjectMeta::default() },
            spec: Some(ReplicaSetSpec { replicas: Some(replicas), ..ReplicaSetSpec::default() }),
            status: None,
        }
    }

    #[test]
    fn percentages_round_surge_up_and_unavailability_down() {
        let d = deployment(10, pct("25%"), pct("25%"));
        assert_eq!(fenceposts(&d), (3, 2));
        let d = deployment(3, pct("25%"), pct("25%"));
        assert_eq!(fenceposts(&d), (1, 0));
        let d = deployment(3, IntOrString::Int(0), pct("10%"));
        assert_eq!(fenceposts(&d), (0, 1), "never both zero");
        let d = deployment(2, IntOrString::Int(1), IntOrString::Int(5));
        assert_eq!(max_unavailable(&d), 2, "capped at replicas");
        assert!(scaled_value(&pct("x%"), 10, true).is_err());
    }

    #[test]
    fn the_template_hash_depends_on_the_template_and_the_collision_count() {
        let a = PodTemplateSpec::default();
        let b = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("a".into(), "b".into())])),
                ..ObjectMeta::default()
            }),
            spec: None,
        };
        assert_eq!(template_hash(&a, None), template_hash(&a, None));
        assert_ne!(template_hash(&a, None), template_hash(&b, None));
        assert_ne!(template_hash(&a, None), template_hash(&a, Some(1)));
        assert!(template_hash(&a, None).bytes().all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c)));
    }

    #[test]
    fn templates_equal_apart_from_the_hash_label_are_equal() {
        let labels = |h: Option<&str>| {
            let mut l = BTreeMap::from([("app".to_string(), "web".to_string())]);
            if let Some(h) = h {
                l.insert(HASH_LABEL.into(), h.into());
            }
            Some(PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(l), ..ObjectMeta::default() }),
                spec: None,
            })
        };
        assert!(equal_ignore_hash(
            &labels(Some("abc")).unwrap_or_default(),
            &labels(None).unwrap_or_default()
        ));
    }

    #[test]
    fn rolling_back_to_an_old_replica_set_moves_its_revision_to_the_history() {
        let d = deployment(3, IntOrString::Int(1), IntOrString::Int(0));
        let mut old = rs(0, None);
        old.metadata.annotations = Some(BTreeMap::from([(REVISION.to_string(), "1".to_string())]));
        assert!(set_new_rs_annotations(&d, &mut old, 3, true));
        assert_eq!(old.annotations().get(REVISION).map(String::as_str), Some("3"));
        assert_eq!(old.annotations().get(REVISION_HISTORY).map(String::as_str), Some("1"));
        assert!(!set_new_rs_annotations(&d, &mut old, 3, true), "a second sync changes nothing");
    }

    #[test]
    fn a_new_replica_set_gets_replica_annotations_and_the_deployment_annotations() {
        let mut d = deployment(4, IntOrString::Int(1), IntOrString::Int(0));
        d.metadata.annotations = Some(BTreeMap::from([
            ("kubernetes.io/change-cause".to_string(), "v2".to_string()),
            (REVISION.to_string(), "7".to_string()),
        ]));
        let mut new = rs(0, None);
        assert!(set_new_rs_annotations(&d, &mut new, 1, false));
        let a = new.annotations();
        assert_eq!(a.get("kubernetes.io/change-cause").map(String::as_str), Some("v2"));
        assert_eq!(a.get(REVISION).map(String::as_str), Some("1"));
        assert_eq!(a.get(DESIRED_REPLICAS).map(String::as_str), Some("4"));
        assert_eq!(a.get(MAX_REPLICAS).map(String::as_str), Some("5"));
    }

    #[test]
    fn scaling_up_mid_rollout_is_shared_in_proportion_to_size() {
        // 10 replicas (surge 3) scaled to 20 (surge 5): the sets had 8 and 5 of max 13.
        let d = deployment(20, pct("25%"), pct("25%"));
        let old = rs(8, Some(13));
        let new = rs(5, Some(13));
        let to_add = 25 - 13;
        let a = proportion(&old, &d, to_add, 0);
        let b = proportion(&new, &d, to_add, a);
        assert_eq!((a, b), (7, 5));
    }

    #[test]
    fn scaling_down_mid_rollout_takes_from_each_set_in_proportion() {
        // 20 replicas (surge 3) scaled back to 10: the sets had 14 and 9 of max 23.
        let d = deployment(10, IntOrString::Int(3), IntOrString::Int(2));
        let old = rs(14, Some(23));
        let new = rs(9, Some(23));
        let to_add = 13 - 23;
        let a = proportion(&old, &d, to_add, 0);
        let b = proportion(&new, &d, to_add, a);
        assert_eq!((a, b), (-6, -4));
    }

    #[test]
    fn the_new_replica_set_grows_only_within_the_surge() {
        let d = deployment(3, IntOrString::Int(1), IntOrString::Int(0));
        let old = rs(3, None);
        let new = rs(0, None);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 1);
        let new = rs(1, None);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 1);
        let old = rs(2, None);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 2);
    }

    #[test]
    fn a_rollout_times_out_only_after_the_deadline_without_progress() {
        let mut d = deployment(1, IntOrString::Int(1), IntOrString::Int(0));
        if let Some(s) = d.spec.as_mut() {
            s.progress_deadline_seconds = Some(60);
        }
        let t0 = Timestamp::from_second(1_000).unwrap_or_default();
        let mut s = DeploymentStatus::default();
        set_condition(&mut s, new_condition(PROGRESSING, "True", RS_UPDATED, String::new(), t0));
        assert!(!is_timed_out(&d, &s, t0 + SignedDuration::from_secs(60)));
        assert!(is_timed_out(&d, &s, t0 + SignedDuration::from_secs(61)));
    }
}
