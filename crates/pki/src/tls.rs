//! rustls configurations for the API server and its in-process clients, on the `ring` provider.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::{ClusterPki, Error, Result};

/// ALPN protocols the API server offers, most preferred first.
const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ClusterPki {
    /// The API server's TLS configuration: the serving certificate, ALPN `h2` and `http/1.1`, and
    /// client certificates optional but, when presented, verified against the cluster CA.
    ///
    /// After the handshake, `peer_certificates()` is `Some` only for a verified client certificate;
    /// pass its first entry to [`identity_from_cert`](crate::identity_from_cert). Anonymous and
    /// bearer-token clients connect without one.
    pub fn server_tls_config(&self) -> Result<ServerConfig> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.ca_roots()?), provider.clone())
                .allow_unauthenticated()
                .build()?;
        let chain = cert_chain(self.serving_cert_pem(), "serving certificate")?;
        let key = private_key(&self.serving.key_pem, "serving key")?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// A client configuration that trusts only the cluster CA and presents `cert_pem`/`key_pem`
    /// (e.g. the embedded kubelet's node credential). See [`client_tls_config`].
    pub fn client_tls_config(&self, cert_pem: &str, key_pem: &str) -> Result<ClientConfig> {
        client_tls_config(self.ca_cert_pem(), Some((cert_pem, key_pem)))
    }

    fn ca_roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.cert_der.clone())?;
        Ok(roots)
    }
}

/// A client configuration that trusts only `ca_pem` and presents `client` = `(cert PEM, key PEM)`
/// when given. For processes that hold the CA but not the whole PKI, such as a joining agent.
///
/// No ALPN protocols are set: the HTTP client adds the ones it speaks (hyper-rustls does), and
/// offering `h2` to a client that only speaks HTTP/1.1 would break it.
pub fn client_tls_config(ca_pem: &str, client: Option<(&str, &str)>) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in cert_chain(ca_pem, "ca certificate")? {
        roots.add(cert)?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match client {
        Some((cert_pem, key_pem)) => builder.with_client_auth_cert(
            cert_chain(cert_pem, "client certificate")?,
            private_key(key_pem, "client key")?,
        )?,
        None => builder.with_no_client_auth(),
    })
}

/// A server configuration presenting `cert_pem`/`key_pem` (e.g. a kubelet's serving certificate)
/// that requires every client to present a certificate chained to `client_ca_pem`: the
/// handshake fails without one. ALPN `http/1.1` only, since the connections it serves get
/// upgraded (SPDY, WebSocket).
pub fn mtls_server_config(cert_pem: &str, key_pem: &str, client_ca_pem: &str) -> Result<ServerConfig> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for cert in cert_chain(client_ca_pem, "client ca certificate")? {
        roots.add(cert)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            cert_chain(cert_pem, "serving certificate")?,
            private_key(key_pem, "serving key")?,
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn cert_chain(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidPem { what, reason: e.to_string() })?;
    if chain.is_empty() {
        return Err(Error::InvalidPem { what, reason: "it holds no certificate".to_owned() });
    }
    Ok(chain)
}

