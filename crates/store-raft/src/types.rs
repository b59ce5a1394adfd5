//! The openraft type configuration of the store: what a log entry carries and what applying it
//! returns.

use std::io::Cursor;

use corten_store::mvcc::{Command, Response};
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// The raft types of a Corten store: proposals in, one reply per proposal out; nodes are named
    /// by a `u64` id and reached at `BasicNode::addr` (`host:port` of their raft RPC server).
    pub TypeConfig:
        D = Proposal,
        R = Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// What one raft log entry carries: commands of concurrent writers, batched so that they share one
/// log append and one fsync (see `proposer`).
///
/// Applying a proposal applies its commands in order, each exactly as if it had been proposed
/// alone (its own revision when it writes, its own reply, atomic), and commits all of them in one
/// storage batch together with the entry's log id: a proposal is applied entirely or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The commands, in the order they are applied.
    pub commands: Vec<Command>,
}

impl From<Command> for Proposal {
    fn from(cmd: Command) -> Self {
        Proposal { commands: vec![cmd] }
    }
}

/// The state machine's answer to one applied entry.
///
/// `results` holds one deterministic outcome per command of the proposal, in order (a failed
/// compare is `Ok`, an unknown lease is `Err`); blank and membership entries reply with none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// What each command produced.
    pub results: Vec<Result<Response, corten_store::Error>>,
}

/// The node id type.
pub type NodeId = u64;

/// The raft handle of a store node.
pub type Raft = openraft::Raft<TypeConfig>;
