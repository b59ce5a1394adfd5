//! Streaming for real: `kubectl logs`, `exec`, `attach` and `port-forward` (kubectl 1.33, which
//! tries WebSocket first, and kubectl 1.27, which speaks SPDY) and kube-rs `logs`/`exec`
//! (WebSocket) against `corten server` with its embedded kubelet and containerd. The API server
//! proxies each request to the kubelet's HTTPS API, which hands exec, attach and port-forward to
//! containerd's streaming server. Needs root and Debian's containerd, runc and CNI plugins, and
//! the images of `make images`; `make test` provides them.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use corten_tests::{eventually, free_loopback_addr, Kubectl, Server};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, LogParams};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long pods may take to start (containerd's first sandbox includes image unpacking).
const POD_DEADLINE: Duration = Duration::from_secs(120);
/// How long one streamed line may take to arrive.
const LINE_DEADLINE: Duration = Duration::from_secs(30);

const POD: &str = r#"{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {"name": "talker"},
  "spec": {
    "terminationGracePeriodSeconds": 1,
    "containers": [
      {"name": "main", "image": "busybox:1.36",
       "command": ["sh", "-c", "echo hello; echo second; while true; do echo tick; sleep 1; done"]},
      {"name": "web", "image": "busybox:1.36", "command": ["httpd", "-f", "-p", "8080"]},
      {"name": "crash", "image": "busybox:1.36", "command": ["sh", "-c", "echo started; sleep 1; exit 1"]}
    ]
  }
}"#;

/// Starts kubectl with `args` in the background, stdout piped.
fn spawn(k: &Kubectl, kubeconfig: &std::path::Path, args: &[&str]) -> anyhow::Result<Child> {
    Command::new(k.bin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning kubectl {args:?}"))
}

/// Reads `child`'s stdout until a line satisfies `want`; returns that line.
async fn line_matching(child: &mut Child, want: impl Fn(&str) -> bool) -> anyhow::Result<String> {
    let stdout = child.stdout.as_mut().context("stdout not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(LINE_DEADLINE, async {
        while let Some(line) = lines.next_line().await? {
            if want(&line) {
                return Ok::<_, anyhow::Error>(Some(line));
            }
        }
        Ok(None)
    })
    .await;
    match found {
        Ok(Ok(Some(line))) => Ok(line),
        Ok(Ok(None)) | Err(_) => {
            let _ = child.start_kill();
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = tokio::time::timeout(Duration::from_secs(2), stderr.read_to_string(&mut err)).await;
            }
            bail!("no matching line (stderr: {err})")
        }
        Ok(Err(e)) => Err(e),
    }
}

async fn wait_running(k: &Kubectl, server: &Server) -> anyhow::Result<()> {
    let ready = eventually("pod talker running with main and web ready", POD_DEADLINE, || async {
        let out = k
            .run(&[
                "get",
                "pod",
                "talker",
                "-o",
                r#"jsonpath={.status.phase} {.status.containerStatuses[?(@.name=="main")].ready} {.status.containerStatuses[?(@.name=="web")].ready}"#,
            ])
            .await?;
        Ok(if out.stdout.trim() == "Running true true" { Ok(()) } else { Err(format!("{}{}", out.stdout, out.stderr)) })
    })
    .await;
    ready.with_context(|| format!("server logs:\n{}", server.logs()))
}

