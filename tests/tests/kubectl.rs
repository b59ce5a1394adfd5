//! The real kubectl against the real binary: what a user types, asserted on what kubectl prints.

use std::time::Duration;

use anyhow::{ensure, Context};
use corten_tests::{until_some, Kubectl, Server};

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: httpd
        image: busybox:1.36
        command: ["httpd", "-f", "-p", "8080"]
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
stringData:
  password: s3cret
"#;

async fn server() -> anyhow::Result<(tempfile::TempDir, Server)> {
    let data = tempfile::tempdir()?;
    let mut server = Server::start(data.path())?;
    server.wait_ready().await?;
    Ok((data, server))
}

#[tokio::test]
async fn version_discovery_and_namespaces_work_with_new_and_old_kubectl() -> anyhow::Result<()> {
    let (_data, server) = server().await?;
    for version in ["", "1.27"] {
        let k = server.kubectl(version)?;
        let v = k.ok(&["version"]).await?;
        // kubectl 1.27 prints version.Info{...GitVersion:"v1.33.0+corten..."}, newer ones "Server Version: v1.33.0+corten...".
        ensure!(v.contains("Server Version: ") && v.contains("v1.33.0+corten"), "kubectl {version}: {v}");

        let resources = k.ok(&["api-resources"]).await?;
        let deploy =
            resources.lines().find(|l| l.starts_with("deployments")).context("deployments listed")?;
        let cols: Vec<&str> = deploy.split_whitespace().collect();
        ensure!(cols == ["deployments", "deploy", "apps/v1", "true", "Deployment"], "{deploy}");
        ensure!(resources.lines().any(|l| l.starts_with("pods ") && l.contains(" po ")), "{resources}");

        let versions = k.ok(&["api-versions"]).await?;
        for gv in ["v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1", "coordination.k8s.io/v1"] {
            ensure!(versions.lines().any(|l| l == gv), "{gv} missing from:\n{versions}");
        }

        let ns = k.ok(&["get", "ns"]).await?;
        let header: Vec<&str> = ns.lines().next().context("header")?.split_whitespace().collect();
        ensure!(header == ["NAME", "STATUS", "AGE"], "{ns}");
        for name in ["default", "kube-node-lease", "kube-public", "kube-system"] {
            ensure!(ns.lines().any(|l| l.starts_with(name) && l.contains("Active")), "{name} in {ns}");
        }
    }
    let k = server.kubectl("")?;
    ensure!(k.ok(&["create", "ns", "team-a"]).await?.trim() == "namespace/team-a created");
    let again = k.run(&["create", "ns", "team-a"]).await?;
    ensure!(
        again.stderr.contains("Error from server (AlreadyExists): namespaces \"team-a\" already exists"),
        "{}",
        again.stderr
    );
    let missing = k.run(&["get", "configmap", "nope"]).await?;
    ensure!(
        missing.stderr.contains("Error from server (NotFound): configmaps \"nope\" not found"),
        "{}",
        missing.stderr
    );
    Ok(())
}

