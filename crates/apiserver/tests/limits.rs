//! LimitRanger admission, as kube-apiserver's `LimitRanger` plugin: LimitRange defaults land on
//! new pods' containers, min/max/ratio violations of pods and claims are forbidden with
//! upstream's messages, and LimitRange objects are defaulted and validated.

mod common;

use anyhow::Result;
use common::{from, rejected};
use corten_apiserver::testing::TestCluster;
use k8s_openapi::api::core::v1::{LimitRange, PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

async fn limit_range(c: &TestCluster, name: &str, limits: Value) -> Result<LimitRange> {
    let api: Api<LimitRange> = Api::default_namespaced(c.client.clone());
    Ok(api
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": name}, "spec": {"limits": limits}}))?,
        )
        .await?)
}

fn pod(name: &str, resources: Value) -> Result<Pod> {
    from(json!({"metadata": {"name": name}, "spec": {"containers": [
        {"name": "app", "image": "busybox", "resources": resources},
    ]}}))
}

fn resources_of(p: &Pod) -> Result<Value> {
    let c = p.spec.as_ref().map(|s| &s.containers[0]);
    Ok(serde_json::to_value(c.and_then(|c| c.resources.as_ref()))?)
}

#[tokio::test]
async fn container_defaults_fill_what_a_pod_leaves_out() -> Result<()> {
    let c = TestCluster::start().await?;
    limit_range(
        &c,
        "defaults",
        json!([{"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"}}]),
    )
    .await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let created = pods.create(&PostParams::default(), &pod("bare", json!({}))?).await?;
    assert_eq!(
        resources_of(&created)?,
        json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}})
    );
    assert_eq!(
        created.metadata.annotations.as_ref().and_then(|a| a.get("kubernetes.io/limit-ranger")).map(String::as_str),
        Some("LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app")
    );
    // What the pod states is kept; a stated limit is also its request (pod defaulting runs first).
    let own = pods.create(&PostParams::default(), &pod("own", json!({"limits": {"cpu": "2"}}))?).await?;
    assert_eq!(
        resources_of(&own)?,
        json!({"limits": {"cpu": "2", "memory": "256Mi"}, "requests": {"cpu": "2", "memory": "256Mi"}})
    );
    Ok(())
}

#[tokio::test]
async fn limit_range_defaults_come_from_max_and_min() -> Result<()> {
    let c = TestCluster::start().await?;
    let lr = limit_range(
        &c,
        "bounds",
        json!([{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}}]),
    )
    .await?;
    let item = serde_json::to_value(lr.spec.as_ref().map(|s| &s.limits[0]))?;
    assert_eq!(item["default"], json!({"cpu": "2"}));
    assert_eq!(item["defaultRequest"], json!({"cpu": "2", "memory": "64Mi"}));
    Ok(())
}

#[tokio::test]
async fn container_bounds_are_forbidden_with_upstream_messages() -> Result<()> {
    let c = TestCluster::start().await?;
    limit_range(
        &c,
        "bounds",
        json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "100Mi"},
            "default": {"cpu": "1", "memory": "1Gi"}, "defaultRequest": {"cpu": "500m", "memory": "100Mi"}}]),
    )
    .await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let cases = [
        ("over-max", json!({"limits": {"cpu": "2"}}), "maximum cpu usage per Container is 1, but limit is 2"),
        (
            "under-min",
            json!({"requests": {"memory": "50Mi"}}),
            "minimum memory usage per Container is 100Mi, but request is 50Mi",
        ),
    ];
    for (name, resources, why) in cases {
        let s = rejected(pods.create(&PostParams::default(), &pod(name, resources)?).await)?;
        assert_eq!(s.code, 403, "{name}");
        assert_eq!(s.reason, "Forbidden", "{name}");
        assert_eq!(s.message, format!("pods \"{name}\" is forbidden: {why}"));
    }
    // Both at once are reported together.
    let both = json!({"limits": {"cpu": "2"}, "requests": {"memory": "50Mi"}});
    let s = rejected(pods.create(&PostParams::default(), &pod("both", both)?).await)?;
    assert_eq!(
        s.message,
        "pods \"both\" is forbidden: [minimum memory usage per Container is 100Mi, but request is 50Mi, maximum cpu usage per Container is 1, but limit is 2]"
    );
    pods.create(&PostParams::default(), &pod("fits", json!({}))?).await?;
    Ok(())
}

