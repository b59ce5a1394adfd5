//! Watch fan-out, shared by every backend.
//!
//! A backend publishes each applied command's events to the [`WatchHub`] right after committing
//! them. A new watch subscribes first, then catches up from the backend's [`History`] up to the
//! committed revision, then follows the live feed, skipping what it already delivered: no gaps,
//! no duplicates. A watcher that falls too far behind the live feed catches up from history
//! again, and ends with [`Error::Compacted`] only when that history is gone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::Instant;

use crate::{
    Error, Event, KeyRange, Result, Revision, StoreStatus, WatchRequest, WatchResponse, WatchStream,
};

/// How many applied commands the live feed buffers per watcher before it must catch up from
/// history.
const FEED_CAPACITY: usize = 4096;

/// Read access to the retained change history.
pub trait History: Send + Sync + 'static {
    /// The committed revision and the compaction point.
    fn status(&self) -> Result<StoreStatus>;
    /// Events on `range` with `from <= revision <= to`, grouped by revision (see
    /// [`crate::mvcc::Mvcc::events`]).
    fn events(&self, range: &KeyRange, from: Revision, to: Revision) -> Result<Vec<(Revision, Vec<Event>)>>;
}

#[derive(Debug)]
struct Change {
    revision: Revision,
    events: Vec<Event>,
}

/// The live feed of applied changes.
#[derive(Debug, Clone)]
pub struct WatchHub {
    tx: broadcast::Sender<Arc<Change>>,
    revision: Arc<AtomicU64>,
}

impl WatchHub {
    /// A hub whose last published revision is `revision`.
    pub fn new(revision: Revision) -> Self {
        Self::with_capacity(revision, FEED_CAPACITY)
    }

    /// A hub whose live feed buffers `capacity` changes per watcher.
    pub(crate) fn with_capacity(revision: Revision, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        WatchHub { tx, revision: Arc::new(AtomicU64::new(revision)) }
    }

    /// Publishes the events of one applied command, after its writes are committed. Revisions
    /// must be published in order; commands that did not write publish nothing.
    pub fn publish(&self, revision: Revision, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(Arc::new(Change { revision, events }));
        self.revision.fetch_max(revision, Ordering::Release);
    }

    /// The last published revision.
    pub fn revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }

    /// Starts a watch (see [`crate::Store::watch`]).
    pub fn watch(&self, req: WatchRequest, history: Arc<dyn History>) -> Result<WatchStream> {
        let rx = self.tx.subscribe();
        let status = history.status()?;
        let mut pending = VecDeque::new();
        let delivered = if req.start_revision == 0 {
            status.revision
        } else if req.start_revision < status.compact_revision {
            return Err(Error::Compacted {
                requested: req.start_revision,
                compacted: status.compact_revision,
            });
        } else if req.start_revision > status.revision {
            req.start_revision - 1
        } else {
            for (revision, events) in history.events(&req.range, req.start_revision, status.revision)? {
                pending.push_back(WatchResponse::Events { revision, events: filter(&req, &events) });
            }
            status.revision
        };
        let state = Watcher { rx, history, req, delivered, pending, last_sent: Instant::now(), done: false };
        Ok(Box::pin(futures::stream::unfold(state, Watcher::next)))
    }
}

/// The state of one watch stream.
struct Watcher {
    rx: broadcast::Receiver<Arc<Change>>,
    history: Arc<dyn History>,
    req: WatchRequest,
    /// Every change up to this revision has been queued or skipped.
    delivered: Revision,
    pending: VecDeque<WatchResponse>,
    last_sent: Instant,
    done: bool,
}

impl Watcher {
    async fn next(mut self) -> Option<(Result<WatchResponse>, Self)> {
        loop {
            if let Some(resp) = self.pending.pop_front() {
                self.last_sent = Instant::now();
                return Some((Ok(resp), self));
            }
            if self.done {
                return None;
            }
            let progress = self.req.progress_interval.map(|every| self.last_sent + every);
            let received = match progress {
                Some(at) => tokio::select! {
                    r = self.rx.recv() => r,
                    () = tokio::time::sleep_until(at) => {
                        if let Err(e) = self.drain() {
                            return self.fail(e);
                        }
                        if self.pending.is_empty() {
                            // A watch from a future revision has "delivered" up to a revision
                            // that does not exist yet: report no more than the store has.
                            let current = match self.history.status() {
                                Ok(status) => status.revision,
                                Err(e) => return self.fail(e),
                            };
                            let revision = self.delivered.min(current);
                            self.pending.push_back(WatchResponse::Progress { revision });
                        }
                        continue;
                    }
                },
                None => self.rx.recv().await,
            };
            if let Err(e) = self.receive(received) {
                return self.fail(e);
            }
        }
    }

