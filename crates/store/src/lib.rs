//! Corten's datastore contract: a revisioned key-value store with etcd v3 semantics.
//!
//! The API server is generic over [`Store`]; everything it needs from etcd is here: one global
//! revision, per-key `create_revision`/`mod_revision`/`version`, ranges at a past revision with
//! pagination, compare-and-swap transactions, watches from any retained revision, compaction and
//! leases.
//!
//! The MVCC rules live once, in [`mvcc`], over a small [`mvcc::Engine`] of ordered tables, so every
//! backend has identical semantics: [`MemStore`] runs them over in-memory tables, the raft backend
//! (`corten-store-raft`) over RocksDB column families inside its replicated state machine.
//!
//! This crate must not depend on RocksDB, openraft or any network stack.

pub mod lease;
mod mem;
pub mod mvcc;
#[cfg(feature = "testing")]
pub mod testing;
mod types;
pub mod watch;

pub use mem::{MemStore, MemStoreConfig};
pub use types::*;

use std::future::Future;

/// Largest value accepted by a put, in bytes (etcd's default request limit, 1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// Largest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// What can go wrong talking to a store.
///
/// [`Error::is_retryable`] splits transient conditions (no leader yet, shutting down elsewhere)
/// from requests that will never succeed as sent and from fatal storage failures.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Error {
    /// The requested revision was compacted away; the caller must re-read from a newer one.
    #[error("required revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted { requested: Revision, compacted: Revision },
    /// The requested revision is newer than the store's current revision.
    #[error("required revision {requested} is a future revision (current is {current})")]
    FutureRevision { requested: Revision, current: Revision },
    /// A value over [`MAX_VALUE_BYTES`]; nothing was written.
    #[error("value of {size} bytes for key {key:?} exceeds the limit of {limit} bytes")]
    ValueTooLarge { key: String, size: usize, limit: usize },
    /// A key that is empty, too long or contains a NUL byte.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    /// A transaction that is malformed (for example the same key written twice).
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
    /// The lease does not exist (never granted, revoked or expired).
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    /// This node cannot serve the request now (no leader elected, lost quorum, catching up).
    /// Retry later, possibly on another node.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store has been shut down.
    #[error("store is shut down")]
    Stopped,
    /// Storage itself failed (I/O error, corrupt data). The process should stop serving.
    #[error("storage failure: {0}")]
    Fatal(String),
}

impl Error {
    /// Whether the same request may succeed if retried later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A revisioned key-value store with etcd v3 semantics.
///
/// Invariants every implementation upholds (the [`testing`] suite checks them):
/// - There is one global revision. It starts at 1 for an empty store and grows by exactly one for
///   every transaction that writes (puts or deletes at least one key); read-only transactions,
///   failed compares without writes and no-op deletes do not change it.
/// - A key's `create_revision` is the revision that created it since it last did not exist, its
///   `mod_revision` the revision of its last write, its `version` the number of writes since it was
///   created (a delete then a re-create starts again at 1).
/// - A transaction is atomic: all of its writes are visible at one revision or none are, and an
///   error means nothing was written.
/// - A watch delivers every change at or after its start revision exactly once, in revision order,
///   with no gaps, until the stream ends; a stream that cannot keep that promise ends with an
///   error ([`Error::Compacted`] when the history it needs is gone).
/// - An acknowledged write is durable (for persistent backends: survives `kill -9`).
pub trait Store: Send + Sync + 'static {
    /// Reads keys as of one revision.
    fn range(&self, req: RangeRequest) -> impl Future<Output = Result<RangeResponse>> + Send;

    /// Atomically evaluates `compares` against the current state and applies either `success` or
    /// `failure`.
    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnResponse>> + Send;

    /// Streams changes to `range` starting at `start_revision` (0 = changes after now).
    ///
    /// Fails at once with [`Error::Compacted`] when `start_revision` is below the compaction point.
    fn watch(&self, req: WatchRequest) -> impl Future<Output = Result<WatchStream>> + Send;

    /// Discards history older than `revision`; afterwards reads and watches below it fail with
    /// [`Error::Compacted`].
    fn compact(&self, revision: Revision) -> impl Future<Output = Result<()>> + Send;

    /// Grants a lease that expires `ttl_seconds` after its last keep-alive.
    fn lease_grant(&self, ttl_seconds: i64) -> impl Future<Output = Result<Lease>> + Send;

    /// Restarts a lease's countdown; returns the lease with its TTL.
    fn lease_keep_alive(&self, id: LeaseId) -> impl Future<Output = Result<Lease>> + Send;

    /// Revokes a lease, deleting every key attached to it in one revision.
    fn lease_revoke(&self, id: LeaseId) -> impl Future<Output = Result<()>> + Send;

    /// The current revision and the compaction point.
    fn status(&self) -> impl Future<Output = Result<StoreStatus>> + Send;

    /// Reads one key at the current revision.
    fn get(&self, key: impl Into<Vec<u8>> + Send) -> impl Future<Output = Result<Option<KeyValue>>> + Send {
        let req = RangeRequest::key(key);
        async move { Ok(self.range(req).await?.kvs.into_iter().next()) }
    }

    /// Writes one key unconditionally; returns the new revision.
    fn put(
        &self,
        key: impl Into<Vec<u8>> + Send,
        value: impl Into<Vec<u8>> + Send,
    ) -> impl Future<Output = Result<Revision>> + Send {
        let txn = Txn::new().success(Op::put(key, value));
        async move { Ok(self.txn(txn).await?.revision) }
    }
}
