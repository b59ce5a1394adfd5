//! An upgrade-aware HTTP/1.1 reverse proxy, the Rust counterpart of upstream's
//! `UpgradeAwareHandler`: [`forward`] sends one request to a target URL and hands back the
//! answer with its body streamed (`kubectl logs -f`); when the target switches protocols
//! (`101`: SPDY or WebSocket for exec, attach and port-forward), the bytes of both upgraded
//! connections are copied both ways until either side closes.
//!
//! The API server uses it towards the kubelet (HTTPS with a client certificate) and the kubelet
//! towards the container runtime's streaming server (plain HTTP on loopback). This crate knows
//! HTTP only: it must not depend on kube, the API server, the kubelet or the store.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::debug;

/// How long connecting (TCP and TLS) to a target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1); they are
/// never forwarded, except `Connection` and `Upgrade` of an upgrade request and its `101`.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Why a request could not be forwarded. Every message names the target.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target is not an absolute `http` or `https` URL with a host.
    #[error("invalid proxy target {target}: {reason}")]
    BadTarget {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No TCP connection to the target.
    #[error("cannot connect to {target}")]
    Connect {
        /// The target URL.
        target: String,
        /// The socket error (`TimedOut` after 30 s).
        #[source]
        source: io::Error,
    },
    /// The TLS handshake with the target failed (e.g. its certificate is not trusted).
    #[error("tls handshake with {target} failed")]
    Tls {
        /// The target URL.
        target: String,
        /// What rustls said.
        #[source]
        source: io::Error,
    },
    /// The HTTP exchange with the target failed (connection closed, malformed answer).
    #[error("http request to {target} failed")]
    Http {
        /// The target URL.
        target: String,
        /// What hyper said.
        #[source]
        source: hyper::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Forwards `req` to `target` (its scheme, authority, path and query replace the request's;
/// method, headers and body are kept, minus hop-by-hop headers, but `Connection`/`Upgrade` and
/// the `Sec-WebSocket-*`/`X-Stream-Protocol-Version` headers are kept for upgrade requests). The
/// upstream response body is streamed. When upstream answers `101 Switching Protocols`, the 101
/// is returned to the caller and, once both sides are upgraded, bytes are copied both ways until
/// either side closes.
///
/// `tls` is the client configuration for `https` targets (its ALPN is forced to `http/1.1`);
/// `None` for an `https` target is a [`Error::BadTarget`]. Credentials of the incoming request
/// (`Authorization`, cookies) are forwarded as they are: callers that authenticated the request
/// themselves should remove them first. For the caller's side of an upgrade to work, `req` must
/// come from a hyper server connection served with upgrades (axum's `serve` does that).
pub async fn forward(
    mut req: Request<Body>,
    target: Uri,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Response<Body>> {
    let shown = target.to_string();
    let bad = |reason: &str| Error::BadTarget { target: shown.clone(), reason: reason.to_owned() };
    let https = match target.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(_) => return Err(bad("the scheme must be http or https")),
        None => return Err(bad("it is not an absolute URL")),
    };
    let authority = target.authority().ok_or_else(|| bad("it has no host"))?.clone();
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    if host.is_empty() {
        return Err(bad("it has no host"));
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tls = match (https, tls) {
        (true, None) => return Err(bad("https needs a TLS client configuration")),
        (true, Some(config)) => Some(config),
        (false, _) => None,
    };
    let path = target.path_and_query().map(|p| p.as_str()).filter(|p| !p.is_empty()).unwrap_or("/");
    let path: Uri = path.parse().map_err(|_| bad("its path is invalid"))?;

    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    let host_header = HeaderValue::from_str(authority.as_str()).map_err(|_| bad("its host is invalid"))?;
    headers.insert(header::HOST, host_header);
    *req.uri_mut() = path;
    *req.version_mut() = http::Version::HTTP_11;

    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))
        .map_err(|source| Error::Connect { target: shown.clone(), source })?;
    let _ = tcp.set_nodelay(true);
    let mut resp = if let Some(config) = tls {
        let name =
            ServerName::try_from(host.clone()).map_err(|_| bad("its host is not a valid TLS server name"))?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls_connector(config).connect(name, tcp))
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "tls handshake timed out")))
            .map_err(|source| Error::Tls { target: shown.clone(), source })?;
        exchange(stream, req, &shown).await?
    } else {
        exchange(tcp, req, &shown).await?
    };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let target = shown.clone();
        tokio::spawn(async move {
            let Some(client_upgrade) = client_upgrade else {
                debug!(target = %target, "the target switched protocols for a request that did not ask to");
                return;
            };
            let (client, upstream) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok(both) => both,
                Err(e) => {
                    debug!(error = %e, target = %target, "upgrading the proxied connection failed");
                    return;
                }
            };
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                Ok((sent, received)) => debug!(target = %target, sent, received, "upgraded stream closed"),
                Err(e) => debug!(error = %e, target = %target, "upgraded stream ended with an error"),
            }
        });
        let (parts, _) = resp.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Sends `req` over a fresh HTTP/1.1 connection on `io`; the connection is driven by a task
