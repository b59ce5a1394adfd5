//! The workload controllers (ReplicaSet, ReplicationController, Deployment) against the
//! in-process API server. There is no kubelet: a fake one in this file marks pods Running and
//! Ready through the status subresource, and watchers observe the pods while rollouts run.

mod common;

use std::sync::Arc;

use anyhow::{Context, Result};
use common::{eventually, is_ready, Harness};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use parking_lot::Mutex;
use serde_json::{json, Value};

impl Harness {
    fn replica_sets(&self) -> Api<ReplicaSet> {
        self.api("default")
    }

    fn deployments(&self) -> Api<Deployment> {
        self.api("default")
    }
}

fn image(p: &Pod) -> String {
    p.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default()
}

fn alive(pods: &[Arc<Pod>]) -> Vec<&Pod> {
    pods.iter().map(AsRef::as_ref).filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

fn template(app: &str, image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": image}]}
    })
}

fn replica_set(name: &str, app: &str, replicas: i32) -> Result<ReplicaSet> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}}, "template": template(app, "nginx:1")}
    }))?)
}

fn deployment(name: &str, replicas: i32, image: &str, strategy: Value) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": template(name, image)
        }
    }))?)
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

async fn pods_of(api: &Api<Pod>, owner_uid: &str) -> Result<Vec<Pod>> {
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.owner_references().iter().any(|r| r.uid == owner_uid && r.controller == Some(true)))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

async fn set_image(api: &Api<Deployment>, name: &str, image: &str) -> Result<()> {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

/// The deployment's ReplicaSets (controlled by it), oldest first.
async fn replica_sets_of(api: &Api<ReplicaSet>, d: &Deployment) -> Result<Vec<ReplicaSet>> {
    let uid = d.uid().context("deployment uid")?;
    let mut rss: Vec<ReplicaSet> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|rs| rs.owner_references().iter().any(|r| r.uid == uid && r.controller == Some(true)))
        .collect();
    rss.sort_by_key(|rs| rs.metadata.creation_timestamp.clone());
    Ok(rss)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn annotation<'a>(obj: &'a impl ResourceExt, key: &str) -> Option<&'a str> {
    obj.annotations().get(key).map(String::as_str)
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String)> {
    let conds = d.status.as_ref()?.conditions.as_ref()?;
    let c = conds.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default()))
}

/// Waits for an event with `reason` about the object `name`; its note.
async fn event(h: &Harness, name: &str, reason: &str) -> Result<String> {
    let api: Api<Event> = Api::namespaced(h.client(), "default");
    eventually(&format!("a {reason} event about {name}"), || async {
        let events = api.list(&ListParams::default()).await?.items;
        let found = events.iter().find(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        });
        Ok(match found {
            Some(e) => Ok(e.note.clone().unwrap_or_default()),
            None => Err(format!("{} events", events.len())),
        })
    })
    .await
}

/// Waits until the deployment has rolled out completely (what `kubectl rollout status` checks).
async fn rolled_out(api: &Api<Deployment>, name: &str, replicas: i32) -> Result<Deployment> {
    eventually(&format!("deployment {name} rolled out to {replicas}"), || async {
        let d = api.get(name).await?;
        let s = d.status.clone().unwrap_or_default();
        let done = d.metadata.generation <= s.observed_generation
            && s.updated_replicas == Some(replicas)
            && s.replicas == Some(replicas)
            && s.available_replicas == Some(replicas);
        Ok(if done { Ok(d) } else { Err(format!("{s:?}")) })
    })
    .await
}

