//! The supervised containerd with real pods: needs root and the Debian packages containerd,
//! runc, containernetworking-plugins and iptables, and the images of `make images` (the
//! directory `CORTEN_IMAGES_DIR`, by default `images/out` of the repository). A missing
//! prerequisite fails the test: it is never skipped.

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use corten_cri::api;
use corten_cri::{import_images, write_cni_config, Containerd, ContainerdConfig, CriClient, Runtime};
use tokio_util::sync::CancellationToken;

const BUSYBOX: &str = "docker.io/library/busybox:1.36";
const POD_CIDR: &str = "10.42.0.0/24";
const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`] with what was expected
/// and what was seen last.
async fn eventually<T, F, Fut>(expected: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let seen = match check().await {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("expected {expected} within {DEADLINE:?}, last saw: {seen}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn images_dir() -> PathBuf {
    std::env::var_os("CORTEN_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/out"))
}

/// A data dir with the air-gap images in `agent/images` and the CNI config written.
fn prepare(data_dir: &Path) -> anyhow::Result<ContainerdConfig> {
    ensure!(
        std::fs::metadata("/proc/self")?.uid() == 0,
        "this test runs containers: run it as root (CI does)"
    );
    let config = ContainerdConfig::new(data_dir);
    let images = images_dir();
    std::fs::create_dir_all(config.images_dir())?;
    for name in ["pause.tar", "busybox.tar"] {
        let tarball = images.join(name);
        ensure!(tarball.is_file(), "{} is missing: run `make images` first", tarball.display());
        std::os::unix::fs::symlink(&tarball, config.images_dir().join(name))?;
    }
    write_cni_config(&config.cni_conf_dir(), POD_CIDR, &config.cni_ipam_dir())?;
    Ok(config)
}

/// A started containerd and the token that stops it.
struct Running {
    containerd: Containerd,
    shutdown: CancellationToken,
}

impl Running {
    async fn start(config: &ContainerdConfig) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let containerd = Containerd::start(config.clone(), shutdown.clone()).await?;
        Ok(Self { containerd, shutdown })
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.containerd.stopped().await;
    }
}

fn sandbox_config(data_dir: &Path) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "hello".into(),
            uid: "4f1e0a6c-0000-4000-8000-000000000001".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "hello".into(),
        log_directory: data_dir.join("pods/default_hello").display().to_string(),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: api::NamespaceMode::Pod as i32,
                    pid: api::NamespaceMode::Container as i32,
                    ipc: api::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config() -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata { name: "main".into(), attempt: 0 }),
        image: Some(api::ImageSpec { image: BUSYBOX.into(), ..Default::default() }),
        command: vec!["sh".into(), "-c".into(), "echo hello; sleep 3600".into()],
        log_path: "main/0.log".into(),
        linux: Some(api::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

async fn container_state(client: &CriClient, id: &str) -> Result<api::ContainerState, String> {
    let filter = api::ContainerFilter { id: id.into(), ..Default::default() };
    let listed = client.list_containers(Some(filter)).await.map_err(|e| e.to_string())?;
    match listed.as_slice() {
        [one] => Ok(one.state()),
        other => Err(format!("{} containers with id {id}", other.len())),
    }
}

async fn ctr_containers(config: &ContainerdConfig) -> anyhow::Result<String> {
    let output = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(config.socket())
        .args(["--namespace", "k8s.io", "containers", "ls", "--quiet"])
        .output()
        .await
        .context("running ctr")?;
    ensure!(output.status.success(), "ctr containers ls: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8(output.stdout)?)
}

/// The whole answer to `GET path` on `ip:port` (HTTP/1.0: the server closes the connection).
async fn http_get(ip: Ipv4Addr, port: u16, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer)
}

/// Stops and removes every sandbox (and so every container) the runtime has.
async fn remove_everything(client: &CriClient) -> anyhow::Result<()> {
    for sandbox in client.list_pod_sandbox(None).await? {
        client.stop_pod_sandbox(&sandbox.id).await?;
        client.remove_pod_sandbox(&sandbox.id).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_runs_a_networked_busybox_pod_and_adopts_it_after_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("corten-cri").tempdir_in("/tmp")?;
    let config = prepare(dir.path())?;
    let first = Running::start(&config).await?;
    // One client for the whole test: it reconnects to the restarted containerd by itself.
    let client = first.containerd.client();
    let mut running = Some(first);
    let result = pod_lifecycle(&config, &client, &mut running).await;
    // Leave no containers behind on this machine, whatever happened.
    let cleaned = match &running {
        Some(_) => remove_everything(&client).await,
        None => Ok(()),
    };
    if let Some(running) = running {
        running.stop().await;
    }
    result?;
    cleaned
}

async fn pod_lifecycle(
    config: &ContainerdConfig,
    client: &CriClient,
    running: &mut Option<Running>,
) -> anyhow::Result<()> {
    let version = client.version().await?;
    assert_eq!(version.runtime_name, "containerd");

    // The images of agent/images were imported at start.
    for image in [BUSYBOX, corten_cri::PAUSE_IMAGE] {
        let spec = api::ImageSpec { image: image.into(), ..Default::default() };
        ensure!(client.image_status(spec).await?.is_some(), "{image} was not imported at start");
    }
    eventually("the runtime to report NetworkReady (CNI config found)", move || async move {
        let status = client.status().await.map_err(|e| e.to_string())?;
        let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
        match conditions.iter().find(|c| c.r#type == "NetworkReady") {
            Some(c) if c.status => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;

    // A sandbox with CNI networking gets an address in the podCIDR.
    let sandbox = sandbox_config(&config.data_dir);
    std::fs::create_dir_all(Path::new(&sandbox.log_directory).join("main"))?;
    let sandbox_id = client.run_pod_sandbox(sandbox.clone(), String::new()).await?;
    let status = client.pod_sandbox_status(&sandbox_id).await?;
    assert_eq!(status.state(), api::PodSandboxState::SandboxReady);
    let ip: Ipv4Addr =
        status.network.map(|n| n.ip).unwrap_or_default().parse().context("the sandbox's IP")?;
    assert_eq!(ip.octets()[..3], [10, 42, 0], "sandbox IP {ip} is not in {POD_CIDR}");

    // A busybox container runs in it.
    let id = client.create_container(&sandbox_id, container_config(), sandbox.clone()).await?;
    let id = id.as_str();
    client.start_container(id).await?;
    eventually("the container to be listed as running", move || async move {
        match container_state(client, id).await? {
            api::ContainerState::ContainerRunning => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;

    // Its output is in its log file, in the CRI log format: `<RFC 3339 time> stdout F hello`.
    let log = Path::new(&sandbox.log_directory).join("main/0.log");
    let log = log.as_path();
    let line = eventually("hello in the container's log", move || async move {
        let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
        text.lines().next().map(str::to_string).ok_or_else(|| "an empty log".to_string())
    })
    .await?;
    let fields: Vec<&str> = line.splitn(4, ' ').collect();
    ensure!(fields.len() == 4, "not a CRI log line: {line:?}");
    fields[0].parse::<jiff::Timestamp>().with_context(|| format!("the time of {line:?}"))?;
    assert_eq!(fields[1..], ["stdout", "F", "hello"], "log line {line:?}");

    // exec_sync returns the command's output and exit code.
    let cmd = ["sh", "-c", "echo out; echo err >&2; exit 3"].map(String::from).to_vec();
    let exec = client.exec_sync(id, cmd, 10).await?;
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&exec.stderr), "err\n");
    assert_eq!(exec.exit_code, 3);

    // The pod is reachable from the node on its IP, through the bridge.
    let httpd = ["httpd", "-p", "8080", "-h", "/etc"].map(String::from).to_vec();
    let started = client.exec_sync(id, httpd, 10).await?;
    ensure!(started.exit_code == 0, "httpd did not start: {}", String::from_utf8_lossy(&started.stderr));
    let page = eventually("the pod's httpd to answer on its IP", move || async move {
        http_get(ip, 8080, "/group").await.map_err(|e| e.to_string())
    })
    .await?;
    ensure!(page.contains("nogroup:x:65534:"), "unexpected answer from the pod: {page}");

    // Interactive streams are served on the loopback stream server.
    let exec_req = api::ExecRequest {
        container_id: id.into(),
        cmd: vec!["sh".into()],
        stdout: true,
        ..Default::default()
    };
    let url = client.exec(exec_req).await?;
    ensure!(url.starts_with("http://127.0.0.1:"), "exec URL {url} is not on the loopback stream server");
    let forward = api::PortForwardRequest { pod_sandbox_id: sandbox_id.clone(), port: vec![80] };
    let url = client.port_forward(forward).await?;
    ensure!(
        url.starts_with("http://127.0.0.1:"),
        "port-forward URL {url} is not on the loopback stream server"
    );

    // containerd stops and starts again while the container runs: it is still there, running.
    if let Some(old) = running.take() {
        old.stop().await;
    }
    ensure!(client.version().await.is_err(), "containerd still answers after it was stopped");
    *running = Some(Running::start(config).await?);
    eventually("the container to be running after containerd's restart", move || async move {
        match container_state(client, id).await? {
            api::ContainerState::ContainerRunning => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    let exec = client.exec_sync(id, vec!["echo".into(), "adopted".into()], 10).await?;
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "adopted\n");
    // Images already there are not imported again.
    let again = import_images(&config.images_dir(), &config.socket(), client).await?;
    assert!(again.is_empty(), "imported again: {again:?}");

    // Stopping and removing leaves nothing behind, and doing it twice is fine.
    client.stop_container(id, 5).await?;
    let exited = client.container_status(id).await?;
    assert_eq!(exited.state(), api::ContainerState::ContainerExited);
    client.remove_container(id).await?;
    client.remove_container(id).await?;
    client.stop_pod_sandbox(&sandbox_id).await?;
    client.remove_pod_sandbox(&sandbox_id).await?;
    client.stop_pod_sandbox(&sandbox_id).await?;
    client.remove_pod_sandbox(&sandbox_id).await?;
    assert!(client.list_pod_sandbox(None).await?.is_empty(), "sandboxes are left");
    assert!(client.list_containers(None).await?.is_empty(), "containers are left");
    let left = ctr_containers(config).await?;
    assert!(left.trim().is_empty(), "ctr lists containers: {left}");
    Ok(())
}

/// The pid of the containerd running with `config`'s config file.
fn containerd_pid(config: &ContainerdConfig) -> anyhow::Result<Option<i32>> {
    let wanted = config.config_path().display().to_string();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue; // gone meanwhile
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_zombie = std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|s| s.contains(") Z "));
        if args.contains(&wanted.as_bytes())
            && args.first().is_some_and(|a| a.ends_with(b"containerd"))
            && !is_zombie
        {
            return Ok(Some(pid));
        }
    }
    Ok(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containerd_that_dies_is_restarted_by_its_supervisor() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("corten-cri").tempdir_in("/tmp")?;
    let config = prepare(dir.path())?;
    let running = Running::start(&config).await?;
    let client = running.containerd.client();
    let first = containerd_pid(&config)?.context("no containerd process with our config")?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::Signal::SIGKILL)?;
    let cfg = &config;
    let second = eventually("a new containerd process", move || async move {
        match containerd_pid(cfg).map_err(|e| e.to_string())? {
            Some(pid) if pid != first => Ok(pid),
            other => Err(format!("pid {other:?} (the killed one was {first})")),
        }
    })
    .await;
    let answered = eventually("the restarted containerd to answer Version", || {
        let client = client.clone();
        async move { client.version().await.map_err(|e| e.to_string()) }
    })
    .await;
    running.stop().await;
    second?;
    answered?;
    let left = containerd_pid(&config)?;
    ensure!(left.is_none(), "containerd {left:?} still runs after the supervisor stopped");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containerd_left_running_by_a_killed_corten_is_replaced() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("corten-cri").tempdir_in("/tmp")?;
    let config = prepare(dir.path())?;
    // What a corten killed with SIGKILL leaves: a containerd on these dirs and its pid file.
    std::fs::create_dir_all(config.dir())?;
    std::fs::write(config.config_path(), config.render())?;
    let mut stale = tokio::process::Command::new("containerd")
        .arg("--config")
        .arg(config.config_path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("running containerd (apt-get install containerd runc)")?;
    std::fs::write(config.pid_file(), format!("{}\n", stale.id().context("the stale pid")?))?;
    let probe = CriClient::new(&config.endpoint());
    eventually("the stale containerd to answer", || {
        let probe = probe.clone();
        async move { probe.version().await.map_err(|e| e.to_string()) }
    })
    .await?;

    let running = Running::start(&config).await;
    // The stale one ended on SIGTERM (its exit status is ours to collect, as its parent).
    let ended = tokio::time::timeout(DEADLINE, stale.wait()).await;
    let answered = match &running {
        Ok(r) => r.containerd.client().version().await.map(drop).map_err(anyhow::Error::from),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    };
    if let Ok(r) = running {
        r.stop().await;
    }
    ensure!(matches!(ended, Ok(Ok(_))), "the stale containerd still runs: {ended:?}");
    answered.context("the new containerd")
}
