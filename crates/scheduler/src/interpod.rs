//! InterPodAffinity: required pod affinity and anti-affinity (a filter, including the
//! anti-affinity of pods already running) and the preferred terms (a score).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, WeightedPodAffinityTerm};

use crate::filters::Failure;
use crate::selectors::{label_selector_matches, labels_of, optional_selector_matches, Labels};
use crate::snapshot::Snapshot;

/// Upstream `ErrReasonExistingAntiAffinityRulesNotMatch`.
pub const EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
/// Upstream `ErrReasonAffinityRulesNotMatch`.
pub const AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// Upstream `ErrReasonAntiAffinityRulesNotMatch`.
pub const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";

/// The weight of an existing pod's required affinity to the incoming pod in scoring (upstream
/// `hardPodAffinityWeight` default).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// A topology domain: a label key and its value on some node.
type Pair = (String, String);

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("")
}

/// Whether `term`, written in a pod of namespace `owner_ns`, selects `target`: its namespace is
/// listed or selected (the owner's own when neither is given) and its labels match.
pub fn term_matches(
    term: &PodAffinityTerm,
    owner_ns: &str,
    target: &Pod,
    ns_labels: &HashMap<String, Labels>,
) -> bool {
    let ns = namespace(target);
    let listed = term.namespaces.as_deref().unwrap_or_default();
    let in_namespace = match &term.namespace_selector {
        None if listed.is_empty() => ns == owner_ns,
        None => listed.iter().any(|n| n == ns),
        Some(sel) => {
            listed.iter().any(|n| n == ns)
                || ns_labels.get(ns).is_some_and(|l| label_selector_matches(sel, l))
                || (sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty()))
        }
    };
    in_namespace && optional_selector_matches(term.label_selector.as_ref(), labels_of(&target.metadata))
}

fn affinity_terms(pod: &Pod) -> &[PodAffinityTerm] {
    let a = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()).and_then(|a| a.pod_affinity.as_ref());
    a.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref()).unwrap_or_default()
}

fn anti_affinity_terms(pod: &Pod) -> &[PodAffinityTerm] {
    let a = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()).and_then(|a| a.pod_anti_affinity.as_ref());
    a.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref()).unwrap_or_default()
}

fn preferred_affinity(pod: &Pod) -> &[WeightedPodAffinityTerm] {
    let a = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()).and_then(|a| a.pod_affinity.as_ref());
    a.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref()).unwrap_or_default()
}

fn preferred_anti_affinity(pod: &Pod) -> &[WeightedPodAffinityTerm] {
    let a = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()).and_then(|a| a.pod_anti_affinity.as_ref());
    a.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref()).unwrap_or_default()
}

fn pair_of(node: &Node, key: &str) -> Option<Pair> {
    labels_of(&node.metadata).get(key).map(|v| (key.to_string(), v.clone()))
}

/// The required-terms state for one pod over one snapshot (upstream's PreFilter state).
#[derive(Debug)]
pub struct RequiredAffinity<'a> {
    pod: &'a Pod,
    /// Domains where a running pod's anti-affinity selects the incoming pod.
    existing_anti: HashMap<Pair, usize>,
    /// Domains holding pods that match all of the incoming pod's affinity terms.
    affinity: HashMap<Pair, usize>,
    /// Domains holding pods that match one of the incoming pod's anti-affinity terms.
    anti: HashMap<Pair, usize>,
    ns_labels: &'a HashMap<String, Labels>,
}

