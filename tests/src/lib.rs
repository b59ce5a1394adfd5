//! Shared fixtures for the end-to-end tests of the real `corten` binary (one test binary per area
//! under `tests/`).
//!
//! The binary is found through `CORTEN_BIN`, which `make test` sets after `cargo build -p corten`;
//! a missing binary fails the test, it never skips it. These tests see Corten only from outside (the
//! process, its logs, its ports), so this crate must not depend on any corten library crate.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// How long a server may take to become ready or to stop before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Path of the `corten` binary under test, from `CORTEN_BIN`.
pub fn corten_bin() -> anyhow::Result<PathBuf> {
    let Some(path) = std::env::var_os("CORTEN_BIN") else {
        bail!(
            "CORTEN_BIN is not set: run `make test`, or `cargo build -p corten` and set \
             CORTEN_BIN=<target dir>/debug/corten"
        );
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        bail!("CORTEN_BIN={} does not exist: build it with `cargo build -p corten`", path.display());
    }
    Ok(path)
}

/// A loopback address with a port that was free a moment ago.
pub fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
    Ok(listener.local_addr()?)
}

/// Runs `corten` with `args` to completion; returns its exit status and stderr.
pub async fn run_corten(args: &[&str]) -> anyhow::Result<(ExitStatus, String)> {
    let out = tokio::time::timeout(
        DEADLINE,
        Command::new(corten_bin()?)
            .args(args)
            .env("RUST_LOG", "info,openraft=warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("corten did not exit in time")?
    .context("running corten")?;
    Ok((out.status, String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// A running `corten server`, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    data_dir: PathBuf,
    addr: SocketAddr,
    logs: Arc<parking_lot::Mutex<String>>,
    log_reader: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts `corten server` on `data_dir` with the API on a free loopback port, control plane
    /// only (`--disable-agent`: no kubelet, no containerd).
    pub fn start(data_dir: &Path) -> anyhow::Result<Server> {
        Self::start_with(data_dir, free_loopback_addr()?, &["--disable-agent"])
    }

    /// Starts `corten server` with its embedded agent (kubelet and its own containerd) as node
    /// `node_name` with pods in `pod_cidr`, the air-gap images of `CORTEN_IMAGES_DIR` (built by
    /// `make images`) copied into `<data-dir>/agent/images` first. Needs root and Debian's
    /// containerd, runc and CNI plugins (`make test` installs them); missing ones fail the test.
    /// Every node test uses `10.42.0.0/24`: the host's one CNI bridge keeps the first pod CIDR it
    /// was given and refuses sandboxes of any other.
    pub fn start_node(data_dir: &Path, node_name: &str, pod_cidr: &str) -> anyhow::Result<Server> {
        let images = images_dir()?;
        let target = data_dir.join("agent/images");
        std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
        for entry in std::fs::read_dir(&images).with_context(|| format!("reading {}", images.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tar") {
                let name = path.file_name().context("image tarball without a name")?;
                std::fs::copy(&path, target.join(name))
                    .with_context(|| format!("copying {}", path.display()))?;
            }
        }
        // A free kubelet port, so that parallel node tests do not collide on 10250.
        let kubelet_port = free_loopback_addr()?.port().to_string();
        Self::start_with(
            data_dir,
            free_loopback_addr()?,
            &["--node-name", node_name, "--pod-cidr", pod_cidr, "--kubelet-port", &kubelet_port],
        )
    }

    /// The CRI socket of the containerd a node server runs ([`Server::start_node`]).
    pub fn containerd_socket(&self) -> PathBuf {
        self.data_dir.join("agent/containerd/containerd.sock")
    }

    /// Starts `corten server` on `data_dir` serving the API on `addr`, with extra arguments.
    pub fn start_with(data_dir: &Path, addr: SocketAddr, extra: &[&str]) -> anyhow::Result<Server> {
        let mut child = Command::new(corten_bin()?)
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--bind-address")
            .arg(addr.ip().to_string())
            .arg("--https-port")
            .arg(addr.port().to_string())
            .args(extra)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning corten server")?;
        let stderr = child.stderr.take().context("corten stderr is not piped")?;
        let logs = Arc::new(parking_lot::Mutex::new(String::new()));
        let sink = logs.clone();
        let log_reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("corten| {line}");
                let mut logs = sink.lock();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        Ok(Server { child, data_dir: data_dir.to_path_buf(), addr, logs, log_reader })
    }

    /// The server's process id (`None` once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Where the API is served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin kubeconfig the server writes once it is ready.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("admin.kubeconfig")
    }

    /// A kubectl of `version` ("" for the default one) using the admin kubeconfig.
    pub fn kubectl(&self, version: &str) -> anyhow::Result<Kubectl> {
        Kubectl::new(version, &self.kubeconfig())
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().clone()
    }

    /// Waits until the admin kubeconfig exists and `/readyz` answers ok through it; fails if the
    /// process exits or [`DEADLINE`] passes.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("corten server exited with {status} before becoming ready; logs:\n{}", self.logs());
            }
            let last = if self.kubeconfig().is_file() {
                match self.kubectl("")?.run(&["get", "--raw", "/readyz"]).await {
                    Ok(out) if out.ok() && out.stdout.trim() == "ok" => return Ok(()),
                    Ok(out) => format!("{}{}", out.stdout, out.stderr),
                    Err(e) => e.to_string(),
                }
            } else {
                "no admin.kubeconfig yet".to_string()
            };
            if tokio::time::Instant::now() >= deadline {
                bail!("/readyz not ok within {DEADLINE:?} (last: {last}); logs:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `signal` to the server process.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self.child.id().context("corten server already reaped")?;
        let pid = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
        kill(pid, signal).with_context(|| format!("sending {signal} to corten server"))?;
        Ok(())
    }

    /// Waits for the process to exit, at most [`DEADLINE`]; returns its status and full logs.
    pub async fn wait_exit(mut self) -> anyhow::Result<(ExitStatus, String)> {
        let status = match tokio::time::timeout(DEADLINE, self.child.wait()).await {
            Ok(status) => status.context("waiting for corten server")?,
            Err(_) => bail!("corten server did not exit within {DEADLINE:?}; logs:\n{}", self.logs()),
        };
        // stderr reaches end of file once the process is gone; let the reader finish.
        tokio::time::timeout(DEADLINE, &mut self.log_reader)
            .await
            .context("corten stderr still open after exit")?
            .context("stderr reader task")?;
        Ok((status, self.logs()))
    }
}

/// The output of one kubectl run.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// The real kubectl (a given minor version or the default one) against one kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// kubectl `version` ("1.27" … "1.33", or "" for the one on PATH). The versioned binaries
    /// sit beside the real kubectl as `kubectl.<minor>`. A missing binary is an error.
    pub fn new(version: &str, kubeconfig: &Path) -> anyhow::Result<Kubectl> {
        let default = which("kubectl").context("kubectl is not on PATH: install kubectl 1.30-1.33")?;
        let bin = if version.is_empty() {
            default
        } else {
            let real = std::fs::canonicalize(&default).context("resolving kubectl")?;
            let dir = real.parent().context("kubectl has no parent directory")?;
            let bin = dir.join(format!("kubectl.{version}"));
            if !bin.is_file() {
                bail!(
                    "{} is missing: this test needs kubectl {version} beside the real kubectl",
                    bin.display()
                );
            }
            bin
        };
        Ok(Kubectl { bin, kubeconfig: kubeconfig.to_path_buf() })
    }

    /// The kubectl binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Runs kubectl with `args` (and the kubeconfig), at most [`DEADLINE`].
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.run_with(args, None, &[]).await
    }

    /// Runs kubectl with `stdin` as its input and extra environment variables.
    pub async fn run_with(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Output> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args).kill_on_drop(true);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("running {}", self.bin.display()))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await?;
        }
        let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
            .await
            .with_context(|| format!("kubectl {args:?} did not finish in {DEADLINE:?}"))??;
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs kubectl and fails unless it exits 0; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args).await?;
        if !out.ok() {
            bail!("kubectl {} failed ({:?}):\n{}{}", args.join(" "), out.code, out.stdout, out.stderr);
        }
        Ok(out.stdout)
    }

    /// Runs kubectl with `stdin` and fails unless it exits 0; returns stdout.
    pub async fn ok_stdin(&self, args: &[&str], stdin: &str) -> anyhow::Result<String> {
        let out = self.run_with(args, Some(stdin), &[]).await?;
        if !out.ok() {
            bail!("kubectl {} failed ({:?}):\n{}{}", args.join(" "), out.code, out.stdout, out.stderr);
        }
        Ok(out.stdout)
    }
}

