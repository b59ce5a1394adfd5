//! ResourceQuota admission, as kube-apiserver's `ResourceQuota` plugin: creates are checked
//! against every matching quota of the namespace and charged to its `status.used` atomically,
//! with upstream's messages. The quota controller is not running here: each test publishes the
//! quota's status itself, as the controller would.

mod common;

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use common::{from, rejected};
use corten_apiserver::testing::TestCluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, ResourceQuota, Secret, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

/// Creates quota `name` with `hard` and publishes its status (`used` zero, or `used`).
async fn quota(c: &TestCluster, name: &str, spec: Value, used: Option<Value>) -> Result<ResourceQuota> {
    let api: Api<ResourceQuota> = Api::default_namespaced(c.client.clone());
    let created =
        api.create(&PostParams::default(), &from(json!({"metadata": {"name": name}, "spec": spec}))?).await?;
    let hard = spec["hard"].clone();
    let used = used.unwrap_or_else(|| {
        let zeros: serde_json::Map<String, Value> =
            hard.as_object().into_iter().flatten().map(|(k, _)| (k.clone(), json!("0"))).collect();
        Value::Object(zeros)
    });
    let mut q = created;
    q.status = Some(from(json!({"hard": hard, "used": used}))?);
    Ok(api.replace_status(name, &PostParams::default(), &q).await?)
}

async fn used(c: &TestCluster, name: &str) -> Result<BTreeMap<String, String>> {
    let api: Api<ResourceQuota> = Api::default_namespaced(c.client.clone());
    let q = api.get(name).await?;
    let used = q.status.and_then(|s| s.used).context("no status.used")?;
    Ok(used.into_iter().map(|(k, v)| (k, v.0)).collect())
}

fn pod(name: &str, resources: Value) -> Result<Pod> {
    from(json!({"metadata": {"name": name}, "spec": {"containers": [
        {"name": "app", "image": "busybox", "resources": resources},
    ]}}))
}

