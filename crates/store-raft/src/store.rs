//! [`RaftStore`]: `corten_store::Store` over the replicated state machine.
//!
//! Writes (transactions, compaction, leases) are validated, then proposed to raft, batched with
//! concurrent writes into one log entry (group commit, see `proposer`); on a follower the batch is
//! forwarded to the leader through the [`Forwarder`] the network layer provides.
//! Linearizable reads confirm leadership with a quorum (read-index: locally on the leader, through
//! the forwarder on a follower), wait until the local state machine has applied that far, then
//! read locally; serializable reads are local. Watches are served from the local state machine.
//!
//! The leader also runs two housekeeping tasks: lease expiry (revocations go through raft) and
//! automatic compaction to the revision current `compaction_window` ago.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use corten_store::lease::new_lease_id;
use corten_store::mvcc::{Command, Response};
use corten_store::{
    Lease, LeaseId, RangeRequest, RangeResponse, ReadConsistency, Revision, Store, StoreStatus, Txn,
    TxnResponse, WatchRequest, WatchStream,
};
use futures::future::BoxFuture;
use openraft::error::{ForwardToLeader, InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::metrics::RaftMetrics;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, InstallSnapshotRequest,
    InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, ChangeMembers, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use rocksdb::DB;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::engine::open_db;
use crate::error::{Error, RaftFailure, Result};
use crate::log_store::LogStore;
use crate::proposer::Proposer;
use crate::state_machine::{clear_install_marker, recover_interrupted_install, Shared, StateMachine};
use crate::types::{NodeId, Proposal, Raft, TypeConfig};

/// Sends what a follower cannot do itself to the leader (implemented by the network layer).
pub trait Forwarder: Send + Sync + 'static {
    /// Proposes `proposal` on `leader` and returns its applied reply.
    fn propose<'a>(
        &'a self,
        leader: &'a BasicNode,
        proposal: &'a Proposal,
    ) -> BoxFuture<'a, corten_store::Result<ClientWriteResponse<TypeConfig>>>;

    /// Has `leader` confirm its leadership; returns the log index a linearizable read must wait
    /// for.
    fn read_index<'a>(&'a self, leader: &'a BasicNode) -> BoxFuture<'a, corten_store::Result<u64>>;
}

impl Forwarder for crate::network::RaftClient {
    fn propose<'a>(
        &'a self,
        leader: &'a BasicNode,
        proposal: &'a Proposal,
    ) -> BoxFuture<'a, corten_store::Result<ClientWriteResponse<TypeConfig>>> {
        Box::pin(async move { Ok(crate::network::RaftClient::propose(self, leader, proposal).await?) })
    }

    fn read_index<'a>(&'a self, leader: &'a BasicNode) -> BoxFuture<'a, corten_store::Result<u64>> {
        Box::pin(async move { Ok(crate::network::RaftClient::read_index(self, leader).await?) })
    }
}

/// Settings of a [`RaftStore`] node.
#[derive(Clone)]
pub struct RaftConfig {
    /// This node's raft id (stable across restarts, unique in the cluster).
    pub node_id: NodeId,
    /// Where the node keeps its RocksDB (`<data_dir>/store`).
    pub data_dir: PathBuf,
    /// On a fresh node (nothing ever written), initialize a cluster of these members. `None`:
    /// wait to be added to a cluster by its leader.
    pub initial_members: Option<BTreeMap<NodeId, BasicNode>>,
    /// Raft heartbeat period.
    pub heartbeat_interval: Duration,
    /// Minimum election timeout (the maximum is twice this).
    pub election_timeout: Duration,
    /// A snapshot is taken (and the log purged) after this many log entries, or this many applied
    /// commands, whichever comes first (concurrent writes are batched into one entry).
    pub snapshot_logs: u64,
    /// Log entries kept behind a snapshot (so slightly lagging followers catch up from the log).
    pub logs_kept_after_snapshot: u64,
    /// Automatic compaction keeps this much history (`None`: no automatic compaction).
    pub compaction_window: Option<Duration>,
    /// How often automatic compaction runs.
    pub compaction_interval: Duration,
    /// How often expired leases are looked for.
    pub lease_check_interval: Duration,
    /// How long a request may wait for raft (its write to be committed and applied, a read index)
    /// before `Unavailable`; a write that timed out may still be applied.
    pub request_timeout: Duration,
    /// Forwards writes and read-index requests to the leader when this node is a follower.
    pub forwarder: Option<Arc<dyn Forwarder>>,
}

