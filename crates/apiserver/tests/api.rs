//! The API server in process: `kube::Client` on the router over `MemStore`, no socket.
//! Each test is one behaviour of kube-apiserver that clients rely on.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use corten_apiserver::{ApiConfig, ApiServer, Identity};
use corten_store::{MemStore, MemStoreConfig, Store};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::Status;
use kube::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;

struct Cluster {
    client: Client,
    store: MemStore,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn cluster_with(config: ApiConfig) -> Result<Cluster> {
    let store = MemStore::new(MemStoreConfig::default());
    let shutdown = CancellationToken::new();
    let server = ApiServer::new(store.clone(), config, shutdown.clone());
    server.bootstrap().await.context("bootstrap")?;
    let router = server.router();
    let service = tower::ServiceBuilder::new()
        .map_request(|mut req: http::Request<kube::client::Body>| {
            req.extensions_mut().insert(Identity::admin());
            req
        })
        .service(router);
    let client = Client::new(service, "default");
    Ok(Cluster { client, store, _shutdown: shutdown.drop_guard() })
}

async fn cluster() -> Result<Cluster> {
    cluster_with(ApiConfig::default()).await
}

fn configmap(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.data = Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    cm
}

/// The `Status` of a failed request.
fn status(e: kube::Error) -> Result<Status> {
    match e {
        kube::Error::Api(s) => Ok(*s),
        other => bail!("expected an API error, got {other}"),
    }
}

fn deployment(name: &str, image: &str) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]}
            }
        }
    }))?)
}

