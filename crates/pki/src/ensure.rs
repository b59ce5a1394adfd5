//! [`ensure`]: generate the PKI directory on first start, load and repair it afterwards.

use std::path::Path;
use std::time::SystemTime;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::cert::{unix_seconds, Ca, Issued, LeafSpec, Usage, LEAF_VALIDITY, RENEW_BEFORE};
use crate::files::{
    self, ADMIN_CERT, ADMIN_KEY, CA_CERT, CA_KEY, KEY_MODE, PUBLIC_MODE, SA_KEY, SA_PUB, SERVING_CERT,
    SERVING_KEY,
};
use crate::{hint_for, sans, ClusterPki, Error, PkiOptions, Result, ServiceAccountTokens};

/// Common name of the API serving certificate.
const SERVING_COMMON_NAME: &str = "kube-apiserver";
/// The admin credential's user and group.
const ADMIN_USER: &str = "system:admin";
const ADMIN_GROUP: &str = "system:masters";

/// Makes `opts.dir` hold a complete, current PKI and loads it.
///
/// On a directory without any of `ca.crt`, `ca.key` and `sa.key` this creates everything. Otherwise
/// those three must all exist and parse (else an error names the file and what to do), and the
/// serving and admin certificates are re-issued from the same CA when missing, expiring within 90
/// days, not signed by the CA, or (serving) lacking a SAN that `opts` and the host now require.
/// Not safe to run concurrently on the same directory from two processes.
pub fn ensure(opts: &PkiOptions) -> Result<ClusterPki> {
    ensure_at(opts, SystemTime::now())
}

pub(crate) fn ensure_at(opts: &PkiOptions, now: SystemTime) -> Result<ClusterPki> {
    let dir = opts.dir.as_path();
    // Validate --tls-san before anything is written.
    let serving_spec = LeafSpec {
        common_name: SERVING_COMMON_NAME.to_owned(),
        organizations: Vec::new(),
        sans: sans::required(opts)?,
        usage: Usage::Server,
        validity: LEAF_VALIDITY,
    };
    let admin_spec = LeafSpec {
        common_name: ADMIN_USER.to_owned(),
        organizations: vec![ADMIN_GROUP.to_owned()],
        sans: Vec::new(),
        usage: Usage::Client,
        validity: LEAF_VALIDITY,
    };
    files::create_dir(dir)?;
    let (ca, tokens) = load_or_create_root(dir, now)?;
    let serving = ensure_leaf(dir, (SERVING_CERT, SERVING_KEY), &serving_spec, &ca, now)?;
    let admin = ensure_leaf(dir, (ADMIN_CERT, ADMIN_KEY), &admin_spec, &ca, now)?;
    Ok(ClusterPki { dir: dir.to_path_buf(), ca, serving, admin, tokens })
}

/// Loads the CA and the service-account key, or creates both when none of their files exist.
fn load_or_create_root(dir: &Path, now: SystemTime) -> Result<(Ca, ServiceAccountTokens)> {
    let (ca_cert, ca_key, sa_key) = (dir.join(CA_CERT), dir.join(CA_KEY), dir.join(SA_KEY));
    let mut missing = Vec::new();
    for path in [&ca_cert, &ca_key, &sa_key] {
        if !files::exists(path)? {
            missing.push(path);
        }
    }
    if missing.len() == 3 {
        tracing::info!(dir = %dir.display(), "creating the cluster ca and the service-account signing key");
        let (ca, ca_key_pem) = Ca::generate(now)?;
        let sa_key_pem =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(Error::KeyGeneration)?.serialize_pem();
        let tokens = ServiceAccountTokens::from_private_key_pem(&sa_key_pem)?;
        files::write_atomic(&sa_key, sa_key_pem.as_bytes(), KEY_MODE)?;
        files::write_atomic(&dir.join(SA_PUB), tokens.public_key_pem().as_bytes(), PUBLIC_MODE)?;
        files::write_atomic(&ca_key, ca_key_pem.as_bytes(), KEY_MODE)?;
        files::write_atomic(&ca_cert, ca.cert_pem.as_bytes(), PUBLIC_MODE)?;
        return Ok((ca, tokens));
    }
    if let Some(path) = missing.first() {
        return Err(Error::Missing { path: path.to_path_buf(), hint: hint_for(path) });
    }

    let ca = Ca::load(files::read_required(&ca_cert)?, &files::read_required(&ca_key)?, &ca_cert, &ca_key)?;
    let remaining = ca.not_after()?.saturating_sub(unix_seconds(now));
    if remaining < RENEW_BEFORE.as_secs() as i64 {
        tracing::warn!(
            path = %ca_cert.display(),
            days_left = remaining / 86_400,
            "the cluster ca expires soon and is not renewed automatically; every certificate it signed stops working then"
        );
    }
    let tokens =
        ServiceAccountTokens::from_private_key_pem(&files::read_required(&sa_key)?).map_err(|e| match e {
            Error::InvalidPem { what, reason } => {
                Error::Corrupt { path: sa_key.clone(), what, reason, hint: hint_for(&sa_key) }
            }
            other => other,
        })?;
    // sa.pub is derived from sa.key: keep it in step.
    let sa_pub = dir.join(SA_PUB);
    if std::fs::read(&sa_pub).ok().as_deref() != Some(tokens.public_key_pem().as_bytes()) {
        files::write_atomic(&sa_pub, tokens.public_key_pem().as_bytes(), PUBLIC_MODE)?;
    }
    Ok((ca, tokens))
}

