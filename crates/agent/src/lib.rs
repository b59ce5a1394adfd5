//! Node assembly: what `corten agent` runs, and what `corten server` runs beside itself.
//!
//! [`run`] connects to the cluster with a node credential (a kubeconfig file, which the server
//! writes for its embedded agent), gets a container runtime — its own supervised containerd
//! with the CNI config and the air-gap images of `<data-dir>/agent/images`, or the CRI socket
//! given with `--container-runtime-endpoint` — and runs the kubelet on it until shutdown. The
//! kubelet leaves containers running when it stops, and so does containerd's shim, so the next
//! start adopts them.
//!
//! This crate must not depend on the API server, the store or `corten-server` (server and
//! agent are siblings; only `cmd/` combines them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use corten_cri::ContainerdConfig;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long the agent waits for its kubeconfig before it says so again (it keeps waiting).
const KUBECONFIG_WARN_AFTER: Duration = Duration::from_secs(30);

/// Settings of [`run`].
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Corten's data dir; the agent's state is under `<data-dir>/agent`.
    pub data_dir: PathBuf,
    /// The node credential: a kubeconfig with a `system:node:<name>` client certificate.
    pub kubeconfig: PathBuf,
    /// The Node's name.
    pub node_name: String,
    /// A CRI socket to use instead of starting containerd (`unix:///run/containerd/containerd.sock`).
    pub container_runtime_endpoint: Option<String>,
    /// This node's pod network.
    pub pod_cidr: String,
    /// The port of the kubelet's HTTPS API (logs, exec, attach, port-forward), on every
    /// interface; served when `<data-dir>/agent/tls` holds `kubelet.crt`, `kubelet.key` and
    /// `ca.crt`.
    pub kubelet_port: u16,
}

/// Where the kubelet's serving certificate, key and client CA live, under the data dir (the
/// server writes them for its embedded agent).
pub const KUBELET_TLS_DIR: &str = "agent/tls";

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig cannot be read or used.
    #[error("the node credential {} is not usable", path.display())]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The container runtime could not be started or reached.
    #[error("the container runtime is not available (run with --disable-agent for a control plane only)")]
    Containerd(#[source] corten_cri::SupervisorError),
    /// The CNI config could not be written.
    #[error("writing the pod network (CNI) config")]
    Cni(#[source] corten_cri::CniError),
    /// The kubelet failed.
    #[error("the kubelet failed")]
    Kubelet(#[source] corten_kubelet::Error),
    /// A file of the kubelet's serving certificate cannot be read.
    #[error("reading the kubelet serving certificate {}", path.display())]
    KubeletTls {
        /// The file.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the node until `shutdown` fires: waits for the credential, starts or connects to the
/// container runtime, runs the kubelet; then stops containerd (its containers keep running).
pub async fn run(cfg: AgentConfig, shutdown: CancellationToken) -> Result<()> {
    info!(node = %cfg.node_name, "starting corten agent");
    let Some(client) = client(&cfg.kubeconfig, &shutdown).await? else { return Ok(()) };
    let kubelet = corten_kubelet::Config {
        pod_cidr: cfg.pod_cidr.clone(),
        pod_log_dir: cfg.data_dir.join("agent/pod-logs"),
        server: kubelet_server(&cfg.data_dir.join(KUBELET_TLS_DIR), cfg.kubelet_port)?,
        ..corten_kubelet::Config::new(&cfg.node_name, cfg.data_dir.join("agent/kubelet"))
    };
    let containerd = ContainerdConfig::new(&cfg.data_dir);
    if cfg.container_runtime_endpoint.is_none() {
        // Our own containerd reads its pod network from here; a given runtime brings its own.
        corten_cri::write_cni_config(&containerd.cni_conf_dir(), &cfg.pod_cidr, &containerd.cni_ipam_dir())
            .map_err(Error::Cni)?;
    }
    // containerd outlives the kubelet by a moment: it stops once the kubelet has returned.
    let runtime_stop = CancellationToken::new();
    let (runtime, supervised) = corten_cri::connect_or_start(
        cfg.container_runtime_endpoint.as_deref(),
        containerd,
        runtime_stop.clone(),
    )
    .await
    .map_err(Error::Containerd)?;
    let ran = corten_kubelet::run(client, runtime, kubelet, shutdown).await;
    runtime_stop.cancel();
    if let Some(containerd) = supervised {
        containerd.stopped().await;
    }
    ran.map_err(Error::Kubelet)
}

/// The kubelet's HTTPS API settings from the certificate files in `dir`; `None` (with a
/// warning: no logs, exec or port-forward on this node) when there are none.
fn kubelet_server(dir: &Path, port: u16) -> Result<Option<corten_kubelet::ServerSettings>> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| Error::KubeletTls { path, source })
    };
    if !dir.join("kubelet.crt").is_file() {
        warn!(dir = %dir.display(), "no kubelet serving certificate: logs, exec, attach and port-forward are not served on this node");
        return Ok(None);
    }
    Ok(Some(corten_kubelet::ServerSettings {
        address: std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port),
        cert_pem: read("kubelet.crt")?,
        key_pem: read("kubelet.key")?,
        client_ca_pem: read("ca.crt")?,
    }))
}

/// A client from the kubeconfig at `path`, waiting for the file to appear (the server writes it
/// once its API is ready); `None` when shutdown comes first.
async fn client(path: &Path, shutdown: &CancellationToken) -> Result<Option<kube::Client>> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| Error::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let mut waited = Duration::ZERO;
    while !path.is_file() {
        if waited >= KUBECONFIG_WARN_AFTER {
            warn!(kubeconfig = %path.display(), "still waiting for the node credential");
            waited = Duration::ZERO;
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(Duration::from_millis(200)) => waited += Duration::from_millis(200),
        }
    }
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| err(e.into()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.into()))?;
    Ok(Some(kube::Client::try_from(config).map_err(|e| err(e.into()))?))
}
