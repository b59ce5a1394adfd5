//! Control-plane assembly: what `corten server` runs.
//!
//! [`run`] prepares the data directory, creates or loads the cluster PKI (`corten-pki`), opens
//! the replicated store (`corten-store-raft`, a one-voter raft today), and serves the Kubernetes
//! API (`corten-apiserver`) over HTTPS until the shutdown token fires; then it drains HTTP and
//! shuts the store down cleanly. Once the store is ready it creates the cluster defaults, writes
//! `<data-dir>/admin.kubeconfig` (and, when an embedded agent is configured, that node's
//! credential), then starts the controllers and the scheduler against its own API over loopback
//! HTTPS, each under leader election ([`components`]). Stop order is the reverse.
//!
//! This is the only crate that names `corten-store-raft`. It must not depend on openraft or RocksDB
//! directly, nor on `corten-agent` (server and agent are siblings; only `cmd/` combines them).

mod auth;
mod components;
mod store;

pub use components::{AGENT_KUBECONFIG, AGENT_TLS_DIR};
pub use store::ServedStore;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use corten_apiserver::{ApiConfig, ApiServer, ServiceCidr};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long the store may take to become ready before a warning is logged (it keeps trying).
const READY_WARN_AFTER: Duration = Duration::from_secs(30);
/// How long the controllers and the scheduler may take to stop before they are aborted.
const LOOPS_STOP_GRACE: Duration = Duration::from_secs(10);

/// Settings of [`run`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the store, the PKI and the admin kubeconfig live; created when missing.
    pub data_dir: PathBuf,
    /// The address the API server listens on (`0.0.0.0`: every interface).
    pub bind_address: IpAddr,
    /// The API server's HTTPS port.
    pub https_port: u16,
    /// Extra names and addresses for the serving certificate (`--tls-san`).
    pub tls_sans: Vec<String>,
    /// Where ClusterIPs come from, `10.43.0.0/16` by default.
    pub service_cidr: String,
    /// The node name of the embedded agent: when set, the server writes its credential to
    /// `<data-dir>/agent/kubelet.kubeconfig` ([`AGENT_KUBECONFIG`]) once the API is ready, and its
    /// kubelet serving certificate to `<data-dir>/agent/tls` ([`AGENT_TLS_DIR`]) just before.
    pub agent_node_name: Option<String>,
}

impl ServerConfig {
    /// Defaults for a server keeping its data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            https_port: 6443,
            tls_sans: Vec::new(),
            service_cidr: "10.43.0.0/16".into(),
            agent_node_name: None,
        }
    }

    /// The URL clients on this machine use: loopback unless bound to one specific address.
    pub fn local_url(&self) -> String {
        let host = match self.bind_address {
            IpAddr::V4(a) if a.is_unspecified() => "127.0.0.1".to_string(),
            IpAddr::V6(a) if a.is_unspecified() => "127.0.0.1".to_string(),
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        format!("https://{host}:{}", self.https_port)
    }
}

