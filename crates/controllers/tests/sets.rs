//! The DaemonSet and StatefulSet controllers against the in-process API server. There are no
//! nodes and no kubelet: tests create Node objects, and a fake kubelet in this file marks pods
//! Running and Ready through the status subresource.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::Result;
use common::{eventually, is_ready, Harness};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

impl Harness {
    async fn node(&self, name: &str, labels: Value, taints: Value) -> Result<()> {
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
        }))?;
        Api::<Node>::all(self.client()).create(&PostParams::default(), &node).await?;
        Ok(())
    }
}

fn image(p: &Pod) -> String {
    p.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default()
}

fn label<'a>(p: &'a Pod, key: &str) -> &'a str {
    p.labels().get(key).map_or("", String::as_str)
}

/// The node a daemon pod is pinned to by its required node affinity.
fn pinned_node(p: &Pod) -> String {
    let terms = p
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
        .map(|s| s.node_selector_terms.clone())
        .unwrap_or_default();
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
        .unwrap_or_default()
}

async fn live_pods(api: &Api<Pod>, app: &str) -> Result<Vec<Pod>> {
    let list = api.list(&ListParams::default().labels(&format!("app={app}"))).await?;
    Ok(list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect())
}

/// Waits until the daemon pods of `app` are pinned to exactly `nodes`, one each.
async fn wait_daemon_nodes(api: &Api<Pod>, app: &str, nodes: &[&str]) -> Result<Vec<Pod>> {
    let want: Vec<String> = nodes.iter().map(|n| (*n).to_string()).collect();
    eventually(&format!("one {app} pod on each of {want:?}"), || async {
        let pods = live_pods(api, app).await?;
        let mut got: Vec<String> = pods.iter().map(pinned_node).collect();
        got.sort();
        Ok(if got == want { Ok(pods) } else { Err(format!("{got:?}")) })
    })
    .await
}

fn daemon_set(name: &str, image: &str, node_selector: Value, strategy: Value) -> Result<DaemonSet> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"nodeSelector": node_selector, "containers": [{"name": "main", "image": image}]}
            }
        }
    }))?)
}

#[tokio::test]
async fn a_daemon_set_runs_one_pod_on_each_eligible_node_and_follows_node_changes() -> Result<()> {
    let h = Harness::start(&["daemonset", "statefulset"]).await?;
    h.node("ssd-1", json!({"disk": "ssd"}), json!([])).await?;
    h.node(
        "ssd-tainted",
        json!({"disk": "ssd"}),
        json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
    )
    .await?;
    h.node(
        "ssd-cordoned",
        json!({"disk": "ssd"}),
        json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
    )
    .await?;
    h.node("hdd-1", json!({"disk": "hdd"}), json!([])).await?;
    let sets = Api::<DaemonSet>::namespaced(h.client(), "default");
    sets.create(&PostParams::default(), &daemon_set("agent", "agent:1", json!({"disk": "ssd"}), json!({}))?)
        .await?;

    // Not on the tainted node nor the hdd one; the cordoned one is tolerated by default.
    let pods = wait_daemon_nodes(&h.pods(), "agent", &["ssd-1", "ssd-cordoned"]).await?;
    for pod in &pods {
        let keys: BTreeSet<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.tolerations.iter().flatten())
            .filter_map(|t| t.key.clone())
            .collect();
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
            "node.kubernetes.io/unschedulable",
        ] {
            assert!(keys.contains(key), "{} lacks the toleration {key}: {keys:?}", pod.name_any());
        }
        assert!(pod.name_any().starts_with("agent-"), "{}", pod.name_any());
        assert!(
            !label(pod, "controller-revision-hash").is_empty(),
            "{} has no revision label",
            pod.name_any()
        );
    }
    let revisions =
        Api::<ControllerRevision>::namespaced(h.client(), "default").list(&ListParams::default()).await?;
    let hash = label(&pods[0], "controller-revision-hash").to_string();
    assert!(
        revisions
            .items
            .iter()
            .any(|r| r.labels().get("controller-revision-hash") == Some(&hash) && r.revision == 1),
        "no controller revision 1 with hash {hash}: {:?}",
        revisions.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>()
    );

    // A new eligible node gets a pod; a node that stops matching and a deleted node lose theirs.
    h.node("ssd-2", json!({"disk": "ssd"}), json!([])).await?;
    wait_daemon_nodes(&h.pods(), "agent", &["ssd-1", "ssd-2", "ssd-cordoned"]).await?;
    let nodes = Api::<Node>::all(h.client());
    nodes
        .patch(
            "ssd-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"disk": "hdd"}}})),
        )
        .await?;
    nodes.delete("ssd-cordoned", &DeleteParams::default()).await?;
    wait_daemon_nodes(&h.pods(), "agent", &["ssd-2"]).await?;

    eventually("status desiredNumberScheduled 1, currentNumberScheduled 1", || async {
        let s = sets.get("agent").await?.status.unwrap_or_default();
        let seen = (s.desired_number_scheduled, s.current_number_scheduled, s.number_misscheduled);
        Ok(if seen == (1, 1, 0) { Ok(()) } else { Err(format!("{seen:?}")) })
    })
    .await?;

    // A NoSchedule taint added later keeps the running pod (misscheduled); NoExecute evicts it.
    let taint =
        |effect: &str| json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": effect}]}});
    nodes.patch("ssd-2", &PatchParams::default(), &Patch::Merge(taint("NoSchedule"))).await?;
    eventually("status desiredNumberScheduled 0, numberMisscheduled 1", || async {
        let s = sets.get("agent").await?.status.unwrap_or_default();
        let seen = (s.desired_number_scheduled, s.current_number_scheduled, s.number_misscheduled);
        Ok(if seen == (0, 0, 1) { Ok(()) } else { Err(format!("{seen:?}")) })
    })
    .await?;
    wait_daemon_nodes(&h.pods(), "agent", &["ssd-2"]).await?;
    nodes.patch("ssd-2", &PatchParams::default(), &Patch::Merge(taint("NoExecute"))).await?;
    wait_daemon_nodes(&h.pods(), "agent", &[]).await?;
    Ok(())
}

