//! The disruption controller against the in-process API server: PodDisruptionBudget status from
//! the scale of the ReplicaSets behind the selected pods and the readiness of the pods (set by
//! a fake kubelet through the status subresource), and the cleanup of `disruptedPods`.

mod common;

use anyhow::Result;
use common::{eventually, Harness};
use corten_controllers::{Clock, Config};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

const CONTROLLERS: &[&str] = &["replicaset", "disruption"];

fn replica_set(name: &str, replicas: i32) -> Result<ReplicaSet> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "nginx:1"}]}
            }
        }
    }))?)
}

fn budget(name: &str, app: &str, spec: Value) -> Result<PodDisruptionBudget> {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": app}});
    Ok(serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?)
}

/// What the status says, in one comparable line.
fn counts(s: &PodDisruptionBudgetStatus) -> String {
    format!(
        "expected={} healthy={} desired={} allowed={}",
        s.expected_pods, s.current_healthy, s.desired_healthy, s.disruptions_allowed
    )
}

fn condition(s: &PodDisruptionBudgetStatus) -> Option<(String, String, String)> {
    let c = s.conditions.iter().flatten().find(|c| c.type_ == "DisruptionAllowed")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the budget's status reads `want` (see [`counts`]) for its current generation.
async fn status_becomes(
    api: &Api<PodDisruptionBudget>,
    name: &str,
    want: &str,
) -> Result<PodDisruptionBudgetStatus> {
    eventually(&format!("{name} with {want}"), || async {
        let pdb = api.get(name).await?;
        let status = pdb.status.clone().unwrap_or_default();
        let current = status.observed_generation == pdb.metadata.generation;
        Ok(if current && counts(&status) == want { Ok(status) } else { Err(format!("{status:?}")) })
    })
    .await
}

async fn ready_pods(h: &Harness, app: &str, n: usize) -> Result<Vec<Pod>> {
    let pods = h.pods();
    eventually(&format!("{n} ready {app} pods"), || async {
        let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await?;
        let ready: Vec<Pod> = list.items.into_iter().filter(common::is_ready).collect();
        Ok(if ready.len() == n { Ok(ready) } else { Err(format!("{} ready", ready.len())) })
    })
    .await
}

#[tokio::test]
async fn an_integer_min_available_counts_the_selected_pods() -> Result<()> {
    let mut h = Harness::start(CONTROLLERS).await?;
    h.kubelet(|_| true);
    h.api::<ReplicaSet>("default").create(&PostParams::default(), &replica_set("web", 3)?).await?;
    ready_pods(&h, "web", 3).await?;
    let pdbs = h.api::<PodDisruptionBudget>("default");
    pdbs.create(&PostParams::default(), &budget("web", "web", json!({"minAvailable": 2}))?).await?;
    let status = status_becomes(&pdbs, "web", "expected=3 healthy=3 desired=2 allowed=1").await?;
    assert_eq!(condition(&status), Some(("True".into(), "SufficientPods".into(), String::new())));
    assert_eq!(status.observed_generation, Some(1));

    // Raising the bar is a new generation, observed with the new counts.
    pdbs.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"minAvailable": 3}}))).await?;
    let status = status_becomes(&pdbs, "web", "expected=3 healthy=3 desired=3 allowed=0").await?;
    assert_eq!(condition(&status), Some(("False".into(), "InsufficientPods".into(), String::new())));
    assert_eq!(status.observed_generation, Some(2));
    Ok(())
}

#[tokio::test]
async fn percentages_and_max_unavailable_follow_the_replica_set_scale() -> Result<()> {
    let mut h = Harness::start(CONTROLLERS).await?;
    h.kubelet(|_| true);
    h.api::<ReplicaSet>("default").create(&PostParams::default(), &replica_set("web", 4)?).await?;
    ready_pods(&h, "web", 4).await?;
    let pdbs = h.api::<PodDisruptionBudget>("default");
    let pp = PostParams::default();
    pdbs.create(&pp, &budget("half", "web", json!({"minAvailable": "50%"}))?).await?;
    pdbs.create(&pp, &budget("quarter", "web", json!({"maxUnavailable": "25%"}))?).await?;
    pdbs.create(&pp, &budget("one", "web", json!({"maxUnavailable": 1}))?).await?;
    // Rounded up: 50% of 4 is 2; 25% of 4 is 1, so 3 must stay.
    status_becomes(&pdbs, "half", "expected=4 healthy=4 desired=2 allowed=2").await?;
    status_becomes(&pdbs, "quarter", "expected=4 healthy=4 desired=3 allowed=1").await?;
    status_becomes(&pdbs, "one", "expected=4 healthy=4 desired=3 allowed=1").await?;

    // Scaled to 3, 50% rounds up to 2 and maxUnavailable follows the new scale.
    let rs = h.api::<ReplicaSet>("default");
    rs.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await?;
    status_becomes(&pdbs, "half", "expected=3 healthy=3 desired=2 allowed=1").await?;
    status_becomes(&pdbs, "one", "expected=3 healthy=3 desired=2 allowed=1").await?;
    Ok(())
}

