//! What the controller integration tests share: an in-process API server with chosen
//! controllers running, a fake kubelet that marks pods Running and Ready through the status
//! subresource, a pod observer that records invariant violations, and polling with a deadline.
//!
//! Each test binary uses a part of this module, so unused items are expected.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use corten_apiserver::testing::TestCluster;
use corten_controllers::{Clock, Config};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use parking_lot::Mutex;
use serde_json::json;
use tokio::task::JoinHandle;

/// How long an eventual state may take.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A test cluster with the named controllers running; they and every task the test adds stop
/// when it is dropped.
pub struct Harness {
    pub cluster: TestCluster,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Harness {
    /// Runs `controllers` with the default configuration on the system clock.
    pub async fn start(controllers: &'static [&'static str]) -> Result<Harness> {
        Harness::start_with(controllers, Config::default(), Clock::system()).await
    }

    /// Runs `controllers` with `config` on `clock` (a manual clock makes time-driven logic
    /// deterministic).
    pub async fn start_with(
        controllers: &'static [&'static str],
        config: Config,
        clock: Clock,
    ) -> Result<Harness> {
        logs();
        let cluster = TestCluster::start().await.context("starting the test cluster")?;
        let (client, shutdown) = (cluster.client.clone(), cluster.shutdown());
        let task = tokio::spawn(async move {
            if let Err(e) =
                corten_controllers::run_only_with_clock(client, config, controllers, clock, shutdown).await
            {
                panic!("controllers failed: {e}");
            }
        });
        Ok(Harness { cluster, tasks: vec![task] })
    }

    pub fn client(&self) -> Client {
        self.cluster.client.clone()
    }

    /// The API of a namespaced kind in `ns`.
    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client(), ns)
    }

    pub fn pods(&self) -> Api<Pod> {
        self.api("default")
    }

    /// Starts a fake kubelet that marks the pods of `default` for which `ready` holds Running
    /// and Ready, one pod per tick, so rollouts advance step by step. Returns its task number
    /// for [`Harness::stop`].
    pub fn kubelet(&mut self, ready: impl Fn(&Pod) -> bool + Send + 'static) -> usize {
        let api = self.pods();
        self.spawn(async move {
            loop {
                if let Ok(list) = api.list(&ListParams::default()).await {
                    let next = list
                        .items
                        .into_iter()
                        .find(|p| p.metadata.deletion_timestamp.is_none() && !is_ready(p) && ready(p));
                    if let Some(p) = next {
                        let status = json!({"status": {
                            "phase": "Running",
                            "podIP": "10.0.0.1",
                            "conditions": [{"type": "Ready", "status": "True",
                                            "lastTransitionTime": jiff::Timestamp::now().to_string()}],
                        }});
                        let _ = api
                            .patch_status(&p.name_any(), &PatchParams::default(), &Patch::Merge(status))
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    }

    /// Watches the pods of `default` and calls `check` with all of them after every change;
    /// what it returns as errors is collected.
    pub fn observe_pods(
        &mut self,
        check: impl Fn(&[Arc<Pod>]) -> Option<String> + Send + 'static,
    ) -> Violations {
        let violations = Violations::default();
        let seen = violations.clone();
        let (reader, writer) = reflector::store();
        let stream = reflector(writer, watcher(self.pods(), watcher::Config::default()));
        self.spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut synced = false;
            while let Some(event) = stream.next().await {
                // Check complete states only: after the initial list, then after every change.
                match event {
                    Ok(watcher::Event::InitDone) => synced = true,
                    Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) if synced => {}
                    _ => continue,
                }
                if let Some(v) = check(&reader.state()) {
                    seen.0.lock().push(v);
                }
            }
        });
        violations
    }

    /// Runs `task` until the harness is dropped or [`Harness::stop`] is called with the number
    /// returned.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) -> usize {
        self.tasks.push(tokio::spawn(task));
        self.tasks.len() - 1
    }

    pub fn stop(&mut self, task: usize) {
        if let Some(t) = self.tasks.get(task) {
            t.abort();
        }
    }
}

/// Invariant violations seen by [`Harness::observe_pods`].
#[derive(Clone, Default)]
pub struct Violations(Arc<Mutex<Vec<String>>>);

impl Violations {
    pub fn assert_none(&self) -> Result<()> {
        let v = self.0.lock();
        if let Some(first) = v.first() {
            bail!("{} violations, first: {first}", v.len());
        }
        Ok(())
    }
}

pub fn is_ready(p: &Pod) -> bool {
    let conds = p.status.as_ref().and_then(|s| s.conditions.as_ref());
    conds.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Shows the controllers' logs of a failing test (`RUST_LOG=corten_controllers=debug`).
pub fn logs() {
    let filter = tracing_subscriber::EnvFilter::from_default_env();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// Polls `check` until it returns `Ok(Ok(value))`; fails after [`DEADLINE`] with what was
/// expected and the last thing seen (the `Err` of the inner result).
pub async fn eventually<T, F, Fut>(expected: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Result<T, String>>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let seen = match check().await? {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() > deadline {
            bail!("expected {expected} within {DEADLINE:?}; last saw {seen}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