#[tokio::test]
async fn a_rolling_update_replaces_daemon_pods_within_max_unavailable() -> Result<()> {
    let mut h = Harness::start(&["daemonset", "statefulset"]).await?;
    let nodes = ["n1", "n2", "n3", "n4"];
    for n in nodes {
        h.node(n, json!({}), json!([])).await?;
    }
    h.kubelet(|_| true);
    let sets = Api::<DaemonSet>::namespaced(h.client(), "default");
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}});
    sets.create(&PostParams::default(), &daemon_set("agent", "agent:1", json!({}), strategy)?).await?;
    wait_daemon_nodes(&h.pods(), "agent", &nodes).await?;
    eventually("4 available daemon pods", || async {
        let s = sets.get("agent").await?.status.unwrap_or_default();
        Ok(if s.number_available == Some(4) { Ok(()) } else { Err(format!("{s:?}")) })
    })
    .await?;

    // From now on at most one node may lack a ready pod.
    let violations = h.observe_pods(|pods| {
        let covered: BTreeSet<String> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .map(|p| pinned_node(p))
            .collect();
        (covered.len() < 3).then(|| format!("only {covered:?} have a ready pod"))
    });
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "agent:2"}]}}}});
    sets.patch("agent", &PatchParams::default(), &Patch::Strategic(patch)).await?;
    eventually("4 ready agent:2 pods, one per node", || async {
        let pods = live_pods(&h.pods(), "agent").await?;
        let seen: BTreeMap<String, (String, bool)> =
            pods.iter().map(|p| (pinned_node(p), (image(p), is_ready(p)))).collect();
        let done = pods.len() == 4 && seen.values().all(|(i, r)| i == "agent:2" && *r);
        Ok(if done { Ok(()) } else { Err(format!("{seen:?}")) })
    })
    .await?;
    eventually("status updatedNumberScheduled 4 and numberAvailable 4", || async {
        let s = sets.get("agent").await?.status.unwrap_or_default();
        let ok = s.updated_number_scheduled == Some(4) && s.number_available == Some(4);
        Ok(if ok { Ok(()) } else { Err(format!("{s:?}")) })
    })
    .await?;
    let revisions =
        Api::<ControllerRevision>::namespaced(h.client(), "default").list(&ListParams::default()).await?;
    let mut numbers: Vec<i64> = revisions.items.iter().map(|r| r.revision).collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2], "one controller revision per template");
    violations.assert_none()
}

fn stateful_set(name: &str, replicas: i32, image: &str, extra: Value) -> Result<StatefulSet> {
    let mut spec = json!({
        "replicas": replicas,
        "serviceName": name,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "main", "image": image}]}
        },
        "volumeClaimTemplates": [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }]
    });
    if let (Some(s), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        s.extend(extra);
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name}, "spec": spec
    }))?)
}

