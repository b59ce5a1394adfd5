//! RBAC in process: forbidden responses worded like kube-apiserver's, grants through Roles,
//! ClusterRoles and their bindings, escalation prevention, access reviews and impersonation.

use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use corten_apiserver::testing::TestCluster;
use corten_apiserver::Identity;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

fn jane() -> Identity {
    Identity::new("jane", ["devs".to_string()])
}

/// The message of a failed request's Status, with its code.
fn failure<T: std::fmt::Debug>(r: kube::Result<T>) -> Result<(u16, String)> {
    match r {
        Err(kube::Error::Api(s)) => Ok((s.code, s.message)),
        other => bail!("expected an API error, got {other:?}"),
    }
}

/// A raw request: status code and JSON body.
async fn raw(client: &Client, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
    let body = match body {
        Some(b) => kube::client::Body::from(serde_json::to_vec(&b)?),
        None => kube::client::Body::empty(),
    };
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body)?;
    let resp = client.send(req).await?;
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body()).await?.to_bytes();
    Ok((code, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// Polls `check` until it returns `Ok(true)` (policy changes apply once the cache sees them).
async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn create<K>(client: &Client, ns: &str, obj: Value) -> Result<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj)?;
    Api::namespaced(client.clone(), ns).create(&PostParams::default(), &obj).await.context("create")
}

async fn create_cluster<K>(client: &Client, obj: Value) -> Result<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj)?;
    Api::all(client.clone()).create(&PostParams::default(), &obj).await.context("create")
}

fn role(name: &str, rules: Value) -> Value {
    json!({"metadata": {"name": name}, "rules": rules})
}

fn binding(name: &str, kind: &str, role: &str, subjects: Value) -> Value {
    json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": subjects,
    })
}

fn user(name: &str) -> Value {
    json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name}])
}

