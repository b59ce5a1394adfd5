//! One scheduling cycle for one pod: run every filter on every node, score the feasible ones
//! and pick the best (ties at random), or explain why no node fits in upstream's words.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use rand::Rng;

use crate::filters::{self, Failure};
use crate::interpod::{self, RequiredAffinity};
use crate::resources::{pod_requests, Resources};
use crate::scores;
use crate::snapshot::{NodeInfo, Snapshot};
use crate::topology::{self, RequiredSpread};

/// Upstream `ErrNoNodesAvailable`.
pub const NO_NODES: &str = "no nodes available to schedule pods";

/// The filter state of one pod over one snapshot (what upstream's PreFilter computes once).
#[derive(Debug)]
pub struct Filters<'a> {
    pod: &'a Pod,
    requests: Resources,
    affinity: RequiredAffinity<'a>,
    spread: RequiredSpread<'a>,
}

impl<'a> Filters<'a> {
    /// Prepares the filters of `pod` over `snapshot`.
    pub fn new(pod: &'a Pod, snapshot: &'a Snapshot) -> Filters<'a> {
        Filters {
            pod,
            requests: pod_requests(pod),
            affinity: RequiredAffinity::new(pod, snapshot),
            spread: RequiredSpread::new(pod, snapshot),
        }
    }

    /// Runs the filters on `info` in upstream's order and stops at the first that fails.
    pub fn check(&self, info: &NodeInfo) -> Option<Failure> {
        let (pod, node) = (self.pod, &*info.node);
        filters::node_unschedulable(pod, node)
            .or_else(|| filters::node_name(pod, node))
            .or_else(|| filters::taint_toleration(pod, node))
            .or_else(|| filters::node_affinity(pod, node))
            .or_else(|| filters::node_ports(pod, info))
            .or_else(|| filters::node_resources_fit(&self.requests, info))
            .or_else(|| self.spread.filter(node))
            .or_else(|| self.affinity.filter(node))
    }
}

/// Why a pod fits no node: each node's failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// The number of nodes considered.
    pub num_nodes: usize,
    /// The failure of each node, by node name.
    pub failures: BTreeMap<String, Failure>,
}