impl std::fmt::Debug for RaftConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftConfig")
            .field("node_id", &self.node_id)
            .field("data_dir", &self.data_dir)
            .field("initial_members", &self.initial_members)
            .field("compaction_window", &self.compaction_window)
            .field("forwarder", &self.forwarder.is_some())
            .finish_non_exhaustive()
    }
}

impl RaftConfig {
    /// Node `node_id` of a cluster, with default timings; it initializes nothing.
    pub fn new(node_id: NodeId, data_dir: impl Into<PathBuf>) -> Self {
        RaftConfig {
            node_id,
            data_dir: data_dir.into(),
            initial_members: None,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(500),
            snapshot_logs: 10_000,
            logs_kept_after_snapshot: 1_000,
            compaction_window: Some(Duration::from_secs(5 * 60)),
            compaction_interval: Duration::from_secs(60),
            lease_check_interval: Duration::from_millis(500),
            request_timeout: Duration::from_secs(10),
            forwarder: None,
        }
    }

    /// A one-voter cluster (node 1) that initializes itself on first start.
    pub fn single_node(data_dir: impl Into<PathBuf>) -> Self {
        let mut cfg = RaftConfig::new(1, data_dir);
        cfg.initial_members = Some(BTreeMap::from([(1, BasicNode::default())]));
        cfg
    }

    fn openraft_config(&self) -> Result<openraft::Config> {
        let election = self.election_timeout.as_millis() as u64;
        let config = openraft::Config {
            cluster_name: "corten".into(),
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            election_timeout_min: election,
            election_timeout_max: election * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            ..Default::default()
        };
        config.validate().map_err(|e| Error::Raft(format!("invalid raft config: {e}")))
    }
}

/// The network of a node that has no peers: every call fails as unreachable.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNetwork;

/// The error of every [`NoNetwork`] call.
#[derive(Debug, thiserror::Error)]
#[error("single-node store: no peers to reach")]
struct NoPeers;

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoNetwork;

    async fn new_client(&mut self, _target: NodeId, _node: &BasicNode) -> NoNetwork {
        NoNetwork
    }
}

impl RaftNetwork<TypeConfig> for NoNetwork {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(RPCError::Unreachable(Unreachable::new(&NoPeers)))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(RPCError::Unreachable(Unreachable::new(&NoPeers)))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(RPCError::Unreachable(Unreachable::new(&NoPeers)))
    }
}

struct Inner {
    raft: Raft,
    proposer: Proposer,
    shared: Arc<Shared>,
    db: Arc<DB>,
    config: RaftConfig,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A node of the replicated store. Cloning gives another handle to the same node.
#[derive(Clone)]
pub struct RaftStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RaftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStore")
            .field("node_id", &self.inner.config.node_id)
            .field("status", &self.inner.shared.mvcc.read().status())
            .finish()
    }
}

/// Whether `m` shows a known leader whose term this node has applied an entry of (a new leader
/// commits a blank entry first, so this means caught up with the leader's commit at election).
fn is_ready(m: &RaftMetrics<NodeId, BasicNode>) -> bool {
    m.current_leader.is_some() && m.last_applied.is_some_and(|id| id.leader_id.term == m.current_term)
}

impl RaftStore {
    /// Opens a node without peers (see [`RaftStore::open_with_network`]).
    pub async fn open(config: RaftConfig) -> Result<Self> {
        Self::open_with_network(config, NoNetwork).await
    }

