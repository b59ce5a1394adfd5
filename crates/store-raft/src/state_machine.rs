//! The raft state machine: `corten_store::mvcc::Mvcc` over RocksDB, with the applied log id and
//! the membership stored in the same batches as the data, and snapshots of the MVCC tables.
//!
//! Snapshots. The state machine is persistent, so a "built" snapshot is only its meta (the log
//! id it covers, which lets openraft purge the log); openraft uses nothing else of a built
//! snapshot. The data is produced when a follower needs it ([`get_current_snapshot`]): every
//! table, read from one consistent RocksDB snapshot, serialized as `(table, key, value)` records;
//! its meta is the applied log id of that same RocksDB snapshot, so meta and data always agree.
//!
//! Installing a snapshot replaces the tables under the MVCC write lock (a marker in `raft_meta`
//! makes an interrupted install detectable at the next start: the node then forgets its state and
//! log and gets a fresh snapshot). Watches are not cut: the installed history holds every event
//! the leader retained, and a watcher that finds a hole in the live feed catches up from history,
//! or ends with `Compacted` when the events it needs were compacted away, so that its client
//! re-lists (no event is silently skipped).
//!
//! [`get_current_snapshot`]: RaftStateMachine::get_current_snapshot

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use corten_store::lease::LeaseClock;
use corten_store::mvcc::{Batch, Mvcc, Table};
use corten_store::watch::{History, WatchHub};
use corten_store::{Event, KeyRange, Revision, StoreStatus};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, SnapshotMeta, StorageError, StoredMembership,
};
use parking_lot::{Mutex, RwLock};
use rocksdb::{WriteBatch, DB};
use serde::{Deserialize, Serialize};

use crate::engine::{cf, clear_tables, rocks, scan_cf, table_cf, write_options, RocksEngine, CF_RAFT_META};
use crate::error::{storage_error, storage_read_error, Error, Result};
use crate::log_store::{decode, encode};
use crate::types::{NodeId, Reply, TypeConfig};

/// Meta-table keys of the raft state (beside the MVCC counters).
const META_APPLIED: &[u8] = b"raft_applied";
const META_MEMBERSHIP: &[u8] = b"raft_membership";
/// `raft_meta` key present while a snapshot is being installed.
const INSTALLING: &[u8] = b"installing_snapshot";
/// Size at which a snapshot install writes out a batch.
const INSTALL_BATCH_BYTES: usize = 4 << 20;

/// What the store's handles and the state machine share.
pub(crate) struct Shared {
    pub(crate) mvcc: RwLock<Mvcc<RocksEngine>>,
    pub(crate) hub: WatchHub,
    pub(crate) leases: Mutex<LeaseClock>,
    /// Commands applied since this node started (an entry may carry many): what log retention is
    /// measured in, next to openraft's count of entries.
    pub(crate) applied_commands: AtomicU64,
}

impl Shared {
    /// Loads the MVCC state of `db`.
    pub(crate) fn open(db: Arc<DB>) -> Result<Self> {
        let mvcc = Mvcc::open(RocksEngine::new(db))?;
        let mut leases = LeaseClock::default();
        leases.reset(&mvcc.leases()?);
        Ok(Shared {
            hub: WatchHub::new(mvcc.status().revision),
            mvcc: RwLock::new(mvcc),
            leases: Mutex::new(leases),
            applied_commands: AtomicU64::new(0),
        })
    }
}

impl History for Shared {
    fn status(&self) -> corten_store::Result<StoreStatus> {
        Ok(self.mvcc.read().status())
    }

    fn events(
        &self,
        range: &KeyRange,
        from: Revision,
        to: Revision,
    ) -> corten_store::Result<Vec<(Revision, Vec<Event>)>> {
        self.mvcc.read().events(range, from, to)
    }
}

/// One record of a serialized snapshot.
#[derive(Serialize, Deserialize)]
struct Record {
    table: u8,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// Whether an install was interrupted; if so, forgets the partial state (the caller also resets
/// the log). Returns whether it did.
pub(crate) fn recover_interrupted_install(db: &DB) -> Result<bool> {
    if db.get_cf(cf(db, CF_RAFT_META)?, INSTALLING).map_err(rocks("read raft meta"))?.is_none() {
        return Ok(false);
    }
    tracing::warn!("an interrupted snapshot install left partial state; discarding it");
    clear_tables(db)?;
    Ok(true)
}

/// Clears the install marker (after the state and log were reset).
pub(crate) fn clear_install_marker(db: &DB) -> Result<()> {
    db.delete_cf_opt(cf(db, CF_RAFT_META)?, INSTALLING, &write_options(true))
        .map_err(rocks("write raft meta"))
}

/// The last applied log id and the membership it brought.
type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>);

