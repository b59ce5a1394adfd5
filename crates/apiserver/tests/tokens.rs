//! Service-account tokens: the `serviceaccounts/token` subresource (TokenRequest), bound tokens
//! that stop authenticating when their pod or service account goes, and the ServiceAccount
//! admission plugin that gives pods their token volume.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use corten_apiserver::testing::TestCluster;
use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, SelfSubjectReview, TokenRequest, TokenRequestSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use kube::core::Status;
use serde_json::{json, Value};

const AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

fn status(e: kube::Error) -> Result<Status> {
    match e {
        kube::Error::Api(s) => Ok(*s),
        other => bail!("expected an API error, got {other}"),
    }
}

async fn service_account(c: &TestCluster, ns: &str, name: &str, extra: Value) -> Result<ServiceAccount> {
    let mut sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}});
    if let (Some(sa), Some(extra)) = (sa.as_object_mut(), extra.as_object()) {
        sa.extend(extra.clone());
    }
    let api: Api<ServiceAccount> = Api::namespaced(c.client.clone(), ns);
    Ok(api.create(&PostParams::default(), &serde_json::from_value(sa)?).await?)
}

async fn namespace(c: &TestCluster, name: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(c.client.clone()).create(&PostParams::default(), &ns).await?;
    Ok(())
}

async fn pod(c: &TestCluster, ns: &str, name: &str, spec: Value) -> Result<Pod> {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "app", "image": "busybox"}]);
    }
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?;
    Ok(Api::<Pod>::namespaced(c.client.clone(), ns).create(&PostParams::default(), &pod).await?)
}

fn request(audiences: &[&str], expiration: Option<i64>, bound: Option<BoundObjectReference>) -> TokenRequest {
    TokenRequest {
        spec: TokenRequestSpec {
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            expiration_seconds: expiration,
            bound_object_ref: bound,
        },
        ..TokenRequest::default()
    }
}

fn bound(kind: &str, name: &str, uid: Option<&str>) -> BoundObjectReference {
    BoundObjectReference {
        api_version: Some("v1".into()),
        kind: Some(kind.into()),
        name: Some(name.into()),
        uid: uid.map(String::from),
    }
}

async fn token_for(
    c: &TestCluster,
    ns: &str,
    sa: &str,
    req: &TokenRequest,
) -> Result<TokenRequest, kube::Error> {
    Api::<ServiceAccount>::namespaced(c.client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), req)
        .await
}

fn token_of(tr: &TokenRequest) -> Result<String> {
    tr.status.as_ref().map(|s| s.token.clone()).filter(|t| !t.is_empty()).context("no status.token")
}

