//! Running pods: sandboxes, containers, restart policies, back-off, init containers and
//! sidecars, images, probes, environment and volumes.

mod common;

use anyhow::{Context as _, Result};
use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;

#[tokio::test]
async fn a_pod_bound_to_the_node_runs_with_its_ip_and_conditions() -> Result<()> {
    let f = Fixture::started().await?;
    f.runtime.set_sandbox_ip("web", "10.42.0.77");
    f.create_pod(
        "web",
        json!({"containers": [
        {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80, "hostPort": 8080}],
         "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]}),
    )
    .await?;
    let pod = f
        .wait_pod("web", "web Running and Ready", |p| {
            phase(p) == "Running" && condition(p, "Ready").as_deref() == Some("True")
        })
        .await?;
    let status = pod.status.clone().unwrap_or_default();
    assert_eq!(status.pod_ip.as_deref(), Some("10.42.0.77"));
    assert_eq!(status.host_ip.as_deref(), Some("10.0.0.5"));
    assert_eq!(status.qos_class.as_deref(), Some("Guaranteed"));
    assert!(status.start_time.is_some());
    for c in ["PodReadyToStartContainers", "Initialized", "ContainersReady", "PodScheduled"] {
        assert_eq!(condition(&pod, c).as_deref(), Some("True"), "{c}");
    }
    let app = container(&pod, "app").context("app status")?;
    assert!(app.ready && app.started == Some(true));
    assert!(
        app.container_id.as_deref().is_some_and(|id| id.starts_with("fake://")),
        "{:?}",
        app.container_id
    );
    assert!(app.image_id.starts_with("sha256:"));
    assert!(app.state.as_ref().and_then(|s| s.running.as_ref()).is_some());

    let sandboxes = f.runtime.sandboxes();
    assert_eq!(sandboxes.len(), 1);
    let sb = &sandboxes[0].config;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    assert_eq!(sb.labels.get("io.kubernetes.pod.uid"), Some(&uid));
    assert_eq!(sb.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(sb.hostname, "web");
    assert_eq!(sb.port_mappings.first().map(|p| (p.container_port, p.host_port)), Some((80, 8080)));
    let dns = sb.dns_config.clone().unwrap_or_default();
    assert_eq!(dns.servers, ["10.43.0.10"]);
    let containers = f.runtime.containers();
    assert_eq!(containers.len(), 1);
    let cfg = &containers[0].config;
    assert_eq!(cfg.log_path, "app/0.log");
    let res = cfg.linux.clone().and_then(|l| l.resources).unwrap_or_default();
    assert_eq!((res.cpu_quota, res.memory_limit_in_bytes), (50_000, 64 << 20));

    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(f.cluster.client.clone(), "default");
    let reasons = eventually("Pulled, Created and Started events", || async {
        let mut reasons: Vec<String> = events
            .list(&Default::default())
            .await?
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("web"))
            .filter_map(|e| e.reason)
            .collect();
        reasons.sort();
        Ok(if reasons == ["Created", "Pulled", "Started"] {
            Ok(reasons)
        } else {
            Err(format!("{reasons:?}"))
        })
    })
    .await?;
    assert_eq!(reasons.len(), 3);
    Ok(())
}

#[tokio::test]
async fn exit_codes_and_restart_counts_follow_the_restart_policy() -> Result<()> {
    let f = Fixture::started().await?;
    f.runtime.exit_on_start("fails", Some(3));
    f.runtime.exit_on_start("succeeds", Some(0));
    f.create_pod(
        "never",
        json!({"restartPolicy": "Never",
        "containers": [{"name": "fails", "image": "busybox:1.36"}]}),
    )
    .await?;
    f.create_pod(
        "onfailure",
        json!({"restartPolicy": "OnFailure",
        "containers": [{"name": "succeeds", "image": "busybox:1.36"}]}),
    )
    .await?;
    f.create_pod("always", simple("busybox:1.36")).await?;

    let never = f.wait_pod("never", "never Failed", |p| phase(p) == "Failed").await?;
    let fails = container(&never, "fails").context("fails status")?;
    let t = fails.state.as_ref().and_then(|s| s.terminated.clone()).context("terminated")?;
    assert_eq!((t.exit_code, t.reason.as_deref(), fails.restart_count), (3, Some("Error"), 0));
    assert!(t.finished_at.is_some() && t.started_at.is_some());
    assert_eq!(condition(&never, "Ready").as_deref(), Some("False"));

    let done = f.wait_pod("onfailure", "onfailure Succeeded", |p| phase(p) == "Succeeded").await?;
    let t =
        container(&done, "succeeds").and_then(|c| c.state.clone()).and_then(|s| s.terminated).context("t")?;
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));

    f.wait_pod("always", "always Running", |p| phase(p) == "Running").await?;
    let first = f
        .runtime
        .containers()
        .into_iter()
        .find(|c| {
            c.name() == "app"
                && c.config.labels.get("io.kubernetes.pod.name").map(String::as_str) == Some("always")
        })
        .context("app")?;
    assert!(f.runtime.exit_container(&first.id, 137));
    let restarted = f
        .wait_pod("always", "always restarted once", |p| {
            container(p, "app").is_some_and(|c| {
                c.restart_count == 1 && c.state.as_ref().is_some_and(|s| s.running.is_some())
            })
        })
        .await?;
    let last = container(&restarted, "app")
        .and_then(|c| c.last_state.clone())
        .and_then(|s| s.terminated)
        .context("lastState")?;
    assert_eq!(last.exit_code, 137);
    assert_eq!(last.container_id.as_deref(), Some(format!("fake://{}", first.id).as_str()));
    Ok(())
}

