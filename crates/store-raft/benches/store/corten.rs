//! Corten's stores as benchmark backends: MemStore, single-node RaftStore, 3-node cluster.
//!
//! The 3-node cluster is built here rather than with the cluster tests' fixture
//! (`tests/cluster/fixture.rs`): that one snapshots every 50 entries and routes every link through
//! a TCP proxy, which suits partition tests but would not measure what a deployment does. Here
//! nodes keep the default [`RaftConfig`], talk directly over mutual TLS on 127.0.0.1, and keep
//! their data under the bench directory (the same disk as etcd's).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use corten_store::{MemStore, MemStoreConfig};
use corten_store_raft::network::testing::{NodeTls, TestPki};
use corten_store_raft::network::{self, Network, NetworkConfig, RaftClient};
use corten_store_raft::{RaftConfig, RaftStore};
use openraft::BasicNode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::kv::StoreKv;
use crate::Backend;

/// How long a store may take to elect a leader and become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// An open Corten store of one of the benchmarked kinds.
#[derive(Debug)]
pub enum Corten {
    Mem(StoreKv<MemStore>),
    /// One node; the directory is removed after shutdown.
    Raft(StoreKv<RaftStore>, tempfile::TempDir),
    /// Three nodes; the `Kv` is the leader's.
    Cluster(StoreKv<RaftStore>, Cluster),
}

/// The nodes of a 3-node cluster beyond the handle the bench writes through.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<RaftStore>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

/// Runs `$body` with `$kv` bound to the open store's [`crate::kv::Kv`], whatever its type.
macro_rules! with_kv {
    ($corten:expr, |$kv:ident| $body:expr) => {
        match $corten {
            $crate::corten::Corten::Mem($kv) => $body,
            $crate::corten::Corten::Raft($kv, _) | $crate::corten::Corten::Cluster($kv, _) => $body,
        }
    };
}

impl Corten {
    /// Opens a fresh store of `backend`'s kind with its data under `dir`, ready to serve.
    pub async fn open(backend: Backend, dir: &Path) -> anyhow::Result<Self> {
        match backend {
            Backend::Mem => Ok(Corten::Mem(StoreKv(Arc::new(MemStore::new(MemStoreConfig::default()))))),
            Backend::Corten => {
                let dir = tempfile::Builder::new().prefix("corten-bench-").tempdir_in(dir)?;
                let store = RaftStore::open(RaftConfig::single_node(dir.path())).await?;
                store.wait_ready(READY_TIMEOUT).await?;
                Ok(Corten::Raft(StoreKv(Arc::new(store)), dir))
            }
            Backend::Corten3 => open_cluster(dir).await,
            other => bail!("{other:?} is not a Corten backend"),
        }
    }

    /// Stops the store and removes its data.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        match self {
            Corten::Mem(_) => {}
            Corten::Raft(kv, _dir) => kv.0.shutdown().await?,
            Corten::Cluster(_, cluster) => {
                for node in &cluster.nodes {
                    node.shutdown().await?;
                }
                cluster.stop.cancel();
            }
        }
        Ok(())
    }
}

/// Three nodes with throwaway mutual-TLS certificates, node 1 initializing the cluster.
async fn open_cluster(parent: &Path) -> anyhow::Result<Corten> {
    let dir = tempfile::Builder::new().prefix("corten-bench-3-").tempdir_in(parent)?;
    let pki = TestPki::new()?;
    let stop = CancellationToken::new();
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        members.insert(id, BasicNode::new(listener.local_addr()?.to_string()));
        listeners.push((id, listener));
    }
    let mut nodes = Vec::new();
    for (id, listener) in listeners {
        let NodeTls { server, client } = pki.node(&format!("node-{id}"))?;
        let client = RaftClient::new(NetworkConfig::new(client));
        let mut config = RaftConfig::new(id, dir.path().join(format!("node-{id}")));
        if id == 1 {
            config.initial_members = Some(members.clone());
        }
        config.forwarder = Some(Arc::new(client.clone()));
        let store = RaftStore::open_with_network(config, Network::new(id, client)).await?;
        tokio::spawn(network::serve(store.raft().clone(), listener, server, stop.clone()));
        nodes.push(store);
    }
    for node in &nodes {
        node.wait_ready(READY_TIMEOUT).await?;
    }
    let leader_id = nodes[0].metrics().current_leader.context("no leader")?;
    let leader = nodes.iter().find(|n| n.node_id() == leader_id).context("leader is not a node")?.clone();
    Ok(Corten::Cluster(StoreKv(Arc::new(leader)), Cluster { nodes, stop, _dir: dir }))
}
