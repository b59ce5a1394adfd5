//! The replicated implementation of `corten_store::Store`: the MVCC rules of `corten-store` over
//! RocksDB column families inside an openraft state machine.
//!
//! - [`RaftStore`] (in `store`): the `Store` implementation, membership helpers, readiness.
//! - `engine`: the RocksDB instance (one column family per MVCC table, `raft_log`, `raft_meta`)
//!   and [`RocksEngine`], the MVCC tables as a `corten_store::mvcc::Engine`.
//! - `log_store`: the raft log and vote; appends are fsynced on a syncer thread.
//! - `proposer`: group commit of client writes (concurrent commands batched into one entry).
//! - `state_machine`: applying proposals, snapshots.
//! - [`network`]: raft RPC over gRPC with mutual TLS, and forwarding to the leader.
//!
//! This is the only crate that touches openraft and RocksDB; it must not depend on the API server
//! or anything above the store.

mod engine;
mod error;
mod log_store;
pub mod network;
mod proposer;
mod state_machine;
mod store;
pub mod types;

pub use engine::RocksEngine;
pub use error::{Error, Result};
pub use log_store::LogStore;
pub use state_machine::{SnapshotBuilder, StateMachine};
pub use store::{Forwarder, NoNetwork, RaftConfig, RaftStore};
pub use types::{NodeId, Proposal, Raft, Reply, TypeConfig};
