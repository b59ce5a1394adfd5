//! The raft log and vote in RocksDB (`raft_log` and `raft_meta` column families).
//!
//! Appends: `append` writes its entries in one unsynced `WriteBatch` (readable at once), then
//! fsyncs the WAL and reports the entries flushed. openraft 0.9 waits for that report before it
//! takes its next message, so the flush is on the critical path of every write, and how it is
//! done matters:
//! - on a multi-thread runtime it runs on the appending task's own worker thread, inside
//!   `block_in_place` (other tasks move to another worker meanwhile). Handing it to a thread and
//!   back costs two thread wake-ups per append, and on a busy machine each may wait for a
//!   scheduler tick (4 ms at 250 Hz): measured under build load, a lone writer's p50 went from
//!   3.9 ms with a syncer thread to 0.3 ms in place;
//! - on a current-thread runtime (where `block_in_place` is not allowed) a syncer thread fsyncs
//!   once for every append queued meanwhile and reports them flushed, in order.
//!
//! Either way one append is flushed at a time, so concurrent client writes share an fsync only by
//! sharing an entry: they are batched above raft (see `proposer`). The vote is written with sync
//! (which also covers every earlier append: the WAL is sequential).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::{Arc, Weak};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, Vote};
use rocksdb::{WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::{cf, rocks, scan_cf, write_options, CF_LOG, CF_RAFT_META};
use crate::error::{storage_error, storage_read_error, Error, Result};
use crate::types::{NodeId, TypeConfig};

const META_VOTE: &[u8] = b"vote";
const META_COMMITTED: &[u8] = b"committed";
const META_LAST_PURGED: &[u8] = b"last_purged";

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(crate) fn encode<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>> {
    bincode::serialize(v).map_err(|source| Error::Codec { what, source })
}

pub(crate) fn decode<T: DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T> {
    bincode::deserialize(b).map_err(|source| Error::Codec { what, source })
}

/// The log store of one node; cloning gives another handle (used as the log reader).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    flusher: Flusher,
}

/// Where appends are fsynced (see the module docs).
#[derive(Clone)]
enum Flusher {
    /// On the appending worker thread, in `block_in_place`.
    InPlace,
    /// On the syncer thread.
    Syncer(mpsc::Sender<LogFlushed<TypeConfig>>),
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").field("path", &self.db.path()).finish()
    }
}