#[tokio::test]
async fn a_crashing_container_goes_into_crash_loop_back_off() -> Result<()> {
    let f = Fixture::started().await?;
    f.runtime.exit_on_start("app", Some(1));
    f.create_pod("crash", simple("busybox:1.36")).await?;
    let pod = f
        .wait_pod("crash", "CrashLoopBackOff", |p| {
            waiting_reason(p, "app").as_deref() == Some("CrashLoopBackOff")
        })
        .await?;
    let app = container(&pod, "app").context("app")?;
    assert!(app.restart_count >= 1, "restarted once before backing off: {app:?}");
    let message = app
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone())
        .unwrap_or_default();
    assert!(
        message.starts_with("back-off 5s restarting failed container=app pod=crash_default("),
        "{message}"
    );
    let last = app.last_state.as_ref().and_then(|s| s.terminated.as_ref()).context("lastState")?;
    assert_eq!(last.exit_code, 1);
    assert_eq!(phase(&pod), "Running");
    assert_eq!(condition(&pod, "Ready").as_deref(), Some("False"));
    Ok(())
}

#[tokio::test]
async fn init_containers_run_in_order_before_the_app_containers() -> Result<()> {
    let f = Fixture::started().await?;
    f.runtime.exit_on_start("init-1", Some(0));
    f.runtime.exit_on_start("init-2", Some(0));
    f.create_pod("inits", json!({
        "initContainers": [{"name": "init-1", "image": "busybox:1.36"}, {"name": "init-2", "image": "busybox:1.36"}],
        "containers": [{"name": "app", "image": "busybox:1.36"}]}))
    .await?;
    let pod = f.wait_pod("inits", "inits Running", |p| phase(p) == "Running").await?;
    assert_eq!(condition(&pod, "Initialized").as_deref(), Some("True"));
    for init in ["init-1", "init-2"] {
        let t =
            container(&pod, init).and_then(|c| c.state.clone()).and_then(|s| s.terminated).context("init")?;
        assert_eq!(t.exit_code, 0, "{init}");
    }
    let creates: Vec<String> = f
        .runtime
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("CreateContainer"))
        .filter_map(|c| c.rsplit(' ').next().map(str::to_string))
        .collect();
    assert_eq!(creates, ["init-1", "init-2", "app"]);
    Ok(())
}

#[tokio::test]
async fn a_failing_init_container_keeps_the_app_from_starting() -> Result<()> {
    let f = Fixture::started().await?;
    f.runtime.exit_on_start("init", Some(1));
    f.create_pod(
        "blocked",
        json!({"restartPolicy": "Never",
        "initContainers": [{"name": "init", "image": "busybox:1.36"}],
        "containers": [{"name": "app", "image": "busybox:1.36"}]}),
    )
    .await?;
    let pod = f.wait_pod("blocked", "blocked Failed", |p| phase(p) == "Failed").await?;
    assert_eq!(condition(&pod, "Initialized").as_deref(), Some("False"));
    assert!(f.runtime.containers().iter().all(|c| c.name() != "app"), "app must never be created");
    Ok(())
}

