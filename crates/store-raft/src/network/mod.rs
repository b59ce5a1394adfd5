//! Raft RPC between store nodes: gRPC (tonic) over mutual TLS (rustls).
//!
//! - [`serve`] answers the `corten.raft.v1.Raft` service for one node: the raft protocol
//!   (AppendEntries, Vote, InstallSnapshot) and the two calls a follower makes to its leader
//!   (Propose a command, ReadIndex for a linearizable read).
//! - [`RaftClient`] is the other end: one cached channel per peer, dialled with TLS (optionally
//!   from a fixed source address). [`Network`] wraps it as openraft's `RaftNetworkFactory`;
//!   [`RaftClient::propose`] and [`RaftClient::read_index`] forward to the leader.
//!
//! Messages are openraft types (and store commands) encoded with bincode inside a `bytes` field;
//! errors the remote raft returns travel in the reply, transport failures become openraft's
//! `Unreachable` (connection refused or reset), `Timeout` or `NetworkError`.
//!
//! TLS material comes from the caller (both sides must present certificates: the server config
//! should require client authentication); "h2" is added to the ALPN protocols when missing.

mod client;
mod server;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;

/// The generated gRPC service and messages of `proto/raft.proto`.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod proto {
    tonic::include_proto!("corten.raft.v1");
}

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::ForwardToLeader;
use openraft::BasicNode;

use crate::error::error_chain;

pub use client::{Network, PeerConnection, RaftClient};
pub use server::{serve, RaftService};

/// Largest encoded message a node sends or accepts. AppendEntries requests that would exceed it
/// are split (openraft retries with fewer entries).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How a node dials its peers.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Client side of mutual TLS: trusted roots and this node's client certificate.
    pub client_tls: Arc<rustls::ClientConfig>,
    /// Bind outgoing connections to this local address (port chosen by the OS), so that peers and
    /// firewalls see a stable source address. `None`: the OS picks.
    pub source_ip: Option<IpAddr>,
    /// How long establishing a connection (TCP and TLS) may take.
    pub connect_timeout: Duration,
    /// Deadline of a forwarded Propose or ReadIndex call. Raft RPCs use openraft's own deadlines.
    pub forward_timeout: Duration,
}

impl NetworkConfig {
    /// Defaults: OS-chosen source address, 3 s to connect, 10 s for forwarded calls.
    pub fn new(client_tls: Arc<rustls::ClientConfig>) -> Self {
        NetworkConfig {
            client_tls,
            source_ip: None,
            connect_timeout: Duration::from_secs(3),
            forward_timeout: Duration::from_secs(10),
        }
    }

    /// Dials out from `ip`.
    pub fn source_ip(mut self, ip: IpAddr) -> Self {
        self.source_ip = Some(ip);
        self
    }
}

/// What can go wrong calling another node or serving calls.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer's address is not `host:port`.
    #[error("invalid peer address {addr:?}")]
    InvalidAddress {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The call did not reach the peer or its answer was lost (refused, reset, TLS failure).
    #[error("raft rpc {rpc} to {addr} failed")]
    Transport {
        rpc: &'static str,
        addr: String,
        #[source]
        source: tonic::Status,
    },
    /// The call got no answer in time.
    #[error("raft rpc {rpc} to {addr} timed out after {timeout:?}")]
    Timeout { rpc: &'static str, addr: String, timeout: Duration },
    /// The peer is not the leader; it names the leader when it knows one.
    #[error("{addr} is not the leader")]
    ForwardToLeader { addr: String, leader: ForwardToLeader<u64, BasicNode> },
    /// The peer's raft refused the request (shutting down, storage failure, lost quorum, ...).
    #[error("raft rpc {rpc} to {addr}: remote error: {message}")]
    Remote { rpc: &'static str, addr: String, message: String },
    /// A message could not be encoded or decoded (a peer speaking another version?).
    #[error("raft message encoding")]
    Codec(#[source] bincode::Error),
    /// The gRPC server failed.
    #[error("raft rpc server")]
    Serve(#[source] tonic::transport::Error),
}

impl Error {
    /// Whether the call may succeed later (on this peer or on the leader it names).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Transport { .. }
                | Error::Timeout { .. }
                | Error::ForwardToLeader { .. }
                | Error::Remote { .. }
        )
    }
}

impl From<Error> for corten_store::Error {
    fn from(e: Error) -> Self {
        corten_store::Error::Unavailable(error_chain(&e))
    }
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    bincode::serialize(value).map_err(Error::Codec)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    bincode::deserialize(bytes).map_err(Error::Codec)
}
