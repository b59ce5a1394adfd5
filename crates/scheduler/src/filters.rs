//! The node filters of the default profile that look at one node at a time, in upstream's order:
//! NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit.
//! Each returns `None` when the pod may run on the node, or the [`Failure`] with upstream's
//! reason strings (they end up in the pod's `PodScheduled` condition and events verbatim).

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

use crate::resources::Resources;
use crate::selectors::{labels_of, node_term_matches, tolerated};
use crate::snapshot::NodeInfo;

/// Why a node cannot take a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The reasons, as upstream words them (`Insufficient cpu`).
    pub reasons: Vec<String>,
    /// Whether evicting pods cannot help (upstream `UnschedulableAndUnresolvable`).
    pub unresolvable: bool,
}

impl Failure {
    /// A failure that preemption could resolve.
    pub fn resolvable(reason: impl Into<String>) -> Failure {
        Failure { reasons: vec![reason.into()], unresolvable: false }
    }

    /// A failure that no preemption resolves.
    pub fn unresolvable(reason: impl Into<String>) -> Failure {
        Failure { reasons: vec![reason.into()], unresolvable: true }
    }
}

/// Upstream `ErrReasonUnschedulable`.
pub const UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// Upstream NodeName's reason.
pub const NODE_NAME: &str = "node(s) didn't match the requested node name";
/// Upstream NodeAffinity's `ErrReasonPod`.
pub const NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
/// Upstream NodePorts' `ErrReason`.
pub const NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
/// Upstream NodeResourcesFit's reason when the pod count is exhausted.
pub const TOO_MANY_PODS: &str = "Too many pods";

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default()
}

fn taints(node: &Node) -> &[Taint] {
    node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default()
}

/// NodeUnschedulable: a cordoned node takes only pods tolerating its unschedulable taint.
pub fn node_unschedulable(pod: &Pod, node: &Node) -> Option<Failure> {
    let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    };
    (cordoned && !tolerated(tolerations(pod), &taint)).then(|| Failure::unresolvable(UNSCHEDULABLE))
}

/// NodeName: a pod naming a node runs only there.
pub fn node_name(pod: &Pod, node: &Node) -> Option<Failure> {
    let wanted = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())?;
    (Some(wanted) != node.metadata.name.as_deref()).then(|| Failure::unresolvable(NODE_NAME))
}

/// TaintToleration: every `NoSchedule`/`NoExecute` taint must be tolerated; the first one that is
/// not is named.
pub fn taint_toleration(pod: &Pod, node: &Node) -> Option<Failure> {
    let taint = taints(node)
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerated(tolerations(pod), t))?;
    Some(Failure::unresolvable(format!(
        "node(s) had untolerated taint {{{}: {}}}",
        taint.key,
        taint.value.as_deref().unwrap_or("")
    )))
}

/// Whether `node` satisfies the pod's `nodeSelector` and required node affinity.
pub fn matches_node_selector_and_affinity(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return true };
    let labels = labels_of(&node.metadata);
    let selector_ok = spec.node_selector.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    selector_ok && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| node_term_matches(t, node)))
}

/// NodeAffinity: `nodeSelector` and `requiredDuringSchedulingIgnoredDuringExecution`.
pub fn node_affinity(pod: &Pod, node: &Node) -> Option<Failure> {
    (!matches_node_selector_and_affinity(pod, node)).then(|| Failure::unresolvable(NODE_AFFINITY))
}

/// The (hostIP, protocol, hostPort) triples a pod claims on its node.
/// A host-network pod's ports are host ports (the API default `hostPort = containerPort`).
fn host_ports(pod: &Pod) -> impl Iterator<Item = (&str, &str, i32)> {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let containers =
        spec.into_iter().flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()));
    containers.flat_map(|c| c.ports.iter().flatten()).filter_map(move |p| {
        let port = p.host_port.or(host_network.then_some(p.container_port)).filter(|p| *p > 0)?;
        let ip = p.host_ip.as_deref().filter(|ip| !ip.is_empty()).unwrap_or("0.0.0.0");
        Some((ip, p.protocol.as_deref().unwrap_or("TCP"), port))
    })
}

/// NodePorts: no host port of the pod may already be taken on the node (`0.0.0.0` conflicts
/// with every address).
pub fn node_ports(pod: &Pod, info: &NodeInfo) -> Option<Failure> {
    let wanted: Vec<_> = host_ports(pod).collect();
    if wanted.is_empty() {
        return None;
    }
    let conflict = info.pods.iter().flat_map(|p| host_ports(p)).any(|(ip, proto, port)| {
        wanted.iter().any(|&(wip, wproto, wport)| {
            wport == port && wproto == proto && (wip == ip || wip == "0.0.0.0" || ip == "0.0.0.0")
        })
    });
    conflict.then(|| Failure::resolvable(NODE_PORTS))
}