#[tokio::test]
async fn create_get_list_and_the_usual_errors() -> Result<()> {
    let c = cluster().await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let created = cms.create(&PostParams::default(), &configmap("a", &[("k", "v")])).await?;
    let uid = created.metadata.uid.clone().context("uid set")?;
    assert!(created.metadata.creation_timestamp.is_some());
    let rv: u64 = created.metadata.resource_version.clone().context("rv")?.parse()?;
    assert!(rv > 1);

    let got = cms.get("a").await?;
    assert_eq!(got.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(got.data.context("data")?.get("k").map(String::as_str), Some("v"));

    let again = status(cms.create(&PostParams::default(), &configmap("a", &[])).await.err().context("dup")?)?;
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(again.message, "configmaps \"a\" already exists");

    let missing = status(cms.get("nope").await.err().context("missing")?)?;
    assert_eq!((missing.code, missing.message.as_str()), (404, "configmaps \"nope\" not found"));

    let nons: Api<ConfigMap> = Api::namespaced(c.client.clone(), "ghost");
    let e = status(nons.create(&PostParams::default(), &configmap("a", &[])).await.err().context("ns")?)?;
    assert_eq!((e.code, e.message.as_str()), (404, "namespaces \"ghost\" not found"));

    let bad =
        status(cms.create(&PostParams::default(), &configmap("Bad_Name", &[])).await.err().context("name")?)?;
    assert_eq!((bad.code, bad.reason.as_str()), (422, "Invalid"));
    assert!(
        bad.message.starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value"),
        "{}",
        bad.message
    );

    let list = cms.list(&ListParams::default()).await?;
    assert_eq!(list.items.iter().filter_map(|c| c.metadata.name.clone()).collect::<Vec<_>>(), ["a"]);
    let all: Api<ConfigMap> = Api::all(c.client.clone());
    assert_eq!(all.list(&ListParams::default()).await?.items.len(), 1);
    Ok(())
}

#[tokio::test]
async fn generate_name_gives_unique_names() -> Result<()> {
    let c = cluster().await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let mut cm = configmap("", &[]);
    cm.metadata.name = None;
    cm.metadata.generate_name = Some("gen-".into());
    let a = cms.create(&PostParams::default(), &cm).await?.metadata.name.context("name")?;
    let b = cms.create(&PostParams::default(), &cm).await?.metadata.name.context("name")?;
    assert!(a.starts_with("gen-") && a.len() == 9, "{a}");
    assert_ne!(a, b);
    Ok(())
}

#[tokio::test]
async fn stale_resource_version_is_a_conflict() -> Result<()> {
    let c = cluster().await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let first = cms.create(&PostParams::default(), &configmap("a", &[("n", "1")])).await?;
    let mut update = first.clone();
    update.data = Some(BTreeMap::from([("n".into(), "2".into())]));
    let second = cms.replace("a", &PostParams::default(), &update).await?;
    assert_ne!(second.metadata.resource_version, first.metadata.resource_version);
    // Replaying the update with the old resourceVersion must fail.
    let e = status(cms.replace("a", &PostParams::default(), &update).await.err().context("stale")?)?;
    assert_eq!(e.code, 409);
    assert!(e.message.contains("the object has been modified"), "{}", e.message);
    // A no-op update writes nothing.
    let same = cms.replace("a", &PostParams::default(), &second).await?;
    assert_eq!(same.metadata.resource_version, second.metadata.resource_version);
    Ok(())
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() -> Result<()> {
    let c = cluster().await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    for (name, tier) in [("a", "web"), ("b", "db"), ("c", "web")] {
        let mut cm = configmap(name, &[]);
        cm.metadata.labels = Some(BTreeMap::from([("tier".into(), tier.into())]));
        cms.create(&PostParams::default(), &cm).await?;
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items.into_iter().filter_map(|c| c.metadata.name).collect::<Vec<_>>()
    };
    assert_eq!(names(cms.list(&ListParams::default().labels("tier=web")).await?), ["a", "c"]);
    assert_eq!(names(cms.list(&ListParams::default().labels("tier in (db)")).await?), ["b"]);
    assert_eq!(names(cms.list(&ListParams::default().fields("metadata.name=c")).await?), ["c"]);
    let e = status(cms.list(&ListParams::default().fields("spec.x=1")).await.err().context("bad field")?)?;
    assert_eq!((e.code, e.message.as_str()), (400, "field label not supported: spec.x"));
    Ok(())
}

#[tokio::test]
async fn pagination_is_consistent_and_expires_after_compaction() -> Result<()> {
    let c = cluster().await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    for i in 0..7 {
        cms.create(&PostParams::default(), &configmap(&format!("cm-{i}"), &[])).await?;
    }
    let first = cms.list(&ListParams::default().limit(3)).await?;
    assert_eq!(first.items.len(), 3);
    assert_eq!(first.metadata.remaining_item_count, Some(4));
    let token = first.metadata.continue_.clone().context("continue token")?;
    // Written after the first page: not part of this list's snapshot.
    cms.create(&PostParams::default(), &configmap("cm-late", &[])).await?;
    let mut seen: Vec<String> = first.items.iter().filter_map(|c| c.metadata.name.clone()).collect();
    let mut next = Some(token);
    while let Some(token) = next {
        let page = cms.list(&ListParams::default().limit(3).continue_token(&token)).await?;
        seen.extend(page.items.iter().filter_map(|c| c.metadata.name.clone()));
        next = page.metadata.continue_.filter(|t| !t.is_empty());
    }
    assert_eq!(seen, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());

    let page = cms.list(&ListParams::default().limit(2)).await?;
    let token = page.metadata.continue_.context("token")?;
    // Compact past the revision the token was read at.
    cms.create(&PostParams::default(), &configmap("cm-after", &[])).await?;
    let now = c.store.status().await?.revision;
    c.store.compact(now).await?;
    let e = status(
        cms.list(&ListParams::default().limit(2).continue_token(&token)).await.err().context("expired")?,
    )?;
    assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
    Ok(())
}

#[tokio::test]
async fn watch_streams_added_modified_deleted_and_bookmarks() -> Result<()> {
    let c = cluster_with(ApiConfig { bookmark_interval: Duration::from_millis(200), ..ApiConfig::default() })
        .await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let list = cms.list(&ListParams::default()).await?;
    let rv = list.metadata.resource_version.context("list rv")?;
    let mut stream =
        cms.watch(&WatchParams::default().labels("w=1").disable_bookmarks().timeout(20), &rv).await?.boxed();

    let mut cm = configmap("w", &[("n", "1")]);
    cm.metadata.labels = Some(BTreeMap::from([("w".into(), "1".into())]));
    cms.create(&PostParams::default(), &cm).await?;
    cms.create(&PostParams::default(), &configmap("ignored", &[])).await?;
    cms.patch("w", &PatchParams::default(), &Patch::Merge(json!({"data": {"n": "2"}}))).await?;
    // Leaving the selection is a DELETED event for this watch.
    cms.patch("w", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"w": "0"}}})))
        .await?;

    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await?? {
            Some(WatchEvent::Added(o)) => kinds.push(("ADDED", o.metadata.name)),
            Some(WatchEvent::Modified(o)) => kinds.push(("MODIFIED", o.metadata.name)),
            Some(WatchEvent::Deleted(o)) => kinds.push(("DELETED", o.metadata.name)),
            Some(other) => bail!("unexpected event {other:?}"),
            None => bail!("watch ended early"),
        }
    }
    let w = Some("w".to_string());
    assert_eq!(kinds, [("ADDED", w.clone()), ("MODIFIED", w.clone()), ("DELETED", w)]);

    let mut bookmarks = cms.watch(&WatchParams::default().timeout(10), "0").await?.boxed();
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ev) = bookmarks.try_next().await? {
            if let WatchEvent::Bookmark(b) = ev {
                return Ok::<_, kube::Error>(Some(b.metadata.resource_version));
            }
        }
        Ok(None)
    })
    .await??;
    assert!(found.is_some_and(|rv| !rv.is_empty()), "a bookmark carries a resourceVersion");
    Ok(())
}

