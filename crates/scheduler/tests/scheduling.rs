//! The scheduler against an in-process API server: fake nodes are plain Node objects, no
//! kubelet runs, and every assertion reads what the scheduler wrote through the API.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use corten_apiserver::testing::TestCluster;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(20);

/// A cluster with the scheduler running against it.
async fn cluster() -> Result<TestCluster> {
    let cluster = TestCluster::start().await?;
    let (client, shutdown) = (cluster.client.clone(), cluster.shutdown());
    tokio::spawn(async move {
        if let Err(e) = corten_scheduler::run(client, corten_scheduler::Config::default(), shutdown).await {
            eprintln!("scheduler failed: {e}");
        }
    });
    Ok(cluster)
}

/// Registers a node with `cpu` and `memory` allocatable, room for `pods` pods, plus `extra`
/// (labels, taints) merged into the object.
async fn add_node(client: &Client, name: &str, cpu: &str, pods: &str, extra: Value) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        for (kk, vv) in v.as_object().into_iter().flatten() {
            if kk == "labels" {
                for (l, lv) in vv.as_object().into_iter().flatten() {
                    node[k][kk][l] = lv.clone();
                }
            } else {
                node[k][kk] = vv.clone();
            }
        }
    }
    nodes.create(&PostParams::default(), &serde_json::from_value(node)?).await.context("create node")?;
    let resources = json!({"cpu": cpu, "memory": "8Gi", "pods": pods});
    let status = json!({"status": {"capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.context("node status")?;
    Ok(())
}

/// Creates `default/name` asking for `cpu`, with `spec` merged into the pod spec and `labels`.
async fn add_pod(client: &Client, name: &str, cpu: &str, labels: Value, spec: Value) -> Result<()> {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]}});
    for (k, v) in spec.as_object().into_iter().flatten() {
        pod["spec"][k] = v.clone();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &serde_json::from_value(pod)?).await.context("create pod")?;
    Ok(())
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty())
}

/// The pod's `PodScheduled` condition as (status, reason, message).
fn scheduled_condition(pod: &Pod) -> Option<(String, String, String)> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == "PodScheduled")?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
}