    /// Opens the node's RocksDB, starts raft with `network`, and on a fresh node with
    /// [`RaftConfig::initial_members`] initializes the cluster. Returns at once; use
    /// [`RaftStore::wait_ready`] before serving.
    pub async fn open_with_network<N: RaftNetworkFactory<TypeConfig>>(
        config: RaftConfig,
        network: N,
    ) -> Result<Self> {
        let path = config.data_dir.join("store");
        std::fs::create_dir_all(&path).map_err(|source| Error::DataDir { path: path.clone(), source })?;
        let db = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || open_db(&path)).await.map_err(Error::Task)??
        };
        let log_store = LogStore::new(db.clone())?;
        if recover_interrupted_install(&db)? {
            log_store.reset()?;
            clear_install_marker(&db)?;
        }
        let shared = Arc::new(Shared::open(db.clone())?);
        let state_machine = StateMachine::new(shared.clone(), db.clone());
        let raft_config = Arc::new(config.openraft_config()?);
        let raft = Raft::new(config.node_id, raft_config, network, log_store, state_machine).await?;
        if let Some(members) = &config.initial_members {
            if !raft.is_initialized().await? {
                tracing::info!(node = config.node_id, ?members, "initializing a new raft cluster");
                raft.initialize(members.clone()).await?;
            }
        }
        tracing::info!(node = config.node_id, path = %path.display(), status = ?shared.mvcc.read().status(), "store opened");
        let stop = CancellationToken::new();
        let (proposer, propose_task) =
            Proposer::start(raft.clone(), config.forwarder.clone(), config.request_timeout, stop.clone());
        let store = RaftStore {
            inner: Arc::new(Inner {
                raft,
                proposer,
                shared,
                db,
                config,
                stop: stop.clone(),
                tasks: Mutex::new(Vec::new()),
            }),
        };
        let weak = Arc::downgrade(&store.inner);
        let lease_task = tokio::spawn(expire_leases(weak.clone(), stop.clone()));
        let compact_task = tokio::spawn(compact_history(weak.clone(), stop.clone()));
        let snapshot_task = tokio::spawn(snapshot_by_commands(weak, stop));
        store.inner.tasks.lock().extend([propose_task, lease_task, compact_task, snapshot_task]);
        Ok(store)
    }

    /// The raft handle (for the network layer's RPC server).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// The latest raft metrics of this node.
    pub fn metrics(&self) -> RaftMetrics<NodeId, BasicNode> {
        self.inner.raft.metrics().borrow().clone()
    }

    /// Whether a leader is known and this node has caught up with it (see
    /// [`RaftStore::wait_ready`]).
    pub fn is_ready(&self) -> bool {
        is_ready(&self.inner.raft.metrics().borrow())
    }

    /// Waits until a leader is known and this node's state machine has applied what the leader
    /// had committed when it was elected.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        self.inner.raft.wait(Some(timeout)).metrics(is_ready, "store ready").await.map(|_| ()).map_err(|e| {
            let m = self.metrics();
            Error::NotReady(
                timeout,
                format!(
                    "{e}; leader {:?}, term {}, applied {:?}",
                    m.current_leader, m.current_term, m.last_applied
                ),
            )
        })
    }

    /// Adds `id` at `addr` (`host:port` of its raft RPC) as a learner and waits until it has caught
    /// up with the log.
    pub async fn add_learner(&self, id: NodeId, addr: impl Into<String>) -> corten_store::Result<()> {
        let node = BasicNode { addr: addr.into() };
        self.inner.raft.add_learner(id, node, true).await.map(|_| ()).map_err(|e| {
            match RaftFailure::from(e) {
                RaftFailure::NotLeader(f) => not_leader(&f),
                RaftFailure::Fail(e) => e,
            }
        })
    }

    /// Makes `voters` the voting members (they must be members already, e.g. learners); members
    /// left out become learners when `retain`, are removed otherwise.
    pub async fn change_membership(
        &self,
        voters: impl IntoIterator<Item = NodeId>,
        retain: bool,
    ) -> corten_store::Result<()> {
        let voters: std::collections::BTreeSet<NodeId> = voters.into_iter().collect();
        self.inner
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), retain)
            .await
            .map(|_| ())
            .map_err(|e| match RaftFailure::from(e) {
                RaftFailure::NotLeader(f) => not_leader(&f),
                RaftFailure::Fail(e) => e,
            })
    }

    /// Removes `ids` from the cluster (voters must be demoted first by [`RaftStore::change_membership`]).
    pub async fn remove_nodes(&self, ids: impl IntoIterator<Item = NodeId>) -> corten_store::Result<()> {
        let ids: std::collections::BTreeSet<NodeId> = ids.into_iter().collect();
        self.inner.raft.change_membership(ChangeMembers::RemoveNodes(ids), false).await.map(|_| ()).map_err(
            |e| match RaftFailure::from(e) {
                RaftFailure::NotLeader(f) => not_leader(&f),
                RaftFailure::Fail(e) => e,
            },
        )
    }

    /// Stops raft and the housekeeping tasks; RocksDB closes when the last handle is dropped.
    pub async fn shutdown(&self) -> Result<()> {
        self.inner.stop.cancel();
        let tasks = std::mem::take(&mut *self.inner.tasks.lock());
        for task in tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "a store task failed");
            }
        }
        self.inner.raft.shutdown().await.map_err(|e| Error::Raft(format!("shutting down: {e}")))?;
        // Everything acknowledged is already synced; make the applied state durable too so the
        // next start does not replay the log.
        self.inner.db.flush_wal(true).map_err(crate::engine::rocks("sync wal"))?;
        // openraft's tasks drop their storage handles shortly after the core stops; wait for it,
        // so that RocksDB closes (and can be reopened) as soon as the caller drops this store.
        // What remains: this handle's and the MVCC engine's.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.inner.db) > 2 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("storage handles still held after raft shutdown (open watches?)");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Proposes `cmd` (batched with concurrent writes; on the leader, or forwarded to it) and
    /// returns its reply once this node has applied it.
    async fn write(&self, cmd: Command) -> corten_store::Result<Response> {
        cmd.validate()?;
        self.inner.proposer.propose(cmd).await
    }

    /// Makes the next local read linearizable (read-index).
    async fn read_barrier(&self) -> corten_store::Result<()> {
        let index = match self.inner.raft.get_read_log_id().await {
            Ok((read, _applied)) => read.map_or(0, |id| id.index),
            Err(e) => match RaftFailure::from(e) {
                RaftFailure::Fail(e) => return Err(e),
                RaftFailure::NotLeader(f) => {
                    let (Some(forwarder), Some(leader)) =
                        (&self.inner.config.forwarder, leader_node(&self.inner.raft, &f))
                    else {
                        return Err(not_leader(&f));
                    };
                    forwarder.read_index(&leader).await?
                }
            },
        };
        wait_applied(&self.inner.raft, index, self.inner.config.request_timeout).await
    }
}

