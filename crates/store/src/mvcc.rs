//! The MVCC rules, written once for every backend.
//!
//! State lives in a few ordered byte tables of an [`Engine`]:
//! - `History`: `key ++ 0x00 ++ revision (u64 BE)` → a [`Record`]: every retained version of every
//!   key, a tombstone marking a delete. Keys never contain NUL, so one key's versions sort together
//!   and before any longer key.
//! - `Events`: `revision (u64 BE) ++ index (u32 BE)` → the key written at that revision, in order:
//!   the change log that watches catch up from.
//! - `Leases`: `id (i64 BE)` → TTL; `LeaseKeys`: `id ++ key` → nothing (keys attached to a lease).
//! - `Meta`: the current and compacted revisions.
//!
//! [`Mvcc::apply`] turns a [`Command`] into a [`Batch`] that the caller commits atomically (the
//! raft state machine adds its applied log id to the same batch); [`Mvcc::apply_all`] does the
//! same for several commands at once (a raft entry batching concurrent writes), each reading what
//! the ones before it wrote through an overlay of the uncommitted writes (`staged`). Both are
//! deterministic: the same commands in the same order give the same state on every replica.

mod staged;

use serde::{Deserialize, Serialize};

use self::staged::Staged;
use crate::{
    Compare, CompareOp, CompareTarget, Error, Event, EventKind, KeyRange, KeyValue, Lease, LeaseId, Op,
    OpResult, RangeRequest, RangeResponse, Result, Revision, StoreStatus, Txn, TxnResponse, MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
};

/// The tables the MVCC layer keeps (column families in RocksDB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    History,
    Events,
    Leases,
    LeaseKeys,
    Meta,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 5] = [Table::History, Table::Events, Table::Leases, Table::LeaseKeys, Table::Meta];

    /// A stable name (used for RocksDB column families and snapshots).
    pub fn name(self) -> &'static str {
        match self {
            Table::History => "history",
            Table::Events => "events",
            Table::Leases => "leases",
            Table::LeaseKeys => "lease_keys",
            Table::Meta => "meta",
        }
    }
}

/// One write of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Put { table: Table, key: Vec<u8>, value: Vec<u8> },
    Delete { table: Table, key: Vec<u8> },
}

/// Writes to commit atomically, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<BatchOp>,
}

impl Batch {
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(BatchOp::Put { table, key, value });
    }
    pub fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.ops.push(BatchOp::Delete { table, key });
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Ordered byte tables: what a backend provides to [`Mvcc`].
///
/// Reads must observe every batch committed before them and never part of a batch.
pub trait Engine {
    /// The value of `key` in `table`.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Calls `f` on the entries of `table` with `start <= key < end` (`end == None`: no upper
    /// bound) in key order, until `f` returns `false`.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()>;

    /// The entry with the greatest key in `[start, end)`.
    fn last_in(&self, table: Table, start: &[u8], end: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>>;

    /// Commits a batch atomically.
    fn write(&mut self, batch: Batch) -> Result<()>;
}

/// A replicated command: everything that changes the store goes through one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Txn(Txn),
    Compact(Revision),
    LeaseGrant { id: LeaseId, ttl_seconds: i64 },
    LeaseKeepAlive { id: LeaseId },
    LeaseRevoke { id: LeaseId },
}

impl Command {
    /// Rejects malformed commands before they are proposed (and again, deterministically, on
    /// apply): bad keys, oversized values, a key written twice in one branch.
    pub fn validate(&self) -> Result<()> {
        match self {
            Command::Txn(txn) => {
                for c in &txn.compares {
                    validate_key(&c.key)?;
                }
                for branch in [&txn.success, &txn.failure] {
                    let mut written: Vec<&[u8]> = Vec::new();
                    for op in branch {
                        validate_key(op.key())?;
                        if let Op::Put { key, value, .. } = op {
                            if value.len() > MAX_VALUE_BYTES {
                                return Err(Error::ValueTooLarge {
                                    key: String::from_utf8_lossy(key).into_owned(),
                                    size: value.len(),
                                    limit: MAX_VALUE_BYTES,
                                });
                            }
                        }
                        if !matches!(op, Op::Get { .. }) {
                            if written.contains(&op.key()) {
                                return Err(Error::InvalidTxn(format!(
                                    "key {:?} is written more than once",
                                    String::from_utf8_lossy(op.key())
                                )));
                            }
                            written.push(op.key());
                        }
                    }
                }
                Ok(())
            }
            Command::LeaseGrant { id, ttl_seconds } if *id == 0 || *ttl_seconds <= 0 => Err(
                Error::InvalidTxn(format!("lease {id} with ttl {ttl_seconds}s: id and ttl must be positive")),
            ),
            _ => Ok(()),
        }
    }
}

