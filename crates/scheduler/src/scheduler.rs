//! The scheduling loop: reflectors keep the caches, every change may wake pods that are backing
//! off, and each ready pending pod goes through one cycle and is bound, nominated or marked
//! unschedulable. Pods it bound are assumed on their node until the pod cache shows the binding,
//! so two pods never race for one slot.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::{self, Recorder};
use crate::cycle;
use crate::preemption::{self, priority, with_priority, Preemption};
use crate::queue::Backoff;
use crate::snapshot::{is_terminal, node_name, Snapshot};
use crate::{Config, Result};

/// What the watches report, reduced to what the loop reacts to.
enum Change {
    /// A node was added or updated.
    Node,
    /// The pod with this key was deleted.
    PodDeleted(String),
    /// The pod with this key is bound to a node (and has finished, when `terminal`).
    PodBound {
        key: String,
        terminal: bool,
    },
    /// A cache finished its initial list.
    Synced(&'static str),
    Other,
}

fn node_change(e: Event<Node>) -> Change {
    match e {
        Event::Apply(_) | Event::InitApply(_) => Change::Node,
        _ => Change::Other,
    }
}

fn pod_change(e: Event<Pod>) -> Change {
    match e {
        Event::Delete(p) => Change::PodDeleted(key(&p)),
        Event::Apply(p) if node_name(&p).is_some() => {
            Change::PodBound { key: key(&p), terminal: is_terminal(&p) }
        }
        _ => Change::Other,
    }
}

/// The caches that must be listed before the first cycle.
const CACHES: [&str; 5] = ["nodes", "pods", "namespaces", "priorityclasses", "poddisruptionbudgets"];

fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// The scheduler's caches and state.
pub(crate) struct Scheduler {
    client: Client,
    config: Config,
    nodes: Store<Node>,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
    priority_classes: Store<PriorityClass>,
    pdbs: Store<PodDisruptionBudget>,
    streams: Vec<BoxStream<'static, Result<Change, watcher::Error>>>,
    /// Pods bound by this scheduler that the pod cache does not show bound yet, by key.
    assumed: HashMap<String, Arc<Pod>>,
    backoff: Backoff,
    recorder: Recorder,
    synced: HashSet<&'static str>,
}

/// A reflector of every `K` as a store and a stream of changes.
fn reflect<K>(
    client: &Client,
    name: &'static str,
    wrap: fn(Event<K>) -> Change,
) -> (Store<K>, BoxStream<'static, Result<Change, watcher::Error>>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        // The caches never need field ownership; it is most of an object's size.
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .reflect(writer)
        .map(move |r| {
            r.map(|e| match e {
                Event::InitDone => Change::Synced(name),
                e => wrap(e),
            })
        })
        .boxed();
    (store, stream)
}

impl Scheduler {
    pub(crate) fn new(client: Client, config: Config) -> Scheduler {
        let (nodes, n) = reflect(&client, "nodes", node_change);
        let (pods, p) = reflect(&client, "pods", pod_change);
        let (namespaces, ns) = reflect::<Namespace>(&client, "namespaces", |_| Change::Other);
        let (priority_classes, pc) = reflect::<PriorityClass>(&client, "priorityclasses", |_| Change::Other);
        let (pdbs, pdb) = reflect::<PodDisruptionBudget>(&client, "poddisruptionbudgets", |_| Change::Other);
        let backoff = Backoff::new(config.initial_backoff, config.max_backoff);
        let recorder = Recorder::new(&config.scheduler_name);
        Scheduler {
            client,
            config,
            nodes,
            pods,
            namespaces,
            priority_classes,
            pdbs,
            streams: vec![n, p, ns, pc, pdb],
            assumed: HashMap::new(),
            backoff,
            recorder,
            synced: HashSet::new(),
        }
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        let mut changes = stream::select_all(std::mem::take(&mut self.streams));
        info!(scheduler = %self.config.scheduler_name, "scheduler starting");
        loop {
            let now = Instant::now();
            let wake = self.backoff.next_ready(now).unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                change = changes.next() => match change {
                    Some(c) => self.observe(c),
                    None => break,
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
            while let Some(Some(c)) = changes.next().now_or_never() {
                self.observe(c);
            }
            if self.synced.len() == CACHES.len() {
                self.schedule_pending(&shutdown).await;
            }
        }
        info!("scheduler stopped");
        Ok(())
    }

    /// Notes a change; those that may let waiting pods fit end their backoff.
    fn observe(&mut self, change: Result<Change, watcher::Error>) {
        let now = Instant::now();
        match change {
            Err(e) => warn!(error = %e, "watch failed, retrying"),
            Ok(Change::Synced(name)) => {
                debug!(cache = name, "cache synced");
                self.synced.insert(name);
                self.backoff.flush(now);
            }
            Ok(Change::Node) => self.backoff.flush(now),
            Ok(Change::PodDeleted(key)) => {
                self.assumed.remove(&key);
                self.backoff.flush(now);
            }
            Ok(Change::PodBound { key, terminal }) => {
                self.assumed.remove(&key);
                if terminal {
                    self.backoff.flush(now);
                }
            }
            Ok(_) => {}
        }
    }

    /// Whether `pod` waits for this scheduler (scheduling gates hold it back).
    fn is_pending(&self, pod: &Pod) -> bool {
        let Some(spec) = pod.spec.as_ref() else { return false };
        let ours =
            spec.scheduler_name.as_deref().unwrap_or("default-scheduler") == self.config.scheduler_name;
        let gated = spec.scheduling_gates.as_ref().is_some_and(|g| !g.is_empty());
        ours && !gated
            && node_name(pod).is_none()
            && pod.metadata.deletion_timestamp.is_none()
            && !is_terminal(pod)
            && self.assumed.get(&key(pod)).is_none_or(|a| a.metadata.uid != pod.metadata.uid)
    }

    /// The snapshot of the caches plus the assumed pods.
    fn snapshot(&mut self, pods: &[Arc<Pod>], classes: &[Arc<PriorityClass>]) -> Snapshot {
        let by_key: HashMap<String, &Arc<Pod>> = pods.iter().map(|p| (key(p), p)).collect();
        // An assumed pod stays until the cache shows it bound, deleted or replaced.
        self.assumed.retain(|k, a| {
            by_key.get(k).is_some_and(|p| p.metadata.uid == a.metadata.uid && node_name(p).is_none())
        });
        let cached = pods.iter().filter(|p| !self.assumed.contains_key(&key(p))).cloned();
        let all = cached.chain(self.assumed.values().cloned()).map(|p| with_priority(p, classes));
        let mut snapshot = Snapshot::new(self.nodes.state(), all.collect::<Vec<_>>());
        snapshot.namespace_labels = self
            .namespaces
            .state()
            .iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, n.metadata.labels.clone().unwrap_or_default())))
            .collect();
        snapshot
    }

    /// One cycle for every pending pod whose backoff is over, most important first.
    async fn schedule_pending(&mut self, shutdown: &CancellationToken) {
        let now = Instant::now();
        let pods = self.pods.state();
        let classes = self.priority_classes.state();
        let pending: Vec<Arc<Pod>> = pods.iter().filter(|p| self.is_pending(p)).cloned().collect();
        let keys: HashSet<String> = pending.iter().map(|p| key(p)).collect();
        self.backoff.retain(|k| keys.contains(k));
        self.recorder.retain(|k| keys.contains(k));
        let mut ready: Vec<Arc<Pod>> = pending
            .iter()
            .filter(|p| self.backoff.is_ready(&key(p), now))
            .map(|p| with_priority(p.clone(), &classes))
            .collect();
        if ready.is_empty() {
            return;
        }
        ready.sort_by(|a, b| {
            priority(b)
                .cmp(&priority(a))
                .then_with(|| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp))
        });
        let mut nominated: Vec<Arc<Pod>> = pending
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.nominated_node_name.as_deref())
                    .is_some_and(|n| !n.is_empty())
            })
            .map(|p| with_priority(p.clone(), &classes))
            .collect();
        let mut snapshot = self.snapshot(&pods, &classes);
        for pod in ready {
            if shutdown.is_cancelled() {
                return;
            }
            nominated.retain(|q| !self.assumed.contains_key(&key(q)));
            self.schedule_one(pod, &mut snapshot, &nominated).await;
        }
    }

    /// One cycle for `pod` over `snapshot` (with room reserved for `nominated` pods); a pod it
    /// binds is added to `snapshot` for the pods after it.
    async fn schedule_one(&mut self, pod: Arc<Pod>, snapshot: &mut Snapshot, nominated: &[Arc<Pod>]) {
        let pod_key = key(&pod);
        let reserved = preemption::reserve_nominated(snapshot, &pod, nominated);
        let view = reserved.as_ref().unwrap_or(snapshot);
        let chosen = cycle::schedule(&pod, view, &mut rand::rng());
        match chosen {
            Ok(node) => match api::bind(&self.client, &pod, &node).await {
                Ok(()) => {
                    info!(pod = %pod_key, node = %node, "pod bound");
                    let mut bound = (*pod).clone();
                    if let Some(s) = bound.spec.as_mut() {
                        s.node_name = Some(node.clone());
                    }
                    let bound = Arc::new(bound);
                    snapshot.add_pod(bound.clone());
                    self.assumed.insert(pod_key.clone(), bound);
                    self.backoff.forget(&pod_key);
                    let message = format!("Successfully assigned {pod_key} to {node}");
                    self.event(&pod, "Normal", "Scheduled", "Binding", &message).await;
                }
                Err(e) => {
                    warn!(error = %e, pod = %pod_key, node = %node, "binding failed");
                    self.backoff.failed(&pod_key, Instant::now());
                }
            },
            Err(diagnosis) => {
                let pdbs = self.pdbs.state();
                let (post, nominated) = match preemption::preempt(&pod, view, &diagnosis, &pdbs) {
                    Preemption::Nominate { node, victims } => {
                        self.evict(&pod, &node, &victims).await;
                        (None, Some(node))
                    }
                    Preemption::Fails(msg) => (Some(msg), None),
                };
                let message = diagnosis.message(post.as_deref());
                info!(pod = %pod_key, reason = %message, "pod is unschedulable");
                if let Err(e) =
                    api::mark_unschedulable(&self.client, &pod, &message, nominated.as_deref()).await
                {
                    warn!(error = %e, pod = %pod_key, "could not update the PodScheduled condition");
                }
                self.event(&pod, "Warning", "FailedScheduling", "Scheduling", &message).await;
                self.backoff.failed(&pod_key, Instant::now());
            }
        }
    }

    /// Deletes preemption victims, each with a `Preempted` event.
    async fn evict(&mut self, preemptor: &Pod, node: &str, victims: &[Arc<Pod>]) {
        let uid = preemptor.metadata.uid.as_deref().unwrap_or("");
        for v in victims {
            info!(pod = %key(v), preemptor = %key(preemptor), node = %node, "preempting pod");
            if let Err(e) = api::evict(&self.client, v, &self.config.scheduler_name).await {
                warn!(error = %e, pod = %key(v), "could not delete a preemption victim");
                continue;
            }
            let message = format!("Preempted by pod {uid} on node {node}");
            self.event(v, "Normal", "Preempted", "Preempting", &message).await;
        }
    }

    async fn event(&mut self, pod: &Pod, type_: &str, reason: &str, action: &str, message: &str) {
        if let Err(e) = self.recorder.record(&self.client, pod, type_, reason, action, message).await {
            warn!(error = %e, pod = %key(pod), reason, "could not record an event");
        }
    }
}
