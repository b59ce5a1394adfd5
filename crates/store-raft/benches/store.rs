//! `make bench`: Corten's store side by side with etcd 3.4 on the same disk and workload.
//!
//! Figures (see docs/PERF.md): put throughput and p50/p99 latency with 1/16/64 writers of 1 KiB
//! values (single node and 3-node loopback cluster), latency of a full range read of 10k keys,
//! watch fan-out to 100 watchers (put call to receipt, p99), and resident memory holding 100k keys
//! of 1 KiB. Every workload runs against the small [`kv::Kv`] surface: Corten through
//! `corten_store::Store` in process, etcd through `etcd-client` over gRPC on loopback.
//!
//! Usage: `cargo bench -p corten-store-raft --bench store -- [--backends corten,etcd,...]
//! [--scenarios put,range,watch,rss] [--secs 5] ...` (`--help` lists everything).

#[macro_use]
#[path = "store/corten.rs"]
mod corten;
#[path = "store/etcd.rs"]
mod etcd;
#[path = "store/kv.rs"]
mod kv;
#[path = "store/report.rs"]
mod report;
#[path = "store/workload.rs"]
mod workload;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};

use crate::corten::Corten;
use crate::etcd::EtcdCluster;
use crate::kv::Kv;
use crate::report::{Figure, Report};

/// Which store a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// Single-node RaftStore (RocksDB, fsync) in process.
    Corten,
    /// 3-node RaftStore cluster on loopback (mutual TLS).
    Corten3,
    /// The in-memory MemStore (a harness check; no disk).
    Mem,
    /// Single-member etcd.
    Etcd,
    /// 3-member etcd cluster on loopback.
    Etcd3,
}

