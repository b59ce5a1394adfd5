//! The containerd that `corten` runs itself when no `--container-runtime-endpoint` is given (as
//! k3s does): its config under the data dir, the process with its output in our log, restarts
//! with backoff, a graceful stop. Containers outlive containerd (their shims keep running), so
//! a containerd started again on the same dirs adopts them.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::images::{import_images, ImportError};
use crate::{CriClient, Runtime};

/// The sandbox (pause) image, built by `images/build.py` and imported from the images dir.
pub const PAUSE_IMAGE: &str = "docker.io/corten/pause:3.10";
/// Where Debian's containernetworking-plugins puts the CNI plugins.
pub const DEBIAN_CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The longest socket path a `sockaddr_un` holds (108 bytes with the NUL; containerd also
/// listens on `<socket>.ttrpc`).
const MAX_SOCKET_PATH: usize = 100;
/// How long a fresh containerd may take to answer `Version`.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Lines of containerd's output kept for start-up errors.
const LOG_TAIL: usize = 20;

/// Why containerd could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// No containerd binary.
    #[error(
        "{binary} not found on PATH: apt-get install containerd runc (or give --container-runtime-endpoint)"
    )]
    NotInstalled {
        /// The binary looked for.
        binary: String,
    },
    /// The socket path is too long for a unix socket.
    #[error("the containerd socket path {0} is longer than {MAX_SOCKET_PATH} bytes: use a shorter data dir")]
    SocketPathTooLong(PathBuf),
    /// A directory or the config could not be written.
    #[error("cannot write {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The process could not be started.
    #[error("cannot run {binary}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// containerd ended during start-up.
    #[error("containerd exited during start-up ({status}); its last output:\n{output}")]
    Exited {
        /// How it ended.
        status: ExitStatus,
        /// Its last lines of output.
        output: String,
    },
    /// containerd did not answer `Version` in time.
    #[error(
        "containerd did not answer on {socket} within {READY_WITHIN:?} ({error}); its last output:\n{output}"
    )]
    NotReady {
        /// The socket.
        socket: PathBuf,
        /// The last error of the `Version` call.
        error: String,
        /// Its last lines of output.
        output: String,
    },
    /// The air-gap images could not be imported.
    #[error(transparent)]
    Images(#[from] ImportError),
}

/// Where and how containerd runs. Every path is under `<data_dir>/agent`.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    /// corten's data dir.
    pub data_dir: PathBuf,
    /// The containerd binary: a name looked up on `PATH`, or a path.
    pub binary: PathBuf,
    /// The CRI's sandbox image.
    pub sandbox_image: String,
    /// Where the CNI plugin binaries are.
    pub cni_bin_dir: PathBuf,
    /// How long containerd has to stop after SIGTERM before it gets SIGKILL.
    pub stop_grace: Duration,
}

impl ContainerdConfig {
    /// The defaults for a data dir: containerd from `PATH`, our pause image, Debian's CNI plugins.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            binary: PathBuf::from("containerd"),
            sandbox_image: PAUSE_IMAGE.into(),
            cni_bin_dir: PathBuf::from(DEBIAN_CNI_BIN_DIR),
            stop_grace: Duration::from_secs(10),
        }
    }

    /// `<data_dir>/agent/containerd`: config, socket, root and state.
    pub fn dir(&self) -> PathBuf {
        self.data_dir.join("agent/containerd")
    }

    /// The config file written at start.
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("config.toml")
    }

    /// The gRPC socket (CRI and containerd's own API).
    pub fn socket(&self) -> PathBuf {
        self.dir().join("containerd.sock")
    }

    /// The pid of the running containerd, to stop one a killed corten left behind.
    pub fn pid_file(&self) -> PathBuf {
        self.dir().join("containerd.pid")
    }

    /// The CRI endpoint of this containerd, `unix://<socket>`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Where the kubelet writes the CNI conflist ([`crate::cni::write_cni_config`]).
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.data_dir.join("agent/etc/cni/net.d")
    }

    /// host-local IPAM's allocations.
    pub fn cni_ipam_dir(&self) -> PathBuf {
        self.data_dir.join("agent/cni")
    }

    /// Air-gap image tarballs imported at start.
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("agent/images")
    }

    /// The containerd config (format version 2, for containerd 1.6 and 1.7).
    pub fn render(&self) -> String {
        let dir = self.dir();
        let s = |path: &Path| toml_string(&path.to_string_lossy());
        format!(
            r#"# written by corten at every start: edits are lost
version = 2
root = {root}
state = {state}
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = {socket}

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {sandbox_image}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # negative oom_score_adj values cannot be set in every VM or container we run in
  restrict_oom_score_adj = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = {cni_bin_dir}
  conf_dir = {cni_conf_dir}
"#,
            root = s(&dir.join("root")),
            state = s(&dir.join("state")),
            socket = s(&self.socket()),
            opt = s(&dir.join("opt")),
            sandbox_image = toml_string(&self.sandbox_image),
            cni_bin_dir = s(&self.cni_bin_dir),
            cni_conf_dir = s(&self.cni_conf_dir()),
        )
    }
}

