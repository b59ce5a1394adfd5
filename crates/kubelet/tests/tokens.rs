//! Projected service-account tokens: the kubelet asks the TokenRequest API for a token bound to
//! the pod and writes it into the pod's `kube-api-access-*` volume.

mod common;

use anyhow::{Context as _, Result};
use base64::Engine as _;
use common::*;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

const SA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

async fn create_service_account(f: &Fixture, name: &str) -> Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(f.cluster.client.clone(), "default");
    api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}}))?).await?;
    Ok(())
}

fn payload(token: &str) -> Result<Value> {
    let part = token.split('.').nth(1).context("not a JWT")?;
    Ok(serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?)?)
}

#[tokio::test]
async fn the_injected_volume_holds_a_token_bound_to_the_pod_the_ca_and_the_namespace() -> Result<()> {
    let f = Fixture::started().await?;
    // What the service account and root CA controllers would have published.
    create_service_account(&f, "default").await?;
    let cms: Api<ConfigMap> = Api::namespaced(f.cluster.client.clone(), "default");
    let ca = json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}});
    cms.create(&PostParams::default(), &serde_json::from_value(ca)?).await?;

    let created = f.create_pod("web", simple("busybox:1.36")).await?;
    let uid = created.metadata.uid.clone().context("uid")?;
    f.wait_pod("web", "web Running", |p| phase(p) == "Running").await?;
    let c = f.runtime.containers().into_iter().find(|c| c.name() == "app").context("app")?;
    let mount = c.config.mounts.iter().find(|m| m.container_path == SA_PATH).context("token mount")?;
    assert!(mount.readonly);
    let dir = std::path::PathBuf::from(&mount.host_path);
    assert!(dir.starts_with(f.dir.path().join("kubelet/pods").join(&uid)), "{}", dir.display());
    assert_eq!(std::fs::read_to_string(dir.join("namespace"))?, "default");
    assert_eq!(std::fs::read_to_string(dir.join("ca.crt"))?, "-----BEGIN CERTIFICATE-----\n");
    let token = std::fs::read_to_string(dir.join("token"))?;

    let claims = payload(&token)?;
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(claims["kubernetes.io"]["pod"], json!({"name": "web", "uid": uid}));
    assert_eq!(claims["exp"].as_u64().zip(claims["iat"].as_u64()).map(|(e, i)| e - i), Some(3607));

    // The file is a working credential of the pod's service account.
    let client = f.cluster.client_with_token(&token)?;
    let review = Api::<SelfSubjectReview>::all(client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    let user = review.status.and_then(|s| s.user_info).and_then(|u| u.username);
    assert_eq!(user.as_deref(), Some("system:serviceaccount:default:default"));
    Ok(())
}

#[tokio::test]
async fn a_token_that_cannot_be_had_keeps_the_pod_creating_until_it_can() -> Result<()> {
    let f = Fixture::started().await?;
    f.create_pod(
        "waiting",
        json!({
            "serviceAccountName": "robot",
            "volumes": [{"name": "tok", "projected": {"sources": [
                {"serviceAccountToken": {"path": "t", "audience": "vault", "expirationSeconds": 7200}}]}}],
            "containers": [{"name": "app", "image": "busybox:1.36", "volumeMounts": [{"name": "tok", "mountPath": "/tok"}]}],
        }),
    )
    .await?;
    let pod = f
        .wait_pod("waiting", "app waiting in ContainerCreating", |p| {
            waiting_reason(p, "app").as_deref() == Some("ContainerCreating")
        })
        .await?;
    let message = container(&pod, "app").and_then(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone());
    assert_eq!(message.as_deref(), Some("failed to fetch token: serviceaccounts \"robot\" not found"));
    assert_eq!(phase(&pod), "Pending");

    create_service_account(&f, "robot").await?;
    f.wait_pod("waiting", "waiting Running once robot exists", |p| phase(p) == "Running").await?;
    let c = f.runtime.containers().into_iter().find(|c| c.name() == "app").context("app")?;
    let mount = c.config.mounts.iter().find(|m| m.container_path == "/tok").context("/tok")?;
    let claims = payload(&std::fs::read_to_string(std::path::Path::new(&mount.host_path).join("t"))?)?;
    assert_eq!(claims["aud"], json!(["vault"]));
    assert_eq!(claims["sub"], "system:serviceaccount:default:robot");
    assert_eq!(claims["exp"].as_u64().zip(claims["iat"].as_u64()).map(|(e, i)| e - i), Some(7200));
    Ok(())
}
