//! The node lifecycle controller of kube-controller-manager: watches Nodes, their heartbeat
//! Leases in `kube-node-lease` and Pods, and every pass
//! - marks a node whose Lease and Ready heartbeat have not moved for [`health::GRACE`] as
//!   `Unknown` (Ready and the pressure conditions) and its pods not ready (upstream
//!   `MarkPodsNotReady`),
//! - keeps the condition taints (`not-ready`, `unreachable`, the pressure taints and
//!   `unschedulable`) in line with the node's conditions and spec,
//! - evicts the pods on a node with a `NoExecute` taint they do not tolerate, or once their
//!   `tolerationSeconds` since the taint's `timeAdded` have passed (the taint eviction
//!   controller), setting `DisruptionTarget` first.
//!
//! Time comes from the [`Clock`](crate::Clock), so tests move it.

mod eviction;
mod health;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures::{future, Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::error::api;
use crate::pods::emit;
use crate::{Clock, Ctx, Error, Result};

/// The namespace of the node heartbeat Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How often the nodes are checked (upstream `nodeMonitorPeriod` is 5 s).
const PERIOD: Duration = Duration::from_secs(1);

pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    let client = ctx.client.clone();
    let (nodes, node_cache) = cache(Api::<Node>::all(client.clone()));
    let (leases, lease_cache) = cache(Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE));
    let (pods, pod_cache) = cache(Api::<Pod>::all(client.clone()));
    let monitor = async {
        for store in
            [nodes.wait_until_ready().await, leases.wait_until_ready().await, pods.wait_until_ready().await]
        {
            store.map_err(|_| Error::Invalid("a node lifecycle cache was dropped".into()))?;
        }
        let mut health = health::Health::default();
        let reporter = Reporter { controller: "node-controller".into(), instance: None };
        let recorder = Recorder::new(ctx.client.clone(), reporter);
        let mut ticks = ticker(&ctx.clock, PERIOD);
        while ticks.next().await.is_some() {
            let caches = Caches { nodes: &nodes, leases: &leases, pods: &pods };
            monitor_pass(&ctx.client, &recorder, &ctx.clock, &mut health, caches).await;
        }
        Ok(())
    };
    tokio::select! {
        () = ctx.shutdown.cancelled() => Ok(()),
        () = node_cache => Ok(()),
        () = lease_cache => Ok(()),
        () = pod_cache => Ok(()),
        outcome = monitor => outcome,
    }
}

/// A cache of `api` kept by a watch, and the future that keeps it (it must be polled).
pub(crate) fn cache<K>(api: Api<K>) -> (Store<K>, impl Future<Output = ()>)
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let keep = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .for_each(|event| {
            if let Err(e) = event {
                debug!(kind = %K::kind(&()), error = %e, "watch error");
            }
            future::ready(())
        });
    (store, keep)
}

/// Yields every `period` and each time a manual clock moves.
pub(crate) fn ticker(clock: &Clock, period: Duration) -> impl Stream<Item = ()> + Unpin + Send + 'static {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let periodic = futures::stream::unfold(interval, |mut i| async move {
        i.tick().await;
        Some(((), i))
    });
    futures::stream::select(periodic.boxed(), clock.ticks())
}

/// What the controller watches.
struct Caches<'a> {
    nodes: &'a Store<Node>,
    leases: &'a Store<Lease>,
    pods: &'a Store<Pod>,
}

/// One check of every node: health, taints, pod readiness and evictions.
async fn monitor_pass(
    client: &Client,
    recorder: &Recorder,
    clock: &Clock,
    health: &mut health::Health,
    Caches { nodes, leases, pods }: Caches<'_>,
) {
    let now = clock.now();
    let nodes = nodes.state();
    health.forget_except(nodes.iter().map(|n| n.name_any()));
    let mut pods_by_node: HashMap<String, Vec<std::sync::Arc<Pod>>> = HashMap::new();
    for pod in pods.state() {
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) {
            pods_by_node.entry(node).or_default().push(pod);
        }
    }
    for node in nodes {
        let name = node.name_any();
        let lease = leases.get(&reflector::ObjectRef::new(&name).within(LEASE_NAMESPACE));
        let stale = health.observe(&node, lease.as_deref(), now);
        let on_node = pods_by_node.remove(&name).unwrap_or_default();
        match sync_node(client, recorder, &node, stale, &on_node, now).await {
            Ok(()) => {}
            // Written on a stale read; the next pass sees the newer object.
            Err(Error::Api { source: kube::Error::Api(s), .. }) if s.code == 409 => {
                debug!(node = %name, "node or pod changed while syncing; retrying")
            }
            Err(e) => warn!(node = %name, error = %e, "syncing node"),
        }
    }
}

async fn sync_node(
    client: &Client,
    recorder: &Recorder,
    node: &Node,
    stale: bool,
    pods: &[std::sync::Arc<Pod>],
    now: Timestamp,
) -> Result<()> {
    let name = node.name_any();
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = node.clone();
    if stale {
        if let Some(conditions) = health::unknown_conditions(&node, now) {
            info!(node = %name, "kubelet stopped posting node status; marking it unknown");
            let patch = json!({
                "metadata": {"resourceVersion": node.resource_version()},
                "status": {"conditions": conditions},
            });
            node = nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api(format!("marking node {name} unknown")))?;
            let note = format!("Node {name} status is now: NodeNotReady");
            emit(recorder, &node, false, "NodeNotReady", note).await;
        }
    }
    if let Some(taints) = health::desired_taints(&node, now) {
        debug!(node = %name, ?taints, "updating node taints");
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "spec": {"taints": taints},
        });
        node = nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api(format!("updating the taints of node {name}")))?;
    }
    if health::ready_status(&node).is_some_and(|s| s != "True") {
        for pod in pods {
            mark_not_ready(client, pod, now).await?;
        }
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if eviction::evict_at(pod, &taints, now).is_some_and(|at| at <= now) {
            evict(client, recorder, pod, &name, now).await?;
        }
    }
    Ok(())
}

/// Sets the Ready condition of `pod` to False unless it is False already.
async fn mark_not_ready(client: &Client, pod: &Pod, now: Timestamp) -> Result<()> {
    let Some(conditions) = eviction::not_ready_conditions(pod, now) else { return Ok(()) };
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let patch = json!({
        "metadata": {"resourceVersion": pod.resource_version()},
        "status": {"conditions": conditions},
    });
    match Api::<Pod>::namespaced(client.clone(), &ns)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(api(format!("marking pod {name} in {ns} not ready"))(e)),
    }
}

/// Deletes `pod` for a NoExecute taint of `node` it does not tolerate (any longer), with the
/// `DisruptionTarget` condition set first.
async fn evict(client: &Client, recorder: &Recorder, pod: &Pod, node: &str, now: Timestamp) -> Result<()> {
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    info!(pod = %name, namespace = %ns, node, "evicting pod for a NoExecute taint");
    let patch = json!({
        "metadata": {"resourceVersion": pod.resource_version()},
        "status": {"conditions": eviction::disruption_conditions(pod, now)},
    });
    match pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(api(format!("marking pod {name} in {ns} for eviction"))(e)),
    }
    let note = format!("Marking for deletion Pod {ns}/{name}");
    emit(recorder, pod, false, "TaintManagerEviction", note).await;
    match pods.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(api(format!("evicting pod {name} in {ns}"))(e)),
    }
}