/// Checks that a key is storable.
pub fn validate_key(key: &[u8]) -> Result<()> {
    let reason = if key.is_empty() {
        "empty"
    } else if key.len() > MAX_KEY_BYTES {
        "longer than 4096 bytes"
    } else if key.contains(&0) {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidKey { key: String::from_utf8_lossy(key).into_owned(), reason: reason.into() })
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The reply to the proposer; deterministic errors (compacted, unknown lease, …) are here.
    pub response: Result<Response>,
    /// The revision after the command.
    pub revision: Revision,
    /// The changes made, in order, each with its `prev_kv`; empty when the revision did not move.
    pub events: Vec<Event>,
    /// How the lease clocks must change.
    pub lease_change: Option<LeaseChange>,
}

/// A command's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Txn(TxnResponse),
    Compacted,
    Lease(Lease),
    Revoked,
}

/// A change to the set of live leases, for the in-memory expiry clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseChange {
    /// Granted or kept alive: expires `ttl_seconds` from now.
    Refreshed(Lease),
    Revoked(LeaseId),
}

/// One stored version of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    create_revision: Revision,
    version: u64,
    lease: LeaseId,
    /// `None` marks a delete.
    value: Option<Vec<u8>>,
}

const META_REVISION: &[u8] = b"revision";
const META_COMPACT: &[u8] = b"compact_revision";

fn history_key(key: &[u8], revision: Revision) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 9);
    k.extend_from_slice(key);
    k.push(0);
    k.extend_from_slice(&revision.to_be_bytes());
    k
}

/// The first history key of any user key `>= bound`.
///
/// Range bounds may contain NUL (a single key's end is `key ++ 0x00`, a continue key is
/// `last ++ 0x00`) although stored keys never do: a user key is `>= p ++ 0x00 ++ …` exactly when it
/// is `>= p ++ 0x01`, so the bound is cut at its first NUL.
fn history_bound(bound: &[u8]) -> Vec<u8> {
    match bound.iter().position(|b| *b == 0) {
        Some(i) => {
            let mut k = bound[..i].to_vec();
            k.push(1);
            history_key(&k, 0)
        }
        None => history_key(bound, 0),
    }
}

/// Splits a history key into the user key and the revision.
fn split_history_key(k: &[u8]) -> Result<(&[u8], Revision)> {
    if k.len() < 9 || k[k.len() - 9] != 0 {
        return Err(Error::Fatal(format!("corrupt history key {k:?}")));
    }
    let (key, rest) = k.split_at(k.len() - 9);
    let mut rev = [0u8; 8];
    rev.copy_from_slice(&rest[1..]);
    Ok((key, Revision::from_be_bytes(rev)))
}

