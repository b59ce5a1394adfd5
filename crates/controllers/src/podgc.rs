//! The pod garbage collector of kube-controller-manager: deletes (with grace 0) terminated pods
//! beyond the `terminated-pod-gc-threshold`, oldest first; pods bound to nodes that no longer
//! exist, after a quarantine and a live check of the node; terminating pods on nodes that are
//! not ready and marked `out-of-service`; and terminating pods never scheduled.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::error::api;
use crate::nodelifecycle::{cache, ticker};
use crate::{Ctx, Error, Result};

/// The upstream default of `--terminated-pod-gc-threshold`.
pub(crate) const DEFAULT_THRESHOLD: usize = 12500;
/// How long a node must be missing before its pods are deleted (upstream `quarantineTime`).
const QUARANTINE: SignedDuration = SignedDuration::from_secs(40);
/// How often the pods are checked (upstream `gcCheckPeriod` is 20 s).
const PERIOD: Duration = Duration::from_secs(2);
/// The taint that lets terminating pods of a node that is not ready go at once.
const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    let client = ctx.client.clone();
    let (nodes, node_cache) = cache(Api::<Node>::all(client.clone()));
    let (pods, pod_cache) = cache(Api::<Pod>::all(client.clone()));
    let threshold = ctx.config.terminated_pod_gc_threshold.unwrap_or(DEFAULT_THRESHOLD);
    let gc = async {
        for store in [nodes.wait_until_ready().await, pods.wait_until_ready().await] {
            store.map_err(|_| Error::Invalid("a pod gc cache was dropped".into()))?;
        }
        let mut gc = Gc {
            client: ctx.client.clone(),
            threshold,
            missing: HashMap::new(),
            deleted: HashSet::new(),
            now: ctx.clock.now(),
        };
        let mut ticks = ticker(&ctx.clock, PERIOD);
        while ticks.next().await.is_some() {
            gc.pass(&nodes, &pods, ctx.clock.now()).await;
        }
        Ok(())
    };
    tokio::select! {
        () = ctx.shutdown.cancelled() => Ok(()),
        () = node_cache => Ok(()),
        () = pod_cache => Ok(()),
        outcome = gc => outcome,
    }
}

struct Gc {
    client: Client,
    threshold: usize,
    /// Nodes that pods are bound to but that are gone, and since when.
    missing: HashMap<String, Timestamp>,
    /// The pods deleted that the cache may not have seen go yet.
    deleted: HashSet<String>,
    /// The time of the current pass.
    now: Timestamp,
}

impl Gc {
    async fn pass(&mut self, nodes: &Store<Node>, pods: &Store<Pod>, now: Timestamp) {
        self.now = now;
        let pods: Vec<_> = pods.state();
        let uids: HashSet<String> = pods.iter().filter_map(|p| p.uid()).collect();
        self.deleted.retain(|uid| uids.contains(uid));
        let pods: Vec<_> =
            pods.into_iter().filter(|p| p.uid().is_none_or(|u| !self.deleted.contains(&u))).collect();
        for pod in terminated_to_delete(&pods, self.threshold) {
            self.delete(pod, "terminated pod above the threshold", None).await;
        }
        let mut gone = Vec::new();
        for pod in &pods {
            let Some(node_name) = node_of(pod) else {
                if pod.metadata.deletion_timestamp.is_some() {
                    self.delete(pod, "terminating pod never scheduled", None).await;
                }
                continue;
            };
            match nodes.get(&ObjectRef::new(node_name)) {
                Some(node) => {
                    if pod.metadata.deletion_timestamp.is_some() && out_of_service(&node) {
                        self.delete(pod, "terminating pod on an out-of-service node", None).await;
                    }
                }
                None => gone.push((node_name.to_string(), pod)),
            }
        }
        let missing: HashSet<&str> = gone.iter().map(|(n, _)| n.as_str()).collect();
        self.missing.retain(|n, _| missing.contains(n.as_str()));
        let mut confirmed = HashSet::new();
        for node in missing {
            let since = *self.missing.entry(node.to_string()).or_insert(now);
            if now < since + QUARANTINE {
                continue;
            }
            match Api::<Node>::all(self.client.clone()).get_opt(node).await {
                Ok(None) => {
                    confirmed.insert(node.to_string());
                }
                Ok(Some(_)) => {
                    self.missing.remove(node);
                }
                Err(e) => warn!(node, error = %e, "checking whether a node exists"),
            }
        }
        for (node, pod) in gone {
            if confirmed.contains(&node) {
                self.delete(pod, "pod bound to a node that no longer exists", Some(&node)).await;
            }
        }
    }