/// The live pods of `app` by name.
async fn pods_by_name(api: &Api<Pod>, app: &str) -> Result<BTreeMap<String, Pod>> {
    Ok(live_pods(api, app).await?.into_iter().map(|p| (p.name_any(), p)).collect())
}

/// Waits until the live pods of `app` are exactly `names`, all ready, and `check` holds.
async fn wait_set_pods(
    api: &Api<Pod>,
    app: &str,
    names: &[&str],
    check: impl Fn(&Pod) -> bool,
) -> Result<BTreeMap<String, Pod>> {
    eventually(&format!("ready pods {names:?}"), || async {
        let pods = pods_by_name(api, app).await?;
        let got: Vec<&str> = pods.keys().map(String::as_str).collect();
        let done = got == names && pods.values().all(|p| is_ready(p) && check(p));
        let seen: Vec<(String, bool, String)> =
            pods.values().map(|p| (p.name_any(), is_ready(p), image(p))).collect();
        Ok(if done { Ok(pods) } else { Err(format!("{seen:?}")) })
    })
    .await
}

/// OrderedReady: a pod `web-n` may exist only while `web-(n-1)` exists and is ready, which
/// covers creation in order and deletion in reverse order.
fn ordered_ready(set: &'static str) -> impl Fn(&[Arc<Pod>]) -> Option<String> + Send + 'static {
    move |pods| {
        let live: BTreeMap<i32, &Pod> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| Some((p.name_any().strip_prefix(&format!("{set}-"))?.parse().ok()?, p.as_ref())))
            .collect();
        live.keys().find(|&&n| n > 0 && !live.get(&(n - 1)).is_some_and(|p| is_ready(p))).map(|n| {
            let seen: Vec<(i32, bool)> = live.iter().map(|(o, p)| (*o, is_ready(p))).collect();
            format!("{set}-{n} exists while {set}-{} is missing or not ready: {seen:?}", n - 1)
        })
    }
}

#[tokio::test]
async fn a_stateful_set_creates_pods_one_at_a_time_in_order_with_stable_identities() -> Result<()> {
    let mut h = Harness::start(&["daemonset", "statefulset"]).await?;
    let violations = h.observe_pods(ordered_ready("web"));
    let sets = Api::<StatefulSet>::namespaced(h.client(), "default");
    sets.create(&PostParams::default(), &stateful_set("web", 3, "nginx:1", json!({}))?).await?;

    // Without a kubelet, web-0 stays not ready and web-1 must not appear.
    eventually("web-0 created", || async {
        let pods = pods_by_name(&h.pods(), "web").await?;
        Ok(if pods.contains_key("web-0") { Ok(()) } else { Err(format!("{:?}", pods.keys())) })
    })
    .await?;
    h.kubelet(|_| true);
    let pods = wait_set_pods(&h.pods(), "web", &["web-0", "web-1", "web-2"], |_| true).await?;
    for (i, name) in ["web-0", "web-1", "web-2"].iter().enumerate() {
        let pod = &pods[*name];
        assert_eq!(label(pod, "statefulset.kubernetes.io/pod-name"), *name);
        assert_eq!(label(pod, "apps.kubernetes.io/pod-index"), i.to_string());
        assert!(label(pod, "controller-revision-hash").starts_with("web-"), "{:?}", pod.labels());
        let spec = pod.spec.clone().unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some(*name));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        let claim = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "data")
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone());
        assert_eq!(claim, Some(format!("data-{name}")));
    }
    let claims =
        Api::<PersistentVolumeClaim>::namespaced(h.client(), "default").list(&ListParams::default()).await?;
    let names: Vec<String> = claims.items.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["data-web-0", "data-web-1", "data-web-2"]);
    assert!(claims.items.iter().all(|c| c.labels().get("app").map(String::as_str) == Some("web")));

    eventually("status with 3 ready, current and updated replicas", || async {
        let s = sets.get("web").await?.status.unwrap_or_default();
        let ok = (s.replicas, s.ready_replicas, s.current_replicas, s.updated_replicas)
            == (3, Some(3), Some(3), Some(3))
            && s.current_revision.is_some()
            && s.current_revision == s.update_revision
            && s.observed_generation == Some(1);
        Ok(if ok { Ok(()) } else { Err(format!("{s:?}")) })
    })
    .await?;
    violations.assert_none()
}

