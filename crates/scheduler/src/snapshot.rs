//! A point-in-time view of the cluster that one scheduling cycle works on: every node with the
//! pods assigned to it and what they request.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::resources::{allocatable, non_zero_requests, pod_requests, Resources};
use crate::selectors::Labels;

/// One node and the pods on it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node.
    pub node: Arc<Node>,
    /// The non-terminal pods assigned to it (including ones this scheduler assumed there).
    pub pods: Vec<Arc<Pod>>,
    /// What the node offers (`status.allocatable`).
    pub allocatable: Resources,
    /// The sum of the pods' requests.
    pub requested: Resources,
    /// The sum of the pods' (cpu, memory) requests with scoring defaults.
    pub non_zero_requested: (i128, i128),
}

impl NodeInfo {
    /// A node with no pods.
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let allocatable = allocatable(&node);
        NodeInfo {
            node,
            pods: Vec::new(),
            allocatable,
            requested: Resources::default(),
            non_zero_requested: (0, 0),
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    /// Accounts `pod` on this node.
    pub fn add_pod(&mut self, pod: Arc<Pod>) {
        self.requested.add(&pod_requests(&pod));
        let (cpu, mem) = non_zero_requests(&pod);
        self.non_zero_requested.0 += cpu;
        self.non_zero_requested.1 += mem;
        self.pods.push(pod);
    }

    /// Removes the pod with `uid` (a preemption victim); its requests are given back.
    pub fn remove_pod(&mut self, uid: &str) {
        if let Some(i) = self.pods.iter().position(|p| p.metadata.uid.as_deref() == Some(uid)) {
            let pod = self.pods.remove(i);
            for (k, v) in pod_requests(&pod).0 {
                *self.requested.0.entry(k).or_insert(0) -= v;
            }
            let (cpu, mem) = non_zero_requests(&pod);
            self.non_zero_requested.0 -= cpu;
            self.non_zero_requested.1 -= mem;
        }
    }
}

/// All nodes, in name order, with their pods.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The nodes.
    pub nodes: Vec<NodeInfo>,
    /// The labels of each namespace (for affinity terms' `namespaceSelector`).
    pub namespace_labels: HashMap<String, Labels>,
}

/// Whether `pod` has finished (its resources are free again).
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// The node a pod is assigned to, if any.
pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

impl Snapshot {
    /// The snapshot of `nodes` with the non-terminal `pods` assigned to them.
    pub fn new(
        nodes: impl IntoIterator<Item = Arc<Node>>,
        pods: impl IntoIterator<Item = Arc<Pod>>,
    ) -> Snapshot {
        let mut nodes: Vec<NodeInfo> = nodes.into_iter().map(NodeInfo::new).collect();
        nodes.sort_by(|a, b| a.name().cmp(b.name()));
        let mut snapshot = Snapshot { nodes, namespace_labels: HashMap::new() };
        for pod in pods {
            snapshot.add_pod(pod);
        }
        snapshot
    }

    /// Accounts an assigned, non-terminal pod on its node (others are ignored).
    pub fn add_pod(&mut self, pod: Arc<Pod>) {
        if is_terminal(&pod) {
            return;
        }
        let Some(name) = node_name(&pod) else { return };
        if let Some(info) = self.nodes.iter_mut().find(|n| n.name() == name) {
            info.add_pod(pod);
        }
    }

    /// The index of each node by name.
    pub fn index(&self) -> HashMap<&str, usize> {
        self.nodes.iter().enumerate().map(|(i, n)| (n.name(), i)).collect()
    }

    /// Every pod on every node, with its node.
    pub fn pods(&self) -> impl Iterator<Item = (&NodeInfo, &Arc<Pod>)> {
        self.nodes.iter().flat_map(|n| n.pods.iter().map(move |p| (n, p)))
    }
}
