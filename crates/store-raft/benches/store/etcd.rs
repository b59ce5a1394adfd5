//! etcd 3.4 (`/usr/bin/etcd`, Debian `etcd-server`) as child processes on loopback ports, with
//! their data dirs under the same directory (and so the same disk) as Corten's.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::kv::EtcdKv;

/// A running etcd cluster of one or more members; killed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Child>,
    /// Client URLs of the members, in member order.
    pub endpoints: Vec<String>,
    _dir: tempfile::TempDir,
}

/// The etcd binary: `$ETCD_BIN` or `/usr/bin/etcd`.
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("ETCD_BIN").map_or_else(|| PathBuf::from("/usr/bin/etcd"), PathBuf::from)
}

/// A loopback port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EtcdCluster {
    /// Starts `size` members under a fresh directory in `parent` and waits until it serves
    /// linearizable reads.
    pub async fn start(size: usize, parent: &Path) -> anyhow::Result<(Self, EtcdKv)> {
        let bin = etcd_bin();
        if !bin.exists() {
            bail!("{} not found: install Debian's etcd-server (make bench does)", bin.display());
        }
        let dir = tempfile::Builder::new().prefix("etcd-bench-").tempdir_in(parent)?;
        let ports =
            (0..size).map(|_| Ok((free_port()?, free_port()?))).collect::<anyhow::Result<Vec<_>>>()?;
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        let mut endpoints = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let log = std::fs::File::create(dir.path().join(format!("m{i}.log")))?;
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = Command::new(&bin)
                .arg("--name")
                .arg(format!("m{i}"))
                .arg("--data-dir")
                .arg(dir.path().join(format!("m{i}")))
                .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial_cluster, "--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "corten-bench", "--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            members.push(child);
            endpoints.push(client_url);
        }
        let cluster = EtcdCluster { members, endpoints, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = async {
                let kv = EtcdKv::connect(&cluster.endpoints).await?;
                kv.ready().await?;
                anyhow::Ok(kv)
            };
            match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(kv)) => return Ok((cluster, kv)),
                Ok(Err(e)) if Instant::now() > deadline => return Err(e.context("etcd did not become ready")),
                Err(_) if Instant::now() > deadline => bail!("etcd did not become ready"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The pids of the members.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(Child::id).collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for child in &mut self.members {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