#[tokio::test]
async fn scaling_a_stateful_set_down_deletes_the_highest_ordinals_first_and_keeps_claims() -> Result<()> {
    let mut h = Harness::start(&["daemonset", "statefulset"]).await?;
    h.kubelet(|_| true);
    let violations = h.observe_pods(ordered_ready("db"));
    let sets = Api::<StatefulSet>::namespaced(h.client(), "default");
    sets.create(&PostParams::default(), &stateful_set("db", 3, "pg:1", json!({}))?).await?;
    wait_set_pods(&h.pods(), "db", &["db-0", "db-1", "db-2"], |_| true).await?;

    sets.patch("db", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await?;
    wait_set_pods(&h.pods(), "db", &["db-0"], |_| true).await?;
    let claims =
        Api::<PersistentVolumeClaim>::namespaced(h.client(), "default").list(&ListParams::default()).await?;
    let names: Vec<String> = claims.items.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["data-db-0", "data-db-1", "data-db-2"], "claims are retained by default");

    // Scaling up again reuses the names.
    sets.patch("db", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await?;
    wait_set_pods(&h.pods(), "db", &["db-0", "db-1"], |_| true).await?;
    violations.assert_none()
}

#[tokio::test]
async fn claims_follow_the_retention_policy_when_scaled_and_when_deleted() -> Result<()> {
    let mut h = Harness::start(&["daemonset", "statefulset"]).await?;
    h.kubelet(|_| true);
    let sets = Api::<StatefulSet>::namespaced(h.client(), "default");
    let policy =
        json!({"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Delete"}});
    let set = sets.create(&PostParams::default(), &stateful_set("kv", 2, "kv:1", policy)?).await?;
    wait_set_pods(&h.pods(), "kv", &["kv-0", "kv-1"], |_| true).await?;
    sets.patch("kv", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await?;
    wait_set_pods(&h.pods(), "kv", &["kv-0"], |_| true).await?;
    let claims = Api::<PersistentVolumeClaim>::namespaced(h.client(), "default");
    eventually("only the claim data-kv-0", || async {
        let list = claims.list(&ListParams::default()).await?;
        let names: Vec<String> = list
            .items
            .iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .map(ResourceExt::name_any)
            .collect();
        Ok(if names == ["data-kv-0"] { Ok(()) } else { Err(format!("{names:?}")) })
    })
    .await?;
    // whenDeleted: Delete makes the set an owner of the claims, so the garbage collector
    // deletes them with it.
    let owners: Vec<String> =
        claims.get("data-kv-0").await?.owner_references().iter().map(|r| r.uid.clone()).collect();
    assert_eq!(owners, set.uid().into_iter().collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn a_parallel_stateful_set_creates_all_pods_without_waiting_for_readiness() -> Result<()> {
    let h = Harness::start(&["daemonset", "statefulset"]).await?;
    let sets = Api::<StatefulSet>::namespaced(h.client(), "default");
    let parallel = json!({"podManagementPolicy": "Parallel"});
    sets.create(&PostParams::default(), &stateful_set("cache", 3, "redis:7", parallel)?).await?;
    eventually("cache-0, cache-1 and cache-2 created while none is ready", || async {
        let pods = pods_by_name(&h.pods(), "cache").await?;
        let names: Vec<&str> = pods.keys().map(String::as_str).collect();
        Ok(if names == ["cache-0", "cache-1", "cache-2"] { Ok(()) } else { Err(format!("{names:?}")) })
    })
    .await
}

#[tokio::test]
async fn a_rolling_update_with_a_partition_updates_from_the_highest_ordinal_down_to_it() -> Result<()> {
    let mut h = Harness::start(&["daemonset", "statefulset"]).await?;
    h.kubelet(|_| true);
    let sets = Api::<StatefulSet>::namespaced(h.client(), "default");
    let strategy = json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}});
    sets.create(&PostParams::default(), &stateful_set("web", 3, "nginx:1", strategy)?).await?;
    wait_set_pods(&h.pods(), "web", &["web-0", "web-1", "web-2"], |_| true).await?;

    // From now on: one pod at a time, and web-n updated only after web-(n+1).
    let violations = h.observe_pods(|pods| {
        let live: BTreeMap<String, &Pod> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| (p.name_any(), p.as_ref()))
            .collect();
        let ready = live.values().filter(|p| is_ready(p)).count();
        if ready < 2 {
            return Some(format!("only {ready} ready pods: {:?}", live.keys()));
        }
        let img = |n: &str| live.get(n).map(|p| image(p));
        (img("web-1").as_deref() == Some("nginx:2") && img("web-2").as_deref() == Some("nginx:1"))
            .then(|| "web-1 updated before web-2".to_string())
    });
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:2"}]}}}});
    sets.patch("web", &PatchParams::default(), &Patch::Strategic(patch)).await?;
    let updated = |p: &Pod| (p.name_any() == "web-0") == (image(p) == "nginx:1");
    wait_set_pods(&h.pods(), "web", &["web-0", "web-1", "web-2"], updated).await?;
    let s = eventually("status with 2 updated replicas", || async {
        let s = sets.get("web").await?.status.unwrap_or_default();
        Ok(if s.updated_replicas == Some(2) && s.current_replicas == Some(1) {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        })
    })
    .await?;
    assert_ne!(s.current_revision, s.update_revision, "the rollout is not complete below the partition");
    let web0 = h.pods().get("web-0").await?;
    assert_eq!(label(&web0, "controller-revision-hash"), s.current_revision.as_deref().unwrap_or_default());

    // Dropping the partition finishes the rollout.
    let patch = json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}});
    sets.patch("web", &PatchParams::default(), &Patch::Merge(patch)).await?;
    wait_set_pods(&h.pods(), "web", &["web-0", "web-1", "web-2"], |p| image(p) == "nginx:2").await?;
    eventually("currentRevision == updateRevision with 3 current replicas", || async {
        let s = sets.get("web").await?.status.unwrap_or_default();
        let ok = s.current_revision == s.update_revision && s.current_replicas == Some(3);
        Ok(if ok { Ok(()) } else { Err(format!("{s:?}")) })
    })
    .await?;
    violations.assert_none()
}

