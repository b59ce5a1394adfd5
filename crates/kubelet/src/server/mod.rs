//! The kubelet's HTTPS API (upstream's `:10250`): `/healthz`, container logs and the streaming
//! endpoints (exec, attach, port-forward), which the API server proxies `pods/log`,
//! `pods/exec`, `pods/attach` and `pods/portforward` to.
//!
//! Authentication is mutual TLS: the handshake requires a client certificate chained to
//! [`ServerSettings::client_ca_pem`]. Authorization: every verified client may use every
//! endpoint (upstream delegates to a SubjectAccessReview of `nodes/proxy` and friends; that
//! comes with webhook authorization). Streams are not interpreted here: exec, attach and
//! port-forward ask the runtime for a streaming URL and proxy the (SPDY or WebSocket) upgrade
//! to it, so the runtime's streaming server negotiates the protocol with the client.

mod logs;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use corten_cri::Runtime;
use http::{header, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::{Config, Error, Result};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and with which credentials the kubelet serves its HTTPS API.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The listen address, `0.0.0.0:10250` upstream; port 0 picks a free port (reported in the
    /// Node's `status.daemonEndpoints.kubeletEndpoint`).
    pub address: SocketAddr,
    /// The serving certificate (PEM, leaf first), signed by the cluster CA.
    pub cert_pem: String,
    /// The serving certificate's private key (PEM).
    pub key_pem: String,
    /// Clients must present a certificate chained to this CA (PEM).
    pub client_ca_pem: String,
}

/// The bound listener, before serving.
pub(crate) struct Listener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    /// The bound address (the real port when the settings asked for 0).
    pub(crate) address: SocketAddr,
}

/// What the handlers share.
pub(crate) struct Shared<R> {
    pub(crate) client: kube::Client,
    pub(crate) runtime: R,
    pub(crate) config: Config,
    pub(crate) shutdown: CancellationToken,
}

/// Builds the TLS configuration and binds the address.
pub(crate) async fn bind(settings: &ServerSettings) -> Result<Listener> {
    let tls = corten_pki::mtls_server_config(&settings.cert_pem, &settings.key_pem, &settings.client_ca_pem)
        .map_err(Error::ServerTls)?;
    let listen = |source| Error::Listen { address: settings.address, source };
    let tcp = TcpListener::bind(settings.address).await.map_err(listen)?;
    let address = tcp.local_addr().map_err(listen)?;
    Ok(Listener { tcp, acceptor: TlsAcceptor::from(Arc::new(tls)), address })
}

/// Serves the API until `shared.shutdown` is cancelled; each connection is one task.
pub(crate) async fn serve<R: Runtime>(listener: Listener, shared: Arc<Shared<R>>) {
    let shutdown = shared.shutdown.clone();
    let app = router(shared);
    info!(address = %listener.address, "serving the kubelet API");
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    debug!(error = %e, "accepting a kubelet API connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, app, shutdown) = (listener.acceptor.clone(), app.clone(), shutdown.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    debug!(error = %e, %peer, "kubelet API TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "kubelet API TLS handshake timed out");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            tokio::select! {
                _ = shutdown.cancelled() => {}
                done = conn => if let Err(e) = done {
                    debug!(error = %e, %peer, "kubelet API connection failed");
                },
            }
        });
    }
}

fn router<R: Runtime>(shared: Arc<Shared<R>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/containerLogs/{namespace}/{pod}/{container}", get(logs::container_logs::<R>))
        .route("/exec/{namespace}/{pod}/{container}", get(stream::exec::<R>).post(stream::exec::<R>))
        .route(
            "/exec/{namespace}/{pod}/{uid}/{container}",
            get(stream::exec_uid::<R>).post(stream::exec_uid::<R>),
        )
        .route("/attach/{namespace}/{pod}/{container}", get(stream::attach::<R>).post(stream::attach::<R>))
        .route(
            "/attach/{namespace}/{pod}/{uid}/{container}",
            get(stream::attach_uid::<R>).post(stream::attach_uid::<R>),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            get(stream::port_forward::<R>).post(stream::port_forward::<R>),
        )
        .route(
            "/portForward/{namespace}/{pod}/{uid}",
            get(stream::port_forward_uid::<R>).post(stream::port_forward_uid::<R>),
        )
        .with_state(shared)
}

/// A plain-text answer (upstream's kubelet writes its errors as text).
pub(super) fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(Body::from(message.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// A refused request: its status and plain-text message.
#[derive(Debug)]
pub(super) struct Reject {
    status: StatusCode,
    message: String,
}

impl Reject {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Reject {
        Reject { status, message: message.into() }
    }

    #[cfg(test)]
    pub(super) fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<Reject> for Response<Body> {
    fn from(r: Reject) -> Response<Body> {
        text(r.status, r.message)
    }
}

/// The query's `(name, value)` pairs in order, percent- and `+`-decoded; repeated names repeat.
pub(super) fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    let decode =
        |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The pod `namespace/name` when it is bound to this node (and has `uid`, when given);
/// otherwise the answer to send.
pub(super) async fn find_pod<R>(
    shared: &Shared<R>,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
    not_found: impl FnOnce() -> String,
) -> std::result::Result<Pod, Reject> {
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), namespace);
    let pod = pods.get_opt(name).await.map_err(|e| {
        Reject::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read pod {namespace}/{name}: {e}"))
    })?;
    match pod {
        Some(p)
            if p.spec.as_ref().and_then(|s| s.node_name.as_deref())
                == Some(shared.config.node_name.as_str())
                && uid.is_none_or(|u| p.metadata.uid.as_deref() == Some(u)) =>
        {
            Ok(p)
        }
        _ => Err(Reject::new(StatusCode::NOT_FOUND, not_found())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode_and_keep_repeated_names() {
        let uri: Uri = "/exec/a/b/c?command=sh&command=-c&command=echo+hi%21&input=1&tty".parse().unwrap();
        let pairs = query_pairs(&uri);
        let get = |k: &str| pairs.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        assert_eq!(get("command"), ["sh", "-c", "echo hi!"]);
        assert_eq!(get("input"), ["1"]);
        assert_eq!(get("tty"), [""]);
    }
}
