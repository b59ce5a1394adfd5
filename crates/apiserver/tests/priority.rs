//! Pod priority admission, as kube-apiserver's `Priority` plugin: PriorityClasses resolve to pod
//! priorities on create, the system classes exist from bootstrap.

mod common;

use anyhow::{Context, Result};
use common::rejected;
use corten_apiserver::{ApiConfig, ApiServer, Identity};
use corten_store::{MemStore, MemStoreConfig};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use tokio_util::sync::{CancellationToken, DropGuard};

async fn cluster() -> Result<(Client, DropGuard)> {
    let store = MemStore::new(MemStoreConfig::default());
    let shutdown = CancellationToken::new();
    let server = ApiServer::new(store, ApiConfig::default(), shutdown.clone());
    server.bootstrap().await.context("bootstrap")?;
    let service = tower::ServiceBuilder::new()
        .map_request(|mut req: http::Request<kube::client::Body>| {
            req.extensions_mut().insert(Identity::admin());
            req
        })
        .service(server.router());
    Ok((Client::new(service, "default"), shutdown.drop_guard()))
}

fn pod(name: &str, spec: serde_json::Value) -> Result<Pod> {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "main", "image": "busybox"}]);
    Ok(serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?)
}

fn class(name: &str, value: i32, global_default: bool, policy: Option<&str>) -> PriorityClass {
    PriorityClass {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        value,
        global_default: Some(global_default),
        preemption_policy: policy.map(String::from),
        ..PriorityClass::default()
    }
}

fn priority_of(p: &Pod) -> (Option<&str>, Option<i32>, Option<&str>) {
    let spec = p.spec.as_ref();
    (
        spec.and_then(|s| s.priority_class_name.as_deref()),
        spec.and_then(|s| s.priority),
        spec.and_then(|s| s.preemption_policy.as_deref()),
    )
}

#[tokio::test]
async fn bootstrap_creates_the_system_priority_classes() -> Result<()> {
    let (client, _guard) = cluster().await?;
    let classes: Api<PriorityClass> = Api::all(client);
    let node = classes.get("system-node-critical").await?;
    assert_eq!(node.value, 2_000_001_000);
    assert_eq!(
        node.description.as_deref(),
        Some("Used for system critical pods that must not be moved from their current node.")
    );
    assert_eq!(node.preemption_policy.as_deref(), Some("PreemptLowerPriority"));
    let cluster = classes.get("system-cluster-critical").await?;
    assert_eq!(cluster.value, 2_000_000_000);
    assert_eq!(
        cluster.description.as_deref(),
        Some("Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.")
    );
    assert_ne!(cluster.global_default, Some(true));
    assert_ne!(node.global_default, Some(true));
    Ok(())
}

#[tokio::test]
async fn a_pods_priority_class_resolves_to_its_priority_and_preemption_policy() -> Result<()> {
    let (client, _guard) = cluster().await?;
    let classes: Api<PriorityClass> = Api::all(client.clone());
    classes.create(&PostParams::default(), &class("batch-low", 1000, false, Some("Never"))).await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");

    let p =
        pods.create(&PostParams::default(), &pod("low", json!({"priorityClassName": "batch-low"}))?).await?;
    assert_eq!(priority_of(&p), (Some("batch-low"), Some(1000), Some("Never")));
    let p = pods
        .create(
            &PostParams::default(),
            &pod("critical", json!({"priorityClassName": "system-node-critical"}))?,
        )
        .await?;
    assert_eq!(
        priority_of(&p),
        (Some("system-node-critical"), Some(2_000_001_000), Some("PreemptLowerPriority"))
    );
    // Stated priorities that agree with the class are accepted.
    let same = pod("same", json!({"priorityClassName": "batch-low", "priority": 1000}))?;
    assert_eq!(priority_of(&pods.create(&PostParams::default(), &same).await?).1, Some(1000));
    Ok(())
}

#[tokio::test]
async fn an_unknown_priority_class_is_forbidden() -> Result<()> {
    let (client, _guard) = cluster().await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let s =
        rejected(pods.create(&PostParams::default(), &pod("x", json!({"priorityClassName": "foo"}))?).await)?;
    assert_eq!(s.code, 403);
    assert_eq!(s.reason, "Forbidden");
    assert_eq!(s.message, "pods \"x\" is forbidden: no PriorityClass with name foo was found");
    assert!(pods.get_opt("x").await?.is_none(), "a forbidden pod is not stored");
    Ok(())
}