/// Why the server could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory cannot be created or written.
    #[error(
        "data dir {} is not usable: create it and make it writable by this user, or pass another --data-dir",
        path.display()
    )]
    DataDir {
        /// The directory (or the probe file inside it) that failed.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The service CIDR is not an IPv4 CIDR of /8 to /30.
    #[error("--service-cidr {0:?} is not valid: give an IPv4 CIDR such as 10.43.0.0/16")]
    ServiceCidr(String),
    /// The PKI could not be created or loaded.
    #[error("preparing the cluster certificates in {}", path.display())]
    Pki {
        path: PathBuf,
        #[source]
        source: corten_pki::Error,
    },
    /// The API address cannot be bound (in use, or not a local address).
    #[error("cannot listen on {addr} for the Kubernetes API: free the port, or pass another --https-port or --bind-address")]
    Listen {
        /// The requested address.
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The store failed to open.
    #[error("opening the store in {}", path.display())]
    OpenStore {
        /// The data directory.
        path: PathBuf,
        #[source]
        source: corten_store_raft::Error,
    },
    /// The admin kubeconfig could not be written.
    #[error("writing {}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: corten_pki::Error,
    },
    /// A client of the server's own API could not be built for a control loop.
    #[error("building the API client of {user}")]
    Client {
        /// The user the client authenticates as.
        user: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The API server stopped on its own.
    #[error("the API server task failed")]
    Serve(#[source] tokio::task::JoinError),
    /// A blocking task (certificate or file work) panicked.
    #[error("a background task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The store did not shut down cleanly.
    #[error("shutting the store down")]
    StoreShutdown(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the control plane until `shutdown` is cancelled, then stops it and returns.
///
/// Start order: data dir, service CIDR, PKI, API listener (so a port conflict fails before the
/// store is touched), store, HTTPS. Stop order: HTTPS, store. Every error names what to fix.
pub async fn run(cfg: ServerConfig, shutdown: CancellationToken) -> Result<()> {
    info!(data_dir = %cfg.data_dir.display(), "starting corten server");
    prepare_data_dir(&cfg.data_dir).await?;
    let cidr =
        ServiceCidr::parse(&cfg.service_cidr).ok_or_else(|| Error::ServiceCidr(cfg.service_cidr.clone()))?;
    let pki = load_pki(&cfg, cidr).await?;
    let addr = SocketAddr::new(cfg.bind_address, cfg.https_port);
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr, source })?;
    let store = store::open(&cfg.data_dir).await?;
    let served = serve(&cfg, cidr, &pki, listener, store.clone(), shutdown).await;
    info!("shutting down");
    let stopped = store.shutdown().await.map_err(|e| Error::StoreShutdown(Box::new(e)));
    match (&served, &stopped) {
        (Ok(()), Ok(())) => info!("stopped"),
        _ => warn!("stopped with errors"),
    }
    served.and(stopped)
}

/// Creates the data directory when missing and checks that it is writable.
async fn prepare_data_dir(dir: &Path) -> Result<()> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::DataDir { path, source }
    };
    tokio::fs::create_dir_all(dir).await.map_err(err(dir))?;
    let probe = dir.join(".corten-write-probe");
    tokio::fs::write(&probe, b"").await.map_err(err(&probe))?;
    tokio::fs::remove_file(&probe).await.map_err(err(&probe))?;
    Ok(())
}

async fn load_pki(cfg: &ServerConfig, cidr: ServiceCidr) -> Result<corten_pki::ClusterPki> {
    let dir = cfg.data_dir.join("tls");
    let mut opts = corten_pki::PkiOptions::new(&dir);
    opts.extra_sans = cfg.tls_sans.clone();
    opts.service_ip = IpAddr::V4(cidr.first());
    let ensured =
        tokio::task::spawn_blocking(move || corten_pki::ensure(&opts)).await.map_err(Error::Task)?;
    ensured.map_err(|source| Error::Pki { path: dir, source })
}

