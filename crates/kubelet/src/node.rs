//! The Node object: registration, status (capacity, conditions, nodeInfo, images) patched when
//! it changes and at least every `node_status_report_frequency`, and the heartbeat Lease in
//! `kube-node-lease`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use corten_cri::{api, Runtime};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec,
    NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::machine::{default_ip, Machine};
use crate::{Config, Result, KUBELET_VERSION};

/// The kubelet API port upstream reports when none is configured.
const DEFAULT_KUBELET_PORT: u16 = 10250;

/// Seconds a Lease is valid for (upstream `nodeLeaseDurationSeconds`).
const LEASE_DURATION_SECONDS: i32 = 40;

/// Registers and heartbeats the Node.
pub(crate) struct NodeAgent<R> {
    client: kube::Client,
    runtime: R,
    config: Config,
    machine: Machine,
    host_ip: IpAddr,
    runtime_version: api::VersionResponse,
    node_uid: String,
    conditions: Vec<NodeCondition>,
}

impl<R> std::fmt::Debug for NodeAgent<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAgent").field("node", &self.config.node_name).finish_non_exhaustive()
    }
}

/// Node resources as `(name, quantity)`.
pub(crate) type Resources = BTreeMap<String, Quantity>;

/// What a runtime `Status` means for the Node's Ready condition: `None` when ready, else the
/// message of the NotReady condition.
pub(crate) fn runtime_problems(status: Option<&api::StatusResponse>) -> Option<String> {
    let Some(status) = status else {
        return Some("container runtime status check may not have completed yet".into());
    };
    let conditions = status.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let find = |ty: &str| conditions.iter().find(|c| c.r#type == ty);
    let mut problems = Vec::new();
    match find("RuntimeReady") {
        Some(c) if c.status => {}
        Some(c) => problems.push(format!(
            "container runtime not ready: RuntimeReady=false reason:{} message:{}",
            c.reason, c.message
        )),
        None => problems.push("container runtime not ready: RuntimeReady condition is missing".into()),
    }
    match find("NetworkReady") {
        Some(c) if c.status => {}
        Some(c) => problems.push(format!(
            "container runtime network not ready: NetworkReady=false reason:{} message:{}",
            c.reason, c.message
        )),
        None => {
            problems.push("container runtime network not ready: NetworkReady condition is missing".into())
        }
    }
    (!problems.is_empty()).then(|| problems.join(", "))
}

fn condition(ty: &str, status: bool, reason: &str, message: &str) -> NodeCondition {
    NodeCondition {
        type_: ty.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: None,
        last_transition_time: None,
    }
}

/// The five node conditions for a runtime status (without times).
pub(crate) fn node_conditions(status: Option<&api::StatusResponse>) -> Vec<NodeCondition> {
    let problems = runtime_problems(status);
    let network_ready = status
        .and_then(|s| s.status.as_ref())
        .is_some_and(|s| s.conditions.iter().any(|c| c.r#type == "NetworkReady" && c.status));
    vec![
        condition(
            "MemoryPressure",
            false,
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        condition("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        condition("PIDPressure", false, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        if network_ready {
            condition("NetworkUnavailable", false, "RouteCreated", "the pod network of this node is ready")
        } else {
            condition(
                "NetworkUnavailable",
                true,
                "NetworkPluginNotReady",
                "the container runtime network is not ready",
            )
        },
        match &problems {
            None => condition("Ready", true, "KubeletReady", "kubelet is posting ready status"),
            Some(m) => condition("Ready", false, "KubeletNotReady", m),
        },
    ]
}

/// Carries `lastTransitionTime` over from `previous` when a condition's status did not change.
fn stamp(mut next: Vec<NodeCondition>, previous: &[NodeCondition], now: Timestamp) -> Vec<NodeCondition> {
    for c in &mut next {
        let prev = previous.iter().find(|p| p.type_ == c.type_);
        c.last_heartbeat_time = Some(Time(now));
        c.last_transition_time = match prev {
            Some(p) if p.status == c.status => p.last_transition_time.clone(),
            _ => Some(Time(now)),
        };
    }
    next
}

fn same_conditions(a: &[NodeCondition], b: &[NodeCondition]) -> bool {
    let key = |c: &NodeCondition| (c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone());
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| key(x) == key(y))
}

fn quantity(v: impl ToString) -> Quantity {
    Quantity(v.to_string())
}

impl<R: Runtime> NodeAgent<R> {
    /// Registers the Node (retrying until it works or `shutdown`); `None` when shut down first.
    pub(crate) async fn start(
        client: kube::Client,
        runtime: R,
        config: Config,
        shutdown: &CancellationToken,
    ) -> Result<Option<NodeAgent<R>>> {
        let machine = Machine::read(&config.root_dir);
        let host_ip = config.node_ip.unwrap_or_else(default_ip);
        let mut agent = NodeAgent {
            client,
            runtime,
            config,
            machine,
            host_ip,
            runtime_version: api::VersionResponse::default(),
            node_uid: String::new(),
            conditions: Vec::new(),
        };
        let mut delay = std::time::Duration::from_millis(200);
        loop {
            match agent.register().await {
                Ok(()) => return Ok(Some(agent)),
                Err(e) => warn!(error = %e, node = %agent.config.node_name, "unable to register the node"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(std::time::Duration::from_secs(7));
        }
    }

    /// The node's InternalIP (the pods' `hostIP`).
    pub(crate) fn host_ip(&self) -> IpAddr {
        self.host_ip
    }

    /// The allocatable resources (the default of unset limits in `resourceFieldRef`).
    pub(crate) fn allocatable(&self) -> Arc<Resources> {
        Arc::new(self.capacity())
    }

    /// The runtime's name, the scheme of container ids (`containerd://...`).
    pub(crate) fn runtime_name(&self) -> String {
        self.runtime_version.runtime_name.clone()
    }

    /// The port of the kubelet API (`status.daemonEndpoints.kubeletEndpoint.Port`): the bound
    /// port when served, else upstream's default.
    fn kubelet_port(&self) -> i32 {
        i32::from(self.config.server.as_ref().map_or(DEFAULT_KUBELET_PORT, |s| s.address.port()))
    }

    fn capacity(&self) -> Resources {
        let m = &self.machine;
        BTreeMap::from([
            ("cpu".to_string(), quantity(m.cpus)),
            ("memory".to_string(), quantity(format!("{}Ki", m.memory_bytes / 1024))),
            ("ephemeral-storage".to_string(), quantity(format!("{}Ki", m.storage_bytes / 1024))),
            ("pods".to_string(), quantity(self.config.max_pods)),
            ("hugepages-1Gi".to_string(), quantity(0)),
            ("hugepages-2Mi".to_string(), quantity(0)),
        ])
    }

    fn labels(&self) -> BTreeMap<String, String> {
        let arch = self.machine.architecture.to_string();
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), self.config.node_name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), arch.clone()),
            ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
            ("beta.kubernetes.io/arch".to_string(), arch),
        ]);
        labels.extend(self.config.node_labels.clone());
        labels
    }

    async fn register(&mut self) -> Result<()> {
        self.runtime_version = self.runtime.version().await?;
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = Node {
            metadata: ObjectMeta {
                name: Some(self.config.node_name.clone()),
                labels: Some(self.labels()),
                annotations: Some(BTreeMap::from([
                    ("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string()),
                    (
                        "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                        "true".to_string(),
                    ),
                ])),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: Some(self.config.pod_cidr.clone()),
                pod_cidrs: Some(vec![self.config.pod_cidr.clone()]),
                ..Default::default()
            }),
            status: None,
        };
        let created = match nodes.create(&PostParams::default(), &node).await {
            Ok(n) => {
                info!(node = %self.config.node_name, "node registered");
                n
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let patch = json!({"metadata": {"labels": self.labels()}, "spec": node.spec});
                nodes.patch(&self.config.node_name, &PatchParams::default(), &Patch::Merge(&patch)).await?
            }
            Err(e) => return Err(e.into()),
        };
        self.node_uid = created.metadata.uid.unwrap_or_default();
        self.conditions = created.status.and_then(|s| s.conditions).unwrap_or_default();
        self.post_status().await
    }

    async fn status_of_runtime(&self) -> Option<api::StatusResponse> {
        match self.runtime.status().await {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "container runtime status check failed");
                None
            }
        }
    }

    async fn post_status(&mut self) -> Result<()> {
        let runtime_status = self.status_of_runtime().await;
        let conditions = stamp(node_conditions(runtime_status.as_ref()), &self.conditions, Timestamp::now());
        let images = match self.runtime.list_images().await {
            Ok(images) => images,
            Err(e) => {
                warn!(error = %e, "listing images failed");
                Vec::new()
            }
        };
        let m = &self.machine;
        let v = &self.runtime_version;
        let status = NodeStatus {
            capacity: Some(self.capacity()),
            allocatable: Some(self.capacity()),
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: self.host_ip.to_string() },
                NodeAddress { type_: "Hostname".into(), address: self.config.node_name.clone() },
            ]),
            conditions: Some(conditions.clone()),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: self.kubelet_port() }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: m.architecture.into(),
                boot_id: m.boot_id.clone(),
                container_runtime_version: format!("{}://{}", v.runtime_name, v.runtime_version),
                kernel_version: m.kernel_version.clone(),
                kube_proxy_version: String::new(),
                kubelet_version: KUBELET_VERSION.into(),
                machine_id: m.machine_id.clone(),
                operating_system: "linux".into(),
                os_image: m.os_image.clone(),
                system_uuid: m.machine_id.clone(),
                ..Default::default()
            }),
            images: Some(
                images
                    .iter()
                    .take(50)
                    .map(|i| ContainerImage {
                        names: Some(i.repo_digests.iter().chain(&i.repo_tags).cloned().collect()),
                        size_bytes: Some(i.size as i64),
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"status": status});
        nodes.patch_status(&self.config.node_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        self.conditions = conditions;
        Ok(())
    }

    async fn renew_lease(&self) -> Result<()> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let name = &self.config.node_name;
        let now = MicroTime(Timestamp::now());
        match leases.get_opt(name).await? {
            Some(_) => {
                let patch = json!({"spec": {"holderIdentity": name, "renewTime": now,
                    "leaseDurationSeconds": LEASE_DURATION_SECONDS}});
                leases.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        owner_references: (!self.node_uid.is_empty()).then(|| {
                            vec![OwnerReference {
                                api_version: "v1".into(),
                                kind: "Node".into(),
                                name: name.clone(),
                                uid: self.node_uid.clone(),
                                ..Default::default()
                            }]
                        }),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(name.clone()),
                        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                        renew_time: Some(now),
                        ..Default::default()
                    }),
                };
                leases.create(&PostParams::default(), &lease).await?;
            }
        }
        Ok(())
    }

    /// Heartbeats until `shutdown`: the Lease every `lease_renew_interval`, the status when the
    /// conditions change (checked every `node_status_update_frequency`) and at least every
    /// `node_status_report_frequency`.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        let mut lease_tick = tokio::time::interval(self.config.lease_renew_interval);
        let mut status_tick = tokio::time::interval(self.config.node_status_update_frequency);
        let mut last_post = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = lease_tick.tick() => {
                    if let Err(e) = self.renew_lease().await {
                        warn!(error = %e, node = %self.config.node_name, "renewing the node lease failed");
                    }
                }
                _ = status_tick.tick() => {
                    let nodes: Api<Node> = Api::all(self.client.clone());
                    if let Ok(None) = nodes.get_opt(&self.config.node_name).await {
                        info!(node = %self.config.node_name, "the node object is gone: registering again");
                        match self.register().await {
                            Ok(()) => last_post = Instant::now(),
                            Err(e) => warn!(error = %e, node = %self.config.node_name, "unable to register the node"),
                        }
                        continue;
                    }
                    let runtime_status = self.status_of_runtime().await;
                    let changed = !same_conditions(&node_conditions(runtime_status.as_ref()), &self.conditions);
                    if changed || last_post.elapsed() >= self.config.node_status_report_frequency {
                        match self.post_status().await {
                            Ok(()) => last_post = Instant::now(),
                            Err(e) => warn!(error = %e, node = %self.config.node_name, "updating node status failed"),
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(runtime: bool, network: bool) -> api::StatusResponse {
        let c = |t: &str, s: bool| api::RuntimeCondition {
            r#type: t.into(),
            status: s,
            reason: if s { String::new() } else { "NetworkPluginNotReady".into() },
            message: if s { String::new() } else { "cni plugin not initialized".into() },
        };
        api::StatusResponse {
            status: Some(api::RuntimeStatus {
                conditions: vec![c("RuntimeReady", runtime), c("NetworkReady", network)],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_needs_both_runtime_and_network_ready() {
        assert_eq!(runtime_problems(Some(&status(true, true))), None);
        let m = runtime_problems(Some(&status(true, false))).unwrap_or_default();
        assert!(m.starts_with("container runtime network not ready: NetworkReady=false"), "{m}");
        assert!(m.contains("cni plugin not initialized"), "{m}");
        let both = runtime_problems(Some(&status(false, false))).unwrap_or_default();
        assert!(both.contains("container runtime not ready") && both.contains("network not ready"), "{both}");
        assert!(runtime_problems(None).is_some());
    }

    #[test]
    fn transition_time_is_kept_while_a_condition_holds() {
        let t0 = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let t1 = Timestamp::from_second(2_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let first = stamp(node_conditions(Some(&status(true, true))), &[], t0);
        let again = stamp(node_conditions(Some(&status(true, true))), &first, t1);
        let ready = again
            .iter()
            .find(|c| c.type_ == "Ready")
            .cloned()
            .unwrap_or_else(|| condition("", false, "", ""));
        assert_eq!(ready.last_transition_time, Some(Time(t0)));
        assert_eq!(ready.last_heartbeat_time, Some(Time(t1)));
        let down = stamp(node_conditions(Some(&status(true, false))), &again, t1);
        let ready =
            down.iter().find(|c| c.type_ == "Ready").cloned().unwrap_or_else(|| condition("", true, "", ""));
        assert_eq!((ready.status.as_str(), ready.last_transition_time), ("False", Some(Time(t1))));
    }
}