#[tokio::test]
async fn denied_requests_get_kube_apiserver_403s() -> Result<()> {
    let c = TestCluster::start().await?;
    let as_jane = c.client_as(jane());
    let pods: Api<Pod> = Api::namespaced(as_jane.clone(), "default");
    assert_eq!(
        failure(pods.list(&ListParams::default()).await)?,
        (
            403,
            r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
                .into()
        )
    );
    assert_eq!(
        failure(pods.get("web").await)?.1,
        r#"pods "web" is forbidden: User "jane" cannot get resource "pods" in API group "" in the namespace "default""#
    );
    assert_eq!(
        failure(Api::<Node>::all(as_jane.clone()).list(&ListParams::default()).await)?.1,
        r#"nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the cluster scope"#
    );
    let (code, status) = raw(&as_jane, "GET", "/api/v1/namespaces/default/pods/web/log", None).await?;
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        r#"pods "web" is forbidden: User "jane" cannot get resource "pods/log" in API group "" in the namespace "default""#
    );
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(status["details"], json!({"name": "web", "kind": "pods"}));
    let (_, status) = raw(&as_jane, "DELETE", "/apis/apps/v1/namespaces/default/deployments", None).await?;
    assert_eq!(
        status["message"],
        r#"deployments.apps is forbidden: User "jane" cannot deletecollection resource "deployments" in API group "apps" in the namespace "default""#
    );
    assert_eq!(status["details"], json!({"group": "apps", "kind": "deployments"}));
    let (code, status) = raw(&as_jane, "GET", "/foo", None).await?;
    assert_eq!(
        (code, status["message"].as_str()),
        (403, Some(r#"forbidden: User "jane" cannot get path "/foo""#))
    );
    // Discovery and health are everyone's (system:discovery, system:public-info-viewer).
    for path in ["/api", "/apis", "/api/v1", "/version", "/healthz", "/openapi/v2"] {
        assert_eq!(raw(&as_jane, "GET", path, None).await?.0, 200, "{path}");
    }
    // A binding to a role that does not exist says so.
    create::<RoleBinding>(&c.client, "default", binding("ghost", "Role", "ghost", user("jane"))).await?;
    let expected = r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default": RBAC: role.rbac.authorization.k8s.io "ghost" not found"#;
    eventually("the ghost binding", || async {
        Ok(failure(pods.list(&ListParams::default()).await)?.1 == expected)
    })
    .await
}

#[tokio::test]
async fn anonymous_requests_get_401_except_public_paths() -> Result<()> {
    let store = corten_store::MemStore::new(corten_store::MemStoreConfig::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    let server = corten_apiserver::ApiServer::new(store, corten_apiserver::ApiConfig::default(), shutdown);
    server.bootstrap().await?;
    // No identity: anonymous.
    let anonymous = Client::new(server.router(), "default");
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(raw(&anonymous, "GET", path, None).await?.0, 200, "{path}");
    }
    for path in ["/api", "/apis", "/openapi/v2", "/metrics", "/api/v1/namespaces/default/pods"] {
        let (code, status) = raw(&anonymous, "GET", path, None).await?;
        assert_eq!((code, &status["reason"]), (401, &json!("Unauthorized")), "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn roles_and_bindings_grant_what_they_say() -> Result<()> {
    let c = TestCluster::start().await?;
    let admin = &c.client;
    for ns in ["team-a", "team-b"] {
        create_cluster::<k8s_openapi::api::core::v1::Namespace>(admin, json!({"metadata": {"name": ns}}))
            .await?;
    }
    let as_jane = c.client_as(jane());
    let pods_a: Api<Pod> = Api::namespaced(as_jane.clone(), "team-a");
    let pods_b: Api<Pod> = Api::namespaced(as_jane.clone(), "team-b");
    // A Role and a RoleBinding to a group: jane may list pods in team-a only.
    create::<Role>(
        admin,
        "team-a",
        role("pod-reader", json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])),
    )
    .await?;
    let devs = json!([{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"}]);
    create::<RoleBinding>(admin, "team-a", binding("read-pods", "Role", "pod-reader", devs)).await?;
    eventually("the role binding", || async { Ok(pods_a.list(&ListParams::default()).await.is_ok()) })
        .await?;
    assert_eq!(failure(pods_b.list(&ListParams::default()).await)?.0, 403);
    assert_eq!(failure(pods_a.get("x").await)?.0, 404, "get is granted: the pod is just missing");
    let (code, _) = raw(&as_jane, "GET", "/api/v1/namespaces/team-a/pods/x/log", None).await?;
    assert_eq!(code, 403, "subresources need their own rule");

    // A ClusterRole bound in one namespace grants only there.
    create_cluster::<ClusterRole>(
        admin,
        role(
            "cm-editor",
            json!([
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "list"]},
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["allowed"]},
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            ]),
        ),
    )
    .await?;
    create::<RoleBinding>(admin, "team-b", binding("cm", "ClusterRole", "cm-editor", user("jane"))).await?;
    let cms_b: Api<ConfigMap> = Api::namespaced(as_jane.clone(), "team-b");
    eventually("the cluster role binding", || async { Ok(cms_b.list(&ListParams::default()).await.is_ok()) })
        .await?;
    let cms_a: Api<ConfigMap> = Api::namespaced(as_jane.clone(), "team-a");
    assert_eq!(failure(cms_a.list(&ListParams::default()).await)?.0, 403);
    // resourceNames: only the named object.
    for name in ["allowed", "other"] {
        create::<ConfigMap>(&as_jane, "team-b", json!({"metadata": {"name": name}})).await?;
    }
    assert!(cms_b.get("allowed").await.is_ok());
    assert_eq!(
        failure(cms_b.get("other").await)?.1,
        r#"configmaps "other" is forbidden: User "jane" cannot get resource "configmaps" in API group "" in the namespace "team-b""#
    );
    let (code, _) = raw(&as_jane, "GET", "/api/v1/namespaces/team-b/pods/x/log", None).await?;
    assert_eq!(code, 404, "pods/log is granted in team-b");

    // nonResourceURLs through a ClusterRoleBinding, with a trailing `*`.
    create_cluster::<ClusterRole>(
        admin,
        role("metrics-reader", json!([{"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]}])),
    )
    .await?;
    assert_eq!(raw(&as_jane, "GET", "/metrics", None).await?.0, 403);
    create_cluster::<ClusterRoleBinding>(
        admin,
        binding("metrics", "ClusterRole", "metrics-reader", user("jane")),
    )
    .await?;
    eventually("the non-resource grant", || async {
        Ok(raw(&as_jane, "GET", "/metrics", None).await?.0 == 200)
    })
    .await?;
    let (code, _) = raw(&as_jane, "GET", "/logs/kube.log", None).await?;
    assert_ne!(code, 403);
    Ok(())
}

#[tokio::test]
async fn roles_cannot_grant_what_their_author_does_not_hold() -> Result<()> {
    let c = TestCluster::start().await?;
    let admin = &c.client;
    // jane may manage roles and bindings in default, and read pods there.
    create::<Role>(
        admin,
        "default",
        role(
            "rbac-manager",
            json!([
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "get", "update"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            ]),
        ),
    )
    .await?;
    create::<RoleBinding>(admin, "default", binding("rbac-manager", "Role", "rbac-manager", user("jane")))
        .await?;
    let as_jane = c.client_as(jane());
    let pods: Api<Pod> = Api::namespaced(as_jane.clone(), "default");
    eventually("jane's grant", || async { Ok(pods.list(&ListParams::default()).await.is_ok()) }).await?;

    // What she holds she may grant; more she may not.
    create::<Role>(
        &as_jane,
        "default",
        role("reader", json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}])),
    )
    .await?;
    let roles: Api<Role> = Api::namespaced(as_jane.clone(), "default");
    let wider: Role = serde_json::from_value(role(
        "writer",
        json!([{"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "delete"]}]),
    ))?;
    let (code, message) = failure(roles.create(&PostParams::default(), &wider).await)?;
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "roles.rbac.authorization.k8s.io \"writer\" is forbidden: user \"jane\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}"
    );

    // Binding a role she does not fully hold needs `bind`.
    let bindings: Api<RoleBinding> = Api::namespaced(as_jane.clone(), "default");
    let to_edit: RoleBinding =
        serde_json::from_value(binding("bob-edit", "ClusterRole", "edit", user("bob")))?;
    let (code, message) = failure(bindings.create(&PostParams::default(), &to_edit).await)?;
    assert_eq!(code, 403);
    assert!(
        message.starts_with("rolebindings.rbac.authorization.k8s.io \"bob-edit\" is forbidden: user \"jane\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n"),
        "{message}"
    );
    let to_reader: RoleBinding = serde_json::from_value(binding("bob-read", "Role", "reader", user("bob")))?;
    bindings.create(&PostParams::default(), &to_reader).await.context("binding a role she holds")?;
    create_cluster::<ClusterRole>(
        admin,
        role("bind-edit", json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["edit"]}])),
    )
    .await?;
    create::<RoleBinding>(admin, "default", binding("bind-edit", "ClusterRole", "bind-edit", user("jane")))
        .await?;
    eventually("the bind grant", || async {
        match bindings.create(&PostParams::default(), &to_edit).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 403 => Ok(false),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    // `escalate` lets her write any rules into roles.
    create::<Role>(
        admin,
        "default",
        role("escalator", json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}])),
    )
    .await?;
    create::<RoleBinding>(admin, "default", binding("escalator", "Role", "escalator", user("jane"))).await?;
    eventually("the escalate grant", || async {
        match roles.create(&PostParams::default(), &wider).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 403 => Ok(false),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

#[tokio::test]
async fn access_reviews_answer_from_rbac() -> Result<()> {
    let c = TestCluster::start().await?;
    let as_jane = c.client_as(jane());
    let ssar = |verb: &str, resource: &str| {
        json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": "default", "verb": verb, "resource": resource}},
        })
    };
    let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let (code, review) = raw(&as_jane, "POST", path, Some(ssar("create", "pods"))).await?;
    assert_eq!((code, &review["status"]["allowed"]), (201, &json!(false)), "{review}");
    let (_, review) = raw(&c.client, "POST", path, Some(ssar("create", "pods"))).await?;
    assert_eq!(review["status"]["allowed"], true);

    create::<RoleBinding>(&c.client, "default", binding("jane-view", "ClusterRole", "view", user("jane")))
        .await?;
    eventually("jane's view grant", || async {
        let (_, review) = raw(&as_jane, "POST", path, Some(ssar("list", "pods"))).await?;
        Ok(review["status"]["allowed"] == true)
    })
    .await?;
    let (_, review) = raw(&as_jane, "POST", path, Some(ssar("list", "pods"))).await?;
    assert_eq!(
        review["status"]["reason"],
        r#"RBAC: allowed by RoleBinding "default/jane-view" of ClusterRole "view" to User "jane""#
    );

    // SubjectAccessReview: the admin asks about jane.
    let sar = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "jane", "groups": ["devs"], "resourceAttributes": {"namespace": "default", "verb": "get", "resource": "secrets"}},
    });
    let (code, review) =
        raw(&c.client, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", Some(sar.clone()))
            .await?;
    assert_eq!((code, &review["status"]["allowed"]), (201, &json!(false)));
    let (code, _) =
        raw(&as_jane, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", Some(sar)).await?;
    assert_eq!(code, 403, "jane may not ask about others");

    // LocalSubjectAccessReview: the namespace must be the request's.
    let lsar = |ns: &str| {
        json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
            "metadata": {"namespace": "default"},
            "spec": {"user": "jane", "resourceAttributes": {"namespace": ns, "verb": "list", "resource": "pods"}},
        })
    };
    let local = "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews";
    let (code, review) = raw(&c.client, "POST", local, Some(lsar("default"))).await?;
    assert_eq!((code, &review["status"]["allowed"]), (201, &json!(true)), "{review}");
    let (code, status) = raw(&c.client, "POST", local, Some(lsar("other"))).await?;
    assert_eq!(code, 400);
    assert_eq!(status["message"], "spec.resourceAttributes.namespace must match namespace: default");

    // SelfSubjectRulesReview lists jane's rules in a namespace.
    let rules = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "default"}});
    let (code, review) =
        raw(&as_jane, "POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", Some(rules)).await?;
    assert_eq!(code, 201);
    let resource_rules = review["status"]["resourceRules"].as_array().cloned().unwrap_or_default();
    assert!(
        resource_rules.iter().any(|r| r["resources"].as_array().is_some_and(|v| v.contains(&json!("pods")))
            && r["verbs"].as_array().is_some_and(|v| v.contains(&json!("list")))),
        "{review}"
    );
    assert!(resource_rules
        .iter()
        .any(|r| r["resources"].as_array().is_some_and(|v| v.contains(&json!("selfsubjectaccessreviews")))));
    assert_eq!(review["status"]["incomplete"], false);
    Ok(())
}