#[tokio::test]
async fn environment_comes_from_values_field_refs_configmaps_and_secrets() -> Result<()> {
    let f = Fixture::started().await?;
    let cms: Api<ConfigMap> = Api::namespaced(f.cluster.client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "settings"},
        "data": {"mode": "fast", "level": "3"}}))?,
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(f.cluster.client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "creds"},
            "stringData": {"password": "hunter2"}}))?,
        )
        .await?;
    f.runtime.set_sandbox_ip("env", "10.42.0.9");
    f.create_pod("env", json!({"containers": [{"name": "app", "image": "busybox:1.36",
        "command": ["echo", "$(GREETING)"],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "NAME", "value": "world"},
            {"name": "GREETING", "value": "hello $(NAME) $$(NAME) $(UNKNOWN)"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}
        ],
        "resources": {"limits": {"memory": "32Mi"}}}]}))
    .await?;
    f.wait_pod("env", "env Running", |p| phase(p) == "Running").await?;
    let c = f.runtime.containers().into_iter().find(|c| c.name() == "app").context("app")?;
    let env: std::collections::HashMap<String, String> =
        c.config.envs.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
    let get = |k: &str| env.get(k).map(String::as_str);
    assert_eq!(get("GREETING"), Some("hello world $(NAME) $(UNKNOWN)"));
    assert_eq!(get("POD_NAME"), Some("env"));
    assert_eq!(get("POD_IP"), Some("10.42.0.9"));
    assert_eq!(get("NODE"), Some(NODE));
    assert_eq!(get("MODE"), Some("fast"));
    assert_eq!(get("CFG_mode"), Some("fast"));
    assert_eq!(get("CFG_level"), Some("3"));
    assert_eq!(get("PASSWORD"), Some("hunter2"));
    assert_eq!(get("MEM"), Some("32"));
    assert!(get("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty()), "service links: {env:?}");
    assert!(get("KUBERNETES_PORT").is_some_and(|p| p.starts_with("tcp://")), "service links: {env:?}");
    assert_eq!(c.config.command, ["echo", "hello world $(NAME) $(UNKNOWN)"]);
    Ok(())
}

#[tokio::test]
async fn a_missing_configmap_is_a_create_container_config_error() -> Result<()> {
    let f = Fixture::started().await?;
    f.create_pod(
        "nocm",
        json!({"containers": [{"name": "app", "image": "busybox:1.36",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}]}),
    )
    .await?;
    let pod = f
        .wait_pod("nocm", "CreateContainerConfigError", |p| {
            waiting_reason(p, "app").as_deref() == Some("CreateContainerConfigError")
        })
        .await?;
    let w =
        container(&pod, "app").and_then(|c| c.state.clone()).and_then(|s| s.waiting).context("waiting")?;
    assert_eq!(w.message.as_deref(), Some("configmap \"nope\" not found"));
    assert_eq!(phase(&pod), "Pending");
    let cms: Api<ConfigMap> = Api::namespaced(f.cluster.client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "nope"}, "data": {"k": "v"}}))?,
    )
    .await?;
    f.wait_pod("nocm", "nocm Running once the configmap exists", |p| phase(p) == "Running").await?;
    Ok(())
}

#[tokio::test]
async fn image_pull_failures_show_err_image_pull_then_back_off() -> Result<()> {
    let f = Fixture::started().await?;
    f.runtime.fail_pulls("ghost:latest", Some("pull access denied"));
    f.create_pod("ghost", simple("ghost:latest")).await?;
    let pod = f
        .wait_pod("ghost", "ErrImagePull", |p| waiting_reason(p, "app").as_deref() == Some("ErrImagePull"))
        .await?;
    let m = container(&pod, "app")
        .and_then(|c| c.state.clone())
        .and_then(|s| s.waiting)
        .and_then(|w| w.message)
        .unwrap_or_default();
    assert!(m.contains("ghost:latest") && m.contains("pull access denied"), "{m}");
    f.wait_pod("ghost", "ImagePullBackOff", |p| {
        waiting_reason(p, "app").as_deref() == Some("ImagePullBackOff")
    })
    .await?;
    f.runtime.fail_pulls("ghost:latest", None);
    f.wait_pod("ghost", "ghost Running after the image became pullable", |p| phase(p) == "Running").await?;
    Ok(())
}