#[tokio::test]
async fn limit_to_request_ratio_and_pod_totals_are_enforced() -> Result<()> {
    let c = TestCluster::start().await?;
    limit_range(
        &c,
        "ratio",
        json!([{"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}, {"type": "Pod", "max": {"memory": "1Gi"}}]),
    )
    .await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let s = rejected(
        pods.create(
            &PostParams::default(),
            &pod("greedy", json!({"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "500m"}}))?,
        )
        .await,
    )?;
    assert_eq!(
        s.message,
        "pods \"greedy\" is forbidden: cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000"
    );
    let two: Pod = from(json!({"metadata": {"name": "two"}, "spec": {"containers": [
        {"name": "a", "image": "busybox", "resources": {"limits": {"cpu": "1", "memory": "768Mi"}}},
        {"name": "b", "image": "busybox", "resources": {"limits": {"cpu": "1", "memory": "512Mi"}}},
    ]}}))?;
    let s = rejected(pods.create(&PostParams::default(), &two).await)?;
    assert_eq!(
        s.message,
        "pods \"two\" is forbidden: maximum memory usage per Pod is 1Gi, but limit is 1280Mi"
    );
    Ok(())
}

#[tokio::test]
async fn claims_are_held_to_storage_bounds_on_create_and_update() -> Result<()> {
    let c = TestCluster::start().await?;
    limit_range(
        &c,
        "storage",
        json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}]),
    )
    .await?;
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(c.client.clone());
    let claim = |name: &str, size: &str| -> Result<PersistentVolumeClaim> {
        from(json!({"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}}}}))
    };
    let s = rejected(claims.create(&PostParams::default(), &claim("small", "500Mi")?).await)?;
    assert_eq!(s.code, 403);
    assert_eq!(
        s.message,
        "persistentvolumeclaims \"small\" is forbidden: minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"
    );
    let s = rejected(claims.create(&PostParams::default(), &claim("big", "20Gi")?).await)?;
    assert_eq!(
        s.message,
        "persistentvolumeclaims \"big\" is forbidden: maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"
    );
    claims.create(&PostParams::default(), &claim("ok", "5Gi")?).await?;
    let grow = json!({"spec": {"resources": {"requests": {"storage": "11Gi"}}}});
    let s = rejected(claims.patch("ok", &PatchParams::default(), &Patch::Merge(&grow)).await)?;
    assert_eq!(s.code, 403);
    Ok(())
}

#[tokio::test]
async fn inconsistent_limit_ranges_are_invalid() -> Result<()> {
    let c = TestCluster::start().await?;
    let api: Api<LimitRange> = Api::default_namespaced(c.client.clone());
    let bad = |limits: Value| -> Result<LimitRange> {
        from(json!({"metadata": {"name": "bad"}, "spec": {"limits": limits}}))
    };
    let s = rejected(
        api.create(
            &PostParams::default(),
            &bad(json!([{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]))?,
        )
        .await,
    )?;
    assert_eq!(s.code, 422);
    assert!(
        s.message.contains(
            "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1"
        ),
        "{}",
        s.message
    );
    let s = rejected(
        api.create(&PostParams::default(), &bad(json!([{"type": "Pod", "default": {"cpu": "1"}}]))?).await,
    )?;
    assert!(
        s.message.contains("spec.limits[0].default: Forbidden: may not be specified when `type` is 'Pod'"),
        "{}",
        s.message
    );
    let s = rejected(
        api.create(&PostParams::default(), &bad(json!([{"type": "PersistentVolumeClaim"}]))?).await,
    )?;
    assert!(s.message.contains("either minimum or maximum storage value is required"), "{}", s.message);
    Ok(())
}