/// The node to forward to: the one `f` names, else the leader's entry in the membership.
pub(crate) fn leader_node(raft: &Raft, f: &ForwardToLeader<NodeId, BasicNode>) -> Option<BasicNode> {
    f.leader_node.clone().or_else(|| {
        let id = f.leader_id?;
        raft.metrics().borrow().membership_config.membership().get_node(&id).cloned()
    })
}

/// Waits until the local state machine has applied `index`, for at most `timeout`.
pub(crate) async fn wait_applied(raft: &Raft, index: u64, timeout: Duration) -> corten_store::Result<()> {
    raft.wait(Some(timeout)).applied_index_at_least(Some(index), "read index").await.map(|_| ()).map_err(
        |e| corten_store::Error::Unavailable(format!("waiting for log index {index} to be applied: {e}")),
    )
}

/// The error of a write or read that cannot be forwarded to the leader.
pub(crate) fn not_leader(f: &ForwardToLeader<NodeId, BasicNode>) -> corten_store::Error {
    let leader = match (&f.leader_id, &f.leader_node) {
        (Some(id), Some(node)) => format!("node {id} at {}", node.addr),
        (Some(id), None) => format!("node {id}"),
        _ => "unknown".to_string(),
    };
    corten_store::Error::Unavailable(format!("not the leader; leader is {leader}"))
}

fn unexpected(resp: Response) -> corten_store::Error {
    corten_store::Error::Fatal(format!("unexpected command response {resp:?}"))
}

/// Whether the node behind `inner` is the leader now; `Some(term)` when it is.
fn leader_term(inner: &Inner) -> Option<u64> {
    let m = inner.raft.metrics();
    let m = m.borrow();
    (m.state == ServerState::Leader).then_some(m.current_term)
}

