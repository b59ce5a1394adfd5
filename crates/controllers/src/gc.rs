//! The garbage collector: deletes objects whose owners are gone, across built-in and custom
//! resources, and carries out foreground and orphan deletion of owners.
//!
//! Every resource that can be listed and watched (found by discovery, refreshed periodically)
//! is watched metadata-only into a [`graph::Graph`] of owner references. Work goes through one
//! queue of object uids, handled one at a time by [`actions`]:
//! - an object whose owners (by uid) no longer exist is deleted; when some owners remain, only
//!   the references to the missing ones are removed. Absence is always confirmed with a live
//!   read of the owner, never taken from the cache;
//! - an owner being deleted with the `foregroundDeletion` finalizer has its dependents deleted
//!   (foreground again when they have dependents of their own), and loses the finalizer once no
//!   dependent with `blockOwnerDeletion` remains;
//! - an owner with the `orphan` finalizer has the references to it removed from all its
//!   dependents, then loses the finalizer.

mod actions;
mod graph;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures::StreamExt;
use kube::api::DynamicObject;
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::discovery::{self, Served};
use crate::{Ctx, Result};
use graph::{Graph, Node};

/// How often discovery runs again to pick up new resources (custom resources).
const REDISCOVERY: Duration = Duration::from_secs(30);

/// How long a watch that cannot list its resource holds up orphaning and foreground deletion.
const SYNC_GRACE: Duration = Duration::from_secs(30);

/// How soon discovery is retried when it failed.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);

/// Resources the collector neither watches nor collects (upstream's ignored resources).
const IGNORED: &[&str] = &["/events", "events.k8s.io/events"];

/// The key of a watched resource: `<group>/<plural>`.
fn resource_key(served: &Served) -> String {
    format!("{}/{}", served.resource.group, served.resource.plural)
}

/// What a watch tells the collector: the resource key and the event.
type Update = (String, watcher::Event<PartialObjectMeta<DynamicObject>>);

/// One running watch.
#[derive(Debug)]
struct Watch {
    stop: CancellationToken,
    /// When it started.
    started: Instant,
    /// Whether its first list is complete.
    synced: bool,
    /// The uids seen since the watch (re)started listing, while it lists.
    listing: Option<HashSet<String>>,
}

/// The collector's state; owned by one task, so it needs no locks.
pub(super) struct Collector {
    client: Client,
    graph: Graph,
    /// Served resources by `(group, kind)`, to find an owner reference's resource.
    kinds: HashMap<(String, String), Served>,
    /// Served resources by key.
    resources: HashMap<String, Served>,
    watches: HashMap<String, Watch>,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    retries: BTreeMap<Instant, Vec<String>>,
    updates: mpsc::UnboundedSender<Update>,
    shutdown: CancellationToken,
}

pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut gc = Collector {
        client: ctx.client.clone(),
        graph: Graph::default(),
        kinds: HashMap::new(),
        resources: HashMap::new(),
        watches: HashMap::new(),
        queue: VecDeque::new(),
        queued: HashSet::new(),
        retries: BTreeMap::new(),
        updates: tx,
        shutdown: ctx.shutdown.clone(),
    };
    let result = gc.run(&mut rx).await;
    for w in gc.watches.values() {
        w.stop.cancel();
    }
    result
}

