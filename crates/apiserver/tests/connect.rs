//! The connect subresources (`pods/log`, `exec`, `attach`, `portforward`, `nodes/proxy`) against a
//! fake kubelet: an HTTPS server with a serving certificate from a test CA that requires the API
//! server's client certificate, and that echoes what it was asked.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use corten_apiserver::testing::TestCluster;
use corten_apiserver::{ApiConfig, Identity};
use futures::{AsyncBufReadExt, TryStreamExt};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, LogParams, Patch, PatchParams, PostParams};
use kube::core::Status;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(10);

/// What the fake kubelet shares with the test.
#[derive(Clone, Default)]
struct Kubelet {
    /// Releases the second line of the `stream` container's log.
    next_line: Arc<Notify>,
}

/// The fake kubelet: upstream kubelet paths, each echoing the request it got.
async fn kubelet(State(k): State<Kubelet>, mut req: Request) -> Response {
    let path = req.uri().path().to_string();
    let echo = match req.uri().query() {
        Some(q) => format!("{} {path}?{q}", req.method()),
        None => format!("{} {path}", req.method()),
    };
    if path.starts_with("/containerLogs/") {
        return match path.rsplit('/').next().unwrap_or("") {
            "stream" => {
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(2);
                tokio::spawn(async move {
                    let _ = tx.send(Ok("line 1\n".into())).await;
                    k.next_line.notified().await;
                    let _ = tx.send(Ok("line 2\n".into())).await;
                });
                Body::from_stream(tokio_stream_from(rx)).into_response()
            }
            "waiting" => (
                StatusCode::BAD_REQUEST,
                "container \"waiting\" in pod \"p\" is waiting to start: ContainerCreating",
            )
                .into_response(),
            _ => format!("{echo}\n").into_response(),
        };
    }
    let streaming = ["/exec/", "/attach/", "/portForward/"].iter().any(|p| path.starts_with(p));
    if streaming {
        let Some(protocol) = req.headers().get(header::UPGRADE).cloned() else {
            return (StatusCode::BAD_REQUEST, "Upgrade request required").into_response();
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let mut io = TokioIo::new(upgraded);
            if io.write_all(format!("{echo}\n").as_bytes()).await.is_err() {
                return;
            }
            let mut buf = [0u8; 1024];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        resp.headers_mut().insert(header::UPGRADE, protocol);
        return resp;
    }
    echo.into_response()
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A cluster whose API server trusts a fake kubelet on node `n1`, with pods `p` (container `c`)
/// and `multi` (containers `a`, `b`) on it and `pending` on no node.
struct Fixture {
    cluster: TestCluster,
    kubelet: Kubelet,
    _dir: tempfile::TempDir,
    _stop: tokio_util::sync::DropGuard,
}

async fn fixture() -> Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let pki = corten_pki::ensure(&corten_pki::PkiOptions::new(dir.path().join("tls")))?;
    let (cert, key) = pki.issue_serving_cert("n1", &["127.0.0.1".to_string()], Duration::from_secs(3600))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new({
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(pki.ca_cert_pem().as_bytes())?)?;
            roots
        }),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()?;
    let server_tls =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes())?],
                PrivateKeyDer::from_pem_slice(key.as_bytes())?,
            )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let state = Kubelet::default();
    let router = axum::Router::new().fallback(kubelet).with_state(state.clone());
    let stop = CancellationToken::new();
    tokio::spawn(corten_apiserver::serve::serve_tls(
        listener,
        Arc::new(server_tls),
        router,
        Arc::new(|_: &[u8]| None),
        stop.clone(),
    ));

    let (client_cert, client_key) = pki.issue_client_cert(
        "kube-apiserver-kubelet-client",
        &["system:masters"],
        Duration::from_secs(3600),
    )?;
    let kubelet_tls = pki.client_tls_config(&client_cert, &client_key)?;
    let config = ApiConfig { kubelet_tls: Some(Arc::new(kubelet_tls)), ..ApiConfig::default() };
    let cluster = TestCluster::start_with(config, Identity::admin()).await?;
    add_node(&cluster.client, "n1", port).await?;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client.clone());
    pods.create(&PostParams::default(), &pod("p", Some("n1"), &["c"])?).await?;
    pods.create(&PostParams::default(), &pod("multi", Some("n1"), &["a", "b"])?).await?;
    pods.create(&PostParams::default(), &pod("pending", None, &["c"])?).await?;
    Ok(Fixture { cluster, kubelet: state, _dir: dir, _stop: stop.drop_guard() })
}