#[tokio::test]
async fn config_map_secret_and_downward_api_volumes_are_written() -> Result<()> {
    let f = Fixture::started().await?;
    let cms: Api<ConfigMap> = Api::namespaced(f.cluster.client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "app-config"},
        "data": {"app.yaml": "port: 80\n", "other": "x"}}))?,
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(f.cluster.client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "tls"},
            "stringData": {"tls.key": "secret-key"}}))?,
        )
        .await?;
    f.create_pod("vols", json!({
        "volumes": [
            {"name": "config", "configMap": {"name": "app-config", "items": [{"key": "app.yaml", "path": "conf/app.yaml", "mode": 0o600}]}},
            {"name": "tls", "secret": {"secretName": "tls"}},
            {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "scratch", "emptyDir": {}}
        ],
        "containers": [{"name": "app", "image": "busybox:1.36", "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app"},
            {"name": "tls", "mountPath": "/tls", "readOnly": true},
            {"name": "info", "mountPath": "/info"},
            {"name": "scratch", "mountPath": "/scratch"}]}]}))
    .await?;
    f.wait_pod("vols", "vols Running", |p| phase(p) == "Running").await?;
    let c = f.runtime.containers().into_iter().find(|c| c.name() == "app").context("app")?;
    let host = |path: &str| {
        c.config
            .mounts
            .iter()
            .find(|m| m.container_path == path)
            .map(|m| (std::path::PathBuf::from(&m.host_path), m.readonly))
    };
    let (config, _) = host("/etc/app").context("/etc/app mount")?;
    assert_eq!(std::fs::read_to_string(config.join("conf/app.yaml"))?, "port: 80\n");
    assert!(!config.join("other").exists(), "only the listed items are written");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(config.join("conf/app.yaml"))?.permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_link(config.join("..data")).is_ok(), "written through the ..data link");
    let (tls, readonly) = host("/tls").context("/tls mount")?;
    assert!(readonly);
    assert_eq!(std::fs::read_to_string(tls.join("tls.key"))?, "secret-key");
    let (info, _) = host("/info").context("/info mount")?;
    assert_eq!(std::fs::read_to_string(info.join("labels"))?, "app=\"vols\"\n");
    let (scratch, _) = host("/scratch").context("/scratch mount")?;
    assert!(scratch.is_dir());
    assert!(host("/etc/hosts").is_some() && host("/dev/termination-log").is_some());

    let mut cm = cms.get("app-config").await?;
    cm.data.get_or_insert_default().insert("app.yaml".into(), "port: 8080\n".into());
    cms.replace("app-config", &PostParams::default(), &cm).await?;
    let file = config.join("conf/app.yaml");
    eventually("the configmap update in the volume", || async {
        let now = std::fs::read_to_string(&file)?;
        Ok(if now == "port: 8080\n" { Ok(()) } else { Err(now) })
    })
    .await
}

