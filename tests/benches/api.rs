//! `make bench` (API part): the real `corten server` (control plane only, release build) driven
//! over HTTPS by kube-rs clients, as kubectl and controllers drive it.
//!
//! Figures (see docs/PERF.md): idle RSS; creating 10k ConfigMaps with 32 concurrent clients
//! (throughput, p50/p99 per create); RSS holding them; LIST of all 10k as JSON and as a Table;
//! GET p50/p99 with 32 clients; watch fan-out to 100 watchers (create call to receipt, p99).
//!
//! Usage: `CORTEN_BIN=<target>/release/corten cargo bench -p corten-tests --bench api --
//! [--objects 10000] [--clients 32] [--watchers 100] [--watch-events 1000]`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use corten_tests::Server;
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::json;

/// The namespace every object of the bench lives in.
const NS: &str = "default";
/// The annotation carrying a watched object's create time (ns since the epoch).
const SENT: &str = "bench.corten.dev/sent-ns";

#[derive(Debug, Parser)]
#[command(about = "Corten API server benchmark")]
struct Args {
    /// ConfigMaps created (and then listed).
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Concurrent clients creating and getting.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// LIST requests per format.
    #[arg(long, default_value_t = 20)]
    lists: usize,
    /// GET requests in all.
    #[arg(long, default_value_t = 10_000)]
    gets: usize,
    /// Watchers of the fan-out run.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Objects created one after another while the watchers watch.
    #[arg(long, default_value_t = 1000)]
    watch_events: usize,
    /// Where the server's data directory goes (a real disk, not tmpfs).
    #[arg(long, default_value = "/var/tmp")]
    dir: std::path::PathBuf,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(&args))
}

/// One line of the result table.
struct Row(String, f64, &'static str);

async fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("corten-api-bench").tempdir_in(&args.dir)?;
    let mut server = Server::start(dir.path())?;
    server.wait_ready().await?;
    let pid = server.pid().context("the server has no pid")?;
    let mut rows = Vec::new();

    // Let start-up work (bootstrap objects, first compaction timers) settle before measuring.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = rss_mib(pid)?;
    eprintln!("idle RSS {idle:.1} MiB");
    rows.push(Row("idle RSS of `corten server` (control plane only), MiB".into(), idle, "< 40"));

    let clients = clients(&server.kubeconfig(), args.clients).await?;
    let (took, hist) = create_all(&clients, args.objects).await?;
    let rate = args.objects as f64 / took.as_secs_f64();
    eprintln!(
        "created {} ConfigMaps in {:.1} s: {rate:.0}/s, {}",
        args.objects,
        took.as_secs_f64(),
        pcts(&hist)
    );
    let c = args.clients;
    rows.push(Row(format!("create ConfigMap, {c} clients: creates/s"), rate, ">= 3000"));
    rows.push(Row(format!("create ConfigMap, {c} clients: p50 ms"), ms(&hist, 0.5), ""));
    rows.push(Row(format!("create ConfigMap, {c} clients: p99 ms"), ms(&hist, 0.99), "< 50"));

    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = rss_mib(pid)?;
    eprintln!("RSS with {} ConfigMaps {loaded:.1} MiB", args.objects);
    rows.push(Row(format!("RSS with {} ConfigMaps, MiB", args.objects), loaded, ""));

    let n = args.objects;
    let json = lists(&clients[0], args.lists, n, false).await?;
    eprintln!("LIST {n} as JSON: {}", pcts(&json));
    rows.push(Row(format!("LIST {n} ConfigMaps (JSON): p50 ms"), ms(&json, 0.5), ""));
    rows.push(Row(format!("LIST {n} ConfigMaps (JSON): p99 ms"), ms(&json, 0.99), "< 300"));
    let table = lists(&clients[0], args.lists, n, true).await?;
    eprintln!("LIST {n} as Table: {}", pcts(&table));
    rows.push(Row(format!("LIST {n} ConfigMaps (Table): p50 ms"), ms(&table, 0.5), ""));
    rows.push(Row(format!("LIST {n} ConfigMaps (Table): p99 ms"), ms(&table, 0.99), "< 300"));

    let gets = get_all(&clients, args.gets, n).await?;
    eprintln!("GET x{}: {}", args.gets, pcts(&gets));
    rows.push(Row(format!("GET ConfigMap, {c} clients: p50 ms"), ms(&gets, 0.5), ""));
    rows.push(Row(format!("GET ConfigMap, {c} clients: p99 ms"), ms(&gets, 0.99), ""));

    let fanout = watch_fan_out(&clients[0], args.watchers, args.watch_events).await?;
    eprintln!("watch fan-out to {} watchers: {}", args.watchers, pcts(&fanout));
    let w = args.watchers;
    rows.push(Row(format!("watch fan-out, {w} watchers: p50 ms"), ms(&fanout, 0.5), ""));
    rows.push(Row(format!("watch fan-out, {w} watchers: p99 ms"), ms(&fanout, 0.99), ""));

    println!("| figure | Corten | target |\n|---|---:|---|");
    for Row(name, value, target) in rows {
        println!("| {name} | {value:.2} | {target} |");
    }
    drop(server);
    eprintln!("bench finished in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `n` clients of the admin kubeconfig, each with its own connections.
async fn clients(kubeconfig: &Path, n: usize) -> anyhow::Result<Vec<Client>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let kc = Kubeconfig::read_from(kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        out.push(Client::try_from(config)?);
    }
    Ok(out)
}

fn configmap(name: &str, annotations: serde_json::Value) -> anyhow::Result<ConfigMap> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench"}, "annotations": annotations},
        "data": {"key": "value", "config.yaml": "replicas: 3\nimage: busybox:1.36\n"},
    }))?)
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 120_000_000, 3)?)
}