/// Polls `default/name` until `done` holds, failing with `expected` and the last pod seen.
async fn wait_pod(client: &Client, name: &str, expected: &str, done: impl Fn(&Pod) -> bool) -> Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let start = tokio::time::Instant::now();
    loop {
        let pod = pods.get_opt(name).await?;
        if let Some(pod) = pod.as_ref().filter(|p| done(p)) {
            return Ok(pod.clone());
        }
        if start.elapsed() > DEADLINE {
            let seen = pod.map(|p| (node_of(&p), scheduled_condition(&p)));
            bail!("pod {name}: expected {expected}, saw (node, PodScheduled) = {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_bound(client: &Client, name: &str) -> Result<String> {
    let pod = wait_pod(client, name, "a node", |p| node_of(p).is_some()).await?;
    node_of(&pod).context("bound")
}

async fn wait_unschedulable(client: &Client, name: &str) -> Result<String> {
    let pod = wait_pod(client, name, "PodScheduled=False", |p| {
        scheduled_condition(p).is_some_and(|(s, _, _)| s == "False")
    })
    .await?;
    let (_, reason, message) = scheduled_condition(&pod).context("condition")?;
    assert_eq!(reason, "Unschedulable");
    assert_eq!(node_of(&pod), None);
    Ok(message)
}

/// The core/v1 events about pod `name` with `reason`, polled until there is one.
async fn wait_events(client: &Client, name: &str, reason: &str) -> Result<Vec<Event>> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let start = tokio::time::Instant::now();
    loop {
        // The field selector `kubectl describe` uses.
        let lp = ListParams::default().fields(&format!("involvedObject.name={name},involvedObject.kind=Pod"));
        let all = events.list(&lp).await?.items;
        let found: Vec<Event> = all.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).collect();
        if !found.is_empty() {
            return Ok(found);
        }
        if start.elapsed() > DEADLINE {
            bail!("expected a {reason} event for pod {name}, saw none");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_pod_is_bound_to_the_node_that_has_room_and_a_scheduled_event_says_so() -> Result<()> {
    let c = cluster().await?;
    add_node(&c.client, "node-small", "1", "110", json!({})).await?;
    add_node(&c.client, "node-a", "4", "110", json!({})).await?;
    add_pod(&c.client, "web-1", "2", json!({}), json!({})).await?;
    assert_eq!(wait_bound(&c.client, "web-1").await?, "node-a");
    let pod = wait_pod(&c.client, "web-1", "PodScheduled=True", |p| {
        scheduled_condition(p).is_some_and(|(s, _, _)| s == "True")
    })
    .await?;
    assert_eq!(node_of(&pod).as_deref(), Some("node-a"));
    let events = wait_events(&c.client, "web-1", "Scheduled").await?;
    assert_eq!(events[0].message.as_deref(), Some("Successfully assigned default/web-1 to node-a"));
    assert_eq!(events[0].type_.as_deref(), Some("Normal"));
    assert_eq!(events[0].source.as_ref().and_then(|s| s.component.as_deref()), Some("default-scheduler"));
    Ok(())
}

#[tokio::test]
async fn an_unschedulable_pod_gets_upstreams_message_in_its_condition_and_a_failed_scheduling_event(
) -> Result<()> {
    let c = cluster().await?;
    let control_plane = json!({"spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}});
    add_node(&c.client, "cp-1", "8", "110", control_plane.clone()).await?;
    add_node(&c.client, "cp-2", "8", "110", control_plane).await?;
    add_node(&c.client, "worker", "1", "110", json!({})).await?;
    add_pod(&c.client, "big", "2", json!({}), json!({})).await?;
    let expected = "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint \
        {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: \
        1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.";
    assert_eq!(wait_unschedulable(&c.client, "big").await?, expected);
    let events = wait_events(&c.client, "big", "FailedScheduling").await?;
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    assert_eq!(events[0].message.as_deref(), Some(expected));

    // A node update retries the pod at once; the same failure counts up the same event.
    let nodes: Api<Node> = Api::all(c.client.clone());
    let label = json!({"metadata": {"labels": {"touched": "yes"}}});
    nodes.patch("worker", &PatchParams::default(), &Patch::Merge(&label)).await?;
    let start = tokio::time::Instant::now();
    loop {
        let events = wait_events(&c.client, "big", "FailedScheduling").await?;
        let counts: Vec<i32> = events.iter().map(|e| e.count.unwrap_or(0)).collect();
        if counts.len() == 1 && counts[0] >= 2 {
            break;
        }
        if start.elapsed() > DEADLINE || events.len() > 1 {
            bail!("expected one FailedScheduling event counted twice, saw counts {counts:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_pod_pending_on_resources_is_scheduled_when_a_node_is_added() -> Result<()> {
    let c = cluster().await?;
    add_node(&c.client, "small", "500m", "110", json!({})).await?;
    add_pod(&c.client, "web-1", "1", json!({}), json!({})).await?;
    let message = wait_unschedulable(&c.client, "web-1").await?;
    assert!(message.starts_with("0/1 nodes are available: 1 Insufficient cpu."), "{message}");
    add_node(&c.client, "big", "2", "110", json!({})).await?;
    assert_eq!(wait_bound(&c.client, "web-1").await?, "big");
    Ok(())
}

#[tokio::test]
async fn required_anti_affinity_spreads_replicas_one_per_node() -> Result<()> {
    let c = cluster().await?;
    for n in ["n1", "n2", "n3"] {
        add_node(&c.client, n, "4", "110", json!({})).await?;
    }
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    for i in 0..4 {
        add_pod(&c.client, &format!("web-{i}"), "100m", json!({"app": "web"}), anti.clone()).await?;
    }
    let mut nodes = Vec::new();
    let mut unschedulable = Vec::new();
    for i in 0..4 {
        let name = format!("web-{i}");
        let pod = wait_pod(&c.client, &name, "bound or unschedulable", |p| {
            node_of(p).is_some() || scheduled_condition(p).is_some_and(|(s, _, _)| s == "False")
        })
        .await?;
        match node_of(&pod) {
            Some(n) => nodes.push(n),
            None => unschedulable.push(scheduled_condition(&pod).map(|(_, _, m)| m).unwrap_or_default()),
        }
    }
    nodes.sort();
    assert_eq!(nodes, vec!["n1", "n2", "n3"]);
    assert_eq!(unschedulable.len(), 1);
    assert!(
        unschedulable[0]
            .starts_with("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."),
        "{}",
        unschedulable[0]
    );
    Ok(())
}

#[tokio::test]
async fn pods_avoid_tainted_nodes_unless_they_tolerate_the_taint() -> Result<()> {
    let c = cluster().await?;
    let taint = json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
        "metadata": {"labels": {"pool": "gpu"}}});
    add_node(&c.client, "gpu", "8", "110", taint).await?;
    add_node(&c.client, "plain", "1", "110", json!({})).await?;
    for i in 0..3 {
        add_pod(&c.client, &format!("plain-{i}"), "100m", json!({}), json!({})).await?;
    }
    for i in 0..3 {
        assert_eq!(wait_bound(&c.client, &format!("plain-{i}")).await?, "plain");
    }
    let tolerant = json!({"nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]});
    add_pod(&c.client, "trainer", "100m", json!({}), tolerant).await?;
    assert_eq!(wait_bound(&c.client, "trainer").await?, "gpu");
    Ok(())
}

#[tokio::test]
async fn two_pods_racing_for_the_last_slot_never_both_land_on_it() -> Result<()> {
    let c = cluster().await?;
    add_node(&c.client, "tiny", "4", "1", json!({})).await?;
    add_pod(&c.client, "a", "100m", json!({}), json!({})).await?;
    add_pod(&c.client, "b", "100m", json!({}), json!({})).await?;
    let mut bound = Vec::new();
    let mut messages = Vec::new();
    for name in ["a", "b"] {
        let pod = wait_pod(&c.client, name, "bound or unschedulable", |p| {
            node_of(p).is_some() || scheduled_condition(p).is_some_and(|(s, _, _)| s == "False")
        })
        .await?;
        match node_of(&pod) {
            Some(_) => bound.push(name),
            None => messages.push(scheduled_condition(&pod).map(|(_, _, m)| m).unwrap_or_default()),
        }
    }
    assert_eq!(bound.len(), 1, "exactly one pod gets the slot: {bound:?}");
    assert!(messages[0].starts_with("0/1 nodes are available: 1 Too many pods."), "{}", messages[0]);
    Ok(())
}

#[tokio::test]
async fn a_high_priority_pod_preempts_a_lower_one_and_takes_its_place() -> Result<()> {
    let c = cluster().await?;
    add_node(&c.client, "only", "1", "110", json!({})).await?;
    add_pod(&c.client, "low", "800m", json!({}), json!({})).await?;
    assert_eq!(wait_bound(&c.client, "low").await?, "only");
    // Priority admission resolves the class into spec.priority when the pod is created.
    let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(c.client.clone());
    let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "important"}, "value": 1000});
    classes.create(&PostParams::default(), &serde_json::from_value(class)?).await?;
    add_pod(&c.client, "high", "800m", json!({}), json!({"priorityClassName": "important"})).await?;

    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let victim =
        wait_pod(&c.client, "low", "deletion started", |p| p.metadata.deletion_timestamp.is_some()).await?;
    assert_eq!(node_of(&victim).as_deref(), Some("only"));
    let conditions = victim.status.and_then(|s| s.conditions).unwrap_or_default();
    let target = conditions.iter().find(|c| c.type_ == "DisruptionTarget").context("DisruptionTarget")?;
    assert_eq!((target.status.as_str(), target.reason.as_deref()), ("True", Some("PreemptionByScheduler")));
    let high = wait_pod(&c.client, "high", "nominated", |p| {
        p.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()) == Some("only")
    })
    .await?;
    assert_eq!(node_of(&high), None, "the preemptor waits for the victim to go");
    wait_events(&c.client, "low", "Preempted").await?;
    // Play the kubelet: the victim's containers stopped.
    pods.delete("low", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await?;
    assert_eq!(wait_bound(&c.client, "high").await?, "only");
    Ok(())
}

#[tokio::test]
async fn gated_pods_and_pods_of_other_schedulers_are_left_alone_until_the_gates_are_removed() -> Result<()> {
    let c = cluster().await?;
    add_node(&c.client, "n1", "4", "110", json!({})).await?;
    add_pod(
        &c.client,
        "gated",
        "100m",
        json!({}),
        json!({"schedulingGates": [{"name": "example.com/wait"}]}),
    )
    .await?;
    add_pod(&c.client, "theirs", "100m", json!({}), json!({"schedulerName": "other-scheduler"})).await?;
    add_pod(&c.client, "ours", "100m", json!({}), json!({})).await?;
    // Every pending pod is considered whenever a pod changes: by the time the last one is
    // bound, the earlier ones were passed over.
    assert_eq!(wait_bound(&c.client, "ours").await?, "n1");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    assert_eq!(node_of(&pods.get("gated").await?), None);
    assert_eq!(node_of(&pods.get("theirs").await?), None);
    let ungate = json!({"spec": {"schedulingGates": null}});
    pods.patch("gated", &PatchParams::default(), &Patch::Merge(&ungate)).await?;
    assert_eq!(wait_bound(&c.client, "gated").await?, "n1");
    assert_eq!(node_of(&pods.get("theirs").await?), None);
    Ok(())
}

#[tokio::test]
async fn topology_spread_constraints_keep_zones_within_the_max_skew() -> Result<()> {
    let c = cluster().await?;
    for (n, zone) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
        add_node(
            &c.client,
            n,
            "4",
            "110",
            json!({"metadata": {"labels": {"topology.kubernetes.io/zone": zone}}}),
        )
        .await?;
    }
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
    let mut zones = Vec::new();
    for i in 0..4 {
        let name = format!("web-{i}");
        add_pod(&c.client, &name, "100m", json!({"app": "web"}), spread.clone()).await?;
        let node = wait_bound(&c.client, &name).await?;
        zones.push(if node.starts_with('a') { "a" } else { "b" });
    }
    zones.sort();
    assert_eq!(zones, vec!["a", "a", "b", "b"], "two pods per zone although zone a has two nodes");
    Ok(())
}