fn pairs(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn pods_are_charged_and_refused_once_the_quota_is_spent() -> Result<()> {
    let c = TestCluster::start().await?;
    quota(&c, "q", json!({"hard": {"pods": "2", "requests.cpu": "1", "requests.memory": "1Gi"}}), None)
        .await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let small = json!({"requests": {"cpu": "250m", "memory": "128Mi"}});
    pods.create(&PostParams::default(), &pod("a", small.clone())?).await?;
    assert_eq!(
        used(&c, "q").await?,
        pairs(&[("pods", "1"), ("requests.cpu", "250m"), ("requests.memory", "128Mi")])
    );
    // Too much cpu: the message names only what is exceeded.
    let s = rejected(
        pods.create(&PostParams::default(), &pod("big", json!({"requests": {"cpu": "1", "memory": "1Mi"}}))?)
            .await,
    )?;
    assert_eq!(s.code, 403);
    assert_eq!(s.reason, "Forbidden");
    assert_eq!(
        s.message,
        "pods \"big\" is forbidden: exceeded quota: q, requested: requests.cpu=1, used: requests.cpu=250m, limited: requests.cpu=1"
    );
    pods.create(&PostParams::default(), &pod("b", small.clone())?).await?;
    let s = rejected(pods.create(&PostParams::default(), &pod("c", small.clone())?).await)?;
    assert_eq!(
        s.message,
        "pods \"c\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
    );
    assert_eq!(
        used(&c, "q").await?,
        pairs(&[("pods", "2"), ("requests.cpu", "500m"), ("requests.memory", "256Mi")])
    );
    // A dry run is checked but not charged.
    let dry = PostParams { dry_run: true, ..PostParams::default() };
    let s = rejected(pods.create(&dry, &pod("d", small)?).await)?;
    assert_eq!(s.code, 403);
    Ok(())
}

#[tokio::test]
async fn quotas_on_cpu_and_memory_need_every_container_to_state_them() -> Result<()> {
    let c = TestCluster::start().await?;
    quota(&c, "compute", json!({"hard": {"limits.cpu": "4", "requests.memory": "4Gi"}}), None).await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let s = rejected(pods.create(&PostParams::default(), &pod("bare", json!({}))?).await)?;
    assert_eq!(s.code, 403);
    assert_eq!(
        s.message,
        "pods \"bare\" is forbidden: failed quota: compute: must specify limits.cpu for: app; requests.memory for: app"
    );
    pods.create(&PostParams::default(), &pod("full", json!({"limits": {"cpu": "1", "memory": "1Gi"}}))?)
        .await?;
    assert_eq!(used(&c, "compute").await?, pairs(&[("limits.cpu", "1"), ("requests.memory", "1Gi")]));
    Ok(())
}

#[tokio::test]
async fn concurrent_creates_never_exceed_the_quota() -> Result<()> {
    let c = TestCluster::start().await?;
    quota(&c, "q", json!({"hard": {"pods": "5"}}), None).await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (pods, p) = (pods.clone(), pod(&format!("p{i}"), json!({}))?);
        tasks.push(tokio::spawn(async move { pods.create(&PostParams::default(), &p).await }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await? {
            Ok(_) => ok += 1,
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("exceeded quota: q") => {
                refused += 1
            }
            Err(e) => bail!("unexpected failure: {e}"),
        }
    }
    assert_eq!((ok, refused), (5, 15));
    assert_eq!(pods.list(&Default::default()).await?.items.len(), 5);
    assert_eq!(used(&c, "q").await?, pairs(&[("pods", "5")]));
    Ok(())
}

#[tokio::test]
async fn a_quota_without_computed_usage_refuses_what_it_tracks() -> Result<()> {
    let c = TestCluster::start().await?;
    quota(&c, "half", json!({"hard": {"pods": "5", "secrets": "5"}}), Some(json!({"secrets": "0"}))).await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let s = rejected(pods.create(&PostParams::default(), &pod("p", json!({}))?).await)?;
    assert_eq!(s.code, 403);
    assert_eq!(s.message, "pods \"p\" is forbidden: status unknown for quota: half, resources: pods");
    // A quota whose status was never published (status.hard unset) is not applied yet.
    let api: Api<ResourceQuota> = Api::default_namespaced(c.client.clone());
    api.create(
        &PostParams::default(),
        &from(json!({"metadata": {"name": "fresh"}, "spec": {"hard": {"configmaps": "0"}}}))?,
    )
    .await?;
    let maps: Api<ConfigMap> = Api::default_namespaced(c.client.clone());
    maps.create(&PostParams::default(), &from(json!({"metadata": {"name": "m"}}))?).await?;
    Ok(())
}

#[tokio::test]
async fn object_counts_cover_legacy_names_and_any_resource() -> Result<()> {
    let c = TestCluster::start().await?;
    quota(
        &c,
        "counts",
        json!({"hard": {"secrets": "1", "count/configmaps": "1", "count/deployments.apps": "1"}}),
        None,
    )
    .await?;
    let secrets: Api<Secret> = Api::default_namespaced(c.client.clone());
    secrets.create(&PostParams::default(), &from(json!({"metadata": {"name": "s1"}}))?).await?;
    let s =
        rejected(secrets.create(&PostParams::default(), &from(json!({"metadata": {"name": "s2"}}))?).await)?;
    assert_eq!(s.message, "secrets \"s2\" is forbidden: exceeded quota: counts, requested: secrets=1, used: secrets=1, limited: secrets=1");
    let maps: Api<ConfigMap> = Api::default_namespaced(c.client.clone());
    maps.create(&PostParams::default(), &from(json!({"metadata": {"name": "m1"}}))?).await?;
    let s = rejected(maps.create(&PostParams::default(), &from(json!({"metadata": {"name": "m2"}}))?).await)?;
    assert_eq!(
        s.message,
        "configmaps \"m2\" is forbidden: exceeded quota: counts, requested: count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1"
    );
    let deployment = |name: &str| -> Result<Deployment> {
        from(json!({"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))
    };
    let deployments: Api<Deployment> = Api::default_namespaced(c.client.clone());
    deployments.create(&PostParams::default(), &deployment("d1")?).await?;
    let s = rejected(deployments.create(&PostParams::default(), &deployment("d2")?).await)?;
    assert_eq!(
        s.message,
        "deployments.apps \"d2\" is forbidden: exceeded quota: counts, requested: count/deployments.apps=1, used: count/deployments.apps=1, limited: count/deployments.apps=1"
    );
    assert_eq!(
        used(&c, "counts").await?,
        pairs(&[("count/configmaps", "1"), ("count/deployments.apps", "1"), ("secrets", "1")])
    );
    Ok(())
}

#[tokio::test]
async fn services_are_charged_for_node_ports_and_load_balancers() -> Result<()> {
    let c = TestCluster::start().await?;
    quota(
        &c,
        "svc",
        json!({"hard": {"services": "10", "services.nodeports": "2", "services.loadbalancers": "0"}}),
        None,
    )
    .await?;
    let services: Api<Service> = Api::default_namespaced(c.client.clone());
    let svc = |name: &str, ty: &str, ports: &[i32]| -> Result<Service> {
        let ports: Vec<Value> = ports.iter().map(|p| json!({"name": format!("p{p}"), "port": p})).collect();
        from(
            json!({"metadata": {"name": name}, "spec": {"type": ty, "selector": {"app": "x"}, "ports": ports}}),
        )
    };
    services.create(&PostParams::default(), &svc("plain", "ClusterIP", &[80])?).await?;
    services.create(&PostParams::default(), &svc("np", "NodePort", &[80])?).await?;
    let s = rejected(services.create(&PostParams::default(), &svc("np2", "NodePort", &[80, 443])?).await)?;
    assert_eq!(
        s.message,
        "services \"np2\" is forbidden: exceeded quota: svc, requested: services.nodeports=2, used: services.nodeports=1, limited: services.nodeports=2"
    );
    let s = rejected(services.create(&PostParams::default(), &svc("lb", "LoadBalancer", &[80])?).await)?;
    assert_eq!(
        s.message,
        "services \"lb\" is forbidden: exceeded quota: svc, requested: services.loadbalancers=1, used: services.loadbalancers=0, limited: services.loadbalancers=0"
    );
    // Turning a ClusterIP service into a NodePort one is charged too.
    let to_node_port = json!({"spec": {"type": "NodePort"}});
    services.patch("plain", &PatchParams::default(), &Patch::Merge(&to_node_port)).await?;
    assert_eq!(
        used(&c, "svc").await?,
        pairs(&[("services", "2"), ("services.loadbalancers", "0"), ("services.nodeports", "2")])
    );
    Ok(())
}

#[tokio::test]
async fn claims_are_charged_for_storage_per_class_and_growth() -> Result<()> {
    let c = TestCluster::start().await?;
    quota(
        &c,
        "storage",
        json!({"hard": {"requests.storage": "10Gi", "gold.storageclass.storage.k8s.io/requests.storage": "2Gi"}}),
        None,
    )
    .await?;
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(c.client.clone());
    let claim = |name: &str, class: &str, size: &str| -> Result<PersistentVolumeClaim> {
        from(
            json!({"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
            "resources": {"requests": {"storage": size}}}}),
        )
    };
    claims.create(&PostParams::default(), &claim("a", "gold", "1Gi")?).await?;
    let s = rejected(claims.create(&PostParams::default(), &claim("b", "gold", "2Gi")?).await)?;
    assert_eq!(
        s.message,
        "persistentvolumeclaims \"b\" is forbidden: exceeded quota: storage, requested: gold.storageclass.storage.k8s.io/requests.storage=2Gi, used: gold.storageclass.storage.k8s.io/requests.storage=1Gi, limited: gold.storageclass.storage.k8s.io/requests.storage=2Gi"
    );
    claims.create(&PostParams::default(), &claim("c", "silver", "8Gi")?).await?;
    let grow = json!({"spec": {"resources": {"requests": {"storage": "3Gi"}}}});
    let s = rejected(claims.patch("a", &PatchParams::default(), &Patch::Merge(&grow)).await)?;
    assert_eq!(s.code, 403);
    assert!(s.message.contains("exceeded quota: storage, requested: "), "{}", s.message);
    assert_eq!(
        used(&c, "storage").await?,
        pairs(&[("gold.storageclass.storage.k8s.io/requests.storage", "1Gi"), ("requests.storage", "9Gi")])
    );
    Ok(())
}

#[tokio::test]
async fn scoped_quotas_only_charge_the_pods_they_select() -> Result<()> {
    let c = TestCluster::start().await?;
    quota(&c, "best-effort", json!({"hard": {"pods": "1"}, "scopes": ["BestEffort"]}), None).await?;
    quota(&c, "terminating", json!({"hard": {"pods": "1"}, "scopes": ["Terminating"]}), None).await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    pods.create(&PostParams::default(), &pod("be", json!({}))?).await?;
    let s = rejected(pods.create(&PostParams::default(), &pod("be2", json!({}))?).await)?;
    assert!(s.message.contains("exceeded quota: best-effort"), "{}", s.message);
    // Burstable pods are outside the BestEffort scope.
    pods.create(&PostParams::default(), &pod("burst", json!({"requests": {"cpu": "100m"}}))?).await?;
    let mut deadline = pod("job", json!({"requests": {"cpu": "100m"}}))?;
    if let Some(spec) = deadline.spec.as_mut() {
        spec.active_deadline_seconds = Some(60);
    }
    pods.create(&PostParams::default(), &deadline).await?;
    assert_eq!(used(&c, "best-effort").await?, pairs(&[("pods", "1")]));
    assert_eq!(used(&c, "terminating").await?, pairs(&[("pods", "1")]));
    Ok(())
}