#[tokio::test]
async fn a_replica_set_creates_and_deletes_pods_to_match_replicas_and_never_over_creates() -> Result<()> {
    let mut h = Harness::start(&["replicaset", "replicationcontroller", "deployment"]).await?;
    let most = Arc::new(Mutex::new(0usize));
    let seen = most.clone();
    let violations = h.observe_pods(move |pods| {
        let mut m = seen.lock();
        *m = (*m).max(alive(pods).len());
        None
    });
    let rs = h.replica_sets().create(&PostParams::default(), &replica_set("web", "web", 3)?).await?;
    let uid = rs.uid().context("uid")?;
    let pods = eventually("3 pods of web", || async {
        let pods = pods_of(&h.pods(), &uid).await?;
        Ok(if pods.len() == 3 { Ok(pods) } else { Err(format!("{} pods", pods.len())) })
    })
    .await?;
    for p in &pods {
        let name = p.name_any();
        let suffix = name.strip_prefix("web-").context("pod named after its replica set")?;
        assert_eq!(suffix.len(), 5, "five random characters in {name}");
        assert_eq!(p.labels().get("app").map(String::as_str), Some("web"));
        let r = &p.owner_references()[0];
        assert_eq!(
            (r.kind.as_str(), r.name.as_str(), r.controller, r.block_owner_deletion),
            ("ReplicaSet", "web", Some(true), Some(true))
        );
    }
    let status = eventually("status of web with 3 replicas", || async {
        let rs = h.replica_sets().get("web").await?;
        let s = rs.status.clone().unwrap_or_default();
        let ok = s.replicas == 3
            && s.fully_labeled_replicas == Some(3)
            && s.observed_generation == rs.metadata.generation;
        Ok(if ok { Ok(s) } else { Err(format!("{s:?}")) })
    })
    .await?;
    assert_eq!(status.ready_replicas.unwrap_or(0), 0, "no kubelet, nothing ready");
    event(&h, "web", "SuccessfulCreate").await?;

    let scale = |n: i32| json!({"spec": {"replicas": n}});
    h.replica_sets().patch("web", &PatchParams::default(), &Patch::Merge(scale(5))).await?;
    eventually("5 pods", || async {
        let n = pods_of(&h.pods(), &uid).await?.len();
        Ok(if n == 5 { Ok(()) } else { Err(format!("{n} pods")) })
    })
    .await?;
    h.replica_sets().patch("web", &PatchParams::default(), &Patch::Merge(scale(2))).await?;
    eventually("2 pods and status.replicas 2", || async {
        let n = pods_of(&h.pods(), &uid).await?.len();
        let r = h.replica_sets().get("web").await?.status.map(|s| s.replicas);
        Ok(if n == 2 && r == Some(2) { Ok(()) } else { Err(format!("{n} pods, status {r:?}")) })
    })
    .await?;
    // Deleting a pod brings a replacement, and never more than asked.
    let victim = pods_of(&h.pods(), &uid).await?.remove(0).name_any();
    h.pods().delete(&victim, &Default::default()).await?;
    eventually("a replacement pod", || async {
        let pods = pods_of(&h.pods(), &uid).await?;
        let ok = pods.len() == 2 && pods.iter().all(|p| p.name_any() != victim);
        Ok(if ok { Ok(()) } else { Err(format!("{} pods", pods.len())) })
    })
    .await?;
    violations.assert_none()?;
    let most = *most.lock();
    assert!(most <= 5, "at most 5 pods at any time, saw {most}");
    Ok(())
}

