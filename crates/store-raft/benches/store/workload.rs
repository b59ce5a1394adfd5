//! The workloads, generic over [`Kv`]: timed puts with N writers, bulk load, full range reads,
//! watch fan-out.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use hdrhistogram::Histogram;

use crate::kv::Kv;

/// Size of every value written.
pub const VALUE_BYTES: usize = 1024;

/// Latencies are recorded in microseconds, up to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The process-wide clock origin: watch latencies are measured from a timestamp in the value.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// A 1 KiB value: 8 bytes of "sent at" (nanoseconds since [`base`]) then incompressible filler.
pub fn value(seed: u64) -> Vec<u8> {
    let sent = u64::try_from(base().elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut v = Vec::with_capacity(VALUE_BYTES);
    v.extend_from_slice(&sent.to_le_bytes());
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < VALUE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(VALUE_BYTES);
    v
}

/// How long ago the value was made (see [`value`]).
fn age(value: &[u8]) -> Option<Duration> {
    let sent = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    Some(base().elapsed().saturating_sub(Duration::from_nanos(sent)))
}

/// The outcome of a timed put run.
#[derive(Debug)]
pub struct PutStats {
    pub ops: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

impl PutStats {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

/// `writers` tasks put 1 KiB values under `prefix` back to back for `warmup + measure`; only puts
/// started after the warm-up are counted.
pub async fn timed_puts<K: Kv>(
    kv: &K,
    prefix: &str,
    writers: usize,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<PutStats> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let deadline = measure_from + measure;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let kv = kv.clone();
        let prefix = format!("{prefix}{w:03}/");
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut ops = 0u64;
            let mut i = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= deadline {
                    break;
                }
                let key = format!("{prefix}{i:010}").into_bytes();
                kv.put(key, value(i ^ ((w as u64) << 40))).await?;
                i += 1;
                if t0 >= measure_from {
                    ops += 1;
                    hist.saturating_record(micros(t0.elapsed()));
                }
            }
            anyhow::Ok((ops, hist))
        }));
    }
    let mut latency = histogram();
    let mut ops = 0;
    for task in tasks {
        let (n, hist) = task.await??;
        ops += n;
        latency.add(hist).context("merging histograms")?;
    }
    Ok(PutStats { ops, elapsed: measure, latency })
}

/// Writes `count` keys `prefix{i}` with `concurrency` writers; returns the elapsed time.
pub async fn load<K: Kv>(kv: &K, prefix: &str, count: u64, concurrency: u64) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let kv = kv.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < count {
                kv.put(format!("{prefix}{i:08}").into_bytes(), value(i)).await?;
                i += concurrency;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(start.elapsed())
}

/// Reads the whole of `prefix` (which holds `expected` keys) repeatedly for about `budget`
/// (at least 5, at most 200 reads); returns the latency histogram.
pub async fn full_ranges<K: Kv>(
    kv: &K,
    prefix: &str,
    expected: usize,
    budget: Duration,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist = histogram();
    let start = Instant::now();
    // One unrecorded read warms caches and connections.
    kv.range_prefix(prefix.as_bytes().to_vec()).await?;
    while hist.len() < 5 || (start.elapsed() < budget && hist.len() < 200) {
        let t0 = Instant::now();
        let n = kv.range_prefix(prefix.as_bytes().to_vec()).await?;
        hist.saturating_record(micros(t0.elapsed()));
        if n != expected {
            bail!("range returned {n} keys, expected {expected}");
        }
    }
    Ok(hist)
}

/// `watchers` watches on `prefix`, one writer putting `events` keys one after the other; each
/// watcher records, for every event, the time from the start of its put call to receipt.
pub async fn watch_fanout<K: Kv>(
    kv: &K,
    prefix: &str,
    watchers: usize,
    events: u64,
) -> anyhow::Result<Histogram<u64>> {
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let mut stream = kv.watch_prefix(prefix.as_bytes().to_vec()).await?;
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            while hist.len() < events {
                match stream.next().await {
                    Some(values) => {
                        for v in values? {
                            let age = age(&v).context("event value without a timestamp")?;
                            hist.saturating_record(micros(age));
                        }
                    }
                    None => bail!("watch ended after {} of {events} events", hist.len()),
                }
            }
            anyhow::Ok(hist)
        }));
    }
    for i in 0..events {
        kv.put(format!("{prefix}{:04}", i % 100).into_bytes(), value(i)).await?;
    }
    let mut latency = histogram();
    for task in tasks {
        let hist = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .context("watchers did not receive every event within 60 s")???;
        latency.add(hist).context("merging histograms")?;
    }
    Ok(latency)
}