impl<'a> RequiredAffinity<'a> {
    /// Counts the domains of every pod in `snapshot` that the terms involve.
    pub fn new(pod: &'a Pod, snapshot: &'a Snapshot) -> RequiredAffinity<'a> {
        let ns_labels = &snapshot.namespace_labels;
        let mut state = RequiredAffinity {
            pod,
            existing_anti: HashMap::new(),
            affinity: HashMap::new(),
            anti: HashMap::new(),
            ns_labels,
        };
        let own_ns = namespace(pod);
        for (info, existing) in snapshot.pods() {
            for t in anti_affinity_terms(existing) {
                if term_matches(t, namespace(existing), pod, ns_labels) {
                    if let Some(p) = pair_of(&info.node, &t.topology_key) {
                        *state.existing_anti.entry(p).or_default() += 1;
                    }
                }
            }
            let terms = affinity_terms(pod);
            if !terms.is_empty() && terms.iter().all(|t| term_matches(t, own_ns, existing, ns_labels)) {
                for t in terms {
                    if let Some(p) = pair_of(&info.node, &t.topology_key) {
                        *state.affinity.entry(p).or_default() += 1;
                    }
                }
            }
            for t in anti_affinity_terms(pod) {
                if term_matches(t, own_ns, existing, ns_labels) {
                    if let Some(p) = pair_of(&info.node, &t.topology_key) {
                        *state.anti.entry(p).or_default() += 1;
                    }
                }
            }
        }
        state
    }

    /// The InterPodAffinity filter for `node`: the pod's affinity, its anti-affinity, then the
    /// anti-affinity of the pods already running (upstream's order).
    pub fn filter(&self, node: &Node) -> Option<Failure> {
        let labels = labels_of(&node.metadata);
        let in_domain = |counts: &HashMap<Pair, usize>, key: &str| {
            labels.get(key).is_some_and(|v| counts.get(&(key.to_string(), v.clone())).is_some_and(|c| *c > 0))
        };
        let terms = affinity_terms(self.pod);
        if terms.iter().any(|t| !labels.contains_key(&t.topology_key)) {
            return Some(Failure::unresolvable(AFFINITY));
        }
        if !terms.iter().all(|t| in_domain(&self.affinity, &t.topology_key)) {
            // The first pod of a group that is affine to itself may go anywhere.
            let own_ns = namespace(self.pod);
            let self_affine = terms.iter().all(|t| term_matches(t, own_ns, self.pod, self.ns_labels));
            if !(self.affinity.is_empty() && self_affine) {
                return Some(Failure::unresolvable(AFFINITY));
            }
        }
        if anti_affinity_terms(self.pod).iter().any(|t| in_domain(&self.anti, &t.topology_key)) {
            return Some(Failure::resolvable(ANTI_AFFINITY));
        }
        if self.existing_anti.keys().any(|(k, v)| labels.get(k) == Some(v)) {
            return Some(Failure::resolvable(EXISTING_ANTI_AFFINITY));
        }
        None
    }
}

