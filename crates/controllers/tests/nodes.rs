//! The node lifecycle controller and the pod garbage collector against the in-process API
//! server, on a manual clock. Nodes and kubelets are faked: a Node with a Lease in
//! `kube-node-lease`, its status and its pods' status patched as a kubelet would.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{eventually, Harness};
use corten_apiserver::testing::TestCluster;
use corten_controllers::{Clock, Config};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// A NoExecute taint of the test's own.
const BROKEN: &str = "example.com/broken";

/// Registers node `name` as a kubelet would: the Node, a Ready status and its Lease, at `now`.
async fn create_node(client: &Client, name: &str, now: Timestamp) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}}))?)
        .await?;
    post_ready(client, name, now).await?;
    let lease = json!({"metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro(now)}});
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .create(&PostParams::default(), &serde_json::from_value(lease)?)
        .await?;
    Ok(())
}

fn micro(t: Timestamp) -> String {
    format!("{}", t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

/// Posts a Ready status with a heartbeat at `now`, as a healthy kubelet does.
async fn post_ready(client: &Client, name: &str, now: Timestamp) -> Result<()> {
    let status = json!({"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
         "lastHeartbeatTime": now.to_string(), "lastTransitionTime": now.to_string()},
        {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": now.to_string()},
        {"type": "DiskPressure", "status": "False", "lastHeartbeatTime": now.to_string()},
        {"type": "PIDPressure", "status": "False", "lastHeartbeatTime": now.to_string()},
    ]}});
    Api::<Node>::all(client.clone())
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// Creates pod `name` bound to `node` with `tolerations`, running and Ready.
async fn create_pod(client: &Client, name: &str, node: &str, tolerations: Value) -> Result<()> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod = json!({"metadata": {"name": name}, "spec": {"nodeName": node, "tolerations": tolerations,
        "containers": [{"name": "main", "image": "busybox"}]}});
    pods.create(&PostParams::default(), &serde_json::from_value(pod)?).await?;
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

async fn taints(client: &Client, node: &str) -> Result<Vec<Taint>> {
    let node = Api::<Node>::all(client.clone()).get(node).await?;
    Ok(node.spec.and_then(|s| s.taints).unwrap_or_default())
}

fn has(taints: &[Taint], key: &str, effect: &str) -> bool {
    taints.iter().any(|t| t.key == key && t.effect == effect)
}

/// Lets the clock run with the kubelet of `node` silent until the node is tainted unreachable.
async fn wait_unreachable(client: &Client, clock: &Clock, node: &str) -> Result<Vec<Taint>> {
    eventually(&format!("node {node} tainted {UNREACHABLE}:NoExecute"), || async {
        let taints = taints(client, node).await?;
        if has(&taints, UNREACHABLE, "NoExecute") {
            return Ok(Ok(taints));
        }
        // The controller counts the grace period from when it saw the last heartbeat.
        clock.advance(SignedDuration::from_secs(41));
        Ok(Err(format!("taints {taints:?}")))
    })
    .await
}

/// `(status, reason)` of condition `type_` of pod `name`.
async fn pod_condition(client: &Client, name: &str, type_: &str) -> Result<Option<(String, Option<String>)>> {
    let pod = Api::<Pod>::default_namespaced(client.clone()).get(name).await?;
    Ok(pod
        .status
        .and_then(|s| s.conditions)
        .into_iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.reason)))
}

/// Whether pod `name` is gone or being deleted.
async fn deleting(client: &Client, name: &str) -> Result<bool> {
    let pod = Api::<Pod>::default_namespaced(client.clone()).get_opt(name).await?;
    Ok(pod.is_none_or(|p| p.metadata.deletion_timestamp.is_some()))
}

async fn wait_evicted(client: &Client, name: &str) -> Result<()> {
    eventually(&format!("pod {name} evicted with DisruptionTarget DeletionByTaintManager"), || async {
        let target = pod_condition(client, name, "DisruptionTarget").await?;
        let deleting = deleting(client, name).await?;
        Ok(if deleting && target == Some(("True".into(), Some("DeletionByTaintManager".into()))) {
            Ok(())
        } else {
            Err(format!("deleting {deleting}, DisruptionTarget {target:?}"))
        })
    })
    .await
}

