//! The openraft type configuration of the store: what a log entry carries and what applying it
//! returns.

use std::io::Cursor;

use corten_store::mvcc::{Command, Response};
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// The raft types of a Corten store: commands in, command replies out; nodes are named by a
    /// `u64` id and reached at `BasicNode::addr` (`host:port` of their raft RPC server).
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The state machine's answer to one applied entry.
///
/// `result` is the command's deterministic outcome (a failed compare is `Ok`, an unknown lease is
/// `Err`); blank and membership entries reply with `Ok(None)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// What the command produced.
    pub result: Result<Option<Response>, corten_store::Error>,
}

/// The node id type.
pub type NodeId = u64;

/// The raft handle of a store node.
pub type Raft = openraft::Raft<TypeConfig>;