/// A TOML basic string: JSON's string escapes are valid TOML.
fn toml_string(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// A running, supervised containerd.
#[derive(Debug)]
pub struct Containerd {
    config: ContainerdConfig,
    client: CriClient,
    supervisor: JoinHandle<()>,
}

/// The last lines containerd printed, for start-up errors.
type LogTail = Arc<Mutex<VecDeque<String>>>;

impl Containerd {
    /// Writes the config, starts containerd, waits until its CRI answers and imports the
    /// air-gap images of [`ContainerdConfig::images_dir`]. Then keeps it running (restarting
    /// it with backoff when it dies) until `shutdown` is cancelled, when it stops it.
    pub async fn start(
        config: ContainerdConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, SupervisorError> {
        let binary = find_binary(&config.binary)?;
        let socket = config.socket();
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(SupervisorError::SocketPathTooLong(socket));
        }
        for dir in [config.dir(), config.cni_conf_dir(), config.cni_ipam_dir()] {
            std::fs::create_dir_all(&dir)
                .map_err(|source| SupervisorError::Io { path: dir.clone(), source })?;
        }
        let path = config.config_path();
        std::fs::write(&path, config.render()).map_err(|source| SupervisorError::Io { path, source })?;

        stop_stale(&config).await;
        let tail = LogTail::default();
        let mut child = spawn(&binary, &config, &tail)?;
        let client = CriClient::new(&config.endpoint());
        if let Err(e) = wait_ready(&mut child, &client, &socket, &tail).await {
            stop(child, config.stop_grace).await;
            return Err(e);
        }
        info!(socket = %socket.display(), "containerd is running");
        if let Err(e) = import_images(&config.images_dir(), &socket, &client).await {
            stop(child, config.stop_grace).await;
            return Err(e.into());
        }
        let supervisor = tokio::spawn(supervise(binary, config.clone(), child, tail, shutdown));
        Ok(Self { config, client, supervisor })
    }

    /// A CRI client of this containerd.
    pub fn client(&self) -> CriClient {
        self.client.clone()
    }

    /// The CRI endpoint, `unix://<socket>`.
    pub fn endpoint(&self) -> String {
        self.config.endpoint()
    }

    /// The config it runs with.
    pub fn config(&self) -> &ContainerdConfig {
        &self.config
    }

    /// Waits until the supervisor has stopped containerd (after `shutdown` is cancelled).
    pub async fn stopped(self) {
        if let Err(e) = self.supervisor.await {
            warn!(error = %e, "the containerd supervisor failed");
        }
    }
}

/// The runtime the kubelet talks to: the one at `endpoint` (`--container-runtime-endpoint`) when
/// given, and then nothing is started; else a containerd started with `config` and supervised
/// until `shutdown` (returned too, so the caller can wait for its stop).
pub async fn connect_or_start(
    endpoint: Option<&str>,
    config: ContainerdConfig,
    shutdown: CancellationToken,
) -> Result<(CriClient, Option<Containerd>), SupervisorError> {
    match endpoint {
        Some(endpoint) => Ok((CriClient::new(endpoint), None)),
        None => {
            let containerd = Containerd::start(config, shutdown).await?;
            Ok((containerd.client(), Some(containerd)))
        }
    }
}

/// `binary` itself when it is a path, else the first executable of that name on `PATH`.
fn find_binary(binary: &Path) -> Result<PathBuf, SupervisorError> {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let found = if binary.components().count() > 1 {
        executable(binary).then(|| binary.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths).map(|dir| dir.join(binary)).find(|p| executable(p))
        })
    };
    found.ok_or_else(|| SupervisorError::NotInstalled { binary: binary.display().to_string() })
}