#[tokio::test]
async fn a_node_whose_kubelet_goes_silent_becomes_unknown_and_unreachable_until_it_posts_again() -> Result<()>
{
    let clock = Clock::manual(Timestamp::now());
    let cluster = Harness::start_with(&["nodelifecycle"], Config::default(), clock.clone()).await?;
    let client = cluster.client();
    create_node(&client, "n1", clock.now()).await?;
    let forever = json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]);
    create_pod(&client, "web", "n1", forever).await?;
    create_pod(&client, "intolerant", "n1", json!([])).await?;

    let tainted = wait_unreachable(&client, &clock, "n1").await?;
    assert!(has(&tainted, UNREACHABLE, "NoSchedule"), "taints {tainted:?}");
    assert!(tainted.iter().all(|t| t.time_added.is_some()), "taints {tainted:?}");
    let node = Api::<Node>::all(client.clone()).get("n1").await?;
    let conditions = node.status.and_then(|s| s.conditions).unwrap_or_default();
    for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = conditions.iter().find(|c| c.type_ == type_);
        assert_eq!(c.map(|c| c.status.as_str()), Some("Unknown"), "{type_} in {conditions:?}");
        assert_eq!(c.and_then(|c| c.reason.as_deref()), Some("NodeStatusUnknown"));
        assert_eq!(c.and_then(|c| c.message.as_deref()), Some("Kubelet stopped posting node status."));
    }
    eventually("pod web not ready", || async {
        let ready = pod_condition(&client, "web", "Ready").await?;
        Ok(if ready.as_ref().map(|r| r.0.as_str()) == Some("False") {
            Ok(())
        } else {
            Err(format!("{ready:?}"))
        })
    })
    .await?;
    // Evicted at once, or after 300 s where admission adds the default tolerations.
    clock.advance(SignedDuration::from_secs(301));
    wait_evicted(&client, "intolerant").await?;
    assert!(!deleting(&client, "web").await?, "a pod tolerating the taint for ever is kept");

    let now = clock.now();
    let renew = json!({"spec": {"renewTime": micro(now)}});
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .patch("n1", &PatchParams::default(), &Patch::Merge(&renew))
        .await?;
    post_ready(&client, "n1", now).await?;
    eventually("node n1 without the unreachable taints", || async {
        let taints = taints(&client, "n1").await?;
        Ok(if taints.is_empty() { Ok(()) } else { Err(format!("taints {taints:?}")) })
    })
    .await?;
    let ready = Api::<Node>::all(client.clone()).get("n1").await?.status.and_then(|s| s.conditions);
    let ready = ready.into_iter().flatten().find(|c| c.type_ == "Ready").map(|c| c.status);
    assert_eq!(ready.as_deref(), Some("True"));
    Ok(())
}

#[tokio::test]
async fn pods_on_a_node_with_a_no_execute_taint_are_evicted_now_or_after_their_toleration_seconds(
) -> Result<()> {
    let clock = Clock::manual(Timestamp::now());
    let cluster = Harness::start_with(&["nodelifecycle"], Config::default(), clock.clone()).await?;
    let client = cluster.client();
    create_node(&client, "n1", clock.now()).await?;
    create_pod(&client, "intolerant", "n1", json!([])).await?;
    // Tolerates the taint for an hour, and the node's going silent while the clock moves for ever.
    let for_an_hour = json!([
        {"key": BROKEN, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3600},
        {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"},
    ]);
    create_pod(&client, "patient", "n1", for_an_hour).await?;

    let taint = json!({"spec": {"taints": [{"key": BROKEN, "effect": "NoExecute", "timeAdded": clock.now().to_string()}]}});
    Api::<Node>::all(client.clone()).patch("n1", &PatchParams::default(), &Patch::Merge(&taint)).await?;
    wait_evicted(&client, "intolerant").await?;
    eventually("a TaintManagerEviction event for pod intolerant", || async {
        let events = Api::<Event>::default_namespaced(client.clone()).list(&Default::default()).await?;
        let reasons: Vec<_> = events
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("intolerant"))
            .filter_map(|e| e.reason.clone())
            .collect();
        Ok(if reasons.iter().any(|r| r == "TaintManagerEviction") {
            Ok(())
        } else {
            Err(format!("{reasons:?}"))
        })
    })
    .await?;
    // A pass after the one that evicted the first pod: the patient pod has been looked at since.
    create_pod(&client, "late", "n1", json!([])).await?;
    wait_evicted(&client, "late").await?;
    assert!(!deleting(&client, "patient").await?, "the pod tolerating the taint for an hour is kept for now");

    clock.advance(SignedDuration::from_secs(3601));
    wait_evicted(&client, "patient").await?;
    Ok(())
}

