//! The kubelet's HTTPS API: mutual TLS, `/healthz`, container logs with `PodLogOptions`, and
//! exec proxied (upgrade and all) to the runtime's streaming URL.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use axum::body::Body;
use bytes::Bytes;
use common::*;
use corten_kubelet::ServerSettings;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

/// A kubelet with its API on a free loopback port and a client that holds a cluster certificate.
struct Served {
    f: Fixture,
    tls: Arc<rustls::ClientConfig>,
    anonymous: Arc<rustls::ClientConfig>,
    port: u16,
    shutdown: CancellationToken,
    task: JoinHandle<corten_kubelet::Result<()>>,
    _pki_dir: tempfile::TempDir,
}

impl Served {
    async fn start() -> Result<Served> {
        let f = Fixture::new().await?;
        let pki_dir = tempfile::tempdir()?;
        let pki = corten_pki::ensure(&corten_pki::PkiOptions::new(pki_dir.path().join("tls")))?;
        let (cert_pem, key_pem) =
            pki.issue_serving_cert(NODE, &["127.0.0.1".to_owned()], Duration::from_secs(3600))?;
        let mut config = config(f.dir.path());
        config.server = Some(ServerSettings {
            address: "127.0.0.1:0".parse()?,
            cert_pem,
            key_pem,
            client_ca_pem: pki.ca_cert_pem().to_owned(),
        });
        let shutdown = f.cluster.shutdown().child_token();
        let task = tokio::spawn(corten_kubelet::run(
            f.cluster.client.clone(),
            f.runtime.clone(),
            config,
            shutdown.clone(),
        ));
        let nodes: Api<Node> = Api::all(f.cluster.client.clone());
        let port = eventually("the node to report the kubelet port", || async {
            let node = nodes.get_opt(NODE).await?;
            let port = node
                .and_then(|n| n.status)
                .and_then(|s| s.daemon_endpoints)
                .and_then(|d| d.kubelet_endpoint)
                .map(|e| e.port)
                .unwrap_or(0);
            Ok(if port > 0 && port != 10250 { Ok(u16::try_from(port)?) } else { Err(format!("port {port}")) })
        })
        .await?;
        let tls = Arc::new(pki.client_tls_config(pki.admin_cert_pem(), pki.admin_key_pem())?);
        let anonymous = Arc::new(corten_pki::client_tls_config(pki.ca_cert_pem(), None)?);
        Ok(Served { f, tls, anonymous, port, shutdown, task, _pki_dir: pki_dir })
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.task.await?.context("kubelet run")?;
        Ok(())
    }

    /// A fresh HTTPS connection to the kubelet API.
    async fn connect(
        &self,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<hyper::client::conn::http1::SendRequest<Body>> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
        let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn.with_upgrades());
        Ok(sender)
    }

    async fn send(&self, req: Request<Body>) -> Result<http::Response<Incoming>> {
        let mut c = self.connect(self.tls.clone()).await?;
        Ok(tokio::time::timeout(DEADLINE, c.send_request(req)).await??)
    }

    /// `GET path` → `(status, body)`.
    async fn get(&self, path: &str) -> Result<(StatusCode, String)> {
        let resp = self.send(Request::get(path).header("host", "127.0.0.1").body(Body::empty())?).await?;
        let status = resp.status();
        let body = tokio::time::timeout(DEADLINE, resp.into_body().collect()).await??.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    async fn running_pod(&self, name: &str) -> Result<Pod> {
        self.f.create_pod(name, simple("busybox:1.36")).await?;
        self.f
            .wait_pod(name, "Running", |p| {
                container(p, "app").and_then(|c| c.state.as_ref()).is_some_and(|s| s.running.is_some())
            })
            .await
    }

    fn log_dir(&self, pod: &Pod) -> PathBuf {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.f.dir.path().join("pods-logs").join(format!("default_{name}_{uid}")).join("app")
    }
}

fn write_log(path: &std::path::Path, lines: &[String]) -> Result<()> {
    std::fs::create_dir_all(path.parent().context("log dir")?)?;
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text)?;
    Ok(())
}

fn append_log(path: &std::path::Path, line: &str) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    writeln!(f, "{line}")?;
    Ok(())
}

fn ts(offset_secs: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(offset_secs);
    t.to_string()
}

async fn next_chunk(body: &mut Incoming) -> Result<Option<Bytes>> {
    loop {
        match tokio::time::timeout(DEADLINE, body.frame()).await? {
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    return Ok(Some(data));
                }
            }
            None => return Ok(None),
        }
    }
}