#[tokio::test]
async fn a_replica_set_adopts_matching_orphans_and_releases_pods_that_stop_matching() -> Result<()> {
    let h = Harness::start(&["replicaset", "replicationcontroller", "deployment"]).await?;
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "main", "image": "nginx:1"}]}
    }))?;
    h.pods().create(&PostParams::default(), &orphan).await?;
    let rs = h.replica_sets().create(&PostParams::default(), &replica_set("web", "web", 2)?).await?;
    let uid = rs.uid().context("uid")?;
    eventually("the orphan adopted and one more pod", || async {
        let pods = pods_of(&h.pods(), &uid).await?;
        let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
        let ok = pods.len() == 2 && names.contains(&"orphan".to_string());
        Ok(if ok { Ok(()) } else { Err(format!("{names:?}")) })
    })
    .await?;
    let all = h.pods().list(&ListParams::default()).await?.items.len();
    assert_eq!(all, 2, "adopting instead of creating");

    let relabel = json!({"metadata": {"labels": {"app": "other"}}});
    h.pods().patch("orphan", &PatchParams::default(), &Patch::Merge(relabel)).await?;
    eventually("the relabelled pod released and replaced", || async {
        let released = h.pods().get("orphan").await?;
        let owned = pods_of(&h.pods(), &uid).await?;
        let ok = released.owner_references().is_empty() && owned.len() == 2;
        Ok(if ok {
            Ok(())
        } else {
            Err(format!("owners {:?}, {} owned", released.owner_references(), owned.len()))
        })
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn replica_set_status_counts_ready_and_available_pods_after_min_ready_seconds() -> Result<()> {
    let mut h = Harness::start(&["replicaset", "replicationcontroller", "deployment"]).await?;
    h.kubelet(|_| true);
    let mut rs = replica_set("web", "web", 2)?;
    if let Some(s) = rs.spec.as_mut() {
        s.min_ready_seconds = Some(2);
    }
    h.replica_sets().create(&PostParams::default(), &rs).await?;
    let ready_first = eventually("2 ready replicas", || async {
        let s = h.replica_sets().get("web").await?.status.unwrap_or_default();
        Ok(if s.ready_replicas == Some(2) {
            Ok(s.available_replicas.unwrap_or(0))
        } else {
            Err(format!("{s:?}"))
        })
    })
    .await?;
    assert!(ready_first < 2, "pods are not available before minReadySeconds");
    eventually("2 available replicas", || async {
        let s = h.replica_sets().get("web").await?.status.unwrap_or_default();
        Ok(if s.available_replicas == Some(2) { Ok(()) } else { Err(format!("{s:?}")) })
    })
    .await
}

#[tokio::test]
async fn a_replication_controller_keeps_its_replicas() -> Result<()> {
    let h = Harness::start(&["replicaset", "replicationcontroller", "deployment"]).await?;
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "legacy"},
        "spec": {"replicas": 2, "selector": {"app": "legacy"}, "template": template("legacy", "nginx:1")}
    }))?;
    let api: Api<ReplicationController> = Api::namespaced(h.client(), "default");
    let rc = api.create(&PostParams::default(), &rc).await?;
    let uid = rc.uid().context("uid")?;
    eventually("2 pods of the replication controller and its status", || async {
        let pods = pods_of(&h.pods(), &uid).await?;
        let status = api.get("legacy").await?.status.map(|s| s.replicas);
        let kinds: Vec<String> = pods.iter().map(|p| p.owner_references()[0].kind.clone()).collect();
        let ok = pods.len() == 2 && kinds.iter().all(|k| k == "ReplicationController") && status == Some(2);
        Ok(if ok { Ok(()) } else { Err(format!("{kinds:?}, status {status:?}")) })
    })
    .await
}

#[tokio::test]
async fn pod_create_failures_show_as_replica_failure_until_they_stop() -> Result<()> {
    let h = Harness::start(&["replicaset", "replicationcontroller", "deployment"]).await?;
    // A replication controller whose pods the API server rejects (no containers).
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "broken"},
        "spec": {"replicas": 1, "selector": {"app": "broken"},
                 "template": {"metadata": {"labels": {"app": "broken"}}, "spec": {"containers": []}}}
    }))?;
    let api: Api<ReplicationController> = Api::namespaced(h.client(), "default");
    api.create(&PostParams::default(), &rc).await?;
    let failure = |rc: &ReplicationController| {
        let conds = rc.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        conds.into_iter().find(|c| c.type_ == "ReplicaFailure")
    };
    let cond = eventually("a ReplicaFailure condition", || async {
        let rc = api.get("broken").await?;
        Ok(failure(&rc).ok_or_else(|| format!("{:?}", rc.status)))
    })
    .await?;
    assert_eq!((cond.status.as_str(), cond.reason.as_deref()), ("True", Some("FailedCreate")));
    assert!(cond.message.is_some_and(|m| m.contains("containers")), "the API server's message");

    let fix = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:1"}]}}}});
    api.patch("broken", &PatchParams::default(), &Patch::Merge(fix)).await?;
    eventually("the condition gone and one replica", || async {
        let rc = api.get("broken").await?;
        let ok = failure(&rc).is_none() && rc.status.as_ref().map(|s| s.replicas) == Some(1);
        Ok(if ok { Ok(()) } else { Err(format!("{:?}", rc.status)) })
    })
    .await
}

