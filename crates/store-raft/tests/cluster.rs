//! Three `RaftStore` nodes in one process, on loopback, talking raft over mutual TLS through a
//! router that can cut links (see `cluster/router.rs`): replication and reads on followers,
//! leader failover, catching up by log and by snapshot, watches across a leader change, and a
//! partitioned leader.

#[path = "cluster/fixture.rs"]
mod fixture;
#[path = "cluster/router.rs"]
mod router;

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use corten_store::{KeyRange, RangeRequest, Store, WatchRequest, WatchResponse};
use fixture::{poll, Cluster, SNAPSHOT_EVERY};
use futures::StreamExt;

async fn value_of(store: &impl Store, key: &str, serializable: bool) -> Result<Option<Vec<u8>>> {
    let mut req = RangeRequest::key(key);
    if serializable {
        req = req.serializable();
    }
    Ok(store.range(req).await?.kvs.into_iter().next().map(|kv| kv.value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t01_writes_are_visible_on_followers_and_followers_forward_writes() -> Result<()> {
    let cluster = Cluster::start().await?;
    let leader = cluster.leader().await?;
    let followers = cluster.others(leader);

    let rev = cluster.store(leader).put("/a", "through the leader").await?;
    for &f in &followers {
        // A linearizable read on a follower confirms the leader's commit index first.
        assert_eq!(
            value_of(cluster.store(f), "/a", false).await?.as_deref(),
            Some(&b"through the leader"[..])
        );
        // A serializable read is local: it sees the write once the follower applied it.
        poll("a serializable read on a follower to see the write", || async {
            let resp = cluster.store(f).range(RangeRequest::key("/a").serializable()).await.ok()?;
            (resp.revision >= rev && !resp.kvs.is_empty()).then_some(())
        })
        .await?;
    }

    // A write sent to a follower is forwarded to the leader.
    let forwarded = cluster.store(followers[0]).put("/b", "through a follower").await?;
    assert!(forwarded > rev);
    for id in cluster.ids() {
        assert_eq!(
            value_of(cluster.store(id), "/b", false).await?.as_deref(),
            Some(&b"through a follower"[..])
        );
    }
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t02_a_killed_leader_is_replaced_and_no_acknowledged_write_is_lost() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let old = cluster.leader().await?;
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let key = format!("/k/{i:03}");
        cluster.store(old).put(key.clone(), "v").await?;
        acknowledged.push(key);
    }

    cluster.stop_node(old).await?;
    let new = cluster.leader().await?;
    ensure!(new != old, "the stopped node is still the leader");
    for i in 20..30 {
        let key = format!("/k/{i:03}");
        cluster.store(new).put(key.clone(), "v").await?;
        acknowledged.push(key);
    }

    for id in cluster.ids() {
        let keys: Vec<String> = cluster
            .store(id)
            .range(RangeRequest::prefix("/k/"))
            .await?
            .kvs
            .into_iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect();
        assert_eq!(keys, acknowledged, "node {id}");
    }

    // The old leader comes back as a follower and catches up.
    cluster.restart_node(old).await?;
    cluster.converged().await?;
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t03_a_restarted_follower_catches_up_from_the_log() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let leader = cluster.leader().await?;
    let follower = cluster.others(leader)[0];
    cluster.store(leader).put("/before", "1").await?;
    cluster.converged().await?;

    cluster.stop_node(follower).await?;
    for i in 0..5 {
        cluster.store(leader).put(format!("/while-down/{i}"), "1").await?;
    }
    cluster.restart_node(follower).await?;
    cluster.converged().await?;
    let resp = cluster.store(follower).range(RangeRequest::prefix("/while-down/").serializable()).await?;
    assert_eq!(resp.kvs.len(), 5);
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t04_a_follower_behind_the_purged_log_catches_up_from_a_snapshot() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let leader = cluster.leader().await?;
    let follower = cluster.others(leader)[0];
    cluster.store(leader).put("/before", "1").await?;
    cluster.converged().await?;

    let follower_last_log = cluster.stop_node(follower).await?;
    for i in 0..3 * SNAPSHOT_EVERY {
        cluster.store(leader).put(format!("/while-down/{i:04}"), vec![b'x'; 1024]).await?;
    }
    // Everything the follower lacks has been purged from the leader's log: only a snapshot helps.
    let purged = poll("the leader to purge its log", || async {
        cluster.raft(leader).metrics().borrow().purged.map(|id| id.index).filter(|&i| i > follower_last_log)
    })
    .await?;
    assert!(purged > follower_last_log);

    cluster.restart_node(follower).await?;
    cluster.converged().await?;
    let resp = cluster
        .store(follower)
        .range(RangeRequest::prefix("/while-down/").count_only().serializable())
        .await?;
    assert_eq!(resp.count, 3 * SNAPSHOT_EVERY);
    assert!(
        cluster.raft(follower).metrics().borrow().snapshot.is_some_and(|id| id.index > follower_last_log),
        "the follower did not install a snapshot"
    );
    // The caught-up follower serves history and new writes like the others.
    cluster.store(leader).put("/after", "1").await?;
    assert_eq!(value_of(cluster.store(follower), "/after", false).await?.as_deref(), Some(&b"1"[..]));
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t05_a_watch_on_a_follower_sees_every_event_in_order_across_a_leader_change() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let old = cluster.leader().await?;
    let watcher = cluster.others(old)[0];
    let start = cluster.store(old).status().await?.revision + 1;
    let mut watch =
        cluster.store(watcher).watch(WatchRequest::new(KeyRange::Prefix(b"/w/".to_vec()), start)).await?;

    let mut expected = Vec::new();
    for i in 0..10 {
        let key = format!("/w/{i:02}");
        let rev = cluster.store(old).put(key.clone(), "v").await?;
        expected.push((key, rev));
    }
    cluster.stop_node(old).await?;
    let new = cluster.leader().await?;
    for i in 10..20 {
        let key = format!("/w/{i:02}");
        // Written through the watcher: forwarded when it is not the new leader.
        let rev = cluster.store(watcher).put(key.clone(), "v").await?;
        expected.push((key, rev));
    }
    ensure!(new != old);

    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let next = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
        match next {
            Ok(Some(Ok(WatchResponse::Events { revision, events }))) => {
                for e in events {
                    assert_eq!(e.kv.mod_revision, revision);
                    seen.push((String::from_utf8_lossy(&e.kv.key).into_owned(), revision));
                }
            }
            Ok(Some(Ok(WatchResponse::Progress { .. }))) => {}
            Ok(Some(Err(e))) => bail!("watch failed after {} events: {e}", seen.len()),
            Ok(None) => bail!("watch ended after {} events", seen.len()),
            Err(_) => bail!("watch stalled after {} of {} events: {seen:?}", seen.len(), expected.len()),
        }
    }
    assert_eq!(seen, expected);
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t06_a_partitioned_minority_leader_cannot_commit_and_rejoins_after_healing() -> Result<()> {
    let cluster = Cluster::start().await?;
    let old = cluster.leader().await?;
    cluster.store(old).put("/p/before", "1").await?;
    cluster.converged().await?;

    cluster.router().isolate(old, &cluster.ids());
    let stranded =
        tokio::time::timeout(Duration::from_secs(3), cluster.store(old).put("/p/stranded", "1")).await;
    assert!(!matches!(stranded, Ok(Ok(_))), "the isolated leader acknowledged a write: {stranded:?}");

    let majority = cluster.others(old);
    let new = cluster.leader_among(&majority).await?;
    cluster.store(new).put("/p/after", "1").await?;
    assert_eq!(value_of(cluster.store(majority[0]), "/p/after", false).await?.as_deref(), Some(&b"1"[..]));

    cluster.router().heal_all();
    cluster.converged().await?;
    for id in cluster.ids() {
        let keys: Vec<Vec<u8>> = cluster
            .store(id)
            .range(RangeRequest::prefix("/p/"))
            .await?
            .kvs
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(keys, vec![b"/p/after".to_vec(), b"/p/before".to_vec()], "node {id}");
    }
    cluster.stop().await
}
