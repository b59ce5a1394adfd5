//! `MemStore`: the MVCC rules over in-memory tables, for tests and for API server development.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use crate::lease::{new_lease_id, LeaseClock};
use crate::mvcc::{Applied, Batch, BatchOp, Command, Engine, Mvcc, Response, Table};
use crate::watch::{History, WatchHub};
use crate::{
    Error, Event, KeyRange, Lease, LeaseId, RangeRequest, RangeResponse, Result, Revision, Store,
    StoreStatus, Txn, TxnResponse, WatchRequest, WatchStream,
};

/// Ordered in-memory tables.
#[derive(Debug, Default)]
pub struct MemEngine {
    tables: BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Engine for MemEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tables.get(&table).and_then(|t| t.get(key).cloned()))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let Some(t) = self.tables.get(&table) else { return Ok(()) };
        if end.is_some_and(|end| start >= end) {
            // An empty range (and `BTreeMap::range` panics when start > end).
            return Ok(());
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        for (k, v) in t.range::<[u8], _>((Bound::Included(start), upper)) {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn last_in(&self, table: Table, start: &[u8], end: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if start >= end {
            return Ok(None);
        }
        Ok(self.tables.get(&table).and_then(|t| {
            t.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
                .next_back()
                .map(|(k, v)| (k.clone(), v.clone()))
        }))
    }

    fn write(&mut self, batch: Batch) -> Result<()> {
        for op in batch.ops {
            match op {
                BatchOp::Put { table, key, value } => {
                    self.tables.entry(table).or_default().insert(key, value);
                }
                BatchOp::Delete { table, key } => {
                    if let Some(t) = self.tables.get_mut(&table) {
                        t.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Settings of a [`MemStore`].
#[derive(Debug, Clone)]
pub struct MemStoreConfig {
    /// How often expired leases are looked for.
    pub lease_check_interval: Duration,
}

impl Default for MemStoreConfig {
    fn default() -> Self {
        MemStoreConfig { lease_check_interval: Duration::from_millis(500) }
    }
}

struct Shared {
    mvcc: RwLock<Mvcc<MemEngine>>,
    leases: Mutex<LeaseClock>,
    hub: WatchHub,
}

impl History for Shared {
    fn status(&self) -> Result<StoreStatus> {
        Ok(self.mvcc.read().status())
    }
    fn events(&self, range: &KeyRange, from: Revision, to: Revision) -> Result<Vec<(Revision, Vec<Event>)>> {
        self.mvcc.read().events(range, from, to)
    }
}

/// An in-memory [`Store`] with the same semantics as the replicated one.
///
/// Cloning gives another handle to the same store. Expired leases are revoked by a background
/// task that stops when the last handle is dropped.
#[derive(Clone)]
pub struct MemStore {
    shared: Arc<Shared>,
    _stop: Arc<StopOnDrop>,
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore").field("status", &self.shared.mvcc.read().status()).finish()
    }
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl MemStore {
    /// An empty store; must be called inside a tokio runtime (it starts the lease task).
    pub fn new(config: MemStoreConfig) -> Self {
        let mvcc = match Mvcc::open(MemEngine::default()) {
            Ok(m) => m,
            // An empty in-memory engine has nothing to decode.
            Err(e) => unreachable!("opening an empty MemEngine: {e}"),
        };
        let shared = Arc::new(Shared {
            hub: WatchHub::new(mvcc.status().revision),
            mvcc: RwLock::new(mvcc),
            leases: Mutex::default(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(expire_leases(Arc::downgrade(&shared), config.lease_check_interval, stop.clone()));
        MemStore { shared, _stop: Arc::new(StopOnDrop(stop)) }
    }

    fn apply(&self, cmd: Command) -> Result<Response> {
        cmd.validate()?;
        apply(&self.shared, &cmd)?.response
    }
}

fn apply(shared: &Shared, cmd: &Command) -> Result<Applied> {
    let mut mvcc = shared.mvcc.write();
    let mut batch = Batch::default();
    let applied = mvcc.apply(cmd, &mut batch)?;
    mvcc.commit(batch)?;
    if let Some(change) = applied.lease_change {
        shared.leases.lock().apply(change);
    }
    // Publish under the write lock so the feed stays in revision order.
    shared.hub.publish(applied.revision, applied.events.clone());
    Ok(applied)
}

async fn expire_leases(shared: std::sync::Weak<Shared>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(shared) = shared.upgrade() else { return };
        let expired = shared.leases.lock().expired();
        for id in expired {
            if let Err(e) = apply(&shared, &Command::LeaseRevoke { id }) {
                tracing::error!(error = %e, lease = id, "revoking an expired lease failed");
            }
        }
    }
}

fn unexpected(resp: Response) -> Error {
    Error::Fatal(format!("unexpected command response {resp:?}"))
}

impl Store for MemStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.shared.mvcc.read().range(&req)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        match self.apply(Command::Txn(txn))? {
            Response::Txn(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream> {
        self.shared.hub.watch(req, self.shared.clone())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.apply(Command::Compact(revision)).map(|_| ())
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> Result<Lease> {
        match self.apply(Command::LeaseGrant { id: new_lease_id(), ttl_seconds })? {
            Response::Lease(l) => Ok(l),
            other => Err(unexpected(other)),
        }
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Lease> {
        match self.apply(Command::LeaseKeepAlive { id })? {
            Response::Lease(l) => Ok(l),
            other => Err(unexpected(other)),
        }
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        self.apply(Command::LeaseRevoke { id }).map(|_| ())
    }

    async fn status(&self) -> Result<StoreStatus> {
        Ok(self.shared.mvcc.read().status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Op;

    async fn leased_key(store: &MemStore, ttl: i64) -> LeaseId {
        let lease = store.lease_grant(ttl).await.unwrap();
        store.txn(Txn::new().success(Op::put_with_lease("/leased", "v", lease.id))).await.unwrap();
        lease.id
    }

    async fn exists(store: &MemStore) -> bool {
        store.get("/leased").await.unwrap().is_some()
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_expires_its_ttl_after_the_last_keep_alive() {
        let store = MemStore::new(MemStoreConfig { lease_check_interval: Duration::from_millis(500) });
        let id = leased_key(&store, 5).await;
        tokio::time::sleep(Duration::from_millis(3900)).await;
        assert!(exists(&store).await, "alive before its ttl");
        store.lease_keep_alive(id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(4800)).await; // 4.8 s after the keep-alive
        assert!(exists(&store).await, "the keep-alive restarted the countdown");
        tokio::time::sleep(Duration::from_millis(600)).await; // 5.4 s: past the check at 5.1 s
        assert!(!exists(&store).await, "expired 5 s after the keep-alive");
        assert_eq!(store.lease_keep_alive(id).await, Err(Error::LeaseNotFound(id)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_revoked_lease_is_not_expired_again() {
        let store = MemStore::new(MemStoreConfig::default());
        let id = leased_key(&store, 1).await;
        store.lease_revoke(id).await.unwrap();
        let revision = store.status().await.unwrap().revision;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(store.status().await.unwrap().revision, revision, "nothing more was written");
    }
}
