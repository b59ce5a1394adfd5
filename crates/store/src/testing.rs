//! The conformance suite every [`Store`] backend runs (feature `testing`).
//!
//! Each case is a `pub async fn` taking a fresh, empty store; it panics (an assertion with a
//! message) when the store breaks a rule and returns `Err` when a store call fails that should
//! not. The cases use real time only (no paused tokio clock), so they run unchanged on a
//! replicated backend on disk; waits poll with a generous deadline and never assert on speed.
//!
//! A backend's test file is a couple of lines; [`conformance_tests!`](crate::conformance_tests)
//! expands to one `#[tokio::test]` per case, named after it:
//!
//! ```ignore
//! corten_store::conformance_tests!(async { corten_store::MemStore::new(Default::default()) });
//! ```
//!
//! The factory is an expression evaluating to a future of a [`Fixture`]: a store, or a
//! `(store, guard)` pair when something (a temporary directory, a cluster) must live as long as
//! the store. The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a
//! dev-dependency.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::{
    Compare, CompareOp, CompareTarget, Error, Event, EventKind, KeyRange, KeyValue, Op, OpResult,
    RangeRequest, Result, Revision, Store, Txn, WatchRequest, WatchResponse, WatchStream, MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
};

/// How long a case waits for something that should happen (a watch event, a lease expiry).
pub const DEADLINE: Duration = Duration::from_secs(10);

/// What a case runs on: a store, plus whatever must outlive it.
pub trait Fixture {
    /// The store under test.
    type Store: Store;
    /// The store under test.
    fn store(&self) -> &Self::Store;
}

impl<S: Store> Fixture for S {
    type Store = S;
    fn store(&self) -> &S {
        self
    }
}

impl<S: Store, G> Fixture for (S, G) {
    type Store = S;
    fn store(&self) -> &S {
        &self.0
    }
}

