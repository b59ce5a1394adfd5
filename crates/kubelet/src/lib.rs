//! The embedded kubelet: registers this machine as a Node (capacity, addresses, conditions,
//! heartbeats through a Lease), runs the pods bound to it through a CRI [`Runtime`] (sandboxes,
//! image pulls, init containers, restarts with crash-loop back-off, probes, volumes) and reports
//! their status through the `pods/status` subresource. With [`Config::server`] it also serves
//! the kubelet's HTTPS API (container logs, exec, attach, port-forward; see [`ServerSettings`]).
//!
//! It is an API client like any other: everything goes through a `kube::Client`. It must not
//! depend on the API server, the store or a concrete container runtime (it gets a `Runtime`).

mod error;
mod machine;
mod node;
mod pod;
mod server;
mod volumes;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use corten_cri::Runtime;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};
pub use server::ServerSettings;

/// The kubelet version reported in the Node's `nodeInfo`.
pub const KUBELET_VERSION: &str = "v1.33.0";

/// How the kubelet runs; [`Config::new`] gives upstream defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Node's name (usually the hostname).
    pub node_name: String,
    /// The InternalIP to report; detected from the default route when `None`.
    pub node_ip: Option<IpAddr>,
    /// The pod network of this node (`spec.podCIDR`).
    pub pod_cidr: String,
    /// Where pod directories and volumes live (`<data-dir>/agent/kubelet`).
    pub root_dir: PathBuf,
    /// Where container logs go (`/var/log/pods` upstream): `<dir>/<ns>_<pod>_<uid>/<container>/<n>.log`.
    pub pod_log_dir: PathBuf,
    /// The cluster DNS servers given to `dnsPolicy: ClusterFirst` pods; empty: the host's.
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// Extra labels of the Node.
    pub node_labels: BTreeMap<String, String>,
    /// `pods` capacity of the Node.
    pub max_pods: u32,
    /// The CRI runtime handler sandboxes are run with (empty: the default).
    pub runtime_handler: String,
    /// How often each pod worker re-reads the runtime (the PLEG relist period upstream).
    pub sync_period: Duration,
    /// How often configMap, secret, downwardAPI and projected volumes of running pods are
    /// re-synced (upstream `syncFrequency`).
    pub volume_sync_period: Duration,
    /// The first crash-loop (and image pull) back-off; it doubles up to `max_backoff`.
    pub backoff_base: Duration,
    /// The longest back-off.
    pub max_backoff: Duration,
    /// How often the node status is computed (patched only when it changed or every minute).
    pub node_status_update_frequency: Duration,
    /// The longest time between two node status patches.
    pub node_status_report_frequency: Duration,
    /// How often the node Lease is renewed.
    pub lease_renew_interval: Duration,
    /// The kubelet's HTTPS API (logs, exec, attach, port-forward); `None`: not served.
    pub server: Option<ServerSettings>,
}

impl Config {
    /// A configuration with the upstream defaults.
    pub fn new(node_name: impl Into<String>, root_dir: impl Into<PathBuf>) -> Config {
        Config {
            node_name: node_name.into(),
            node_ip: None,
            pod_cidr: "10.42.0.0/24".into(),
            root_dir: root_dir.into(),
            pod_log_dir: PathBuf::from("/var/log/pods"),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            node_labels: BTreeMap::new(),
            max_pods: 110,
            runtime_handler: String::new(),
            sync_period: Duration::from_secs(1),
            volume_sync_period: Duration::from_secs(60),
            backoff_base: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
            node_status_update_frequency: Duration::from_secs(10),
            node_status_report_frequency: Duration::from_secs(60),
            lease_renew_interval: Duration::from_secs(10),
            server: None,
        }
    }
}

/// Runs the kubelet until `shutdown` is cancelled: registers the Node, keeps its status and
/// Lease fresh and runs the pods bound to it. On shutdown containers are left running; the
/// next start adopts them.
pub async fn run<R: Runtime>(
    client: kube::Client,
    runtime: R,
    mut config: Config,
    shutdown: CancellationToken,
) -> Result<()> {
    let listener = match &config.server {
        Some(settings) => Some(server::bind(settings).await?),
        None => None,
    };
    if let (Some(settings), Some(listener)) = (config.server.as_mut(), listener.as_ref()) {
        settings.address = listener.address;
    }
    let agent = node::NodeAgent::start(client.clone(), runtime.clone(), config.clone(), &shutdown).await?;
    let Some(agent) = agent else { return Ok(()) };
    let server_task = listener.map(|listener| {
        let shared = server::Shared {
            client: client.clone(),
            runtime: runtime.clone(),
            config: config.clone(),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(server::serve(listener, std::sync::Arc::new(shared)))
    });
    let host_ip = agent.host_ip();
    let allocatable = agent.allocatable();
    let runtime_name = agent.runtime_name();
    let node_task = tokio::spawn(agent.run(shutdown.clone()));
    let ctx = pod::Context::new(client, runtime, config, host_ip, allocatable, runtime_name);
    let pods = pod::run(ctx, shutdown.clone()).await;
    shutdown.cancel();
    let node = node_task.await.map_err(|e| Error::Task(e.to_string()))?;
    if let Some(task) = server_task {
        task.await.map_err(|e| Error::Task(e.to_string()))?;
    }
    pods.and(node)
}
