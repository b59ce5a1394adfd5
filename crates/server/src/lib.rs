//! Control-plane assembly: what `corten server` runs.
//!
//! [`run`] prepares the data directory, opens the replicated store (`corten-store-raft`, a
//! one-voter raft today), serves `/healthz` and `/readyz` until the shutdown token fires, then stops
//! the HTTP server and shuts the store down cleanly. Later issues add PKI bootstrap, the API server,
//! the scheduler and the controllers here, in that start order, stopping in reverse.
//!
//! This is the only crate that names `corten-store-raft`. It must not depend on openraft or RocksDB
//! directly, nor on `corten-agent` (server and agent are siblings; only `cmd/` combines them).

mod health;
mod store;

pub use store::ServedStore;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long in-flight health requests may take to finish once shutdown starts.
const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the store may take to become ready before a warning is logged (it keeps trying).
const READY_WARN_AFTER: Duration = Duration::from_secs(30);

/// Settings of [`run`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the store keeps its RocksDB files; created when missing.
    pub data_dir: PathBuf,
    /// Where `/healthz` and `/readyz` are served over plain HTTP (keep it on loopback).
    pub health_addr: SocketAddr,
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
    /// The health address cannot be bound (in use, or not a local address).
    #[error("cannot listen on {addr} for health checks: free the port or pass another --health-addr")]
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
    /// The health HTTP server stopped on its own.
    #[error("the health endpoint server failed")]
    Serve(#[source] std::io::Error),
    /// The store did not shut down cleanly.
    #[error("shutting the store down")]
    StoreShutdown(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the control plane until `shutdown` is cancelled, then stops it and returns.
///
/// Start order: data dir, health listener (so a port conflict fails before the store is touched),
/// store, HTTP. Stop order: HTTP, store. Every error names what to fix.
pub async fn run(cfg: ServerConfig, shutdown: CancellationToken) -> Result<()> {
    info!(data_dir = %cfg.data_dir.display(), "starting corten server");
    prepare_data_dir(&cfg.data_dir).await?;
    let listener = bind(cfg.health_addr).await?;
    let store = store::open(&cfg.data_dir).await?;
    serve(listener, store, shutdown).await
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

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr, source })
}

/// Serves the health endpoints for `store` until `shutdown`, then stops HTTP and the store.
///
/// The store is shut down on every path out of here, including a failing HTTP server.
async fn serve<S: ServedStore>(listener: TcpListener, store: S, shutdown: CancellationToken) -> Result<()> {
    let store = std::sync::Arc::new(store);
    let served = serve_http(listener, store.clone(), shutdown.clone()).await;
    info!("shutting down");
    let stopped = store.shutdown().await.map_err(|e| Error::StoreShutdown(Box::new(e)));
    match (&served, &stopped) {
        (Ok(()), Ok(())) => info!("stopped"),
        _ => warn!("stopped with errors"),
    }
    served.and(stopped)
}

async fn serve_http<S: ServedStore>(
    listener: TcpListener,
    store: std::sync::Arc<S>,
    shutdown: CancellationToken,
) -> Result<()> {
    let addr = listener.local_addr().map_err(Error::Serve)?;
    let app = health::router(store.clone(), shutdown.clone());
    let mut http = tokio::spawn(
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()).into_future(),
    );
    info!(%addr, "serving /healthz and /readyz over http");
    tokio::spawn(log_when_ready(store, shutdown.clone()));

    tokio::select! {
        () = shutdown.cancelled() => {}
        ended = &mut http => {
            // axum only returns on shutdown or a fatal listener error.
            shutdown.cancel();
            return match ended {
                Ok(Ok(())) => Err(Error::Serve(std::io::Error::other("http server stopped unexpectedly"))),
                Ok(Err(e)) => Err(Error::Serve(e)),
                Err(join) => Err(Error::Serve(std::io::Error::other(join))),
            };
        }
    }
    match tokio::time::timeout(HTTP_DRAIN_TIMEOUT, &mut http).await {
        Ok(Ok(result)) => result.map_err(Error::Serve),
        Ok(Err(join)) => Err(Error::Serve(std::io::Error::other(join))),
        Err(_) => {
            warn!(timeout = ?HTTP_DRAIN_TIMEOUT, "health requests still running at shutdown; dropping them");
            http.abort();
            Ok(())
        }
    }
}

/// Logs the store's revision once it is ready, and warns while it is slow to get there.
async fn log_when_ready<S: ServedStore>(store: std::sync::Arc<S>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            ready = store.wait_ready(READY_WARN_AFTER) => {
                if ready {
                    break;
                }
                warn!(waited = ?READY_WARN_AFTER, "store is not ready yet; still waiting");
            }
        }
    }
    match store.status().await {
        Ok(status) => {
            info!(revision = status.revision, compact_revision = status.compact_revision, "store ready")
        }
        Err(e) => warn!(error = %e, "store ready but its status cannot be read"),
    }
}

#[cfg(test)]
mod tests;
