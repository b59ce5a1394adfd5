//! [`CriClient`]: the [`Runtime`] over a CRI socket (containerd, CRI-O) with tonic.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{api, Error, Result, Runtime};

/// How long a call may take unless it is one of the longer ones below.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long calls that create, stop or remove things may take (the kubelet's
/// `--runtime-request-timeout`, 2 min): a sandbox start sets up its network, a stop waits for
/// processes to end.
pub const DEFAULT_MUTATE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an image pull may take.
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest answer accepted (an `ExecSync` may carry 16 MiB of stdout and of stderr).
const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
/// The CRI version the kubelet speaks.
const CRI_VERSION: &str = "v1";

/// A CRI client over a unix socket, e.g. `unix:///run/containerd/containerd.sock`.
///
/// The connection is made lazily and remade after the runtime restarts, so a client can be
/// created before the runtime is up. Every call has a deadline (see the `DEFAULT_*` constants)
/// and its errors name the call. Cheap to clone: clones share the connection.
#[derive(Clone, Debug)]
pub struct CriClient {
    endpoint: String,
    channel: Channel,
    call_timeout: Duration,
    mutate_timeout: Duration,
    pull_timeout: Duration,
}

/// The socket path of an endpoint: `unix:///path` or a plain `/path`.
pub fn socket_path(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

impl CriClient {
    /// A client of the runtime at `endpoint` that connects on its first call.
    pub fn new(endpoint: &str) -> Self {
        let channel = Self::endpoint().connect_with_connector_lazy(Self::connector(endpoint));
        Self::with_channel(endpoint, channel)
    }

    /// A client of the runtime at `endpoint`, connected now: fails when nothing listens there.
    pub async fn connect(endpoint: &str) -> Result<Self> {
        let channel = Self::endpoint()
            .connect_with_connector(Self::connector(endpoint))
            .await
            .map_err(|source| Error::Connect { endpoint: endpoint.to_string(), source })?;
        Ok(Self::with_channel(endpoint, channel))
    }

    /// Replaces the deadlines: `call` for reads, `mutate` for creating, stopping and removing,
    /// `pull` for image pulls.
    pub fn with_timeouts(mut self, call: Duration, mutate: Duration, pull: Duration) -> Self {
        self.call_timeout = call;
        self.mutate_timeout = mutate;
        self.pull_timeout = pull;
        self
    }

    /// The endpoint this client talks to, as given.
    pub fn endpoint_name(&self) -> &str {
        &self.endpoint
    }

    fn with_channel(endpoint: &str, channel: Channel) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            channel,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            mutate_timeout: DEFAULT_MUTATE_TIMEOUT,
            pull_timeout: DEFAULT_PULL_TIMEOUT,
        }
    }

    fn endpoint() -> Endpoint {
        // The URI is required by tonic but unused: the connector dials the socket.
        Endpoint::from_static("http://localhost").connect_timeout(DEFAULT_CALL_TIMEOUT)
    }

    fn connector(
        endpoint: &str,
    ) -> impl tower::Service<
        Uri,
        Response = TokioIo<UnixStream>,
        Error = std::io::Error,
        Future = impl Future<Output = std::io::Result<TokioIo<UnixStream>>> + Send,
    > + Clone
           + Send
           + 'static {
        let path = socket_path(endpoint);
        tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok(TokioIo::new(UnixStream::connect(path).await?)) }
        })
    }

    fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}

/// Runs one call with a deadline (`None`: none), naming the call in its error.
async fn call<T>(
    call: &'static str,
    timeout: Option<Duration>,
    fut: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    let answer = match timeout {
        Some(limit) => match tokio::time::timeout(limit, fut).await {
            Ok(answer) => answer,
            Err(_) => {
                let status = tonic::Status::deadline_exceeded(format!("no answer within {limit:?}"));
                return Err(Error::Rpc { call, status });
            }
        },
        None => fut.await,
    };
    answer.map(tonic::Response::into_inner).map_err(|status| Error::Rpc { call, status })
}

/// A request that carries its deadline to the runtime too (`grpc-timeout`).
fn request<T>(message: T, timeout: Option<Duration>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(limit) = timeout {
        request.set_timeout(limit);
    }
    request
}

