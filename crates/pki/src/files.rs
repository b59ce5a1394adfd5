//! The on-disk layout and crash-safe file I/O.
//!
//! Every write goes to a temporary file beside the target, is fsynced, renamed over the target and
//! the directory is fsynced, so a crash leaves either the old or the new content, never half a file.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The cluster CA certificate (PEM).
pub const CA_CERT: &str = "ca.crt";
/// The cluster CA private key (PKCS#8 PEM).
pub const CA_KEY: &str = "ca.key";
/// The API server's serving certificate (PEM).
pub const SERVING_CERT: &str = "serving.crt";
/// The API server's serving key (PKCS#8 PEM).
pub const SERVING_KEY: &str = "serving.key";
/// The admin client certificate (`system:admin` in `system:masters`).
pub const ADMIN_CERT: &str = "admin.crt";
/// The admin client key (PKCS#8 PEM).
pub const ADMIN_KEY: &str = "admin.key";
/// The service-account token signing key (ECDSA P-256, PKCS#8 PEM).
pub const SA_KEY: &str = "sa.key";
/// The service-account token verification key (SPKI PEM), derived from [`SA_KEY`].
pub const SA_PUB: &str = "sa.pub";

/// Mode of files holding private keys.
pub(crate) const KEY_MODE: u32 = 0o600;
/// Mode of files holding only public material.
pub(crate) const PUBLIC_MODE: u32 = 0o644;

/// Creates `dir` (mode 0700 when it is new) and its parents.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| Error::Io {
        action: "create directory",
        path: dir.to_path_buf(),
        source,
    })
}

/// Whether `path` exists; an error to stat it (e.g. permissions) is reported, not taken as "absent".
pub(crate) fn exists(path: &Path) -> Result<bool> {
    path.try_exists().map_err(|source| Error::Io { action: "stat", path: path.to_path_buf(), source })
}

/// Reads `path` as UTF-8 text; `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| Error::Corrupt {
            path: path.to_path_buf(),
            what: "pem file",
            reason: "it is not utf-8 text".to_owned(),
            hint: crate::hint_for(path),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { action: "read", path: path.to_path_buf(), source }),
    }
}

/// Reads `path` as UTF-8 text; a missing file is [`Error::Missing`].
pub(crate) fn read_required(path: &Path) -> Result<String> {
    read_optional(path)?
        .ok_or_else(|| Error::Missing { path: path.to_path_buf(), hint: crate::hint_for(path) })
}

/// Writes a PEM file atomically, creating its parent directories (mode 0700): mode 0600 for a
/// `secret` (a private key), 0644 otherwise. For credentials kept beside the PKI, such as a
/// kubelet's serving certificate.
pub fn write_pem(path: &Path, pem: &str, secret: bool) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(parent)?;
    }
    write_atomic(path, pem.as_bytes(), if secret { KEY_MODE } else { PUBLIC_MODE })
}

/// Atomically replaces `path` with `contents`, created with `mode` (e.g. [`KEY_MODE`]).
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { action, path, source }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // A leftover from a crashed write would keep its old mode: start from scratch.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(Error::Io { action: "remove stale", path: tmp, source }),
    }
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        file.write_all(contents).map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("replace", path))?;
        File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err("sync directory", &dir))
    })();
    if result.is_err() {
        // Best effort: the original error is what matters.
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_atomic_replaces_content_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic(&path, b"one", KEY_MODE).unwrap();
        write_atomic(&path, b"two", KEY_MODE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec!["secret"]);
    }

    #[test]
    fn read_optional_returns_none_for_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_optional(&dir.path().join("absent")).unwrap().is_none());
    }
}