/// The JWT payload of a token (not verified: the server did that).
fn claims(token: &str) -> Result<Value> {
    let payload = token.split('.').nth(1).context("not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Who the API server says a bearer token is (a SelfSubjectReview made with it).
async fn whoami(c: &TestCluster, token: &str) -> Result<Result<(String, Vec<String>), Status>> {
    let client = c.client_with_token(token)?;
    let api: Api<SelfSubjectReview> = Api::all(client);
    match api.create(&PostParams::default(), &SelfSubjectReview::default()).await {
        Ok(r) => {
            let user = r.status.and_then(|s| s.user_info).context("no userInfo")?;
            Ok(Ok((user.username.unwrap_or_default(), user.groups.unwrap_or_default())))
        }
        Err(e) => Ok(Err(status(e)?)),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[tokio::test]
async fn a_token_request_gets_a_token_with_the_default_audience_and_an_hour() -> Result<()> {
    let c = TestCluster::start().await?;
    let sa = service_account(&c, "default", "builder", json!({})).await?;
    let before = now();
    let tr = token_for(&c, "default", "builder", &request(&[], None, None)).await?;
    assert_eq!(tr.metadata.name.as_deref(), Some("builder"));
    assert_eq!(tr.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(tr.spec.audiences, vec![AUDIENCE.to_string()]);
    assert_eq!(tr.spec.expiration_seconds, Some(3600));
    let expires = tr.status.as_ref().map(|s| s.expiration_timestamp.0.as_second()).context("no expiry")?;
    let expires = u64::try_from(expires)?;
    assert!((before + 3600..=now() + 3600).contains(&expires), "expires at {expires}");

    let c2 = claims(&token_of(&tr)?)?;
    assert_eq!(c2["iss"], AUDIENCE);
    assert_eq!(c2["sub"], "system:serviceaccount:default:builder");
    assert_eq!(c2["aud"], json!([AUDIENCE]));
    assert_eq!(c2["exp"], json!(expires));
    assert!(c2["iat"] == c2["nbf"] && c2["iat"].as_u64().is_some_and(|iat| iat + 3600 == expires));
    assert!(c2["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(c2["kubernetes.io"]["namespace"], "default");
    assert_eq!(c2["kubernetes.io"]["serviceaccount"], json!({"name": "builder", "uid": sa.metadata.uid}));
    assert!(c2["kubernetes.io"].get("pod").is_none());

    let custom = token_for(&c, "default", "builder", &request(&["vault"], Some(7200), None)).await?;
    assert_eq!(custom.spec.audiences, vec!["vault".to_string()]);
    assert_eq!(claims(&token_of(&custom)?)?["aud"], json!(["vault"]));
    assert_eq!(custom.spec.expiration_seconds, Some(7200));
    Ok(())
}

#[tokio::test]
async fn token_requests_are_checked_like_kube_apiserver_does() -> Result<()> {
    let c = TestCluster::start().await?;
    service_account(&c, "default", "builder", json!({})).await?;

    let missing =
        status(token_for(&c, "default", "nobody", &request(&[], None, None)).await.err().context("404")?)?;
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "serviceaccounts \"nobody\" not found");

    let short = status(
        token_for(&c, "default", "builder", &request(&[], Some(599), None)).await.err().context("short")?,
    )?;
    assert_eq!((short.code, short.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        short.message,
        "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
    );
    assert!(
        token_for(&c, "default", "builder", &request(&[], Some(600), None)).await.is_ok(),
        "10 minutes is enough"
    );

    let no_pod = status(
        token_for(&c, "default", "builder", &request(&[], None, Some(bound("Pod", "gone", None))))
            .await
            .err()
            .context("pod")?,
    )?;
    assert_eq!((no_pod.code, no_pod.message.as_str()), (404, "pods \"gone\" not found"));

    let kind = status(
        token_for(&c, "default", "builder", &request(&[], None, Some(bound("ConfigMap", "x", None))))
            .await
            .err()
            .context("kind")?,
    )?;
    assert_eq!(
        (kind.code, kind.message.as_str()),
        (400, "cannot bind token to object of type /v1, Kind=ConfigMap")
    );

    pod(&c, "default", "other-sa", json!({"serviceAccountName": "someone-else"})).await?;
    let other = status(
        token_for(&c, "default", "builder", &request(&[], None, Some(bound("Pod", "other-sa", None))))
            .await
            .err()
            .context("sa")?,
    )?;
    assert_eq!(
        (other.code, other.message.as_str()),
        (400, "cannot bind token for serviceaccount \"builder\" to pod running with different serviceaccount name.")
    );
    Ok(())
}

#[tokio::test]
async fn a_pod_bound_token_names_the_pod_and_checks_its_uid() -> Result<()> {
    let c = TestCluster::start().await?;
    service_account(&c, "default", "builder", json!({})).await?;
    let p = pod(&c, "default", "web", json!({"serviceAccountName": "builder", "nodeName": "n1"})).await?;
    let uid = p.metadata.uid.clone().context("uid")?;

    let stale = status(
        token_for(
            &c,
            "default",
            "builder",
            &request(&[], None, Some(bound("Pod", "web", Some("stale-uid")))),
        )
        .await
        .err()
        .context("stale uid")?,
    )?;
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        stale.message,
        "Operation cannot be fulfilled on Pod \"web\": the UID in the bound object reference (stale-uid) does not match the UID in record. The object might have been deleted and then recreated"
    );

    let tr = token_for(&c, "default", "builder", &request(&[], None, Some(bound("Pod", "web", Some(&uid)))))
        .await?;
    let k = &claims(&token_of(&tr)?)?["kubernetes.io"];
    assert_eq!(k["pod"], json!({"name": "web", "uid": uid}));
    // The pod's node goes in too; its Node object does not exist, so without a uid.
    assert_eq!(k["node"], json!({"name": "n1"}));
    Ok(())
}

#[tokio::test]
async fn a_token_authenticates_as_its_service_account_until_its_pod_is_deleted() -> Result<()> {
    let c = TestCluster::start().await?;
    service_account(&c, "default", "builder", json!({})).await?;
    pod(&c, "default", "web", json!({"serviceAccountName": "builder"})).await?;
    let tr =
        token_for(&c, "default", "builder", &request(&[], None, Some(bound("Pod", "web", None)))).await?;
    let token = token_of(&tr)?;

    let (user, groups) =
        whoami(&c, &token).await?.map_err(|s| anyhow::anyhow!("token refused: {}", s.message))?;
    assert_eq!(user, "system:serviceaccount:default:builder");
    for g in ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"] {
        assert!(groups.iter().any(|x| x == g), "{g} missing from {groups:?}");
    }

    // An unbound token for another audience is not for the API server.
    let vault = token_of(&token_for(&c, "default", "builder", &request(&["vault"], None, None)).await?)?;
    assert_eq!(whoami(&c, &vault).await?.err().map(|s| s.code), Some(401));
    assert_eq!(whoami(&c, "garbage").await?.err().map(|s| s.code), Some(401));

    // The pod is not scheduled, so it is deleted at once; the token dies with it.
    Api::<Pod>::namespaced(c.client.clone(), "default").delete("web", &DeleteParams::default()).await?;
    assert_eq!(whoami(&c, &token).await?.err().map(|s| s.code), Some(401));
    // A new pod of the same name has another uid.
    pod(&c, "default", "web", json!({"serviceAccountName": "builder"})).await?;
    assert_eq!(whoami(&c, &token).await?.err().map(|s| s.code), Some(401));
    Ok(())
}

#[tokio::test]
async fn a_token_stops_working_when_its_service_account_or_secret_is_recreated() -> Result<()> {
    let c = TestCluster::start().await?;
    service_account(&c, "default", "builder", json!({})).await?;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    secrets
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "s"}}))?)
        .await?;
    let by_secret = token_of(
        &token_for(&c, "default", "builder", &request(&[], None, Some(bound("Secret", "s", None)))).await?,
    )?;
    let plain = token_of(&token_for(&c, "default", "builder", &request(&[], None, None)).await?)?;
    assert!(whoami(&c, &by_secret).await?.is_ok());
    assert_eq!(claims(&by_secret)?["kubernetes.io"]["secret"]["name"], "s");

    secrets.delete("s", &DeleteParams::default()).await?;
    assert_eq!(whoami(&c, &by_secret).await?.err().map(|s| s.code), Some(401));
    assert!(whoami(&c, &plain).await?.is_ok());

    let accounts: Api<ServiceAccount> = Api::namespaced(c.client.clone(), "default");
    accounts.delete("builder", &DeleteParams::default()).await?;
    service_account(&c, "default", "builder", json!({})).await?;
    assert_eq!(whoami(&c, &plain).await?.err().map(|s| s.code), Some(401), "another uid");
    Ok(())
}