    /// Takes whatever the feed already holds, without waiting.
    fn drain(&mut self) -> Result<()> {
        loop {
            let r = match self.rx.try_recv() {
                Ok(c) => Ok(c),
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
            self.receive(r)?;
        }
    }

    fn receive(&mut self, received: Result<Arc<Change>, RecvError>) -> Result<()> {
        match received {
            Ok(change) if change.revision <= self.delivered => Ok(()),
            Ok(change) => {
                if change.revision > self.delivered + 1 {
                    // Every write publishes, so revisions on the feed are consecutive; a hole
                    // means changes we never saw: read them from history.
                    self.catch_up(change.revision - 1)?;
                }
                self.delivered = change.revision;
                let events = filter(&self.req, &change.events);
                if !events.is_empty() {
                    self.pending.push_back(WatchResponse::Events { revision: change.revision, events });
                }
                Ok(())
            }
            Err(RecvError::Lagged(_)) => {
                let to = self.history.status()?.revision;
                self.catch_up(to)
            }
            Err(RecvError::Closed) => Err(Error::Stopped),
        }
    }

    /// Queues the history between what was delivered and `to`.
    fn catch_up(&mut self, to: Revision) -> Result<()> {
        if to <= self.delivered {
            return Ok(());
        }
        for (revision, events) in self.history.events(&self.req.range, self.delivered + 1, to)? {
            self.pending.push_back(WatchResponse::Events { revision, events: filter(&self.req, &events) });
        }
        self.delivered = to;
        Ok(())
    }

    fn fail(mut self, e: Error) -> Option<(Result<WatchResponse>, Self)> {
        self.done = true;
        self.pending.clear();
        Some((Err(e), self))
    }
}

/// The events of `events` in the watch's range, without `prev_kv` unless asked for.
fn filter(req: &WatchRequest, events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .filter(|e| req.range.contains(&e.kv.key))
        .map(|e| {
            let mut e = e.clone();
            if !req.prev_kv {
                e.prev_kv = None;
            }
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use parking_lot::RwLock;

    use super::*;
    use crate::mem::MemEngine;
    use crate::mvcc::{Batch, Command, Mvcc};
    use crate::{Op, Txn};

    struct TestHistory(RwLock<Mvcc<MemEngine>>);

    impl History for TestHistory {
        fn status(&self) -> Result<StoreStatus> {
            Ok(self.0.read().status())
        }
        fn events(
            &self,
            range: &KeyRange,
            from: Revision,
            to: Revision,
        ) -> Result<Vec<(Revision, Vec<Event>)>> {
            self.0.read().events(range, from, to)
        }
    }

    /// A hub whose feed holds only 4 changes, over in-memory history.
    fn small_hub() -> (WatchHub, Arc<TestHistory>) {
        let mvcc = Mvcc::open(MemEngine::default()).unwrap();
        (WatchHub::with_capacity(mvcc.status().revision, 4), Arc::new(TestHistory(RwLock::new(mvcc))))
    }

    fn apply(hub: &WatchHub, history: &TestHistory, cmd: Command) {
        let mut mvcc = history.0.write();
        let mut batch = Batch::default();
        let applied = mvcc.apply(&cmd, &mut batch).unwrap();
        applied.response.unwrap();
        mvcc.commit(batch).unwrap();
        hub.publish(applied.revision, applied.events);
    }

    fn put(hub: &WatchHub, history: &TestHistory, i: usize) {
        apply(
            hub,
            history,
            Command::Txn(Txn::new().success(Op::put(format!("/k/{}", i % 3), i.to_string()))),
        );
    }

    fn watch_all(hub: &WatchHub, history: &Arc<TestHistory>) -> WatchStream {
        let req = WatchRequest::new(KeyRange::Prefix(b"/".to_vec()), 0).prev_kv();
        hub.watch(req, history.clone()).unwrap()
    }

    #[tokio::test]
    async fn a_watcher_lagging_beyond_the_feed_capacity_catches_up_from_history() {
        let (hub, history) = small_hub();
        let mut watch = watch_all(&hub, &history);
        for i in 0..20 {
            put(&hub, &history, i);
        }
        for (i, expected) in (2..22).enumerate() {
            match watch.next().await {
                Some(Ok(WatchResponse::Events { revision, events })) => {
                    assert_eq!(revision, expected);
                    assert_eq!(events.len(), 1);
                    assert_eq!(events[0].kv.value, i.to_string().into_bytes());
                    let prev = events[0].prev_kv.as_ref().map(|p| p.value.clone());
                    assert_eq!(prev, i.checked_sub(3).map(|p| p.to_string().into_bytes()));
                }
                other => panic!("expected the event at {expected}, got {other:?}"),
            }
        }
        // Live again afterwards, with nothing repeated.
        put(&hub, &history, 20);
        assert!(matches!(watch.next().await, Some(Ok(WatchResponse::Events { revision: 22, .. }))));
    }

    #[tokio::test]
    async fn a_lagging_watcher_ends_with_compacted_when_its_history_is_gone() {
        let (hub, history) = small_hub();
        let mut watch = watch_all(&hub, &history);
        for i in 0..20 {
            put(&hub, &history, i);
        }
        apply(&hub, &history, Command::Compact(15));
        assert_eq!(watch.next().await, Some(Err(Error::Compacted { requested: 2, compacted: 15 })));
        assert!(watch.next().await.is_none(), "the stream ends after the error");
    }

    #[tokio::test]
    async fn a_watcher_within_the_feed_capacity_is_not_affected_by_compaction() {
        let (hub, history) = small_hub();
        for i in 0..10 {
            put(&hub, &history, i);
        }
        let mut watch = watch_all(&hub, &history);
        put(&hub, &history, 10);
        apply(&hub, &history, Command::Compact(12));
        assert!(matches!(watch.next().await, Some(Ok(WatchResponse::Events { revision: 12, .. }))));
    }
}