#[tokio::test]
async fn impersonation_needs_the_impersonate_verb() -> Result<()> {
    let c = TestCluster::start().await?;
    let as_jane = c.client_as(jane());
    let request = |client: &Client, headers: &[(&str, &str)]| {
        let mut req = http::Request::get("/api/v1/namespaces/default/pods");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let client = client.clone();
        let req = req.body(kube::client::Body::empty());
        async move {
            let resp = client.send(req?).await?;
            let code = resp.status().as_u16();
            let bytes = http_body_util::BodyExt::collect(resp.into_body()).await?.to_bytes();
            anyhow::Ok((code, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null)))
        }
    };
    // The admin acting as jane is jane.
    let (code, status) = request(&c.client, &[("Impersonate-User", "jane")]).await?;
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    let (code, _) =
        request(&c.client, &[("Impersonate-User", "jane"), ("Impersonate-Group", "system:masters")]).await?;
    assert_eq!(code, 200);
    // jane may not act as anyone.
    let (code, status) = request(&as_jane, &[("Impersonate-User", "bob")]).await?;
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        r#"users "bob" is forbidden: User "jane" cannot impersonate resource "users" in API group "" at the cluster scope"#
    );
    assert_eq!(status["details"], json!({"name": "bob", "kind": "users"}));
    let (_, status) =
        request(&as_jane, &[("Impersonate-User", "system:serviceaccount:default:builder")]).await?;
    assert_eq!(
        status["message"],
        r#"serviceaccounts "builder" is forbidden: User "jane" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "default""#
    );
    // Once allowed to impersonate bob (and not his groups), she is bob.
    create_cluster::<ClusterRole>(
        &c.client,
        role("as-bob", json!([{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": ["bob"]}])),
    )
    .await?;
    create_cluster::<ClusterRoleBinding>(
        &c.client,
        binding("jane-as-bob", "ClusterRole", "as-bob", user("jane")),
    )
    .await?;
    eventually("the impersonate grant", || async {
        let (_, status) = request(&as_jane, &[("Impersonate-User", "bob")]).await?;
        Ok(status["message"].as_str().is_some_and(|m| m.contains(r#"User "bob" cannot list"#)))
    })
    .await?;
    let (_, status) =
        request(&as_jane, &[("Impersonate-User", "bob"), ("Impersonate-Group", "system:masters")]).await?;
    assert_eq!(
        status["message"],
        r#"groups "system:masters" is forbidden: User "jane" cannot impersonate resource "groups" in API group "" at the cluster scope"#
    );
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let req = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("Impersonate-User", "bob")
        .header("content-type", "application/json")
        .body(kube::client::Body::from(serde_json::to_vec(&review)?))?;
    let resp = as_jane.send(req).await?;
    let bytes = http_body_util::BodyExt::collect(resp.into_body()).await?.to_bytes();
    let review: Value = serde_json::from_slice(&bytes)?;
    assert_eq!(review["status"]["userInfo"]["username"], "bob");
    assert_eq!(review["status"]["userInfo"]["groups"], json!(["system:authenticated"]));
    Ok(())
}
