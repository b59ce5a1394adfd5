//! A cluster of in-process `RaftStore` nodes for the cluster tests.
//!
//! Node `id` keeps its RocksDB files in its own temporary directory, serves raft RPC with mutual
//! TLS on an ephemeral 127.0.0.1 port, is known to its peers by its router proxy address, and dials
//! out from `127.0.0.<10 + id>` so that the router can cut its links.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use corten_store_raft::network::testing::{NodeTls, TestPki};
use corten_store_raft::network::{self, Network, NetworkConfig, RaftClient};
use corten_store_raft::types::Raft;
use corten_store_raft::{RaftConfig, RaftStore};
use openraft::BasicNode;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::router::{node_ip, Router};

/// Log entries between snapshots; small so that a stopped follower falls behind the purged log.
pub const SNAPSHOT_EVERY: u64 = 50;

/// How long a test waits for a condition (an election, replication) before failing.
const PATIENCE: Duration = Duration::from_secs(15);

struct Node {
    store: RaftStore,
    stop: CancellationToken,
    server: JoinHandle<network::Result<()>>,
}

/// Three store nodes behind a router.
pub struct Cluster {
    pki: TestPki,
    router: Router,
    dirs: BTreeMap<u64, tempfile::TempDir>,
    members: BTreeMap<u64, BasicNode>,
    nodes: BTreeMap<u64, Node>,
    shutdown: CancellationToken,
}

impl Cluster {
    /// Starts nodes 1, 2 and 3 and initializes them as one cluster of three voters.
    pub async fn start() -> Result<Self> {
        let shutdown = CancellationToken::new();
        let mut cluster = Cluster {
            pki: TestPki::new()?,
            router: Router::new(shutdown.clone()),
            dirs: BTreeMap::new(),
            members: BTreeMap::new(),
            nodes: BTreeMap::new(),
            shutdown,
        };
        let mut listeners = Vec::new();
        for id in 1..=3 {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let proxy = cluster.router.add_node(id, listener.local_addr()?).await?;
            cluster.members.insert(id, BasicNode::new(proxy.to_string()));
            cluster.dirs.insert(id, tempfile::tempdir()?);
            listeners.push((id, listener));
        }
        for (id, listener) in listeners {
            cluster.run_node(id, listener).await?;
        }
        Ok(cluster)
    }

    async fn run_node(&mut self, id: u64, listener: TcpListener) -> Result<()> {
        let NodeTls { server: server_tls, client: client_tls } = self.pki.node(&format!("node-{id}"))?;
        let client = RaftClient::new(NetworkConfig::new(client_tls).source_ip(node_ip(id)));
        let mut config = RaftConfig::new(id, self.dirs[&id].path());
        if id == 1 {
            // Node 1 initializes the cluster on its first start; the others wait to be contacted.
            config.initial_members = Some(self.members.clone());
        }
        config.snapshot_logs = SNAPSHOT_EVERY;
        config.logs_kept_after_snapshot = 0;
        config.forwarder = Some(Arc::new(client.clone()));
        let store = RaftStore::open_with_network(config, Network::new(id, client))
            .await
            .with_context(|| format!("opening node {id}"))?;
        let stop = self.shutdown.child_token();
        let server = tokio::spawn(network::serve(store.raft().clone(), listener, server_tls, stop.clone()));
        self.nodes.insert(id, Node { store, stop, server });
        Ok(())
    }

    /// Stops node `id` as a crash would look to its peers: store and RPC server go away (its
    /// files stay). Returns the index of the last log entry it had.
    pub async fn stop_node(&mut self, id: u64) -> Result<u64> {
        let node = self.nodes.remove(&id).context("node is not running")?;
        let last_log = node.store.raft().metrics().borrow().last_log_index.unwrap_or(0);
        node.stop.cancel();
        node.store.shutdown().await?;
        node.server.await??;
        Ok(last_log)
    }

    /// Restarts a stopped node on its files, behind its old address.
    pub async fn restart_node(&mut self, id: u64) -> Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        self.router.set_upstream(id, listener.local_addr()?);
        self.run_node(id, listener).await
    }

    /// The running nodes.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The running nodes other than `id`.
    pub fn others(&self, id: u64) -> Vec<u64> {
        self.ids().into_iter().filter(|&other| other != id).collect()
    }

    pub fn store(&self, id: u64) -> &RaftStore {
        &self.nodes[&id].store
    }

    pub fn raft(&self, id: u64) -> &Raft {
        self.store(id).raft()
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The leader every running node agrees on, once there is one.
    pub async fn leader(&self) -> Result<u64> {
        self.leader_among(&self.ids()).await
    }

    /// The leader the nodes in `among` agree on, once there is one (and it is one of them).
    pub async fn leader_among(&self, among: &[u64]) -> Result<u64> {
        poll("an agreed leader", || async {
            let leaders: Vec<_> =
                among.iter().map(|&id| self.raft(id).metrics().borrow().current_leader).collect();
            match leaders.first().copied().flatten() {
                Some(l) if among.contains(&l) && leaders.iter().all(|&x| x == Some(l)) => Some(l),
                _ => None,
            }
        })
        .await
    }

    /// Waits until every running node has applied the leader's whole log.
    pub async fn converged(&self) -> Result<()> {
        let leader = self.leader().await?;
        poll("every node to apply the leader's log", || async {
            let last = self.raft(leader).metrics().borrow().last_log_index;
            self.ids()
                .iter()
                .all(|&id| self.raft(id).metrics().borrow().last_applied.map(|l| l.index) == last)
                .then_some(())
        })
        .await
    }

    /// Stops every node.
    pub async fn stop(mut self) -> Result<()> {
        for id in self.ids() {
            self.stop_node(id).await?;
        }
        self.shutdown.cancel();
        Ok(())
    }
}

/// Polls `f` every 20 ms until it returns `Some`, failing after [`PATIENCE`].
pub async fn poll<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {PATIENCE:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
