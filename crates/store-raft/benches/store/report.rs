//! Collects figures per backend and prints them as a markdown table with the Corten/etcd ratio
//! and the targets of issue 2.

use std::collections::BTreeMap;
use std::fmt::Write;

/// One measured quantity (times in milliseconds, memory in MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Figure {
    PutOps { writers: usize, multi_node: bool },
    PutP50 { writers: usize, multi_node: bool },
    PutP99 { writers: usize, multi_node: bool },
    RangeP50,
    RangeP99,
    WatchP50,
    WatchP99,
    RssMib,
}

impl Figure {
    fn name(self, rss_keys: u64) -> String {
        let put = |writers: usize, multi_node: bool, what: &str| {
            let nodes = if multi_node { "3 nodes" } else { "1 node" };
            format!("put, {nodes}, {writers} writer{}: {what}", if writers == 1 { "" } else { "s" })
        };
        match self {
            Figure::PutOps { writers, multi_node } => put(writers, multi_node, "ops/s"),
            Figure::PutP50 { writers, multi_node } => put(writers, multi_node, "p50 ms"),
            Figure::PutP99 { writers, multi_node } => put(writers, multi_node, "p99 ms"),
            Figure::RangeP50 => "range of all keys (10k), p50 ms".into(),
            Figure::RangeP99 => "range of all keys (10k), p99 ms".into(),
            Figure::WatchP50 => "watch fan-out, 100 watchers, p50 ms".into(),
            Figure::WatchP99 => "watch fan-out, 100 watchers, p99 ms".into(),
            Figure::RssMib => format!("RSS with {}k keys of 1 KiB, MiB", rss_keys / 1000),
        }
    }

    /// The target for this figure, given etcd's value; `None` when there is none.
    fn target(self, corten: f64, etcd: Option<f64>) -> Option<String> {
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        match self {
            Figure::PutOps { writers: 64, multi_node: false } => {
                etcd.map(|e| format!(">= etcd: {}", verdict(corten >= e)))
            }
            Figure::PutP99 { writers: 64, multi_node: false } => {
                etcd.map(|e| format!("<= etcd: {}", verdict(corten <= e)))
            }
            Figure::WatchP99 => Some(format!("< 5 ms: {}", verdict(corten < 5.0))),
            Figure::RssMib => Some(format!("< 150 MB: {}", verdict(corten * 1.048_576 < 150.0))),
            _ => None,
        }
    }
}

/// Figures by quantity, then by backend label.
#[derive(Debug, Default)]
pub struct Report {
    figures: BTreeMap<Figure, BTreeMap<&'static str, f64>>,
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

impl Report {
    pub fn add(&mut self, figure: Figure, backend: &'static str, value: f64) {
        self.figures.entry(figure).or_default().insert(backend, value);
    }

    /// The table: one row per figure, Corten (RaftStore, or MemStore when that is all that ran)
    /// against etcd with the same number of nodes.
    pub fn markdown(&self, rss_keys: u64) -> String {
        let mut out =
            String::from("| figure | Corten | etcd 3.4 | Corten/etcd | target |\n|---|---:|---:|---:|---|\n");
        for (figure, by_backend) in &self.figures {
            let multi = matches!(
                figure,
                Figure::PutOps { multi_node: true, .. }
                    | Figure::PutP50 { multi_node: true, .. }
                    | Figure::PutP99 { multi_node: true, .. }
            );
            let (corten_keys, etcd_key): (&[&str], &str) =
                if multi { (&["corten 3-node"], "etcd 3-node") } else { (&["corten", "memstore"], "etcd") };
            let corten = corten_keys.iter().find_map(|k| by_backend.get(k).map(|v| (*k, *v)));
            let etcd = by_backend.get(etcd_key).copied();
            let (label, value) = match corten {
                Some(("memstore", v)) => ("(memstore) ", Some(v)),
                Some((_, v)) => ("", Some(v)),
                None => ("", None),
            };
            let cell = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), fmt_value);
            let ratio = match (value, etcd) {
                (Some(c), Some(e)) if e > 0.0 => format!("{:.2}", c / e),
                _ => "n/a".into(),
            };
            let target = value.and_then(|c| figure.target(c, etcd)).unwrap_or_default();
            let _ = writeln!(
                out,
                "| {} | {label}{} | {} | {ratio} | {target} |",
                figure.name(rss_keys),
                cell(value),
                cell(etcd)
            );
        }
        out
    }
}