/// Serves the API for `store` until `shutdown`; creates the cluster defaults and the admin
/// kubeconfig once the store is ready.
async fn serve<S: ServedStore + Clone>(
    cfg: &ServerConfig,
    cidr: ServiceCidr,
    pki: &corten_pki::ClusterPki,
    listener: TcpListener,
    store: S,
    shutdown: CancellationToken,
) -> Result<()> {
    let ready_store = store.clone();
    let kubelet_tls = components::kubelet_client_tls(pki)?;
    let service_accounts = Arc::new(auth::ServiceAccountAuthenticator::new(pki.service_account_signer()));
    let config = ApiConfig {
        service_cidr: cidr,
        tokens: Some(service_accounts.clone()),
        token_issuer: Some(service_accounts),
        ready: Some(Arc::new(move || {
            if ready_store.is_ready() {
                Ok(())
            } else {
                Err("store is not ready: no raft leader yet or log not applied".into())
            }
        })),
        kubelet_tls: Some(kubelet_tls),
        ..ApiConfig::default()
    };
    let api = ApiServer::new(store.clone(), config, shutdown.clone());
    let tls =
        pki.server_tls_config().map_err(|source| Error::Pki { path: pki.dir().to_path_buf(), source })?;
    let mut http = tokio::spawn(corten_apiserver::serve::serve_tls(
        listener,
        Arc::new(tls),
        api.router(),
        auth::cert_identity(),
        shutdown.clone(),
    ));
    let prepared = tokio::select! {
        () = shutdown.cancelled() => Ok(None),
        prepared = prepare_cluster(cfg, pki, &api, &store, &shutdown) => prepared,
        ended = &mut http => {
            shutdown.cancel();
            return ended.map_err(Error::Serve);
        }
    };
    let mut loops = match prepared {
        Ok(loops) => loops.unwrap_or_default(),
        Err(e) => {
            shutdown.cancel();
            let _ = http.await;
            return Err(e);
        }
    };
    tokio::select! {
        () = shutdown.cancelled() => {}
        ended = &mut http => {
            // The API server only returns on shutdown; anything else is a bug worth stopping for.
            shutdown.cancel();
            return ended.map_err(Error::Serve);
        }
    }
    // The control loops stop first (they release their leases through the API), then HTTP.
    if tokio::time::timeout(LOOPS_STOP_GRACE, async { while loops.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        warn!(grace = ?LOOPS_STOP_GRACE, "control loops did not stop in time; aborting them");
        loops.abort_all();
    }
    http.await.map_err(Error::Serve)
}

/// Waits for the store, creates the cluster defaults, writes the admin kubeconfig (and the
/// agent's), then starts the control loops; `None` when shutdown came first.
async fn prepare_cluster<S: ServedStore + Clone>(
    cfg: &ServerConfig,
    pki: &corten_pki::ClusterPki,
    api: &ApiServer<S>,
    store: &S,
    shutdown: &CancellationToken,
) -> Result<Option<tokio::task::JoinSet<()>>> {
    while !store.wait_ready(READY_WARN_AFTER).await {
        warn!(waited = ?READY_WARN_AFTER, "store is not ready yet; still waiting");
    }
    if let Ok(status) = store.status().await {
        info!(revision = status.revision, compact_revision = status.compact_revision, "store ready");
    }
    let mut delay = Duration::from_millis(100);
    while let Err(e) = api.bootstrap().await {
        warn!(error = %e, "creating the cluster defaults failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        if shutdown.is_cancelled() {
            return Ok(None);
        }
    }
    let path = cfg.data_dir.join("admin.kubeconfig");
    let url = cfg.local_url();
    let (ca, cert, key) =
        (pki.ca_cert_pem().to_string(), pki.admin_cert_pem().to_string(), pki.admin_key_pem().to_string());
    let target = path.clone();
    let written = tokio::task::spawn_blocking(move || {
        corten_pki::write_kubeconfig(&target, &url, &ca, &cert, &key, "admin")
    })
    .await
    .map_err(Error::Task)?;
    written.map_err(|source| Error::Kubeconfig { path: path.clone(), source })?;
    if let Some(node) = &cfg.agent_node_name {
        // The serving certificate first: the agent starts once its kubeconfig appears.
        let tls = components::write_agent_kubelet_tls(pki, &cfg.data_dir, node)?;
        info!(node = %node, dir = %tls.display(), "kubelet serving certificate written for the embedded agent");
        let agent = components::write_agent_kubeconfig(pki, &cfg.data_dir, &cfg.local_url(), node)?;
        info!(node = %node, kubeconfig = %agent.display(), "node credential written for the embedded agent");
    }
    let loops =
        components::start_control_loops(pki, &cfg.local_url(), &election_identity(), shutdown).await?;
    info!(kubeconfig = %path.display(), "cluster ready: export KUBECONFIG={} and run kubectl", path.display());
    Ok(Some(loops))
}

/// This server's leader-election identity: its host name and a per-process suffix.
fn election_identity() -> String {
    let host =
        nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "corten".into());
    format!("{host}_{}", uuid::Uuid::new_v4().simple())
}