/// On the leader, revokes expired leases through raft. Countdowns restart when this node becomes
/// leader (it cannot know how long the previous leader had been counting).
async fn expire_leases(inner: std::sync::Weak<Inner>, stop: CancellationToken) {
    let mut led_term = None;
    loop {
        let every = match inner.upgrade() {
            Some(i) => i.config.lease_check_interval,
            None => return,
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let term = leader_term(&inner);
        if term.is_none() || term != led_term {
            led_term = term;
            if term.is_some() {
                let leases = inner.shared.mvcc.read().leases();
                match leases {
                    Ok(leases) => inner.shared.leases.lock().reset(&leases),
                    Err(e) => tracing::error!(error = %e, "reading leases failed"),
                }
            }
            continue;
        }
        let store = RaftStore { inner };
        let expired = store.inner.shared.leases.lock().expired();
        for id in expired {
            match store.write(Command::LeaseRevoke { id }).await {
                Ok(_) | Err(corten_store::Error::LeaseNotFound(_)) => {
                    tracing::debug!(lease = id, "revoked an expired lease")
                }
                Err(e) => tracing::warn!(error = %e, lease = id, "revoking an expired lease failed"),
            }
        }
    }
}

/// On the leader, compacts history to the revision that was current `compaction_window` ago.
async fn compact_history(inner: std::sync::Weak<Inner>, stop: CancellationToken) {
    let (Some(window), every) = (match inner.upgrade() {
        Some(i) => (i.config.compaction_window, i.config.compaction_interval),
        None => return,
    }) else {
        return;
    };
    // (when, revision) samples, oldest first.
    let mut samples: VecDeque<(tokio::time::Instant, Revision)> = VecDeque::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let now = tokio::time::Instant::now();
        let status = inner.shared.mvcc.read().status();
        samples.push_back((now, status.revision));
        let mut target = None;
        while let Some((at, rev)) = samples.front().copied() {
            if now.duration_since(at) < window {
                break;
            }
            target = Some(rev);
            samples.pop_front();
        }
        let Some(rev) = target.filter(|r| *r > status.compact_revision) else { continue };
        if leader_term(&inner).is_none() {
            continue;
        }
        match (RaftStore { inner }).write(Command::Compact(rev)).await {
            Ok(_) => tracing::info!(revision = rev, "compacted history"),
            Err(corten_store::Error::Compacted { .. }) => {}
            Err(e) => tracing::warn!(error = %e, revision = rev, "automatic compaction failed"),
        }
    }
}

/// How often [`snapshot_by_commands`] looks at the applied count.
const SNAPSHOT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Takes a snapshot (after which openraft purges the log) once `snapshot_logs` commands were
/// applied since the last one it took. openraft's own policy counts entries, and one entry may
/// batch up to hundreds of commands, which would let the log grow that many times larger.
/// Building a snapshot is cheap here (its meta only; see `state_machine`).
async fn snapshot_by_commands(inner: std::sync::Weak<Inner>, stop: CancellationToken) {
    let mut at_last = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SNAPSHOT_CHECK_INTERVAL) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let applied = inner.shared.applied_commands.load(std::sync::atomic::Ordering::Relaxed);
        if applied.saturating_sub(at_last) < inner.config.snapshot_logs {
            continue;
        }
        at_last = applied;
        tracing::debug!(applied, "taking a snapshot to purge the log");
        if let Err(e) = inner.raft.trigger().snapshot().await {
            tracing::warn!(error = %e, "triggering a snapshot failed");
        }
    }
}

impl Store for RaftStore {
    async fn range(&self, req: RangeRequest) -> corten_store::Result<RangeResponse> {
        if req.consistency == ReadConsistency::Linearizable {
            self.read_barrier().await?;
        }
        self.inner.shared.mvcc.read().range(&req)
    }

    async fn txn(&self, txn: Txn) -> corten_store::Result<TxnResponse> {
        match self.write(Command::Txn(txn)).await? {
            Response::Txn(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    async fn watch(&self, req: WatchRequest) -> corten_store::Result<WatchStream> {
        self.inner.shared.hub.watch(req, self.inner.shared.clone())
    }

    async fn compact(&self, revision: Revision) -> corten_store::Result<()> {
        self.write(Command::Compact(revision)).await.map(|_| ())
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> corten_store::Result<Lease> {
        match self.write(Command::LeaseGrant { id: new_lease_id(), ttl_seconds }).await? {
            Response::Lease(l) => Ok(l),
            other => Err(unexpected(other)),
        }
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> corten_store::Result<Lease> {
        match self.write(Command::LeaseKeepAlive { id }).await? {
            Response::Lease(l) => Ok(l),
            other => Err(unexpected(other)),
        }
    }

    async fn lease_revoke(&self, id: LeaseId) -> corten_store::Result<()> {
        self.write(Command::LeaseRevoke { id }).await.map(|_| ())
    }

    async fn status(&self) -> corten_store::Result<StoreStatus> {
        Ok(self.inner.shared.mvcc.read().status())
    }
}