impl Collector {
    async fn run(&mut self, rx: &mut mpsc::UnboundedReceiver<Update>) -> Result<()> {
        let mut next_discovery = Instant::now();
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            if Instant::now() >= next_discovery {
                let wait = if self.rediscover().await { REDISCOVERY } else { DISCOVERY_RETRY };
                next_discovery = Instant::now() + wait;
            }
            while let Ok(update) = rx.try_recv() {
                self.on_update(update);
            }
            self.take_due_retries();
            if let Some(uid) = self.queue.pop_front() {
                self.queued.remove(&uid);
                self.work(uid).await;
                continue;
            }
            let wake = self.retries.keys().next().copied().unwrap_or(next_discovery).min(next_discovery);
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                update = rx.recv() => if let Some(update) = update { self.on_update(update) },
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Whether every watch has listed its resource once: orphaning and foreground deletion
    /// need to know all dependents. A watch that cannot list for [`SYNC_GRACE`] stops holding
    /// the others up (as upstream's cache sync timeout).
    fn synced(&self) -> bool {
        self.watches.values().all(|w| w.synced || w.started.elapsed() > SYNC_GRACE)
    }

    fn enqueue(&mut self, uid: String) {
        if self.queued.insert(uid.clone()) {
            self.queue.push_back(uid);
        }
    }

    fn retry_later(&mut self, uid: String, after: Duration) {
        self.retries.entry(Instant::now() + after).or_default().push(uid);
    }

    fn take_due_retries(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.retries.first_entry() {
            if *entry.key() > now {
                break;
            }
            for uid in entry.remove() {
                self.enqueue(uid);
            }
        }
    }

    fn on_update(&mut self, update: Update) {
        let (key, event) = update;
        let todo = match event {
            watcher::Event::Init => {
                if let Some(w) = self.watches.get_mut(&key) {
                    w.listing = Some(HashSet::new());
                }
                Vec::new()
            }
            watcher::Event::InitApply(obj) => {
                let Some((uid, node)) = Node::from_meta(&key, &obj.metadata) else {
                    return;
                };
                if let Some(seen) = self.watches.get_mut(&key).and_then(|w| w.listing.as_mut()) {
                    seen.insert(uid.clone());
                }
                self.graph.upsert(uid, node)
            }
            watcher::Event::Apply(obj) => match Node::from_meta(&key, &obj.metadata) {
                Some((uid, node)) => self.graph.upsert(uid, node),
                None => Vec::new(),
            },
            watcher::Event::Delete(obj) => match obj.metadata.uid.as_deref() {
                Some(uid) => self.graph.remove(uid),
                None => Vec::new(),
            },
            watcher::Event::InitDone => {
                let Some(w) = self.watches.get_mut(&key) else {
                    return;
                };
                w.synced = true;
                let seen = w.listing.take().unwrap_or_default();
                // What the new list no longer has was deleted while the watch was down.
                let gone: Vec<String> =
                    self.graph.uids_of(&key).into_iter().filter(|u| !seen.contains(u)).collect();
                gone.iter().flat_map(|u| self.graph.remove(u)).collect()
            }
        };
        for uid in todo {
            self.enqueue(uid);
        }
    }

    /// Runs discovery and starts or stops watches to match what is served; false when the
    /// list of groups could not be read.
    async fn rediscover(&mut self) -> bool {
        let found = match discovery::discover(&self.client).await {
            Ok(found) => found,
            Err(e) => {
                warn!(error = %e, "garbage collector: discovery failed");
                return false;
            }
        };
        let failed: HashSet<&str> = found.failed.iter().map(|(g, _)| g.as_str()).collect();
        for (group, e) in &found.failed {
            warn!(group = %group, error = %e, "garbage collector: discovery of a group failed");
        }
        let served: HashMap<String, Served> = found
            .resources
            .into_iter()
            .map(|s| (resource_key(&s), s))
            .filter(|(k, s)| !IGNORED.contains(&k.as_str()) && s.supports(&["list", "watch"]))
            .collect();
        let stale: Vec<String> = self
            .watches
            .keys()
            .filter(|k| !served.contains_key(*k))
            .filter(|k| self.resources.get(*k).is_none_or(|s| !failed.contains(s.resource.group.as_str())))
            .cloned()
            .collect();
        for key in stale {
            info!(resource = %key, "garbage collector: resource no longer served; stopping its watch");
            if let Some(w) = self.watches.remove(&key) {
                w.stop.cancel();
            }
            self.resources.remove(&key);
            let todo: Vec<String> =
                self.graph.uids_of(&key).iter().flat_map(|u| self.graph.remove(u)).collect();
            for uid in todo {
                self.enqueue(uid);
            }
        }
        for (key, s) in served {
            if !self.watches.contains_key(&key) {
                debug!(resource = %key, "garbage collector: watching");
                let stop = self.shutdown.child_token();
                spawn_watch(&self.client, key.clone(), &s, stop.clone(), self.updates.clone());
                let watch = Watch { stop, started: Instant::now(), synced: false, listing: None };
                self.watches.insert(key.clone(), watch);
            }
            self.resources.insert(key, s);
        }
        self.kinds = self
            .resources
            .values()
            .map(|s| ((s.resource.group.clone(), s.resource.kind.clone()), s.clone()))
            .collect();
        true
    }
}

/// Watches the metadata of every object of `served` until `stop`, sending what it sees.
fn spawn_watch(
    client: &Client,
    key: String,
    served: &Served,
    stop: CancellationToken,
    tx: mpsc::UnboundedSender<Update>,
) {
    // An `Api` of `PartialObjectMeta` makes metadata-only requests.
    let objects: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), &served.resource);
    let mut events = Box::pin(watcher(objects, watcher::Config::default()).default_backoff());
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                Some(Ok(event)) => {
                    if tx.send((key.clone(), event)).is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    debug!(resource = %key, error = %e, "garbage collector: watch failed; retrying")
                }
                None => return,
            }
        }
    });
}