/// Creates `objects` ConfigMaps `cm-<i>` from all clients at once; total time and per-create
/// latency in µs.
async fn create_all(clients: &[Client], objects: usize) -> anyhow::Result<(Duration, Histogram<u64>)> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in clients {
        let (api, next) = (Api::<ConfigMap>::namespaced(client.clone(), NS), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram()?;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= objects {
                    return anyhow::Ok(hist);
                }
                let cm = configmap(&format!("cm-{i}"), json!({}))?;
                let t = Instant::now();
                api.create(&PostParams::default(), &cm).await.with_context(|| format!("creating cm-{i}"))?;
                hist.record(micros(t.elapsed()))?;
            }
        }));
    }
    let mut all = histogram()?;
    for task in tasks {
        all.add(task.await??)?;
    }
    Ok((start.elapsed(), all))
}

/// Lists every ConfigMap `times` times (as a Table when `table`), checking the count.
async fn lists(
    client: &Client,
    times: usize,
    expected: usize,
    table: bool,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist = histogram()?;
    for _ in 0..times {
        let t = Instant::now();
        let count = if table {
            let req = http::Request::get(format!("/api/v1/namespaces/{NS}/configmaps"))
                .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
                .body(Vec::new())?;
            let body: serde_json::Value = client.request(req).await?;
            body["rows"].as_array().map_or(0, Vec::len)
        } else {
            Api::<ConfigMap>::namespaced(client.clone(), NS).list(&ListParams::default()).await?.items.len()
        };
        hist.record(micros(t.elapsed()))?;
        if count < expected {
            bail!("a LIST returned {count} objects, expected at least {expected}");
        }
    }
    Ok(hist)
}

/// `gets` GETs of random existing ConfigMaps spread over all clients.
async fn get_all(clients: &[Client], gets: usize, objects: usize) -> anyhow::Result<Histogram<u64>> {
    let per_client = gets.div_ceil(clients.len());
    let mut tasks = Vec::new();
    for (n, client) in clients.iter().enumerate() {
        let api = Api::<ConfigMap>::namespaced(client.clone(), NS);
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram()?;
            for i in 0..per_client {
                // A cheap spread over the objects that differs per client.
                let name = format!("cm-{}", (i * 7919 + n * 104_729) % objects);
                let t = Instant::now();
                api.get(&name).await.with_context(|| format!("getting {name}"))?;
                hist.record(micros(t.elapsed()))?;
            }
            anyhow::Ok(hist)
        }));
    }
    let mut all = histogram()?;
    for task in tasks {
        all.add(task.await??)?;
    }
    Ok(all)
}

/// Starts `watchers` watches on the namespace's ConfigMaps, then creates `events` ConfigMaps one
/// after another; the latency of each (event, watcher) pair from the create call to receipt.
async fn watch_fan_out(client: &Client, watchers: usize, events: usize) -> anyhow::Result<Histogram<u64>> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), NS);
    let rv = api
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let params = WatchParams::default().labels("app=watched").timeout(290);
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let stream = api.watch(&params, &rv).await?.boxed();
        tasks.push(tokio::spawn(async move {
            let mut stream = stream;
            let mut hist = histogram()?;
            let mut seen = 0;
            while seen < events {
                let Some(event) = stream.try_next().await? else {
                    bail!("a watch ended after {seen} events")
                };
                if let WatchEvent::Added(cm) = event {
                    let received = now_ns();
                    let sent = cm
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(SENT))
                        .and_then(|s| s.parse::<u64>().ok())
                        .context("a watched ConfigMap without its create time")?;
                    hist.record(received.saturating_sub(sent) / 1000)?;
                    seen += 1;
                }
            }
            anyhow::Ok(hist)
        }));
    }
    // Give every watch time to be registered before the first event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..events {
        let mut cm = configmap(&format!("watched-{i}"), json!({SENT: now_ns().to_string()}))?;
        cm.metadata.labels = Some([("app".to_string(), "watched".to_string())].into());
        api.create(&PostParams::default(), &cm).await?;
    }
    let mut all = histogram()?;
    for task in tasks {
        all.add(
            tokio::time::timeout(Duration::from_secs(120), task)
                .await
                .context("watchers fell behind")???,
        )?;
    }
    Ok(all)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn pcts(h: &Histogram<u64>) -> String {
    format!("p50 {:.2} ms, p99 {:.2} ms ({} samples)", ms(h, 0.5), ms(h, 0.99), h.len())
}

/// The resident memory of process `pid` in MiB.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(kib / 1024.0)
}
