//! A recording in-memory [`Runtime`] for the kubelet's tests (feature `testing`).
//!
//! Sandboxes and containers live in a map behind an `Arc<Mutex<..>>`, so clones share one
//! runtime: a test keeps a clone to script it (exit codes, sandbox IPs, images, runtime
//! conditions, pull failures) and to assert what the kubelet did (calls, what exists).
//! Nothing runs: a started container is `RUNNING` until the test makes it exit, or exits at once
//! when its name has a scripted exit; a stopped container exits with 137.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::api::{self, ContainerState, PodSandboxState};
use crate::{Error, Result, Runtime};

/// One sandbox as the fake holds it.
#[derive(Debug, Clone)]
pub struct FakeSandbox {
    /// The sandbox id.
    pub id: String,
    /// The config it was created with.
    pub config: api::PodSandboxConfig,
    /// `SANDBOX_READY` until stopped.
    pub state: PodSandboxState,
    /// Its IP.
    pub ip: String,
    /// Creation time, nanoseconds since the epoch.
    pub created_at: i64,
}

/// One container as the fake holds it.
#[derive(Debug, Clone)]
pub struct FakeContainer {
    /// The container id.
    pub id: String,
    /// The sandbox it belongs to.
    pub sandbox_id: String,
    /// The config it was created with.
    pub config: api::ContainerConfig,
    /// Created, running or exited.
    pub state: ContainerState,
    /// Exit code once exited.
    pub exit_code: i32,
    /// Creation, start and finish times, nanoseconds since the epoch (0: not yet).
    pub created_at: i64,
    /// See `created_at`.
    pub started_at: i64,
    /// See `created_at`.
    pub finished_at: i64,
}

impl FakeContainer {
    /// The container's name (its metadata name).
    pub fn name(&self) -> &str {
        self.config.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("")
    }
}

#[derive(Debug)]
struct State {
    calls: Vec<String>,
    sandboxes: BTreeMap<String, FakeSandbox>,
    containers: BTreeMap<String, FakeContainer>,
    images: BTreeMap<String, api::Image>,
    pull_failures: HashMap<String, String>,
    exits_on_start: HashMap<String, i32>,
    exec_exit_codes: HashMap<String, i32>,
    sandbox_ips: HashMap<String, String>,
    streaming_base: String,
    runtime_ready: bool,
    network_ready: bool,
    next_id: u64,
}

/// A recording in-memory CRI runtime; clones share state.
#[derive(Debug, Clone)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn not_found(call: &'static str, what: &str) -> Error {
    Error::Rpc { call, status: tonic::Status::not_found(format!("{what} not found")) }
}

fn image_id(name: &str) -> String {
    // A stable fake digest: the name's bytes as hex, padded.
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex:0<64.64}")
}

fn image(name: &str) -> api::Image {
    api::Image {
        id: image_id(name),
        repo_tags: vec![name.to_string()],
        repo_digests: vec![format!("{}@{}", name.split(':').next().unwrap_or(name), image_id(name))],
        size: 1 << 20,
        spec: Some(api::ImageSpec { image: name.to_string(), ..Default::default() }),
        ..Default::default()
    }
}

fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl FakeRuntime {
    /// A ready runtime (runtime and network ready) with no images.
    pub fn new() -> Self {
        FakeRuntime {
            state: Arc::new(Mutex::new(State {
                calls: Vec::new(),
                sandboxes: BTreeMap::new(),
                containers: BTreeMap::new(),
                images: BTreeMap::new(),
                pull_failures: HashMap::new(),
                exits_on_start: HashMap::new(),
                exec_exit_codes: HashMap::new(),
                sandbox_ips: HashMap::new(),
                streaming_base: "http://127.0.0.1:0".to_string(),
                runtime_ready: true,
                network_ready: true,
                next_id: 1,
            })),
        }
    }

    /// Every call so far, as `"Method arg"` (e.g. `"StartContainer c3"`, `"PullImage busybox"`).
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().calls.clone()
    }

    /// The sandboxes that exist now.
    pub fn sandboxes(&self) -> Vec<FakeSandbox> {
        self.state.lock().sandboxes.values().cloned().collect()
    }

    /// The containers that exist now.
    pub fn containers(&self) -> Vec<FakeContainer> {
        self.state.lock().containers.values().cloned().collect()
    }

    /// Sets the `RuntimeReady` and `NetworkReady` conditions `Status` reports.
    pub fn set_conditions(&self, runtime_ready: bool, network_ready: bool) {
        let mut s = self.state.lock();
        s.runtime_ready = runtime_ready;
        s.network_ready = network_ready;
    }

    /// Makes `image` present, as if pulled.
    pub fn add_image(&self, name: &str) {
        self.state.lock().images.insert(name.to_string(), image(name));
    }

    /// Makes pulls of `image` fail with `message` (until cleared with `None`).
    pub fn fail_pulls(&self, name: &str, message: Option<&str>) {
        let mut s = self.state.lock();
        match message {
            Some(m) => s.pull_failures.insert(name.to_string(), m.to_string()),
            None => s.pull_failures.remove(name),
        };
    }

    /// Every container named `name` exits with `exit_code` as soon as it starts
    /// (`None`: they keep running again).
    pub fn exit_on_start(&self, name: &str, exit_code: Option<i32>) {
        let mut s = self.state.lock();
        match exit_code {
            Some(c) => s.exits_on_start.insert(name.to_string(), c),
            None => s.exits_on_start.remove(name),
        };
    }

    /// `ExecSync` in containers named `name` returns `exit_code` (default 0).
    pub fn set_exec_exit_code(&self, name: &str, exit_code: i32) {
        self.state.lock().exec_exit_codes.insert(name.to_string(), exit_code);
    }

    /// `Exec`, `Attach` and `PortForward` answer `<base>/exec/<container id>`,
    /// `<base>/attach/<container id>` and `<base>/portforward/<sandbox id>` (default base
    /// `http://127.0.0.1:0`, where nothing listens): point it at a test's streaming server.
    pub fn set_streaming_base(&self, base: &str) {
        self.state.lock().streaming_base = base.trim_end_matches('/').to_string();
    }

    /// The sandbox of the pod named `pod_name` gets `ip` (default: 10.42.0.N in creation order).
    pub fn set_sandbox_ip(&self, pod_name: &str, ip: &str) {
        self.state.lock().sandbox_ips.insert(pod_name.to_string(), ip.to_string());
    }

    /// The running container `id` exits now with `exit_code`; false if it is not running.
    pub fn exit_container(&self, id: &str, exit_code: i32) -> bool {
        let mut s = self.state.lock();
        match s.containers.get_mut(id) {
            Some(c) if c.state == ContainerState::ContainerRunning => {
                c.state = ContainerState::ContainerExited;
                c.exit_code = exit_code;
                c.finished_at = now_nanos();
                true
            }
            _ => false,
        }
    }

    fn record(&self, call: String) {
        self.state.lock().calls.push(call);
    }
}

/// Stopping a running container ends it like SIGKILL does: exit code 137.
fn stop(c: &mut FakeContainer) {
    if c.state == ContainerState::ContainerRunning {
        c.state = ContainerState::ContainerExited;
        c.exit_code = 137;
        c.finished_at = now_nanos();
    } else if c.state == ContainerState::ContainerCreated {
        c.state = ContainerState::ContainerExited;
        c.finished_at = now_nanos();
    }
}

fn container_status(c: &FakeContainer) -> api::ContainerStatus {
    let reason = match (c.state, c.exit_code) {
        (ContainerState::ContainerExited, 0) => "Completed",
        (ContainerState::ContainerExited, _) => "Error",
        _ => "",
    };
    api::ContainerStatus {
        id: c.id.clone(),
        metadata: c.config.metadata.clone(),
        state: c.state as i32,
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        image: c.config.image.clone(),
        image_ref: c.config.image.as_ref().map(|i| image_id(&i.image)).unwrap_or_default(),
        image_id: c.config.image.as_ref().map(|i| image_id(&i.image)).unwrap_or_default(),
        reason: reason.to_string(),
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        mounts: c.config.mounts.clone(),
        log_path: c.config.log_path.clone(),
        ..Default::default()
    }
}

