//! Taint-based eviction (upstream taint eviction controller) and the pod conditions the node
//! lifecycle controller writes.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Whether toleration `t` tolerates `taint` (upstream `Toleration.ToleratesTaint`).
fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    let exists = t.operator.as_deref() == Some("Exists");
    if key.is_empty() {
        return exists;
    }
    key == taint.key && (exists || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""))
}

/// When `pod` is to be evicted for the NoExecute taints among `taints`: `now` for a taint it does
/// not tolerate, else the earliest `timeAdded + tolerationSeconds` of the tolerations used
/// (a toleration without seconds tolerates for ever); `None` when never. A taint without
/// `timeAdded` counts from `now`.
pub(crate) fn evict_at(pod: &Pod, taints: &[Taint], now: Timestamp) -> Option<Timestamp> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    let mut at: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let used: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Some(now);
        }
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        let seconds = used.iter().filter_map(|t| t.toleration_seconds).min();
        if let Some(seconds) = seconds {
            let deadline = added.saturating_add(SignedDuration::from_secs(seconds.max(0))).unwrap_or(added);
            at = Some(at.map_or(deadline, |a| a.min(deadline)));
        }
    }
    at
}

/// The conditions of `pod` with Ready False (upstream `MarkPodsNotReady`); `None` when it has no
/// Ready condition or it is False already.
pub(crate) fn not_ready_conditions(pod: &Pod, now: Timestamp) -> Option<Vec<PodCondition>> {
    let mut conditions = pod.status.as_ref()?.conditions.clone()?;
    let ready = conditions.iter_mut().find(|c| c.type_ == "Ready")?;
    if ready.status == "False" {
        return None;
    }
    ready.status = "False".into();
    ready.last_transition_time = Some(Time(now));
    Some(conditions)
}

/// The conditions of `pod` with `DisruptionTarget` True, reason `DeletionByTaintManager`.
pub(crate) fn disruption_conditions(pod: &Pod, now: Timestamp) -> Vec<PodCondition> {
    let mut conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByTaintManager".into()),
        message: Some("Taint manager: deleting due to NoExecute taint".into()),
        last_transition_time: Some(Time(now)),
        ..PodCondition::default()
    });
    conditions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"containers": [], "tolerations": tolerations}}))
        .unwrap()
    }

    fn unreachable(added: &str) -> Taint {
        Taint {
            key: "node.kubernetes.io/unreachable".into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(Time(at(added))),
        }
    }

    #[test]
    fn a_pod_without_a_toleration_is_evicted_now() {
        let now = at("2026-01-01T00:10:00Z");
        assert_eq!(evict_at(&pod(json!([])), &[unreachable("2026-01-01T00:00:00Z")], now), Some(now));
    }

    #[test]
    fn toleration_seconds_count_from_the_time_the_taint_was_added() {
        let p = pod(json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 30}]));
        let now = at("2026-01-01T00:00:10Z");
        assert_eq!(
            evict_at(&p, &[unreachable("2026-01-01T00:00:00Z")], now),
            Some(at("2026-01-01T00:00:30Z"))
        );
    }

    #[test]
    fn a_toleration_without_seconds_keeps_the_pod_for_ever() {
        let p = pod(json!([{"operator": "Exists"}]));
        let now = at("2026-01-01T00:00:10Z");
        assert_eq!(evict_at(&p, &[unreachable("2026-01-01T00:00:00Z")], now), None);
        let no_schedule = Taint { effect: "NoSchedule".into(), ..unreachable("2026-01-01T00:00:00Z") };
        assert_eq!(evict_at(&pod(json!([])), &[no_schedule], now), None);
    }

    #[test]
    fn a_toleration_for_another_value_does_not_tolerate() {
        let p = pod(json!([{"key": "node.kubernetes.io/unreachable", "value": "x", "effect": "NoExecute"}]));
        let now = at("2026-01-01T00:00:10Z");
        assert_eq!(evict_at(&p, &[unreachable("2026-01-01T00:00:00Z")], now), Some(now));
    }
}