/// Expands to one `#[tokio::test]` per conformance case, each on a fresh fixture from
/// `$factory` (an expression evaluating to a future of a [`testing::Fixture`](crate::testing::Fixture)).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@cases $factory;
            revision_starts_at_one_and_grows_by_one_per_write_txn,
            key_metadata_tracks_create_mod_revision_and_version,
            deleting_and_recreating_a_key_restarts_its_version,
            txn_compares_every_target_with_every_operator,
            txn_compares_on_an_absent_key_see_zero_and_no_value,
            txn_failure_branch_returns_the_current_value_for_update_if_unchanged,
            txn_create_if_absent_and_delete_if_unchanged,
            failed_txn_writes_nothing,
            txn_writing_a_key_twice_is_rejected,
            range_reads_a_key_a_prefix_and_a_range_in_key_order,
            range_limit_reports_more_and_pages_consistently_at_a_fixed_revision,
            range_keys_only_and_count_only,
            range_reads_past_revisions_and_rejects_future_and_compacted_ones,
            compact_rejects_compacted_and_future_revisions,
            watch_from_a_past_revision_replays_every_event_in_order_with_prev_kv,
            watch_without_prev_kv_leaves_it_out,
            watch_from_zero_sees_only_new_changes,
            watch_from_a_future_revision_starts_there,
            watch_filters_by_key_and_prefix,
            watch_below_the_compaction_point_fails_with_compacted,
            watch_after_compaction_from_a_retained_revision_still_works,
            watch_sends_progress_with_the_current_revision_when_idle,
            concurrent_writers_get_consecutive_revisions_and_one_watch_sees_them_all,
            concurrent_compare_and_swaps_on_one_key_lose_no_update,
            lease_grant_attach_and_keep_alive,
            lease_revoke_deletes_attached_keys_in_one_revision,
            lease_expiry_deletes_attached_keys,
            lease_keep_alive_postpones_expiry,
            put_with_an_unknown_lease_fails_and_writes_nothing,
            value_of_the_maximum_size_is_accepted_and_one_byte_more_is_rejected,
            invalid_keys_are_rejected,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> $crate::Result<()> {
                let fixture = $factory.await;
                $crate::testing::$case($crate::testing::Fixture::store(&fixture)).await
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn kv_str(kv: &KeyValue) -> (String, String) {
    (String::from_utf8_lossy(&kv.key).into_owned(), String::from_utf8_lossy(&kv.value).into_owned())
}

/// `(key, value)` pairs of a range read, as strings.
async fn read_pairs<S: Store>(store: &S, req: RangeRequest) -> Result<Vec<(String, String)>> {
    Ok(store.range(req).await?.kvs.iter().map(kv_str).collect())
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn revision<S: Store>(store: &S) -> Result<Revision> {
    Ok(store.status().await?.revision)
}

async fn get_required<S: Store>(store: &S, key: &str) -> Result<KeyValue> {
    match store.get(key).await? {
        Some(kv) => Ok(kv),
        None => panic!("key {key:?} should exist"),
    }
}

/// The next response of a watch, failing the case if none comes within [`DEADLINE`].
async fn next_response(stream: &mut WatchStream) -> Result<WatchResponse> {
    match tokio::time::timeout(DEADLINE, stream.next()).await {
        Ok(Some(response)) => response,
        Ok(None) => panic!("the watch stream ended"),
        Err(_) => panic!("no watch response within {DEADLINE:?}"),
    }
}

/// The next events of a watch, skipping progress notifications.
async fn next_events(stream: &mut WatchStream) -> Result<(Revision, Vec<Event>)> {
    loop {
        if let WatchResponse::Events { revision, events } = next_response(stream).await? {
            return Ok((revision, events));
        }
    }
}

/// Events messages until (and including) the one at `last`; fails the case on any revision past it.
async fn events_through(stream: &mut WatchStream, last: Revision) -> Result<Vec<(Revision, Vec<Event>)>> {
    let mut out = Vec::new();
    loop {
        let (revision, events) = next_events(stream).await?;
        assert!(revision <= last, "watch delivered revision {revision}, expected to stop at {last}");
        out.push((revision, events));
        if revision == last {
            return Ok(out);
        }
    }
}

/// A compact view of an event: kind, key, value, mod_revision and the previous value.
type EventView = (EventKind, String, String, Revision, Option<String>);

fn view(event: &Event) -> EventView {
    let (key, value) = kv_str(&event.kv);
    let prev = event.prev_kv.as_ref().map(|p| kv_str(p).1);
    (event.kind, key, value, event.kv.mod_revision, prev)
}

fn put_view(key: &str, value: &str, rev: Revision, prev: Option<&str>) -> EventView {
    (EventKind::Put, key.into(), value.into(), rev, prev.map(Into::into))
}

fn delete_view(key: &str, rev: Revision, prev: Option<&str>) -> EventView {
    (EventKind::Delete, key.into(), String::new(), rev, prev.map(Into::into))
}

/// Flattens watch messages, checking that each message's events carry its revision.
fn flatten(messages: &[(Revision, Vec<Event>)]) -> Vec<EventView> {
    let mut out = Vec::new();
    for (revision, events) in messages {
        assert!(!events.is_empty(), "watch sent an empty events message at {revision}");
        for e in events {
            assert_eq!(e.kv.mod_revision, *revision, "event {e:?} in the message of revision {revision}");
            out.push(view(e));
        }
    }
    out
}

/// Polls until `key` is gone, failing the case after [`DEADLINE`].
async fn await_absent<S: Store>(store: &S, key: &str) -> Result<()> {
    let deadline = Instant::now() + DEADLINE;
    while store.get(key).await?.is_some() {
        assert!(Instant::now() < deadline, "key {key:?} still exists after {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn compare(key: &str, op: CompareOp, target: CompareTarget) -> Compare {
    Compare::new(key, op, target)
}

async fn holds<S: Store>(store: &S, c: Compare) -> Result<bool> {
    Ok(store.txn(Txn::new().when(c)).await?.succeeded)
}

// ---------------------------------------------------------------------------------------------
// Revisions and key metadata

/// The revision starts at 1 and grows by exactly one per transaction that writes.
pub async fn revision_starts_at_one_and_grows_by_one_per_write_txn<S: Store>(store: &S) -> Result<()> {
    let status = store.status().await?;
    assert_eq!(status.revision, 1, "an empty store is at revision 1");
    assert_eq!(status.compact_revision, 0, "an empty store has compacted nothing");

    assert_eq!(store.put("/a", "1").await?, 2, "the first write is revision 2");
    assert_eq!(store.put("/a", "2").await?, 3);
    let multi = store.txn(Txn::new().success(Op::put("/b", "1")).success(Op::put("/c", "1"))).await?;
    assert_eq!(multi.revision, 4, "a transaction writing two keys takes one revision");

    // Reads do not write.
    assert!(store.get("/a").await?.is_some());
    store.range(RangeRequest::prefix("/")).await?;
    let read_txn = store.txn(Txn::new().success(Op::get("/a"))).await?;
    assert_eq!(read_txn.revision, 4, "a read-only transaction reports the current revision");

    // A failed compare without failure ops writes nothing.
    let failed =
        store.txn(Txn::new().when(Compare::mod_revision("/a", 2)).success(Op::put("/a", "x"))).await?;
    assert!(!failed.succeeded);
    assert_eq!(failed.revision, 4);

    // Deleting an absent key writes nothing.
    let absent = store.txn(Txn::new().success(Op::delete("/nope"))).await?;
    assert_eq!(absent.results, vec![OpResult::Delete { prev: None }]);
    assert_eq!(absent.revision, 4, "deleting an absent key does not bump the revision");

    assert_eq!(revision(store).await?, 4);
    let deleted = store.txn(Txn::new().success(Op::delete("/b"))).await?;
    assert_eq!(deleted.revision, 5, "deleting a key is a write");
    assert_eq!(revision(store).await?, 5);
    Ok(())
}

/// `create_revision`, `mod_revision` and `version` follow the writes of a key.
pub async fn key_metadata_tracks_create_mod_revision_and_version<S: Store>(store: &S) -> Result<()> {
    assert_eq!(store.get("/k").await?, None);
    let r1 = store.put("/k", "v1").await?;
    let kv = get_required(store, "/k").await?;
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision, kv.version, kv.lease),
        (&b"v1"[..], r1, r1, 1, 0)
    );
    store.put("/other", "x").await?;
    let r2 = store.put("/k", "v2").await?;
    let kv = get_required(store, "/k").await?;
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision, kv.version),
        (&b"v2"[..], r1, r2, 2)
    );

    // A put reports the previous key-value.
    let resp = store.txn(Txn::new().success(Op::put("/k", "v3"))).await?;
    let OpResult::Put { prev: Some(prev) } = &resp.results[0] else {
        panic!("a put over an existing key returns it, got {:?}", resp.results)
    };
    assert_eq!((prev.value.as_slice(), prev.mod_revision, prev.version), (&b"v2"[..], r2, 2));
    let resp = store.txn(Txn::new().success(Op::put("/fresh", "v"))).await?;
    assert_eq!(resp.results, vec![OpResult::Put { prev: None }]);
    Ok(())
}

/// A deleted key is gone; re-creating it starts a new life with version 1.
pub async fn deleting_and_recreating_a_key_restarts_its_version<S: Store>(store: &S) -> Result<()> {
    store.put("/k", "v1").await?;
    let r2 = store.put("/k", "v2").await?;
    let del = store.txn(Txn::new().success(Op::delete("/k"))).await?;
    let OpResult::Delete { prev: Some(prev) } = &del.results[0] else {
        panic!("a delete returns the deleted key-value, got {:?}", del.results)
    };
    assert_eq!((prev.value.as_slice(), prev.mod_revision, prev.version), (&b"v2"[..], r2, 2));
    assert_eq!(store.get("/k").await?, None, "a deleted key is gone");
    assert!(store.range(RangeRequest::prefix("/")).await?.kvs.is_empty());

    let r4 = store.put("/k", "again").await?;
    let kv = get_required(store, "/k").await?;
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision, kv.version),
        (&b"again"[..], r4, r4, 1),
        "a re-created key starts again"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Transactions