#[tokio::test]
async fn a_deployment_creates_a_replica_set_by_pod_template_hash_and_reports_its_status() -> Result<()> {
    let mut h = Harness::start(&["replicaset", "replicationcontroller", "deployment"]).await?;
    h.kubelet(|_| true);
    let mut d = deployment("web", 3, "nginx:1", rolling(json!(1), json!(0)))?;
    d.metadata.annotations = Some([("kubernetes.io/change-cause".to_string(), "first".to_string())].into());
    h.deployments().create(&PostParams::default(), &d).await?;
    let d = rolled_out(&h.deployments(), "web", 3).await?;
    let rss = replica_sets_of(&h.replica_sets(), &d).await?;
    assert_eq!(rss.len(), 1);
    // `kubectl rollout history` shows the change cause copied to the replica set.
    assert_eq!(annotation(&rss[0], "kubernetes.io/change-cause"), Some("first"));
    let rs = &rss[0];
    let hash = rs.labels().get("pod-template-hash").context("pod-template-hash label")?.clone();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    let spec = rs.spec.as_ref().context("spec")?;
    assert_eq!(spec.selector.match_labels.as_ref().and_then(|l| l.get("pod-template-hash")), Some(&hash));
    let tlabels = spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone());
    assert_eq!(tlabels.as_ref().and_then(|l| l.get("pod-template-hash")), Some(&hash));
    assert_eq!(annotation(rs, "deployment.kubernetes.io/revision"), Some("1"));
    assert_eq!(annotation(rs, "deployment.kubernetes.io/desired-replicas"), Some("3"));
    assert_eq!(annotation(rs, "deployment.kubernetes.io/max-replicas"), Some("4"));
    assert_eq!(annotation(&d, "deployment.kubernetes.io/revision"), Some("1"));
    let s = d.status.clone().unwrap_or_default();
    assert_eq!(
        (s.ready_replicas, s.unavailable_replicas, s.observed_generation),
        (Some(3), None, d.metadata.generation)
    );
    assert_eq!(condition(&d, "Available"), Some(("True".into(), "MinimumReplicasAvailable".into())));
    assert_eq!(condition(&d, "Progressing"), Some(("True".into(), "NewReplicaSetAvailable".into())));
    for p in h.pods().list(&ListParams::default()).await?.items {
        assert_eq!(p.labels().get("pod-template-hash"), Some(&hash));
    }
    let note = event(&h, "web", "ScalingReplicaSet").await?;
    assert_eq!(note, format!("Scaled up replica set web-{hash} from 0 to 3"));
    Ok(())
}

#[tokio::test]
async fn a_rolling_update_never_exceeds_max_surge_or_max_unavailable() -> Result<()> {
    let mut h = Harness::start(&["replicaset", "replicationcontroller", "deployment"]).await?;
    h.kubelet(|_| true);
    // 4 replicas, maxSurge 25% (1, rounded up), maxUnavailable 1: between 3 ready and 5 pods.
    let d = deployment("web", 4, "nginx:1", rolling(json!("25%"), json!(1)))?;
    h.deployments().create(&PostParams::default(), &d).await?;
    rolled_out(&h.deployments(), "web", 4).await?;
    let violations = h.observe_pods(|pods| {
        let alive = alive(pods);
        let ready = alive.iter().filter(|p| is_ready(p)).count();
        if alive.len() > 5 {
            return Some(format!("{} pods, more than 4 + maxSurge 1", alive.len()));
        }
        (ready < 3).then(|| format!("{ready} ready pods, fewer than 4 - maxUnavailable 1"))
    });
    set_image(&h.deployments(), "web", "nginx:2").await?;
    let d = eventually("the rollout to nginx:2", || async {
        let d = h.deployments().get("web").await?;
        let s = d.status.clone().unwrap_or_default();
        let pods = h.pods().list(&ListParams::default()).await?.items;
        let new = pods.iter().filter(|p| image(p) == "nginx:2" && is_ready(p)).count();
        let ok =
            new == 4 && pods.len() == 4 && s.updated_replicas == Some(4) && s.available_replicas == Some(4);
        Ok(if ok { Ok(d) } else { Err(format!("{new} new ready of {} pods, {s:?}", pods.len())) })
    })
    .await?;
    violations.assert_none()?;
    let rss = replica_sets_of(&h.replica_sets(), &d).await?;
    assert_eq!(rss.iter().map(spec_replicas).collect::<Vec<_>>(), [0, 4]);
    assert_eq!(annotation(&rss[1], "deployment.kubernetes.io/revision"), Some("2"));
    assert_eq!(annotation(&d, "deployment.kubernetes.io/revision"), Some("2"));
    Ok(())
}

