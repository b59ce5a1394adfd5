//! One pod's worker: a loop that reads what the runtime has for the pod ([`View`]), decides the
//! one next [`Step`] (create the sandbox, start the next init container, start containers, kill
//! a container that failed its liveness probe, stop a finished pod, terminate a deleted one),
//! takes it, and writes the pod status when it changed. Level-triggered: a restarted kubelet
//! picks up where the runtime is, so running containers are adopted, not duplicated.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corten_cri::Runtime;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

mod start;
mod terminate;

use super::backoff::Backoff;
use super::probe::{Probes, Verdict};
use super::status::{pod_status, restarts, StatusInputs, Waiting};
use super::view::{observe, ContainerView, View};
use super::{event, key, remove_sandbox, Context};
use crate::volumes::{self, PodFacts};
use crate::Error;

/// A container to start and the restart count its new instance gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Start {
    pub name: String,
    pub init: bool,
    pub restart_count: i32,
}

/// The next thing the worker does for its pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing until the pod or the runtime changes.
    Idle,
    /// Create the pod's sandbox (its `attempt`-th).
    CreateSandbox { attempt: u32 },
    /// Start these containers (one init container at a time, or the app containers).
    Start(Vec<Start>),
    /// Kill a container whose liveness or startup probe failed.
    Kill { id: String, message: String },
    /// Stop what still runs of a pod that finished (phase Succeeded or Failed).
    StopPod,
    /// The pod is being deleted: preStop, stop, remove, then delete the pod object.
    Terminate,
}

fn wall_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// The monotonic instant of a CRI timestamp (nanoseconds since the epoch).
fn instant_of(nanos: i64) -> Instant {
    let ago = Duration::from_nanos(wall_nanos().saturating_sub(nanos).max(0) as u64);
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

fn now_seconds() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now())
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub(crate) fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The worker of one pod.
pub(crate) struct Worker<R> {
    ctx: Arc<Context<R>>,
    uid: String,
    rx: watch::Receiver<Option<Arc<Pod>>>,
    pod: Arc<Pod>,
    gone: bool,
    crash_backoff: Backoff,
    pull_backoff: Backoff,
    pull_failed_at: HashMap<String, Instant>,
    waiting: HashMap<String, Waiting>,
    retry_at: HashMap<String, Instant>,
    backoff_events: Vec<String>,
    deadline_exceeded: bool,
    probes: HashMap<String, Probes>,
    kills: Vec<(String, String)>,
    volumes: HashMap<String, PathBuf>,
    volumes_refreshed: Instant,
    start_time: Time,
    last_posted: Option<serde_json::Value>,
}

impl<R> std::fmt::Debug for Worker<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("pod", &key(&self.pod)).field("uid", &self.uid).finish_non_exhaustive()
    }
}

impl<R: Runtime> Worker<R> {
    pub(crate) fn new(ctx: Arc<Context<R>>, uid: String, rx: watch::Receiver<Option<Arc<Pod>>>) -> Worker<R> {
        let pod = rx.borrow().clone().unwrap_or_default();
        let (base, max) = (ctx.config.backoff_base, ctx.config.max_backoff);
        Worker {
            ctx,
            uid,
            rx,
            pod,
            gone: false,
            crash_backoff: Backoff::new(base, max),
            pull_backoff: Backoff::new(base, max),
            pull_failed_at: HashMap::new(),
            waiting: HashMap::new(),
            retry_at: HashMap::new(),
            backoff_events: Vec::new(),
            deadline_exceeded: false,
            probes: HashMap::new(),
            kills: Vec::new(),
            volumes: HashMap::new(),
            volumes_refreshed: Instant::now(),
            start_time: Time(now_seconds()),
            last_posted: None,
        }
    }

