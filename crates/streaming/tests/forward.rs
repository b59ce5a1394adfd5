//! `forward` end to end: a client talks to an axum proxy whose handler forwards to a small
//! hyper upstream (plain and TLS) that streams a chunked body or echoes after a 101 upgrade.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex};

/// Every step of a test must finish within this (a buffering proxy would hang).
const DEADLINE: Duration = Duration::from_secs(10);

/// What the upstream serves; `release` lets `/chunks` send its second chunk.
#[derive(Clone)]
struct Upstream {
    release: Arc<Mutex<mpsc::Receiver<()>>>,
}

async fn upstream_handler(up: Upstream, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let headers = req.headers().clone();
    let seen = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    let resp = match req.uri().path() {
        "/echo" if seen("upgrade") == "test-echo" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "Upgrade")
                .header("upgrade", "test-echo")
                .header("x-stream-protocol-version", seen("x-stream-protocol-version"))
                .body(Body::empty())
        }
        "/echo" => Response::builder().status(StatusCode::BAD_REQUEST).body(Body::from("unable to upgrade")),
        "/chunks" => {
            let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
            let release = up.release.clone();
            tokio::spawn(async move {
                let _ = tx.send(Ok(Bytes::from("first\n"))).await;
                release.lock().await.recv().await;
                let _ = tx.send(Ok(Bytes::from("second\n"))).await;
            });
            let stream =
                futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
            Response::builder()
                .header("x-seen-host", seen("host"))
                .header("x-seen-keep-alive", seen("keep-alive"))
                .header("x-seen-query", req.uri().query().unwrap_or("-"))
                .header("x-seen-method", req.method().as_str())
                .body(Body::from_stream(stream))
        }
        _ => Response::builder().status(StatusCode::NOT_FOUND).body(Body::empty()),
    };
    Ok(resp.unwrap_or_default())
}

async fn serve_upstream_conn<IO>(io: IO, up: Upstream)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| upstream_handler(up.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
}

/// Starts the upstream (TLS when `tls` is given); returns its address and the chunk release.
async fn start_upstream(tls: Option<rustls::ServerConfig>) -> Result<(SocketAddr, mpsc::Sender<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (release_tx, release_rx) = mpsc::channel(4);
    let up = Upstream { release: Arc::new(Mutex::new(release_rx)) };
    let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (up, acceptor) = (up.clone(), acceptor.clone());
            tokio::spawn(async move {
                match acceptor {
                    Some(a) => {
                        if let Ok(tls) = a.accept(tcp).await {
                            serve_upstream_conn(tls, up).await;
                        }
                    }
                    None => serve_upstream_conn(tcp, up).await,
                }
            });
        }
    });
    Ok((addr, release_tx))
}

/// Starts the proxy: every request goes to `base` + its path and query.
async fn start_proxy(base: String, tls: Option<Arc<rustls::ClientConfig>>) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let (base, tls) = (base.clone(), tls.clone());
        async move {
            let pq = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
            let target: Uri = match format!("{base}{pq}").parse() {
                Ok(t) => t,
                Err(e) => {
                    return Response::builder()
                        .status(500)
                        .body(Body::from(e.to_string()))
                        .unwrap_or_default()
                }
            };
            match corten_streaming::forward(req, target, tls).await {
                Ok(resp) => resp,
                Err(e) => Response::builder().status(502).body(Body::from(e.to_string())).unwrap_or_default(),
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// A fresh HTTP/1.1 client connection to `addr`.
async fn client(addr: SocketAddr) -> Result<hyper::client::conn::http1::SendRequest<Body>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn.with_upgrades());
    Ok(sender)
}

async fn within<T, E>(what: &str, f: impl std::future::Future<Output = Result<T, E>>) -> Result<T>
where
    E: Into<anyhow::Error>,
{
    match tokio::time::timeout(DEADLINE, f).await {
        Ok(r) => r.map_err(Into::into).with_context(|| what.to_owned()),
        Err(_) => bail!("{what}: no answer within {DEADLINE:?}"),
    }
}

async fn next_chunk(body: &mut Incoming) -> Result<Bytes> {
    loop {
        match body.frame().await {
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    return Ok(data);
                }
            }
            None => bail!("the body ended"),
        }
    }
}

