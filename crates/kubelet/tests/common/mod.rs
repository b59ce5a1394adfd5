//! Shared fixtures: an in-process API server, a `FakeRuntime` and the kubelet under test.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use corten_apiserver::testing::TestCluster;
use corten_cri::fake::FakeRuntime;
use corten_kubelet::Config;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const NODE: &str = "node-1";
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Kubelet {
    shutdown: CancellationToken,
    task: JoinHandle<corten_kubelet::Result<()>>,
}

impl Kubelet {
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.task.await?.context("kubelet run")?;
        Ok(())
    }
}

pub struct Fixture {
    pub cluster: TestCluster,
    pub runtime: FakeRuntime,
    pub dir: tempfile::TempDir,
    pub kubelet: Option<Kubelet>,
}

pub fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::new(NODE, dir.join("kubelet"));
    c.node_ip = Some("10.0.0.5".parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()));
    c.pod_log_dir = dir.join("pods-logs");
    c.cluster_dns = vec!["10.43.0.10".parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into())];
    c.sync_period = Duration::from_millis(50);
    c.backoff_base = Duration::from_secs(5);
    c.volume_sync_period = Duration::from_millis(200);
    c.node_status_update_frequency = Duration::from_millis(100);
    c.lease_renew_interval = Duration::from_millis(200);
    c
}

impl Fixture {
    pub async fn new() -> Result<Fixture> {
        let runtime = FakeRuntime::new();
        for image in ["busybox:1.36", "nginx:1.27"] {
            runtime.add_image(image);
        }
        Ok(Fixture {
            cluster: TestCluster::start().await?,
            runtime,
            dir: tempfile::tempdir()?,
            kubelet: None,
        })
    }

    pub async fn started() -> Result<Fixture> {
        let mut f = Fixture::new().await?;
        f.start_kubelet();
        Ok(f)
    }

    pub fn start_kubelet(&mut self) {
        let shutdown = self.cluster.shutdown().child_token();
        let task = tokio::spawn(corten_kubelet::run(
            self.cluster.client.clone(),
            self.runtime.clone(),
            config(self.dir.path()),
            shutdown.clone(),
        ));
        self.kubelet = Some(Kubelet { shutdown, task });
    }

    pub async fn stop_kubelet(&mut self) -> Result<()> {
        match self.kubelet.take() {
            Some(k) => k.stop().await,
            None => Ok(()),
        }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.cluster.client.clone(), "default")
    }

    pub async fn create_pod(&self, name: &str, spec: Value) -> Result<Pod> {
        let mut spec = spec;
        spec["nodeName"] = json!(NODE);
        let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}}, "spec": spec}))?;
        Ok(self.pods().create(&PostParams::default(), &pod).await?)
    }

    /// Polls the pod until `check` says yes; fails with what was last seen.
    pub async fn wait_pod(&self, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Result<Pod> {
        let pods = self.pods();
        eventually(what, || async {
            let pod = pods.get_opt(name).await?;
            Ok(match pod {
                Some(p) if check(&p) => Ok(p),
                Some(p) => Err(serde_json::to_string(&p.status)?),
                None => Err("no such pod".to_string()),
            })
        })
        .await
    }
}

/// Polls `probe` every 50 ms until it gives `Ok(value)`, at most [`DEADLINE`]; the error is the
/// last thing seen.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Result<T, String>>>,
{
    let start = tokio::time::Instant::now();
    let mut last = String::new();
    while start.elapsed() < DEADLINE {
        match probe().await? {
            Ok(v) => return Ok(v),
            Err(seen) => last = seen,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("expected {what} within {DEADLINE:?}; last seen: {last}")
}

pub fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub fn condition(p: &Pod, ty: &str) -> Option<String> {
    p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == ty).map(|c| c.status.clone())
}

pub fn container<'a>(p: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    let s = p.status.as_ref()?;
    s.container_statuses.iter().chain(s.init_container_statuses.iter()).flatten().find(|c| c.name == name)
}

pub fn waiting_reason(p: &Pod, name: &str) -> Option<String> {
    container(p, name)?.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

pub fn simple(image: &str) -> Value {
    json!({"containers": [{"name": "app", "image": image}]})
}
