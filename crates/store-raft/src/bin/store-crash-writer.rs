//! Test helper for `tests/crash.rs`: opens a single-node store in `DATA_DIR` and writes as fast as
//! it can with several concurrent writers until it is killed.
//!
//! Usage: `store-crash-writer DATA_DIR RUN WRITERS`
//!
//! Prints `ready <revision>` once the store serves, then `ack <key> <revision>` after every
//! acknowledged transaction. Each transaction puts `<key>/a` and `<key>/b`, both with the value
//! `<key>`, so a partial transaction is visible as one of the two without the other.

use std::io::Write;
use std::time::Duration;

use corten_store::{Op, Store, Txn};
use corten_store_raft::{RaftConfig, RaftStore};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn say(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(run), Some(writers)) = (args.next(), args.next(), args.next()) else {
        return Err("usage: store-crash-writer DATA_DIR RUN WRITERS".into());
    };
    let writers: usize = writers.parse()?;
    let store = RaftStore::open(RaftConfig::single_node(dir)).await?;
    store.wait_ready(Duration::from_secs(30)).await?;
    say(&format!("ready {}", store.status().await?.revision))?;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                let key = format!("crash/{run}-{w}-{i}");
                let txn = Txn::new()
                    .success(Op::put(format!("{key}/a"), key.clone()))
                    .success(Op::put(format!("{key}/b"), key.clone()));
                let resp = store.txn(txn).await?;
                say(&format!("ack {key} {}", resp.revision))?;
            }
            Ok::<(), BoxError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}
