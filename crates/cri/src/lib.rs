//! The CRI v1 boundary of the kubelet: the [`Runtime`] trait (the calls of the CRI
//! `RuntimeService` and `ImageService` the kubelet makes), a tonic client of a CRI socket that
//! implements it (containerd, CRI-O), a supervisor for the containerd that `corten` runs itself,
//! and, behind the `testing` feature, a recording `FakeRuntime` for the kubelet's tests.
//!
//! The message types are the generated CRI v1 types of `k8s-cri`, re-exported as [`api`].
//! This crate must not depend on kube, the API server or the store: it knows containers, not pods.

pub use k8s_cri::v1 as api;

pub mod client;
pub mod cni;
pub mod containerd;
pub mod images;

pub use client::CriClient;
pub use cni::{write_cni_config, CniError, DEFAULT_POD_CIDR};
pub use containerd::{connect_or_start, Containerd, ContainerdConfig, SupervisorError, PAUSE_IMAGE};
pub use images::{import_images, ImportError};

#[cfg(feature = "testing")]
pub mod fake;

use std::future::Future;

/// Why a CRI call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime answered with a gRPC error (`NotFound`, `Unavailable`, ...).
    #[error("{call}: {status}")]
    Rpc {
        /// The CRI method, e.g. `RunPodSandbox`.
        call: &'static str,
        /// What the runtime said.
        #[source]
        status: tonic::Status,
    },
    /// The runtime socket cannot be reached.
    #[error("cannot connect to the container runtime at {endpoint}: is it running? (--container-runtime-endpoint)")]
    Connect {
        /// The socket path or URL.
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
}

impl Error {
    /// True when the runtime says the object does not exist (gRPC `NotFound`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Rpc { status, .. } if status.code() == tonic::Code::NotFound)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The CRI v1 calls the kubelet makes, one method per RPC, with the CRI's own messages.
///
/// Contract (as the CRI defines it): stop and remove calls are idempotent (stopping or removing
/// something already gone is `Ok`); `run_pod_sandbox` and `create_container` return the new
/// id; list calls return what exists now, filtered. Implementations must be cheap to clone
/// and safe to call concurrently.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// `Version`: the runtime's name and versions (for the Node's `containerRuntimeVersion`).
    fn version(&self) -> impl Future<Output = Result<api::VersionResponse>> + Send;
    /// `Status`: the runtime's conditions (`RuntimeReady`, `NetworkReady`).
    fn status(&self) -> impl Future<Output = Result<api::StatusResponse>> + Send;

    /// `RunPodSandbox`: creates and starts a sandbox; returns its id.
    fn run_pod_sandbox(
        &self,
        config: api::PodSandboxConfig,
        runtime_handler: String,
    ) -> impl Future<Output = Result<String>> + Send;
    /// `StopPodSandbox`: stops the sandbox and every container in it.
    fn stop_pod_sandbox(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// `RemovePodSandbox`: removes a stopped sandbox and its containers.
    fn remove_pod_sandbox(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// `PodSandboxStatus`: the sandbox's state and IPs.
    fn pod_sandbox_status(&self, id: &str) -> impl Future<Output = Result<api::PodSandboxStatus>> + Send;
    /// `ListPodSandbox`.
    fn list_pod_sandbox(
        &self,
        filter: Option<api::PodSandboxFilter>,
    ) -> impl Future<Output = Result<Vec<api::PodSandbox>>> + Send;

    /// `CreateContainer` in a sandbox; returns the container id.
    fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> impl Future<Output = Result<String>> + Send;
    /// `StartContainer`.
    fn start_container(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// `StopContainer`: SIGTERM, then SIGKILL after `timeout_seconds`.
    fn stop_container(&self, id: &str, timeout_seconds: i64) -> impl Future<Output = Result<()>> + Send;
    /// `RemoveContainer`.
    fn remove_container(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// `ListContainers`.
    fn list_containers(
        &self,
        filter: Option<api::ContainerFilter>,
    ) -> impl Future<Output = Result<Vec<api::Container>>> + Send;
    /// `ContainerStatus`: state, exit code, reason, timestamps, log path.
    fn container_status(&self, id: &str) -> impl Future<Output = Result<api::ContainerStatus>> + Send;
    /// `UpdateContainerResources`.
    fn update_container_resources(
        &self,
        id: &str,
        linux: api::LinuxContainerResources,
    ) -> impl Future<Output = Result<()>> + Send;
    /// `ExecSync`: runs `cmd` in the container, waits at most `timeout_seconds` (0: no limit).
    fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_seconds: i64,
    ) -> impl Future<Output = Result<api::ExecSyncResponse>> + Send;
    /// `Exec`: a streaming URL for an interactive exec.
    fn exec(&self, req: api::ExecRequest) -> impl Future<Output = Result<String>> + Send;
    /// `Attach`: a streaming URL for attaching to a container's stdio.
    fn attach(&self, req: api::AttachRequest) -> impl Future<Output = Result<String>> + Send;
    /// `PortForward`: a streaming URL for forwarding ports of a sandbox.
    fn port_forward(&self, req: api::PortForwardRequest) -> impl Future<Output = Result<String>> + Send;
    /// `ReopenContainerLog`.
    fn reopen_container_log(&self, id: &str) -> impl Future<Output = Result<()>> + Send;

    /// `PullImage` (with registry credentials when given); returns the image reference.
    fn pull_image(
        &self,
        image: api::ImageSpec,
        auth: Option<api::AuthConfig>,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> impl Future<Output = Result<String>> + Send;
    /// `ImageStatus`: `None` when the image is not present.
    fn image_status(&self, image: api::ImageSpec) -> impl Future<Output = Result<Option<api::Image>>> + Send;
    /// `ListImages`.
    fn list_images(&self) -> impl Future<Output = Result<Vec<api::Image>>> + Send;
    /// `RemoveImage`.
    fn remove_image(&self, image: api::ImageSpec) -> impl Future<Output = Result<()>> + Send;
}
