//! The node scores of the default profile that look at one node at a time; each is 0-100
//! (upstream `MaxNodeScore`) after normalisation over the feasible nodes.

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::resources::{non_zero_requests, pod_requests};
use crate::selectors::{node_term_matches, tolerated};
use crate::snapshot::NodeInfo;

/// The highest score a plugin gives a node.
pub const MAX_SCORE: i64 = 100;

/// The cpu and memory the node would have requested with `pod` on it (with scoring defaults for
/// pods that request nothing), each with the node's allocatable.
fn fractions(pod: &Pod, info: &NodeInfo) -> [(i128, i128); 2] {
    let (cpu, mem) = non_zero_requests(pod);
    [
        (info.non_zero_requested.0 + cpu, info.allocatable.get("cpu")),
        (info.non_zero_requested.1 + mem, info.allocatable.get("memory")),
    ]
}

/// NodeResourcesFit with the LeastAllocated strategy: the average free share of cpu and memory
/// once the pod is placed.
pub fn least_allocated(pod: &Pod, info: &NodeInfo) -> i64 {
    let per: Vec<i128> = fractions(pod, info)
        .iter()
        .map(|&(req, cap)| if cap == 0 || req > cap { 0 } else { (cap - req) * 100 / cap })
        .collect();
    (per.iter().sum::<i128>() / per.len() as i128) as i64
}

/// NodeResourcesBalancedAllocation: nodes whose cpu and memory fractions stay close score high
/// (from the actual requests, as upstream's `useRequested`).
pub fn balanced_allocation(pod: &Pod, info: &NodeInfo) -> i64 {
    let asks = pod_requests(pod);
    let f: Vec<f64> = ["cpu", "memory"]
        .map(|r| (info.requested.get(r) + asks.get(r), info.allocatable.get(r)))
        .iter()
        .map(|&(req, cap)| if cap == 0 { 1.0 } else { (req as f64 / cap as f64).min(1.0) })
        .collect();
    let std = (f[0] - f[1]).abs() / 2.0;
    ((1.0 - std) * MAX_SCORE as f64) as i64
}

/// NodeAffinity: the sum of the weights of the preferred terms the node matches (normalised
/// later).
pub fn preferred_node_affinity(pod: &Pod, node: &Node) -> i64 {
    let na = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()).and_then(|a| a.node_affinity.as_ref());
    let preferred = na.and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_deref());
    preferred
        .unwrap_or_default()
        .iter()
        .filter(|t| node_term_matches(&t.preference, node))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// TaintToleration: the number of `PreferNoSchedule` taints the pod does not tolerate
/// (fewer is better; reversed in normalisation).
pub fn intolerable_preferred_taints(pod: &Pod, node: &Node) -> i64 {
    let tolerations: Vec<_> = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|t| t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "PreferNoSchedule"))
        .cloned()
        .collect();
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    taints.iter().filter(|t| t.effect == "PreferNoSchedule" && !tolerated(&tolerations, t)).count() as i64
}

/// Scales raw scores so the best is [`MAX_SCORE`] (upstream `DefaultNormalizeScore`); with
/// `reverse`, the lowest raw score is the best.
pub fn normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|&s| match (max, reverse) {
            (0, true) => MAX_SCORE,
            (0, false) => 0,
            (max, true) => MAX_SCORE - s * MAX_SCORE / max,
            (max, false) => s * MAX_SCORE / max,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testutil::{node, pod};
    use serde_json::json;

    fn asking(cpu: &str, mem: &str) -> Pod {
        pod(
            "p",
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}),
        )
    }

    #[test]
    fn emptier_nodes_score_higher_on_least_allocated() {
        let empty = NodeInfo::new(Arc::new(node("a", json!({}))));
        let mut busy = NodeInfo::new(Arc::new(node("b", json!({}))));
        busy.add_pod(Arc::new(asking("2", "4Gi")));
        let p = asking("1", "2Gi");
        assert_eq!(least_allocated(&p, &empty), 75);
        assert_eq!(least_allocated(&p, &busy), 25);
    }

    #[test]
    fn balanced_nodes_score_higher_than_lopsided_ones() {
        let info = NodeInfo::new(Arc::new(node("a", json!({}))));
        assert_eq!(balanced_allocation(&asking("2", "4Gi"), &info), 100);
        assert!(balanced_allocation(&asking("4", "1Mi"), &info) < 60);
    }

    #[test]
    fn preferred_node_affinity_sums_matching_weights() {
        let n = node("a", json!({"metadata": {"labels": {"disk": "ssd"}}}));
        let p = pod(
            "p",
            json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 7, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}]}}}}),
        );
        assert_eq!(preferred_node_affinity(&p, &n), 5);
    }

    #[test]
    fn untolerated_prefer_no_schedule_taints_count_against_a_node() {
        let n = node(
            "a",
            json!({"spec": {"taints": [{"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}]}}),
        );
        let p = pod("p", json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}}));
        assert_eq!(intolerable_preferred_taints(&p, &n), 1);
        assert_eq!(normalize(&[2, 1, 0], true), vec![0, 50, 100]);
        assert_eq!(normalize(&[0, 5, 10], false), vec![0, 50, 100]);
    }
}
