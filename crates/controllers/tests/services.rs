//! The endpoints controller against the in-process API server: Services with selectors get
//! Endpoints and EndpointSlices of their pods; selector-less Services get their user's
//! Endpoints mirrored. Pods are faked: their status (IP, Ready) is patched as a kubelet would.

mod common;

use anyhow::Result;
use common::{eventually, Harness};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

async fn create_service(client: &Client, spec: serde_json::Value) -> Result<Service> {
    let name = spec["name"].as_str().unwrap_or("web").to_string();
    let mut spec = spec;
    if let Some(o) = spec.as_object_mut() {
        o.remove("name");
    }
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"tier": "front"}}, "spec": spec}),
    )?;
    Ok(Api::<Service>::default_namespaced(client.clone()).create(&PostParams::default(), &svc).await?)
}

/// A pod labelled `app=web` with container port `http` (8080), then given `ip` and `Ready`.
async fn running_pod(client: &Client, name: &str, ip: &str, ready: bool) -> Result<Pod> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"name": "http", "containerPort": 8080}]}]}
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    set_ready(client, name, ip, ready).await
}

async fn set_ready(client: &Client, name: &str, ip: &str, ready: bool) -> Result<Pod> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    Ok(pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?)
}

async fn slices_of(client: &Client, service: &str) -> Result<Vec<EndpointSlice>> {
    let api: Api<EndpointSlice> = Api::default_namespaced(client.clone());
    Ok(api.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}"))).await?.items)
}

/// `(ip, ready)` of every endpoint in the slices, sorted.
fn slice_endpoints(slices: &[EndpointSlice]) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| (e.addresses.join(","), e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false)))
        .collect();
    out.sort();
    out
}

/// `(ready ips, not-ready ips)` of an Endpoints.
fn endpoint_ips(ep: &Endpoints) -> (Vec<String>, Vec<String>) {
    let subsets = ep.subsets.iter().flatten();
    let mut ready: Vec<String> =
        subsets.clone().flat_map(|s| s.addresses.iter().flatten()).map(|a| a.ip.clone()).collect();
    let mut not_ready: Vec<String> =
        subsets.flat_map(|s| s.not_ready_addresses.iter().flatten()).map(|a| a.ip.clone()).collect();
    ready.sort();
    not_ready.sort();
    (ready, not_ready)
}