/// The applied log id and membership stored in the meta table, read from `snapshot` if given.
fn applied_state(db: &DB, snapshot: Option<&rocksdb::Snapshot<'_>>) -> Result<AppliedState> {
    let meta = cf(db, table_cf(Table::Meta))?;
    let get = |key: &[u8]| match snapshot {
        Some(s) => s.get_cf(meta, key),
        None => db.get_cf(meta, key),
    };
    let applied = match get(META_APPLIED).map_err(rocks("read applied log id"))? {
        Some(b) => decode("applied log id", &b)?,
        None => None,
    };
    let membership = match get(META_MEMBERSHIP).map_err(rocks("read membership"))? {
        Some(b) => decode("membership", &b)?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

fn snapshot_id(last: &Option<LogId<NodeId>>) -> String {
    match last {
        Some(id) => format!("{}-{}", id.leader_id.term, id.index),
        None => "0-0".to_string(),
    }
}

/// Serializes every MVCC table as of one RocksDB snapshot.
fn snapshot_now(db: &DB) -> Result<Option<Snapshot<TypeConfig>>> {
    let snap = db.snapshot();
    let (last_log_id, last_membership) = applied_state(db, Some(&snap))?;
    if last_log_id.is_none() {
        return Ok(None);
    }
    let mut data = Vec::new();
    let mut failed = None;
    for (i, table) in Table::ALL.iter().enumerate() {
        scan_cf(db, table_cf(*table), &[], None, Some(&snap), &mut |k, v| {
            let record = Record { table: i as u8, key: k.to_vec(), value: v.to_vec() };
            if let Err(e) = bincode::serialize_into(&mut data, &record) {
                failed = Some(Error::Codec { what: "snapshot", source: e });
            }
            failed.is_none()
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    let meta = SnapshotMeta { snapshot_id: snapshot_id(&last_log_id), last_log_id, last_membership };
    tracing::info!(%meta, bytes = data.len(), "serialized a snapshot");
    Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
}

/// Builds snapshot metas (see the module docs).
#[derive(Debug)]
pub struct SnapshotBuilder {
    engine: RocksEngine,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (last_log_id, last_membership) =
            applied_state(self.engine.db(), None).map_err(storage_read_error)?;
        let meta = SnapshotMeta { snapshot_id: snapshot_id(&last_log_id), last_log_id, last_membership };
        // openraft keeps only the meta of a built snapshot (to purge the log); the data is made
        // when a follower needs it.
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(Vec::new())) })
    }
}

/// The state machine of one node.
pub struct StateMachine {
    shared: Arc<Shared>,
    engine: RocksEngine,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").field("engine", &self.engine).finish()
    }
}

impl StateMachine {
    pub(crate) fn new(shared: Arc<Shared>, db: Arc<DB>) -> Self {
        StateMachine { shared, engine: RocksEngine::new(db) }
    }

    /// Applies one entry and commits it in one batch (with its log id); returns the reply.
    ///
    /// The commands of a proposal are applied in order, each as if alone (see [`Mvcc::apply_all`]);
    /// their watch events are published after the commit, in revision order, under the MVCC write
    /// lock, so that the feed never runs ahead of what readers can see.
    fn apply_entry(&self, entry: Entry<TypeConfig>) -> Result<Reply> {
        let mut mvcc = self.shared.mvcc.write();
        let mut batch = Batch::default();
        let log_id = Some(entry.log_id);
        let mut applied = Vec::new();
        match entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Normal(proposal) => applied = mvcc.apply_all(&proposal.commands, &mut batch)?,
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(log_id, m);
                batch.put(Table::Meta, META_MEMBERSHIP.to_vec(), encode("membership", &stored)?);
            }
        }
        batch.put(Table::Meta, META_APPLIED.to_vec(), encode("applied log id", &log_id)?);
        mvcc.commit(batch)?;
        self.shared.applied_commands.fetch_add(applied.len() as u64, Ordering::Relaxed);
        let mut results = Vec::with_capacity(applied.len());
        for applied in applied {
            if let Some(change) = applied.lease_change {
                self.shared.leases.lock().apply(change);
            }
            self.shared.hub.publish(applied.revision, applied.events);
            results.push(applied.response);
        }
        Ok(Reply { results })
    }

    /// Replaces the tables with a serialized snapshot.
    fn install(&self, meta: &SnapshotMeta<NodeId, BasicNode>, data: &[u8]) -> Result<()> {
        let db = self.engine.db();
        let mut mvcc = self.shared.mvcc.write();
        db.put_cf_opt(cf(db, CF_RAFT_META)?, INSTALLING, [], &write_options(true))
            .map_err(rocks("write raft meta"))?;
        clear_tables(db)?;
        let cfs: Vec<_> = Table::ALL.iter().map(|t| cf(db, table_cf(*t))).collect::<Result<_>>()?;
        let mut reader = Cursor::new(data);
        let mut batch = WriteBatch::default();
        while (reader.position() as usize) < data.len() {
            let record: Record = bincode::deserialize_from(&mut reader)
                .map_err(|source| Error::Codec { what: "snapshot", source })?;
            let cf = cfs.get(record.table as usize).ok_or(Error::Codec {
                what: "snapshot",
                source: Box::new(bincode::ErrorKind::Custom(format!("unknown table {}", record.table))),
            })?;
            batch.put_cf(cf, record.key, record.value);
            if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
                db.write_opt(std::mem::take(&mut batch), &write_options(false))
                    .map_err(rocks("install snapshot"))?;
            }
        }
        let meta_cf = cf(db, table_cf(Table::Meta))?;
        batch.put_cf(meta_cf, META_APPLIED, encode("applied log id", &meta.last_log_id)?);
        batch.put_cf(meta_cf, META_MEMBERSHIP, encode("membership", &meta.last_membership)?);
        batch.delete_cf(cf(db, CF_RAFT_META)?, INSTALLING);
        db.write_opt(batch, &write_options(true)).map_err(rocks("install snapshot"))?;
        mvcc.reload()?;
        self.shared.leases.lock().reset(&mvcc.leases()?);
        tracing::info!(%meta, status = ?mvcc.status(), "installed a snapshot");
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        applied_state(self.engine.db(), None).map_err(storage_read_error)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        for entry in entries {
            replies.push(self.apply_entry(entry).map_err(storage_error)?);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { engine: self.engine.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        self.install(meta, &data).map_err(storage_error)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let db = self.engine.db().clone();
        tokio::task::spawn_blocking(move || snapshot_now(&db))
            .await
            .map_err(|e| storage_read_error(Error::Task(e)))?
            .map_err(storage_read_error)
    }
}