/// The air-gap image tarballs `make images` built: `CORTEN_IMAGES_DIR`, which `make test` sets.
pub fn images_dir() -> anyhow::Result<PathBuf> {
    let Some(dir) = std::env::var_os("CORTEN_IMAGES_DIR") else {
        bail!("CORTEN_IMAGES_DIR is not set: run `make test`, or `make images` and set CORTEN_IMAGES_DIR=images/out");
    };
    let dir = PathBuf::from(dir);
    let has_tarballs = std::fs::read_dir(&dir)
        .with_context(|| format!("CORTEN_IMAGES_DIR={} cannot be read: run `make images`", dir.display()))?
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "tar"));
    if !has_tarballs {
        bail!("CORTEN_IMAGES_DIR={} has no image tarballs: run `make images`", dir.display());
    }
    Ok(dir)
}

/// Lists the containers of the containerd at `socket` in the `k8s.io` namespace (`ctr`).
pub async fn ctr_containers(socket: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io", "containers", "ls", "--quiet"])
        .kill_on_drop(true)
        .output()
        .await
        .context("running ctr (apt-get install containerd)")?;
    if !out.status.success() {
        bail!("ctr containers ls failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.is_empty()).collect())
}

/// The first `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

/// Polls `check` every half second until it returns `Ok(value)`, failing after `deadline` with
/// the last thing it saw (the inner `Err`).
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Result<T, String>>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        let last = match check().await? {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= end {
            bail!("{what} did not happen within {deadline:?}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Polls `check` every 200 ms until it returns `Some(value)`, failing after 20 s.
pub async fn until_some<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= end {
            bail!("{what} did not happen within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