/// Compares on `mod_revision`, `create_revision`, `version` and value, with every operator.
pub async fn txn_compares_every_target_with_every_operator<S: Store>(store: &S) -> Result<()> {
    let create = store.put("/k", "b").await?;
    let modr = store.put("/k", "m").await?; // version 2, value "m"
    use CompareOp::{Equal, Greater, Less, NotEqual};
    type MakeTarget = fn(u64) -> CompareTarget;
    let targets: [(&str, MakeTarget, u64); 3] = [
        ("mod_revision", CompareTarget::ModRevision, modr),
        ("create_revision", CompareTarget::CreateRevision, create),
        ("version", CompareTarget::Version, 2),
    ];
    for (name, target, actual) in targets {
        for (op, against, expected) in [
            (Equal, actual, true),
            (Equal, actual + 1, false),
            (NotEqual, actual, false),
            (NotEqual, actual + 1, true),
            (Greater, actual - 1, true),
            (Greater, actual, false),
            (Less, actual + 1, true),
            (Less, actual, false),
        ] {
            assert_eq!(
                holds(store, compare("/k", op, target(against))).await?,
                expected,
                "{name} {actual} {op:?} {against}"
            );
        }
    }
    for (op, against, expected) in [
        (Equal, "m", true),
        (Equal, "n", false),
        (NotEqual, "m", false),
        (NotEqual, "x", true),
        (Greater, "a", true),
        (Greater, "m", false),
        (Less, "z", true),
        (Less, "m", false),
    ] {
        let c = compare("/k", op, CompareTarget::Value(against.into()));
        assert_eq!(holds(store, c).await?, expected, "value \"m\" {op:?} {against:?}");
    }
    // Every compare must hold.
    let all = Txn::new().when(Compare::exists("/k")).when(Compare::mod_revision("/k", modr));
    assert!(store.txn(all).await?.succeeded);
    let one_fails = Txn::new().when(Compare::exists("/k")).when(Compare::mod_revision("/k", create));
    assert!(!store.txn(one_fails).await?.succeeded, "one failing compare fails the transaction");
    Ok(())
}

/// An absent key has `create_revision`, `mod_revision` and `version` 0, and no value to compare.
pub async fn txn_compares_on_an_absent_key_see_zero_and_no_value<S: Store>(store: &S) -> Result<()> {
    use CompareOp::{Equal, Greater, Less, NotEqual};
    for target in [CompareTarget::ModRevision(0), CompareTarget::CreateRevision(0), CompareTarget::Version(0)]
    {
        assert!(holds(store, compare("/absent", Equal, target.clone())).await?, "absent {target:?}");
        assert!(!holds(store, compare("/absent", Greater, target.clone())).await?);
    }
    assert!(holds(store, Compare::absent("/absent")).await?);
    assert!(!holds(store, Compare::exists("/absent")).await?);
    for op in [Equal, NotEqual, Greater, Less] {
        let c = compare("/absent", op, CompareTarget::Value(b"x".to_vec()));
        assert!(!holds(store, c).await?, "a value compare {op:?} on an absent key fails");
    }
    // A deleted key is absent again.
    store.put("/gone", "v").await?;
    store.txn(Txn::new().success(Op::delete("/gone"))).await?;
    assert!(holds(store, Compare::absent("/gone")).await?);
    assert!(holds(store, compare("/gone", Equal, CompareTarget::Version(0))).await?);
    Ok(())
}

/// Kubernetes' update: write if `mod_revision` is unchanged, else return the current object.
pub async fn txn_failure_branch_returns_the_current_value_for_update_if_unchanged<S: Store>(
    store: &S,
) -> Result<()> {
    let r1 = store.put("/pods/a", "v1").await?;
    let update = |seen: Revision, value: &str| {
        Txn::new()
            .when(Compare::mod_revision("/pods/a", seen))
            .success(Op::put("/pods/a", value))
            .failure(Op::get("/pods/a"))
    };
    let ok = store.txn(update(r1, "v2")).await?;
    assert!(ok.succeeded);
    let r2 = ok.revision;
    assert_eq!(r2, r1 + 1);
    assert!(matches!(&ok.results[..], [OpResult::Put { prev: Some(p) }] if p.value == b"v1"));

    let stale = store.txn(update(r1, "lost")).await?;
    assert!(!stale.succeeded, "an update with a stale mod_revision fails");
    assert_eq!(stale.revision, r2, "a failed update does not write");
    let [OpResult::Get { kv: Some(current) }] = &stale.results[..] else {
        panic!("the failure branch returns the current object, got {:?}", stale.results)
    };
    assert_eq!((current.value.as_slice(), current.mod_revision, current.version), (&b"v2"[..], r2, 2));
    assert_eq!(get_required(store, "/pods/a").await?.value, b"v2");
    Ok(())
}

/// Create-if-absent and delete-if-unchanged are single transactions.
pub async fn txn_create_if_absent_and_delete_if_unchanged<S: Store>(store: &S) -> Result<()> {
    let create = |value: &str| {
        Txn::new().when(Compare::absent("/x")).success(Op::put("/x", value)).failure(Op::get("/x"))
    };
    let first = store.txn(create("one")).await?;
    assert!(first.succeeded);
    let second = store.txn(create("two")).await?;
    assert!(!second.succeeded, "creating an existing key fails");
    assert!(matches!(&second.results[..], [OpResult::Get { kv: Some(kv) }] if kv.value == b"one"));

    let delete = |seen: Revision| {
        Txn::new().when(Compare::mod_revision("/x", seen)).success(Op::delete("/x")).failure(Op::get("/x"))
    };
    let stale = store.txn(delete(first.revision - 1)).await?;
    assert!(!stale.succeeded);
    assert!(store.get("/x").await?.is_some(), "a delete with a stale revision leaves the key");
    let deleted = store.txn(delete(first.revision)).await?;
    assert!(deleted.succeeded);
    assert_eq!(deleted.revision, first.revision + 1);
    assert!(matches!(&deleted.results[..], [OpResult::Delete { prev: Some(p) }] if p.value == b"one"));
    assert_eq!(store.get("/x").await?, None);
    Ok(())
}