#[tokio::test]
async fn logs_exec_attach_and_port_forward_work_with_kubectl_and_kube_rs() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut server = Server::start_node(data.path(), "corten-stream", "10.42.0.0/24")?;
    server.wait_ready().await?;
    let k = server.kubectl("1.33")?;
    let k127 = server.kubectl("1.27")?;
    let kubeconfig = server.kubeconfig();
    k.ok_stdin(&["apply", "-f", "-"], POD).await?;
    wait_running(&k, &server).await?;

    // logs: all, the default container, --tail, --timestamps.
    let logs = eventually("the main container's first lines", LINE_DEADLINE, || async {
        let out = k.run(&["logs", "talker", "-c", "main"]).await?;
        Ok(if out.stdout.starts_with("hello\nsecond\n") { Ok(out.stdout) } else { Err(format!("{out:?}")) })
    })
    .await?;
    ensure!(logs.contains("tick"), "{logs}");
    let defaulted = k.run(&["logs", "talker"]).await?;
    ensure!(defaulted.ok() && defaulted.stdout.starts_with("hello\n"), "{defaulted:?}");
    let tail = k.ok(&["logs", "talker", "-c", "main", "--tail=1"]).await?;
    ensure!(tail.lines().count() == 1 && tail.trim() == "tick", "--tail=1 gave {tail:?}");
    let stamped = k.ok(&["logs", "talker", "-c", "main", "--timestamps"]).await?;
    let first = stamped.lines().next().unwrap_or_default();
    let (stamp, text) = first.split_once(' ').unwrap_or_default();
    ensure!(text == "hello" && stamp.len() > 20 && stamp.contains('T'), "--timestamps gave {first:?}");
    let unknown = k.run(&["logs", "talker", "-c", "nope"]).await?;
    ensure!(
        !unknown.ok() && unknown.stderr.contains("container nope is not valid for pod talker"),
        "{unknown:?}"
    );

    // logs -f keeps streaming: a new tick arrives after the ones already written.
    let mut follow = spawn(&k, &kubeconfig, &["logs", "-f", "talker", "-c", "main", "--tail=0"])?;
    line_matching(&mut follow, |l| l == "tick").await.context("kubectl logs -f")?;
    follow.kill().await?;

    // --previous after the crash container restarted.
    eventually("the crash container restarted", POD_DEADLINE, || async {
        let out = k
            .run(&[
                "get",
                "pod",
                "talker",
                "-o",
                r#"jsonpath={.status.containerStatuses[?(@.name=="crash")].restartCount}"#,
            ])
            .await?;
        let n: u32 = out.stdout.trim().parse().unwrap_or(0);
        Ok(if n >= 1 { Ok(()) } else { Err(format!("{out:?}")) })
    })
    .await?;
    let previous = k.ok(&["logs", "talker", "-c", "crash", "--previous"]).await?;
    ensure!(previous.trim() == "started", "--previous gave {previous:?}");

    // exec with kubectl 1.33 (WebSocket, falling back to SPDY) and 1.27 (SPDY).
    for kubectl in [&k, &k127] {
        let out = kubectl.run(&["exec", "talker", "-c", "main", "--", "sh", "-c", "echo $((6*7))"]).await?;
        ensure!(out.ok() && out.stdout.trim() == "42", "{}: {out:?}", kubectl.bin().display());
        let out =
            kubectl.run(&["exec", "talker", "-c", "main", "--", "sh", "-c", "echo oops >&2; exit 3"]).await?;
        ensure!(out.code == Some(3), "{}: exit code {out:?}", kubectl.bin().display());
        ensure!(out.stderr.contains("oops"), "{out:?}");
        ensure!(out.stderr.contains("command terminated with exit code 3"), "{out:?}");
        let piped =
            kubectl.ok_stdin(&["exec", "-i", "talker", "-c", "main", "--", "cat"], "piped in\n").await?;
        ensure!(piped.trim() == "piped in", "exec -i gave {piped:?}");
    }

    // exec -it in a pseudo-terminal (script gives kubectl one).
    let cmd = format!(
        "{} --kubeconfig {} exec -it talker -c main -- sh -c 'test -t 0 && echo is-a-tty'",
        k.bin().display(),
        kubeconfig.display()
    );
    let out = tokio::time::timeout(
        LINE_DEADLINE,
        Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("exec -it did not finish")??;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success() && text.contains("is-a-tty"), "exec -it: {out:?}");

    // attach streams the main container's output.
    let mut attach = spawn(&k, &kubeconfig, &["attach", "talker", "-c", "main"])?;
    line_matching(&mut attach, |l| l == "tick").await.context("kubectl attach")?;
    attach.kill().await?;

    // port-forward to busybox httpd, then HTTP through it.
    let local = free_loopback_addr()?.port();
    let mapping = format!("{local}:8080");
    let mut forward = spawn(&k, &kubeconfig, &["port-forward", "pod/talker", &mapping])?;
    line_matching(&mut forward, |l| l.starts_with("Forwarding from 127.0.0.1"))
        .await
        .context("port-forward")?;
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{local}/"))
        .output()
        .await
        .context("running curl")?;
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(code.len() == 3 && code != "000", "no HTTP answer through port-forward (curl: {code:?})");
    forward.kill().await?;

    // kube-rs: logs and a WebSocket exec.
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let pods: Api<Pod> = Api::default_namespaced(client);
    let logs =
        pods.logs("talker", &LogParams { container: Some("main".into()), ..LogParams::default() }).await?;
    ensure!(logs.starts_with("hello\nsecond\n"), "kube-rs logs: {logs:?}");
    let mut attached = pods
        .exec(
            "talker",
            ["sh", "-c", "echo $((6*7))"],
            &AttachParams::default().container("main").stderr(false),
        )
        .await?;
    let mut stdout = attached.stdout().context("exec stdout")?;
    let mut text = String::new();
    tokio::time::timeout(LINE_DEADLINE, stdout.read_to_string(&mut text)).await.context("kube-rs exec")??;
    ensure!(text.trim() == "42", "kube-rs exec gave {text:?}");
    let status = attached.take_status().context("exec status")?.await;
    ensure!(status.as_ref().and_then(|s| s.status.as_deref()) == Some("Success"), "{status:?}");

    server.signal(nix::sys::signal::Signal::SIGTERM)?;
    let (status, logs) = server.wait_exit().await?;
    ensure!(status.success(), "corten server exited with {status}; logs:\n{logs}");
    Ok(())
}