fn spawn(binary: &Path, config: &ContainerdConfig, tail: &LogTail) -> Result<Child, SupervisorError> {
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(config.config_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A supervisor dropped without a stop (a panic, the runtime's end) must not leave it
        // running; the graceful stop is `stop` below, one left by a killed corten `stop_stale`.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SupervisorError::Spawn { binary: binary.to_path_buf(), source })?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_output(out, tail.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_output(err, tail.clone()));
    }
    debug!(pid = child.id(), binary = %binary.display(), "containerd started");
    if let Some(pid) = child.id() {
        let path = config.pid_file();
        if let Err(e) = std::fs::write(&path, format!("{pid}\n")) {
            warn!(error = %e, path = %path.display(), "cannot write the containerd pid file");
        }
    }
    Ok(child)
}

/// True when process `pid` is a containerd running with `config`'s config file.
fn runs_with(pid: i32, config: &ContainerdConfig) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let wanted = config.config_path();
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == wanted.as_os_str().as_bytes()))
}

/// Stops the containerd that a corten killed without a chance to stop it left running on these
/// dirs (its pid file names it): two must not share a root dir and socket.
async fn stop_stale(config: &ContainerdConfig) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let Some(pid) =
        std::fs::read_to_string(config.pid_file()).ok().and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    if !runs_with(pid, config) {
        return;
    }
    warn!(pid, "stopping the containerd a previous run left running");
    // A failed kill is a process that is gone already.
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    if !gone_within(pid, config, config.stop_grace).await {
        warn!(pid, "the stale containerd did not stop after SIGTERM: killing it");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        gone_within(pid, config, Duration::from_secs(5)).await;
    }
}