/// A transaction that fails writes nothing: no key, no revision.
pub async fn failed_txn_writes_nothing<S: Store>(store: &S) -> Result<()> {
    store.put("/keep", "v").await?;
    let before = store.status().await?;

    let unknown_lease = Txn::new()
        .success(Op::put("/a", "1"))
        .success(Op::delete("/keep"))
        .success(Op::put_with_lease("/b", "2", 0x7eed))
        .success(Op::put("/c", "3"));
    match store.txn(unknown_lease).await {
        Err(Error::LeaseNotFound(0x7eed)) => {}
        other => panic!("a put with an unknown lease fails with LeaseNotFound, got {other:?}"),
    }
    let too_large = Txn::new()
        .success(Op::put("/a", "1"))
        .success(Op::delete("/keep"))
        .success(Op::put("/b", vec![b'x'; MAX_VALUE_BYTES + 1]));
    assert!(matches!(store.txn(too_large).await, Err(Error::ValueTooLarge { .. })));
    let bad_key = Txn::new().success(Op::put("/a", "1")).success(Op::put("", "2"));
    assert!(matches!(store.txn(bad_key).await, Err(Error::InvalidKey { .. })));

    assert_eq!(store.status().await?, before, "a failed transaction does not move the revision");
    assert_eq!(read_pairs(store, RangeRequest::prefix("/")).await?, pairs(&[("/keep", "v")]));
    Ok(())
}