#[tokio::test]
async fn watch_from_a_compacted_revision_gets_410_and_the_watcher_relists() -> Result<()> {
    let c = cluster().await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let first = cms.create(&PostParams::default(), &configmap("old", &[])).await?;
    let old_rv = first.metadata.resource_version.context("rv")?;
    cms.create(&PostParams::default(), &configmap("new", &[])).await?;
    cms.create(&PostParams::default(), &configmap("newer", &[])).await?;
    let now = c.store.status().await?.revision;
    c.store.compact(now).await?;
    let mut stream = cms.watch(&WatchParams::default().timeout(5), &old_rv).await?.boxed();
    match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await?? {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => bail!("expected a 410 ERROR event, got {other:?}"),
    }
    // kube-runtime's watcher re-lists after a 410 and sees every object.
    let (reader, writer) = kube::runtime::reflector::store();
    let rf = kube::runtime::reflector(writer, kube::runtime::watcher(cms.clone(), Default::default()));
    let mut rf = rf.boxed();
    tokio::time::timeout(Duration::from_secs(5), async {
        while reader.state().len() < 3 {
            rf.try_next().await?;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    Ok(())
}

#[tokio::test]
async fn status_and_main_resource_each_ignore_the_other_half() -> Result<()> {
    let c = cluster().await?;
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let d = deploys.create(&PostParams::default(), &deployment("web", "busybox:1")?).await?;
    assert_eq!(d.metadata.generation, Some(1));
    let spec = d.spec.clone().context("spec")?;
    assert_eq!(spec.revision_history_limit, Some(10), "defaults applied");

    let patched = deploys
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 2}, "spec": {"replicas": 9}})),
        )
        .await?;
    assert_eq!(patched.status.and_then(|s| s.replicas), Some(2));
    assert_eq!(patched.spec.and_then(|s| s.replicas), Some(2), "status endpoint ignores spec");
    assert_eq!(patched.metadata.generation, Some(1));

    let patched = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 7}, "spec": {"replicas": 3}})),
        )
        .await?;
    assert_eq!(patched.status.and_then(|s| s.replicas), Some(2), "main endpoint ignores status");
    assert_eq!(patched.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(patched.metadata.generation, Some(2), "a spec change bumps generation");
    Ok(())
}

