//! Throwaway mutual-TLS material for tests: a fresh CA and node certificates valid for
//! `127.0.0.1` and `localhost`, turned into the rustls configs the raft network takes.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// What can go wrong making test certificates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("generating a certificate")]
    Rcgen(#[from] rcgen::Error),
    #[error("building a tls config")]
    Rustls(#[from] rustls::Error),
    #[error("building the client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Both ends of one node's mutual TLS.
#[derive(Debug, Clone)]
pub struct NodeTls {
    /// Presents the node's certificate; requires a client certificate from the test CA.
    pub server: Arc<ServerConfig>,
    /// Trusts the test CA; presents the node's certificate as its client certificate.
    pub client: Arc<ClientConfig>,
}

/// A throwaway certificate authority.
pub struct TestPki {
    ca: CertifiedIssuer<'static, KeyPair>,
    roots: Arc<RootCertStore>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

impl TestPki {
    /// A new CA with a fresh key.
    pub fn new() -> Result<Self, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, "corten test ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone())?;
        Ok(TestPki { ca, roots: Arc::new(roots) })
    }

    /// The CA certificate as a root store (to build configs of your own).
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }

    /// TLS configs for a node named `name`, its certificate valid for `127.0.0.1` and `localhost`
    /// as both server and client.
    pub fn node(&self, name: &str) -> Result<NodeTls, Error> {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let key_der = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone()).build()?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key_der())?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(chain, key_der())?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(NodeTls { server: Arc::new(server), client: Arc::new(client) })
    }
}
