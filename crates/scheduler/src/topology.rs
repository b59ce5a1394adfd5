//! PodTopologySpread: `DoNotSchedule` constraints as a filter, `ScheduleAnyway` ones as a score.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod, TopologySpreadConstraint};

use crate::filters::{matches_node_selector_and_affinity, Failure};
use crate::selectors::{labels_of, optional_selector_matches, tolerated};
use crate::snapshot::Snapshot;

/// Upstream `ErrReasonConstraintsNotMatch`.
pub const SPREAD: &str = "node(s) didn't match pod topology spread constraints";
/// Upstream `ErrReasonNodeLabelNotMatch`.
pub const SPREAD_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

fn constraints<'a>(pod: &'a Pod, when: &'a str) -> impl Iterator<Item = &'a TopologySpreadConstraint> {
    let all = pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_deref()).unwrap_or_default();
    all.iter().filter(move |c| c.when_unsatisfiable == when)
}

/// Whether `node` counts as a domain for `c` (node affinity honoured, taints ignored, by default).
fn node_included(c: &TopologySpreadConstraint, pod: &Pod, node: &Node) -> bool {
    let affinity_ok =
        c.node_affinity_policy.as_deref() == Some("Ignore") || matches_node_selector_and_affinity(pod, node);
    let taints_ok = c.node_taints_policy.as_deref() != Some("Honor") || {
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
        let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
        taints
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .all(|t| tolerated(tolerations, t))
    };
    affinity_ok && taints_ok
}

/// The number of matching, non-terminating pods in the pod's namespace in each domain of `c`
/// (every included node's domain is present, possibly with zero).
fn domain_counts(c: &TopologySpreadConstraint, pod: &Pod, snapshot: &Snapshot) -> HashMap<String, i64> {
    let ns = pod.metadata.namespace.as_deref();
    let mut counts = HashMap::new();
    for info in &snapshot.nodes {
        let Some(value) = labels_of(&info.node.metadata).get(&c.topology_key) else { continue };
        if !node_included(c, pod, &info.node) {
            continue;
        }
        let matching = info
            .pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == ns && p.metadata.deletion_timestamp.is_none())
            .filter(|p| optional_selector_matches(c.label_selector.as_ref(), labels_of(&p.metadata)))
            .count();
        *counts.entry(value.clone()).or_insert(0) += matching as i64;
    }
    counts
}

/// The `DoNotSchedule` state for one pod over one snapshot.
#[derive(Debug)]
pub struct RequiredSpread<'a> {
    pod: &'a Pod,
    /// Each constraint with its domain counts and the global minimum.
    constraints: Vec<(&'a TopologySpreadConstraint, HashMap<String, i64>, i64)>,
}