#[tokio::test]
async fn a_surge_rollout_starts_the_new_daemon_pod_before_deleting_the_old_one() -> Result<()> {
    let mut h = Harness::start(&["daemonset", "statefulset"]).await?;
    let nodes = ["n1", "n2", "n3"];
    for n in nodes {
        h.node(n, json!({}), json!([])).await?;
    }
    h.kubelet(|_| true);
    let sets = Api::<DaemonSet>::namespaced(h.client(), "default");
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}});
    sets.create(&PostParams::default(), &daemon_set("agent", "agent:1", json!({}), strategy)?).await?;
    wait_daemon_nodes(&h.pods(), "agent", &nodes).await?;
    eventually("3 available daemon pods", || async {
        let s = sets.get("agent").await?.status.unwrap_or_default();
        Ok(if s.number_available == Some(3) { Ok(()) } else { Err(format!("{s:?}")) })
    })
    .await?;

    // Every node keeps a ready pod, and at most one node has two pods at a time.
    let violations = h.observe_pods(|pods| {
        let mut per_node: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for p in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
            let e = per_node.entry(pinned_node(p)).or_default();
            e.0 += 1;
            e.1 += usize::from(is_ready(p));
        }
        let doubled = per_node.values().filter(|(n, _)| *n > 1).count();
        let uncovered = per_node.len() < 3 || per_node.values().any(|(_, ready)| *ready == 0);
        (doubled > 1 || uncovered).then(|| format!("pods and ready pods per node: {per_node:?}"))
    });
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "agent:2"}]}}}});
    sets.patch("agent", &PatchParams::default(), &Patch::Strategic(patch)).await?;
    eventually("3 ready agent:2 pods, one per node", || async {
        let pods = live_pods(&h.pods(), "agent").await?;
        let seen: Vec<(String, String, bool)> =
            pods.iter().map(|p| (pinned_node(p), image(p), is_ready(p))).collect();
        let done = pods.len() == 3 && seen.iter().all(|(_, i, r)| i == "agent:2" && *r);
        Ok(if done { Ok(()) } else { Err(format!("{seen:?}")) })
    })
    .await?;
    violations.assert_none()
}