    /// Runs the pod until it is terminated and deleted, or `shutdown` (which leaves it running).
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match self.rx.borrow_and_update().clone() {
                Some(p) => self.pod = p,
                None => self.gone = true,
            }
            let outcome = match observe(&self.ctx.runtime, &self.uid).await {
                Ok(view) => self.sync(&view).await,
                Err(e) => {
                    warn!(error = %e, pod = %key(&self.pod), "reading the pod's containers failed");
                    Ok(false)
                }
            };
            match outcome {
                Ok(true) => continue,
                Ok(false) => {}
                Err(Done) => return,
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = self.rx.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(self.ctx.config.sync_period) => {}
            }
        }
    }

    /// One step; `Ok(true)` when it made progress (sync again now), `Err(Done)` when the pod
    /// is finished with.
    async fn sync(&mut self, view: &View) -> Result<bool, Done> {
        self.run_probes(view).await;
        let step = self.plan(view);
        for name in std::mem::take(&mut self.backoff_events) {
            let note = format!(
                "Back-off restarting failed container {name} in pod {}",
                self.pod.metadata.name.as_deref().unwrap_or("")
            );
            event(&self.ctx, &self.pod, true, "BackOff", note).await;
        }
        if step != Step::Terminate {
            self.post_status(view).await;
        }
        debug!(pod = %key(&self.pod), step = ?step, "pod step");
        let result = match step {
            Step::Idle => {
                self.refresh_volumes(view).await;
                return Ok(false);
            }
            Step::Terminate => {
                return match self.terminate(view).await {
                    Ok(()) => Err(Done),
                    Err(e) => {
                        warn!(error = %e, pod = %key(&self.pod), "terminating the pod failed");
                        Ok(false)
                    }
                };
            }
            Step::CreateSandbox { attempt } => self.create_sandbox(attempt).await,
            Step::Start(starts) => {
                let Some(sandbox) = view.ready_sandbox() else { return Ok(true) };
                let mut progressed = false;
                for s in starts {
                    progressed |= self.start(view, sandbox, &s).await;
                }
                return Ok(progressed);
            }
            Step::Kill { id, message } => {
                info!(pod = %key(&self.pod), container = %id, "{message}");
                event(&self.ctx, &self.pod, false, "Killing", message).await;
                self.ctx.runtime.stop_container(&id, self.grace_seconds()).await.map_err(Error::from)
            }
            Step::StopPod => self.stop_pod(view).await,
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) => {
                warn!(error = %e, pod = %key(&self.pod), "pod step failed");
                Ok(false)
            }
        }
    }

    fn policy(&self) -> String {
        self.pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into())
    }

    fn grace_seconds(&self) -> i64 {
        self.pod
            .metadata
            .deletion_grace_period_seconds
            .or(self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30)
    }

    fn spec_container(&self, name: &str) -> Option<(Container, bool)> {
        let spec = self.pod.spec.as_ref()?;
        if let Some(c) = spec.containers.iter().find(|c| c.name == name) {
            return Some((c.clone(), false));
        }
        spec.init_containers.iter().flatten().find(|c| c.name == name).map(|c| (c.clone(), true))
    }

    /// A restart of `latest` now, or `None` while in crash-loop back-off (recorded as the
    /// container's waiting reason).
    fn restart(&mut self, latest: &ContainerView, init: bool) -> Option<Start> {
        let finished = instant_of(latest.finished_at);
        if let Some(delay) = self.crash_backoff.in_backoff_since(&latest.name, finished, Instant::now()) {
            let m = &self.pod.metadata;
            let message = format!(
                "back-off {}s restarting failed container={} pod={}_{}({})",
                delay.as_secs(),
                latest.name,
                m.name.as_deref().unwrap_or(""),
                m.namespace.as_deref().unwrap_or(""),
                self.uid
            );
            let previous = self
                .waiting
                .insert(latest.name.clone(), Waiting { reason: "CrashLoopBackOff".into(), message });
            if previous.is_none_or(|p| p.reason != "CrashLoopBackOff") {
                self.backoff_events.push(latest.name.clone());
            }
            return None;
        }
        Some(Start { name: latest.name.clone(), init, restart_count: latest.restart_count + 1 })
    }

    /// Decides the next step from the pod and what the runtime has.
    pub(crate) fn plan(&mut self, view: &View) -> Step {
        if self.gone || self.pod.metadata.deletion_timestamp.is_some() {
            return Step::Terminate;
        }
        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = self.policy();
        let phase = self.pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if let Some(deadline) = spec.active_deadline_seconds {
            let started = self
                .pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .unwrap_or(self.start_time.clone());
            let end = started.0.checked_add(jiff::SignedDuration::from_secs(deadline)).unwrap_or(started.0);
            self.deadline_exceeded |= Timestamp::now() >= end;
        }
        let finished = matches!(phase.as_str(), "Succeeded" | "Failed")
            || self.deadline_exceeded
            || self.finished(view, &policy);
        if finished {
            return if view.anything_running() { Step::StopPod } else { Step::Idle };
        }
        if let Some((id, message)) = self.kills.pop() {
            return Step::Kill { id, message };
        }
        if view.ready_sandbox().is_none() {
            if view.anything_running() {
                return Step::StopPod;
            }
            let attempt = view.sandboxes.first().map(|s| s.attempt + 1).unwrap_or(0);
            return Step::CreateSandbox { attempt };
        }
        let now = Instant::now();
        let retry_at = self.retry_at.clone();
        let cooling = |name: &str| retry_at.get(name).is_some_and(|at| *at > now);
        for c in spec.init_containers.iter().flatten() {
            if is_sidecar(c) {
                // A sidecar (an init container with `restartPolicy: Always`) only has to be
                // started for the next init container to run; it is restarted whenever it exits.
                match view.latest(&c.name) {
                    _ if cooling(&c.name) => {}
                    None => {
                        return Step::Start(vec![Start {
                            name: c.name.clone(),
                            init: true,
                            restart_count: 0,
                        }])
                    }
                    Some(l) if l.running() => {
                        self.waiting.remove(&c.name);
                    }
                    Some(l) => {
                        let l = l.clone();
                        if let Some(s) = self.restart(&l, true) {
                            return Step::Start(vec![s]);
                        }
                    }
                }
                continue;
            }
            if cooling(&c.name) {
                return Step::Idle;
            }
            match view.latest(&c.name) {
                None => {
                    return Step::Start(vec![Start { name: c.name.clone(), init: true, restart_count: 0 }])
                }
                Some(l) if l.running() => return Step::Idle,
                Some(l) if l.exited() && l.exit_code == 0 => {
                    self.waiting.remove(&c.name);
                }
                Some(l) => {
                    let l = l.clone();
                    return match self.restart(&l, true) {
                        Some(s) => Step::Start(vec![s]),
                        None => Step::Idle,
                    };
                }
            }
        }
        let mut starts = Vec::new();
        for c in &spec.containers {
            if cooling(&c.name) {
                continue;
            }
            match view.latest(&c.name) {
                None => starts.push(Start { name: c.name.clone(), init: false, restart_count: 0 }),
                Some(l) if l.running() => {
                    if l.spec_image.as_deref().is_some_and(|i| Some(i) != c.image.as_deref()) {
                        let message = format!("Container {} definition changed, will be restarted", c.name);
                        return Step::Kill { id: l.id.clone(), message };
                    }
                    self.waiting.remove(&c.name);
                }
                Some(l) if l.exited() && !restarts(&policy, l.exit_code) => {
                    self.waiting.remove(&c.name);
                }
                Some(l) => {
                    let l = l.clone();
                    starts.extend(self.restart(&l, false));
                }
            }
        }
        if starts.is_empty() {
            Step::Idle
        } else {
            Step::Start(starts)
        }
    }

    /// Whether every container is done for good (Never/OnFailure pods that completed or failed).
    fn finished(&self, view: &View, policy: &str) -> bool {
        let Some(spec) = self.pod.spec.as_ref() else { return false };
        if policy == "Always" {
            return false;
        }
        let init_failed = spec.init_containers.iter().flatten().filter(|c| !is_sidecar(c)).any(|c| {
            view.latest(&c.name).is_some_and(|l| l.exited() && l.exit_code != 0 && policy == "Never")
        });
        init_failed
            || (!spec.containers.is_empty()
                && spec.containers.iter().all(|c| {
                    view.latest(&c.name).is_some_and(|l| l.exited() && !restarts(policy, l.exit_code))
                }))
    }

    async fn run_probes(&mut self, view: &View) {
        let sandbox_ip = view.ready_sandbox().and_then(|s| s.ips.first().cloned());
        let host_network = self.pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let ip = if host_network { Some(self.ctx.host_ip.to_string()) } else { sandbox_ip };
        let running: Vec<ContainerView> = view.containers.iter().filter(|c| c.running()).cloned().collect();
        self.probes.retain(|id, _| running.iter().any(|c| &c.id == id));
        for c in running {
            let Some((spec, false)) = self.spec_container(&c.name) else { continue };
            if spec.liveness_probe.is_none() && spec.readiness_probe.is_none() && spec.startup_probe.is_none()
            {
                continue;
            }
            let probes =
                self.probes.entry(c.id.clone()).or_insert_with(|| Probes::new(&spec, Instant::now()));
            if let Verdict::Kill(message) =
                probes.run_due(&self.ctx.runtime, &spec, &c.id, ip.as_deref()).await
            {
                if !self.kills.iter().any(|(id, _)| id == &c.id) {
                    self.kills.push((c.id.clone(), message));
                }
            }
        }
    }

    async fn post_status(&mut self, view: &View) {
        let phase = self.pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if self.gone || (matches!(phase, Some("Succeeded" | "Failed")) && view.containers.is_empty()) {
            // A finished pod whose containers are gone keeps the status it ended with.
            return;
        }
        let host_ip = self.ctx.host_ip.to_string();
        let log_dir = super::sandbox::log_directory(&self.ctx.config, &self.pod);
        let status = pod_status(&StatusInputs {
            pod: &self.pod,
            view,
            waiting: &self.waiting,
            probes: &self.probes,
            host_ip: &host_ip,
            runtime_name: &self.ctx.runtime_name,
            log_dir: &log_dir,
            deadline_exceeded: self.deadline_exceeded,
            start_time: self.start_time.clone(),
            now: now_seconds(),
        });
        let Ok(value) = serde_json::to_value(&status) else { return };
        if self.last_posted.as_ref() == Some(&value) {
            return;
        }
        let current = serde_json::to_value(&self.pod.status).unwrap_or_default();
        if current == value {
            self.last_posted = Some(value);
            return;
        }
        let pods: Api<Pod> =
            Api::namespaced(self.ctx.client.clone(), self.pod.metadata.namespace.as_deref().unwrap_or(""));
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let patch = json!({"status": value});
        match pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => self.last_posted = Some(value),
            Err(e) => warn!(error = %e, pod = %key(&self.pod), "updating the pod status failed"),
        }
    }

    /// Rewrites configMap, secret, downwardAPI and projected volumes of a running pod every
    /// `volume_sync_period`, so updates reach the containers (unchanged content is not rewritten).
    async fn refresh_volumes(&mut self, view: &View) {
        if self.volumes.is_empty() || self.volumes_refreshed.elapsed() < self.ctx.config.volume_sync_period {
            return;
        }
        let Some(sandbox) = view.ready_sandbox() else { return };
        self.volumes_refreshed = Instant::now();
        let facts = PodFacts {
            pod: &self.pod,
            host_ip: self.ctx.host_ip,
            pod_ips: &sandbox.ips,
            allocatable: &self.ctx.allocatable,
        };
        if let Err(e) = volumes::setup(&self.ctx.client, &self.ctx.config.root_dir, &facts).await {
            warn!(error = %e, pod = %key(&self.pod), "refreshing the pod's volumes failed");
        }
    }
}

/// The worker is finished with its pod.
#[derive(Debug)]
struct Done;
