//! Errors of the replicated store, and their mapping into `corten_store::Error` (one place).

use std::path::PathBuf;

use openraft::error::{
    CheckIsLeaderError, ClientWriteError, Fatal, ForwardToLeader, InitializeError, RaftError,
};
use openraft::{BasicNode, StorageError, StorageIOError};

use crate::types::NodeId;

/// What can go wrong opening or running a replicated store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A RocksDB operation failed.
    #[error("rocksdb {op}{}", path.as_ref().map(|p| format!(" at {}", p.display())).unwrap_or_default())]
    Rocks {
        op: &'static str,
        path: Option<PathBuf>,
        #[source]
        source: rocksdb::Error,
    },
    /// The database lacks a column family this crate creates on open.
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
    /// Stored bytes could not be decoded (or a value could not be encoded).
    #[error("{what} is corrupt")]
    Codec {
        what: &'static str,
        #[source]
        source: bincode::Error,
    },
    /// Creating the data directory failed.
    #[error("creating data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The raft core stopped, or refused a request.
    #[error("raft: {0}")]
    Raft(String),
    /// The store did not become ready in time.
    #[error("store not ready after {0:?}: {1}")]
    NotReady(std::time::Duration, String),
    /// The MVCC layer reported an error.
    #[error(transparent)]
    Store(#[from] corten_store::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for corten_store::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => e,
            Error::NotReady(..) => corten_store::Error::Unavailable(error_chain(&e)),
            e => corten_store::Error::Fatal(error_chain(&e)),
        }
    }
}

/// `e` and its sources, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// An error as openraft's storage error (openraft stops the node on it).
pub(crate) fn storage_error(e: impl Into<corten_store::Error>) -> StorageError<NodeId> {
    let e: corten_store::Error = e.into();
    StorageError::IO { source: StorageIOError::write(&e) }
}

/// A storage error reading.
pub(crate) fn storage_read_error(e: impl Into<corten_store::Error>) -> StorageError<NodeId> {
    let e: corten_store::Error = e.into();
    StorageError::IO { source: StorageIOError::read(&e) }
}

/// What a failed raft call means for the caller, when it is not "go to the leader".
pub(crate) fn fatal(e: &Fatal<NodeId>) -> corten_store::Error {
    match e {
        Fatal::Stopped => corten_store::Error::Stopped,
        e => corten_store::Error::Fatal(format!("raft: {e}")),
    }
}

/// A raft call's outcome: the leader to forward to, or the error to return.
#[derive(Debug)]
pub(crate) enum RaftFailure {
    /// This node is not the leader; forward there (when known).
    NotLeader(ForwardToLeader<NodeId, BasicNode>),
    /// Return this to the caller.
    Fail(corten_store::Error),
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>> for RaftFailure {
    fn from(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => RaftFailure::NotLeader(f),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                RaftFailure::Fail(corten_store::Error::Unavailable(format!("membership change: {e}")))
            }
            RaftError::Fatal(f) => RaftFailure::Fail(fatal(&f)),
        }
    }
}

impl From<RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>> for RaftFailure {
    fn from(e: RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => RaftFailure::NotLeader(f),
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
                RaftFailure::Fail(corten_store::Error::Unavailable(format!("no quorum: {q}")))
            }
            RaftError::Fatal(f) => RaftFailure::Fail(fatal(&f)),
        }
    }
}

impl From<RaftError<NodeId, InitializeError<NodeId, BasicNode>>> for Error {
    fn from(e: RaftError<NodeId, InitializeError<NodeId, BasicNode>>) -> Self {
        Error::Raft(format!("initialize: {e}"))
    }
}

impl From<Fatal<NodeId>> for Error {
    fn from(e: Fatal<NodeId>) -> Self {
        Error::Raft(e.to_string())
    }
}
