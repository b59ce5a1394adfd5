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
        let (tx, _) = broadcast::channel(FEED_CAPACITY);
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
                            self.pending.push_back(WatchResponse::Progress { revision: self.delivered });
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