/// The preferred InterPodAffinity score of each node in `nodes` for `pod` (0-100): the weights
/// of the pod's preferred terms (anti-affinity counting against) for the pods in each node's
/// domains, plus the terms of those pods that select the incoming pod.
pub fn score(pod: &Pod, snapshot: &Snapshot, nodes: &[&Node]) -> Vec<i64> {
    let ns_labels = &snapshot.namespace_labels;
    let own_ns = namespace(pod);
    let mut domains: HashMap<Pair, i64> = HashMap::new();
    let mut add = |node: &Node, key: &str, w: i64| {
        if let Some(p) = pair_of(node, key) {
            *domains.entry(p).or_default() += w;
        }
    };
    for (info, existing) in snapshot.pods() {
        let ex_ns = namespace(existing);
        for w in preferred_affinity(pod) {
            if term_matches(&w.pod_affinity_term, own_ns, existing, ns_labels) {
                add(&info.node, &w.pod_affinity_term.topology_key, i64::from(w.weight));
            }
        }
        for w in preferred_anti_affinity(pod) {
            if term_matches(&w.pod_affinity_term, own_ns, existing, ns_labels) {
                add(&info.node, &w.pod_affinity_term.topology_key, -i64::from(w.weight));
            }
        }
        for t in affinity_terms(existing) {
            if term_matches(t, ex_ns, pod, ns_labels) {
                add(&info.node, &t.topology_key, HARD_POD_AFFINITY_WEIGHT);
            }
        }
        for w in preferred_affinity(existing) {
            if term_matches(&w.pod_affinity_term, ex_ns, pod, ns_labels) {
                add(&info.node, &w.pod_affinity_term.topology_key, i64::from(w.weight));
            }
        }
        for w in preferred_anti_affinity(existing) {
            if term_matches(&w.pod_affinity_term, ex_ns, pod, ns_labels) {
                add(&info.node, &w.pod_affinity_term.topology_key, -i64::from(w.weight));
            }
        }
    }
    let raw: Vec<i64> = nodes
        .iter()
        .map(|n| {
            let labels = labels_of(&n.metadata);
            domains.iter().filter(|((k, v), _)| labels.get(k) == Some(v)).map(|(_, w)| *w).sum()
        })
        .collect();
    let (min, max) = (raw.iter().copied().min().unwrap_or(0), raw.iter().copied().max().unwrap_or(0));
    raw.iter().map(|s| if max > min { 100 * (s - min) / (max - min) } else { 0 }).collect()
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

    fn on(name: &str, node: &str, app: &str, spec: Value) -> Arc<Pod> {
        let mut spec = spec;
        spec["nodeName"] = json!(node);
        Arc::new(pod(name, json!({"metadata": {"labels": {"app": app}}, "spec": spec})))
    }

    fn term(kind: &str, app: &str, key: &str) -> Value {
        json!({"affinity": {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}})
    }

    fn snapshot(pods: Vec<Arc<Pod>>) -> Snapshot {
        Snapshot::new([zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")], pods)
    }

    #[test]
    fn anti_affinity_keeps_a_pod_out_of_domains_with_matching_pods() {
        let s = snapshot(vec![on("web-0", "a1", "web", json!({}))]);
        let p = pod(
            "web-1",
            json!({"metadata": {"labels": {"app": "web"}}, "spec": term("podAntiAffinity", "web", "zone")}),
        );
        let state = RequiredAffinity::new(&p, &s);
        assert_eq!(state.filter(&s.nodes[1].node), Some(Failure::resolvable(ANTI_AFFINITY)));
        assert_eq!(state.filter(&s.nodes[2].node), None);
    }

    #[test]
    fn running_pods_anti_affinity_repels_the_incoming_pod() {
        let s =
            snapshot(vec![on("db-0", "a1", "db", term("podAntiAffinity", "web", "kubernetes.io/hostname"))]);
        let p = pod("web-1", json!({"metadata": {"labels": {"app": "web"}}}));
        let state = RequiredAffinity::new(&p, &s);
        assert_eq!(state.filter(&s.nodes[0].node), Some(Failure::resolvable(EXISTING_ANTI_AFFINITY)));
        assert_eq!(state.filter(&s.nodes[1].node), None);
    }

    #[test]
    fn affinity_needs_a_matching_pod_in_the_domain() {
        let s = snapshot(vec![on("db-0", "b1", "db", json!({}))]);
        let p = pod("web-1", json!({"spec": term("podAffinity", "db", "zone")}));
        let state = RequiredAffinity::new(&p, &s);
        assert_eq!(state.filter(&s.nodes[0].node), Some(Failure::unresolvable(AFFINITY)));
        assert_eq!(state.filter(&s.nodes[2].node), None);
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_goes_anywhere() {
        let s = snapshot(vec![]);
        let p = pod(
            "web-0",
            json!({"metadata": {"labels": {"app": "web"}}, "spec": term("podAffinity", "web", "zone")}),
        );
        assert_eq!(RequiredAffinity::new(&p, &s).filter(&s.nodes[0].node), None);
        let other = pod("web-0", json!({"spec": term("podAffinity", "web", "zone")}));
        assert!(RequiredAffinity::new(&other, &s).filter(&s.nodes[0].node).is_some());
    }

    #[test]
    fn terms_only_select_pods_in_their_namespaces() {
        let mut elsewhere = (*on("db-0", "a1", "db", json!({}))).clone();
        elsewhere.metadata.namespace = Some("other".into());
        let s = snapshot(vec![Arc::new(elsewhere)]);
        let p = pod("web-1", json!({"spec": term("podAffinity", "db", "zone")}));
        assert!(RequiredAffinity::new(&p, &s).filter(&s.nodes[0].node).is_some());
        let mut all = term("podAffinity", "db", "zone");
        all["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
            ["namespaceSelector"] = json!({});
        let p = pod("web-1", json!({"spec": all}));
        assert_eq!(RequiredAffinity::new(&p, &s).filter(&s.nodes[0].node), None);
    }

    #[test]
    fn a_namespace_selector_selects_namespaces_by_their_labels() {
        let mut elsewhere = (*on("db-0", "a1", "db", json!({}))).clone();
        elsewhere.metadata.namespace = Some("team-a".into());
        let mut s = snapshot(vec![Arc::new(elsewhere)]);
        let mut t = term("podAffinity", "db", "zone");
        t["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
            ["namespaceSelector"] = json!({"matchLabels": {"team": "a"}});
        let p = pod("web-1", json!({"spec": t}));
        assert!(RequiredAffinity::new(&p, &s).filter(&s.nodes[0].node).is_some(), "unlabelled namespace");
        s.namespace_labels.insert("team-a".into(), [("team".to_string(), "a".to_string())].into());
        assert_eq!(RequiredAffinity::new(&p, &s).filter(&s.nodes[0].node), None);
    }

    #[test]
    fn preferred_terms_score_domains_with_matching_pods_higher() {
        let s = snapshot(vec![on("db-0", "b1", "db", json!({}))]);
        let p = pod(
            "web-1",
            json!({"spec": {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}}]}}}}),
        );
        let nodes: Vec<&Node> = s.nodes.iter().map(|n| &*n.node).collect();
        assert_eq!(score(&p, &s, &nodes), vec![0, 0, 100]);
    }
}