/// Stop and remove calls are idempotent: what is already gone is done.
fn gone_is_ok(result: Result<()>) -> Result<()> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// The error of a runtime that answered without the field the CRI promises.
fn missing(call: &'static str, field: &str) -> Error {
    Error::Rpc { call, status: tonic::Status::internal(format!("the runtime's answer has no {field}")) }
}

/// A deadline of `seconds` (the process's own limit) plus the call's own margin; 0 is no limit.
fn plus_margin(seconds: i64, margin: Duration) -> Option<Duration> {
    u64::try_from(seconds).ok().filter(|s| *s > 0).map(|s| Duration::from_secs(s) + margin)
}

impl Runtime for CriClient {
    async fn version(&self) -> Result<api::VersionResponse> {
        let t = Some(self.call_timeout);
        let req = request(api::VersionRequest { version: CRI_VERSION.into() }, t);
        call("Version", t, self.runtime().version(req)).await
    }

    async fn status(&self) -> Result<api::StatusResponse> {
        let t = Some(self.call_timeout);
        call("Status", t, self.runtime().status(request(api::StatusRequest { verbose: false }, t))).await
    }

    async fn run_pod_sandbox(
        &self,
        config: api::PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String> {
        let t = Some(self.mutate_timeout);
        let req = request(api::RunPodSandboxRequest { config: Some(config), runtime_handler }, t);
        Ok(call("RunPodSandbox", t, self.runtime().run_pod_sandbox(req)).await?.pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let t = Some(self.mutate_timeout);
        let req = request(api::StopPodSandboxRequest { pod_sandbox_id: id.into() }, t);
        gone_is_ok(call("StopPodSandbox", t, self.runtime().stop_pod_sandbox(req)).await.map(drop))
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let t = Some(self.mutate_timeout);
        let req = request(api::RemovePodSandboxRequest { pod_sandbox_id: id.into() }, t);
        gone_is_ok(call("RemovePodSandbox", t, self.runtime().remove_pod_sandbox(req)).await.map(drop))
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        let t = Some(self.call_timeout);
        let req = request(api::PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose: false }, t);
        let answer = call("PodSandboxStatus", t, self.runtime().pod_sandbox_status(req)).await?;
        answer.status.ok_or_else(|| missing("PodSandboxStatus", "status"))
    }

    async fn list_pod_sandbox(&self, filter: Option<api::PodSandboxFilter>) -> Result<Vec<api::PodSandbox>> {
        let t = Some(self.call_timeout);
        let req = request(api::ListPodSandboxRequest { filter }, t);
        Ok(call("ListPodSandbox", t, self.runtime().list_pod_sandbox(req)).await?.items)
    }

    async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String> {
        let t = Some(self.mutate_timeout);
        let req = api::CreateContainerRequest {
            pod_sandbox_id: pod_sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let answer = call("CreateContainer", t, self.runtime().create_container(request(req, t))).await?;
        Ok(answer.container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let t = Some(self.mutate_timeout);
        let req = request(api::StartContainerRequest { container_id: id.into() }, t);
        call("StartContainer", t, self.runtime().start_container(req)).await.map(drop)
    }

    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()> {
        let t = plus_margin(timeout_seconds, self.mutate_timeout).or(Some(self.mutate_timeout));
        let req = request(api::StopContainerRequest { container_id: id.into(), timeout: timeout_seconds }, t);
        gone_is_ok(call("StopContainer", t, self.runtime().stop_container(req)).await.map(drop))
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let t = Some(self.mutate_timeout);
        let req = request(api::RemoveContainerRequest { container_id: id.into() }, t);
        gone_is_ok(call("RemoveContainer", t, self.runtime().remove_container(req)).await.map(drop))
    }

    async fn list_containers(&self, filter: Option<api::ContainerFilter>) -> Result<Vec<api::Container>> {
        let t = Some(self.call_timeout);
        let req = request(api::ListContainersRequest { filter }, t);
        Ok(call("ListContainers", t, self.runtime().list_containers(req)).await?.containers)
    }

    async fn container_status(&self, id: &str) -> Result<api::ContainerStatus> {
        let t = Some(self.call_timeout);
        let req = request(api::ContainerStatusRequest { container_id: id.into(), verbose: false }, t);
        let answer = call("ContainerStatus", t, self.runtime().container_status(req)).await?;
        answer.status.ok_or_else(|| missing("ContainerStatus", "status"))
    }

    async fn update_container_resources(&self, id: &str, linux: api::LinuxContainerResources) -> Result<()> {
        let t = Some(self.mutate_timeout);
        let req = api::UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(linux),
            ..Default::default()
        };
        let req = request(req, t);
        call("UpdateContainerResources", t, self.runtime().update_container_resources(req)).await.map(drop)
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_seconds: i64,
    ) -> Result<api::ExecSyncResponse> {
        let t = plus_margin(timeout_seconds, self.call_timeout);
        let req = request(api::ExecSyncRequest { container_id: id.into(), cmd, timeout: timeout_seconds }, t);
        call("ExecSync", t, self.runtime().exec_sync(req)).await
    }

    async fn exec(&self, req: api::ExecRequest) -> Result<String> {
        let t = Some(self.call_timeout);
        Ok(call("Exec", t, self.runtime().exec(request(req, t))).await?.url)
    }

    async fn attach(&self, req: api::AttachRequest) -> Result<String> {
        let t = Some(self.call_timeout);
        Ok(call("Attach", t, self.runtime().attach(request(req, t))).await?.url)
    }

    async fn port_forward(&self, req: api::PortForwardRequest) -> Result<String> {
        let t = Some(self.call_timeout);
        Ok(call("PortForward", t, self.runtime().port_forward(request(req, t))).await?.url)
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let t = Some(self.call_timeout);
        let req = request(api::ReopenContainerLogRequest { container_id: id.into() }, t);
        call("ReopenContainerLog", t, self.runtime().reopen_container_log(req)).await.map(drop)
    }

    async fn pull_image(
        &self,
        image: api::ImageSpec,
        auth: Option<api::AuthConfig>,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String> {
        let t = Some(self.pull_timeout);
        let req = request(api::PullImageRequest { image: Some(image), auth, sandbox_config }, t);
        Ok(call("PullImage", t, self.images().pull_image(req)).await?.image_ref)
    }

    async fn image_status(&self, image: api::ImageSpec) -> Result<Option<api::Image>> {
        let t = Some(self.call_timeout);
        let req = request(api::ImageStatusRequest { image: Some(image), verbose: false }, t);
        Ok(call("ImageStatus", t, self.images().image_status(req)).await?.image)
    }

    async fn list_images(&self) -> Result<Vec<api::Image>> {
        let t = Some(self.call_timeout);
        let req = request(api::ListImagesRequest { filter: None }, t);
        Ok(call("ListImages", t, self.images().list_images(req)).await?.images)
    }

    async fn remove_image(&self, image: api::ImageSpec) -> Result<()> {
        let t = Some(self.mutate_timeout);
        let req = request(api::RemoveImageRequest { image: Some(image) }, t);
        gone_is_ok(call("RemoveImage", t, self.images().remove_image(req)).await.map(drop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_with_and_without_the_unix_scheme_name_the_same_socket() {
        assert_eq!(socket_path("unix:///run/c.sock"), PathBuf::from("/run/c.sock"));
        assert_eq!(socket_path("/run/c.sock"), PathBuf::from("/run/c.sock"));
    }

    #[test]
    fn a_process_timeout_gets_the_calls_margin_and_zero_means_no_limit() {
        let margin = Duration::from_secs(10);
        assert_eq!(plus_margin(30, margin), Some(Duration::from_secs(40)));
        assert_eq!(plus_margin(0, margin), None);
        assert_eq!(plus_margin(-1, margin), None);
    }

    #[tokio::test]
    async fn a_call_to_a_socket_nobody_listens_on_fails_naming_the_call() {
        let dir = std::env::temp_dir().join(format!("corten-cri-none-{}.sock", std::process::id()));
        let client = CriClient::new(&format!("unix://{}", dir.display()));
        let err = client.version().await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("Version: "), "expected a Version error, got {err:?}");
        let connect = CriClient::connect(&dir.display().to_string()).await;
        assert!(matches!(connect, Err(Error::Connect { .. })), "expected a connect error, got {connect:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_gets_no_answer_fails_with_deadline_exceeded() {
        let never = std::future::pending::<std::result::Result<tonic::Response<()>, tonic::Status>>();
        let err = call("ListContainers", Some(Duration::from_secs(10)), never).await;
        match err {
            Err(Error::Rpc { call, status }) => {
                assert_eq!(call, "ListContainers");
                assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
            }
            other => panic!("expected a deadline error, got {other:?}"),
        }
    }
}