#[tokio::test]
async fn json_merge_and_strategic_patches() -> Result<()> {
    let c = cluster().await?;
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    deploys.create(&PostParams::default(), &deployment("web", "busybox:1")?).await?;
    // Strategic merge: containers merge by name, a new sidecar is added.
    let smp = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "busybox:2"},
        {"name": "side", "image": "busybox:1"}
    ]}}}});
    let d = deploys.patch("web", &PatchParams::default(), &Patch::Strategic(smp)).await?;
    let images: Vec<_> = d
        .spec
        .context("spec")?
        .template
        .spec
        .context("pod")?
        .containers
        .into_iter()
        .map(|c| (c.name, c.image))
        .collect();
    assert_eq!(
        images,
        [("main".into(), Some("busybox:2".into())), ("side".into(), Some("busybox:1".into()))]
    );

    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "test", "path": "/metadata/name", "value": "web"}
    ]))?;
    let d = deploys.patch("web", &PatchParams::default(), &Patch::<()>::Json(jp)).await?;
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(5));

    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/metadata/name", "value": "other"}]))?;
    let e = deploys
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(failing))
        .await
        .err()
        .context("test op")?;
    assert!(status(e)?.code >= 400);
    Ok(())
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() -> Result<()> {
    let c = cluster().await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let mut cm = configmap("held", &[]);
    cm.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &cm).await?;
    cms.delete("held", &DeleteParams::default()).await?;
    let marked = cms.get("held").await?;
    assert!(marked.metadata.deletion_timestamp.is_some());
    let e = status(
        cms.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["a", "example.com/hold"]}})),
        )
        .await
        .err()
        .context("new finalizer")?,
    )?;
    assert_eq!(e.code, 403);
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await?;
    assert_eq!(status(cms.get("held").await.err().context("gone")?)?.code, 404);
    Ok(())
}

#[tokio::test]
async fn delete_preconditions_and_dry_run() -> Result<()> {
    let c = cluster().await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    cms.create(&PostParams::default(), &configmap("a", &[])).await?;
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions { uid: Some("wrong".into()), resource_version: None }),
        ..Default::default()
    };
    assert_eq!(status(cms.delete("a", &dp).await.err().context("precondition")?)?.code, 409);
    cms.delete("a", &DeleteParams { dry_run: true, ..Default::default() }).await?;
    assert!(cms.get("a").await.is_ok(), "dry run deletes nothing");
    let pp = PostParams { dry_run: true, ..Default::default() };
    cms.create(&pp, &configmap("b", &[])).await?;
    assert_eq!(status(cms.get("b").await.err().context("dry create")?)?.code, 404);
    Ok(())
}

#[tokio::test]
async fn scale_subresource_reads_and_sets_replicas() -> Result<()> {
    let c = cluster().await?;
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    deploys.create(&PostParams::default(), &deployment("web", "busybox:1")?).await?;
    let scale = deploys.get_scale("web").await?;
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(scale.status.map(|s| s.selector), Some(Some("app=web".to_string())));
    deploys
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}})))
        .await?;
    assert_eq!(deploys.get("web").await?.spec.and_then(|s| s.replicas), Some(4));
    Ok(())
}

#[tokio::test]
async fn services_get_unique_cluster_ips_and_node_ports_released_on_delete() -> Result<()> {
    let c = cluster().await?;
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let k = svcs.get("kubernetes").await?;
    assert_eq!(k.spec.as_ref().and_then(|s| s.cluster_ip.clone()).as_deref(), Some("10.43.0.1"));
    let svc = |name: &str, ip: Option<&str>| -> Result<Service> {
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"type": "NodePort", "clusterIP": ip, "ports": [{"port": 80}], "selector": {"app": "x"}}
        }))?)
    };
    let a = svcs.create(&PostParams::default(), &svc("a", None)?).await?;
    let b = svcs.create(&PostParams::default(), &svc("b", None)?).await?;
    let ip = |s: &Service| s.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default();
    let port = |s: &Service| {
        s.spec.as_ref().and_then(|s| s.ports.as_ref()).and_then(|p| p[0].node_port).unwrap_or(0)
    };
    assert_ne!(ip(&a), ip(&b));
    assert!((30000..=32767).contains(&port(&a)));
    assert_ne!(port(&a), port(&b));
    let taken = ip(&a);
    let e = status(
        svcs.create(&PostParams::default(), &svc("c", Some(&taken))?).await.err().context("taken ip")?,
    )?;
    assert_eq!(e.code, 422);
    assert!(e.message.contains("provided IP is already allocated"), "{}", e.message);
    svcs.delete("a", &DeleteParams::default()).await?;
    let c2 = svcs.create(&PostParams::default(), &svc("c", Some(&taken))?).await?;
    assert_eq!(ip(&c2), taken, "a deleted service's IP is free again");
    Ok(())
}

