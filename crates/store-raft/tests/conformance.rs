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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_log_entries_and_each_keeps_its_own_revision() -> anyhow::Result<()> {
    const WRITERS: u64 = 32;
    const PUTS: u64 = 10;
    let (store, _dir) = single_node().await;
    let first_index = store.metrics().last_log_index.unwrap_or(0);
    let first_revision = store.status().await?.revision;
    let writers = (0..WRITERS).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..PUTS {
                revisions.push(store.put(format!("gc/{w}/{i}"), "v").await?);
            }
            anyhow::Ok(revisions)
        })
    });
    let mut revisions = Vec::new();
    for writer in futures::future::join_all(writers).await {
        revisions.extend(writer??);
    }
    revisions.sort_unstable();
    let expected: Vec<u64> = (first_revision + 1..=first_revision + WRITERS * PUTS).collect();
    assert_eq!(revisions, expected, "one revision per write, none shared, none skipped");
    let entries = store.metrics().last_log_index.unwrap_or(0) - first_index;
    assert!(
        entries <= WRITERS * PUTS / 2,
        "{} concurrent writes took {entries} log entries: they were not batched",
        WRITERS * PUTS
    );
    store.shutdown().await?;
    Ok(())
}

/// On a current-thread runtime the log is fsynced on a syncer thread (`block_in_place`, used on
/// multi-thread runtimes, is not allowed there): writes work and survive a restart.
#[tokio::test(flavor = "current_thread")]
async fn a_store_on_a_current_thread_runtime_commits_and_keeps_its_writes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir).await?;
    let writes = (0..20).map(|i| store.put(format!("ct/{i:02}"), "v"));
    for written in futures::future::join_all(writes).await {
        written?;
    }
    let revision = store.status().await?.revision;
    store.shutdown().await?;
    drop(store);

    let store = open(&dir).await.context("reopening")?;
    assert_eq!(store.status().await?.revision, revision);
    assert_eq!(store.range(RangeRequest::prefix("ct/")).await?.kvs.len(), 20);
    store.shutdown().await?;
    Ok(())
}

/// Log retention counts commands, not only entries: batched writes that fill few entries still
/// trigger a snapshot (after which the log is purged) once `snapshot_logs` commands were applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_writes_trigger_a_snapshot_by_their_number_of_commands() -> anyhow::Result<()> {
    const WRITERS: u64 = 64;
    const PUTS: u64 = 5;
    let dir = tempfile::tempdir()?;
    let mut cfg = RaftConfig::single_node(dir.path());
    cfg.snapshot_logs = WRITERS * PUTS - 20;
    let store = RaftStore::open(cfg).await?;
    store.wait_ready(READY).await?;
    let writers = (0..WRITERS).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..PUTS {
                store.put(format!("snap/{w}/{i}"), "v").await?;
            }
            anyhow::Ok(())
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer??;
    }
    let entries = store.metrics().last_log_index.unwrap_or(0);
    anyhow::ensure!(entries < WRITERS * PUTS - 20, "{entries} entries: the writes were not batched");
    let deadline = tokio::time::Instant::now() + READY;
    while store.metrics().snapshot.is_none() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no snapshot after {} commands",
            WRITERS * PUTS
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.shutdown().await?;
    Ok(())
}