async fn add_node(client: &kube::Client, name: &str, port: u16) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}}))?)
        .await?;
    let status = json!({"status": {
        "addresses": [{"type": "Hostname", "address": "localhost"}, {"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
    }});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await?;
    Ok(())
}

fn pod(name: &str, node: Option<&str>, containers: &[&str]) -> Result<Pod> {
    let containers: Vec<_> = containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect();
    let mut spec = json!({"containers": containers});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    Ok(serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?)
}

fn status(e: kube::Error) -> Result<Status> {
    match e {
        kube::Error::Api(s) => Ok(*s),
        other => bail!("expected an API error, got {other}"),
    }
}

/// GET `path` through the in-process client; the body as text.
async fn get_text(client: &kube::Client, path: &str) -> Result<String> {
    let req = http::Request::get(path).body(Vec::new())?;
    Ok(client.request_text(req).await?)
}

#[tokio::test]
async fn log_options_become_the_kubelet_query() -> Result<()> {
    let f = fixture().await?;
    let pods: Api<Pod> = Api::default_namespaced(f.cluster.client.clone());
    let params = LogParams {
        timestamps: true,
        tail_lines: Some(1),
        since_seconds: Some(10),
        limit_bytes: Some(100),
        previous: true,
        ..LogParams::default()
    };
    let text = pods.logs("p", &params).await?;
    assert_eq!(
        text.trim(),
        "GET /containerLogs/default/p/c?limitBytes=100&previous=true&sinceSeconds=10&tailLines=1&timestamps=true"
    );
    let text = pods.logs("multi", &LogParams { container: Some("b".into()), ..LogParams::default() }).await?;
    assert_eq!(text.trim(), "GET /containerLogs/default/multi/b");
    let text = get_text(
        &f.cluster.client,
        "/api/v1/namespaces/default/pods/p/log?sinceTime=2026-01-02T03:04:05.678Z&follow=true",
    )
    .await?;
    assert_eq!(text.trim(), "GET /containerLogs/default/p/c?follow=true&sinceTime=2026-01-02T03%3A04%3A05Z");
    // A pod on no node has no log yet: an empty 200, like upstream.
    assert_eq!(pods.logs("pending", &LogParams::default()).await?, "");
    Ok(())
}

#[tokio::test]
async fn a_followed_log_streams_each_line_as_it_comes() -> Result<()> {
    let f = fixture().await?;
    let pods: Api<Pod> = Api::default_namespaced(f.cluster.client.clone());
    let params = LogParams { container: None, follow: true, ..LogParams::default() };
    // `p` has one container, so name the streaming one through a pod that has it.
    pods.create(&PostParams::default(), &pod("streamer", Some("n1"), &["stream"])?).await?;
    let mut lines = pods.log_stream("streamer", &params).await?.lines();
    let first = tokio::time::timeout(DEADLINE, lines.try_next()).await.context("first line")??;
    assert_eq!(first.as_deref(), Some("line 1"));
    f.kubelet.next_line.notify_one();
    let second = tokio::time::timeout(DEADLINE, lines.try_next()).await.context("second line")??;
    assert_eq!(second.as_deref(), Some("line 2"));
    let end = tokio::time::timeout(DEADLINE, lines.try_next()).await.context("end of the log")??;
    assert_eq!(end, None);
    Ok(())
}

#[tokio::test]
async fn bad_log_and_exec_requests_get_upstream_errors() -> Result<()> {
    let f = fixture().await?;
    let client = &f.cluster.client;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());

    let e = status(pods.logs("multi", &LogParams::default()).await.err().context("no container")?)?;
    assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
    assert_eq!(e.message, "a container name must be specified for pod multi, choose one of: [a b]");
    let unknown = LogParams { container: Some("x".into()), ..LogParams::default() };
    let e = status(pods.logs("p", &unknown).await.err().context("unknown container")?)?;
    assert_eq!((e.code, e.message.as_str()), (400, "container x is not valid for pod p"));
    let e = status(pods.logs("nope", &LogParams::default()).await.err().context("no pod")?)?;
    assert_eq!((e.code, e.message.as_str()), (404, "pods \"nope\" not found"));
    let e = status(
        get_text(client, "/api/v1/namespaces/default/pods/p/log?tailLines=-1")
            .await
            .err()
            .and_then(|e| e.downcast::<kube::Error>().ok())
            .context("negative tailLines")?,
    )?;
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message.contains("tailLines: Invalid value: -1: must be greater than or equal to 0"),
        "{}",
        e.message
    );

    // The kubelet's own 400 comes back as the Status of the log request.
    pods.create(&PostParams::default(), &pod("w", Some("n1"), &["waiting"])?).await?;
    let e = status(pods.logs("w", &LogParams::default()).await.err().context("waiting")?)?;
    assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
    assert_eq!(e.message, "container \"waiting\" in pod \"p\" is waiting to start: ContainerCreating");

    let exec = |path: &str| {
        let req = http::Request::post(path).body(Vec::new());
        async move { client.request_text(req?).await.map_err(anyhow::Error::from) }
    };
    let e = status(
        exec("/api/v1/namespaces/default/pods/p/exec?stdout=true")
            .await
            .err()
            .and_then(|e| e.downcast::<kube::Error>().ok())
            .context("exec without command")?,
    )?;
    assert_eq!((e.code, e.message.as_str()), (400, "you must specify at least 1 command"));
    let e = status(
        exec("/api/v1/namespaces/default/pods/multi/exec?command=sh")
            .await
            .err()
            .and_then(|e| e.downcast::<kube::Error>().ok())
            .context("exec without container")?,
    )?;
    assert_eq!(e.message, "a container name must be specified for pod multi, choose one of: [a b]");
    let e = status(
        exec("/api/v1/namespaces/default/pods/pending/exec?command=sh")
            .await
            .err()
            .and_then(|e| e.downcast::<kube::Error>().ok())
            .context("exec on a pod without a node")?,
    )?;
    assert_eq!((e.code, e.message.as_str()), (400, "pod pending does not have a host assigned"));
    let e = status(
        get_text(client, "/api/v1/namespaces/default/pods/p/proxy/")
            .await
            .err()
            .and_then(|e| e.downcast::<kube::Error>().ok())
            .context("proxy to a pod without an IP")?,
    )?;
    assert_eq!((e.code, e.message.as_str()), (400, "address not allowed"));
    Ok(())
}

