//! The TLS ends of raft connections: an accept loop that hands tonic finished server handshakes,
//! and a connector that dials a peer (optionally from a chosen source address) and completes the
//! client handshake.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// How long a peer gets to complete its TLS handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The ALPN protocol gRPC runs on.
const ALPN_H2: &[u8] = b"h2";

/// `config` with "h2" among its ALPN protocols (added when absent).
pub(crate) fn server_config_with_h2(config: Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
    if config.alpn_protocols.iter().any(|p| p == ALPN_H2) {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols.push(ALPN_H2.to_vec());
    Arc::new(config)
}

/// `config` with "h2" among its ALPN protocols (added when absent).
pub(crate) fn client_config_with_h2(config: Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    if config.alpn_protocols.iter().any(|p| p == ALPN_H2) {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols.push(ALPN_H2.to_vec());
    Arc::new(config)
}

/// A server-side TLS connection, as tonic serves it.
pub(crate) type ServerStream = tokio_rustls::server::TlsStream<TcpStream>;

/// Accepts TCP connections on `listener` until `shutdown`, completes each TLS handshake on its own
/// task (a slow or hostile peer cannot stall the accept loop) and yields the finished streams.
/// Failed handshakes are logged and dropped.
pub(crate) fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> ReceiverStream<io::Result<ServerStream>> {
    let acceptor = TlsAcceptor::from(server_config_with_h2(config));
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "raft listener accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => tracing::warn!(%peer, %error, "raft tls handshake failed"),
                    Err(_) => tracing::warn!(%peer, "raft tls handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Dials `uri`'s host and port, from `source_ip` when set, and completes a TLS client handshake
/// that verifies the peer's certificate against the URI's host (a DNS name or an IP address).
pub(crate) async fn connect(
    uri: tonic::codegen::http::Uri,
    tls: TlsConnector,
    source_ip: Option<IpAddr>,
) -> io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} in {uri}"));
    let host = uri.host().ok_or_else(|| invalid("no host"))?;
    let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = ServerName::try_from(host.to_owned()).map_err(|_| invalid("invalid host name"))?;

    let mut last_error = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match dial(addr, source_ip).await {
            Ok(tcp) => {
                let stream = tls.connect(server_name, tcp).await?;
                return Ok(TokioIo::new(stream));
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| invalid("no address for host")))
}

/// Connects to `addr`, binding the local end to `source_ip` first when it is of the same family.
async fn dial(addr: SocketAddr, source_ip: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = source_ip.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use std::net::Ipv4Addr;

    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::network::testing::{NodeTls, TestPki};

    /// A listener on 127.0.0.1 whose accepted TLS streams echo one message back.
    async fn echo_server(
        tls: &NodeTls,
        shutdown: CancellationToken,
    ) -> (SocketAddr, mpsc::Receiver<SocketAddr>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut streams = incoming(listener, tls.server.clone(), shutdown);
        let (peers_tx, peers_rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(Ok(mut stream)) = streams.next().await {
                let _ = peers_tx.send(stream.get_ref().0.peer_addr().unwrap()).await;
                let mut buf = [0u8; 5];
                stream.read_exact(&mut buf).await.unwrap();
                stream.write_all(&buf).await.unwrap();
                stream.flush().await.unwrap();
            }
        });
        (addr, peers_rx)
    }

    fn uri(addr: SocketAddr) -> tonic::codegen::http::Uri {
        format!("http://{addr}").parse().unwrap()
    }

    #[tokio::test]
    async fn peers_with_certificates_from_the_same_ca_talk_over_h2() {
        let pki = TestPki::new().unwrap();
        let (server_tls, client_tls) = (pki.node("a").unwrap(), pki.node("b").unwrap());
        let shutdown = CancellationToken::new();
        let (addr, _peers) = echo_server(&server_tls, shutdown.clone()).await;

        let connector = TlsConnector::from(client_config_with_h2(client_tls.client));
        let io = connect(uri(addr), connector, None).await.unwrap();
        let mut stream = io.into_inner();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(ALPN_H2));
        stream.write_all(b"hello").await.unwrap();
        stream.flush().await.unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_client_without_a_certificate_is_rejected() {
        let pki = TestPki::new().unwrap();
        let server_tls = pki.node("a").unwrap();
        let shutdown = CancellationToken::new();
        let (addr, _peers) = echo_server(&server_tls, shutdown.clone()).await;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let anonymous = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(pki.roots())
            .with_no_client_auth();
        let attempt = async {
            let connector = TlsConnector::from(client_config_with_h2(Arc::new(anonymous)));
            let mut stream = connect(uri(addr), connector, None).await?.into_inner();
            // With TLS 1.3 the client learns of the rejection when it reads.
            stream.write_all(b"hello").await?;
            stream.flush().await?;
            let mut buf = [0u8; 5];
            stream.read_exact(&mut buf).await?;
            io::Result::Ok(())
        };
        assert!(attempt.await.is_err(), "a client without a certificate was served");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn outgoing_connections_use_the_configured_source_address() {
        let pki = TestPki::new().unwrap();
        let (server_tls, client_tls) = (pki.node("a").unwrap(), pki.node("b").unwrap());
        let shutdown = CancellationToken::new();
        let (addr, mut peers) = echo_server(&server_tls, shutdown.clone()).await;

        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 42));
        let connector = TlsConnector::from(client_config_with_h2(client_tls.client));
        let _io = connect(uri(addr), connector, Some(source)).await.unwrap();
        assert_eq!(peers.recv().await.unwrap().ip(), source);
        shutdown.cancel();
    }
}