/// Waits at most `limit` for process `pid` to stop running with `config`.
async fn gone_within(pid: i32, config: &ContainerdConfig, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while runs_with(pid, config) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Logs containerd's output at debug level and keeps its last lines.
async fn forward_output(output: impl AsyncRead + Unpin, tail: LogTail) {
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        debug!(line = %line, "containerd output");
        let mut tail = tail.lock();
        if tail.len() == LOG_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

fn tail_text(tail: &LogTail) -> String {
    let tail = tail.lock();
    tail.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
}

/// Polls `Version` until it answers; fails when containerd exits or takes too long.
async fn wait_ready(
    child: &mut Child,
    client: &CriClient,
    socket: &Path,
    tail: &LogTail,
) -> Result<(), SupervisorError> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        let error = match client.version().await {
            Ok(version) => {
                info!(runtime = %version.runtime_name, version = %version.runtime_version, "containerd answers");
                return Ok(());
            }
            Err(e) => e.to_string(),
        };
        if let Ok(Some(status)) = child.try_wait() {
            // Let the output readers catch up with what it printed last.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Err(SupervisorError::Exited { status, output: tail_text(tail) });
        }
        if Instant::now() >= deadline {
            return Err(SupervisorError::NotReady {
                socket: socket.to_path_buf(),
                error,
                output: tail_text(tail),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM, then SIGKILL after `grace`.
async fn stop(mut child: Child, grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return; // already reaped
    };
    if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
        warn!(error = %e, pid, "cannot signal containerd");
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => info!(status = ?status, "containerd stopped"),
        Err(_) => {
            warn!(pid, ?grace, "containerd did not stop after SIGTERM: killing it");
            if let Err(e) = child.kill().await {
                warn!(error = %e, pid, "cannot kill containerd");
            }
        }
    }
}

/// The backoff before restarting a containerd that died after running for `ran`.
fn next_backoff(previous: Duration, ran: Duration) -> Duration {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);
    // One that ran for a while gets restarted quickly again.
    if ran >= Duration::from_secs(60) {
        FIRST
    } else {
        (previous * 2).clamp(FIRST, MAX)
    }
}

/// Keeps containerd running until `shutdown`, then stops it.
async fn supervise(
    binary: PathBuf,
    config: ContainerdConfig,
    child: Child,
    tail: LogTail,
    shutdown: CancellationToken,
) {
    let mut child = Some(child);
    let mut started = Instant::now();
    let mut backoff = Duration::ZERO;
    loop {
        if let Some(running) = child.as_mut() {
            let status = tokio::select! {
                status = running.wait() => status,
                () = shutdown.cancelled() => break,
            };
            backoff = next_backoff(backoff, started.elapsed());
            warn!(status = ?status, ?backoff, output = %tail_text(&tail), "containerd exited: restarting it");
            child = None;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => break,
        }
        match spawn(&binary, &config, &tail) {
            Ok(new) => {
                child = Some(new);
                started = Instant::now();
            }
            Err(e) => {
                backoff = next_backoff(backoff, Duration::ZERO);
                warn!(error = %e, ?backoff, "cannot restart containerd");
            }
        }
    }
    if let Some(running) = child {
        stop(running, config.stop_grace).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_keeps_everything_under_the_data_dir() {
        let config = ContainerdConfig::new("/var/lib/corten");
        let toml = config.render();
        assert!(toml.contains("version = 2\n"), "{toml}");
        assert!(toml.contains(r#"root = "/var/lib/corten/agent/containerd/root""#), "{toml}");
        assert!(toml.contains(r#"state = "/var/lib/corten/agent/containerd/state""#), "{toml}");
        assert!(toml.contains(r#"address = "/var/lib/corten/agent/containerd/containerd.sock""#), "{toml}");
        assert!(toml.contains(r#"conf_dir = "/var/lib/corten/agent/etc/cni/net.d""#), "{toml}");
        assert_eq!(config.endpoint(), "unix:///var/lib/corten/agent/containerd/containerd.sock");
    }

    #[test]
    fn the_cri_plugin_runs_runc_on_overlayfs_with_our_pause_image() {
        let toml = ContainerdConfig::new("/d").render();
        for line in [
            r#"sandbox_image = "docker.io/corten/pause:3.10""#,
            r#"snapshotter = "overlayfs""#,
            r#"runtime_type = "io.containerd.runc.v2""#,
            "SystemdCgroup = false",
            "restrict_oom_score_adj = true",
            r#"bin_dir = "/usr/lib/cni""#,
            r#"stream_server_address = "127.0.0.1""#,
        ] {
            assert!(toml.contains(line), "missing {line:?} in\n{toml}");
        }
    }

    #[test]
    fn paths_are_escaped_as_toml_strings() {
        let toml = ContainerdConfig::new(r#"/data/with "quote" and \ slash"#).render();
        assert!(
            toml.contains(r#"root = "/data/with \"quote\" and \\ slash/agent/containerd/root""#),
            "{toml}"
        );
    }

    #[test]
    fn restarts_back_off_exponentially_up_to_thirty_seconds() {
        let quick = Duration::from_secs(2);
        let mut backoff = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..7 {
            backoff = next_backoff(backoff, quick);
            seen.push(backoff.as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(next_backoff(Duration::from_secs(30), Duration::from_secs(600)), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_missing_containerd_binary_says_what_to_install() {
        let mut config = ContainerdConfig::new(std::env::temp_dir());
        config.binary = PathBuf::from("corten-no-such-containerd");
        let err = Containerd::start(config, CancellationToken::new()).await.err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("apt-get install containerd runc"), "got {err:?}");
    }

    #[tokio::test]
    async fn a_given_runtime_endpoint_is_used_and_nothing_is_started() {
        let mut config = ContainerdConfig::new(std::env::temp_dir());
        config.binary = PathBuf::from("corten-no-such-containerd");
        let given = "unix:///run/other/containerd.sock";
        match connect_or_start(Some(given), config, CancellationToken::new()).await {
            Ok((client, None)) => assert_eq!(client.endpoint_name(), given),
            other => panic!("expected a client of {given} and no containerd, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_socket_path_too_long_for_unix_sockets_is_refused() {
        let mut config = ContainerdConfig::new(format!("/tmp/{}", "x".repeat(100)));
        config.binary = PathBuf::from("/bin/sh");
        let err = Containerd::start(config, CancellationToken::new()).await;
        assert!(matches!(err, Err(SupervisorError::SocketPathTooLong(_))), "got {err:?}");
    }
}