#[tokio::test]
async fn apply_reapply_and_every_output_format() -> anyhow::Result<()> {
    let (_data, server) = server().await?;
    let k = server.kubectl("")?;
    let out = k.ok_stdin(&["apply", "-f", "-"], APP).await?;
    for line in [
        "deployment.apps/web created",
        "service/web created",
        "configmap/web-config created",
        "secret/web-secret created",
    ] {
        ensure!(out.contains(line), "{line} in:\n{out}");
    }
    // Client-side apply again with a change: a strategic merge patch computed by kubectl.
    let changed = APP.replace("greeting: hello", "greeting: bonjour").replace("replicas: 2", "replicas: 3");
    let out = k.ok_stdin(&["apply", "-f", "-"], &changed).await?;
    ensure!(
        out.contains("deployment.apps/web configured") && out.contains("configmap/web-config configured"),
        "{out}"
    );
    ensure!(out.contains("service/web unchanged"), "{out}");
    ensure!(k.ok(&["get", "cm", "web-config", "-o", "jsonpath={.data.greeting}"]).await? == "bonjour");
    ensure!(k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]).await? == "3");
    let secret = k.ok(&["get", "secret", "web-secret", "-o", "jsonpath={.data.password}"]).await?;
    ensure!(secret == "czNjcmV0", "stringData is stored as base64 data: {secret}");

    let table = k.ok(&["get", "deploy"]).await?;
    let header: Vec<&str> = table.lines().next().context("header")?.split_whitespace().collect();
    ensure!(header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], "{table}");
    ensure!(table.lines().nth(1).is_some_and(|l| l.starts_with("web") && l.contains("0/3")), "{table}");

    let wide = k.ok(&["get", "deploy", "-o", "wide"]).await?;
    ensure!(
        wide.contains("CONTAINERS") && wide.contains("busybox:1.36") && wide.contains("app=web"),
        "{wide}"
    );

    let svc = k.ok(&["get", "svc", "web"]).await?;
    ensure!(svc.contains("ClusterIP") && svc.contains("10.43.") && svc.contains("80/TCP"), "{svc}");

    let yaml = k.ok(&["get", "cm", "web-config", "-o", "yaml"]).await?;
    ensure!(
        yaml.contains("kind: ConfigMap")
            && yaml.contains("greeting: bonjour")
            && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "deploy", "web", "-o", "json"]).await?)?;
    ensure!(json["spec"]["template"]["spec"]["restartPolicy"] == "Always", "defaults visible: {json}");
    let cols =
        k.ok(&["get", "deploy", "-o", "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas"]).await?;
    ensure!(
        cols.lines().nth(1).map(|l| l.split_whitespace().collect::<Vec<_>>()) == Some(vec!["web", "3"]),
        "{cols}"
    );
    let names = k.ok(&["get", "cm,secret", "-o", "name"]).await?;
    ensure!(names.contains("configmap/web-config") && names.contains("secret/web-secret"), "{names}");

    // kubectl diff: a pending change shows as a diff (exit 1), none as exit 0.
    let diff = k.run_with(&["diff", "-f", "-"], Some(&changed.replace("bonjour", "hola")), &[]).await?;
    ensure!(
        diff.code == Some(1) && diff.stdout.contains("+  greeting: hola"),
        "{:?}\n{}{}",
        diff.code,
        diff.stdout,
        diff.stderr
    );
    let none = k.run_with(&["diff", "-f", "-"], Some(&changed), &[]).await?;
    ensure!(none.code == Some(0), "{:?}\n{}{}", none.code, none.stdout, none.stderr);
    Ok(())
}

#[tokio::test]
async fn label_annotate_patch_scale_and_edit() -> anyhow::Result<()> {
    let (_data, server) = server().await?;
    let k = server.kubectl("")?;
    k.ok_stdin(&["apply", "-f", "-"], APP).await?;
    ensure!(k.ok(&["label", "deploy", "web", "tier=front"]).await?.contains("deployment.apps/web labeled"));
    ensure!(
        k.ok(&["get", "deploy", "-l", "tier=front", "-o", "name"]).await?.trim() == "deployment.apps/web"
    );
    ensure!(k.ok(&["annotate", "cm", "web-config", "owner=team-a"]).await?.contains("annotated"));
    ensure!(
        k.ok(&["get", "cm", "web-config", "-o", "jsonpath={.metadata.annotations.owner}"]).await? == "team-a"
    );

    k.ok(&["patch", "cm", "web-config", "--type=merge", "-p", r#"{"data":{"extra":"1"}}"#]).await?;
    k.ok(&[
        "patch",
        "cm",
        "web-config",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/data/greeting","value":"hi"}]"#,
    ])
    .await?;
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"httpd","image":"busybox:1.37"}]}}}}"#,
    ])
    .await?;
    ensure!(
        k.ok(&["get", "cm", "web-config", "-o", "jsonpath={.data.extra}/{.data.greeting}"]).await? == "1/hi"
    );
    let images =
        k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[*].image}"]).await?;
    ensure!(images == "busybox:1.37", "strategic merge kept one container: {images}");

    ensure!(k.ok(&["scale", "deploy", "web", "--replicas=5"]).await?.contains("deployment.apps/web scaled"));
    ensure!(k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]).await? == "5");

    // kubectl edit with a non-interactive editor: sed rewrites the file kubectl opens.
    let out = k
        .run_with(
            &["edit", "cm", "web-config"],
            None,
            &[("KUBE_EDITOR", "sed -i s/greeting:\\ hi/greeting:\\ edited/")],
        )
        .await?;
    ensure!(out.ok() && out.stdout.contains("configmap/web-config edited"), "{}{}", out.stdout, out.stderr);
    ensure!(k.ok(&["get", "cm", "web-config", "-o", "jsonpath={.data.greeting}"]).await? == "edited");
    Ok(())
}