#[tokio::test]
async fn recreate_deletes_every_old_pod_before_creating_new_ones() -> Result<()> {
    let mut h = Harness::start(&["replicaset", "replicationcontroller", "deployment"]).await?;
    h.kubelet(|_| true);
    let d = deployment("web", 3, "nginx:1", json!({"type": "Recreate"}))?;
    h.deployments().create(&PostParams::default(), &d).await?;
    rolled_out(&h.deployments(), "web", 3).await?;
    let violations = h.observe_pods(|pods| {
        let alive = alive(pods);
        let old = alive.iter().filter(|p| image(p) == "nginx:1").count();
        let new = alive.iter().filter(|p| image(p) == "nginx:2").count();
        (old > 0 && new > 0).then(|| format!("{old} old and {new} new pods at once"))
    });
    set_image(&h.deployments(), "web", "nginx:2").await?;
    eventually("3 new pods", || async {
        let pods = h.pods().list(&ListParams::default()).await?.items;
        let new = pods.iter().filter(|p| image(p) == "nginx:2").count();
        Ok(if new == 3 && pods.len() == 3 { Ok(()) } else { Err(format!("{new} new of {}", pods.len())) })
    })
    .await?;
    rolled_out(&h.deployments(), "web", 3).await?;
    violations.assert_none()
}

#[tokio::test]
async fn rolling_back_reuses_the_old_replica_set_with_a_new_revision() -> Result<()> {
    let mut h = Harness::start(&["replicaset", "replicationcontroller", "deployment"]).await?;
    h.kubelet(|_| true);
    let d = deployment("web", 2, "nginx:1", rolling(json!(1), json!(0)))?;
    h.deployments().create(&PostParams::default(), &d).await?;
    rolled_out(&h.deployments(), "web", 2).await?;
    set_image(&h.deployments(), "web", "nginx:2").await?;
    let d = eventually("revision 2", || async {
        let d = h.deployments().get("web").await?;
        let rev = annotation(&d, "deployment.kubernetes.io/revision").map(str::to_string);
        Ok(if rev.as_deref() == Some("2") { Ok(d) } else { Err(format!("revision {rev:?}")) })
    })
    .await?;
    rolled_out(&h.deployments(), "web", 2).await?;
    // What `kubectl rollout undo` does: the template of the previous revision, without its hash
    // label, patched into the deployment.
    let rss = replica_sets_of(&h.replica_sets(), &d).await?;
    let first = rss.iter().find(|rs| annotation(*rs, "deployment.kubernetes.io/revision") == Some("1"));
    let first = first.context("revision 1 kept")?.clone();
    let mut template = serde_json::to_value(first.spec.as_ref().and_then(|s| s.template.clone()))?;
    if let Some(labels) = template.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove("pod-template-hash");
    }
    let undo = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    let patch: json_patch::Patch = serde_json::from_value(undo)?;
    h.deployments().patch("web", &PatchParams::default(), &Patch::<()>::Json(patch)).await?;
    let d = eventually("revision 3 on the first replica set", || async {
        let d = h.deployments().get("web").await?;
        let rs = h.replica_sets().get(&first.name_any()).await?;
        let revs = (
            annotation(&d, "deployment.kubernetes.io/revision").map(str::to_string),
            annotation(&rs, "deployment.kubernetes.io/revision").map(str::to_string),
        );
        let ok = revs == (Some("3".into()), Some("3".into()));
        Ok(if ok { Ok(d) } else { Err(format!("deployment, replica set revisions {revs:?}")) })
    })
    .await?;
    let rs = h.replica_sets().get(&first.name_any()).await?;
    assert_eq!(annotation(&rs, "deployment.kubernetes.io/revision-history"), Some("1"));
    assert_eq!(replica_sets_of(&h.replica_sets(), &d).await?.len(), 2, "no third replica set");
    rolled_out(&h.deployments(), "web", 2).await?;
    let pods = h.pods().list(&ListParams::default()).await?.items;
    assert!(pods.iter().all(|p| image(p) == "nginx:1"), "back on nginx:1");
    Ok(())
}