#[tokio::test]
async fn without_a_kubelet_client_or_a_reachable_kubelet_the_error_says_so() -> Result<()> {
    let cluster = TestCluster::start().await?;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = closed.local_addr()?.port();
    drop(closed);
    add_node(&cluster.client, "n1", port).await?;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client.clone());
    pods.create(&PostParams::default(), &pod("p", Some("n1"), &["c"])?).await?;
    let e = status(pods.logs("p", &LogParams::default()).await.err().context("no kubelet client")?)?;
    assert_eq!((e.code, e.reason.as_str()), (503, "ServiceUnavailable"));
    assert!(e.message.contains("no kubelet client configured"), "{}", e.message);

    let dir = tempfile::tempdir()?;
    let pki = corten_pki::ensure(&corten_pki::PkiOptions::new(dir.path().join("tls")))?;
    let (cert, key) = pki.issue_client_cert("kube-apiserver-kubelet-client", &[], Duration::from_secs(60))?;
    let tls = Arc::new(pki.client_tls_config(&cert, &key)?);
    let cluster = TestCluster::start_with(
        ApiConfig { kubelet_tls: Some(tls), ..ApiConfig::default() },
        Identity::admin(),
    )
    .await?;
    add_node(&cluster.client, "n1", port).await?;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client.clone());
    pods.create(&PostParams::default(), &pod("p", Some("n1"), &["c"])?).await?;
    let e = status(pods.logs("p", &LogParams::default()).await.err().context("kubelet down")?)?;
    assert_eq!(e.code, 500);
    let want = format!("Get \"https://127.0.0.1:{port}/containerLogs/default/p/c\": ");
    assert!(e.message.starts_with(&want), "{}", e.message);
    Ok(())
}