async fn streams_a_chunked_body(proxy: SocketAddr, release: mpsc::Sender<()>, host: &str) -> Result<()> {
    let mut c = client(proxy).await?;
    let req = Request::post("/chunks?follow=true")
        .header("host", "proxy.example")
        .header("connection", "keep-alive")
        .header("keep-alive", "timeout=5")
        .body(Body::empty())?;
    let resp = within("the streamed response", c.send_request(req)).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(header("x-seen-host"), host, "the target's authority is the Host");
    assert_eq!(header("x-seen-keep-alive"), "-", "hop-by-hop headers are not forwarded");
    assert_eq!(header("x-seen-query"), "follow=true");
    assert_eq!(header("x-seen-method"), "POST");
    let mut body = resp.into_body();
    // The second chunk is only sent once the first one arrived: a buffering proxy hangs here.
    assert_eq!(within("the first chunk", next_chunk(&mut body)).await?, "first\n");
    release.send(()).await?;
    assert_eq!(within("the second chunk", next_chunk(&mut body)).await?, "second\n");
    assert!(within("the end of the body", async { anyhow::Ok(body.frame().await.is_none()) }).await?);
    Ok(())
}

async fn echoes_after_an_upgrade(proxy: SocketAddr) -> Result<()> {
    let mut c = client(proxy).await?;
    let req = Request::get("/echo")
        .header("connection", "Upgrade")
        .header("upgrade", "test-echo")
        .header("x-stream-protocol-version", "v4.channel.k8s.io")
        .body(Body::empty())?;
    let mut resp = within("the 101", c.send_request(req)).await?;
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(header("upgrade"), "test-echo");
    assert_eq!(header("x-stream-protocol-version"), "v4.channel.k8s.io");
    let upgraded = within("the client upgrade", hyper::upgrade::on(&mut resp)).await?;
    let mut io = TokioIo::new(upgraded);
    for msg in [&b"ping"[..], b"a second message"] {
        io.write_all(msg).await?;
        let mut buf = vec![0u8; msg.len()];
        within("the echo", io.read_exact(&mut buf)).await?;
        assert_eq!(buf, msg);
    }
    Ok(())
}

#[tokio::test]
async fn a_chunked_body_is_streamed_chunk_by_chunk() -> Result<()> {
    let (upstream, release) = start_upstream(None).await?;
    let proxy = start_proxy(format!("http://{upstream}"), None).await?;
    streams_a_chunked_body(proxy, release, &upstream.to_string()).await
}

#[tokio::test]
async fn bytes_flow_both_ways_after_the_upstream_switches_protocols() -> Result<()> {
    let (upstream, _release) = start_upstream(None).await?;
    let proxy = start_proxy(format!("http://{upstream}"), None).await?;
    echoes_after_an_upgrade(proxy).await
}

#[tokio::test]
async fn a_refused_upgrade_is_passed_through_with_its_status_and_body() -> Result<()> {
    let (upstream, _release) = start_upstream(None).await?;
    let proxy = start_proxy(format!("http://{upstream}"), None).await?;
    let mut c = client(proxy).await?;
    let req = Request::get("/echo")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-protocol", "v5.channel.k8s.io")
        .body(Body::empty())?;
    let resp = within("the refusal", c.send_request(req)).await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = within("the body", async { anyhow::Ok(resp.into_body().collect().await?.to_bytes()) }).await?;
    assert_eq!(body, "unable to upgrade");
    Ok(())
}

#[tokio::test]
async fn https_targets_are_verified_and_can_be_addressed_by_ip() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = corten_pki::ensure(&corten_pki::PkiOptions::new(tmp.path().join("tls")))?;
    let (upstream, release) = start_upstream(Some(pki.server_tls_config()?)).await?;
    let trusted = Arc::new(corten_pki::client_tls_config(pki.ca_cert_pem(), None)?);
    let proxy = start_proxy(format!("https://{upstream}"), Some(trusted)).await?;
    streams_a_chunked_body(proxy, release, &upstream.to_string()).await?;
    echoes_after_an_upgrade(proxy).await?;

    let other_tmp = tempfile::tempdir()?;
    let other = corten_pki::ensure(&corten_pki::PkiOptions::new(other_tmp.path().join("tls")))?;
    let untrusted = Arc::new(corten_pki::client_tls_config(other.ca_cert_pem(), None)?);
    let target: Uri = format!("https://{upstream}/chunks").parse()?;
    let err = match corten_streaming::forward(Request::new(Body::empty()), target, Some(untrusted)).await {
        Err(e) => e,
        Ok(r) => bail!("an untrusted server answered {}", r.status()),
    };
    assert!(matches!(err, corten_streaming::Error::Tls { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("tls handshake with https://{upstream}/chunks failed"));
    Ok(())
}

#[tokio::test]
async fn an_unreachable_target_is_a_connect_error_naming_it() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    let target: Uri = format!("http://{addr}/exec/abc").parse()?;
    let err = match corten_streaming::forward(Request::new(Body::empty()), target, None).await {
        Err(e) => e,
        Ok(r) => bail!("a closed port answered {}", r.status()),
    };
    assert_eq!(err.to_string(), format!("cannot connect to http://{addr}/exec/abc"));
    Ok(())
}