#[tokio::test]
async fn a_restart_rolls_out_new_pods_for_the_same_image() -> Result<()> {
    let mut h = Harness::start(&["replicaset", "replicationcontroller", "deployment"]).await?;
    h.kubelet(|_| true);
    let d = deployment("web", 2, "nginx:1", rolling(json!("25%"), json!("25%")))?;
    h.deployments().create(&PostParams::default(), &d).await?;
    rolled_out(&h.deployments(), "web", 2).await?;
    let before: Vec<String> =
        h.pods().list(&ListParams::default()).await?.items.iter().map(|p| p.name_any()).collect();
    // What `kubectl rollout restart` patches.
    let restart = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}});
    h.deployments().patch("web", &PatchParams::default(), &Patch::Merge(restart)).await?;
    eventually("two new pods", || async {
        let pods = h.pods().list(&ListParams::default()).await?.items;
        let fresh = pods.iter().filter(|p| !before.contains(&p.name_any()) && is_ready(p)).count();
        Ok(if fresh == 2 && pods.len() == 2 { Ok(()) } else { Err(format!("{fresh} new of {}", pods.len())) })
    })
    .await?;
    let d = rolled_out(&h.deployments(), "web", 2).await?;
    assert_eq!(annotation(&d, "deployment.kubernetes.io/revision"), Some("2"));
    Ok(())
}

#[tokio::test]
async fn old_replica_sets_beyond_the_revision_history_limit_are_deleted() -> Result<()> {
    let mut h = Harness::start(&["replicaset", "replicationcontroller", "deployment"]).await?;
    h.kubelet(|_| true);
    let mut d = deployment("web", 1, "nginx:1", rolling(json!(1), json!(0)))?;
    if let Some(s) = d.spec.as_mut() {
        s.revision_history_limit = Some(1);
    }
    h.deployments().create(&PostParams::default(), &d).await?;
    for (rev, image) in [(2, "nginx:2"), (3, "nginx:3")] {
        rolled_out(&h.deployments(), "web", 1).await?;
        set_image(&h.deployments(), "web", image).await?;
        eventually(&format!("revision {rev}"), || async {
            let d = h.deployments().get("web").await?;
            let got = annotation(&d, "deployment.kubernetes.io/revision").map(str::to_string);
            Ok(if got == Some(rev.to_string()) { Ok(()) } else { Err(format!("{got:?}")) })
        })
        .await?;
    }
    let d = rolled_out(&h.deployments(), "web", 1).await?;
    eventually("one old replica set kept", || async {
        let rss = replica_sets_of(&h.replica_sets(), &d).await?;
        let revs: Vec<String> = rss
            .iter()
            .filter_map(|rs| annotation(rs, "deployment.kubernetes.io/revision").map(str::to_string))
            .collect();
        let mut sorted = revs.clone();
        sorted.sort();
        Ok(if sorted == ["2", "3"] { Ok(()) } else { Err(format!("revisions {revs:?}")) })
    })
    .await
}

#[tokio::test]
async fn a_paused_deployment_scales_but_does_not_roll_out_until_resumed() -> Result<()> {
    let mut h = Harness::start(&["replicaset", "replicationcontroller", "deployment"]).await?;
    h.kubelet(|_| true);
    let d = deployment("web", 2, "nginx:1", rolling(json!(1), json!(0)))?;
    h.deployments().create(&PostParams::default(), &d).await?;
    let d = rolled_out(&h.deployments(), "web", 2).await?;
    let pause = json!({"spec": {"paused": true}});
    h.deployments().patch("web", &PatchParams::default(), &Patch::Merge(pause)).await?;
    set_image(&h.deployments(), "web", "nginx:2").await?;
    let scale = json!({"spec": {"replicas": 3}});
    h.deployments().patch("web", &PatchParams::default(), &Patch::Merge(scale)).await?;
    // The scale shows the paused deployment was synced; the template change must not be.
    eventually("the paused deployment scaled to 3 on nginx:1", || async {
        let d = h.deployments().get("web").await?;
        let rss = replica_sets_of(&h.replica_sets(), &d).await?;
        let sizes: Vec<i32> = rss.iter().map(spec_replicas).collect();
        let cond = condition(&d, "Progressing");
        let ok = sizes == [3] && cond == Some(("Unknown".into(), "DeploymentPaused".into()));
        Ok(if ok { Ok(()) } else { Err(format!("sizes {sizes:?}, progressing {cond:?}")) })
    })
    .await?;
    let pods = h.pods().list(&ListParams::default()).await?.items;
    assert!(pods.iter().all(|p| image(p) == "nginx:1"), "no new pods while paused");

    let resume = json!({"spec": {"paused": false}});
    h.deployments().patch("web", &PatchParams::default(), &Patch::Merge(resume)).await?;
    let d2 = rolled_out(&h.deployments(), "web", 3).await?;
    assert_eq!(replica_sets_of(&h.replica_sets(), &d).await?.len(), 2);
    assert_eq!(condition(&d2, "Progressing"), Some(("True".into(), "NewReplicaSetAvailable".into())));
    Ok(())
}