#[tokio::test]
async fn system_namespaces_exist_and_pods_get_defaults() -> Result<()> {
    let c = cluster().await?;
    let nss: Api<Namespace> = Api::all(c.client.clone());
    let names: Vec<String> =
        nss.list(&ListParams::default()).await?.items.into_iter().filter_map(|n| n.metadata.name).collect();
    for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert!(names.contains(&ns.to_string()), "{ns} in {names:?}");
    }
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )?;
    let pod = pods.create(&PostParams::default(), &pod).await?;
    let spec = pod.spec.context("spec")?;
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Pending"));
    let e = status(
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "q"}, "spec": {"containers": []}}))?,
        )
        .await
        .err()
        .context("no containers")?,
    )?;
    assert_eq!(e.message, "Pod \"q\" is invalid: spec.containers: Required value");
    Ok(())
}

#[tokio::test]
async fn discovery_finds_every_group_the_registry_serves() -> Result<()> {
    let c = cluster().await?;
    let discovery = kube::Discovery::new(c.client.clone()).run().await?;
    let (ar, caps) = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk("apps", "v1", "Deployment"))
        .context("apps/v1 Deployment")?;
    assert_eq!(ar.plural, "deployments");
    assert!(caps
        .subresources
        .iter()
        .any(|(sub, _)| sub.plural == "deployments/scale" || sub.plural == "scale"));
    assert!(discovery.has_group("rbac.authorization.k8s.io"));
    Ok(())
}

