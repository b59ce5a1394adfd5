//! The calling side: cached TLS channels to peers, openraft's network factory on top, and the
//! calls a follower forwards to its leader.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    CheckIsLeaderError, ClientWriteError, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError,
    RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, InstallSnapshotRequest,
    InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, LogId};
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

use super::proto::raft_client::RaftClient as GrpcClient;
use super::proto::Payload;
use super::{decode, encode, tls, Error, NetworkConfig, Result, MAX_MESSAGE_BYTES};
use crate::types::{Proposal, TypeConfig};

/// The RPCs of the service, for dispatch and error messages.
#[derive(Debug, Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Propose,
    ReadIndex,
}

impl Rpc {
    fn name(self) -> &'static str {
        match self {
            Rpc::AppendEntries => "AppendEntries",
            Rpc::Vote => "Vote",
            Rpc::InstallSnapshot => "InstallSnapshot",
            Rpc::Propose => "Propose",
            Rpc::ReadIndex => "ReadIndex",
        }
    }
}

/// The reply of a Propose call.
type ProposeReply =
    std::result::Result<ClientWriteResponse<TypeConfig>, RaftError<u64, ClientWriteError<u64, BasicNode>>>;

/// The reply of a ReadIndex call.
type ReadIndexReply =
    std::result::Result<Option<LogId<u64>>, RaftError<u64, CheckIsLeaderError<u64, BasicNode>>>;

/// Connections from this node to its peers: one lazily connected gRPC channel per peer address,
/// dropped after a transport failure so that the next call dials afresh. Cheap to clone.
#[derive(Clone)]
pub struct RaftClient {
    inner: Arc<Inner>,
}

struct Inner {
    tls: tokio_rustls::TlsConnector,
    source_ip: Option<IpAddr>,
    connect_timeout: Duration,
    forward_timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
}

impl fmt::Debug for RaftClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftClient")
            .field("source_ip", &self.inner.source_ip)
            .field("peers", &self.inner.channels.lock().keys().cloned().collect::<Vec<_>>())
            .finish()
    }
}

