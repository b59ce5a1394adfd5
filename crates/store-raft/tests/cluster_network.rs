//! The raft network layer under a real openraft cluster: three nodes with in-memory storage
//! talking gRPC over mutual TLS through a router that can cut links. The store-level cluster
//! tests (RocksDB, watches, reads) are in `cluster.rs`; these pin down the transport: replication,
//! elections, forwarding, chunked snapshot install and partitions.

#[path = "cluster_network/mem.rs"]
mod mem;
#[path = "cluster/router.rs"]
mod router;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use corten_store::mvcc::Command;
use corten_store::Txn;
use corten_store_raft::network::testing::TestPki;
use corten_store_raft::network::{self, Network, NetworkConfig, RaftClient};
use corten_store_raft::types::{Proposal, TypeConfig};
use mem::{Counter, MemLog};
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use router::{node_ip, Router};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Logs between snapshots; small so that a stopped follower falls behind the purged log.
const SNAPSHOT_EVERY: u64 = 20;

struct Node {
    raft: Raft<TypeConfig>,
    client: RaftClient,
    stop: CancellationToken,
    server: JoinHandle<network::Result<()>>,
}

/// Three nodes; each node's storage outlives its process so that it can be restarted.
struct Cluster {
    pki: TestPki,
    router: Router,
    members: BTreeMap<u64, BasicNode>,
    logs: BTreeMap<u64, MemLog>,
    counters: BTreeMap<u64, Counter>,
    nodes: BTreeMap<u64, Node>,
    shutdown: CancellationToken,
}

impl Cluster {
    async fn start() -> Result<Self> {
        let shutdown = CancellationToken::new();
        let mut cluster = Cluster {
            pki: TestPki::new()?,
            router: Router::new(shutdown.clone()),
            members: BTreeMap::new(),
            logs: BTreeMap::new(),
            counters: BTreeMap::new(),
            nodes: BTreeMap::new(),
            shutdown,
        };
        let mut listeners = Vec::new();
        for id in 1..=3 {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let proxy = cluster.router.add_node(id, listener.local_addr()?).await?;
            cluster.members.insert(id, BasicNode::new(proxy.to_string()));
            cluster.logs.insert(id, MemLog::default());
            cluster.counters.insert(id, Counter::default());
            listeners.push((id, listener));
        }
        for (id, listener) in listeners {
            cluster.run_node(id, listener).await?;
        }
        cluster.nodes[&1].raft.initialize(cluster.members.clone()).await?;
        Ok(cluster)
    }

    async fn run_node(&mut self, id: u64, listener: TcpListener) -> Result<()> {
        let tls = self.pki.node(&format!("node-{id}"))?;
        let client = RaftClient::new(NetworkConfig::new(tls.client).source_ip(node_ip(id)));
        let config = Config {
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
            max_in_snapshot_log_to_keep: 0,
            ..Config::default()
        };
        let raft = Raft::new(
            id,
            Arc::new(config.validate()?),
            Network::new(id, client.clone()),
            self.logs[&id].clone(),
            self.counters[&id].clone(),
        )
        .await?;
        let stop = self.shutdown.child_token();
        let server = tokio::spawn(network::serve(raft.clone(), listener, tls.server, stop.clone()));
        self.nodes.insert(id, Node { raft, client, stop, server });
        Ok(())
    }

    /// Stops a node's raft and its RPC server (its storage is kept).
    async fn stop_node(&mut self, id: u64) -> Result<()> {
        let node = self.nodes.remove(&id).context("node not running")?;
        node.raft.shutdown().await?;
        node.stop.cancel();
        node.server.await??;
        Ok(())
    }

    /// Restarts a stopped node on its old storage, behind its old proxy address.
    async fn restart_node(&mut self, id: u64) -> Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        self.router.set_upstream(id, listener.local_addr()?);
        self.run_node(id, listener).await
    }

    /// The leader that every node in `nodes` agrees on, once there is one.
    async fn leader_among(&self, nodes: &[u64]) -> Result<u64> {
        poll("an agreed leader", || {
            let leaders: Vec<_> =
                nodes.iter().map(|id| self.nodes[id].raft.metrics().borrow().current_leader).collect();
            match leaders[0] {
                Some(l) if nodes.contains(&l) && leaders.iter().all(|x| *x == Some(l)) => Some(l),
                _ => None,
            }
        })
        .await
    }

    async fn write(&self, via: u64, n: usize) -> Result<()> {
        for _ in 0..n {
            self.nodes[&via].raft.client_write(command()).await?;
        }
        Ok(())
    }

    /// Waits until every counter in `nodes` holds `count`.
    async fn converged(&self, nodes: &[u64], count: u64) -> Result<()> {
        poll("replicas to converge", || {
            nodes.iter().all(|id| self.counters[id].count() == count).then_some(())
        })
        .await
    }

    async fn stop(mut self) -> Result<()> {
        for id in self.nodes.keys().copied().collect::<Vec<_>>() {
            self.stop_node(id).await?;
        }
        self.shutdown.cancel();
        Ok(())
    }
}