impl Diagnosis {
    /// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {k: v}.` as
    /// upstream's `FitError` words it (counts per reason, sorted as strings), followed by
    /// `post_filter` (the preemption outcome) when there is one.
    pub fn message(&self, post_filter: Option<&str>) -> String {
        if self.num_nodes == 0 {
            return NO_NODES.to_string();
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for reason in self.failures.values().flat_map(|f| &f.reasons) {
            *counts.entry(reason).or_default() += 1;
        }
        let mut reasons: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
        reasons.sort();
        let mut msg = format!("0/{} nodes are available:", self.num_nodes);
        if !reasons.is_empty() {
            msg += &format!(" {}.", reasons.join(", "));
        }
        if let Some(post) = post_filter {
            msg += &format!(" {post}");
        }
        msg
    }
}

/// The default profile's score weights: TaintToleration 3, NodeAffinity 2, NodeResourcesFit 1,
/// NodeResourcesBalancedAllocation 1, InterPodAffinity 2, PodTopologySpread 2.
fn total_scores(pod: &Pod, snapshot: &Snapshot, feasible: &[&NodeInfo]) -> Vec<i64> {
    let nodes: Vec<&Node> = feasible.iter().map(|i| &*i.node).collect();
    let taints = scores::normalize(
        &nodes.iter().map(|n| scores::intolerable_preferred_taints(pod, n)).collect::<Vec<_>>(),
        true,
    );
    let affinity = scores::normalize(
        &nodes.iter().map(|n| scores::preferred_node_affinity(pod, n)).collect::<Vec<_>>(),
        false,
    );
    let pod_affinity = interpod::score(pod, snapshot, &nodes);
    let spread = topology::score(pod, snapshot, &nodes);
    (0..feasible.len())
        .map(|i| {
            3 * taints[i]
                + 2 * affinity[i]
                + scores::least_allocated(pod, feasible[i])
                + scores::balanced_allocation(pod, feasible[i])
                + 2 * pod_affinity[i]
                + 2 * spread[i]
        })
        .collect()
}

/// Picks the node for `pod`: the best-scoring feasible node (ties broken at random), or the
/// diagnosis of every node when none fits.
pub fn schedule(pod: &Pod, snapshot: &Snapshot, rng: &mut impl Rng) -> Result<String, Diagnosis> {
    let filters = Filters::new(pod, snapshot);
    let mut diagnosis = Diagnosis { num_nodes: snapshot.nodes.len(), failures: BTreeMap::new() };
    let mut feasible = Vec::new();
    for info in &snapshot.nodes {
        match filters.check(info) {
            None => feasible.push(info),
            Some(f) => {
                diagnosis.failures.insert(info.name().to_string(), f);
            }
        }
    }
    match feasible.len() {
        0 => Err(diagnosis),
        1 => Ok(feasible[0].name().to_string()),
        _ => {
            let scores = total_scores(pod, snapshot, &feasible);
            let best = scores.iter().copied().max().unwrap_or(0);
            let top: Vec<usize> = (0..feasible.len()).filter(|&i| scores[i] == best).collect();
            let pick = top[rng.random_range(0..top.len())];
            Ok(feasible[pick].name().to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testutil::{node, pod};
    use serde_json::json;

    fn asking(name: &str, cpu: &str) -> Pod {
        pod(name, json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
    }

    fn control_plane(name: &str) -> Arc<Node> {
        Arc::new(node(
            name,
            json!({"spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
        ))
    }

    #[test]
    fn the_message_counts_each_reason_sorted_as_upstream_does() {
        let small = Arc::new(node("a", json!({"status": {"allocatable": {"cpu": "1"}}})));
        let s = Snapshot::new([small, control_plane("b"), control_plane("c")], []);
        let err = schedule(&asking("p", "2"), &s, &mut rand::rng()).unwrap_err();
        assert_eq!(
            err.message(Some("preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: 3 Preemption is not \
             helpful for scheduling."
        );
    }

    #[test]
    fn every_reason_of_a_node_is_counted() {
        let tiny = Arc::new(node(
            "a",
            json!({"status": {"allocatable": {"cpu": "1", "memory": "1Ki", "pods": "0"}}}),
        ));
        let s = Snapshot::new([tiny], []);
        let p = pod(
            "p",
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "2", "memory": "1Mi"}}}]}}),
        );
        let err = schedule(&p, &s, &mut rand::rng()).unwrap_err();
        assert_eq!(
            err.message(None),
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 Too many pods."
        );
    }

    #[test]
    fn no_nodes_is_its_own_message() {
        let err = schedule(&asking("p", "1"), &Snapshot::default(), &mut rand::rng()).unwrap_err();
        assert_eq!(err.message(None), NO_NODES);
    }

    #[test]
    fn the_emptiest_feasible_node_wins() {
        let mut s = Snapshot::new([Arc::new(node("a", json!({}))), Arc::new(node("b", json!({})))], []);
        let mut busy = asking("busy", "3");
        busy.spec.as_mut().unwrap().node_name = Some("a".into());
        s.add_pod(Arc::new(busy));
        for _ in 0..10 {
            assert_eq!(schedule(&asking("p", "100m"), &s, &mut rand::rng()), Ok("b".to_string()));
        }
    }

    #[test]
    fn ties_are_broken_at_random() {
        let s = Snapshot::new([Arc::new(node("a", json!({}))), Arc::new(node("b", json!({})))], []);
        let picks: std::collections::HashSet<String> =
            (0..64).filter_map(|_| schedule(&asking("p", "1"), &s, &mut rand::rng()).ok()).collect();
        assert_eq!(picks.len(), 2, "both equal nodes are chosen sometimes: {picks:?}");
    }

    #[test]
    fn preferred_node_affinity_outweighs_a_slightly_emptier_node() {
        let ssd = Arc::new(node("ssd", json!({"metadata": {"labels": {"disk": "ssd"}}})));
        let s = Snapshot::new([Arc::new(node("plain", json!({}))), ssd], []);
        let p = pod(
            "p",
            json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}}),
        );
        assert_eq!(schedule(&p, &s, &mut rand::rng()), Ok("ssd".to_string()));
    }

    #[test]
    fn prefer_no_schedule_taints_steer_pods_away() {
        let soft =
            Arc::new(node("soft", json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}})));
        let s = Snapshot::new([soft, Arc::new(node("clean", json!({})))], []);
        assert_eq!(schedule(&pod("p", json!({})), &s, &mut rand::rng()), Ok("clean".to_string()));
    }
}
