//! The answering side: the `corten.raft.v1.Raft` gRPC service over a node's [`openraft::Raft`].

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::Raft;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::proto::raft_server::{Raft as RaftRpc, RaftServer};
use super::proto::Payload;
use super::{decode, encode, tls, Error, Result, MAX_MESSAGE_BYTES};
use crate::error::error_chain;
use crate::types::{Proposal, TypeConfig};

/// Answers raft RPCs and forwarded client calls by handing them to the local raft.
///
/// Propose and ReadIndex succeed only on the leader; elsewhere the reply carries openraft's
/// `ForwardToLeader` error naming the leader, if known.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft<TypeConfig>,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService").finish_non_exhaustive()
    }
}

impl RaftService {
    /// The service of `raft`.
    pub fn new(raft: Raft<TypeConfig>) -> Self {
        RaftService { raft }
    }

    /// The tonic service, with message size limits set.
    pub fn into_server(self) -> RaftServer<Self> {
        // Room for the protobuf framing around the largest payload a peer may send.
        let limit = MAX_MESSAGE_BYTES + 1024 * 1024;
        RaftServer::new(self).max_decoding_message_size(limit).max_encoding_message_size(limit)
    }
}

/// Serves the raft service of `raft` on `listener` with mutual TLS until `shutdown` is cancelled.
///
/// `tls` should require client certificates (`rustls::server::WebPkiClientVerifier`); "h2" is
/// added to its ALPN protocols when missing. Returns once the listener is closed and in-flight
/// calls have finished.
pub async fn serve(
    raft: Raft<TypeConfig>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> Result<()> {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "serving raft rpc");
    let incoming = tls::incoming(listener, tls, shutdown.clone());
    tonic::transport::Server::builder()
        .add_service(RaftService::new(raft).into_server())
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .map_err(Error::Serve)?;
    tracing::info!(?addr, "raft rpc server stopped");
    Ok(())
}

fn decode_request<T: serde::de::DeserializeOwned>(request: Request<Payload>) -> Result<T, Status> {
    decode(&request.into_inner().data).map_err(|e| Status::invalid_argument(error_chain(&e)))
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<Payload>, Status> {
    let data = encode(value).map_err(|e| Status::internal(error_chain(&e)))?;
    Ok(Response::new(Payload { data }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode_request(request)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: VoteRequest<u64> = decode_request(request)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode_request(request)?;
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn propose(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        // A follower's batch of commands: proposed as one entry, as it was batched.
        let proposal: Proposal = decode_request(request)?;
        reply(&self.raft.client_write(proposal).await)
    }

    async fn read_index(&self, _request: Request<Payload>) -> Result<Response<Payload>, Status> {
        // Leadership confirmed by a quorum; the caller waits for its own state machine to apply
        // up to this log id (the leader's own apply progress does not matter to it).
        let result = self.raft.get_read_log_id().await.map(|(read_log_id, _applied)| read_log_id);
        reply(&result)
    }
}