#[tokio::test]
async fn explain_and_whoami() -> anyhow::Result<()> {
    let (_data, server) = server().await?;
    let k = server.kubectl("")?;
    let explain = k.ok(&["explain", "deployment.spec.template"]).await?;
    ensure!(
        explain.contains("KIND:") && explain.contains("Deployment") && explain.contains("FIELDS:"),
        "{explain}"
    );
    ensure!(
        explain.contains("spec\t<PodSpec>")
            || explain.contains("spec <PodSpec>")
            || explain.contains("spec\t<Object>"),
        "{explain}"
    );
    let whoami = k.ok(&["auth", "whoami"]).await?;
    ensure!(whoami.contains("system:admin") && whoami.contains("system:masters"), "{whoami}");
    Ok(())
}

#[tokio::test]
async fn get_watch_prints_changes_as_they_happen() -> anyhow::Result<()> {
    let (_data, server) = server().await?;
    let k = server.kubectl("")?;
    let watcher = {
        let k = k.clone();
        tokio::spawn(async move { k.run(&["get", "cm", "-w", "--request-timeout=6s"]).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    k.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata:\n  a: \"1\"\n",
    )
    .await?;
    k.ok(&["delete", "cm", "watched"]).await?;
    let out = watcher.await??;
    ensure!(
        out.stdout.lines().any(|l| l.starts_with("watched")),
        "the watch saw the new configmap:\n{}{}",
        out.stdout,
        out.stderr
    );
    Ok(())
}

#[tokio::test]
async fn delete_cascade_modes_and_wait_for_delete() -> anyhow::Result<()> {
    let (_data, server) = server().await?;
    let k: Kubectl = server.kubectl("")?;
    k.ok_stdin(&["apply", "-f", "-"], APP).await?;
    ensure!(k.ok(&["delete", "cm", "web-config"]).await?.contains("configmap \"web-config\" deleted"));
    ensure!(k.run(&["get", "cm", "web-config"]).await?.stderr.contains("NotFound"));

    // Orphan deletion: the garbage collector removes the deployment's ownerReference from its
    // ReplicaSet, then lets the deployment go; the ReplicaSet stays.
    let rs = until_some("the web ReplicaSet", || async {
        let name = k.ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"]).await?;
        Ok((!name.trim().is_empty()).then(|| name.trim().to_string()))
    })
    .await?;
    ensure!(k.ok(&["delete", "deploy", "web", "--cascade=orphan"]).await?.contains("deleted"));
    ensure!(k.run(&["get", "deploy", "web"]).await?.stderr.contains("NotFound"));
    let owners = k.ok(&["get", "rs", &rs, "-o", "jsonpath={.metadata.ownerReferences[*].name}"]).await?;
    ensure!(owners.trim().is_empty(), "the orphaned ReplicaSet {rs} still has owners: {owners}");
    // Foreground deletion: the ReplicaSet goes only after its pods.
    ensure!(k.ok(&["delete", "rs", &rs, "--cascade=foreground"]).await?.contains("deleted"));
    let pods = k.ok(&["get", "pods", "-l", "app=web", "-o", "name"]).await?;
    ensure!(pods.trim().is_empty(), "pods of {rs} left after its foreground deletion: {pods}");
    ensure!(k
        .ok(&["delete", "svc", "web", "--cascade=background"])
        .await?
        .contains("service \"web\" deleted"));

    let waiter = {
        let k = k.clone();
        tokio::spawn(
            async move { k.run(&["wait", "--for=delete", "secret/web-secret", "--timeout=20s"]).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    k.ok(&["delete", "secret", "web-secret"]).await?;
    let waited = waiter.await??;
    ensure!(
        waited.ok(),
        "kubectl wait --for=delete returned when the secret went:\n{}{}",
        waited.stdout,
        waited.stderr
    );
    Ok(())
}

/// kubectl's typed clients (`create <kind>`, `run`, `expose`, `auth whoami`) send protobuf bodies
/// with no JSON fallback; the objects must come out as kube-apiserver stores them.
#[tokio::test]
async fn typed_create_commands_send_protobuf_and_get_the_objects_they_meant() -> anyhow::Result<()> {
    let (_data, server) = server().await?;
    for version in ["", "1.27"] {
        let k = server.kubectl(version)?;
        let cm = format!("a{}", version.replace('.', ""));
        let out = k.ok(&["create", "configmap", &cm, "--from-literal=k=v"]).await?;
        ensure!(out.trim() == format!("configmap/{cm} created"), "kubectl {version}: {out}");
        let data = k.ok(&["get", "cm", &cm, "-o", "jsonpath={.data}"]).await?;
        ensure!(data == r#"{"k":"v"}"#, "kubectl {version}: {data}");
    }
    let k = server.kubectl("")?;
    let get = |args: &'static [&'static str]| {
        let k = k.clone();
        async move { k.ok(args).await }
    };

    ensure!(
        k.ok(&["create", "secret", "generic", "s", "--from-literal=p=x"]).await?.trim() == "secret/s created"
    );
    ensure!(get(&["get", "secret", "s", "-o", "jsonpath={.type} {.data.p}"]).await? == "Opaque eA==");

    let out = k.ok(&["create", "deployment", "web", "--image=busybox:1.36", "--", "httpd", "-f"]).await?;
    ensure!(out.trim() == "deployment.apps/web created", "{out}");
    let deploy = get(&["get", "deploy", "web", "-o", "yaml"]).await?;
    for line in ["replicas: 1", "app: web", "- httpd", "- -f", "image: busybox:1.36", "name: busybox"] {
        ensure!(deploy.contains(line), "{line} in:\n{deploy}");
    }
    // unset Go fields are absent, not zero values that would defeat defaulting
    ensure!(deploy.contains("imagePullPolicy: IfNotPresent") && !deploy.contains("stdin"), "{deploy}");
    // --replicas=0 is an explicit zero of a pointer field: kept, not defaulted to 1
    k.ok(&["create", "deployment", "idle", "--image=busybox:1.36", "--replicas=0"]).await?;
    ensure!(get(&["get", "deploy", "idle", "-o", "jsonpath={.spec.replicas}"]).await? == "0");

    ensure!(
        k.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]).await?.trim()
            == "service/web created"
    );
    let ports = get(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.ports[0].protocol} {.spec.type}",
    ])
    .await?;
    ensure!(ports == "80 8080 TCP ClusterIP", "{ports}");

    let whoami = k.ok(&["auth", "whoami"]).await?;
    ensure!(whoami.contains("system:admin") && whoami.contains("system:masters"), "{whoami}");

    ensure!(
        k.ok(&["run", "p", "--image=busybox:1.36", "--", "sleep", "1000"]).await?.trim() == "pod/p created"
    );
    let pod = get(&[
        "get",
        "pod",
        "p",
        "-o",
        "jsonpath={.spec.containers[0].image} {.spec.containers[0].args} {.spec.restartPolicy}",
    ])
    .await?;
    ensure!(pod == r#"busybox:1.36 ["sleep","1000"] Always"#, "{pod}");

    ensure!(
        k.ok(&["create", "job", "j", "--image=busybox:1.36", "--", "true"]).await?.trim()
            == "job.batch/j created"
    );
    let job = get(&[
        "get",
        "job",
        "j",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].command} {.spec.template.spec.restartPolicy}",
    ])
    .await?;
    ensure!(job == r#"["true"] Never"#, "{job}");

    let out = k
        .ok(&["create", "poddisruptionbudget", "pdb", "--selector=app=web", "--max-unavailable=50%"])
        .await?;
    ensure!(out.contains("created"), "{out}");
    ensure!(get(&["get", "pdb", "pdb", "-o", "jsonpath={.spec.maxUnavailable}"]).await? == "50%");
    ensure!(k.ok(&["create", "quota", "q", "--hard=cpu=1,pods=2"]).await?.contains("created"));
    ensure!(get(&["get", "quota", "q", "-o", "jsonpath={.spec.hard}"]).await? == r#"{"cpu":"1","pods":"2"}"#);
    Ok(())
}

#[tokio::test]
async fn auth_can_i_and_impersonation_follow_rbac() -> anyhow::Result<()> {
    let (_data, server) = server().await?;
    let k = server.kubectl("")?;
    ensure!(k.ok(&["auth", "can-i", "create", "pods"]).await?.trim() == "yes");
    let sa = "system:serviceaccount:default:default";
    let out = k.run(&["auth", "can-i", "list", "secrets", &format!("--as={sa}")]).await?;
    ensure!(out.code == Some(1) && out.stdout.trim() == "no", "{out:?}");
    let out = k.run(&["get", "pods", "--as=jane"]).await?;
    ensure!(
        !out.ok()
            && out.stderr.contains(
                r#"Error from server (Forbidden): pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
            ),
        "{out:?}"
    );
    // A binding to the aggregated `view` role lets jane read pods, not secrets.
    k.ok(&["create", "rolebinding", "jane-view", "--clusterrole=view", "--user=jane"]).await?;
    until_some("jane's view grant", || async {
        Ok(k.run(&["get", "pods", "--as=jane"]).await?.ok().then_some(()))
    })
    .await?;
    let out = k.run(&["auth", "can-i", "get", "secrets", "--as=jane"]).await?;
    ensure!(out.code == Some(1) && out.stdout.trim() == "no", "{out:?}");
    let list = k.ok(&["auth", "can-i", "--list", "--as=jane"]).await?;
    ensure!(
        list.contains("pods") && list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{list}"
    );
    Ok(())
}

#[tokio::test]
async fn create_token_prints_a_token_that_authenticates_as_the_service_account() -> anyhow::Result<()> {
    let (data, server) = server().await?;
    let k = server.kubectl("")?;
    // The service account controller creates `default` shortly after start.
    let token = until_some("kubectl create token default", || async {
        let out = k.run(&["create", "token", "default"]).await?;
        Ok(out.ok().then(|| out.stdout.trim().to_string()))
    })
    .await?;
    ensure!(token.split('.').count() == 3, "not a JWT: {token}");
    let view = |path: &'static str| {
        let k = k.clone();
        async move { k.ok(&["config", "view", "--raw", "--minify", "-o", &format!("jsonpath={{{path}}}")]).await }
    };
    let (url, ca) = (
        view(".clusters[0].cluster.server").await?,
        view(".clusters[0].cluster.certificate-authority-data").await?,
    );
    // A kubeconfig with only the token: no client certificate that would win over it.
    let path = data.path().join("token.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: sa\n  context:\n    cluster: c\n    user: sa\ncurrent-context: sa\n"
        ),
    )?;
    let whoami = Kubectl::new("", &path)?.ok(&["auth", "whoami"]).await?;
    ensure!(
        whoami.contains("system:serviceaccount:default:default")
            && whoami.contains("system:serviceaccounts:default"),
        "{whoami}"
    );
    let out = k.run(&["create", "token", "default", "--duration=5m"]).await?;
    ensure!(!out.ok() && out.stderr.contains("may not specify a duration less than 10 minutes"), "{out:?}");
    let out = k.run(&["create", "token", "nobody"]).await?;
    ensure!(!out.ok() && out.stderr.contains("serviceaccounts \"nobody\" not found"), "{out:?}");
    Ok(())
}
