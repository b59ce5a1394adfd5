//! The request and response types of [`crate::Store`], shaped after etcd v3's API.

use std::fmt;
use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};

/// A store revision: the global counter of write transactions. Kubernetes' `resourceVersion`.
pub type Revision = u64;

/// A lease identifier (never 0).
pub type LeaseId = i64;

/// One key with its value and MVCC metadata.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Vec<u8>,
    /// Empty for keys-only reads and for the key of a delete event.
    pub value: Vec<u8>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub version: u64,
    /// The lease the key is attached to, 0 for none.
    pub lease: LeaseId,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .field("version", &self.version)
            .field("lease", &self.lease)
            .finish()
    }
}

/// Which keys a range or watch covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyRange {
    /// Exactly one key.
    Key(Vec<u8>),
    /// Every key starting with these bytes (an empty prefix is every key).
    Prefix(Vec<u8>),
    /// Keys in `[start, end)`; an empty `end` means no upper bound.
    Range { start: Vec<u8>, end: Vec<u8> },
}

impl KeyRange {
    /// The half-open bounds `[start, end)`; `end == None` means unbounded.
    pub fn bounds(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        match self {
            KeyRange::Key(k) => {
                let mut end = k.clone();
                end.push(0);
                (k.clone(), Some(end))
            }
            KeyRange::Prefix(p) => (p.clone(), prefix_end(p)),
            KeyRange::Range { start, end } => {
                (start.clone(), if end.is_empty() { None } else { Some(end.clone()) })
            }
        }
    }

    /// Whether `key` falls in this range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Key(k) => k == key,
            KeyRange::Prefix(p) => key.starts_with(p),
            KeyRange::Range { start, end } => {
                key >= start.as_slice() && (end.is_empty() || key < end.as_slice())
            }
        }
    }
}

/// The smallest key greater than every key with this prefix, `None` when unbounded.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ReadConsistency {
    /// Reflects every write acknowledged before the read started (raft read-index).
    #[default]
    Linearizable,
    /// Served from the local replica as it is; may be slightly stale on a follower.
    Serializable,
}

/// A read of one key or a range of keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    pub range: KeyRange,
    /// At most this many keys (0 = no limit); `more` in the response tells if some were left.
    pub limit: usize,
    /// Read as of this revision (0 = the current one).
    pub revision: Revision,
    /// Leave values out.
    pub keys_only: bool,
    /// Return only the number of keys in `count`, no key-values.
    pub count_only: bool,
    pub consistency: ReadConsistency,
}

impl RangeRequest {
    pub fn new(range: KeyRange) -> Self {
        RangeRequest {
            range,
            limit: 0,
            revision: 0,
            keys_only: false,
            count_only: false,
            consistency: ReadConsistency::default(),
        }
    }
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        Self::new(KeyRange::Key(key.into()))
    }
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        Self::new(KeyRange::Prefix(prefix.into()))
    }
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    pub fn at_revision(mut self, revision: Revision) -> Self {
        self.revision = revision;
        self
    }
    pub fn keys_only(mut self) -> Self {
        self.keys_only = true;
        self
    }
    pub fn count_only(mut self) -> Self {
        self.count_only = true;
        self
    }
    pub fn serializable(mut self) -> Self {
        self.consistency = ReadConsistency::Serializable;
        self
    }
}

/// The result of a range read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RangeResponse {
    /// The keys in key order (empty for `count_only`).
    pub kvs: Vec<KeyValue>,
    /// Whether more keys than `limit` are in the range.
    pub more: bool,
    /// For `count_only`: the number of keys in the range; otherwise `kvs.len()`.
    pub count: u64,
    /// The revision the read was served at; pass it back as `revision` to page consistently.
    pub revision: Revision,
}

/// What a [`Compare`] looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The key's `mod_revision` (0 when absent).
    ModRevision(Revision),
    /// The key's `create_revision` (0 when absent): `CreateRevision(0)` with `Equal` means
    /// "does not exist".
    CreateRevision(Revision),
    /// The key's `version` (0 when absent).
    Version(u64),
    /// The key's value (an absent key never compares equal or unequal: the compare fails).
    Value(Vec<u8>),
}