/// Sends a raw HTTP/1.1 upgrade request to `addr`; returns the response head and the stream.
async fn upgrade(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
) -> Result<(String, tokio::net::TcpStream)> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: v4.channel.k8s.io\r\nAuthorization: Bearer secret\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await?;
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await? == 0 {
            bail!("the connection closed after {:?}", String::from_utf8_lossy(&response));
        }
        response.push(byte[0]);
    }
    Ok((String::from_utf8_lossy(&response).into_owned(), tcp))
}

async fn read_line(tcp: &mut tokio::net::TcpStream) -> Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        if tcp.read(&mut byte).await? == 0 {
            break;
        }
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

#[tokio::test]
async fn exec_attach_and_portforward_upgrade_through_to_the_kubelet() -> Result<()> {
    let f = fixture().await?;
    let addr = f.cluster.serve_http().await?;
    let cases = [
        (
            "POST",
            "/api/v1/namespaces/default/pods/p/exec?command=sh&command=-c&command=echo%20hi&stdin=true&stdout=true&stderr=true&tty=true",
            "POST /exec/default/p/c?command=sh&command=-c&command=echo%20hi&error=1&input=1&output=1&tty=1",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods/multi/attach?container=b&stdout=1",
            "GET /attach/default/multi/b?output=1",
        ),
        ("POST", "/api/v1/namespaces/default/pods/p/portforward?ports=8080&ports=9090", "POST /portForward/default/p?port=8080%2C9090"),
    ];
    for (method, path, want) in cases {
        let (head, mut tcp) = tokio::time::timeout(DEADLINE, upgrade(addr, method, path)).await??;
        assert!(head.starts_with("HTTP/1.1 101"), "{path}: {head}");
        assert!(head.to_ascii_lowercase().contains("upgrade: spdy/3.1"), "{head}");
        let echoed = tokio::time::timeout(DEADLINE, read_line(&mut tcp)).await??;
        assert_eq!(echoed, want);
        tcp.write_all(b"ping\n").await?;
        assert_eq!(tokio::time::timeout(DEADLINE, read_line(&mut tcp)).await??, "ping");
    }
    Ok(())
}

#[tokio::test]
async fn node_proxy_reaches_the_kubelet_with_the_rest_of_the_path() -> Result<()> {
    let f = fixture().await?;
    let text =
        get_text(&f.cluster.client, "/api/v1/nodes/n1/proxy/stats/summary?only_cpu_and_memory=true").await?;
    assert_eq!(text, "GET /stats/summary?only_cpu_and_memory=true");
    let text = get_text(&f.cluster.client, "/api/v1/nodes/n1/proxy").await?;
    assert_eq!(text, "GET /");
    Ok(())
}

#[tokio::test]
async fn discovery_lists_the_connect_subresources_with_upstream_verbs() -> Result<()> {
    let cluster = TestCluster::start().await?;
    let list = cluster.client.list_core_api_resources("v1").await?;
    let find = |name: &str| {
        list.resources.iter().find(|r| r.name == name).map(|r| (r.kind.clone(), r.verbs.clone()))
    };
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(find("pods/log"), Some(("Pod".into(), strings(&["get"]))));
    assert_eq!(find("pods/exec"), Some(("PodExecOptions".into(), strings(&["create", "get"]))));
    assert_eq!(find("pods/attach"), Some(("PodAttachOptions".into(), strings(&["create", "get"]))));
    assert_eq!(find("pods/portforward"), Some(("PodPortForwardOptions".into(), strings(&["create", "get"]))));
    let proxy = strings(&["create", "delete", "get", "patch", "update"]);
    assert_eq!(find("pods/proxy"), Some(("PodProxyOptions".into(), proxy.clone())));
    assert_eq!(find("nodes/proxy"), Some(("NodeProxyOptions".into(), proxy)));
    Ok(())
}