/// Reads the body until it holds `want` (chunks may split or merge lines).
async fn read_until(body: &mut Incoming, seen: &mut String, want: &str) -> Result<()> {
    while !seen.contains(want) {
        match next_chunk(body).await? {
            Some(b) => seen.push_str(&String::from_utf8_lossy(&b)),
            None => bail!("the log stream ended before {want:?}; got {seen:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn healthz_needs_a_client_certificate_of_the_cluster_ca() -> Result<()> {
    let s = Served::start().await?;
    assert_eq!(s.get("/healthz").await?, (StatusCode::OK, "ok".to_owned()));
    // With TLS 1.3 the client finishes its handshake first; the server's refusal shows up as
    // an error on the connection, never as an answer.
    let anonymous = async {
        let mut c = s.connect(s.anonymous.clone()).await?;
        let resp =
            c.send_request(Request::get("/healthz").header("host", "127.0.0.1").body(Body::empty())?).await?;
        anyhow::Ok(resp.status())
    };
    match tokio::time::timeout(DEADLINE, anonymous).await? {
        Ok(status) => bail!("a client without a certificate got {status}"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    s.stop().await
}

#[tokio::test]
async fn container_logs_follow_pod_log_options() -> Result<()> {
    let s = Served::start().await?;
    let pod = s.running_pod("logger").await?;
    let file = s.log_dir(&pod).join("0.log");
    let (t1, t2) = (ts(-2), ts(-1));
    write_log(
        &file,
        &[
            "2020-01-01T00:00:00.000000001Z stdout F old line".to_owned(),
            format!("{t1} stdout P hello "),
            format!("{t1} stdout F world"),
            format!("{t2} stderr F oops"),
        ],
    )?;
    let base = "/containerLogs/default/logger/app";
    let ok = |body: &str| (StatusCode::OK, body.to_owned());
    assert_eq!(s.get(base).await?, ok("old line\nhello world\noops\n"));
    assert_eq!(
        s.get(&format!("{base}?timestamps=true")).await?,
        ok(&format!("2020-01-01T00:00:00.000000001Z old line\n{t1} hello world\n{t2} oops\n"))
    );
    assert_eq!(s.get(&format!("{base}?tailLines=1")).await?, ok("oops\n"));
    assert_eq!(s.get(&format!("{base}?tail=all")).await?, ok("old line\nhello world\noops\n"));
    assert_eq!(s.get(&format!("{base}?limitBytes=5")).await?, ok("old l"));
    assert_eq!(s.get(&format!("{base}?sinceSeconds=3600")).await?, ok("hello world\noops\n"));
    assert_eq!(s.get(&format!("{base}?sinceTime=2030-01-01T00:00:00Z")).await?, ok(""));

    assert_eq!(
        s.get(&format!("{base}?previous=true")).await?,
        (
            StatusCode::BAD_REQUEST,
            r#"previous terminated container "app" in pod "logger" not found"#.to_owned()
        )
    );
    assert_eq!(
        s.get(&format!("{base}?tailLines=-1")).await?,
        (StatusCode::UNPROCESSABLE_ENTITY, r#"{"message": "Invalid request."}"#.to_owned())
    );
    assert_eq!(
        s.get(&format!("{base}?follow=perhaps")).await?,
        (StatusCode::BAD_REQUEST, r#"{"message": "Unable to decode query."}"#.to_owned())
    );
    assert_eq!(
        s.get("/containerLogs/default/nope/app").await?,
        (StatusCode::NOT_FOUND, r#"pod "nope" does not exist"#.to_owned())
    );
    assert_eq!(
        s.get("/containerLogs/default/logger/nope").await?,
        (StatusCode::NOT_FOUND, r#"container "nope" not found in pod "logger""#.to_owned())
    );

    // Restart the container: `previous` reads the first instance's file.
    let first = s.f.runtime.containers().into_iter().find(|c| c.name() == "app").context("app container")?;
    assert!(s.f.runtime.exit_container(&first.id, 1));
    s.f.wait_pod("logger", "restarted and running", |p| {
        container(p, "app")
            .is_some_and(|c| c.restart_count == 1 && c.state.as_ref().is_some_and(|st| st.running.is_some()))
    })
    .await?;
    let second = s.log_dir(&pod).join("1.log");
    write_log(&second, &[format!("{} stdout F first", ts(0))])?;
    assert_eq!(s.get(&format!("{base}?previous=true&tailLines=1")).await?, ok("oops\n"));
    assert_eq!(s.get(base).await?, ok("first\n"));

    // Follow: an appended line arrives; the stream ends once the container exits.
    let req = Request::get(format!("{base}?follow=true")).header("host", "127.0.0.1").body(Body::empty())?;
    let resp = s.send(req).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "first\n").await?;
    append_log(&second, &format!("{} stdout F second", ts(0)))?;
    read_until(&mut body, &mut seen, "second\n").await?;
    let current =
        s.f.runtime
            .containers()
            .into_iter()
            .find(|c| c.name() == "app" && c.state == corten_cri::api::ContainerState::ContainerRunning)
            .context("the running app container")?;
    append_log(&second, &format!("{} stdout F last words", ts(0)))?;
    assert!(s.f.runtime.exit_container(&current.id, 0));
    while next_chunk(&mut body).await?.map(|b| seen.push_str(&String::from_utf8_lossy(&b))).is_some() {}
    assert_eq!(seen, "first\nsecond\nlast words\n");
    s.stop().await
}

#[tokio::test]
async fn logs_of_a_container_waiting_for_its_image_explain_why() -> Result<()> {
    let s = Served::start().await?;
    s.f.runtime.fail_pulls("ghost:latest", Some("pull access denied"));
    s.f.create_pod("waiter", simple("ghost:latest")).await?;
    s.f.wait_pod("waiter", "waiting on its image", |p| {
        waiting_reason(p, "app").is_some_and(|r| r == "ErrImagePull" || r == "ImagePullBackOff")
    })
    .await?;
    let (status, body) = s.get("/containerLogs/default/waiter/app").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        [
            r#"container "app" in pod "waiter" is waiting to start: image can't be pulled"#,
            r#"container "app" in pod "waiter" is waiting to start: trying and failing to pull image"#
        ]
        .contains(&body.as_str()),
        "{body}"
    );
    s.stop().await
}

/// A stand-in for the runtime's streaming server: answers an upgrade with 101 and echoes
/// what it receives, prefixed with the request path.
async fn start_streaming_server() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|mut req: Request<Incoming>| async move {
                let path = req.uri().path().to_owned();
                let protocol = req.headers().get("x-stream-protocol-version").cloned();
                let on = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let Ok(upgraded) = on.await {
                        let mut io = TokioIo::new(upgraded);
                        let _ = io.write_all(format!("{path}\n").as_bytes()).await;
                        let mut buf = [0u8; 256];
                        while let Ok(n) = io.read(&mut buf).await {
                            if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                });
                let mut resp = http::Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("connection", "Upgrade")
                    .header("upgrade", "SPDY/3.1");
                if let Some(p) = protocol {
                    resp = resp.header("x-stream-protocol-version", p);
                }
                resp.body(Body::empty())
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades(),
            );
        }
    });
    Ok(addr)
}

#[tokio::test]
async fn exec_proxies_the_upgrade_to_the_runtime_streaming_url() -> Result<()> {
    let s = Served::start().await?;
    let streaming = start_streaming_server().await?;
    s.f.runtime.set_streaming_base(&format!("http://{streaming}"));
    s.running_pod("shell").await?;
    let id = s.f.runtime.containers().into_iter().find(|c| c.name() == "app").context("app")?.id;

    let path = "/exec/default/shell/app?command=sh&command=-c&command=echo+hi&input=1&output=1&tty=1";
    let upgrade = |path: &str| {
        Request::post(path)
            .header("host", "127.0.0.1")
            .header("connection", "Upgrade")
            .header("upgrade", "SPDY/3.1")
            .header("x-stream-protocol-version", "v4.channel.k8s.io")
            .body(Body::empty())
    };
    let mut resp = s.send(upgrade(path)?).await?;
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        resp.headers().get("x-stream-protocol-version").and_then(|v| v.to_str().ok()),
        Some("v4.channel.k8s.io")
    );
    let upgraded = tokio::time::timeout(DEADLINE, hyper::upgrade::on(&mut resp)).await??;
    let mut io = TokioIo::new(upgraded);
    io.write_all(b"ping").await?;
    let want = format!("/exec/{id}\nping");
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(DEADLINE, io.read_exact(&mut got)).await??;
    assert_eq!(String::from_utf8_lossy(&got), want);
    assert!(s.f.runtime.calls().contains(&format!("Exec {id} sh -c echo hi")), "{:?}", s.f.runtime.calls());

    // Port-forward goes to the pod's sandbox.
    let mut resp = s.send(upgrade("/portForward/default/shell?port=80")?).await?;
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let upgraded = tokio::time::timeout(DEADLINE, hyper::upgrade::on(&mut resp)).await??;
    let mut io = TokioIo::new(upgraded);
    let sandbox = s.f.runtime.sandboxes().first().map(|sb| sb.id.clone()).context("sandbox")?;
    let want = format!("/portforward/{sandbox}\n");
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(DEADLINE, io.read_exact(&mut got)).await??;
    assert_eq!(String::from_utf8_lossy(&got), want);

    let plain = Request::post(path).header("host", "127.0.0.1").body(Body::empty())?;
    let resp = s.send(plain).await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let no_streams = s.send(upgrade("/exec/default/shell/app?command=sh")?).await?;
    assert_eq!(no_streams.status(), StatusCode::BAD_REQUEST);
    let body = no_streams.into_body().collect().await?.to_bytes();
    assert_eq!(body, "you must specify at least 1 of stdin, stdout, stderr");
    let missing = s.send(upgrade("/exec/default/shell/nope?command=sh&output=1")?).await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let other_uid = s.send(upgrade("/exec/default/shell/not-the-uid/app?command=sh&output=1")?).await?;
    assert_eq!(other_uid.status(), StatusCode::NOT_FOUND);
    s.stop().await
}