/// How a [`Compare`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// A condition of a transaction on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    /// True when `key` does not exist.
    pub fn absent(key: impl Into<Vec<u8>>) -> Self {
        Compare { key: key.into(), op: CompareOp::Equal, target: CompareTarget::CreateRevision(0) }
    }
    /// True when `key` exists.
    pub fn exists(key: impl Into<Vec<u8>>) -> Self {
        Compare { key: key.into(), op: CompareOp::Greater, target: CompareTarget::CreateRevision(0) }
    }
    /// True when `key` was last written at `revision` (the resourceVersion precondition).
    pub fn mod_revision(key: impl Into<Vec<u8>>, revision: Revision) -> Self {
        Compare { key: key.into(), op: CompareOp::Equal, target: CompareTarget::ModRevision(revision) }
    }
    pub fn new(key: impl Into<Vec<u8>>, op: CompareOp, target: CompareTarget) -> Self {
        Compare { key: key.into(), op, target }
    }
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Writes a key; `lease` 0 detaches it from any lease.
    Put { key: Vec<u8>, value: Vec<u8>, lease: LeaseId },
    /// Deletes a key if it exists.
    Delete { key: Vec<u8> },
    /// Reads a key as of the transaction's revision.
    Get { key: Vec<u8> },
}

impl Op {
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put { key: key.into(), value: value.into(), lease: 0 }
    }
    pub fn put_with_lease(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, lease: LeaseId) -> Self {
        Op::Put { key: key.into(), value: value.into(), lease }
    }
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Op::Delete { key: key.into() }
    }
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        Op::Get { key: key.into() }
    }
    /// The key this operation touches.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } | Op::Get { key } => key,
        }
    }
}

/// A compare-and-swap transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Txn::default()
    }
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }
    pub fn success(mut self, op: Op) -> Self {
        self.success.push(op);
        self
    }
    pub fn failure(mut self, op: Op) -> Self {
        self.failure.push(op);
        self
    }
}

/// The result of one [`Op`], in the order of the branch that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// The key's previous value, if it existed.
    Put {
        prev: Option<KeyValue>,
    },
    /// The deleted key's last value; `None` when it did not exist.
    Delete {
        prev: Option<KeyValue>,
    },
    Get {
        kv: Option<KeyValue>,
    },
}

/// The result of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Whether every compare held (and `success` ran).
    pub succeeded: bool,
    /// The store revision after the transaction (its own revision if it wrote).
    pub revision: Revision,
    pub results: Vec<OpResult>,
}

/// The kind of change an [`Event`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    /// The key after the change; for a delete, the key with an empty value, `mod_revision` the
    /// revision of the delete and `create_revision`/`version` 0.
    pub kv: KeyValue,
    /// The key before the change, when it existed (and the watch asked for it).
    pub prev_kv: Option<KeyValue>,
}

/// A watch on a range of keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    pub range: KeyRange,
    /// The first revision to deliver; 0 = only changes after the watch starts.
    pub start_revision: Revision,
    /// Include each event's previous key-value.
    pub prev_kv: bool,
    /// Send [`WatchResponse::Progress`] when nothing else was sent for this long (None = never).
    pub progress_interval: Option<std::time::Duration>,
}

impl WatchRequest {
    pub fn new(range: KeyRange, start_revision: Revision) -> Self {
        WatchRequest { range, start_revision, prev_kv: false, progress_interval: None }
    }
    pub fn prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
    pub fn progress(mut self, interval: std::time::Duration) -> Self {
        self.progress_interval = Some(interval);
        self
    }
}

/// One message of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchResponse {
    /// Changes that happened at `revision`, in the order the transaction made them.
    Events { revision: Revision, events: Vec<Event> },
    /// Everything up to `revision` has been delivered (a Kubernetes watch bookmark).
    Progress { revision: Revision },
}

/// A stream of watch responses; it ends with `Err` when it can no longer deliver every change.
pub type WatchStream = Pin<Box<dyn Stream<Item = crate::Result<WatchResponse>> + Send>>;

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: LeaseId,
    pub ttl_seconds: i64,
}

/// A store's revision counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoreStatus {
    /// The revision of the last write (1 for an empty store).
    pub revision: Revision,
    /// Revisions below this are compacted (0 = nothing compacted yet).
    pub compact_revision: Revision,
}