/// Writing one key twice in one branch is rejected as a whole.
pub async fn txn_writing_a_key_twice_is_rejected<S: Store>(store: &S) -> Result<()> {
    let before = revision(store).await?;
    for txn in [
        Txn::new().success(Op::put("/d", "1")).success(Op::put("/d", "2")),
        Txn::new().success(Op::put("/d", "1")).success(Op::delete("/d")),
        Txn::new().when(Compare::exists("/d")).failure(Op::delete("/d")).failure(Op::delete("/d")),
    ] {
        match store.txn(txn.clone()).await {
            Err(Error::InvalidTxn(_)) => {}
            other => panic!("{txn:?} is rejected with InvalidTxn, got {other:?}"),
        }
    }
    assert_eq!(revision(store).await?, before);
    assert_eq!(store.get("/d").await?, None);
    // The same key in each branch, or read and written, is fine.
    let ok = Txn::new().when(Compare::exists("/d")).success(Op::put("/d", "s")).failure(Op::put("/d", "f"));
    assert!(!store.txn(ok).await?.succeeded);
    assert_eq!(get_required(store, "/d").await?.value, b"f");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Ranges

/// A single key, a prefix and a half-open range, each in key order without deleted keys.
pub async fn range_reads_a_key_a_prefix_and_a_range_in_key_order<S: Store>(store: &S) -> Result<()> {
    for (k, v) in [("/b/1", "b1"), ("/a/3", "a3"), ("/a", "a"), ("/a/1", "a1"), ("/a0", "x"), ("/a/2", "a2")]
    {
        store.put(k, v).await?;
    }
    store.put("/a/gone", "g").await?;
    store.txn(Txn::new().success(Op::delete("/a/gone"))).await?;

    assert_eq!(read_pairs(store, RangeRequest::key("/a")).await?, pairs(&[("/a", "a")]));
    assert_eq!(read_pairs(store, RangeRequest::key("/a/")).await?, pairs(&[]));
    assert_eq!(read_pairs(store, RangeRequest::key("/a/gone")).await?, pairs(&[]));
    assert_eq!(
        read_pairs(store, RangeRequest::prefix("/a/")).await?,
        pairs(&[("/a/1", "a1"), ("/a/2", "a2"), ("/a/3", "a3")])
    );
    let range =
        |start: &str, end: &str| RangeRequest::new(KeyRange::Range { start: start.into(), end: end.into() });
    assert_eq!(
        read_pairs(store, range("/a/2", "/b/1")).await?,
        pairs(&[("/a/2", "a2"), ("/a/3", "a3"), ("/a0", "x")]),
        "a range includes its start and excludes its end"
    );
    assert_eq!(
        read_pairs(store, range("/a0", "")).await?,
        pairs(&[("/a0", "x"), ("/b/1", "b1")]),
        "an empty end is unbounded"
    );
    // A continue key: just after "/a/1".
    let mut after = b"/a/1".to_vec();
    after.push(0);
    let next = RangeRequest::new(KeyRange::Range { start: after, end: b"/a0".to_vec() });
    assert_eq!(read_pairs(store, next).await?, pairs(&[("/a/2", "a2"), ("/a/3", "a3")]));
    assert_eq!(read_pairs(store, range("/b", "/a")).await?, pairs(&[]), "start after end is empty");
    let all = read_pairs(store, RangeRequest::prefix("")).await?;
    assert_eq!(all.len(), 6, "an empty prefix is every key: {all:?}");
    Ok(())
}

/// `limit` with `more`, and paging with continue keys at the revision of the first page while
/// writes go on: the pages add up to one consistent snapshot.
pub async fn range_limit_reports_more_and_pages_consistently_at_a_fixed_revision<S: Store>(
    store: &S,
) -> Result<()> {
    let mut original = Vec::new();
    for i in 0..10 {
        let (k, v) = (format!("/page/{i:02}"), format!("v{i}"));
        store.put(k.as_str(), v.as_str()).await?;
        original.push((k, v));
    }
    store.put("/pagf", "outside").await?;
    let end = crate::prefix_end(b"/page/").unwrap_or_default();

    let first = store.range(RangeRequest::prefix("/page/").limit(4)).await?;
    assert!(first.more, "6 keys remain after the first 4");
    assert_eq!(first.kvs.len(), 4);
    assert_eq!(first.count, 4);
    let at = first.revision;
    assert_eq!(at, revision(store).await?);
    let mut paged: Vec<(String, String)> = first.kvs.iter().map(kv_str).collect();
    let mut last = first.kvs[3].key.clone();

    // Writes between pages must not show in the snapshot.
    store.put("/page/05", "changed").await?;
    store.txn(Txn::new().success(Op::delete("/page/06"))).await?;
    store.put("/page/045", "new").await?;
    store.put("/page/99", "new").await?;

    let mut pages = 1;
    loop {
        last.push(0);
        let req = RangeRequest::new(KeyRange::Range { start: last.clone(), end: end.clone() })
            .limit(4)
            .at_revision(at);
        let page = store.range(req).await?;
        assert_eq!(page.revision, at, "a read at a revision is served at it");
        paged.extend(page.kvs.iter().map(kv_str));
        pages += 1;
        if !page.more {
            break;
        }
        assert_eq!(page.kvs.len(), 4, "a page with more after it is full");
        last = page.kvs[3].key.clone();
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, original, "the pages add up to the snapshot at revision {at}");

    let exact = store.range(RangeRequest::prefix("/page/").limit(11)).await?;
    assert_eq!(exact.kvs.len(), 11);
    assert!(!exact.more, "a limit equal to the number of keys leaves no more");
    let now = read_pairs(store, RangeRequest::prefix("/page/")).await?;
    assert!(
        now.contains(&("/page/05".into(), "changed".into())) && !now.iter().any(|(k, _)| k == "/page/06")
    );
    Ok(())
}

/// `keys_only` leaves values out, `count_only` returns just the count.
pub async fn range_keys_only_and_count_only<S: Store>(store: &S) -> Result<()> {
    for i in 0..5 {
        store.put(format!("/n/{i}"), format!("value {i}")).await?;
    }
    store.put("/o/1", "x").await?;
    let full = store.range(RangeRequest::prefix("/n/")).await?;
    let keys = store.range(RangeRequest::prefix("/n/").keys_only()).await?;
    assert_eq!(keys.kvs.len(), 5);
    for (k, f) in keys.kvs.iter().zip(&full.kvs) {
        assert!(k.value.is_empty(), "keys_only returns no value");
        assert_eq!(
            (&k.key, k.create_revision, k.mod_revision, k.version),
            (&f.key, f.create_revision, f.mod_revision, f.version)
        );
    }
    let counted = store.range(RangeRequest::prefix("/n/").count_only()).await?;
    assert!(counted.kvs.is_empty(), "count_only returns no key-values");
    assert_eq!(counted.count, 5);
    assert_eq!(full.count, 5);
    let past = store.range(RangeRequest::prefix("/n/").count_only().at_revision(4)).await?;
    assert_eq!(past.count, 3, "count_only counts at the requested revision");
    Ok(())
}

/// Reads at past revisions see the past; future and compacted revisions are errors.
pub async fn range_reads_past_revisions_and_rejects_future_and_compacted_ones<S: Store>(
    store: &S,
) -> Result<()> {
    let r1 = store.put("/p", "1").await?;
    let r2 = store.put("/p", "2").await?;
    let r3 = store.txn(Txn::new().success(Op::delete("/p"))).await?.revision;
    let r4 = store.put("/q", "q").await?;
    let at = |rev| RangeRequest::key("/p").at_revision(rev);
    assert_eq!(read_pairs(store, at(r1 - 1)).await?, pairs(&[]));
    assert_eq!(read_pairs(store, at(r1)).await?, pairs(&[("/p", "1")]));
    assert_eq!(read_pairs(store, at(r2)).await?, pairs(&[("/p", "2")]));
    assert_eq!(read_pairs(store, at(r3)).await?, pairs(&[]));
    let past = store.range(at(r2)).await?;
    assert_eq!(past.revision, r2);
    assert_eq!((past.kvs[0].create_revision, past.kvs[0].mod_revision, past.kvs[0].version), (r1, r2, 2));

    match store.range(at(r4 + 1)).await {
        Err(Error::FutureRevision { requested, current }) => assert_eq!((requested, current), (r4 + 1, r4)),
        other => panic!("reading at a future revision fails, got {other:?}"),
    }
    store.compact(r2).await?;
    assert_eq!(store.status().await?.compact_revision, r2);
    match store.range(at(r1)).await {
        Err(Error::Compacted { requested, compacted }) => assert_eq!((requested, compacted), (r1, r2)),
        other => panic!("reading below the compaction point fails, got {other:?}"),
    }
    assert_eq!(read_pairs(store, at(r2)).await?, pairs(&[("/p", "2")]), "the compaction revision stays");
    assert_eq!(read_pairs(store, at(r3)).await?, pairs(&[]));
    assert_eq!(read_pairs(store, RangeRequest::prefix("/").at_revision(r4)).await?, pairs(&[("/q", "q")]));
    Ok(())
}

/// Compacting again at or below the compaction point, or in the future, is an error.
pub async fn compact_rejects_compacted_and_future_revisions<S: Store>(store: &S) -> Result<()> {
    store.put("/a", "1").await?;
    let r = store.put("/a", "2").await?;
    assert!(matches!(store.compact(r + 1).await, Err(Error::FutureRevision { .. })));
    store.compact(r).await?;
    assert!(matches!(store.compact(r).await, Err(Error::Compacted { .. })));
    assert!(matches!(store.compact(r - 1).await, Err(Error::Compacted { .. })));
    assert_eq!(store.status().await?.compact_revision, r);
    assert_eq!(revision(store).await?, r, "compaction is not a write");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Watches

/// A watch from a past revision replays every change in order, with `prev_kv`, then goes live.
pub async fn watch_from_a_past_revision_replays_every_event_in_order_with_prev_kv<S: Store>(
    store: &S,
) -> Result<()> {
    let r1 = store.put("/w/a", "a1").await?;
    let r2 = store.put("/w/b", "b1").await?;
    let r3 = store.put("/w/a", "a2").await?;
    let r4 = store.txn(Txn::new().success(Op::delete("/w/b"))).await?.revision;
    let r5 = store
        .txn(
            Txn::new()
                .success(Op::put("/w/c", "c1"))
                .success(Op::delete("/w/a"))
                .success(Op::put("/w/d", "d1")),
        )
        .await?
        .revision;

    let mut watch = store.watch(WatchRequest::new(KeyRange::Prefix(b"/w/".to_vec()), r2).prev_kv()).await?;
    let messages = events_through(&mut watch, r5).await?;
    assert_eq!(messages.iter().map(|(r, _)| *r).collect::<Vec<_>>(), vec![r2, r3, r4, r5]);
    assert_eq!(
        flatten(&messages),
        vec![
            put_view("/w/b", "b1", r2, None),
            put_view("/w/a", "a2", r3, Some("a1")),
            delete_view("/w/b", r4, Some("b1")),
            put_view("/w/c", "c1", r5, None),
            delete_view("/w/a", r5, Some("a2")),
            put_view("/w/d", "d1", r5, None),
        ],
        "events from revision {r2} (the first write was {r1})"
    );
    let (_, events) = &messages[1];
    assert_eq!((events[0].kv.create_revision, events[0].kv.version), (r1, 2));

    let r6 = store.put("/w/a", "a3").await?;
    let live = events_through(&mut watch, r6).await?;
    assert_eq!(flatten(&live), vec![put_view("/w/a", "a3", r6, None)]);
    assert_eq!(live[0].1[0].kv.create_revision, r6, "re-created after the delete");
    Ok(())
}

/// `prev_kv` is only sent when asked for.
pub async fn watch_without_prev_kv_leaves_it_out<S: Store>(store: &S) -> Result<()> {
    let r1 = store.put("/w", "1").await?;
    let r2 = store.put("/w", "2").await?;
    let mut watch = store.watch(WatchRequest::new(KeyRange::Key(b"/w".to_vec()), r1)).await?;
    let r3 = store.txn(Txn::new().success(Op::delete("/w"))).await?.revision;
    let messages = events_through(&mut watch, r3).await?;
    assert_eq!(
        flatten(&messages),
        vec![put_view("/w", "1", r1, None), put_view("/w", "2", r2, None), delete_view("/w", r3, None)]
    );
    Ok(())
}

/// A watch from revision 0 starts after the current revision.
pub async fn watch_from_zero_sees_only_new_changes<S: Store>(store: &S) -> Result<()> {
    store.put("/z/old", "1").await?;
    let mut watch = store.watch(WatchRequest::new(KeyRange::Prefix(b"/z/".to_vec()), 0)).await?;
    let r = store.put("/z/new", "2").await?;
    let (revision, events) = next_events(&mut watch).await?;
    assert_eq!(revision, r, "the first event is the first write after the watch started");
    assert_eq!(flatten(&[(revision, events)]), vec![put_view("/z/new", "2", r, None)]);
    Ok(())
}

/// A watch from a revision not reached yet delivers from that revision on.
pub async fn watch_from_a_future_revision_starts_there<S: Store>(store: &S) -> Result<()> {
    let now = revision(store).await?;
    let mut watch = store.watch(WatchRequest::new(KeyRange::Prefix(b"/f/".to_vec()), now + 2)).await?;
    store.put("/f/skipped", "1").await?;
    let r = store.put("/f/seen", "2").await?;
    assert_eq!(r, now + 2);
    let (revision, events) = next_events(&mut watch).await?;
    assert_eq!(flatten(&[(revision, events)]), vec![put_view("/f/seen", "2", r, None)]);
    Ok(())
}

/// Watches see only their key or prefix, also inside a transaction that writes several keys.
pub async fn watch_filters_by_key_and_prefix<S: Store>(store: &S) -> Result<()> {
    let start = revision(store).await? + 1;
    let mut key = store.watch(WatchRequest::new(KeyRange::Key(b"/k".to_vec()), start)).await?;
    let mut prefix = store.watch(WatchRequest::new(KeyRange::Prefix(b"/p/".to_vec()), start)).await?;
    let r1 = store.put("/k/child", "no").await?;
    let r2 = store.put("/p", "no").await?;
    let r3 = store
        .txn(
            Txn::new()
                .success(Op::put("/x", "no"))
                .success(Op::put("/p/1", "yes"))
                .success(Op::put("/k", "yes")),
        )
        .await?
        .revision;
    let r4 = store.put("/p/2/deep", "yes").await?;
    let r5 = store.put("/k", "end").await?;
    assert_eq!((r1, r2), (start, start + 1));
    assert_eq!(
        flatten(&events_through(&mut key, r5).await?),
        vec![put_view("/k", "yes", r3, None), put_view("/k", "end", r5, None)]
    );
    assert_eq!(
        flatten(&events_through(&mut prefix, r4).await?),
        vec![put_view("/p/1", "yes", r3, None), put_view("/p/2/deep", "yes", r4, None)]
    );
    let r6 = store.put("/p/3", "yes").await?;
    assert_eq!(next_events(&mut prefix).await?.0, r6, "nothing between");
    Ok(())
}

/// A watch that starts below the compaction point fails at once with `Compacted`.
pub async fn watch_below_the_compaction_point_fails_with_compacted<S: Store>(store: &S) -> Result<()> {
    let r1 = store.put("/c", "1").await?;
    let r2 = store.put("/c", "2").await?;
    store.put("/c", "3").await?;
    store.compact(r2).await?;
    match store.watch(WatchRequest::new(KeyRange::Prefix(b"/".to_vec()), r1)).await {
        Err(Error::Compacted { requested, compacted }) => assert_eq!((requested, compacted), (r1, r2)),
        Err(e) => panic!("a watch below the compaction point fails with Compacted, got {e:?}"),
        Ok(_) => panic!("a watch below the compaction point fails with Compacted, got a stream"),
    }
    Ok(())
}

/// After compaction, a watch from the compaction revision or later gets every retained event.
pub async fn watch_after_compaction_from_a_retained_revision_still_works<S: Store>(store: &S) -> Result<()> {
    store.put("/r/a", "1").await?;
    store.put("/r/b", "1").await?;
    let c = store.put("/r/a", "2").await?;
    let r4 = store.txn(Txn::new().success(Op::delete("/r/b"))).await?.revision;
    let r5 = store.put("/r/a", "3").await?;
    store.compact(c).await?;

    let mut watch = store.watch(WatchRequest::new(KeyRange::Prefix(b"/r/".to_vec()), c).prev_kv()).await?;
    let messages = events_through(&mut watch, r5).await?;
    assert_eq!(
        flatten(&messages),
        vec![
            put_view("/r/a", "2", c, Some("1")),
            delete_view("/r/b", r4, Some("1")),
            put_view("/r/a", "3", r5, Some("2"))
        ]
    );
    let r6 = store.put("/r/b", "new").await?;
    assert_eq!(flatten(&events_through(&mut watch, r6).await?), vec![put_view("/r/b", "new", r6, None)]);

    let mut later = store.watch(WatchRequest::new(KeyRange::Prefix(b"/r/".to_vec()), r5)).await?;
    assert_eq!(events_through(&mut later, r6).await?.len(), 2);
    Ok(())
}

/// An idle watch sends progress notifications with the current revision.
pub async fn watch_sends_progress_with_the_current_revision_when_idle<S: Store>(store: &S) -> Result<()> {
    let r1 = store.put("/elsewhere", "1").await?;
    let req =
        WatchRequest::new(KeyRange::Prefix(b"/quiet/".to_vec()), 0).progress(Duration::from_millis(100));
    let mut watch = store.watch(req).await?;
    match next_response(&mut watch).await? {
        WatchResponse::Progress { revision } => assert_eq!(revision, r1),
        other => panic!("an idle watch sends progress, got {other:?}"),
    }
    // A write outside the watched range moves the revision the progress reports.
    let r2 = store.put("/elsewhere", "2").await?;
    let deadline = Instant::now() + DEADLINE;
    loop {
        match next_response(&mut watch).await? {
            WatchResponse::Progress { revision } if revision == r2 => break,
            WatchResponse::Progress { revision } => {
                assert_eq!(revision, r1, "progress goes from {r1} to {r2}")
            }
            other => panic!("no events on an idle range, got {other:?}"),
        }
        assert!(Instant::now() < deadline, "no progress at {r2} within {DEADLINE:?}");
    }
    Ok(())
}

/// Concurrent writers get distinct, consecutive revisions; one watch sees every write once, in
/// order.
pub async fn concurrent_writers_get_consecutive_revisions_and_one_watch_sees_them_all<S: Store>(
    store: &S,
) -> Result<()> {
    const WRITERS: usize = 8;
    const PUTS: usize = 50;
    let start = revision(store).await? + 1;
    let mut watch = store.watch(WatchRequest::new(KeyRange::Prefix(b"/cw/".to_vec()), start)).await?;
    let writers = (0..WRITERS).map(|w| async move {
        let mut written = Vec::with_capacity(PUTS);
        for i in 0..PUTS {
            let (key, value) = (format!("/cw/{w}"), format!("{w}-{i}"));
            written.push((store.put(key.as_str(), value.as_str()).await?, key, value));
        }
        Ok::<_, Error>(written)
    });
    let mut by_revision = BTreeMap::new();
    for written in futures::future::join_all(writers).await {
        let written = written?;
        let revisions: Vec<Revision> = written.iter().map(|(r, _, _)| *r).collect();
        assert!(revisions.windows(2).all(|w| w[0] < w[1]), "one writer's revisions grow: {revisions:?}");
        for (r, k, v) in written {
            assert!(by_revision.insert(r, (k, v)).is_none(), "revision {r} was given twice");
        }
    }
    let last = start + (WRITERS * PUTS) as Revision - 1;
    assert_eq!(by_revision.keys().copied().collect::<Vec<_>>(), (start..=last).collect::<Vec<_>>());

    let messages = events_through(&mut watch, last).await?;
    assert_eq!(messages.len(), WRITERS * PUTS, "one message per write, no gaps, no duplicates");
    for (expected, (revision, events)) in (start..).zip(&messages) {
        assert_eq!(*revision, expected);
        let (key, value) = &by_revision[revision];
        assert_eq!(flatten(&[(*revision, events.clone())]), vec![put_view(key, value, *revision, None)]);
    }
    Ok(())
}

/// Concurrent compare-and-swap loops on one key: each swap sees every swap committed before it
/// (a backend that batches concurrent writes must still evaluate each compare after the writes
/// ahead of it), so no increment is lost and every success gets its own revision.
pub async fn concurrent_compare_and_swaps_on_one_key_lose_no_update<S: Store>(store: &S) -> Result<()> {
    const WRITERS: u64 = 8;
    const INCREMENTS: u64 = 20;
    const KEY: &str = "/cas/counter";
    store.put(KEY, "0").await?;
    let writers = (0..WRITERS).map(|_| async move {
        let mut revisions = Vec::new();
        while (revisions.len() as u64) < INCREMENTS {
            let kv = get_required(store, KEY).await?;
            let Ok(n) = String::from_utf8_lossy(&kv.value).parse::<u64>() else {
                panic!("the counter holds {:?}, not a number", kv.value)
            };
            let txn = Txn::new()
                .when(Compare::mod_revision(KEY, kv.mod_revision))
                .success(Op::put(KEY, (n + 1).to_string()));
            let resp = store.txn(txn).await?;
            if resp.succeeded {
                revisions.push(resp.revision);
            }
        }
        Ok::<_, Error>(revisions)
    });
    let mut all = Vec::new();
    for revisions in futures::future::join_all(writers).await {
        all.extend(revisions?);
    }
    let kv = get_required(store, KEY).await?;
    assert_eq!(kv.value, (WRITERS * INCREMENTS).to_string().into_bytes(), "no increment is lost");
    assert_eq!(kv.version, WRITERS * INCREMENTS + 1);
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len() as u64, WRITERS * INCREMENTS, "every successful swap has its own revision");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Leases

/// A granted lease carries keys and can be kept alive.
pub async fn lease_grant_attach_and_keep_alive<S: Store>(store: &S) -> Result<()> {
    let lease = store.lease_grant(60).await?;
    assert_ne!(lease.id, 0);
    assert_eq!(lease.ttl_seconds, 60);
    store.txn(Txn::new().success(Op::put_with_lease("/l/a", "1", lease.id))).await?;
    assert_eq!(get_required(store, "/l/a").await?.lease, lease.id);
    assert_eq!(store.lease_keep_alive(lease.id).await?, lease);
    // Re-putting without the lease detaches the key: revoking no longer deletes it.
    store.put("/l/a", "2").await?;
    assert_eq!(get_required(store, "/l/a").await?.lease, 0);
    store.lease_revoke(lease.id).await?;
    assert_eq!(get_required(store, "/l/a").await?.value, b"2");
    let other = store.lease_grant(60).await?;
    assert_ne!(other.id, lease.id);
    assert!(
        matches!(store.lease_keep_alive(lease.id).await, Err(Error::LeaseNotFound(id)) if id == lease.id)
    );
    Ok(())
}

/// Revoking a lease deletes its keys in one revision, seen as one watch message.
pub async fn lease_revoke_deletes_attached_keys_in_one_revision<S: Store>(store: &S) -> Result<()> {
    let lease = store.lease_grant(60).await?;
    for k in ["/l/1", "/l/2", "/l/3"] {
        store.txn(Txn::new().success(Op::put_with_lease(k, "v", lease.id))).await?;
    }
    store.put("/l/free", "v").await?;
    let before = revision(store).await?;
    let mut watch = store.watch(WatchRequest::new(KeyRange::Prefix(b"/l/".to_vec()), 0).prev_kv()).await?;

    store.lease_revoke(lease.id).await?;
    let r = before + 1;
    assert_eq!(revision(store).await?, r, "a revoke is one write");
    let (rev, events) = next_events(&mut watch).await?;
    assert_eq!(
        flatten(&[(rev, events)]),
        vec![
            delete_view("/l/1", r, Some("v")),
            delete_view("/l/2", r, Some("v")),
            delete_view("/l/3", r, Some("v"))
        ]
    );
    assert_eq!(read_pairs(store, RangeRequest::prefix("/l/")).await?, pairs(&[("/l/free", "v")]));
    assert!(matches!(store.lease_revoke(lease.id).await, Err(Error::LeaseNotFound(_))));
    assert!(matches!(store.lease_keep_alive(lease.id).await, Err(Error::LeaseNotFound(_))));

    // A lease without keys is revoked without a write.
    let empty = store.lease_grant(60).await?;
    store.lease_revoke(empty.id).await?;
    assert_eq!(revision(store).await?, r);
    Ok(())
}

/// An expired lease deletes its keys (TTL 1 s, awaited by polling).
pub async fn lease_expiry_deletes_attached_keys<S: Store>(store: &S) -> Result<()> {
    store.put("/e/free", "v").await?;
    let lease = store.lease_grant(1).await?;
    assert_eq!(lease.ttl_seconds, 1);
    let r = store
        .txn(
            Txn::new()
                .success(Op::put_with_lease("/e/1", "v", lease.id))
                .success(Op::put_with_lease("/e/2", "v", lease.id)),
        )
        .await?
        .revision;
    // From the revision after the leased put: the expiry may already have happened.
    let mut watch = store.watch(WatchRequest::new(KeyRange::Prefix(b"/e/".to_vec()), r + 1)).await?;
    await_absent(store, "/e/1").await?;
    assert_eq!(read_pairs(store, RangeRequest::prefix("/e/")).await?, pairs(&[("/e/free", "v")]));
    let (rev, events) = next_events(&mut watch).await?;
    assert_eq!(
        flatten(&[(rev, events)]),
        vec![delete_view("/e/1", r + 1, None), delete_view("/e/2", r + 1, None)],
        "expiry deletes the keys in one revision, the next write after the put"
    );
    assert!(matches!(store.lease_keep_alive(lease.id).await, Err(Error::LeaseNotFound(_))));
    Ok(())
}

/// Keep-alives postpone expiry; without them the lease expires.
pub async fn lease_keep_alive_postpones_expiry<S: Store>(store: &S) -> Result<()> {
    let lease = store.lease_grant(2).await?;
    store.txn(Txn::new().success(Op::put_with_lease("/ka", "v", lease.id))).await?;
    let started = Instant::now();
    // Keep it alive for longer than its TTL; the key must stay.
    while started.elapsed() < Duration::from_secs(3) {
        store.lease_keep_alive(lease.id).await?;
        assert!(store.get("/ka").await?.is_some(), "a kept-alive lease does not expire");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    await_absent(store, "/ka").await
}

/// A put with a lease that does not exist fails and writes nothing.
pub async fn put_with_an_unknown_lease_fails_and_writes_nothing<S: Store>(store: &S) -> Result<()> {
    let before = revision(store).await?;
    match store.txn(Txn::new().success(Op::put_with_lease("/u", "v", 12345))).await {
        Err(Error::LeaseNotFound(12345)) => {}
        other => panic!("a put with an unknown lease fails with LeaseNotFound, got {other:?}"),
    }
    let revoked = store.lease_grant(60).await?;
    store.lease_revoke(revoked.id).await?;
    let txn = Txn::new().when(Compare::absent("/u")).success(Op::put_with_lease("/u", "v", revoked.id));
    assert!(matches!(store.txn(txn).await, Err(Error::LeaseNotFound(_))), "nor with a revoked one");
    assert_eq!(store.get("/u").await?, None);
    assert_eq!(revision(store).await?, before);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Limits

/// A value of [`MAX_VALUE_BYTES`] is stored; one byte more is `ValueTooLarge` and writes nothing.
pub async fn value_of_the_maximum_size_is_accepted_and_one_byte_more_is_rejected<S: Store>(
    store: &S,
) -> Result<()> {
    let max: Vec<u8> = (0..MAX_VALUE_BYTES).map(|i| (i % 251) as u8).collect();
    let r = store.put("/big", max.clone()).await?;
    let kv = get_required(store, "/big").await?;
    assert!(kv.value == max, "the largest value reads back intact");
    match store.put("/bigger", vec![7u8; MAX_VALUE_BYTES + 1]).await {
        Err(Error::ValueTooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES))
        }
        other => panic!("a value over the limit fails with ValueTooLarge, got {other:?}"),
    }
    assert!(matches!(
        store.put("/big", vec![7u8; MAX_VALUE_BYTES + 1]).await,
        Err(Error::ValueTooLarge { .. })
    ));
    assert_eq!(store.get("/bigger").await?, None);
    assert!(get_required(store, "/big").await?.value == max, "a rejected overwrite leaves the value");
    assert_eq!(revision(store).await?, r);
    Ok(())
}

/// Empty keys, keys with NUL and keys over [`MAX_KEY_BYTES`] are rejected.
pub async fn invalid_keys_are_rejected<S: Store>(store: &S) -> Result<()> {
    let before = revision(store).await?;
    let long = vec![b'k'; MAX_KEY_BYTES + 1];
    for key in [Vec::new(), b"/a\0b".to_vec(), long.clone()] {
        let shown = String::from_utf8_lossy(&key[..key.len().min(8)]).into_owned();
        assert!(matches!(store.put(key.clone(), "v").await, Err(Error::InvalidKey { .. })), "put {shown:?}");
        let del = Txn::new().success(Op::delete(key.clone()));
        assert!(matches!(store.txn(del).await, Err(Error::InvalidKey { .. })), "delete {shown:?}");
        let cmp = Txn::new().when(Compare::exists(key.clone())).success(Op::put("/ok", "v"));
        assert!(matches!(store.txn(cmp).await, Err(Error::InvalidKey { .. })), "compare {shown:?}");
    }
    assert_eq!(revision(store).await?, before, "rejected keys write nothing");
    let longest = vec![b'k'; MAX_KEY_BYTES];
    store.put(longest.clone(), "v").await?;
    assert!(store.get(longest).await?.is_some(), "a key of {MAX_KEY_BYTES} bytes is fine");
    Ok(())
}
