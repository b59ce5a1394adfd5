//! Whether a node's kubelet is alive, and what the controller writes when it is not: the
//! conditions it sets to Unknown and the taints that follow the node's conditions.

use std::collections::{HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

/// How long a node may go without a heartbeat before it is Unknown (upstream
/// `nodeMonitorGracePeriod`).
pub(crate) const GRACE: SignedDuration = SignedDuration::from_secs(40);

/// The conditions set to Unknown when the kubelet stops posting status.
const WATCHED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

pub(crate) const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub(crate) const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The NoSchedule taint of each condition when True (upstream `TaintNodesByCondition`).
const PRESSURE_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    ("NetworkUnavailable", "node.kubernetes.io/network-unavailable"),
];

/// The heartbeats last seen of each node and when (on the controller's clock) they last moved:
/// the controller's own time decides, so clock skew between node and controller does not.
#[derive(Debug, Default)]
pub(crate) struct Health {
    probes: HashMap<String, Probe>,
}

#[derive(Debug)]
struct Probe {
    heartbeat: (Option<Timestamp>, Option<Timestamp>),
    at: Timestamp,
}

impl Health {
    /// Records the heartbeats of `node` (its Lease's renewTime, its Ready condition's
    /// lastHeartbeatTime) and says whether they have been still for longer than [`GRACE`].
    pub(crate) fn observe(&mut self, node: &Node, lease: Option<&Lease>, now: Timestamp) -> bool {
        let renewed = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref()).map(|t| t.0);
        let posted = condition(node, "Ready").and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0);
        let heartbeat = (renewed, posted);
        let probe = self.probes.entry(node.name_any()).or_insert(Probe { heartbeat, at: now });
        if probe.heartbeat != heartbeat {
            *probe = Probe { heartbeat, at: now };
        }
        now > probe.at + GRACE
    }

    /// Forgets the nodes not in `names` (deleted).
    pub(crate) fn forget_except(&mut self, names: impl IntoIterator<Item = String>) {
        let keep: HashSet<String> = names.into_iter().collect();
        self.probes.retain(|n, _| keep.contains(n));
    }
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// The status of the node's Ready condition, if it has one.
pub(crate) fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// The conditions of a node whose kubelet stopped posting status: Ready and the pressure
/// conditions Unknown (added when missing), the others as they are; `None` when they already are.
pub(crate) fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let mut changed = false;
    for type_ in WATCHED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// The taints this controller keeps, `(key, effect)`, that the node's conditions and spec call for.
fn wanted(node: &Node) -> Vec<(&'static str, &'static str)> {
    let mut wanted = Vec::new();
    match ready_status(node) {
        Some("False") => wanted.extend([(NOT_READY, "NoExecute"), (NOT_READY, "NoSchedule")]),
        Some("Unknown") => wanted.extend([(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")]),
        _ => {}
    }
    for (type_, key) in PRESSURE_TAINTS {
        if condition(node, type_).is_some_and(|c| c.status == "True") {
            wanted.push((key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push((UNSCHEDULABLE, "NoSchedule"));
    }
    wanted
}

/// Whether this controller owns the taint `(key, effect)`.
fn managed(key: &str, effect: &str) -> bool {
    match effect {
        "NoExecute" => key == NOT_READY || key == UNREACHABLE,
        "NoSchedule" => {
            key == NOT_READY
                || key == UNREACHABLE
                || key == UNSCHEDULABLE
                || PRESSURE_TAINTS.iter().any(|(_, k)| *k == key)
        }
        _ => false,
    }
}

/// The node's taints with the controller's own in line with its conditions: others and those
/// still called for kept as they are (with their `timeAdded`), new ones added at `now`;
/// `None` when nothing changes.
pub(crate) fn desired_taints(node: &Node, now: Timestamp) -> Option<Vec<Taint>> {
    let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let wanted = wanted(node);
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| !managed(&t.key, &t.effect) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !taints.iter().any(|t| t.key == key && t.effect == effect) {
            taints.push(Taint {
                key: key.into(),
                effect: effect.into(),
                value: None,
                time_added: Some(Time(now)),
            });
        }
    }
    (taints != current).then_some(taints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn node(value: serde_json::Value) -> Node {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_node_is_stale_only_after_the_grace_period_without_a_heartbeat() {
        let n = node(json!({"metadata": {"name": "n1"}}));
        let mut health = Health::default();
        let t0 = at("2026-01-01T00:00:00Z");
        assert!(!health.observe(&n, None, t0));
        assert!(!health.observe(&n, None, t0 + GRACE));
        assert!(health.observe(&n, None, t0 + GRACE + SignedDuration::from_secs(1)));
        let lease: Lease = serde_json::from_value(
            json!({"metadata": {"name": "n1"}, "spec": {"renewTime": "2026-01-01T00:00:50.000000Z"}}),
        )
        .unwrap();
        assert!(!health.observe(&n, Some(&lease), t0 + GRACE + SignedDuration::from_secs(2)));
    }

    #[test]
    fn unknown_conditions_keep_the_heartbeat_and_add_missing_ones() {
        let n = node(json!({"metadata": {"name": "n1"}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z"},
            {"type": "NetworkUnavailable", "status": "False"},
        ]}}));
        let now = at("2026-01-01T00:01:00Z");
        let conditions = unknown_conditions(&n, now).unwrap();
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
        assert_eq!(ready.last_heartbeat_time.as_ref().map(|t| t.0), Some(at("2026-01-01T00:00:00Z")));
        assert!(conditions.iter().any(|c| c.type_ == "PIDPressure" && c.status == "Unknown"));
        assert!(conditions.iter().any(|c| c.type_ == "NetworkUnavailable" && c.status == "False"));
        let n = node(json!({"metadata": {"name": "n1"}, "status": {"conditions": conditions}}));
        assert!(unknown_conditions(&n, now).is_none());
    }

    #[test]
    fn taints_follow_conditions_and_keep_foreign_ones_and_their_times() {
        let n = node(json!({"metadata": {"name": "n1"},
        "spec": {"unschedulable": true, "taints": [
            {"key": "example.com/own", "effect": "NoSchedule"},
            {"key": NOT_READY, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"},
        ]},
        "status": {"conditions": [
            {"type": "Ready", "status": "Unknown"},
            {"type": "DiskPressure", "status": "True"},
        ]}}));
        let now = at("2026-01-01T00:01:00Z");
        let taints = desired_taints(&n, now).unwrap();
        let keys: Vec<_> = taints.iter().map(|t| (t.key.as_str(), t.effect.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("example.com/own", "NoSchedule"),
                (UNREACHABLE, "NoExecute"),
                (UNREACHABLE, "NoSchedule"),
                ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                (UNSCHEDULABLE, "NoSchedule"),
            ]
        );
        assert!(taints.iter().skip(1).all(|t| t.time_added.as_ref().map(|t| t.0) == Some(now)));
        let healthy = node(json!({"metadata": {"name": "n1"}, "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        let taints = desired_taints(&healthy, now).unwrap();
        assert_eq!(taints.len(), 1);
        assert_eq!(taints[0].key, "example.com/own");
    }
}
