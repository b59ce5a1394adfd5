//! Ending pods: graceful and forced deletion, orphaned sandboxes, and a kubelet restart that
//! adopts what runs.

mod common;

use anyhow::{Context as _, Result};
use common::*;
use corten_cri::Runtime;
use kube::api::DeleteParams;
use serde_json::json;

#[tokio::test]
async fn deleting_a_pod_stops_and_removes_its_containers_and_sandbox_then_the_pod() -> Result<()> {
    let f = Fixture::started().await?;
    f.create_pod("doomed", json!({"terminationGracePeriodSeconds": 7, "containers": [
        {"name": "app", "image": "busybox:1.36", "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "sleep 1"]}}}},
        {"name": "sidecar", "image": "busybox:1.36"}]}))
    .await?;
    f.wait_pod("doomed", "doomed Running", |p| phase(p) == "Running").await?;
    f.pods().delete("doomed", &DeleteParams::default()).await?;
    let pods = f.pods();
    eventually("the pod object gone", || async {
        Ok(match pods.get_opt("doomed").await? {
            None => Ok(()),
            Some(p) => Err(format!("still there, deletionTimestamp {:?}", p.metadata.deletion_timestamp)),
        })
    })
    .await?;
    assert!(f.runtime.sandboxes().is_empty(), "sandbox left: {:?}", f.runtime.sandboxes());
    assert!(f.runtime.containers().is_empty(), "containers left: {:?}", f.runtime.containers());
    let calls = f.runtime.calls();
    assert!(
        calls.iter().any(|c| c.starts_with("ExecSync") && c.ends_with("sh -c sleep 1")),
        "preStop ran: {calls:?}"
    );
    let stops: Vec<&String> = calls.iter().filter(|c| c.starts_with("StopContainer")).collect();
    let timeouts: Vec<i64> = stops.iter().filter_map(|c| c.rsplit(' ').next()?.parse().ok()).collect();
    assert!(
        stops.len() >= 2 && timeouts.iter().any(|t| (1..=7).contains(t)),
        "stopped within the 7s grace period: {stops:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_restarted_kubelet_adopts_running_containers_without_restarting_them() -> Result<()> {
    let mut f = Fixture::started().await?;
    f.create_pod(
        "steady",
        json!({"containers": [
        {"name": "a", "image": "busybox:1.36"}, {"name": "b", "image": "busybox:1.36"}]}),
    )
    .await?;
    f.wait_pod("steady", "steady Running", |p| {
        phase(p) == "Running" && condition(p, "Ready").as_deref() == Some("True")
    })
    .await?;
    f.stop_kubelet().await?;
    let before = f.runtime.containers();
    assert_eq!(before.len(), 2);
    let starts_before = f.runtime.calls().iter().filter(|c| c.starts_with("StartContainer")).count();

    f.start_kubelet();
    let a = before.iter().find(|c| c.name() == "a").context("a")?;
    assert!(f.runtime.exit_container(&a.id, 2));
    let pod = f
        .wait_pod("steady", "a restarted by the new kubelet", |p| {
            container(p, "a").is_some_and(|c| {
                c.restart_count == 1 && c.state.as_ref().is_some_and(|s| s.running.is_some())
            })
        })
        .await?;
    assert_eq!(container(&pod, "b").map(|c| c.restart_count), Some(0));
    let calls = f.runtime.calls();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("RunPodSandbox")).count(),
        1,
        "no second sandbox: {calls:?}"
    );
    let starts = calls.iter().filter(|c| c.starts_with("StartContainer")).count();
    assert_eq!(starts, starts_before + 1, "only the exited container was started again: {calls:?}");
    let b = before.iter().find(|c| c.name() == "b").context("b")?;
    assert!(f.runtime.containers().iter().any(|c| c.id == b.id), "b is the same container");
    Ok(())
}

#[tokio::test]
async fn sandboxes_of_pods_deleted_while_the_kubelet_was_down_are_removed() -> Result<()> {
    let mut f = Fixture::new().await?;
    let orphan = corten_cri::api::PodSandboxConfig {
        metadata: Some(corten_cri::api::PodSandboxMetadata {
            name: "gone".into(),
            uid: "dead-beef".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        labels: [("io.kubernetes.pod.uid".to_string(), "dead-beef".to_string())].into(),
        ..Default::default()
    };
    let unmanaged = corten_cri::api::PodSandboxConfig::default();
    f.runtime.run_pod_sandbox(orphan, String::new()).await?;
    let keep = f.runtime.run_pod_sandbox(unmanaged, String::new()).await?;
    f.start_kubelet();
    let runtime = f.runtime.clone();
    eventually("the orphaned sandbox removed", || async {
        let ids: Vec<String> = runtime.sandboxes().into_iter().map(|s| s.id).collect();
        Ok(if ids == [keep.clone()] { Ok(()) } else { Err(format!("{ids:?}")) })
    })
    .await
}

#[tokio::test]
async fn a_force_deleted_pod_has_its_containers_and_sandbox_removed() -> Result<()> {
    let f = Fixture::started().await?;
    f.create_pod("forced", simple("busybox:1.36")).await?;
    f.wait_pod("forced", "forced Running", |p| phase(p) == "Running").await?;
    f.pods().delete("forced", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await?;
    let runtime = f.runtime.clone();
    eventually("nothing left in the runtime", || async {
        let (s, c) = (runtime.sandboxes().len(), runtime.containers().len());
        Ok(if s == 0 && c == 0 { Ok(()) } else { Err(format!("{s} sandboxes, {c} containers")) })
    })
    .await
}

fn mounted_as_tmpfs(path: &str) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounts.lines().any(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        fields.get(4) == Some(&path) && l.split(" - ").nth(1).is_some_and(|rest| rest.starts_with("tmpfs"))
    })
}

#[tokio::test]
async fn memory_empty_dirs_are_tmpfs_mounts_removed_with_the_pod() -> Result<()> {
    let f = Fixture::started().await?;
    f.create_pod("ram", json!({"volumes": [{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}],
        "containers": [{"name": "app", "image": "busybox:1.36", "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}]}))
    .await?;
    let pod = f
        .wait_pod("ram", "Running, or waiting on the tmpfs mount", |p| {
            phase(p) == "Running" || waiting_reason(p, "app").as_deref() == Some("ContainerCreating")
        })
        .await?;
    if phase(&pod) != "Running" {
        // Without the privilege to mount, the pod waits and says why.
        let w = container(&pod, "app")
            .and_then(|c| c.state.clone())
            .and_then(|s| s.waiting)
            .context("waiting")?;
        let m = w.message.unwrap_or_default();
        assert!(m.contains("mounting tmpfs"), "{m}");
        return Ok(());
    }
    let c = f.runtime.containers().into_iter().find(|c| c.name() == "app").context("app")?;
    let host =
        c.config.mounts.iter().find(|m| m.container_path == "/cache").context("mount")?.host_path.clone();
    assert!(mounted_as_tmpfs(&host), "{host} is a tmpfs");
    f.pods().delete("ram", &DeleteParams::default()).await?;
    let pods = f.pods();
    eventually("the pod gone", || async {
        Ok(if pods.get_opt("ram").await?.is_none() { Ok(()) } else { Err("still there".into()) })
    })
    .await?;
    assert!(!mounted_as_tmpfs(&host), "the tmpfs is unmounted");
    assert!(!std::path::Path::new(&host).exists(), "the pod directory is removed");
    Ok(())
}