#[tokio::test]
async fn serviceaccounts_token_is_in_discovery() -> Result<()> {
    let c = TestCluster::start().await?;
    let list = c.client.list_core_api_resources("v1").await?;
    let token = list.resources.iter().find(|r| r.name == "serviceaccounts/token").context("not listed")?;
    assert_eq!(token.verbs, vec!["create".to_string()]);
    assert_eq!(
        (token.group.as_deref(), token.kind.as_str()),
        (Some("authentication.k8s.io"), "TokenRequest")
    );
    Ok(())
}

fn volumes(p: &Pod) -> Vec<Value> {
    p.spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| serde_json::to_value(v).ok())
        .collect()
}

fn mounts(p: &Pod, list: &str, i: usize) -> Vec<Value> {
    let v = serde_json::to_value(p).unwrap_or_default();
    v.pointer(&format!("/spec/{list}/{i}/volumeMounts"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn admission_gives_pods_the_token_volume_of_their_service_account() -> Result<()> {
    let c = TestCluster::start().await?;
    service_account(&c, "default", "default", json!({})).await?;
    let p = pod(
        &c,
        "default",
        "web",
        json!({
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [
                {"name": "app", "image": "busybox"},
                {"name": "own", "image": "busybox", "volumeMounts": [
                    {"name": "mine", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]},
            ],
            "volumes": [{"name": "mine", "emptyDir": {}}],
        }),
    )
    .await?;
    let spec = p.spec.as_ref().context("spec")?;
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    assert_eq!(spec.service_account.as_deref(), Some("default"));
    let vols = volumes(&p);
    assert_eq!(vols.len(), 2);
    let name = vols[1]["name"].as_str().context("name")?.to_string();
    let suffix = name.strip_prefix("kube-api-access-").context("prefix")?;
    assert_eq!(suffix.len(), 5);
    assert_eq!(
        vols[1]["projected"],
        json!({
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        })
    );
    let mount =
        json!({"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
    assert_eq!(mounts(&p, "initContainers", 0), vec![mount.clone()]);
    assert_eq!(mounts(&p, "containers", 0), vec![mount]);
    assert_eq!(mounts(&p, "containers", 1).len(), 1, "a container with its own mount there keeps it");
    Ok(())
}

#[tokio::test]
async fn automount_false_or_a_missing_service_account_injects_nothing() -> Result<()> {
    let c = TestCluster::start().await?;
    service_account(&c, "default", "quiet", json!({"automountServiceAccountToken": false})).await?;
    service_account(&c, "default", "default", json!({})).await?;

    let by_sa = pod(&c, "default", "a", json!({"serviceAccountName": "quiet"})).await?;
    assert!(volumes(&by_sa).is_empty());
    let by_pod = pod(&c, "default", "b", json!({"automountServiceAccountToken": false})).await?;
    assert!(volumes(&by_pod).is_empty());
    assert!(mounts(&by_pod, "containers", 0).is_empty());
    let forced =
        pod(&c, "default", "c", json!({"serviceAccountName": "quiet", "automountServiceAccountToken": true}))
            .await?;
    assert_eq!(volumes(&forced).len(), 1);

    // No `default` service account in a new namespace (no controller here): the name is
    // defaulted and the pod admitted without a token (kube-apiserver would refuse it).
    namespace(&c, "fresh").await?;
    let early = pod(&c, "fresh", "early", json!({})).await?;
    assert_eq!(early.spec.as_ref().and_then(|s| s.service_account_name.as_deref()), Some("default"));
    assert!(volumes(&early).is_empty());

    // Mirror pods are left alone.
    let mirror: Pod = serde_json::from_value(json!({
        "metadata": {"name": "static-web", "annotations": {"kubernetes.io/config.mirror": "abc"}},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }))?;
    let mirror =
        Api::<Pod>::namespaced(c.client.clone(), "default").create(&PostParams::default(), &mirror).await?;
    assert!(volumes(&mirror).is_empty());
    Ok(())
}

#[tokio::test]
async fn a_token_bound_to_a_pod_being_deleted_works_during_the_grace_period() -> Result<()> {
    let c = TestCluster::start().await?;
    service_account(&c, "default", "builder", json!({})).await?;
    // Bound to a node, so deletion is graceful (the kubelet would finish it).
    pod(&c, "default", "web", json!({"serviceAccountName": "builder", "nodeName": "n1"})).await?;
    let token = token_of(
        &token_for(&c, "default", "builder", &request(&[], None, Some(bound("Pod", "web", None)))).await?,
    )?;
    Api::<Pod>::namespaced(c.client.clone(), "default").delete("web", &DeleteParams::default()).await?;
    let deleting = Api::<Pod>::namespaced(c.client.clone(), "default").get("web").await?;
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert!(whoami(&c, &token).await?.is_ok(), "within a minute of the deletion");
    Ok(())
}
