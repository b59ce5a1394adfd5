//! The cluster CA: creating it, loading it back, issuing leaf certificates and deciding whether an
//! existing leaf is still good enough to keep.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::sans::San;
use crate::{der, hint_for, ClientIdentity, Error, Result};

const DAY: u64 = 24 * 60 * 60;
/// Lifetime of the cluster CA.
pub(crate) const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * DAY);
/// Lifetime of the serving and admin certificates.
pub(crate) const LEAF_VALIDITY: Duration = Duration::from_secs(365 * DAY);
/// Leaves closer than this to their expiry are re-issued by `ensure`.
pub(crate) const RENEW_BEFORE: Duration = Duration::from_secs(90 * DAY);
/// `notBefore` is backdated by this much, so a peer whose clock is a little behind accepts a fresh
/// certificate.
const BACKDATE: Duration = Duration::from_secs(60 * 60);
/// Common name of the cluster CA.
pub(crate) const CA_COMMON_NAME: &str = "corten-ca";

/// What a leaf certificate is for: its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    Server,
    Client,
}

/// Everything a leaf certificate must say.
#[derive(Debug, Clone)]
pub(crate) struct LeafSpec {
    pub(crate) common_name: String,
    pub(crate) organizations: Vec<String>,
    pub(crate) sans: Vec<San>,
    pub(crate) usage: Usage,
    pub(crate) validity: Duration,
}

/// A freshly issued certificate and its private key, both PEM.
#[derive(Clone)]
pub(crate) struct Issued {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// The cluster CA with its signing key.
pub(crate) struct Ca {
    pub(crate) cert_pem: String,
    pub(crate) cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The issuer's Debug leaves the key out.
        f.debug_struct("Ca").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a new self-signed CA; returns it with its private key PEM.
    pub(crate) fn generate(now: SystemTime) -> Result<(Ca, String)> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(Error::KeyGeneration)?;
        let key_pem = key.serialize_pem();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, CA_COMMON_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        (params.not_before, params.not_after) = validity_window(now, CA_VALIDITY)?;
        let cert = params
            .self_signed(&key)
            .map_err(|source| Error::Issue { subject: CA_COMMON_NAME.to_owned(), source })?;
        let ca = Ca { cert_pem: cert.pem(), cert_der: cert.der().clone(), issuer: Issuer::new(params, key) };
        Ok((ca, key_pem))
    }

    /// Loads the CA from its certificate and key PEMs; the paths only name the files in errors.
    pub(crate) fn load(cert_pem: String, key_pem: &str, cert_path: &Path, key_path: &Path) -> Result<Ca> {
        let cert_der = parse_cert_pem(&cert_pem, cert_path)?;
        let x509 = parse_x509(&cert_der, cert_path)?;
        if !x509.is_ca() {
            return Err(corrupt(cert_path, "ca certificate", "it is not a ca certificate"));
        }
        let key = parse_key_pem(key_pem, key_path)?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(corrupt(
                key_path,
                "ca key",
                format!("it does not belong to {}", cert_path.display()),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| corrupt(cert_path, "ca certificate", e.to_string()))?;
        Ok(Ca { cert_pem, cert_der, issuer })
    }

    /// When the CA itself expires, as seconds since the Unix epoch.
    pub(crate) fn not_after(&self) -> Result<i64> {
        Ok(parse_x509(&self.cert_der, Path::new(crate::files::CA_CERT))?.validity().not_after.timestamp())
    }

    /// Issues a new key pair and a certificate for it as described by `spec`.
    pub(crate) fn issue(&self, spec: &LeafSpec, now: SystemTime) -> Result<Issued> {
        let issue_err = |source| Error::Issue { subject: spec.common_name.clone(), source };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(Error::KeyGeneration)?;
        let mut params = CertificateParams::default();
        // Placeholder: the real subject (possibly several O values) is spliced in below.
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, spec.common_name.as_str());
        params.subject_alt_names = spec.sans.iter().map(San::to_rcgen).collect::<Result<_>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match spec.usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = validity_window(now, spec.validity)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(issue_err)?;
        let subject = der::encode_name(&spec.common_name, &spec.organizations);
        let cert_der = der::replace_subject(cert.der(), &subject, self.issuer.key())?;
        Ok(Issued { cert_pem: pem_encode("CERTIFICATE", &cert_der), key_pem: key.serialize_pem() })
    }

