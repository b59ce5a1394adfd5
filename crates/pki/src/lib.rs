//! The cluster PKI of Corten's API server.
//!
//! [`ensure`] creates, on first start, and afterwards loads and repairs the cluster's key material
//! in `<data-dir>/tls` (names in [`files`]):
//!
//! | file | what | lifetime |
//! |---|---|---|
//! | `ca.crt`, `ca.key` | cluster CA, ECDSA P-256, CN `corten-ca` | 10 years, never replaced |
//! | `serving.crt`, `serving.key` | API serving certificate (service names, host names and addresses, `--tls-san`) | 1 year |
//! | `admin.crt`, `admin.key` | client certificate `system:admin` in `system:masters` | 1 year |
//! | `sa.key`, `sa.pub` | service-account token signing key (ES256) | never replaced |
//!
//! The CA and the service-account key cannot be re-created without invalidating every credential
//! in the cluster, so they are only generated into a directory holding none of them; if some but
//! not all exist, [`ensure`] refuses to start and says which file is missing. Leaves are disposable:
//! a missing leaf, one that expires within 90 days, one that lacks a SAN now required, or one not
//! signed by the current CA is re-issued from the same CA. Private keys are mode 0600 and every
//! file is replaced atomically.
//!
//! [`ClusterPki`] then builds the rustls configurations (optional client certificates, so anonymous
//! and bearer-token clients still connect), issues client certificates (node credentials),
//! and hands out [`ServiceAccountTokens`]; [`identity_from_cert`] maps a verified peer certificate to
//! a user and groups; [`write_kubeconfig`] writes a kubeconfig for a client certificate.
//!
//! Crypto is `ring` everywhere (rustls, rcgen, x509-parser and tokens); nothing may pull in
//! aws-lc. Service-account tokens are a small hand-written ES256 JWS (on `ring` and
//! `base64`) rather than `jsonwebtoken`: one algorithm, no algorithm negotiation to get wrong, and no
//! second JSON/crypto stack in the tree.
//!
//! This crate is synchronous file and crypto code: it must not depend on the store, the API server,
//! kube or tokio (tokio and tokio-rustls are dev-dependencies for the handshake test only).

mod cert;
mod der;
mod ensure;
pub mod files;
mod kubeconfig;
mod sans;
mod tls;
pub mod token;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use cert::identity_from_cert;
pub use ensure::ensure;
pub use kubeconfig::{kubeconfig_yaml, write_kubeconfig};
pub use tls::{client_tls_config, mtls_server_config};
pub use token::{KubernetesClaims, ObjectRef, ServiceAccountTokens, TokenClaims, TokenError, DEFAULT_ISSUER};

/// The first address of the default service CIDR (10.43.0.0/16), the `kubernetes` Service's IP.
pub const DEFAULT_SERVICE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1));

/// Errors of the cluster PKI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was attempted ("read", "create", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file that cannot be re-created without breaking the cluster is missing.
    #[error("{} is missing: {hint}", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// What the operator should do.
        hint: &'static str,
    },
    /// A file exists but does not hold what it should.
    #[error("{} is not a valid {what} ({reason}): {hint}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the file should hold.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
        /// What the operator should do.
        hint: &'static str,
    },
    /// A `--tls-san` value is neither an IP address nor a DNS name.
    #[error("invalid tls san {0:?}: use a DNS name or an IP address")]
    InvalidSan(String),
    /// A certificate validity reaches past what X.509 can express.
    #[error("certificate validity of {0:?} is too long: use at most a few decades")]
    Validity(Duration),
    /// Generating a key pair failed (the system random source is broken).
    #[error("cannot generate an ecdsa p-256 key pair")]
    KeyGeneration(#[source] rcgen::Error),
    /// Signing a certificate failed.
    #[error("cannot issue a certificate for {subject:?}")]
    Issue {
        /// The subject common name.
        subject: String,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },
    /// A certificate could not be encoded (a bug: the generated DER had an unexpected shape).
    #[error("cannot encode a certificate: {0}")]
    Encoding(&'static str),
    /// A client certificate does not carry a usable identity.
    #[error("cannot read the identity of a client certificate: {0}")]
    ClientCertificate(String),
    /// PEM passed to this crate by a caller could not be used.
    #[error("invalid {what}: {reason}")]
    InvalidPem {
        /// What the PEM should have held.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls rejected the certificates or keys of a TLS configuration.
    #[error("cannot build the tls configuration")]
    Tls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the cluster CA.
    #[error("cannot build the client certificate verifier from the cluster ca")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
    /// The kubeconfig could not be serialized.
    #[error("cannot serialize the kubeconfig")]
    Kubeconfig(#[source] serde_yaml::Error),
    /// A service-account token operation failed.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do about a bad root file (CA or service-account key).
const ROOT_HINT: &str = "restore the tls directory from a backup; only for a new cluster, remove the whole \
     tls directory so a new cluster ca is created (every node and credential must then be re-created)";
/// What to do about a bad leaf file.
const LEAF_HINT: &str =
    "delete this certificate and its key file; both are re-issued from the cluster ca on \
     the next start";

/// The operator advice for a problem with `path`.
pub(crate) fn hint_for(path: &Path) -> &'static str {
    match path.file_name().and_then(|n| n.to_str()) {
        Some(files::CA_CERT | files::CA_KEY | files::SA_KEY) => ROOT_HINT,
        _ => LEAF_HINT,
    }
}

/// Where the PKI lives and what the serving certificate must cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiOptions {
    /// The directory of the key material, `<data-dir>/tls`; created (mode 0700) when missing.
    pub dir: PathBuf,
    /// Extra serving-certificate SANs (`--tls-san`): DNS names (wildcards allowed) or IP addresses.
    pub extra_sans: Vec<String>,
    /// The `kubernetes` Service's cluster IP, the first address of the service CIDR.
    pub service_ip: IpAddr,
}

impl PkiOptions {
    /// Options for `dir` with no extra SANs and the [`DEFAULT_SERVICE_IP`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PkiOptions { dir: dir.into(), extra_sans: Vec::new(), service_ip: DEFAULT_SERVICE_IP }
    }
}

/// The Kubernetes user a client certificate authenticates as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject common name, e.g. `system:node:worker-1`.
    pub user: String,
    /// Every subject organization, e.g. `["system:nodes"]`.
    pub groups: Vec<String>,
}