#[tokio::test]
async fn on_delete_daemon_sets_update_a_pod_only_when_it_is_deleted() -> Result<()> {
    let mut h = Harness::start(&["daemonset", "statefulset"]).await?;
    for n in ["n1", "n2"] {
        h.node(n, json!({}), json!([])).await?;
    }
    h.kubelet(|_| true);
    let sets = Api::<DaemonSet>::namespaced(h.client(), "default");
    sets.create(
        &PostParams::default(),
        &daemon_set("agent", "agent:1", json!({}), json!({"type": "OnDelete"}))?,
    )
    .await?;
    wait_daemon_nodes(&h.pods(), "agent", &["n1", "n2"]).await?;
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "agent:2"}]}}}});
    let generation =
        sets.patch("agent", &PatchParams::default(), &Patch::Strategic(patch)).await?.metadata.generation;
    // Once the controller has seen the new template, the pods are still the old ones.
    eventually("the new generation observed with 0 updated pods", || async {
        let s = sets.get("agent").await?.status.unwrap_or_default();
        let ok = s.observed_generation == generation && s.updated_number_scheduled.unwrap_or(0) == 0;
        Ok(if ok { Ok(()) } else { Err(format!("{s:?}")) })
    })
    .await?;
    let pods = live_pods(&h.pods(), "agent").await?;
    assert!(pods.iter().all(|p| image(p) == "agent:1"), "OnDelete replaced pods by itself");

    let on_n1 = pods.iter().find(|p| pinned_node(p) == "n1").map(ResourceExt::name_any).unwrap_or_default();
    h.pods().delete(&on_n1, &DeleteParams::default()).await?;
    eventually("n1 running agent:2 and n2 still agent:1", || async {
        let pods = live_pods(&h.pods(), "agent").await?;
        let seen: BTreeMap<String, String> = pods.iter().map(|p| (pinned_node(p), image(p))).collect();
        let want =
            BTreeMap::from([("n1".to_string(), "agent:2".to_string()), ("n2".into(), "agent:1".into())]);
        Ok(if pods.len() == 2 && seen == want { Ok(()) } else { Err(format!("{seen:?}")) })
    })
    .await
}

#[tokio::test]
async fn on_delete_stateful_sets_recreate_a_deleted_pod_at_the_update_revision() -> Result<()> {
    let mut h = Harness::start(&["daemonset", "statefulset"]).await?;
    h.kubelet(|_| true);
    let sets = Api::<StatefulSet>::namespaced(h.client(), "default");
    let strategy = json!({"updateStrategy": {"type": "OnDelete"}});
    sets.create(&PostParams::default(), &stateful_set("web", 2, "nginx:1", strategy)?).await?;
    wait_set_pods(&h.pods(), "web", &["web-0", "web-1"], |_| true).await?;
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:2"}]}}}});
    let generation =
        sets.patch("web", &PatchParams::default(), &Patch::Strategic(patch)).await?.metadata.generation;
    eventually("the new generation observed with 0 updated pods", || async {
        let s = sets.get("web").await?.status.unwrap_or_default();
        let ok = s.observed_generation == generation
            && s.updated_replicas.unwrap_or(0) == 0
            && s.current_revision != s.update_revision;
        Ok(if ok { Ok(()) } else { Err(format!("{s:?}")) })
    })
    .await?;
    h.pods().delete("web-0", &DeleteParams::default()).await?;
    wait_set_pods(&h.pods(), "web", &["web-0", "web-1"], |p| {
        image(p) == if p.name_any() == "web-0" { "nginx:2" } else { "nginx:1" }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_stateful_set_adopts_an_orphan_pod_with_its_name_instead_of_replacing_it() -> Result<()> {
    let mut h = Harness::start(&["daemonset", "statefulset"]).await?;
    h.kubelet(|_| true);
    let orphan: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "main", "image": "nginx:1"}]}
    }))?;
    let uid = h.pods().create(&PostParams::default(), &orphan).await?.uid();
    let sets = Api::<StatefulSet>::namespaced(h.client(), "default");
    // OnDelete: a rolling update would replace the adopted pod, which has no revision label
    // (upstream does the same).
    let on_delete = json!({"updateStrategy": {"type": "OnDelete"}});
    let set = sets.create(&PostParams::default(), &stateful_set("web", 2, "nginx:1", on_delete)?).await?;
    let pods = wait_set_pods(&h.pods(), "web", &["web-0", "web-1"], |_| true).await?;
    let web0 = &pods["web-0"];
    assert_eq!(web0.uid(), uid, "web-0 was replaced rather than adopted");
    let controller =
        web0.owner_references().iter().find(|r| r.controller == Some(true)).map(|r| r.uid.clone());
    assert_eq!(controller, set.uid());
    Ok(())
}