/// Loads the leaf `cert_name`/`key_name`, re-issuing it from `ca` when it no longer fits `spec`.
fn ensure_leaf(
    dir: &Path,
    (cert_name, key_name): (&str, &str),
    spec: &LeafSpec,
    ca: &Ca,
    now: SystemTime,
) -> Result<Issued> {
    let (cert_path, key_path) = (dir.join(cert_name), dir.join(key_name));
    let reason = match (files::read_optional(&cert_path)?, files::read_optional(&key_path)?) {
        (Some(cert_pem), Some(key_pem)) => {
            match ca.renewal_reason(spec, (&cert_pem, &cert_path), (&key_pem, &key_path), now)? {
                None => return Ok(Issued { cert_pem, key_pem }),
                Some(reason) => reason,
            }
        }
        (None, _) => "it does not exist".to_owned(),
        (Some(_), None) => format!("{} does not exist", key_path.display()),
    };
    tracing::info!(path = %cert_path.display(), %reason, "issuing certificate");
    let issued = ca.issue(spec, now)?;
    // Key first: a crash in between leaves a key that does not match the old certificate, which the
    // next start detects and repairs.
    files::write_atomic(&key_path, issued.key_pem.as_bytes(), KEY_MODE)?;
    files::write_atomic(&cert_path, issued.cert_pem.as_bytes(), PUBLIC_MODE)?;
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity_from_cert;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    const ALL_FILES: [&str; 8] =
        [CA_CERT, CA_KEY, SERVING_CERT, SERVING_KEY, ADMIN_CERT, ADMIN_KEY, SA_KEY, SA_PUB];

    fn options(dir: &tempfile::TempDir) -> PkiOptions {
        PkiOptions::new(dir.path().join("tls"))
    }

    fn read(opts: &PkiOptions, name: &str) -> Vec<u8> {
        fs::read(opts.dir.join(name)).unwrap()
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn first_ensure_creates_every_file_with_private_keys_readable_only_by_the_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = options(&tmp);
        ensure(&opts).unwrap();
        for name in ALL_FILES {
            let mode = fs::metadata(opts.dir.join(name)).unwrap().permissions().mode() & 0o777;
            if name.ends_with(".key") {
                assert_eq!(mode, 0o600, "{name}");
            } else {
                assert_eq!(mode & 0o077 & !0o044, 0, "{name} is writable by others");
            }
        }
        let dir_mode = fs::metadata(&opts.dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
    }

    #[test]
    fn second_ensure_reuses_every_file() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = options(&tmp);
        let first = ensure(&opts).unwrap();
        let before: Vec<_> = ALL_FILES.iter().map(|n| read(&opts, n)).collect();
        let second = ensure(&opts).unwrap();
        let after: Vec<_> = ALL_FILES.iter().map(|n| read(&opts, n)).collect();
        assert_eq!(before, after);
        assert_eq!(first.ca_cert_pem(), second.ca_cert_pem());
        assert_eq!(first.service_account_signer().kid(), second.service_account_signer().kid());
    }

    #[test]
    fn a_new_tls_san_reissues_the_serving_certificate_from_the_same_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let mut opts = options(&tmp);
        let first = ensure(&opts).unwrap();
        let admin_before = read(&opts, ADMIN_CERT);
        opts.extra_sans = vec!["api.example.com".to_owned(), "192.0.2.10".to_owned()];
        let second = ensure(&opts).unwrap();
        assert_eq!(first.ca_cert_pem(), second.ca_cert_pem());
        assert_ne!(first.serving_cert_pem(), second.serving_cert_pem());
        assert_eq!(read(&opts, ADMIN_CERT), admin_before, "the admin certificate is kept");
        let sans = serving_sans(&second);
        assert!(sans.contains(&"api.example.com".to_owned()), "{sans:?}");
        assert!(sans.contains(&"192.0.2.10".to_owned()), "{sans:?}");
        // And once it has them, it is kept.
        let third = ensure(&opts).unwrap();
        assert_eq!(second.serving_cert_pem(), third.serving_cert_pem());
    }

    fn serving_sans(pki: &ClusterPki) -> Vec<String> {
        let der = der(pki.serving_cert_pem());
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let ext = cert.subject_alternative_name().unwrap().unwrap();
        ext.value
            .general_names
            .iter()
            .map(|n| crate::sans::San::parse(&san_text(n)).unwrap().to_string())
            .collect()
    }

    fn san_text(name: &x509_parser::extensions::GeneralName<'_>) -> String {
        use x509_parser::extensions::GeneralName;
        match name {
            GeneralName::DNSName(d) => (*d).to_owned(),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
            }
            GeneralName::IPAddress(b) => {
                std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()
            }
            other => panic!("unexpected SAN {other:?}"),
        }
    }

    #[test]
    fn leaves_close_to_expiry_are_reissued_and_the_ca_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = options(&tmp);
        let first = ensure(&opts).unwrap();
        let later = SystemTime::now() + Duration::from_secs(300 * 86_400);
        let second = ensure_at(&opts, later).unwrap();
        assert_eq!(first.ca_cert_pem(), second.ca_cert_pem());
        assert_ne!(first.serving_cert_pem(), second.serving_cert_pem());
        assert_ne!(first.admin_cert_pem(), second.admin_cert_pem());
        assert_eq!(read(&opts, ADMIN_CERT), second.admin_cert_pem().as_bytes());
    }

    #[test]
    fn a_deleted_leaf_is_reissued() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = options(&tmp);
        let first = ensure(&opts).unwrap();
        fs::remove_file(opts.dir.join(ADMIN_CERT)).unwrap();
        let second = ensure(&opts).unwrap();
        assert_ne!(first.admin_cert_pem(), second.admin_cert_pem());
        assert_eq!(first.serving_cert_pem(), second.serving_cert_pem());
    }

    #[test]
    fn a_leaf_key_that_no_longer_matches_its_certificate_is_repaired() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = options(&tmp);
        ensure(&opts).unwrap();
        // As after a crash between writing the new key and the new certificate.
        let stray = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        fs::write(opts.dir.join(SERVING_KEY), stray.serialize_pem()).unwrap();
        let pki = ensure(&opts).unwrap();
        assert!(pki.server_tls_config().is_ok());
        assert_ne!(read(&opts, SERVING_KEY), stray.serialize_pem().as_bytes());
    }

    #[test]
    fn the_admin_certificate_is_system_admin_in_system_masters() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure(&options(&tmp)).unwrap();
        let identity = identity_from_cert(&der(pki.admin_cert_pem())).unwrap();
        assert_eq!(identity.user, "system:admin");
        assert_eq!(identity.groups, vec!["system:masters".to_owned()]);
    }

    #[test]
    fn issued_client_certificates_carry_the_user_and_every_group() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure(&options(&tmp)).unwrap();
        let (cert, key) = pki
            .issue_client_cert("system:node:worker-1", &["system:nodes", "corten:agents"], LEAF_VALIDITY)
            .unwrap();
        let identity = identity_from_cert(&der(&cert)).unwrap();
        assert_eq!(identity.user, "system:node:worker-1");
        assert_eq!(identity.groups, vec!["system:nodes".to_owned(), "corten:agents".to_owned()]);
        // Signed by the cluster CA and matching its key.
        let ca = der(pki.ca_cert_pem());
        let (_, ca) = x509_parser::parse_x509_certificate(&ca).unwrap();
        let leaf = der(&cert);
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).unwrap();
        leaf.verify_signature(Some(ca.public_key())).unwrap();
        let key = KeyPair::from_pem(&key).unwrap();
        assert_eq!(leaf.public_key().subject_public_key.data.as_ref(), key.public_key_raw());
    }

    #[test]
    fn a_corrupt_ca_certificate_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = options(&tmp);
        ensure(&opts).unwrap();
        fs::write(opts.dir.join(CA_CERT), "not a certificate").unwrap();
        let err = ensure(&opts).unwrap_err().to_string();
        assert!(err.contains(&opts.dir.join(CA_CERT).display().to_string()), "{err}");
        assert!(err.contains("backup"), "{err}");
    }

    #[test]
    fn a_missing_ca_key_is_an_error_not_a_new_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = options(&tmp);
        ensure(&opts).unwrap();
        let ca_before = read(&opts, CA_CERT);
        fs::remove_file(opts.dir.join(CA_KEY)).unwrap();
        let err = ensure(&opts).unwrap_err();
        assert!(matches!(err, Error::Missing { ref path, .. } if path.ends_with(CA_KEY)), "{err}");
        assert_eq!(read(&opts, CA_CERT), ca_before);
    }

    #[test]
    fn a_ca_key_from_elsewhere_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = options(&tmp);
        ensure(&opts).unwrap();
        let stray = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        fs::write(opts.dir.join(CA_KEY), stray.serialize_pem()).unwrap();
        let err = ensure(&opts).unwrap_err().to_string();
        assert!(err.contains("ca.key") && err.contains("does not belong to"), "{err}");
    }

    #[test]
    fn an_invalid_tls_san_fails_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let mut opts = options(&tmp);
        opts.extra_sans = vec!["bad name!".to_owned()];
        let err = ensure(&opts).unwrap_err();
        assert!(matches!(err, Error::InvalidSan(_)), "{err}");
        assert!(!opts.dir.exists());
    }

    #[test]
    fn a_missing_public_key_file_is_rewritten_from_the_signing_key() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = options(&tmp);
        let pki = ensure(&opts).unwrap();
        fs::remove_file(opts.dir.join(SA_PUB)).unwrap();
        ensure(&opts).unwrap();
        assert_eq!(read(&opts, SA_PUB), pki.service_account_signer().public_key_pem().as_bytes());
    }
}