    /// Why the leaf in `cert_pem`/`key_pem` must be re-issued to satisfy `spec` at `now`, or `None`
    /// when it can be kept. Unparseable files are errors naming the file, not a reason to re-issue.
    pub(crate) fn renewal_reason(
        &self,
        spec: &LeafSpec,
        (cert_pem, cert_path): (&str, &Path),
        (key_pem, key_path): (&str, &Path),
        now: SystemTime,
    ) -> Result<Option<String>> {
        let cert_der = parse_cert_pem(cert_pem, cert_path)?;
        let leaf = parse_x509(&cert_der, cert_path)?;
        let key = parse_key_pem(key_pem, key_path)?;
        let ca = parse_x509(&self.cert_der, Path::new(crate::files::CA_CERT))?;

        if leaf.issuer() != ca.subject() || leaf.verify_signature(Some(ca.public_key())).is_err() {
            return Ok(Some("it is not signed by the current cluster ca".to_owned()));
        }
        if leaf.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Ok(Some(format!("it does not match {}", key_path.display())));
        }
        let remaining = leaf.validity().not_after.timestamp().saturating_sub(unix_seconds(now));
        if remaining < RENEW_BEFORE.as_secs() as i64 {
            return Ok(Some("it expires within 90 days".to_owned()));
        }
        let subject_matches =
            identity_of(&leaf).is_ok_and(|id| id.user == spec.common_name && id.groups == spec.organizations);
        if !subject_matches {
            return Ok(Some("its subject changed".to_owned()));
        }
        let present = sans_of(&leaf, cert_path)?;
        if let Some(missing) = spec.sans.iter().find(|san| !present.contains(san)) {
            return Ok(Some(format!("it lacks the subject alternative name {missing}")));
        }
        Ok(None)
    }
}

/// The Kubernetes identity a client certificate asserts: subject CN is the user, every subject O
/// a group.
///
/// Call it on a peer certificate the TLS stack has already verified against the cluster CA; this
/// function checks nothing about trust.
pub fn identity_from_cert(der: &[u8]) -> Result<ClientIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::ClientCertificate(format!("it is not a valid x.509 certificate: {e}")))?;
    identity_of(&cert)
}

fn identity_of(cert: &X509Certificate<'_>) -> Result<ClientIdentity> {
    let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        attr.as_str()
            .map(str::to_owned)
            .map_err(|_| Error::ClientCertificate("a subject attribute is not a string".to_owned()))
    };
    let user = match cert.subject().iter_common_name().next() {
        Some(cn) => text(cn)?,
        None => return Err(Error::ClientCertificate("its subject has no common name".to_owned())),
    };
    let groups = cert.subject().iter_organization().map(text).collect::<Result<_>>()?;
    Ok(ClientIdentity { user, groups })
}

fn sans_of(cert: &X509Certificate<'_>, path: &Path) -> Result<Vec<San>> {
    let ext = cert.subject_alternative_name().map_err(|e| corrupt(path, "certificate", e.to_string()))?;
    let names = ext.map(|ext| ext.value.general_names.as_slice()).unwrap_or_default();
    Ok(names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(San::Dns(dns.to_ascii_lowercase())),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(|b| San::Ip(b.into())),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(|b| San::Ip(b.into())),
                _ => None,
            },
            _ => None,
        })
        .collect())
}

pub(crate) fn parse_cert_pem(pem: &str, path: &Path) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| corrupt(path, "pem certificate", format!("no certificate could be read: {e}")))
}

fn parse_x509<'a>(der: &'a [u8], path: &Path) -> Result<X509Certificate<'a>> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| corrupt(path, "certificate", e.to_string()))
}

fn parse_key_pem(pem: &str, path: &Path) -> Result<KeyPair> {
    let key = KeyPair::from_pem(pem).map_err(|e| corrupt(path, "pkcs#8 pem private key", e.to_string()))?;
    if !key.is_compatible(&PKCS_ECDSA_P256_SHA256) {
        return Err(corrupt(path, "private key", "it is not an ecdsa p-256 key"));
    }
    Ok(key)
}

fn corrupt(path: &Path, what: &'static str, reason: impl Into<String>) -> Error {
    Error::Corrupt { path: path.to_path_buf(), what, reason: reason.into(), hint: hint_for(path) }
}

/// PEM-encodes `der` under `label` with 64-column lines.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Seconds since the Unix epoch (0 for times before it).
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// `(notBefore, notAfter)` for a certificate issued at `now` valid for `validity`.
fn validity_window(now: SystemTime, validity: Duration) -> Result<(OffsetDateTime, OffsetDateTime)> {
    let now = unix_seconds(now);
    let at = |secs: i64| OffsetDateTime::from_unix_timestamp(secs).map_err(|_| Error::Validity(validity));
    let validity_secs = i64::try_from(validity.as_secs()).map_err(|_| Error::Validity(validity))?;
    Ok((at(now - BACKDATE.as_secs() as i64)?, at(now.saturating_add(validity_secs))?))
}