/// that lives as long as the response body or the upgraded stream.
async fn exchange<IO>(io: IO, req: Request<Body>, target: &str) -> Result<Response<Incoming>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |source| Error::Http { target: target.to_owned(), source };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(http)?;
    let shown = target.to_owned();
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, target = %shown, "proxied connection failed");
        }
    });
    sender.send_request(req).await.map_err(http)
}

fn tls_connector(config: Arc<rustls::ClientConfig>) -> tokio_rustls::TlsConnector {
    let config = if config.alpn_protocols.iter().all(|p| p == b"http/1.1") {
        config
    } else {
        let mut c = (*config).clone();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    };
    tokio_rustls::TlsConnector::from(config)
}

/// True when `Connection` lists `upgrade` and an `Upgrade` header names the protocol.
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers and those `Connection` names; an upgrade keeps `Connection` and
/// `Upgrade` (and every header `Connection` lists, as upstream does).
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if upgrade {
        for name in HOP_BY_HOP.iter().filter(|h| **h != header::CONNECTION && **h != header::UPGRADE) {
            headers.remove(name);
        }
        return;
    }
    let listed: Vec<HeaderName> =
        connection_tokens(headers).filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok()).collect();
    for name in HOP_BY_HOP.iter().chain(listed.iter()) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn an_upgrade_needs_both_connection_upgrade_and_an_upgrade_header() {
        assert!(is_upgrade(&headers(&[("connection", "keep-alive, Upgrade"), ("upgrade", "SPDY/3.1")])));
        assert!(!is_upgrade(&headers(&[("connection", "keep-alive"), ("upgrade", "SPDY/3.1")])));
        assert!(!is_upgrade(&headers(&[("connection", "upgrade")])));
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_but_an_upgrade_keeps_its_own() {
        let mut h = headers(&[
            ("connection", "Upgrade, x-private"),
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "v4.channel.k8s.io"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("accept", "*/*"),
        ]);
        let mut plain = h.clone();
        strip_hop_by_hop(&mut h, true);
        for kept in ["connection", "upgrade", "sec-websocket-protocol", "x-stream-protocol-version", "accept"]
        {
            assert!(h.contains_key(kept), "{kept} must be kept");
        }
        assert!(!h.contains_key("keep-alive"));
        strip_hop_by_hop(&mut plain, false);
        let mut left: Vec<&str> = plain.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "sec-websocket-protocol", "x-stream-protocol-version"]);
    }

    #[tokio::test]
    async fn bad_targets_are_refused_with_the_target_in_the_message() {
        for (target, reason) in [
            ("ftp://example.com/x", "the scheme must be http or https"),
            ("/relative", "it is not an absolute URL"),
            ("https://127.0.0.1:1/x", "https needs a TLS client configuration"),
        ] {
            let req = Request::new(Body::empty());
            let target_uri: Uri = target.parse().unwrap();
            let err = match forward(req, target_uri, None).await {
                Err(e) => e.to_string(),
                Ok(r) => panic!("{target}: answered {}", r.status()),
            };
            assert_eq!(err, format!("invalid proxy target {target}: {reason}"));
        }
    }
}