#[tokio::test]
async fn a_pod_priority_that_disagrees_with_its_class_is_forbidden() -> Result<()> {
    let (client, _guard) = cluster().await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let wrong = pod("x", json!({"priorityClassName": "system-cluster-critical", "priority": 5}))?;
    let s = rejected(pods.create(&PostParams::default(), &wrong).await)?;
    assert_eq!(s.code, 403);
    assert_eq!(
        s.message,
        "pods \"x\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 2000000000 from the given PriorityClass name"
    );
    // Without a class the computed priority is 0: any other is forbidden too.
    let s = rejected(pods.create(&PostParams::default(), &pod("y", json!({"priority": 10}))?).await)?;
    assert_eq!(s.code, 403, "{s:?}");
    Ok(())
}

#[tokio::test]
async fn pods_without_a_class_get_the_global_default_or_zero() -> Result<()> {
    let (client, _guard) = cluster().await?;
    let classes: Api<PriorityClass> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let plain = pods.create(&PostParams::default(), &pod("plain", json!({}))?).await?;
    assert_eq!(priority_of(&plain), (None, Some(0), Some("PreemptLowerPriority")));

    classes.create(&PostParams::default(), &class("everyday", 50, true, None)).await?;
    let defaulted = pods.create(&PostParams::default(), &pod("defaulted", json!({}))?).await?;
    assert_eq!(priority_of(&defaulted), (Some("everyday"), Some(50), Some("PreemptLowerPriority")));

    let s = rejected(classes.create(&PostParams::default(), &class("second", 60, true, None)).await)?;
    assert_eq!(s.code, 403);
    assert_eq!(
        s.message,
        "priorityclasses.scheduling.k8s.io \"second\" is forbidden: PriorityClass everyday is marked as default. Only one default can exist"
    );
    classes.create(&PostParams::default(), &class("second", 60, false, None)).await?;
    let promote = Patch::Merge(json!({"globalDefault": true}));
    let s = rejected(classes.patch("second", &PatchParams::default(), &promote).await)?;
    assert_eq!(s.code, 403, "{s:?}");
    Ok(())
}

#[tokio::test]
async fn updates_keep_the_resolved_priority() -> Result<()> {
    let (client, _guard) = cluster().await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let created = pods
        .create(&PostParams::default(), &pod("p", json!({"priorityClassName": "system-cluster-critical"}))?)
        .await?;
    // A replace that leaves the resolved fields out keeps them (and so passes validation).
    let mut replacement = created.clone();
    if let Some(spec) = replacement.spec.as_mut() {
        spec.priority = None;
        spec.preemption_policy = None;
    }
    let replaced = pods.replace("p", &PostParams::default(), &replacement).await?;
    assert_eq!(
        priority_of(&replaced),
        (Some("system-cluster-critical"), Some(2_000_000_000), Some("PreemptLowerPriority"))
    );
    let s = rejected(
        pods.patch("p", &PatchParams::default(), &Patch::Merge(json!({"spec": {"priority": 1}}))).await,
    )?;
    assert_eq!(s.code, 422, "pod priority is immutable: {s:?}");
    Ok(())
}

#[tokio::test]
async fn system_names_and_high_values_are_reserved_for_the_system_classes() -> Result<()> {
    let (client, _guard) = cluster().await?;
    let classes: Api<PriorityClass> = Api::all(client);
    let s = rejected(classes.create(&PostParams::default(), &class("system-mine", 10, false, None)).await)?;
    assert_eq!(s.code, 422, "{s:?}");
    assert!(s.message.contains("system-mine is not a known system priority class"), "{}", s.message);
    let s =
        rejected(classes.create(&PostParams::default(), &class("huge", 1_000_000_001, false, None)).await)?;
    assert_eq!(s.code, 422, "{s:?}");
    assert!(
        s.message.contains("maximum allowed value of a user defined priority is 1000000000"),
        "{}",
        s.message
    );
    let change = Patch::Merge(json!({"value": 7}));
    let s = rejected(classes.patch("system-node-critical", &PatchParams::default(), &change).await)?;
    assert_eq!(s.code, 422, "a class's value is immutable: {s:?}");
    Ok(())
}