impl<'a> RequiredSpread<'a> {
    /// Counts the domains of each `DoNotSchedule` constraint of `pod`.
    pub fn new(pod: &'a Pod, snapshot: &Snapshot) -> RequiredSpread<'a> {
        let constraints = constraints(pod, "DoNotSchedule")
            .map(|c| {
                let counts = domain_counts(c, pod, snapshot);
                let too_few = (counts.len() as i64) < i64::from(c.min_domains.unwrap_or(1));
                let min = if too_few { 0 } else { counts.values().copied().min().unwrap_or(0) };
                (c, counts, min)
            })
            .collect();
        RequiredSpread { pod, constraints }
    }

    /// The PodTopologySpread filter for `node`: placing the pod there must keep every skew
    /// within `maxSkew`.
    pub fn filter(&self, node: &Node) -> Option<Failure> {
        let labels = labels_of(&node.metadata);
        for (c, counts, min) in &self.constraints {
            let Some(value) = labels.get(&c.topology_key) else {
                return Some(Failure::unresolvable(SPREAD_MISSING_LABEL));
            };
            let self_match = i64::from(optional_selector_matches(
                c.label_selector.as_ref(),
                labels_of(&self.pod.metadata),
            ));
            let skew = counts.get(value).copied().unwrap_or(0) + self_match - min;
            if skew > i64::from(c.max_skew) {
                return Some(Failure::resolvable(SPREAD));
            }
        }
        None
    }
}

/// The `ScheduleAnyway` score of each node in `nodes` (0-100): fewer matching pods in the
/// node's domains scores higher, as upstream's normalisation does.
pub fn score(pod: &Pod, snapshot: &Snapshot, nodes: &[&Node]) -> Vec<i64> {
    let soft: Vec<_> = constraints(pod, "ScheduleAnyway").collect();
    if soft.is_empty() {
        return vec![0; nodes.len()];
    }
    let counted: Vec<_> = soft
        .iter()
        .map(|c| {
            let counts = domain_counts(c, pod, snapshot);
            let weight = ((counts.len() + 2) as f64).ln();
            (*c, counts, weight)
        })
        .collect();
    let raw: Vec<Option<f64>> = nodes
        .iter()
        .map(|n| {
            let labels = labels_of(&n.metadata);
            counted.iter().try_fold(0.0, |sum, (c, counts, weight)| {
                let value = labels.get(&c.topology_key)?;
                let cnt = counts.get(value).copied().unwrap_or(0) as f64;
                Some(sum + cnt * weight + f64::from(c.max_skew - 1))
            })
        })
        .collect();
    let known = raw.iter().flatten().copied();
    let max = known.clone().fold(f64::MIN, f64::max);
    let min = known.fold(f64::MAX, f64::min);
    raw.iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max <= 0.0 => 100,
            Some(s) => (100.0 * (max + min - s) / max) as i64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testutil::{node, pod};
    use serde_json::{json, Value};

    fn zoned(name: &str, zone: &str) -> Arc<Node> {
        Arc::new(node(name, json!({"metadata": {"labels": {"zone": zone}}})))
    }

    fn web_on(name: &str, node: &str) -> Arc<Pod> {
        Arc::new(pod(name, json!({"metadata": {"labels": {"app": "web"}}, "spec": {"nodeName": node}})))
    }

    fn spread(when: &str) -> Value {
        json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}}]})
    }

    #[test]
    fn a_domain_that_would_exceed_the_max_skew_is_filtered() {
        let s = Snapshot::new([zoned("a1", "a"), zoned("b1", "b")], [web_on("w0", "a1")]);
        let p = pod("w1", json!({"metadata": {"labels": {"app": "web"}}, "spec": spread("DoNotSchedule")}));
        let state = RequiredSpread::new(&p, &s);
        assert_eq!(state.filter(&s.nodes[0].node), Some(Failure::resolvable(SPREAD)));
        assert_eq!(state.filter(&s.nodes[1].node), None);
    }

    #[test]
    fn nodes_without_the_topology_label_are_unresolvable() {
        let bare = Arc::new(node("x", json!({})));
        let s = Snapshot::new([zoned("a1", "a"), bare], []);
        let p = pod("w1", json!({"metadata": {"labels": {"app": "web"}}, "spec": spread("DoNotSchedule")}));
        let state = RequiredSpread::new(&p, &s);
        assert_eq!(state.filter(&s.nodes[1].node), Some(Failure::unresolvable(SPREAD_MISSING_LABEL)));
        assert_eq!(state.filter(&s.nodes[0].node), None);
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        let s = Snapshot::new([zoned("a1", "a")], []);
        let mut spec = spread("DoNotSchedule");
        spec["topologySpreadConstraints"][0]["minDomains"] = json!(2);
        let p = pod("w1", json!({"metadata": {"labels": {"app": "web"}}, "spec": spec}));
        assert_eq!(RequiredSpread::new(&p, &s).filter(&s.nodes[0].node), None);
        let s = Snapshot::new([zoned("a1", "a")], [web_on("w0", "a1")]);
        assert_eq!(RequiredSpread::new(&p, &s).filter(&s.nodes[0].node), Some(Failure::resolvable(SPREAD)));
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let s = Snapshot::new([zoned("a1", "a"), zoned("b1", "b")], [web_on("w0", "a1"), web_on("w1", "a1")]);
        let p = pod("w2", json!({"metadata": {"labels": {"app": "web"}}, "spec": spread("ScheduleAnyway")}));
        let nodes: Vec<&Node> = s.nodes.iter().map(|n| &*n.node).collect();
        let scores = score(&p, &s, &nodes);
        assert!(scores[1] > scores[0], "{scores:?}");
    }
}