#[tokio::test]
async fn a_stuck_rollout_exceeds_its_progress_deadline_and_is_unavailable() -> Result<()> {
    let h = Harness::start(&["replicaset", "replicationcontroller", "deployment"]).await?;
    let mut d = deployment("web", 2, "nginx:1", rolling(json!(1), json!(0)))?;
    if let Some(s) = d.spec.as_mut() {
        s.progress_deadline_seconds = Some(1);
    }
    h.deployments().create(&PostParams::default(), &d).await?;
    let d = eventually("Progressing False ProgressDeadlineExceeded", || async {
        let d = h.deployments().get("web").await?;
        let cond = condition(&d, "Progressing");
        let ok = cond == Some(("False".into(), "ProgressDeadlineExceeded".into()));
        Ok(if ok { Ok(d) } else { Err(format!("{cond:?}")) })
    })
    .await?;
    assert_eq!(condition(&d, "Available"), Some(("False".into(), "MinimumReplicasUnavailable".into())));
    let s = d.status.unwrap_or_default();
    assert_eq!(
        (s.replicas, s.updated_replicas, s.available_replicas, s.unavailable_replicas),
        (Some(2), Some(2), None, Some(2))
    );
    Ok(())
}

#[tokio::test]
async fn scaling_during_a_rollout_grows_replica_sets_in_proportion() -> Result<()> {
    let mut h = Harness::start(&["replicaset", "replicationcontroller", "deployment"]).await?;
    let kubelet = h.kubelet(|p| image(p) == "nginx:1");
    let d = deployment("web", 10, "nginx:1", rolling(json!(3), json!(2)))?;
    h.deployments().create(&PostParams::default(), &d).await?;
    let d = rolled_out(&h.deployments(), "web", 10).await?;
    h.stop(kubelet);
    // nginx:2 pods never become ready: the rollout stops at 8 old and 5 new (13 = 10 + 3).
    set_image(&h.deployments(), "web", "nginx:2").await?;
    let sizes = |h: &Harness, want: [i32; 2]| {
        let (api, d) = (h.replica_sets(), d.clone());
        async move {
            eventually(&format!("replica sets sized {want:?}"), || async {
                let got: Vec<i32> = replica_sets_of(&api, &d).await?.iter().map(spec_replicas).collect();
                Ok(if got == want { Ok(()) } else { Err(format!("{got:?}")) })
            })
            .await
        }
    };
    sizes(&h, [8, 5]).await?;
    let scale = json!({"spec": {"replicas": 20}});
    h.deployments().patch("web", &PatchParams::default(), &Patch::Merge(scale)).await?;
    // 10 more replicas (23 = 20 + 3 surge), shared 8:5 of 13 -> 14 and 9 (rounded).
    sizes(&h, [14, 9]).await?;
    let rss = replica_sets_of(&h.replica_sets(), &d).await?;
    for rs in &rss {
        assert_eq!(annotation(rs, "deployment.kubernetes.io/desired-replicas"), Some("20"));
        assert_eq!(annotation(rs, "deployment.kubernetes.io/max-replicas"), Some("23"));
    }
    // And back to 10: 10 fewer, taken 14:9 of 23 -> 8 and 5.
    let scale = json!({"spec": {"replicas": 10}});
    h.deployments().patch("web", &PatchParams::default(), &Patch::Merge(scale)).await?;
    sizes(&h, [8, 5]).await?;
    Ok(())
}