fn private_key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| Error::InvalidPem { what, reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ensure, identity_from_cert, PkiOptions};
    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::{ServerName, UnixTime};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    fn pki() -> (tempfile::TempDir, ClusterPki) {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure(&PkiOptions::new(tmp.path().join("tls"))).unwrap();
        (tmp, pki)
    }

    #[test]
    fn the_serving_certificate_verifies_for_service_names_and_loopback_only() {
        let (_tmp, pki) = pki();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(pki.ca_roots().unwrap()), provider())
                .build()
                .unwrap();
        let leaf = cert_chain(pki.serving_cert_pem(), "serving").unwrap().remove(0);
        let check = |name: &str| {
            let name = ServerName::try_from(name.to_owned()).unwrap();
            verifier.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
        };
        for name in ["kubernetes.default.svc", "kubernetes", "localhost", "127.0.0.1", "::1", "10.43.0.1"] {
            check(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(check("example.com").is_err());
        assert!(check("192.0.2.99").is_err());
    }

    #[test]
    fn an_issued_serving_certificate_verifies_for_its_names_only() {
        let (_tmp, pki) = pki();
        let names = vec!["node-1".to_owned(), "10.1.2.3".to_owned(), "127.0.0.1".to_owned()];
        let (cert, _key) = pki.issue_serving_cert("node-1", &names, Duration::from_secs(3600)).unwrap();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(pki.ca_roots().unwrap()), provider())
                .build()
                .unwrap();
        let leaf = cert_chain(&cert, "serving").unwrap().remove(0);
        let check = |name: &str| {
            let name = ServerName::try_from(name.to_owned()).unwrap();
            verifier.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
        };
        for name in ["node-1", "10.1.2.3", "127.0.0.1"] {
            check(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(check("node-2").is_err());
        assert!(pki
            .issue_serving_cert("node-1", &["not a name".to_owned()], Duration::from_secs(1))
            .is_err());
        assert!(crate::host_sans().contains(&"127.0.0.1".to_owned()));
    }

    async fn handshake(
        server: &ServerConfig,
        client: ClientConfig,
    ) -> std::io::Result<(Option<Vec<u8>>, Option<Vec<u8>>)> {
        let acceptor = TlsAcceptor::from(Arc::new(server.clone()));
        let connector = TlsConnector::from(Arc::new(client));
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from("kubernetes.default.svc").unwrap();
        let (client, server) = tokio::join!(connector.connect(name, client_io), acceptor.accept(server_io));
        let (mut client, mut server) = (client?, server?);
        client.write_all(b"ping").await?;
        client.flush().await?;
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        let (_, session) = server.get_ref();
        let peer = session.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
        Ok((peer, session.alpn_protocol().map(<[u8]>::to_vec)))
    }

    #[tokio::test]
    async fn a_client_with_the_admin_certificate_is_seen_as_system_admin() {
        let (_tmp, pki) = pki();
        let client = pki.client_tls_config(pki.admin_cert_pem(), pki.admin_key_pem()).unwrap();
        let (peer, _) = handshake(&pki.server_tls_config().unwrap(), client).await.unwrap();
        let identity = identity_from_cert(&peer.expect("the server sees the client certificate")).unwrap();
        assert_eq!(
            (identity.user.as_str(), identity.groups),
            ("system:admin", vec!["system:masters".to_owned()])
        );
    }

    #[tokio::test]
    async fn a_client_without_a_certificate_still_connects() {
        let (_tmp, pki) = pki();
        let client = client_tls_config(pki.ca_cert_pem(), None).unwrap();
        let (peer, alpn) = handshake(&pki.server_tls_config().unwrap(), client).await.unwrap();
        assert!(peer.is_none());
        assert!(alpn.is_none());
    }

    #[tokio::test]
    async fn the_server_negotiates_h2_when_the_client_offers_it() {
        let (_tmp, pki) = pki();
        let mut client = client_tls_config(pki.ca_cert_pem(), None).unwrap();
        client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let (_, alpn) = handshake(&pki.server_tls_config().unwrap(), client).await.unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    }

    #[tokio::test]
    async fn a_client_certificate_from_another_ca_is_refused() {
        let (_tmp, pki) = pki();
        let (_other_tmp, other) = self::pki();
        let client =
            client_tls_config(pki.ca_cert_pem(), Some((other.admin_cert_pem(), other.admin_key_pem())))
                .unwrap();
        assert!(handshake(&pki.server_tls_config().unwrap(), client).await.is_err());
    }

    #[tokio::test]
    async fn an_mtls_server_requires_a_client_certificate_of_its_ca() {
        let (_tmp, pki) = pki();
        let names = vec!["kubernetes.default.svc".to_owned()];
        let (cert, key) = pki.issue_serving_cert("node-1", &names, Duration::from_secs(3600)).unwrap();
        let server = mtls_server_config(&cert, &key, pki.ca_cert_pem()).unwrap();
        let client = pki.client_tls_config(pki.admin_cert_pem(), pki.admin_key_pem()).unwrap();
        let (peer, _) = handshake(&server, client).await.unwrap();
        assert!(peer.is_some());
        let anonymous = client_tls_config(pki.ca_cert_pem(), None).unwrap();
        assert!(handshake(&server, anonymous).await.is_err());
    }

    #[test]
    fn pem_without_a_certificate_is_a_clear_error() {
        let err = client_tls_config("garbage", None).unwrap_err().to_string();
        assert_eq!(err, "invalid ca certificate: it holds no certificate");
    }
}