impl Backend {
    fn is_etcd(self) -> bool {
        matches!(self, Backend::Etcd | Backend::Etcd3)
    }
    fn label(self) -> &'static str {
        match self {
            Backend::Corten => "corten",
            Backend::Corten3 => "corten 3-node",
            Backend::Mem => "memstore",
            Backend::Etcd => "etcd",
            Backend::Etcd3 => "etcd 3-node",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Put,
    Range,
    Watch,
    Rss,
}

#[derive(Debug, Parser)]
#[command(about = "Corten store vs etcd benchmark")]
struct Args {
    /// Stores to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "corten,etcd,corten3,etcd3")]
    backends: Vec<Backend>,
    /// Workloads to run (3-node backends run only `put`).
    #[arg(long, value_delimiter = ',', default_value = "put,range,watch,rss")]
    scenarios: Vec<Scenario>,
    /// Concurrent writers of the put runs.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    writers: Vec<usize>,
    /// Measured seconds per put run.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Unmeasured warm-up seconds before each put run.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Keys read by the range run.
    #[arg(long, default_value_t = 10_000)]
    range_keys: u64,
    /// Watchers of the fan-out run.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Events written in the fan-out run.
    #[arg(long, default_value_t = 1000)]
    watch_events: u64,
    /// Keys loaded before measuring memory.
    #[arg(long, default_value_t = 100_000)]
    rss_keys: u64,
    /// Where data directories go (a real disk, not tmpfs).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Internal: load `--rss-keys` into a fresh store of this kind in `--dir`, print its memory.
    #[arg(long, hide = true)]
    rss_child: Option<Backend>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.rss_child {
        Some(backend) => runtime.block_on(rss_child(&args, backend)),
        None => runtime.block_on(run(&args)),
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut report = Report::default();
    for &backend in &args.backends {
        eprintln!("== {}", backend.label());
        if backend.is_etcd() {
            let size = if backend == Backend::Etcd3 { 3 } else { 1 };
            let (cluster, kv) = EtcdCluster::start(size, &args.dir).await?;
            suite(args, backend, &kv, &mut report).await?;
            drop(cluster);
        } else {
            let corten = Corten::open(backend, &args.dir).await?;
            with_kv!(&corten, |kv| suite(args, backend, kv, &mut report).await)?;
            corten.shutdown().await?;
        }
        if args.scenarios.contains(&Scenario::Rss)
            && matches!(backend, Backend::Corten | Backend::Mem | Backend::Etcd)
        {
            let kib = rss(args, backend).await?;
            eprintln!("  rss with {} keys: {:.1} MiB", args.rss_keys, kib as f64 / 1024.0);
            report.add(Figure::RssMib, backend.label(), kib as f64 / 1024.0);
        }
    }
    println!("{}", report.markdown(args.rss_keys));
    eprintln!("bench finished in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The workloads one open store goes through.
async fn suite<K: Kv>(args: &Args, backend: Backend, kv: &K, report: &mut Report) -> anyhow::Result<()> {
    let label = backend.label();
    let multi_node = matches!(backend, Backend::Corten3 | Backend::Etcd3);
    if args.scenarios.contains(&Scenario::Put) {
        for &writers in &args.writers {
            let stats = workload::timed_puts(
                kv,
                &format!("/bench/put/{writers}/"),
                writers,
                Duration::from_secs_f64(args.warmup),
                Duration::from_secs_f64(args.secs),
            )
            .await
            .with_context(|| format!("{label}: puts with {writers} writers"))?;
            let (p50, p99) = (stats.latency.value_at_quantile(0.5), stats.latency.value_at_quantile(0.99));
            eprintln!(
                "  put x{writers:<3} {:>9.0} ops/s  p50 {:>8.2} ms  p99 {:>8.2} ms",
                stats.ops_per_sec(),
                p50 as f64 / 1000.0,
                p99 as f64 / 1000.0
            );
            report.add(Figure::PutOps { writers, multi_node }, label, stats.ops_per_sec());
            report.add(Figure::PutP50 { writers, multi_node }, label, p50 as f64 / 1000.0);
            report.add(Figure::PutP99 { writers, multi_node }, label, p99 as f64 / 1000.0);
        }
    }
    if multi_node {
        return Ok(());
    }
    if args.scenarios.contains(&Scenario::Range) {
        let took = workload::load(kv, "/bench/range/", args.range_keys, 64).await?;
        eprintln!("  loaded {} keys in {:.1} s", args.range_keys, took.as_secs_f64());
        let expected = usize::try_from(args.range_keys)?;
        let hist = workload::full_ranges(kv, "/bench/range/", expected, Duration::from_secs(5)).await?;
        let (p50, p99) = (hist.value_at_quantile(0.5), hist.value_at_quantile(0.99));
        eprintln!(
            "  range {} keys ({} reads)  p50 {:.2} ms  p99 {:.2} ms",
            args.range_keys,
            hist.len(),
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0
        );
        report.add(Figure::RangeP50, label, p50 as f64 / 1000.0);
        report.add(Figure::RangeP99, label, p99 as f64 / 1000.0);
    }
    if args.scenarios.contains(&Scenario::Watch) {
        let hist = workload::watch_fanout(kv, "/bench/watch/", args.watchers, args.watch_events).await?;
        let (p50, p99) = (hist.value_at_quantile(0.5), hist.value_at_quantile(0.99));
        eprintln!(
            "  watch x{} ({} deliveries)  p50 {:.2} ms  p99 {:.2} ms",
            args.watchers,
            hist.len(),
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0
        );
        report.add(Figure::WatchP50, label, p50 as f64 / 1000.0);
        report.add(Figure::WatchP99, label, p99 as f64 / 1000.0);
    }
    Ok(())
}

/// Resident memory (KiB) of a store process holding `--rss-keys` keys of 1 KiB.
///
/// Corten runs in a child process (this binary with `--rss-child`) so the harness's own memory
/// does not count; etcd is a child process anyway and is loaded over gRPC.
async fn rss(args: &Args, backend: Backend) -> anyhow::Result<u64> {
    if backend.is_etcd() {
        let (cluster, kv) = EtcdCluster::start(1, &args.dir).await?;
        workload::load(&kv, "/bench/rss/", args.rss_keys, 64).await?;
        let pid = cluster.pids().first().copied().context("etcd has no member")?;
        let (rss, _) = proc_memory(format!("/proc/{pid}/status"))?;
        return Ok(rss);
    }
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe);
    child
        .arg("--rss-child")
        .arg(backend.to_possible_value().context("backend name")?.get_name())
        .arg("--rss-keys")
        .arg(args.rss_keys.to_string())
        .arg("--dir")
        .arg(&args.dir)
        .stderr(std::process::Stdio::inherit());
    let out = tokio::task::spawn_blocking(move || child.output()).await??;
    if !out.status.success() {
        bail!("rss child failed: {}", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line =
        stdout.lines().find_map(|l| l.strip_prefix("RSS_KIB ")).context("rss child printed no RSS_KIB")?;
    Ok(line.trim().parse()?)
}

/// The child side of [`rss`]: open, load, report `VmRSS` of this process.
async fn rss_child(args: &Args, backend: Backend) -> anyhow::Result<()> {
    let corten = Corten::open(backend, &args.dir).await?;
    let report = |before: u64| -> anyhow::Result<()> {
        let (rss, hwm) = proc_memory("/proc/self/status")?;
        eprintln!("  rss child: {before} KiB before loading, {rss} KiB after (peak {hwm} KiB)");
        println!("RSS_KIB {rss}");
        Ok(())
    };
    let (before, _) = proc_memory("/proc/self/status")?;
    with_kv!(&corten, |kv| workload::load(kv, "/bench/rss/", args.rss_keys, 64).await)?;
    report(before)?;
    corten.shutdown().await
}

/// `VmRSS` and `VmHWM` (KiB) from a `/proc/*/status` file.
fn proc_memory(path: impl AsRef<Path>) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(path.as_ref())?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name}"))?;
        let kib = line.trim_start_matches(name).trim().trim_end_matches("kB").trim();
        Ok(kib.parse()?)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}
