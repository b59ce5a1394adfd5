//! The corten-store conformance suite on a single-node `RaftStore`, plus restart behaviour.

use std::time::Duration;

use anyhow::Context;
use corten_store::{Compare, Op, RangeRequest, Store, Txn};
use corten_store_raft::{RaftConfig, RaftStore};
use tempfile::TempDir;

const READY: Duration = Duration::from_secs(20);

/// A fresh single-node store in a temporary directory (the directory lives as long as the store).
async fn single_node() -> (RaftStore, TempDir) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("creating a temporary directory: {e}"),
    };
    let store = match open(&dir).await {
        Ok(s) => s,
        Err(e) => panic!("opening a single-node store: {e:#}"),
    };
    (store, dir)
}

async fn open(dir: &TempDir) -> anyhow::Result<RaftStore> {
    let store = RaftStore::open(RaftConfig::single_node(dir.path())).await?;
    store.wait_ready(READY).await?;
    Ok(store)
}

corten_store::conformance_tests!(single_node());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_data_revision_and_leases_and_writes_continue_at_the_next_revision(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir).await?;
    store.put("a", "1").await?;
    let lease = store.lease_grant(600).await?;
    let txn = Txn::new().success(Op::put_with_lease("leased", "x", lease.id)).success(Op::put("b", "2"));
    let before = store.txn(txn).await?.revision;
    store.shutdown().await?;
    drop(store);

    let store = open(&dir).await.context("reopening")?;
    assert_eq!(store.status().await?.revision, before, "the revision survives a restart");
    let a = store.get("a").await?.context("a survives a restart")?;
    assert_eq!(a.value, b"1");
    let leased = store.get("leased").await?.context("the leased key survives a restart")?;
    assert_eq!(leased.lease, lease.id);
    assert_eq!(store.lease_keep_alive(lease.id).await?.ttl_seconds, 600, "the lease survives a restart");

    let next = store.put("c", "3").await?;
    assert_eq!(next, before + 1, "writes continue at the next revision");
    let resp = store
        .txn(Txn::new().when(Compare::mod_revision("a", a.mod_revision)).success(Op::put("a", "4")))
        .await?;
    assert!(resp.succeeded, "compares see the reopened state");
    store.lease_revoke(lease.id).await?;
    assert!(store.get("leased").await?.is_none(), "revoking the reopened lease deletes its key");
    let all = store.range(RangeRequest::prefix("").serializable()).await?;
    assert_eq!(all.kvs.len(), 3);
    store.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_writes_trigger_snapshots_and_log_purge_without_losing_data() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = RaftConfig::single_node(dir.path());
    cfg.snapshot_logs = 50;
    cfg.logs_kept_after_snapshot = 10;
    let store = RaftStore::open(cfg.clone()).await?;
    store.wait_ready(READY).await?;
    for i in 0..200 {
        store.put(format!("k{i:03}"), format!("v{i}")).await?;
    }
    let deadline = tokio::time::Instant::now() + READY;
    while store.metrics().purged.is_none() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the log was never purged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let revision = store.status().await?.revision;
    store.shutdown().await?;
    drop(store);

    let store = RaftStore::open(cfg).await?;
    store.wait_ready(READY).await?;
    assert_eq!(store.status().await?.revision, revision);
    let all = store.range(RangeRequest::prefix("k")).await?;
    assert_eq!(all.kvs.len(), 200, "every key is there after purging the log and restarting");
    store.shutdown().await?;
    Ok(())
}
