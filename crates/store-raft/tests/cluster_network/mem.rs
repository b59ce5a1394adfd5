//! In-memory raft log and state machine: just enough storage to drive openraft over the real
//! network layer, so these tests exercise the transport and not RocksDB. The state machine counts
//! applied commands.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::Arc;

use corten_store_raft::types::{Reply, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use parking_lot::Mutex;

type StorageResult<T> = Result<T, StorageError<u64>>;

/// A raft log in memory; clones share it (a restarted node reopens the same log).
#[derive(Clone, Default)]
pub struct MemLog {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Default)]
struct LogInner {
    vote: Option<Vote<u64>>,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    purged: Option<LogId<u64>>,
}

impl RaftLogReader<TypeConfig> for MemLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        Ok(self.inner.lock().entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for MemLog {
    type LogReader = MemLog;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let inner = self.inner.lock();
        let last = inner.entries.values().next_back().map(|e| e.log_id).or(inner.purged);
        Ok(LogState { last_purged_log_id: inner.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> MemLog {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        self.inner.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        Ok(self.inner.lock().vote)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        self.inner.lock().entries.extend(entries.into_iter().map(|e| (e.log_id.index, e)));
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        self.inner.lock().entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        let mut inner = self.inner.lock();
        inner.purged = Some(log_id);
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        Ok(())
    }
}

/// A state machine that counts applied commands; clones share it.
#[derive(Clone, Default)]
pub struct Counter {
    inner: Arc<Mutex<CounterInner>>,
}

#[derive(Default)]
struct CounterInner {
    state: CounterState,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    /// Snapshots received from a leader.
    installed: u64,
}

#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
struct CounterState {
    applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    count: u64,
}

impl Counter {
    /// The number of commands applied.
    pub fn count(&self) -> u64 {
        self.inner.lock().state.count
    }

    /// How many snapshots were installed from a leader.
    pub fn installed_snapshots(&self) -> u64 {
        self.inner.lock().installed
    }
}

fn io_error(e: &bincode::Error) -> StorageError<u64> {
    StorageIOError::read_state_machine(e).into()
}

impl RaftSnapshotBuilder<TypeConfig> for Counter {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let mut inner = self.inner.lock();
        let data = bincode::serialize(&inner.state).map_err(|e| io_error(&e))?;
        let meta = SnapshotMeta {
            last_log_id: inner.state.applied,
            last_membership: inner.state.membership.clone(),
            snapshot_id: format!("{:?}", inner.state.applied.map(|id| id.index)),
        };
        inner.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for Counter {
    type SnapshotBuilder = Counter;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>)> {
        let inner = self.inner.lock();
        Ok((inner.state.applied, inner.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Reply>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock();
        let mut replies = Vec::new();
        for entry in entries {
            inner.state.applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Normal(p) => inner.state.count += p.commands.len() as u64,
                EntryPayload::Membership(m) => {
                    inner.state.membership = StoredMembership::new(Some(entry.log_id), m)
                }
                EntryPayload::Blank => {}
            }
            replies.push(Reply { results: Vec::new() });
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Counter {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let state = bincode::deserialize(&data).map_err(|e| io_error(&e))?;
        let mut inner = self.inner.lock();
        inner.state = state;
        inner.snapshot = Some((meta.clone(), data));
        inner.installed += 1;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let inner = self.inner.lock();
        Ok(inner
            .snapshot
            .clone()
            .map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}
