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
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
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
        Command::new(corten_bin()?).args(args).env("RUST_LOG", "info").kill_on_drop(true).output(),
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
    health_addr: SocketAddr,
    logs: Arc<parking_lot::Mutex<String>>,
    log_reader: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts `corten server` on `data_dir` with health endpoints on a free loopback port.
    pub fn start(data_dir: &Path) -> anyhow::Result<Server> {
        let health_addr = free_loopback_addr()?;
        let mut child = Command::new(corten_bin()?)
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--health-addr")
            .arg(health_addr.to_string())
            .env("RUST_LOG", "info")
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
        Ok(Server { child, health_addr, logs, log_reader })
    }

    /// Where the health endpoints are served.
    pub fn health_addr(&self) -> SocketAddr {
        self.health_addr
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().clone()
    }

    /// Polls `/readyz` until it answers 200; fails if the process exits or [`DEADLINE`] passes.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("corten server exited with {status} before becoming ready; logs:\n{}", self.logs());
            }
            let last = match http_get(self.health_addr, "/readyz").await {
                Ok((200, _)) => return Ok(()),
                Ok((code, body)) => format!("{code}: {body}"),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                bail!("/readyz not 200 within {DEADLINE:?} (last: {last}); logs:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
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

/// A minimal plain-HTTP/1.1 GET: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no end of headers in the response")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    Ok((status, body.to_string()))
}