fn command() -> Proposal {
    Proposal::from(Command::Txn(Txn::new()))
}

/// Polls `f` every 20 ms until it returns `Some`, for at most 10 s.
async fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t01_a_three_node_cluster_replicates_over_mutual_tls() -> Result<()> {
    let cluster = Cluster::start().await?;
    let leader = cluster.leader_among(&[1, 2, 3]).await?;
    cluster.write(leader, 10).await?;
    cluster.converged(&[1, 2, 3], 10).await?;
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t02_followers_forward_proposals_and_read_index_to_the_leader() -> Result<()> {
    let cluster = Cluster::start().await?;
    let leader = cluster.leader_among(&[1, 2, 3]).await?;
    let follower = if leader == 1 { 2 } else { 1 };
    let client = &cluster.nodes[&follower].client;

    let written = client.propose(&cluster.members[&leader], &command()).await?;
    let read_index = client.read_index(&cluster.members[&leader]).await?;
    assert!(
        read_index >= written.log_id.index,
        "read index {read_index} is before write {:?}",
        written.log_id
    );

    // Asking a follower names the leader instead.
    let other = 6 - leader - follower;
    match client.propose(&cluster.members[&other], &command()).await {
        Err(network::Error::ForwardToLeader { leader: hint, .. }) => assert_eq!(hint.leader_id, Some(leader)),
        other => bail!("expected ForwardToLeader from a follower, got {other:?}"),
    }
    match client.read_index(&cluster.members[&other]).await {
        Err(network::Error::ForwardToLeader { leader: hint, .. }) => assert_eq!(hint.leader_id, Some(leader)),
        other => bail!("expected ForwardToLeader from a follower, got {other:?}"),
    }
    cluster.converged(&[1, 2, 3], 1).await?;
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t03_a_follower_behind_the_purged_log_catches_up_by_snapshot() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let leader = cluster.leader_among(&[1, 2, 3]).await?;
    let follower = if leader == 3 { 2 } else { 3 };
    cluster.write(leader, 5).await?;
    cluster.converged(&[1, 2, 3], 5).await?;
    cluster.stop_node(follower).await?;

    let follower_last = cluster.logs[&follower].clone();
    cluster.write(leader, 3 * SNAPSHOT_EVERY as usize).await?;
    // The leader has purged past everything the follower has: only a snapshot can catch it up.
    let purged = poll("the leader to purge its log", || {
        cluster.nodes[&leader].raft.metrics().borrow().purged.map(|id| id.index)
    })
    .await?;
    let follower_last_index = follower_last_index(&follower_last).await?;
    assert!(purged > follower_last_index, "leader purged up to {purged}, follower has {follower_last_index}");

    cluster.restart_node(follower).await?;
    let total = 5 + 3 * SNAPSHOT_EVERY;
    cluster.converged(&[1, 2, 3], total).await?;
    assert!(cluster.counters[&follower].installed_snapshots() > 0, "caught up without a snapshot");
    cluster.stop().await
}

async fn follower_last_index(log: &MemLog) -> Result<u64> {
    use openraft::storage::RaftLogStorage;
    let state = log.clone().get_log_state().await?;
    Ok(state.last_log_id.map_or(0, |id| id.index))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t04_a_killed_leader_is_replaced_and_writes_continue() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let old = cluster.leader_among(&[1, 2, 3]).await?;
    cluster.write(old, 5).await?;
    cluster.stop_node(old).await?;

    let rest: Vec<u64> = (1..=3).filter(|&id| id != old).collect();
    let new = cluster.leader_among(&rest).await?;
    cluster.write(new, 5).await?;
    cluster.converged(&rest, 10).await?;

    cluster.restart_node(old).await?;
    cluster.converged(&[1, 2, 3], 10).await?;
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t05_a_partitioned_minority_leader_cannot_commit_and_rejoins_after_healing() -> Result<()> {
    let cluster = Cluster::start().await?;
    let old = cluster.leader_among(&[1, 2, 3]).await?;
    cluster.write(old, 5).await?;
    cluster.converged(&[1, 2, 3], 5).await?;

    cluster.router.isolate(old, &[1, 2, 3]);
    let stranded =
        tokio::time::timeout(Duration::from_secs(2), cluster.nodes[&old].raft.client_write(command())).await;
    assert!(!matches!(stranded, Ok(Ok(_))), "the isolated leader committed a write: {stranded:?}");

    let majority: Vec<u64> = (1..=3).filter(|&id| id != old).collect();
    let new = cluster.leader_among(&majority).await?;
    cluster.write(new, 5).await?;
    cluster.converged(&majority, 10).await?;
    assert_eq!(cluster.counters[&old].count(), 5, "the isolated leader applied an uncommitted write");

    cluster.router.heal_all();
    cluster.converged(&[1, 2, 3], 10).await?;
    assert_eq!(cluster.leader_among(&[1, 2, 3]).await?, new);
    cluster.stop().await
}