#[tokio::test]
async fn a_deployment_is_the_scale_of_the_pods_of_its_replica_sets() -> Result<()> {
    let mut h = Harness::start(&["replicaset", "deployment", "disruption"]).await?;
    h.kubelet(|_| true);
    let rs = replica_set("api", 5)?;
    let deployment: Deployment =
        serde_json::from_value(json!({"metadata": {"name": "api"}, "spec": rs.spec}))?;
    h.api::<Deployment>("default").create(&PostParams::default(), &deployment).await?;
    ready_pods(&h, "api", 5).await?;
    let pdbs = h.api::<PodDisruptionBudget>("default");
    pdbs.create(&PostParams::default(), &budget("api", "api", json!({"maxUnavailable": "30%"}))?).await?;
    // 30% of 5 rounds up to 2.
    status_becomes(&pdbs, "api", "expected=5 healthy=5 desired=3 allowed=2").await?;
    Ok(())
}

#[tokio::test]
async fn pods_that_are_not_ready_leave_no_disruption() -> Result<()> {
    let h = Harness::start(CONTROLLERS).await?;
    h.api::<ReplicaSet>("default").create(&PostParams::default(), &replica_set("web", 2)?).await?;
    let pdbs = h.api::<PodDisruptionBudget>("default");
    pdbs.create(&PostParams::default(), &budget("web", "web", json!({"maxUnavailable": 1}))?).await?;
    let status = status_becomes(&pdbs, "web", "expected=2 healthy=0 desired=1 allowed=0").await?;
    assert_eq!(condition(&status), Some(("False".into(), "InsufficientPods".into(), String::new())));
    Ok(())
}

#[tokio::test]
async fn a_pod_whose_controller_is_missing_makes_the_sync_fail_safe() -> Result<()> {
    let h = Harness::start(CONTROLLERS).await?;
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "lost", "labels": {"app": "lost"}, "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "gone", "uid": "00000000-0000-0000-0000-000000000001",
            "controller": true
        }]},
        "spec": {"containers": [{"name": "main", "image": "nginx:1"}]}
    }))?;
    h.pods().create(&PostParams::default(), &orphan).await?;
    let pdbs = h.api::<PodDisruptionBudget>("default");
    pdbs.create(&PostParams::default(), &budget("lost", "lost", json!({"minAvailable": "50%"}))?).await?;
    eventually("a SyncFailed condition", || async {
        let status = pdbs.get("lost").await?.status.unwrap_or_default();
        let want =
            Some(("False".into(), "SyncFailed".into(), "found no controllers for pod \"lost\"".into()));
        Ok(if condition(&status) == want && status.disruptions_allowed == 0 {
            Ok(())
        } else {
            Err(format!("{status:?}"))
        })
    })
    .await
}

#[tokio::test]
async fn disrupted_pods_stop_counting_until_deleted_or_timed_out() -> Result<()> {
    let start = Timestamp::now();
    let clock = Clock::manual(start);
    let mut h = Harness::start_with(CONTROLLERS, Config::default(), clock.clone()).await?;
    h.kubelet(|_| true);
    h.api::<ReplicaSet>("default").create(&PostParams::default(), &replica_set("web", 3)?).await?;
    let pods = ready_pods(&h, "web", 3).await?;
    let pdbs = h.api::<PodDisruptionBudget>("default");
    pdbs.create(&PostParams::default(), &budget("web", "web", json!({"minAvailable": 1}))?).await?;
    status_becomes(&pdbs, "web", "expected=3 healthy=3 desired=1 allowed=2").await?;

    // What the eviction subresource records for two pods it lets go.
    let (first, second) = (pods[0].name_any(), pods[1].name_any());
    let at = json!(start.to_string());
    let disrupted: serde_json::Map<String, Value> =
        [(first.clone(), at.clone()), (second.clone(), at)].into_iter().collect();
    let evicted = json!({"status": {"disruptionsAllowed": 0, "disruptedPods": disrupted}});
    pdbs.patch_status("web", &PatchParams::default(), &Patch::Merge(evicted)).await?;
    let status = status_becomes(&pdbs, "web", "expected=3 healthy=1 desired=1 allowed=0").await?;
    let listed: Vec<String> = status.disrupted_pods.unwrap_or_default().into_keys().collect();
    assert_eq!(listed.len(), 2, "both evicted pods are kept while they may still go: {listed:?}");

    // The first pod is deleted: its entry goes (its replacement is not ready yet, or is).
    h.pods().delete(&first, &DeleteParams::default()).await?;
    eventually("the deleted pod's entry dropped", || async {
        let status = pdbs.get("web").await?.status.unwrap_or_default();
        let listed: Vec<String> = status.disrupted_pods.clone().unwrap_or_default().into_keys().collect();
        Ok(if listed == [second.clone()] { Ok(()) } else { Err(format!("{listed:?}")) })
    })
    .await?;

    // The second was never deleted: after the timeout it counts again.
    clock.advance(SignedDuration::from_mins(3));
    let status = status_becomes(&pdbs, "web", "expected=3 healthy=3 desired=1 allowed=2").await?;
    assert_eq!(status.disrupted_pods, None);
    Ok(())
}
