//! Which nodes a daemon pod should run on: node selector, required node affinity and taints
//! against tolerations (upstream `NodeShouldRunDaemonPod`), and how a daemon pod is pinned to its
//! node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
    Taint, Toleration,
};
use kube::ResourceExt;

/// The tolerations the controller adds to every daemon pod (upstream `AddOrUpdateDaemonPodTolerations`).
const DEFAULT_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// Adds the default daemon tolerations that `spec` does not have yet.
pub(crate) fn add_default_tolerations(spec: &mut PodSpec) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in DEFAULT_TOLERATIONS {
        let present =
            tolerations.iter().any(|t| t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect));
        if !present {
            tolerations.push(Toleration {
                key: Some((*key).into()),
                operator: Some("Exists".into()),
                effect: Some((*effect).into()),
                ..Toleration::default()
            });
        }
    }
    if spec.host_network == Some(true) {
        let key = "node.kubernetes.io/network-unavailable";
        if !tolerations.iter().any(|t| t.key.as_deref() == Some(key)) {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Toleration::default()
            });
        }
    }
}

/// Replaces the required node affinity of `spec` with one that selects only `node` by name
/// (upstream `ReplaceDaemonSetPodNodeNameNodeAffinity`); the scheduler then binds the pod there.
pub(crate) fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        match_expressions: None,
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution =
        Some(NodeSelector { node_selector_terms: vec![term] });
}

/// The node a daemon pod is for: its `nodeName`, else the node its affinity pins it to.
pub(crate) fn node_of(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let required = spec.affinity.as_ref()?.node_affinity.as_ref()?;
    let terms = &required.required_during_scheduling_ignored_during_execution.as_ref()?.node_selector_terms;
    terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|r| {
        (r.key == "metadata.name" && r.operator == "In")
            .then(|| r.values.as_ref()?.first().cloned())
            .flatten()
    })
}

/// Whether a pod with `spec` (the daemon set's template, default tolerations added) should run
/// on `node`: selected by it, and every NoSchedule and NoExecute taint tolerated.
pub(crate) fn should_run(spec: &PodSpec, node: &Node) -> bool {
    selected(spec, node) && tolerated(spec, node, &["NoSchedule", "NoExecute"])
}

/// Whether a daemon pod already on `node` may stay there (upstream `shouldContinueRunning`): a
/// NoSchedule taint added later keeps new pods off but does not evict, a NoExecute one does.
pub(crate) fn should_continue_running(spec: &PodSpec, node: &Node) -> bool {
    selected(spec, node) && tolerated(spec, node, &["NoExecute"])
}

/// Whether the node selector and the required node affinity of `spec` select `node`.
fn selected(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.labels();
    let selector_ok = spec.node_selector.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
        .is_none_or(|sel| sel.node_selector_terms.iter().any(|t| term_matches(t, labels, &node.name_any())));
    selector_ok && affinity_ok
}

/// Whether the tolerations of `spec` tolerate every taint of `node` with one of `effects`.
fn tolerated(spec: &PodSpec, node: &Node, effects: &[&str]) -> bool {
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .all(|taint| tolerations.iter().any(|tol| tolerates(tol, taint)))
}

/// A term matches when all its requirements do; an empty term matches nothing.
fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let fields_map = BTreeMap::from([("metadata.name".to_string(), name.to_string())]);
    exprs.iter().all(|r| requirement_matches(r, labels))
        && fields.iter().all(|r| requirement_matches(r, &fields_map))
}

fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&r.key);
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(|v| number(v)), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((value.and_then(|v| number(v)), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// Whether `tol` tolerates `taint` (upstream `ToleratesTaint`).
fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if tol.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or_default();
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        "Equal" => {
            key == taint.key
                && tol.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint { key: (*k).into(), effect: (*e).into(), ..Taint::default() })
                        .collect(),
                ),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn default_tolerations_let_daemon_pods_onto_unschedulable_and_not_ready_nodes() {
        let mut spec = PodSpec::default();
        let cordoned = node("a", &[], &[("node.kubernetes.io/unschedulable", "NoSchedule")]);
        let not_ready = node("b", &[], &[("node.kubernetes.io/not-ready", "NoExecute")]);
        assert!(!should_run(&spec, &cordoned));
        add_default_tolerations(&mut spec);
        assert!(should_run(&spec, &cordoned));
        assert!(should_run(&spec, &not_ready));
        assert!(!should_run(&spec, &node("c", &[], &[("dedicated", "NoSchedule")])));
        assert!(should_run(&spec, &node("d", &[], &[("soft", "PreferNoSchedule")])));
    }

    #[test]
    fn a_later_no_schedule_taint_keeps_the_running_pod_but_no_execute_evicts_it() {
        let mut spec = PodSpec::default();
        add_default_tolerations(&mut spec);
        let no_schedule = node("a", &[], &[("dedicated", "NoSchedule")]);
        let no_execute = node("b", &[], &[("dedicated", "NoExecute")]);
        assert!(!should_run(&spec, &no_schedule));
        assert!(should_continue_running(&spec, &no_schedule));
        assert!(!should_continue_running(&spec, &no_execute));
    }

    #[test]
    fn node_selector_and_required_affinity_both_have_to_match() {
        let mut spec = PodSpec {
            node_selector: Some(BTreeMap::from([("disk".to_string(), "ssd".to_string())])),
            ..PodSpec::default()
        };
        assert!(should_run(&spec, &node("a", &[("disk", "ssd")], &[])));
        assert!(!should_run(&spec, &node("b", &[("disk", "hdd")], &[])));
        pin_to_node(&mut spec, "a");
        assert!(should_run(&spec, &node("a", &[("disk", "ssd")], &[])));
        assert!(!should_run(&spec, &node("c", &[("disk", "ssd")], &[])));
    }

    #[test]
    fn a_pinned_pod_names_its_node() {
        let mut spec = PodSpec::default();
        pin_to_node(&mut spec, "n1");
        let pod = Pod { spec: Some(spec), ..Pod::default() };
        assert_eq!(node_of(&pod).as_deref(), Some("n1"));
    }
}