impl LogStore {
    /// The log in `db`, for raft running on the current tokio runtime; off a multi-thread runtime
    /// it starts the syncer thread (which ends when every handle is dropped).
    pub(crate) fn new(db: Arc<DB>) -> Result<Self> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            return Ok(LogStore { db, flusher: Flusher::InPlace });
        }
        let (tx, rx) = mpsc::channel();
        let sync_db = Arc::downgrade(&db);
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || sync_loop(&sync_db, &rx))
            .map_err(|e| Error::Raft(format!("starting the log syncer thread: {e}")))?;
        Ok(LogStore { db, flusher: Flusher::Syncer(tx) })
    }

    fn meta<T: DeserializeOwned>(&self, key: &[u8], what: &'static str) -> Result<Option<T>> {
        match self.db.get_cf(cf(&self.db, CF_RAFT_META)?, key).map_err(rocks("read raft meta"))? {
            Some(b) => Ok(Some(decode(what, &b)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], what: &'static str, v: &T, sync: bool) -> Result<()> {
        let cf = cf(&self.db, CF_RAFT_META)?;
        self.db.put_cf_opt(cf, key, encode(what, v)?, &write_options(sync)).map_err(rocks("write raft meta"))
    }

    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry<TypeConfig>>> {
        let end_key = end.map(index_key);
        let mut entries = Vec::new();
        let mut failed = None;
        scan_cf(&self.db, CF_LOG, &index_key(start), end_key.as_ref().map(|k| &k[..]), None, &mut |_, v| {
            match decode("log entry", v) {
                Ok(e) => entries.push(e),
                Err(e) => failed = Some(e),
            }
            failed.is_none()
        })?;
        failed.map_or(Ok(entries), Err)
    }

    fn last_entry_id(&self) -> Result<Option<LogId<NodeId>>> {
        let mut it = self.db.raw_iterator_cf(cf(&self.db, CF_LOG)?);
        it.seek_to_last();
        let last = match it.value() {
            Some(v) => Some(decode::<Entry<TypeConfig>>("log entry", v)?.log_id),
            None => None,
        };
        it.status().map_err(rocks("read log"))?;
        Ok(last)
    }

    /// Deletes log entries with index in `[from, to)`.
    fn delete_range(&self, from: u64, to: u64) -> Result<()> {
        let cf = cf(&self.db, CF_LOG)?;
        self.db
            .delete_range_cf_opt(cf, index_key(from), index_key(to), &write_options(false))
            .map_err(rocks("delete log range"))
    }

    /// Forgets every log entry and the committed and purged pointers (after an interrupted
    /// snapshot install: the node then gets a fresh snapshot from the leader).
    pub(crate) fn reset(&self) -> Result<()> {
        self.delete_range(0, u64::MAX)?;
        let cf = cf(&self.db, CF_RAFT_META)?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(cf, META_COMMITTED);
        batch.delete_cf(cf, META_LAST_PURGED);
        self.db.write_opt(batch, &write_options(true)).map_err(rocks("reset log"))
    }
}

/// Fsyncs the WAL for every batch of queued appends, then reports them flushed. Holds the
/// database only while syncing, so that it closes when the store is dropped.
fn sync_loop(db: &Weak<DB>, rx: &mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut done = vec![first];
        done.extend(rx.try_iter());
        let result = match db.upgrade() {
            Some(db) => db.flush_wal(true).map_err(|e| format!("syncing the wal: {e}")),
            None => Err("the database is closed".to_string()),
        };
        for callback in done {
            callback.log_io_completed(result.clone().map_err(std::io::Error::other));
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.checked_add(1),
            Bound::Excluded(e) => Some(*e),
            Bound::Unbounded => None,
        };
        self.entries(start, end).map_err(storage_read_error)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> =
            self.meta(META_LAST_PURGED, "last purged log id").map_err(storage_read_error)?;
        let last_log_id = self.last_entry_id().map_err(storage_read_error)?.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta(META_VOTE, "vote", vote, true).map_err(storage_error)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.meta(META_VOTE, "vote").map_err(storage_read_error)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        // Unsynced: a lost update only means re-applying a little less eagerly after a crash.
        self.put_meta(META_COMMITTED, "committed log id", &committed, false).map_err(storage_error)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .meta::<Option<LogId<NodeId>>>(META_COMMITTED, "committed log id")
            .map_err(storage_read_error)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let write = || -> Result<()> {
            let cf = cf(&self.db, CF_LOG)?;
            let mut batch = WriteBatch::default();
            for entry in entries {
                batch.put_cf(cf, index_key(entry.log_id.index), encode("log entry", &entry)?);
            }
            self.db.write_opt(batch, &write_options(false)).map_err(rocks("append log"))
        };
        write().map_err(storage_error)?;
        match &self.flusher {
            Flusher::InPlace => {
                let synced = tokio::task::block_in_place(|| self.db.flush_wal(true));
                callback.log_io_completed(
                    synced.map_err(|e| std::io::Error::other(format!("syncing the wal: {e}"))),
                );
            }
            Flusher::Syncer(syncer) => {
                if let Err(mpsc::SendError(callback)) = syncer.send(callback) {
                    callback.log_io_completed(Err(std::io::Error::other("the log syncer thread is gone")));
                }
            }
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.delete_range(log_id.index, u64::MAX).map_err(storage_error)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let purge = || -> Result<()> {
            // Record the purge point first: a crash in between leaves entries that are merely
            // unused, never a hole.
            self.put_meta(META_LAST_PURGED, "last purged log id", &log_id, false)?;
            self.delete_range(0, log_id.index.saturating_add(1))
        };
        purge().map_err(storage_error)
    }
}