    /// Deletes `pod` with grace 0; for a pod of a node that is gone (`orphan_of`), marks it
    /// Failed with `DisruptionTarget` first, as upstream does.
    async fn delete(&mut self, pod: &Pod, why: &str, orphan_of: Option<&str>) {
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        if let Err(e) = self.try_delete(pod, orphan_of).await {
            warn!(pod = %name, namespace = %ns, error = %e, "garbage collecting pod");
            return;
        }
        info!(pod = %name, namespace = %ns, reason = why, "garbage collected pod");
        if let Some(uid) = pod.uid() {
            self.deleted.insert(uid);
        }
    }

    async fn try_delete(&self, pod: &Pod, orphan_of: Option<&str>) -> Result<()> {
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        if let (Some(node), false) = (orphan_of, is_terminated(pod)) {
            let patch =
                json!({"status": {"phase": "Failed", "conditions": orphan_conditions(pod, node, self.now)}});
            match pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) => return Err(api(format!("marking pod {name} in {ns} failed"))(e)),
            }
        }
        let force = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
        match pods.delete(&name, &force).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api(format!("deleting pod {name} in {ns}"))(e)),
        }
    }
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

fn is_terminated(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Whether `node` is not ready and tainted `out-of-service` (upstream `gcTerminating`).
fn out_of_service(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    let tainted = node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| {
        t.iter().any(|t| t.key == OUT_OF_SERVICE && matches!(t.effect.as_str(), "NoExecute" | "NoSchedule"))
    });
    !ready && tainted
}

/// The terminated pods beyond `threshold` (0: no limit), evicted ones first, then oldest first
/// (upstream `byEvictionAndCreationTimestamp`).
fn terminated_to_delete<P: Borrow<Pod>>(pods: &[P], threshold: usize) -> Vec<&Pod> {
    let mut terminated: Vec<&Pod> = pods.iter().map(Borrow::borrow).filter(|p| is_terminated(p)).collect();
    if threshold == 0 || terminated.len() <= threshold {
        return Vec::new();
    }
    let excess = terminated.len() - threshold;
    terminated.sort_by_key(|p| {
        let status = p.status.as_ref();
        let evicted = status.and_then(|s| s.phase.as_deref()) == Some("Failed")
            && status.and_then(|s| s.reason.as_deref()) == Some("Evicted");
        let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (!evicted, created, p.name_any())
    });
    terminated.truncate(excess);
    terminated
}

/// The conditions of an orphaned pod with `DisruptionTarget` True, reason `DeletionByPodGC`.
fn orphan_conditions(pod: &Pod, node: &str, now: Timestamp) -> Vec<PodCondition> {
    let mut conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByPodGC".into()),
        message: Some(format!("PodGC: node {node} no longer exists")),
        last_transition_time: Some(Time(now)),
        ..PodCondition::default()
    });
    conditions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, created: &str, phase: &str, reason: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"containers": []},
            "status": {"phase": phase, "reason": reason},
        }))
        .unwrap()
    }

    #[test]
    fn terminated_pods_beyond_the_threshold_go_evicted_first_then_oldest_first() {
        let pods = [
            pod("new", "2026-01-01T00:03:00Z", "Succeeded", None),
            pod("running", "2026-01-01T00:00:00Z", "Running", None),
            pod("old", "2026-01-01T00:01:00Z", "Failed", None),
            pod("evicted", "2026-01-01T00:04:00Z", "Failed", Some("Evicted")),
            pod("middle", "2026-01-01T00:02:00Z", "Succeeded", None),
        ];
        let names = |v: Vec<&Pod>| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(names(terminated_to_delete(&pods, 2)), ["evicted", "old"]);
        assert!(terminated_to_delete(&pods, 4).is_empty());
        assert!(terminated_to_delete(&pods, 0).is_empty());
    }
}