#[tokio::test]
async fn probes_drive_readiness_and_restart_unhealthy_containers() -> Result<()> {
    let f = Fixture::started().await?;
    f.runtime.set_exec_exit_code("web", 1);
    f.create_pod(
        "probed",
        json!({"containers": [
        {"name": "web", "image": "busybox:1.36",
         "readinessProbe": {"exec": {"command": ["ready"]}, "periodSeconds": 1}},
        {"name": "live", "image": "busybox:1.36",
         "livenessProbe": {"exec": {"command": ["alive"]}, "periodSeconds": 1, "failureThreshold": 1}}]}),
    )
    .await?;
    let pod = f
        .wait_pod("probed", "Running but not Ready", |p| {
            phase(p) == "Running"
                && container(p, "live").is_some_and(|c| c.ready)
                && container(p, "web").is_some_and(|c| !c.ready)
        })
        .await?;
    assert_eq!(condition(&pod, "Ready").as_deref(), Some("False"));
    f.runtime.set_exec_exit_code("web", 0);
    f.wait_pod("probed", "Ready once the readiness probe passes", |p| {
        condition(p, "Ready").as_deref() == Some("True")
    })
    .await?;
    f.runtime.set_exec_exit_code("live", 1);
    f.wait_pod("probed", "live restarted by its liveness probe", |p| {
        container(p, "live").is_some_and(|c| c.restart_count >= 1)
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_sidecar_keeps_running_beside_the_app_and_is_restarted_when_it_exits() -> Result<()> {
    let f = Fixture::started().await?;
    f.runtime.exit_on_start("setup", Some(0));
    f.create_pod(
        "sidecars",
        json!({
        "initContainers": [
            {"name": "proxy", "image": "busybox:1.36", "restartPolicy": "Always"},
            {"name": "setup", "image": "busybox:1.36"}],
        "containers": [{"name": "app", "image": "busybox:1.36"}]}),
    )
    .await?;
    let pod = f.wait_pod("sidecars", "sidecars Running", |p| phase(p) == "Running").await?;
    assert_eq!(condition(&pod, "Initialized").as_deref(), Some("True"));
    let proxy = container(&pod, "proxy").context("proxy")?;
    assert!(proxy.state.as_ref().is_some_and(|s| s.running.is_some()), "the sidecar runs: {proxy:?}");
    let creates: Vec<String> = f
        .runtime
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("CreateContainer"))
        .filter_map(|c| c.rsplit(' ').next().map(str::to_string))
        .collect();
    assert_eq!(creates, ["proxy", "setup", "app"]);
    let id = f.runtime.containers().into_iter().find(|c| c.name() == "proxy").context("proxy container")?.id;
    assert!(f.runtime.exit_container(&id, 1));
    f.wait_pod("sidecars", "the sidecar restarted", |p| {
        container(p, "proxy")
            .is_some_and(|c| c.restart_count == 1 && c.state.as_ref().is_some_and(|s| s.running.is_some()))
    })
    .await?;
    let app = f.runtime.containers().into_iter().filter(|c| c.name() == "app").count();
    assert_eq!(app, 1, "the app was not restarted");
    Ok(())
}

#[tokio::test]
async fn changing_a_container_image_restarts_the_container_with_the_new_image() -> Result<()> {
    let f = Fixture::started().await?;
    f.create_pod("upgrade", simple("busybox:1.36")).await?;
    f.wait_pod("upgrade", "upgrade Running", |p| phase(p) == "Running").await?;
    let patch = json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}});
    f.pods()
        .patch("upgrade", &kube::api::PatchParams::default(), &kube::api::Patch::Strategic(&patch))
        .await?;
    let pod = f
        .wait_pod("upgrade", "app running nginx:1.27", |p| {
            container(p, "app").is_some_and(|c| {
                c.image == "nginx:1.27"
                    && c.restart_count == 1
                    && c.state.as_ref().is_some_and(|s| s.running.is_some())
            })
        })
        .await?;
    assert_eq!(phase(&pod), "Running");
    let images: Vec<String> = f
        .runtime
        .containers()
        .into_iter()
        .filter(|c| c.state == corten_cri::api::ContainerState::ContainerRunning)
        .filter_map(|c| c.config.image.map(|i| i.image))
        .collect();
    assert_eq!(images, ["nginx:1.27"]);
    Ok(())
}