impl Runtime for FakeRuntime {
    async fn version(&self) -> Result<api::VersionResponse> {
        self.record("Version".into());
        Ok(api::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake".into(),
            runtime_version: "1.0.0".into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn status(&self) -> Result<api::StatusResponse> {
        self.record("Status".into());
        let s = self.state.lock();
        let cond = |ty: &str, ok: bool, reason: &str| api::RuntimeCondition {
            r#type: ty.into(),
            status: ok,
            reason: if ok { String::new() } else { reason.into() },
            message: if ok { String::new() } else { format!("fake {ty} is false") },
        };
        Ok(api::StatusResponse {
            status: Some(api::RuntimeStatus {
                conditions: vec![
                    cond("RuntimeReady", s.runtime_ready, "FakeRuntimeNotReady"),
                    cond("NetworkReady", s.network_ready, "NetworkPluginNotReady"),
                ],
            }),
            ..Default::default()
        })
    }

    async fn run_pod_sandbox(
        &self,
        config: api::PodSandboxConfig,
        _runtime_handler: String,
    ) -> Result<String> {
        let name =
            config.metadata.as_ref().map(|m| format!("{}/{}", m.namespace, m.name)).unwrap_or_default();
        let mut s = self.state.lock();
        s.calls.push(format!("RunPodSandbox {name}"));
        let n = s.next_id;
        s.next_id += 1;
        let id = format!("sb{n}");
        let pod_name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let ip =
            s.sandbox_ips.get(&pod_name).cloned().unwrap_or_else(|| format!("10.42.0.{}", (n % 250) + 2));
        let sb = FakeSandbox {
            id: id.clone(),
            config,
            state: PodSandboxState::SandboxReady,
            ip,
            created_at: now_nanos(),
        };
        s.sandboxes.insert(id.clone(), sb);
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock();
        s.calls.push(format!("StopPodSandbox {id}"));
        if let Some(sb) = s.sandboxes.get_mut(id) {
            sb.state = PodSandboxState::SandboxNotready;
        }
        s.containers.values_mut().filter(|c| c.sandbox_id == id).for_each(stop);
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock();
        s.calls.push(format!("RemovePodSandbox {id}"));
        s.sandboxes.remove(id);
        s.containers.retain(|_, c| c.sandbox_id != id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        let s = self.state.lock();
        let sb = s.sandboxes.get(id).ok_or_else(|| not_found("PodSandboxStatus", id))?;
        Ok(api::PodSandboxStatus {
            id: sb.id.clone(),
            metadata: sb.config.metadata.clone(),
            state: sb.state as i32,
            created_at: sb.created_at,
            network: Some(api::PodSandboxNetworkStatus { ip: sb.ip.clone(), additional_ips: vec![] }),
            labels: sb.config.labels.clone(),
            annotations: sb.config.annotations.clone(),
            ..Default::default()
        })
    }

    async fn list_pod_sandbox(&self, filter: Option<api::PodSandboxFilter>) -> Result<Vec<api::PodSandbox>> {
        let s = self.state.lock();
        let f = filter.unwrap_or_default();
        Ok(s.sandboxes
            .values()
            .filter(|sb| f.id.is_empty() || sb.id == f.id)
            .filter(|sb| f.state.as_ref().is_none_or(|st| st.state == sb.state as i32))
            .filter(|sb| labels_match(&sb.config.labels, &f.label_selector))
            .map(|sb| api::PodSandbox {
                id: sb.id.clone(),
                metadata: sb.config.metadata.clone(),
                state: sb.state as i32,
                created_at: sb.created_at,
                labels: sb.config.labels.clone(),
                annotations: sb.config.annotations.clone(),
                runtime_handler: String::new(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: api::ContainerConfig,
        _sandbox_config: api::PodSandboxConfig,
    ) -> Result<String> {
        let mut s = self.state.lock();
        let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        s.calls.push(format!("CreateContainer {pod_sandbox_id} {name}"));
        if !s.sandboxes.contains_key(pod_sandbox_id) {
            return Err(not_found("CreateContainer", pod_sandbox_id));
        }
        let image = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        if !s.images.contains_key(&image) {
            return Err(not_found("CreateContainer", &format!("image {image:?}")));
        }
        let n = s.next_id;
        s.next_id += 1;
        let id = format!("c{n}");
        let c = FakeContainer {
            id: id.clone(),
            sandbox_id: pod_sandbox_id.to_string(),
            config,
            state: ContainerState::ContainerCreated,
            exit_code: 0,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
        };
        s.containers.insert(id.clone(), c);
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock();
        s.calls.push(format!("StartContainer {id}"));
        let exits = s.exits_on_start.clone();
        let c = s.containers.get_mut(id).ok_or_else(|| not_found("StartContainer", id))?;
        c.state = ContainerState::ContainerRunning;
        c.started_at = now_nanos();
        if let Some(code) = exits.get(c.name()) {
            c.state = ContainerState::ContainerExited;
            c.exit_code = *code;
            c.finished_at = now_nanos();
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()> {
        let mut s = self.state.lock();
        s.calls.push(format!("StopContainer {id} {timeout_seconds}"));
        if let Some(c) = s.containers.get_mut(id) {
            stop(c);
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock();
        s.calls.push(format!("RemoveContainer {id}"));
        s.containers.remove(id);
        Ok(())
    }

    async fn list_containers(&self, filter: Option<api::ContainerFilter>) -> Result<Vec<api::Container>> {
        let s = self.state.lock();
        let f = filter.unwrap_or_default();
        Ok(s.containers
            .values()
            .filter(|c| f.id.is_empty() || c.id == f.id)
            .filter(|c| f.pod_sandbox_id.is_empty() || c.sandbox_id == f.pod_sandbox_id)
            .filter(|c| f.state.as_ref().is_none_or(|st| st.state == c.state as i32))
            .filter(|c| labels_match(&c.config.labels, &f.label_selector))
            .map(|c| api::Container {
                id: c.id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.config.metadata.clone(),
                image: c.config.image.clone(),
                image_ref: c.config.image.as_ref().map(|i| image_id(&i.image)).unwrap_or_default(),
                state: c.state as i32,
                created_at: c.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                image_id: c.config.image.as_ref().map(|i| image_id(&i.image)).unwrap_or_default(),
            })
            .collect())
    }

    async fn container_status(&self, id: &str) -> Result<api::ContainerStatus> {
        let s = self.state.lock();
        s.containers.get(id).map(container_status).ok_or_else(|| not_found("ContainerStatus", id))
    }

    async fn update_container_resources(&self, id: &str, linux: api::LinuxContainerResources) -> Result<()> {
        let mut s = self.state.lock();
        s.calls.push(format!("UpdateContainerResources {id}"));
        let c = s.containers.get_mut(id).ok_or_else(|| not_found("UpdateContainerResources", id))?;
        if let Some(l) = c.config.linux.as_mut() {
            l.resources = Some(linux);
        }
        Ok(())
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        _timeout_seconds: i64,
    ) -> Result<api::ExecSyncResponse> {
        let mut s = self.state.lock();
        s.calls.push(format!("ExecSync {id} {}", cmd.join(" ")));
        let c = s.containers.get(id).ok_or_else(|| not_found("ExecSync", id))?;
        let exit_code = s.exec_exit_codes.get(c.name()).copied().unwrap_or(0);
        Ok(api::ExecSyncResponse { stdout: Vec::new(), stderr: Vec::new(), exit_code })
    }

    async fn exec(&self, req: api::ExecRequest) -> Result<String> {
        let mut s = self.state.lock();
        s.calls.push(format!("Exec {} {}", req.container_id, req.cmd.join(" ")));
        if s.containers.get(&req.container_id).is_none_or(|c| c.state != ContainerState::ContainerRunning) {
            return Err(not_found("Exec", &req.container_id));
        }
        Ok(format!("{}/exec/{}", s.streaming_base, req.container_id))
    }

    async fn attach(&self, req: api::AttachRequest) -> Result<String> {
        let mut s = self.state.lock();
        s.calls.push(format!("Attach {}", req.container_id));
        Ok(format!("{}/attach/{}", s.streaming_base, req.container_id))
    }

    async fn port_forward(&self, req: api::PortForwardRequest) -> Result<String> {
        let mut s = self.state.lock();
        s.calls.push(format!("PortForward {}", req.pod_sandbox_id));
        Ok(format!("{}/portforward/{}", s.streaming_base, req.pod_sandbox_id))
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        self.record(format!("ReopenContainerLog {id}"));
        Ok(())
    }

    async fn pull_image(
        &self,
        image_spec: api::ImageSpec,
        _auth: Option<api::AuthConfig>,
        _sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String> {
        let mut s = self.state.lock();
        let name = image_spec.image;
        s.calls.push(format!("PullImage {name}"));
        if let Some(m) = s.pull_failures.get(&name) {
            return Err(Error::Rpc { call: "PullImage", status: tonic::Status::unknown(m.clone()) });
        }
        s.images.insert(name.clone(), image(&name));
        Ok(image_id(&name))
    }

    async fn image_status(&self, image_spec: api::ImageSpec) -> Result<Option<api::Image>> {
        Ok(self.state.lock().images.get(&image_spec.image).cloned())
    }

    async fn list_images(&self) -> Result<Vec<api::Image>> {
        Ok(self.state.lock().images.values().cloned().collect())
    }

    async fn remove_image(&self, image_spec: api::ImageSpec) -> Result<()> {
        let mut s = self.state.lock();
        s.calls.push(format!("RemoveImage {}", image_spec.image));
        s.images.remove(&image_spec.image);
        Ok(())
    }
}