/// The loaded cluster PKI: the CA with its key, the serving and admin credentials and the
/// service-account token signer. Built by [`ensure`].
pub struct ClusterPki {
    dir: PathBuf,
    ca: cert::Ca,
    serving: cert::Issued,
    admin: cert::Issued,
    tokens: ServiceAccountTokens,
}

impl fmt::Debug for ClusterPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterPki")
            .field("dir", &self.dir)
            .field("ca", &self.ca)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl ClusterPki {
    /// The directory the key material was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster CA certificate (PEM): what clients trust and nodes pin.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// The API serving certificate (PEM).
    pub fn serving_cert_pem(&self) -> &str {
        &self.serving.cert_pem
    }

    /// The admin client certificate (PEM), `system:admin` in `system:masters`.
    pub fn admin_cert_pem(&self) -> &str {
        &self.admin.cert_pem
    }

    /// The admin client private key (PKCS#8 PEM).
    pub fn admin_key_pem(&self) -> &str {
        &self.admin.key_pem
    }

    /// The service-account token signer and verifier (cheap to clone).
    pub fn service_account_signer(&self) -> ServiceAccountTokens {
        self.tokens.clone()
    }

    /// Issues a client certificate from the cluster CA with a fresh ECDSA P-256 key; returns
    /// `(certificate PEM, private key PEM)`. Nothing is written to disk.
    ///
    /// `common_name` becomes the user and each of `organizations` a group, e.g.
    /// `issue_client_cert("system:node:worker-1", &["system:nodes"], Duration::from_secs(365 * 86400))`.
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        organizations: &[&str],
        validity: Duration,
    ) -> Result<(String, String)> {
        if common_name.is_empty() {
            return Err(Error::ClientCertificate("the common name (user) must not be empty".to_owned()));
        }
        let spec = cert::LeafSpec {
            common_name: common_name.to_owned(),
            organizations: organizations.iter().map(|o| (*o).to_owned()).collect(),
            sans: Vec::new(),
            usage: cert::Usage::Client,
            validity,
        };
        let issued = self.ca.issue(&spec, SystemTime::now())?;
        Ok((issued.cert_pem, issued.key_pem))
    }

    /// Issues a serving certificate from the cluster CA for `names` (DNS names or IP addresses,
    /// e.g. a kubelet's node name and addresses) with a fresh ECDSA P-256 key; returns
    /// `(certificate PEM, private key PEM)`. Nothing is written to disk.
    ///
    /// See [`host_sans`] for the names and addresses of this machine.
    pub fn issue_serving_cert(
        &self,
        common_name: &str,
        names: &[String],
        validity: Duration,
    ) -> Result<(String, String)> {
        if common_name.is_empty() {
            return Err(Error::ClientCertificate("the common name must not be empty".to_owned()));
        }
        let mut sans = names.iter().map(|n| sans::San::parse(n)).collect::<Result<Vec<_>>>()?;
        sans.sort();
        sans.dedup();
        let spec = cert::LeafSpec {
            common_name: common_name.to_owned(),
            organizations: Vec::new(),
            sans,
            usage: cert::Usage::Server,
            validity,
        };
        let issued = self.ca.issue(&spec, SystemTime::now())?;
        Ok((issued.cert_pem, issued.key_pem))
    }
}

/// The names and addresses this machine is reached at: its host name (when a valid DNS name),
/// `127.0.0.1`, `::1` and the addresses of its interfaces (link-local ones left out).
pub fn host_sans() -> Vec<String> {
    sans::host_sans().iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pki_and_the_token_signer_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<ClusterPki>();
        shareable::<ServiceAccountTokens>();
        shareable::<Error>();
    }

    #[test]
    fn errors_about_root_files_tell_the_operator_to_restore_a_backup() {
        let err =
            Error::Missing { path: PathBuf::from("/data/tls/ca.key"), hint: hint_for(Path::new("ca.key")) };
        let text = err.to_string();
        assert!(
            text.starts_with("/data/tls/ca.key is missing: restore the tls directory from a backup"),
            "{text}"
        );
        assert!(hint_for(Path::new("/x/serving.crt")).contains("re-issued"));
    }
}