/// NodeResourcesFit: one more pod must fit in the node's pod count, and every requested
/// resource in what the node's pods leave of its allocatable.
pub fn node_resources_fit(requests: &Resources, info: &NodeInfo) -> Option<Failure> {
    let mut reasons = Vec::new();
    let allowed_pods = info.allocatable.get("pods") / 1000;
    if info.pods.len() as i128 + 1 > allowed_pods {
        reasons.push(TOO_MANY_PODS.to_string());
    }
    // Upstream's order: cpu, memory, ephemeral-storage, then the others by name.
    const FIRST: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];
    let others = requests.0.keys().map(String::as_str).filter(|n| !FIRST.contains(n) && *n != "pods");
    for name in FIRST.into_iter().chain(others) {
        let wanted = requests.get(name);
        if wanted > 0 && wanted > info.allocatable.get(name) - info.requested.get(name) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    (!reasons.is_empty()).then_some(Failure { reasons, unresolvable: false })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::resources::pod_requests;
    use crate::testutil::{node, pod};
    use serde_json::json;

    #[test]
    fn a_cordoned_node_takes_only_pods_tolerating_it() {
        let n = node("n", json!({"spec": {"unschedulable": true}}));
        assert_eq!(node_unschedulable(&pod("p", json!({})), &n), Some(Failure::unresolvable(UNSCHEDULABLE)));
        let tolerant = pod(
            "p",
            json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]}}),
        );
        assert_eq!(node_unschedulable(&tolerant, &n), None);
    }

    #[test]
    fn a_pod_naming_a_node_fits_only_that_node() {
        let p = pod("p", json!({"spec": {"nodeName": "a"}}));
        assert_eq!(node_name(&p, &node("a", json!({}))), None);
        assert_eq!(node_name(&p, &node("b", json!({}))), Some(Failure::unresolvable(NODE_NAME)));
    }

    #[test]
    fn untolerated_no_schedule_taints_are_named_in_the_reason() {
        let n = node(
            "n",
            json!({"spec": {"taints": [{"key": "soft", "effect": "PreferNoSchedule"},
                {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
        );
        let failure = taint_toleration(&pod("p", json!({})), &n).unwrap();
        assert_eq!(
            failure.reasons,
            vec!["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]
        );
        let tolerant = pod(
            "p",
            json!({"spec": {"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}}),
        );
        assert_eq!(taint_toleration(&tolerant, &n), None);
        let n = node("n", json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoExecute"}]}}));
        assert_eq!(
            taint_toleration(&pod("p", json!({})), &n).unwrap().reasons,
            vec!["node(s) had untolerated taint {k: v}"]
        );
    }

    #[test]
    fn node_selector_and_required_affinity_must_both_match() {
        let n = node("n", json!({"metadata": {"labels": {"disk": "ssd", "zone": "a"}}}));
        let sel = |s: serde_json::Value| pod("p", json!({"spec": s}));
        assert_eq!(node_affinity(&sel(json!({"nodeSelector": {"disk": "ssd"}})), &n), None);
        assert_eq!(
            node_affinity(&sel(json!({"nodeSelector": {"disk": "hdd"}})), &n),
            Some(Failure::unresolvable(NODE_AFFINITY))
        );
        let affinity = |zone: &str| {
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": [zone]}]}]}}}})
        };
        assert_eq!(node_affinity(&sel(affinity("a")), &n), None);
        assert!(node_affinity(&sel(affinity("b")), &n).is_some());
    }

    #[test]
    fn host_ports_conflict_on_the_same_protocol_and_address() {
        let with_port = |ip: &str, proto: &str| {
            pod(
                "p",
                json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": ip, "protocol": proto}]}]}}),
            )
        };
        let mut info = NodeInfo::new(Arc::new(node("n", json!({}))));
        info.add_pod(Arc::new(with_port("10.0.0.1", "TCP")));
        assert_eq!(node_ports(&with_port("", "TCP"), &info), Some(Failure::resolvable(NODE_PORTS)));
        assert_eq!(node_ports(&with_port("10.0.0.1", "TCP"), &info), Some(Failure::resolvable(NODE_PORTS)));
        assert_eq!(node_ports(&with_port("10.0.0.2", "TCP"), &info), None);
        assert_eq!(node_ports(&with_port("10.0.0.1", "UDP"), &info), None);
        assert_eq!(node_ports(&pod("p", json!({})), &info), None);
        let host_network = pod(
            "p",
            json!({"spec": {"hostNetwork": true, "containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}),
        );
        assert_eq!(node_ports(&host_network, &info), Some(Failure::resolvable(NODE_PORTS)));
    }

    #[test]
    fn requests_must_fit_in_what_the_pods_on_the_node_leave() {
        let n = node("n", json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "2"}}}));
        let mut info = NodeInfo::new(Arc::new(n));
        let asks = |cpu: &str, mem: &str| {
            pod(
                "p",
                json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}),
            )
        };
        info.add_pod(Arc::new(asks("600m", "512Mi")));
        assert_eq!(node_resources_fit(&pod_requests(&asks("400m", "512Mi")), &info), None);
        assert_eq!(
            node_resources_fit(&pod_requests(&asks("500m", "600Mi")), &info).unwrap().reasons,
            vec!["Insufficient cpu", "Insufficient memory"]
        );
        info.add_pod(Arc::new(asks("0", "0")));
        assert_eq!(
            node_resources_fit(&pod_requests(&asks("0", "0")), &info).unwrap().reasons,
            vec![TOO_MANY_PODS]
        );
    }

    #[test]
    fn extended_resources_the_node_lacks_are_insufficient() {
        let info = NodeInfo::new(Arc::new(node("n", json!({"status": {"allocatable": {"pods": "10"}}}))));
        let p = pod(
            "p",
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"example.com/gpu": "1"}}}]}}),
        );
        assert_eq!(
            node_resources_fit(&pod_requests(&p), &info).unwrap().reasons,
            vec!["Insufficient example.com/gpu"]
        );
    }
}
