//! The store the server runs on, and the one function that opens it.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use corten_store::Store;
use corten_store_raft::{RaftConfig, RaftStore};

use crate::{Error, Result};

/// What the server needs from a store beyond [`Store`]: readiness and a clean shutdown.
///
/// Implemented for [`RaftStore`] (what `corten server` runs); tests implement it for `MemStore`.
pub trait ServedStore: Store {
    /// Why [`ServedStore::shutdown`] failed.
    type ShutdownError: std::error::Error + Send + Sync + 'static;

    /// Whether the store can serve reads and writes now (a leader is known and the log applied).
    fn is_ready(&self) -> bool;

    /// Waits until the store is ready or `timeout` passes; returns whether it is ready.
    fn wait_ready(&self, timeout: Duration) -> impl Future<Output = bool> + Send;

    /// Stops the store: raft first, then the storage; in-flight requests fail with `Stopped`.
    fn shutdown(&self) -> impl Future<Output = Result<(), Self::ShutdownError>> + Send;
}

impl ServedStore for RaftStore {
    type ShutdownError = corten_store_raft::Error;

    fn is_ready(&self) -> bool {
        RaftStore::is_ready(self)
    }

    async fn wait_ready(&self, timeout: Duration) -> bool {
        RaftStore::wait_ready(self, timeout).await.is_ok()
    }

    async fn shutdown(&self) -> Result<(), Self::ShutdownError> {
        RaftStore::shutdown(self).await
    }
}

/// Opens the single-node replicated store in `data_dir`.
pub(crate) async fn open(data_dir: &Path) -> Result<RaftStore> {
    // The store logs its revision once opened.
    RaftStore::open(RaftConfig::single_node(data_dir))
        .await
        .map_err(|source| Error::OpenStore { path: data_dir.to_path_buf(), source })
}