fn event_key(revision: Revision, index: u32) -> Vec<u8> {
    let mut k = revision.to_be_bytes().to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn lease_key(id: LeaseId) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

fn lease_key_entry(id: LeaseId, key: &[u8]) -> Vec<u8> {
    let mut k = lease_key(id);
    k.extend_from_slice(key);
    k
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    bincode::serialize(v).map_err(|e| Error::Fatal(format!("encoding a record: {e}")))
}

fn decode<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T> {
    bincode::deserialize(b).map_err(|e| Error::Fatal(format!("decoding a record: {e}")))
}

fn decode_u64(b: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = b.try_into().map_err(|_| Error::Fatal(format!("corrupt counter {b:?}")))?;
    Ok(u64::from_be_bytes(arr))
}

fn to_kv(key: &[u8], revision: Revision, rec: Record, keys_only: bool) -> Option<KeyValue> {
    let value = rec.value?;
    Some(KeyValue {
        key: key.to_vec(),
        value: if keys_only { Vec::new() } else { value },
        create_revision: rec.create_revision,
        mod_revision: revision,
        version: rec.version,
        lease: rec.lease,
    })
}

/// The MVCC state machine over an [`Engine`].
#[derive(Debug)]
pub struct Mvcc<E> {
    engine: E,
    revision: Revision,
    compact_revision: Revision,
}

impl<E: Engine> Mvcc<E> {
    /// Loads the counters from `engine` (an empty engine starts at revision 1).
    pub fn open(engine: E) -> Result<Self> {
        let mut mvcc = Mvcc { engine, revision: 1, compact_revision: 0 };
        mvcc.reload()?;
        Ok(mvcc)
    }

    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// Gives the engine for writes outside commands (a snapshot install); call
    /// [`Mvcc::reload`] afterwards.
    pub fn engine_mut(&mut self) -> &mut E {
        &mut self.engine
    }

    /// Commits a batch produced by [`Mvcc::apply`].
    pub fn commit(&mut self, batch: Batch) -> Result<()> {
        self.engine.write(batch)
    }

    /// Re-reads the counters from the engine (after its content was replaced).
    pub fn reload(&mut self) -> Result<()> {
        self.revision = match self.engine.get(Table::Meta, META_REVISION)? {
            Some(b) => decode_u64(&b)?,
            None => 1,
        };
        self.compact_revision = match self.engine.get(Table::Meta, META_COMPACT)? {
            Some(b) => decode_u64(&b)?,
            None => 0,
        };
        Ok(())
    }

    pub fn status(&self) -> StoreStatus {
        StoreStatus { revision: self.revision, compact_revision: self.compact_revision }
    }

    /// Checks that `revision` (0 = current) can be read; returns the revision to read at.
    fn readable(&self, revision: Revision) -> Result<Revision> {
        if revision == 0 {
            return Ok(self.revision);
        }
        if revision > self.revision {
            return Err(Error::FutureRevision { requested: revision, current: self.revision });
        }
        if revision < self.compact_revision {
            return Err(Error::Compacted { requested: revision, compacted: self.compact_revision });
        }
        Ok(revision)
    }

    /// The newest version of `key` at or below `at`, tombstones included.
    fn version_at(&self, key: &[u8], at: Revision) -> Result<Option<(Revision, Record)>> {
        let start = history_key(key, 0);
        let end = history_key(key, at.saturating_add(1));
        match self.engine.last_in(Table::History, &start, &end)? {
            Some((k, v)) => Ok(Some((split_history_key(&k)?.1, decode(&v)?))),
            None => Ok(None),
        }
    }

    /// The live key-value of `key` at `at`.
    fn kv_at(&self, key: &[u8], at: Revision) -> Result<Option<KeyValue>> {
        Ok(self.version_at(key, at)?.and_then(|(rev, rec)| to_kv(key, rev, rec, false)))
    }

    /// Reads a range as of `req.revision`.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let at = self.readable(req.revision)?;
        let (start, end) = req.range.bounds();
        let mut kvs = Vec::new();
        let mut count = 0u64;
        let mut more = false;
        // The versions of the key being scanned: the newest at or below `at` wins.
        let mut current: Option<(Vec<u8>, Revision, Vec<u8>)> = None;
        let mut failed = None;
        let hstart = history_bound(&start);
        let hend = end.as_deref().map(history_bound);
        self.engine.scan(Table::History, &hstart, hend.as_deref(), &mut |k, v| {
            let (key, rev) = match split_history_key(k) {
                Ok(x) => x,
                Err(e) => {
                    failed = Some(e);
                    return false;
                }
            };
            if rev > at {
                return true;
            }
            if let Some((ck, _, _)) = &current {
                if ck.as_slice() != key {
                    match finish_key(req, current.take(), &mut kvs, &mut count) {
                        Ok(true) => {}
                        Ok(false) => {
                            more = true;
                            return false;
                        }
                        Err(e) => {
                            failed = Some(e);
                            return false;
                        }
                    }
                }
            }
            current = Some((key.to_vec(), rev, v.to_vec()));
            true
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        if !more && !finish_key(req, current.take(), &mut kvs, &mut count)? {
            more = true;
        }
        if !req.count_only {
            count = kvs.len() as u64;
        }
        Ok(RangeResponse { kvs, more, count, revision: at })
    }

    /// The events on `range` with `from <= revision <= to`, grouped by revision, each with its
    /// `prev_kv`. Fails with [`Error::Compacted`] when `from` is below the compaction point.
    pub fn events(
        &self,
        range: &KeyRange,
        from: Revision,
        to: Revision,
    ) -> Result<Vec<(Revision, Vec<Event>)>> {
        if from < self.compact_revision {
            return Err(Error::Compacted { requested: from, compacted: self.compact_revision });
        }
        let mut keys = Vec::new();
        let end = event_key(to.saturating_add(1), 0);
        let mut failed = None;
        self.engine.scan(Table::Events, &event_key(from, 0), Some(&end), &mut |k, v| {
            if range.contains(v) {
                match k.get(..8).map(decode_u64) {
                    Some(Ok(rev)) => keys.push((rev, v.to_vec())),
                    _ => {
                        failed = Some(Error::Fatal(format!("corrupt event key {k:?}")));
                        return false;
                    }
                }
            }
            true
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        let mut out: Vec<(Revision, Vec<Event>)> = Vec::new();
        for (rev, key) in keys {
            let Some((_, rec)) = self.version_at(&key, rev)? else {
                return Err(Error::Fatal(format!("event at {rev} without history")));
            };
            let prev_kv = self.kv_at(&key, rev - 1)?;
            let event = match to_kv(&key, rev, rec, false) {
                Some(kv) => Event { kind: EventKind::Put, kv, prev_kv },
                None => Event { kind: EventKind::Delete, kv: deleted_kv(&key, rev), prev_kv },
            };
            match out.last_mut() {
                Some((r, events)) if *r == rev => events.push(event),
                _ => out.push((rev, vec![event])),
            }
        }
        Ok(out)
    }

    /// Every live lease with its TTL.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        let mut leases = Vec::new();
        let mut failed = None;
        self.engine.scan(Table::Leases, &[], None, &mut |k, v| {
            match (k.try_into().map(i64::from_be_bytes), v.try_into().map(i64::from_be_bytes)) {
                (Ok(id), Ok(ttl_seconds)) => leases.push(Lease { id, ttl_seconds }),
                _ => {
                    failed = Some(Error::Fatal(format!("corrupt lease {k:?}")));
                    return false;
                }
            }
            true
        })?;
        failed.map_or(Ok(leases), Err)
    }

    /// Applies `cmd`, adding its writes to `batch`, and advances the in-memory counters.
    ///
    /// The caller must [`Mvcc::commit`] `batch` before serving reads; if committing fails the `Mvcc` no
    /// longer matches its engine and must be dropped (a fatal error). An `Err` here is fatal too
    /// (a corrupt or failing engine); command-level failures are in [`Applied::response`].
    pub fn apply(&mut self, cmd: &Command, batch: &mut Batch) -> Result<Applied> {
        let mut applied = Applied {
            response: Ok(Response::Compacted),
            revision: self.revision,
            events: Vec::new(),
            lease_change: None,
        };
        if let Err(e) = cmd.validate() {
            applied.response = Err(e);
            return Ok(applied);
        }
        applied.response = match cmd {
            Command::Txn(txn) => self.apply_txn(txn, batch, &mut applied.events).map(Response::Txn),
            Command::Compact(rev) => self.apply_compact(*rev, batch).map(|()| Response::Compacted),
            Command::LeaseGrant { id, ttl_seconds } => {
                if self.engine.get(Table::Leases, &lease_key(*id))?.is_some() {
                    Err(Error::InvalidTxn(format!("lease {id} already exists")))
                } else {
                    batch.put(Table::Leases, lease_key(*id), ttl_seconds.to_be_bytes().to_vec());
                    let lease = Lease { id: *id, ttl_seconds: *ttl_seconds };
                    applied.lease_change = Some(LeaseChange::Refreshed(lease));
                    Ok(Response::Lease(lease))
                }
            }
            Command::LeaseKeepAlive { id } => match self.engine.get(Table::Leases, &lease_key(*id))? {
                Some(ttl) => {
                    let ttl: [u8; 8] =
                        ttl.as_slice().try_into().map_err(|_| Error::Fatal("corrupt lease".into()))?;
                    let lease = Lease { id: *id, ttl_seconds: i64::from_be_bytes(ttl) };
                    applied.lease_change = Some(LeaseChange::Refreshed(lease));
                    Ok(Response::Lease(lease))
                }
                None => Err(Error::LeaseNotFound(*id)),
            },
            Command::LeaseRevoke { id } => {
                if self.engine.get(Table::Leases, &lease_key(*id))?.is_none() {
                    Err(Error::LeaseNotFound(*id))
                } else {
                    let mut keys = Vec::new();
                    let prefix = lease_key(*id);
                    let end = crate::prefix_end(&prefix);
                    self.engine.scan(Table::LeaseKeys, &prefix, end.as_deref(), &mut |k, _| {
                        keys.push(k[8..].to_vec());
                        true
                    })?;
                    let txn = Txn {
                        compares: vec![],
                        success: keys.into_iter().map(Op::delete).collect(),
                        failure: vec![],
                    };
                    self.apply_txn(&txn, batch, &mut applied.events)?;
                    batch.delete(Table::Leases, prefix);
                    applied.lease_change = Some(LeaseChange::Revoked(*id));
                    Ok(Response::Revoked)
                }
            }
        };
        if let Err(e @ Error::Fatal(_)) = &applied.response {
            return Err(e.clone());
        }
        applied.revision = self.revision;
        Ok(applied)
    }

    /// Applies `cmds` in order into one `batch`, exactly as if each were applied and committed
    /// on its own: each reads what the ones before it wrote, each write transaction gets its own
    /// revision, and the results are those `apply` would give one by one, in order.
    ///
    /// Committing `batch` commits all of them atomically. On `Err` (fatal, as for
    /// [`Mvcc::apply`]) nothing was added to `batch` and the counters are unchanged.
    pub fn apply_all<'c>(
        &mut self,
        cmds: impl IntoIterator<Item = &'c Command>,
        batch: &mut Batch,
    ) -> Result<Vec<Applied>> {
        let mut cmds = cmds.into_iter().peekable();
        let Some(first) = cmds.next() else { return Ok(Vec::new()) };
        if cmds.peek().is_none() {
            // One command reads nothing it wrote itself: no staging needed.
            return Ok(vec![self.apply(first, batch)?]);
        }
        let mut staged = Mvcc {
            engine: Staged::new(&self.engine),
            revision: self.revision,
            compact_revision: self.compact_revision,
        };
        let mut ops = Vec::new();
        let mut applied = Vec::new();
        for cmd in std::iter::once(first).chain(cmds) {
            let mut one = Batch::default();
            applied.push(staged.apply(cmd, &mut one)?);
            staged.engine.stage(&one.ops);
            ops.extend(one.ops);
        }
        let (revision, compact_revision) = (staged.revision, staged.compact_revision);
        self.revision = revision;
        self.compact_revision = compact_revision;
        batch.ops.extend(ops);
        Ok(applied)
    }

    fn compare_holds(&self, c: &Compare) -> Result<bool> {
        let kv = self.kv_at(&c.key, self.revision)?;
        let ord = match (&c.target, &kv) {
            (CompareTarget::Value(_), None) => return Ok(false),
            (CompareTarget::Value(v), Some(kv)) => kv.value.as_slice().cmp(v.as_slice()),
            (CompareTarget::ModRevision(r), kv) => kv.as_ref().map_or(0, |kv| kv.mod_revision).cmp(r),
            (CompareTarget::CreateRevision(r), kv) => kv.as_ref().map_or(0, |kv| kv.create_revision).cmp(r),
            (CompareTarget::Version(v), kv) => kv.as_ref().map_or(0, |kv| kv.version).cmp(v),
        };
        Ok(match c.op {
            CompareOp::Equal => ord.is_eq(),
            CompareOp::NotEqual => ord.is_ne(),
            CompareOp::Greater => ord.is_gt(),
            CompareOp::Less => ord.is_lt(),
        })
    }

    fn apply_txn(&mut self, txn: &Txn, batch: &mut Batch, events: &mut Vec<Event>) -> Result<TxnResponse> {
        let mut succeeded = true;
        for c in &txn.compares {
            if !self.compare_holds(c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { &txn.success } else { &txn.failure };
        // Leases must exist before anything is written.
        for op in ops {
            if let Op::Put { lease, .. } = op {
                if *lease != 0 && self.engine.get(Table::Leases, &lease_key(*lease))?.is_none() {
                    return Err(Error::LeaseNotFound(*lease));
                }
            }
        }
        let current = self.revision;
        let rev = current + 1;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let prev = self.kv_at(op.key(), current)?;
            match op {
                Op::Get { .. } => results.push(OpResult::Get { kv: prev }),
                Op::Put { key, value, lease } => {
                    let rec = Record {
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        lease: *lease,
                        value: Some(value.clone()),
                    };
                    if let Some(p) = prev.as_ref().filter(|p| p.lease != 0 && p.lease != *lease) {
                        batch.delete(Table::LeaseKeys, lease_key_entry(p.lease, key));
                    }
                    if *lease != 0 {
                        batch.put(Table::LeaseKeys, lease_key_entry(*lease, key), Vec::new());
                    }
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: rec.create_revision,
                        mod_revision: rev,
                        version: rec.version,
                        lease: *lease,
                    };
                    batch.put(Table::History, history_key(key, rev), encode(&rec)?);
                    batch.put(Table::Events, event_key(rev, events.len() as u32), key.clone());
                    events.push(Event { kind: EventKind::Put, kv, prev_kv: prev.clone() });
                    results.push(OpResult::Put { prev });
                }
                Op::Delete { key } => {
                    if let Some(p) = &prev {
                        if p.lease != 0 {
                            batch.delete(Table::LeaseKeys, lease_key_entry(p.lease, key));
                        }
                        let rec = Record { create_revision: 0, version: 0, lease: 0, value: None };
                        batch.put(Table::History, history_key(key, rev), encode(&rec)?);
                        batch.put(Table::Events, event_key(rev, events.len() as u32), key.clone());
                        events.push(Event {
                            kind: EventKind::Delete,
                            kv: deleted_kv(key, rev),
                            prev_kv: prev.clone(),
                        });
                    }
                    results.push(OpResult::Delete { prev });
                }
            }
        }
        if !events.is_empty() {
            self.revision = rev;
            batch.put(Table::Meta, META_REVISION.to_vec(), rev.to_be_bytes().to_vec());
        }
        Ok(TxnResponse { succeeded, revision: self.revision, results })
    }

    fn apply_compact(&mut self, rev: Revision, batch: &mut Batch) -> Result<()> {
        if rev <= self.compact_revision {
            return Err(Error::Compacted { requested: rev, compacted: self.compact_revision });
        }
        if rev > self.revision {
            return Err(Error::FutureRevision { requested: rev, current: self.revision });
        }
        // Per key, of the versions at or below `rev` keep the newest (reads at `rev` and later
        // see it) unless it is a delete below `rev` (then the key simply did not exist), and when
        // the newest is exactly at `rev` also the one before it unless that is a delete (the
        // `prev_kv` of the event at `rev`, which watches from `rev` still deliver). Drop the rest.
        let mut group: Vec<(Revision, Vec<u8>, bool)> = Vec::new(); // (revision, history key, tombstone)
        let mut group_key: Vec<u8> = Vec::new();
        let mut failed = None;
        let mut drop_keys = Vec::new();
        self.engine.scan(Table::History, &[], None, &mut |k, v| {
            let (key, krev) = match split_history_key(k) {
                Ok(x) => x,
                Err(e) => {
                    failed = Some(e);
                    return false;
                }
            };
            if krev > rev {
                return true;
            }
            if key != group_key.as_slice() {
                drop_compacted(&mut group, rev, &mut drop_keys);
                group_key = key.to_vec();
            }
            match decode::<Record>(v) {
                Ok(r) => group.push((krev, k.to_vec(), r.value.is_none())),
                Err(e) => {
                    failed = Some(e);
                    return false;
                }
            }
            true
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        drop_compacted(&mut group, rev, &mut drop_keys);
        for k in drop_keys {
            batch.delete(Table::History, k);
        }
        self.engine.scan(Table::Events, &[], Some(&event_key(rev, 0)), &mut |k, _| {
            batch.delete(Table::Events, k.to_vec());
            true
        })?;
        self.compact_revision = rev;
        batch.put(Table::Meta, META_COMPACT.to_vec(), rev.to_be_bytes().to_vec());
        Ok(())
    }
}

/// Moves the history keys of one key's versions at or below the compaction revision `rev` that
/// compaction drops into `drop_keys` (see [`Mvcc::apply_compact`]); `group` is in revision order.
fn drop_compacted(group: &mut Vec<(Revision, Vec<u8>, bool)>, rev: Revision, drop_keys: &mut Vec<Vec<u8>>) {
    let mut keep = 0;
    if let Some((newest, _, tombstone)) = group.last() {
        if *newest == rev {
            keep = if group.len() >= 2 && !group[group.len() - 2].2 { 2 } else { 1 };
        } else if !tombstone {
            keep = 1;
        }
    }
    let n = group.len() - keep;
    drop_keys.extend(group.drain(..).take(n).map(|(_, k, _)| k));
}

/// Adds the newest version of a scanned key to a range result; `false` when the limit is reached.
fn finish_key(
    req: &RangeRequest,
    cur: Option<(Vec<u8>, Revision, Vec<u8>)>,
    kvs: &mut Vec<KeyValue>,
    count: &mut u64,
) -> Result<bool> {
    let Some((key, rev, raw)) = cur else { return Ok(true) };
    let rec: Record = decode(&raw)?;
    if rec.value.is_none() {
        return Ok(true);
    }
    if req.count_only {
        *count += 1;
        return Ok(true);
    }
    if req.limit > 0 && kvs.len() == req.limit {
        return Ok(false);
    }
    kvs.extend(to_kv(&key, rev, rec, req.keys_only));
    Ok(true)
}

fn deleted_kv(key: &[u8], revision: Revision) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        value: Vec::new(),
        create_revision: 0,
        mod_revision: revision,
        version: 0,
        lease: 0,
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::mem::MemEngine;

    fn open() -> Mvcc<MemEngine> {
        Mvcc::open(MemEngine::default()).unwrap()
    }

    fn run(m: &mut Mvcc<MemEngine>, cmd: Command) -> Applied {
        let mut batch = Batch::default();
        let applied = m.apply(&cmd, &mut batch).unwrap();
        m.commit(batch).unwrap();
        applied
    }

    fn write(m: &mut Mvcc<MemEngine>, ops: Vec<Op>) -> Revision {
        run(m, Command::Txn(Txn { compares: vec![], success: ops, failure: vec![] })).revision
    }

    /// The retained versions as `(key, revision)`.
    fn history(m: &Mvcc<MemEngine>) -> Vec<(String, Revision)> {
        let mut out = Vec::new();
        m.engine()
            .scan(Table::History, &[], None, &mut |k, _| {
                let (key, rev) = split_history_key(k).unwrap();
                out.push((String::from_utf8_lossy(key).into_owned(), rev));
                true
            })
            .unwrap();
        out
    }

    fn event_revisions(m: &Mvcc<MemEngine>) -> Vec<Revision> {
        let mut out = Vec::new();
        m.engine()
            .scan(Table::Events, &[], None, &mut |k, _| {
                out.push(decode_u64(&k[..8]).unwrap());
                true
            })
            .unwrap();
        out
    }

    /// Everything a reader at or after `from` can observe.
    fn observable(m: &Mvcc<MemEngine>, from: Revision) -> Vec<String> {
        let all = KeyRange::Prefix(Vec::new());
        let mut out = Vec::new();
        for rev in from..=m.status().revision {
            let read = m.range(&RangeRequest::new(all.clone()).at_revision(rev)).unwrap();
            out.push(format!("{rev}: {:?}", read.kvs.iter().map(|kv| (kv, &kv.value)).collect::<Vec<_>>()));
        }
        out.push(format!("{:?}", m.events(&all, from, m.status().revision).unwrap()));
        out
    }

    #[test]
    fn compaction_keeps_exactly_what_reads_and_watches_from_its_revision_need() {
        let mut m = open();
        assert_eq!(write(&mut m, vec![Op::put("a", "1"), Op::put("f", "1")]), 2);
        write(&mut m, vec![Op::put("a", "2")]);
        write(&mut m, vec![Op::put("b", "1"), Op::put("d", "1")]);
        write(&mut m, vec![Op::delete("b"), Op::delete("f")]);
        write(&mut m, vec![Op::put("c", "1"), Op::put("f", "2")]);
        assert_eq!(write(&mut m, vec![Op::put("c", "2"), Op::delete("d")]), 7);
        write(&mut m, vec![Op::put("a", "3")]);
        let before = observable(&m, 7);

        let applied = run(&mut m, Command::Compact(7));
        assert_eq!(applied.response, Ok(Response::Compacted));
        let expected = [("a", 3), ("a", 8), ("c", 6), ("c", 7), ("d", 4), ("d", 7), ("f", 6)];
        assert_eq!(
            history(&m),
            expected.iter().map(|(k, r)| (k.to_string(), *r)).collect::<Vec<_>>(),
            "a: newest at or below 7 and later; b: deleted below 7, gone; c and d: changed at 7, \
             so the version before stays for prev_kv; f: deleted then re-created below 7"
        );
        assert_eq!(event_revisions(&m), vec![7, 7, 8]);
        assert_eq!(observable(&m, 7), before, "reads and events from 7 on are unchanged");
        assert_eq!(
            m.range(&RangeRequest::key("a").at_revision(6)),
            Err(Error::Compacted { requested: 6, compacted: 7 })
        );
        let prev = m.events(&KeyRange::Key(b"c".to_vec()), 7, 7).unwrap()[0].1[0].prev_kv.clone();
        assert_eq!(prev.map(|kv| kv.value), Some(b"1".to_vec()), "the event at 7 keeps its prev_kv");
    }

    #[test]
    fn compaction_of_random_histories_changes_nothing_observable_from_its_revision() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..20 {
            let mut m = open();
            for _ in 0..60 {
                let ops = (0..rng.random_range(1..4))
                    .map(|i| {
                        let key = format!("k{}", (rng.random_range(0..5) + i * 5));
                        if rng.random_bool(0.3) {
                            Op::delete(key)
                        } else {
                            Op::put(key, format!("{}", rng.random::<u16>()))
                        }
                    })
                    .collect();
                write(&mut m, ops);
            }
            let mut compacted = 0;
            for _ in 0..3 {
                let current = m.status().revision;
                if compacted >= current {
                    break;
                }
                let at = rng.random_range(compacted + 1..=current);
                let before = observable(&m, at);
                run(&mut m, Command::Compact(at));
                assert_eq!(observable(&m, at), before, "round {round}, compacted at {at}");
                assert!(event_revisions(&m).iter().all(|r| *r >= at));
                compacted = at;
                write(&mut m, vec![Op::put("k0", "more")]);
            }
        }
    }

    #[test]
    fn commands_applied_together_match_commands_applied_one_by_one() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let lease = 42;
        for round in 0..40 {
            let mut alone = open();
            let mut together = open();
            let mut cmds = vec![Command::LeaseGrant { id: lease, ttl_seconds: 10 }];
            for _ in 0..rng.random_range(1..30) {
                let key = format!("k{}", rng.random_range(0..4));
                let cmd = match rng.random_range(0..10) {
                    0 => Command::Compact(rng.random_range(1..6)),
                    1 => Command::LeaseRevoke { id: lease },
                    2 => Command::Txn(Txn {
                        compares: vec![Compare::new(
                            key.as_str(),
                            CompareOp::Equal,
                            CompareTarget::Value(b"1".to_vec()),
                        )],
                        success: vec![Op::delete(key.as_str()), Op::put("other", "x")],
                        failure: vec![Op::put(key.as_str(), "1")],
                    }),
                    3 => Command::Txn(Txn::new().success(Op::put_with_lease(key.as_str(), "l", lease))),
                    4 => Command::Txn(Txn::new().success(Op::delete(key.as_str()))),
                    _ => Command::Txn(
                        Txn::new().success(Op::put(key.as_str(), format!("{}", rng.random::<u8>()))),
                    ),
                };
                cmds.push(cmd);
            }
            let one_by_one: Vec<Applied> = cmds.iter().map(|c| run(&mut alone, c.clone())).collect();
            let mut batch = Batch::default();
            let applied = together.apply_all(&cmds, &mut batch).unwrap();
            together.commit(batch).unwrap();
            assert_eq!(applied, one_by_one, "round {round}");
            assert_eq!(together.status(), alone.status(), "round {round}");
            assert_eq!(history(&together), history(&alone), "round {round}");
            assert_eq!(
                observable(&together, together.status().compact_revision.max(1)),
                observable(&alone, alone.status().compact_revision.max(1)),
                "round {round}"
            );
        }
    }

    #[test]
    fn a_range_of_one_key_or_from_a_continue_key_sees_no_neighbour() {
        let mut m = open();
        write(&mut m, vec![Op::put("a", "1"), Op::put("a\u{1}", "2"), Op::put("ab", "3")]);
        let keys =
            |req: RangeRequest| m.range(&req).unwrap().kvs.into_iter().map(|kv| kv.key).collect::<Vec<_>>();
        assert_eq!(keys(RangeRequest::key("a")), vec![b"a".to_vec()]);
        let after_a = KeyRange::Range { start: b"a\0".to_vec(), end: Vec::new() };
        assert_eq!(keys(RangeRequest::new(after_a)), vec![b"a\x01".to_vec(), b"ab".to_vec()]);
        let before_a1 = KeyRange::Range { start: b"a".to_vec(), end: b"a\0".to_vec() };
        assert_eq!(keys(RangeRequest::new(before_a1)), vec![b"a".to_vec()]);
    }
}