impl RaftClient {
    /// A client that dials peers as `config` says.
    pub fn new(config: NetworkConfig) -> Self {
        let tls = tokio_rustls::TlsConnector::from(tls::client_config_with_h2(config.client_tls));
        RaftClient {
            inner: Arc::new(Inner {
                tls,
                source_ip: config.source_ip,
                connect_timeout: config.connect_timeout,
                forward_timeout: config.forward_timeout,
                channels: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Forwards a proposal to `leader` (which proposes it to raft as one entry and waits until it
    /// is applied).
    ///
    /// Fails with [`Error::ForwardToLeader`] when `leader` is no longer the leader.
    pub async fn propose(
        &self,
        leader: &BasicNode,
        proposal: &Proposal,
    ) -> Result<ClientWriteResponse<TypeConfig>> {
        let request = encode(proposal)?;
        let reply: ProposeReply =
            decode(&self.call(&leader.addr, Rpc::Propose, request, self.inner.forward_timeout).await?)?;
        reply.map_err(|e| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                Error::ForwardToLeader { addr: leader.addr.clone(), leader: f }
            }
            e => {
                Error::Remote { rpc: Rpc::Propose.name(), addr: leader.addr.clone(), message: e.to_string() }
            }
        })
    }

    /// Asks `leader` to confirm its leadership with a quorum and returns the log index this
    /// node's state machine must reach before a read on it is linearizable (0: nothing to wait for).
    pub async fn read_index(&self, leader: &BasicNode) -> Result<u64> {
        let reply: ReadIndexReply =
            decode(&self.call(&leader.addr, Rpc::ReadIndex, Vec::new(), self.inner.forward_timeout).await?)?;
        match reply {
            Ok(log_id) => Ok(log_id.map_or(0, |id| id.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(Error::ForwardToLeader { addr: leader.addr.clone(), leader: f })
            }
            Err(e) => Err(Error::Remote {
                rpc: Rpc::ReadIndex.name(),
                addr: leader.addr.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// The cached channel to `addr`, created (not yet connected) when missing.
    fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self.inner.channels.lock();
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|source| Error::InvalidAddress { addr: addr.to_owned(), source })?
            .connect_timeout(self.inner.connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let tls = self.inner.tls.clone();
        let source_ip = self.inner.source_ip;
        let connector = tower::service_fn(move |uri| tls::connect(uri, tls.clone(), source_ip));
        let channel = endpoint.connect_with_connector_lazy(connector);
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Drops the cached channel to `addr` (after a transport failure).
    fn forget(&self, addr: &str) {
        self.inner.channels.lock().remove(addr);
    }

    /// One unary call with a deadline; returns the reply's bytes.
    async fn call(&self, addr: &str, rpc: Rpc, data: Vec<u8>, timeout: Duration) -> Result<Vec<u8>> {
        let mut client = GrpcClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let request = tonic::Request::new(Payload { data });
        let call = async {
            match rpc {
                Rpc::AppendEntries => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::InstallSnapshot => client.install_snapshot(request).await,
                Rpc::Propose => client.propose(request).await,
                Rpc::ReadIndex => client.read_index(request).await,
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(reply)) => Ok(reply.into_inner().data),
            Ok(Err(source)) => {
                if is_transport_failure(&source) {
                    self.forget(addr);
                }
                Err(Error::Transport { rpc: rpc.name(), addr: addr.to_owned(), source })
            }
            Err(_) => Err(Error::Timeout { rpc: rpc.name(), addr: addr.to_owned(), timeout }),
        }
    }
}

/// Whether a gRPC status means the connection failed (as opposed to the server answering with an
/// error status).
fn is_transport_failure(status: &tonic::Status) -> bool {
    matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled)
}

/// openraft's network factory: hands out a [`PeerConnection`] per replication target, all sharing
/// one [`RaftClient`] (and so its channels).
#[derive(Debug, Clone)]
pub struct Network {
    id: u64,
    client: RaftClient,
}

impl Network {
    /// The network of node `id`, calling peers through `client`.
    pub fn new(id: u64, client: RaftClient) -> Self {
        Network { id, client }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerConnection {
        PeerConnection { id: self.id, target, node: node.clone(), client: self.client.clone() }
    }
}

/// The raft RPCs from this node to one peer.
#[derive(Debug)]
pub struct PeerConnection {
    id: u64,
    target: u64,
    node: BasicNode,
    client: RaftClient,
}

impl PeerConnection {
    /// Sends an encoded request and decodes the peer's `Result<R, RaftError<E>>` reply into
    /// openraft's error shape.
    async fn rpc<Resp, E>(
        &self,
        rpc: Rpc,
        action: RPCTypes,
        data: Vec<u8>,
        option: &RPCOption,
    ) -> std::result::Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        let reply = match self.client.call(&self.node.addr, rpc, data, timeout).await {
            Ok(reply) => reply,
            Err(Error::Timeout { .. }) => {
                return Err(RPCError::Timeout(Timeout { action, id: self.id, target: self.target, timeout }))
            }
            Err(e) if is_unreachable(&e) => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => return Err(network_error(&e)),
        };
        let reply: std::result::Result<Resp, RaftError<u64, E>> =
            decode(&reply).map_err(|e| network_error(&e))?;
        reply
            .map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }
}

fn network_error<E: std::error::Error>(e: &Error) -> RPCError<u64, BasicNode, RaftError<u64, E>> {
    RPCError::Network(NetworkError::new(e))
}

/// Whether a transport error means the peer is down or cut off (openraft then backs off before
/// retrying) rather than a one-off failure.
fn is_unreachable(e: &Error) -> bool {
    matches!(e, Error::Transport { source, .. } if source.code() == tonic::Code::Unavailable)
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let data = encode(&rpc).map_err(|e| network_error(&e))?;
        if data.len() > MAX_MESSAGE_BYTES && rpc.entries.len() > 1 {
            // Too big for one message: openraft retries with fewer entries.
            let hint = rpc.entries.len() as u64 / 2;
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(hint)));
        }
        self.rpc(Rpc::AppendEntries, RPCTypes::AppendEntries, data, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let data = encode(&rpc).map_err(|e| network_error(&e))?;
        self.rpc(Rpc::InstallSnapshot, RPCTypes::InstallSnapshot, data, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> std::result::Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let data = encode(&rpc).map_err(|e| network_error(&e))?;
        self.rpc(Rpc::Vote, RPCTypes::Vote, data, &option).await
    }
}