#[tokio::test]
async fn termination_messages_come_from_the_message_file_or_the_log_tail() -> Result<()> {
    let f = Fixture::started().await?;
    f.create_pod(
        "messages",
        json!({"restartPolicy": "Never", "containers": [
        {"name": "writer", "image": "busybox:1.36"},
        {"name": "logger", "image": "busybox:1.36", "terminationMessagePolicy": "FallbackToLogsOnError"}]}),
    )
    .await?;
    f.wait_pod("messages", "messages Running", |p| phase(p) == "Running").await?;
    let containers = f.runtime.containers();
    let writer = containers.iter().find(|c| c.name() == "writer").context("writer")?;
    let file =
        writer.config.mounts.iter().find(|m| m.container_path == "/dev/termination-log").context("mount")?;
    std::fs::write(&file.host_path, "wrote this on exit")?;
    let logger = containers.iter().find(|c| c.name() == "logger").context("logger")?;
    let sandbox = f.runtime.sandboxes().into_iter().next().context("sandbox")?;
    let log = std::path::Path::new(&sandbox.config.log_directory).join(&logger.config.log_path);
    std::fs::write(&log, "2024-01-01T00:00:00Z stderr F panic: out of cheese\n")?;
    assert!(f.runtime.exit_container(&writer.id, 0) && f.runtime.exit_container(&logger.id, 2));
    let pod = f.wait_pod("messages", "messages Failed", |p| phase(p) == "Failed").await?;
    let message = |name: &str| {
        container(&pod, name).and_then(|c| c.state.clone()).and_then(|s| s.terminated).and_then(|t| t.message)
    };
    assert_eq!(message("writer").as_deref(), Some("wrote this on exit"));
    assert_eq!(message("logger").as_deref(), Some("panic: out of cheese"));
    Ok(())
}

#[tokio::test]
async fn a_pod_past_its_active_deadline_fails_and_is_stopped() -> Result<()> {
    let f = Fixture::started().await?;
    f.create_pod(
        "deadline",
        json!({"activeDeadlineSeconds": 1, "containers": [{"name": "app", "image": "busybox:1.36"}]}),
    )
    .await?;
    let pod = f.wait_pod("deadline", "deadline Failed", |p| phase(p) == "Failed").await?;
    let status = pod.status.unwrap_or_default();
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    let runtime = f.runtime.clone();
    eventually("the pod's containers stopped", || async {
        let running = runtime
            .containers()
            .into_iter()
            .filter(|c| c.state == corten_cri::api::ContainerState::ContainerRunning)
            .count();
        Ok(if running == 0 { Ok(()) } else { Err(format!("{running} running")) })
    })
    .await
}

#[tokio::test]
async fn a_failing_post_start_hook_kills_the_container() -> Result<()> {
    let f = Fixture::started().await?;
    f.runtime.set_exec_exit_code("hooked", 1);
    f.create_pod(
        "hooks",
        json!({"restartPolicy": "Never", "containers": [{"name": "hooked", "image": "busybox:1.36",
        "lifecycle": {"postStart": {"exec": {"command": ["setup"]}}}}]}),
    )
    .await?;
    let pod = f.wait_pod("hooks", "hooks Failed", |p| phase(p) == "Failed").await?;
    assert!(
        container(&pod, "hooked").is_some_and(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
    );
    assert!(f.runtime.calls().iter().any(|c| c.starts_with("ExecSync") && c.ends_with(" setup")));
    Ok(())
}

#[tokio::test]
async fn readiness_gates_hold_ready_until_their_condition_is_true() -> Result<()> {
    let f = Fixture::started().await?;
    f.create_pod(
        "gated",
        json!({"readinessGates": [{"conditionType": "example.com/lb"}],
        "containers": [{"name": "app", "image": "busybox:1.36"}]}),
    )
    .await?;
    let pod = f
        .wait_pod("gated", "ContainersReady but not Ready", |p| {
            condition(p, "ContainersReady").as_deref() == Some("True")
                && condition(p, "Ready").as_deref() == Some("False")
        })
        .await?;
    let ready =
        pod.status.and_then(|s| s.conditions).unwrap_or_default().into_iter().find(|c| c.type_ == "Ready");
    assert_eq!(ready.and_then(|c| c.reason).as_deref(), Some("ReadinessGatesNotReady"));
    let patch = json!({"status": {"conditions": [{"type": "example.com/lb", "status": "True"}]}});
    f.pods()
        .patch_status("gated", &kube::api::PatchParams::default(), &kube::api::Patch::Strategic(&patch))
        .await?;
    let pod = f
        .wait_pod("gated", "Ready once the gate is True", |p| {
            condition(p, "Ready").as_deref() == Some("True")
        })
        .await?;
    assert_eq!(condition(&pod, "example.com/lb").as_deref(), Some("True"), "the gate's condition is kept");
    Ok(())
}