#[tokio::test]
async fn an_unschedulable_node_is_tainted_unschedulable_until_it_is_schedulable_again() -> Result<()> {
    let clock = Clock::manual(Timestamp::now());
    let cluster = Harness::start_with(&["nodelifecycle"], Config::default(), clock.clone()).await?;
    let client = cluster.client();
    create_node(&client, "n1", clock.now()).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let key = "node.kubernetes.io/unschedulable";
    for unschedulable in [true, false] {
        nodes
            .patch(
                "n1",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"unschedulable": unschedulable}})),
            )
            .await?;
        eventually(&format!("the {key} taint present: {unschedulable}"), || async {
            let taints = taints(&client, "n1").await?;
            Ok(if has(&taints, key, "NoSchedule") == unschedulable {
                Ok(())
            } else {
                Err(format!("{taints:?}"))
            })
        })
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn pods_bound_to_a_deleted_node_are_deleted_after_the_quarantine() -> Result<()> {
    let clock = Clock::manual(Timestamp::now());
    let config = Config { terminated_pod_gc_threshold: Some(1), ..Config::default() };
    let cluster = Harness::start_with(&["podgc"], config, clock.clone()).await?;
    let client = cluster.client();
    create_node(&client, "gone", clock.now()).await?;
    create_node(&client, "kept", clock.now()).await?;
    create_pod(&client, "orphan", "gone", json!([])).await?;
    create_pod(&client, "terminating", "gone", json!([])).await?;
    create_pod(&client, "healthy", "kept", json!([])).await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    // A bound pod deleted gracefully waits for its kubelet, which will never come.
    pods.delete("terminating", &DeleteParams::default()).await?;
    assert!(pods.get_opt("terminating").await?.is_some_and(|p| p.metadata.deletion_timestamp.is_some()));
    Api::<Node>::all(client.clone()).delete("gone", &DeleteParams::default()).await?;
    // Two finished pods over a threshold of one: one goes in a pass that saw the node gone.
    for name in ["done-1", "done-2"] {
        let pod = json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "main", "image": "busybox"}]}});
        pods.create(&PostParams::default(), &serde_json::from_value(pod)?).await?;
        let finished = json!({"status": {"phase": "Succeeded"}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&finished)).await?;
    }
    eventually("one of the finished pods deleted", || async {
        let left =
            [pods.get_opt("done-1").await?, pods.get_opt("done-2").await?].into_iter().flatten().count();
        Ok(if left == 1 { Ok(()) } else { Err(format!("{left} left")) })
    })
    .await?;
    assert!(
        pods.get_opt("orphan").await?.is_some(),
        "the pods of a deleted node are kept during the quarantine"
    );

    eventually("the pods of the deleted node gone", || async {
        let left: Vec<_> = [pods.get_opt("orphan").await?, pods.get_opt("terminating").await?]
            .into_iter()
            .flatten()
            .map(|p| p.metadata.name.unwrap_or_default())
            .collect();
        if left.is_empty() {
            return Ok(Ok(()));
        }
        clock.advance(SignedDuration::from_secs(41));
        Ok(Err(format!("pods {left:?}")))
    })
    .await?;
    assert!(pods.get_opt("healthy").await?.is_some(), "the pod of an existing node is kept");
    Ok(())
}

#[tokio::test]
async fn terminated_pods_above_the_threshold_are_deleted_oldest_first() -> Result<()> {
    let clock = Clock::manual(Timestamp::now());
    let cluster = TestCluster::start().await?;
    let client = cluster.client.clone();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    // Named against their age, so that an order by name would pick the wrong ones.
    for (i, name) in ["c-oldest", "b-middle", "a-newest", "running"].into_iter().enumerate() {
        if i > 0 {
            // creationTimestamp has a resolution of one second.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let pod = json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "main", "image": "busybox"}]}});
        pods.create(&PostParams::default(), &serde_json::from_value(pod)?).await?;
        let phase = if name == "running" { "Running" } else { "Succeeded" };
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": phase}})))
            .await?;
    }
    let config = Config { terminated_pod_gc_threshold: Some(1), ..Config::default() };
    let (c, shutdown) = (client.clone(), cluster.shutdown());
    tokio::spawn(async move {
        corten_controllers::run_only_with_clock(c, config, &["podgc"], clock, shutdown).await
    });

    eventually("only a-newest and running left", || async {
        let mut names: Vec<_> =
            pods.list(&Default::default()).await?.items.into_iter().filter_map(|p| p.metadata.name).collect();
        names.sort();
        Ok(if names == ["a-newest", "running"] { Ok(()) } else { Err(format!("pods {names:?}")) })
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_new_pod_tolerates_not_ready_and_unreachable_nodes_for_300_seconds() -> Result<()> {
    let cluster = TestCluster::start().await?;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client.clone());
    let pod = json!({"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "main", "image": "busybox"}],
        "tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}});
    let created = pods.create(&PostParams::default(), &serde_json::from_value(pod)?).await?;
    let tolerations = created.spec.and_then(|s| s.tolerations).unwrap_or_default();
    let seconds = |key: &str| {
        tolerations
            .iter()
            .filter(|t| t.key.as_deref() == Some(key))
            .map(|t| t.toleration_seconds)
            .collect::<Vec<_>>()
    };
    assert_eq!(seconds("node.kubernetes.io/not-ready"), [Some(300)], "{tolerations:?}");
    assert_eq!(
        seconds(UNREACHABLE),
        [Some(5)],
        "its own toleration is kept and no default added: {tolerations:?}"
    );
    Ok(())
}
