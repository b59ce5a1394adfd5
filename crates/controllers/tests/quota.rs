//! The ResourceQuota controller: a quota's status gets its hard limits and the usage of what
//! exists, admission charges creates on top, and deletes (and finished pods) release usage.

mod common;

use std::collections::BTreeMap;

use anyhow::Result;
use common::{eventually, Harness};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ResourceQuota, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

fn from<T: serde::de::DeserializeOwned>(v: Value) -> Result<T> {
    Ok(serde_json::from_value(v)?)
}

fn pod(name: &str, cpu: &str) -> Result<Pod> {
    from(json!({"metadata": {"name": name}, "spec": {"containers": [
        {"name": "app", "image": "busybox", "resources": {"requests": {"cpu": cpu}}},
    ]}}))
}

/// Waits until quota `name`'s `status.used` is `want`.
async fn used_becomes(quotas: &Api<ResourceQuota>, name: &str, want: &[(&str, &str)]) -> Result<()> {
    let want: BTreeMap<String, String> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    eventually(&format!("{name} to use {want:?}"), || async {
        let q = quotas.get(name).await?;
        let used: BTreeMap<String, String> =
            q.status.and_then(|s| s.used).into_iter().flatten().map(|(k, v)| (k, v.0)).collect();
        Ok(if used == want { Ok(()) } else { Err(format!("{used:?}")) })
    })
    .await
}

#[tokio::test]
async fn usage_is_computed_from_what_exists_and_released_on_delete() -> Result<()> {
    let h = Harness::start(&["resourcequota"]).await?;
    let pods = h.pods();
    pods.create(&PostParams::default(), &pod("before", "100m")?).await?;
    let quotas: Api<ResourceQuota> = h.api("default");
    let quota: ResourceQuota = from(json!({"metadata": {"name": "q"},
        "spec": {"hard": {"pods": "3", "requests.cpu": "1", "count/configmaps": "5", "services": "2"}}}))?;
    quotas.create(&PostParams::default(), &quota).await?;
    // `default` has the `kubernetes` service.
    used_becomes(
        &quotas,
        "q",
        &[("count/configmaps", "0"), ("pods", "1"), ("requests.cpu", "100m"), ("services", "1")],
    )
    .await?;
    let hard = quotas.get("q").await?.status.and_then(|s| s.hard).unwrap_or_default();
    assert_eq!(hard.get("requests.cpu").map(|q| q.0.as_str()), Some("1"));

    // Admission charges creates; the controller agrees with it afterwards.
    pods.create(&PostParams::default(), &pod("a", "200m")?).await?;
    pods.create(&PostParams::default(), &pod("b", "300m")?).await?;
    let maps: Api<ConfigMap> = h.api("default");
    maps.create(&PostParams::default(), &from(json!({"metadata": {"name": "m"}}))?).await?;
    let services: Api<Service> = h.api("default");
    services
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}))?,
        )
        .await?;
    used_becomes(
        &quotas,
        "q",
        &[("count/configmaps", "1"), ("pods", "3"), ("requests.cpu", "600m"), ("services", "2")],
    )
    .await?;
    let refused = pods.create(&PostParams::default(), &pod("c", "100m")?).await;
    assert!(matches!(refused, Err(kube::Error::Api(ref s)) if s.code == 403), "{refused:?}");

    // Deletes release usage, and the freed room can be used again.
    pods.delete("a", &DeleteParams::default()).await?;
    maps.delete("m", &DeleteParams::default()).await?;
    services.delete("s", &DeleteParams::default()).await?;
    used_becomes(
        &quotas,
        "q",
        &[("count/configmaps", "0"), ("pods", "2"), ("requests.cpu", "400m"), ("services", "1")],
    )
    .await?;
    pods.create(&PostParams::default(), &pod("c", "100m")?).await?;

    // A finished pod no longer counts.
    let done = json!({"status": {"phase": "Succeeded"}});
    pods.patch_status("b", &PatchParams::default(), &Patch::Merge(&done)).await?;
    used_becomes(
        &quotas,
        "q",
        &[("count/configmaps", "0"), ("pods", "2"), ("requests.cpu", "200m"), ("services", "1")],
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn hard_limits_follow_the_spec_and_count_any_resource() -> Result<()> {
    let h = Harness::start(&["resourcequota"]).await?;
    let deployments: Api<Deployment> = h.api("default");
    let deployment: Deployment = from(json!({"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))?;
    deployments.create(&PostParams::default(), &deployment).await?;
    let quotas: Api<ResourceQuota> = h.api("default");
    let quota: ResourceQuota =
        from(json!({"metadata": {"name": "q"}, "spec": {"hard": {"count/deployments.apps": "1"}}}))?;
    quotas.create(&PostParams::default(), &quota).await?;
    used_becomes(&quotas, "q", &[("count/deployments.apps", "1")]).await?;
    // Raising a limit publishes it and adds the new resource's usage.
    let raise = json!({"spec": {"hard": {"count/deployments.apps": "2", "pods": "10"}}});
    quotas.patch("q", &PatchParams::default(), &Patch::Merge(&raise)).await?;
    used_becomes(&quotas, "q", &[("count/deployments.apps", "1"), ("pods", "0")]).await?;
    let hard = quotas.get("q").await?.status.and_then(|s| s.hard).unwrap_or_default();
    assert_eq!(hard.get("count/deployments.apps").map(|q| q.0.as_str()), Some("2"));
    // The deployment is deleted: its count is released (found at the next recompute, which a
    // quota change triggers here since deployments are not watched).
    deployments.delete("d", &DeleteParams::default()).await?;
    let touch = json!({"metadata": {"labels": {"touched": "yes"}}});
    quotas.patch("q", &PatchParams::default(), &Patch::Merge(&touch)).await?;
    used_becomes(&quotas, "q", &[("count/deployments.apps", "0"), ("pods", "0")]).await?;
    Ok(())
}