#[tokio::test]
async fn bad_requests_get_status_errors_and_write_nothing() -> Result<()> {
    let c = cluster().await?;
    let before = c.store.status().await?.revision;
    let send = |method: &str, path: &str, ctype: &str, body: Vec<u8>| {
        let client = c.client.clone();
        let req = http::Request::builder().method(method).uri(path).header("content-type", ctype).body(body);
        async move {
            let req = req?;
            let resp = client.send(req.map(kube::client::Body::from)).await?;
            Ok::<_, anyhow::Error>(resp.status().as_u16())
        }
    };
    assert_eq!(
        send("POST", "/api/v1/namespaces/default/configmaps", "application/json", b"{nope".to_vec()).await?,
        400
    );
    let wrong_kind = br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#.to_vec();
    assert_eq!(
        send("POST", "/api/v1/namespaces/default/configmaps", "application/json", wrong_kind).await?,
        400
    );
    let huge =
        format!(r#"{{"metadata":{{"name":"x"}},"data":{{"k":"{}"}}}}"#, "a".repeat(4 << 20)).into_bytes();
    assert_eq!(send("POST", "/api/v1/namespaces/default/configmaps", "application/json", huge).await?, 413);
    assert_eq!(send("GET", "/apis/nope.example.com/v1/things", "application/json", Vec::new()).await?, 404);
    let configmaps = "/api/v1/namespaces/default/configmaps";
    assert_eq!(send("POST", configmaps, "application/x-unknown", b"x".to_vec()).await?, 415);
    // Not the `k8s\0` protobuf envelope.
    assert_eq!(send("POST", configmaps, "application/vnd.kubernetes.protobuf", b"x".to_vec()).await?, 400);
    let wrong_type = br#"{"metadata":{"name":"x"},"data":"oops"}"#.to_vec();
    assert_eq!(
        send("POST", "/api/v1/namespaces/default/configmaps", "application/json", wrong_type).await?,
        400
    );
    assert_eq!(c.store.status().await?.revision, before, "nothing was written");
    Ok(())
}

#[tokio::test]
async fn unauthenticated_requests_get_401() -> Result<()> {
    let store = MemStore::new(MemStoreConfig::default());
    let server = ApiServer::new(store, ApiConfig::default(), CancellationToken::new());
    let client = Client::new(server.router(), "default");
    let e = Api::<ConfigMap>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .err()
        .context("401")?;
    assert_eq!(status(e)?.code, 401);
    let resp = client.send(http::Request::get("/healthz").body(kube::client::Body::empty())?).await?;
    assert_eq!(resp.status().as_u16(), 200, "health is public");
    Ok(())
}

/// What `kubectl apply --server-side` sends for a Deployment.
fn applied_web(labels: serde_json::Value, replicas: i64) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

/// (manager, operation, subresource) of each managedFields entry, in the server's order.
fn managers_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Vec<(String, String, String)> {
    meta.managed_fields
        .iter()
        .flatten()
        .map(|e| {
            (
                e.manager.clone().unwrap_or_default(),
                e.operation.clone().unwrap_or_default(),
                e.subresource.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn fields_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    manager: &str,
) -> serde_json::Value {
    meta.managed_fields
        .iter()
        .flatten()
        .find(|e| e.manager.as_deref() == Some(manager))
        .and_then(|e| e.fields_v1.as_ref())
        .map(|f| f.0.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn server_side_apply_creates_then_removes_what_the_manager_stopped_applying() -> Result<()> {
    let c = cluster().await?;
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let pp = PatchParams::apply("mgr");
    let d = deploys
        .patch("web", &pp, &Patch::Apply(applied_web(json!({"app": "web", "tier": "front"}), 2)))
        .await?;
    assert_eq!(d.metadata.labels.as_ref().and_then(|l| l.get("tier")).map(String::as_str), Some("front"));
    assert_eq!(managers_of(&d.metadata), [("mgr".to_string(), "Apply".to_string(), String::new())]);
    let entry = d.metadata.managed_fields.as_ref().and_then(|m| m.first()).context("entry")?;
    assert_eq!(entry.api_version.as_deref(), Some("apps/v1"));
    assert_eq!(entry.fields_type.as_deref(), Some("FieldsV1"));
    assert!(entry.time.is_some());
    assert_eq!(
        fields_of(&d.metadata, "mgr")["f:spec"]["f:template"]["f:spec"]["f:containers"]
            ["k:{\"name\":\"nginx\"}"]["f:ports"],
        json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
    );
    assert_eq!(d.spec.as_ref().and_then(|s| s.revision_history_limit), Some(10), "defaults still applied");

    // The same configuration again is a no-op: nothing is written.
    let again = deploys
        .patch("web", &pp, &Patch::Apply(applied_web(json!({"app": "web", "tier": "front"}), 2)))
        .await?;
    assert_eq!(again.metadata.resource_version, d.metadata.resource_version);

    let d = deploys.patch("web", &pp, &Patch::Apply(applied_web(json!({"app": "web"}), 2))).await?;
    let labels: Vec<&String> = d.metadata.labels.iter().flatten().map(|(k, _)| k).collect();
    assert_eq!(labels, ["app"]);
    assert!(fields_of(&d.metadata, "mgr")["f:metadata"]["f:labels"].get("f:tier").is_none());
    Ok(())
}

#[tokio::test]
async fn conflicting_apply_is_a_409_listing_the_field_and_force_takes_it_over() -> Result<()> {
    let c = cluster().await?;
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    deploys
        .patch("web", &PatchParams::apply("mgr"), &Patch::Apply(applied_web(json!({"app": "web"}), 2)))
        .await?;
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let e = deploys
        .patch("web", &PatchParams::apply("other"), &Patch::Apply(other.clone()))
        .await
        .err()
        .context("conflict")?;
    let s = status(e)?;
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(s.message, "Apply failed with 1 conflict: conflict with \"mgr\": .spec.replicas");
    let causes = s.details.map(|d| d.causes).unwrap_or_default();
    assert_eq!(causes.len(), 1);
    assert_eq!(
        (causes[0].reason.as_str(), causes[0].message.as_str(), causes[0].field.as_str()),
        ("FieldManagerConflict", "conflict with \"mgr\"", ".spec.replicas")
    );

    let d = deploys.patch("web", &PatchParams::apply("other").force(), &Patch::Apply(other)).await?;
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(5));
    assert!(fields_of(&d.metadata, "other")["f:spec"].get("f:replicas").is_some());
    assert!(fields_of(&d.metadata, "mgr")["f:spec"].get("f:replicas").is_none());
    assert!(fields_of(&d.metadata, "mgr")["f:spec"].get("f:template").is_some());
    Ok(())
}

#[tokio::test]
async fn apply_conflicts_with_fields_an_update_manager_wrote() -> Result<()> {
    let c = cluster().await?;
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let pp = PostParams { field_manager: Some("kubectl-client-side-apply".into()), ..PostParams::default() };
    let d = deploys.create(&pp, &deployment("web", "busybox:1")?).await?;
    assert_eq!(
        managers_of(&d.metadata),
        [("kubectl-client-side-apply".to_string(), "Update".to_string(), String::new())]
    );
    let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let e = deploys
        .patch("web", &PatchParams::apply("mgr"), &Patch::Apply(config))
        .await
        .err()
        .context("conflict")?;
    assert_eq!(
        status(e)?.message,
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    Ok(())
}

#[tokio::test]
async fn writes_record_their_field_manager_or_user_agent() -> Result<()> {
    let c = cluster().await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let pp = PostParams { field_manager: Some("creator".into()), ..PostParams::default() };
    let cm = cms.create(&pp, &configmap("owned", &[("a", "1"), ("b", "2")])).await?;
    assert_eq!(fields_of(&cm.metadata, "creator"), json!({"f:data": {".": {}, "f:a": {}, "f:b": {}}}));

    let patch_params = PatchParams { field_manager: Some("patcher".into()), ..PatchParams::default() };
    let cm = cms.patch("owned", &patch_params, &Patch::Merge(json!({"data": {"b": "3"}}))).await?;
    assert_eq!(fields_of(&cm.metadata, "patcher"), json!({"f:data": {"f:b": {}}}));
    assert_eq!(fields_of(&cm.metadata, "creator"), json!({"f:data": {".": {}, "f:a": {}}}));

    // Without fieldManager the User-Agent's product name is the manager.
    let req = http::Request::patch("/api/v1/namespaces/default/configmaps/owned")
        .header("content-type", "application/merge-patch+json")
        .header("user-agent", "kubectl/v1.33.0 (linux/amd64) kubernetes/8adc0f0")
        .body(br#"{"data":{"c":"4"}}"#.to_vec())?;
    let cm: ConfigMap = c.client.request(req).await?;
    assert_eq!(fields_of(&cm.metadata, "kubectl"), json!({"f:data": {"f:c": {}}}));
    let names: Vec<String> = managers_of(&cm.metadata).into_iter().map(|m| m.0).collect();
    assert_eq!(names.len(), 3);
    assert!(names.contains(&"creator".to_string()) && names.contains(&"patcher".to_string()));

    // The status subresource records its writes with `subresource: status`.
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    deploys.create(&PostParams::default(), &deployment("web", "busybox:1")?).await?;
    let status_params = PatchParams { field_manager: Some("ctrl".into()), ..PatchParams::default() };
    let d = deploys
        .patch_status("web", &status_params, &Patch::Merge(json!({"status": {"replicas": 2}})))
        .await?;
    assert!(managers_of(&d.metadata).contains(&(
        "ctrl".to_string(),
        "Update".to_string(),
        "status".to_string()
    )));
    assert_eq!(fields_of(&d.metadata, "ctrl"), json!({"f:status": {"f:replicas": {}}}));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_without_a_resource_version_all_apply() -> Result<()> {
    let c = cluster().await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    cms.create(&PostParams::default(), &configmap("shared", &[])).await?;
    let writers = (0..16).map(|i| {
        let cms = cms.clone();
        async move {
            let patch = json!({"metadata": {"labels": {format!("writer-{i}"): "yes"}}});
            cms.patch("shared", &PatchParams::default(), &Patch::Merge(&patch)).await
        }
    });
    for outcome in futures::future::join_all(writers).await {
        outcome.context("a patch that pins no resourceVersion must not fail with a conflict")?;
    }
    let labels = cms.get("shared").await?.metadata.labels.unwrap_or_default();
    assert_eq!(labels.len(), 16, "every writer's label must be there: {labels:?}");
    Ok(())
}
