//! The server's HTTP and lifecycle behaviour over `MemStore`, behind a readiness switch.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corten_store::{
    Lease, LeaseId, MemStore, MemStoreConfig, RangeRequest, RangeResponse, Revision, Store, StoreStatus, Txn,
    TxnResponse, WatchRequest, WatchStream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;

/// `MemStore` with readiness under the test's control and a record of its shutdown.
#[derive(Debug)]
struct SwitchedStore {
    inner: MemStore,
    ready: watch::Sender<bool>,
    shut_down: Arc<AtomicBool>,
    fail_shutdown: bool,
}

impl SwitchedStore {
    fn new(ready: bool) -> Self {
        SwitchedStore {
            inner: MemStore::new(MemStoreConfig::default()),
            ready: watch::Sender::new(ready),
            shut_down: Arc::new(AtomicBool::new(false)),
            fail_shutdown: false,
        }
    }
}

impl Store for SwitchedStore {
    async fn range(&self, req: RangeRequest) -> corten_store::Result<RangeResponse> {
        self.inner.range(req).await
    }
    async fn txn(&self, txn: Txn) -> corten_store::Result<TxnResponse> {
        self.inner.txn(txn).await
    }
    async fn watch(&self, req: WatchRequest) -> corten_store::Result<WatchStream> {
        self.inner.watch(req).await
    }
    async fn compact(&self, revision: Revision) -> corten_store::Result<()> {
        self.inner.compact(revision).await
    }
    async fn lease_grant(&self, ttl_seconds: i64) -> corten_store::Result<Lease> {
        self.inner.lease_grant(ttl_seconds).await
    }
    async fn lease_keep_alive(&self, id: LeaseId) -> corten_store::Result<Lease> {
        self.inner.lease_keep_alive(id).await
    }
    async fn lease_revoke(&self, id: LeaseId) -> corten_store::Result<()> {
        self.inner.lease_revoke(id).await
    }
    async fn status(&self) -> corten_store::Result<StoreStatus> {
        self.inner.status().await
    }
}

impl ServedStore for SwitchedStore {
    type ShutdownError = std::io::Error;

    fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut ready = self.ready.subscribe();
        let became_ready = tokio::time::timeout(timeout, ready.wait_for(|r| *r)).await;
        matches!(became_ready, Ok(Ok(_)))
    }

    async fn shutdown(&self) -> Result<(), std::io::Error> {
        self.shut_down.store(true, Ordering::SeqCst);
        if self.fail_shutdown {
            return Err(std::io::Error::other("disk on fire"));
        }
        Ok(())
    }
}

struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<()>>,
}

async fn start(store: SwitchedStore) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a free loopback port");
    let addr = listener.local_addr().expect("local addr");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, store, shutdown.clone()));
    Running { addr, shutdown, task }
}

/// A minimal HTTP/1.1 GET: returns the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

#[tokio::test]
async fn healthz_answers_ok_even_while_the_store_is_not_ready() {
    let running = start(SwitchedStore::new(false)).await;
    assert_eq!(get(running.addr, "/healthz").await.unwrap(), (200, "ok".to_string()));
    assert_eq!(
        get(running.addr, "/healthz?verbose").await.unwrap(),
        (200, "[+]ping ok\nhealthz check passed\n".to_string())
    );
}

#[tokio::test]
async fn readyz_answers_503_with_the_reason_until_the_store_is_ready() {
    let store = SwitchedStore::new(false);
    let ready = store.ready.clone();
    let running = start(store).await;

    let (status, body) = get(running.addr, "/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("[-]store failed: store is not ready"), "{body}");
    assert!(body.contains("[+]ping ok\n"), "{body}");
    assert!(body.ends_with("readyz check failed\n"), "{body}");

    ready.send_replace(true);
    assert_eq!(get(running.addr, "/readyz").await.unwrap(), (200, "ok".to_string()));
}

#[tokio::test]
async fn readyz_verbose_lists_every_check_when_all_pass() {
    let running = start(SwitchedStore::new(true)).await;
    let (status, body) = get(running.addr, "/readyz?verbose").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "[+]ping ok\n[+]store ok\n[+]shutdown ok\nreadyz check passed\n");
}

#[tokio::test]
async fn unknown_paths_are_not_found() {
    let running = start(SwitchedStore::new(true)).await;
    assert_eq!(get(running.addr, "/livez/nope").await.unwrap().0, 404);
}

#[tokio::test]
async fn cancelling_stops_http_then_shuts_the_store_down() {
    let store = SwitchedStore::new(true);
    let shut_down = store.shut_down.clone();
    let running = start(store).await;
    assert_eq!(get(running.addr, "/readyz").await.unwrap().0, 200);

    running.shutdown.cancel();
    running.task.await.expect("serve task").expect("clean stop");
    assert!(shut_down.load(Ordering::SeqCst), "store was not shut down");
    assert!(TcpStream::connect(running.addr).await.is_err(), "http still accepting after stop");
}

#[tokio::test]
async fn a_failing_store_shutdown_is_reported() {
    let mut store = SwitchedStore::new(true);
    store.fail_shutdown = true;
    let running = start(store).await;
    running.shutdown.cancel();
    let err = running.task.await.expect("serve task").expect_err("shutdown failure must surface");
    assert!(matches!(err, Error::StoreShutdown(_)), "{err:?}");
}

#[tokio::test]
async fn a_data_dir_that_cannot_be_created_is_named_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let dir = file.join("data");

    let err = prepare_data_dir(&dir).await.expect_err("a directory under a file cannot be created");
    let message = err.to_string();
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(message.contains("--data-dir"), "{message}");
}

#[tokio::test]
async fn a_missing_data_dir_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/data");
    prepare_data_dir(&dir).await.unwrap();
    assert!(dir.is_dir());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the write probe must be removed");
}

#[tokio::test]
async fn a_health_port_in_use_is_named_in_the_error() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = bind(addr).await.expect_err("port is taken");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