#[tokio::test]
async fn slices_list_ready_pods_and_follow_their_readiness() -> Result<()> {
    let cluster = Harness::start(&["endpoints"]).await?;
    let client = cluster.client();
    let svc = create_service(
        &client,
        json!({"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}),
    )
    .await?;
    running_pod(&client, "a", "10.1.0.1", true).await?;
    running_pod(&client, "b", "10.1.0.2", true).await?;
    running_pod(&client, "c", "10.1.0.3", false).await?;

    let want =
        vec![("10.1.0.1".to_string(), true), ("10.1.0.2".to_string(), true), ("10.1.0.3".to_string(), false)];
    let slices = eventually("slices with a and b ready and c not ready", || async {
        let slices = slices_of(&client, "web").await?;
        let seen = slice_endpoints(&slices);
        Ok(if seen == want { Ok(slices) } else { Err(format!("{seen:?}")) })
    })
    .await?;
    let slice = &slices[0];
    assert_eq!(slices.len(), 1);
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(
        slice.labels().get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    assert_eq!(slice.labels().get("tier").map(String::as_str), Some("front"), "service labels are copied");
    let owner = &slice.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Service", svc.uid().unwrap_or_default().as_str(), Some(true))
    );
    let ports = slice.ports.clone().unwrap_or_default();
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].port),
        (Some("web"), Some(8080)),
        "named target port resolved"
    );
    let target = slice.endpoints[0].target_ref.clone().unwrap_or_default();
    assert_eq!((target.kind.as_deref(), target.name.as_deref()), (Some("Pod"), Some("a")));

    let endpoints: Api<Endpoints> = Api::default_namespaced(client.clone());
    eventually("endpoints with a, b ready and c not ready", || async {
        let seen = endpoints.get_opt("web").await?.map(|e| endpoint_ips(&e));
        let want = (vec!["10.1.0.1".into(), "10.1.0.2".into()], vec!["10.1.0.3".into()]);
        Ok(if seen.as_ref() == Some(&want) { Ok(()) } else { Err(format!("{seen:?}")) })
    })
    .await?;

    // b stops being ready, c becomes ready.
    set_ready(&client, "b", "10.1.0.2", false).await?;
    set_ready(&client, "c", "10.1.0.3", true).await?;
    let want =
        vec![("10.1.0.1".to_string(), true), ("10.1.0.2".to_string(), false), ("10.1.0.3".to_string(), true)];
    eventually("b not ready and c ready in the slices", || async {
        let seen = slice_endpoints(&slices_of(&client, "web").await?);
        Ok(if seen == want { Ok(()) } else { Err(format!("{seen:?}")) })
    })
    .await?;
    eventually("b moved to notReadyAddresses", || async {
        let seen = endpoints.get_opt("web").await?.map(|e| endpoint_ips(&e));
        let want = (vec!["10.1.0.1".into(), "10.1.0.3".into()], vec!["10.1.0.2".into()]);
        Ok(if seen.as_ref() == Some(&want) { Ok(()) } else { Err(format!("{seen:?}")) })
    })
    .await?;

    // A pod whose labels stop matching leaves.
    let relabel = json!({"metadata": {"labels": {"app": "other"}}});
    Api::<Pod>::default_namespaced(client.clone())
        .patch("b", &PatchParams::default(), &Patch::Merge(&relabel))
        .await?;
    eventually("b gone from the slices once relabelled", || async {
        let seen = slice_endpoints(&slices_of(&client, "web").await?);
        Ok(if seen.iter().all(|(ip, _)| ip != "10.1.0.2") { Ok(()) } else { Err(format!("{seen:?}")) })
    })
    .await?;

    // A deleted pod leaves.
    Api::<Pod>::default_namespaced(client.clone()).delete("a", &Default::default()).await?;
    eventually("a gone from the slices", || async {
        let seen = slice_endpoints(&slices_of(&client, "web").await?);
        Ok(if seen.iter().all(|(ip, _)| ip != "10.1.0.1") { Ok(()) } else { Err(format!("{seen:?}")) })
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_service_without_pods_gets_an_empty_placeholder_slice() -> Result<()> {
    let cluster = Harness::start(&["endpoints"]).await?;
    let client = cluster.client();
    create_service(
        &client,
        json!({"name": "lonely", "selector": {"app": "nobody"}, "ports": [{"port": 80}]}),
    )
    .await?;
    let slices = eventually("one empty slice for lonely", || async {
        let slices = slices_of(&client, "lonely").await?;
        Ok(if slices.len() == 1 { Ok(slices) } else { Err(format!("{} slices", slices.len())) })
    })
    .await?;
    assert!(slices[0].endpoints.is_empty());
    Ok(())
}

#[tokio::test]
async fn headless_services_publish_not_ready_pods_when_asked() -> Result<()> {
    let cluster = Harness::start(&["endpoints"]).await?;
    let client = cluster.client();
    create_service(
        &client,
        json!({"name": "peers", "clusterIP": "None", "publishNotReadyAddresses": true, "selector": {"app": "web"}}),
    )
    .await?;
    running_pod(&client, "a", "10.2.0.1", false).await?;
    let slices = eventually("the not-ready pod published as ready", || async {
        let slices = slices_of(&client, "peers").await?;
        let seen = slice_endpoints(&slices);
        Ok(if seen == [("10.2.0.1".to_string(), true)] { Ok(slices) } else { Err(format!("{seen:?}")) })
    })
    .await?;
    assert_eq!(slices[0].labels().get("service.kubernetes.io/headless").map(String::as_str), Some(""));
    assert_eq!(slices[0].ports, None, "a headless service without ports has port-less endpoints");
    let endpoints: Api<Endpoints> = Api::default_namespaced(client.clone());
    let ep = eventually("endpoints for peers", || async {
        Ok(endpoints
            .get_opt("peers")
            .await?
            .filter(|e| e.subsets.is_some())
            .ok_or_else(|| "none".to_string()))
    })
    .await?;
    assert_eq!(endpoint_ips(&ep), (vec!["10.2.0.1".to_string()], vec![]));
    Ok(())
}

#[tokio::test]
async fn user_endpoints_of_selectorless_services_are_mirrored_and_kubernetes_is_left_alone() -> Result<()> {
    let cluster = Harness::start(&["endpoints"]).await?;
    let client = cluster.client();
    create_service(&client, json!({"name": "external", "ports": [{"name": "db", "port": 5432}]})).await?;
    let endpoints: Api<Endpoints> = Api::default_namespaced(client.clone());
    let ep: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "external"},
        "subsets": [{"addresses": [{"ip": "192.168.1.10"}], "notReadyAddresses": [{"ip": "192.168.1.11"}],
            "ports": [{"name": "db", "port": 5432, "protocol": "TCP"}]}]
    }))?;
    let ep = endpoints.create(&PostParams::default(), &ep).await?;
    let slices = eventually("a mirrored slice for external", || async {
        let slices = slices_of(&client, "external").await?;
        let seen = slice_endpoints(&slices);
        let want = [("192.168.1.10".to_string(), true), ("192.168.1.11".to_string(), false)];
        Ok(if seen == want { Ok(slices) } else { Err(format!("{seen:?}")) })
    })
    .await?;
    assert_eq!(
        slices[0].labels().get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
        Some("endpointslicemirroring-controller.k8s.io")
    );
    assert_eq!(slices[0].owner_references()[0].uid, ep.uid().unwrap_or_default());
    let again = endpoints.get("external").await?;
    assert_eq!(again.resource_version(), ep.resource_version(), "the user's endpoints are not rewritten");

    // The `kubernetes` Service has no selector: the controller neither writes its Endpoints nor
    // gives it selector slices.
    let kubernetes = slices_of(&client, "kubernetes").await?;
    assert!(
        kubernetes.iter().all(|s| s
            .labels()
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str)
            != Some("endpointslice-controller.k8s.io")),
        "no selector slices for kubernetes: {kubernetes:?}"
    );
    assert!(endpoints.get_opt("kubernetes").await?.is_none_or(|e| {
        e.labels().get("endpoints.kubernetes.io/managed-by").map(String::as_str)
            != Some("endpoint-controller")
    }));
    Ok(())
}
