//! Crash safety: a writer process is killed with SIGKILL at random moments and restarted; after
//! every kill nothing it had acknowledged is missing, no transaction is half visible and the
//! revision never goes backwards.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use corten_store::{RangeRequest, Store};
use corten_store_raft::{RaftConfig, RaftStore};
use rand::Rng;

const RUNS: usize = 8;
const WRITERS: usize = 16;
const READY: Duration = Duration::from_secs(30);

/// One writer process and the lines it printed (read on a thread, so none is lost at the kill).
struct Writer {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Writer {
    fn spawn(dir: &std::path::Path, run: usize) -> anyhow::Result<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
            .arg(dir)
            .arg(run.to_string())
            .arg(WRITERS.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the writer")?;
        let stdout = child.stdout.take().context("writer stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Writer { child, lines })
    }

    /// Waits for the `ready` line.
    fn wait_ready(&self) -> anyhow::Result<()> {
        match self.lines.recv_timeout(READY) {
            Ok(line) if line.starts_with("ready ") => Ok(()),
            Ok(line) => bail!("unexpected line before ready: {line:?}"),
            Err(e) => bail!("the writer did not become ready: {e}"),
        }
    }

    /// Kills the process and returns every acknowledged key with its revision.
    fn kill(mut self) -> anyhow::Result<BTreeMap<String, u64>> {
        self.child.kill().context("SIGKILL")?;
        self.child.wait()?;
        let mut acked = BTreeMap::new();
        // The reader thread ends at EOF, closing the channel.
        for line in self.lines.iter() {
            let mut parts = line.split(' ');
            if let (Some("ack"), Some(key), Some(rev)) = (parts.next(), parts.next(), parts.next()) {
                // A line cut by the kill does not parse as a whole number of fields: skip it.
                if let Ok(rev) = rev.parse() {
                    acked.insert(key.to_string(), rev);
                }
            }
        }
        Ok(acked)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_write_and_shows_no_partial_txn() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_revision = 0;
    let mut rng = rand::rng();
    for run in 0..RUNS {
        let writer = Writer::spawn(dir.path(), run)?;
        writer.wait_ready()?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..=800))).await;
        let new = writer.kill()?;
        ensure!(run > 0 || !new.is_empty(), "the writer acknowledged nothing before the first kill");
        acked.extend(new);

        let store = RaftStore::open(RaftConfig::single_node(dir.path())).await?;
        store.wait_ready(READY).await?;
        let revision = store.status().await?.revision;
        ensure!(revision >= last_revision, "the revision went back from {last_revision} to {revision}");
        let max_acked = acked.values().copied().max().unwrap_or(0);
        ensure!(revision >= max_acked, "revision {revision} is below acknowledged revision {max_acked}");
        last_revision = revision;

        let all = store.range(RangeRequest::prefix("crash/")).await?;
        let mut halves: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for kv in &all.kvs {
            let key = String::from_utf8(kv.key.clone())?;
            let (base, half) = key.rsplit_once('/').context("key shape")?;
            ensure!(kv.value == base.as_bytes(), "{key} holds {:?}", String::from_utf8_lossy(&kv.value));
            halves.entry(base.to_string()).or_default().push(half.to_string());
        }
        for (base, parts) in &halves {
            ensure!(parts == &["a", "b"], "transaction {base} is partially visible: {parts:?}");
        }
        for (key, rev) in &acked {
            let kv = store.get(format!("{key}/a")).await?;
            let kv = kv
                .with_context(|| format!("acknowledged {key} (revision {rev}) is missing after run {run}"))?;
            ensure!(
                kv.mod_revision == *rev,
                "{key} was acknowledged at {rev}, stored at {}",
                kv.mod_revision
            );
        }
        eprintln!("run {run}: {} acknowledged, revision {revision}", acked.len());
        store.shutdown().await?;
    }
    Ok(())
}
