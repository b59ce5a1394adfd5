//! The kubelet's error type.

use std::path::PathBuf;

/// Why the kubelet (or one of its steps) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CRI call failed (the message names the call and what the runtime said).
    #[error(transparent)]
    Runtime(#[from] corten_cri::Error),
    /// A Kubernetes API call failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// A file or directory of the kubelet could not be read or written.
    #[error("{path}")]
    Io {
        /// The path involved.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A task of the kubelet panicked or was aborted.
    #[error("kubelet task failed: {0}")]
    Task(String),
    /// The kubelet's HTTPS API cannot listen on its address.
    #[error("cannot listen on {address} (the kubelet API)")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The kubelet API's TLS configuration is invalid (certificate, key or client CA).
    #[error("invalid TLS configuration of the kubelet API")]
    ServerTls(#[source] corten_pki::Error),
    /// A pod's spec cannot be run as written (a missing configmap key, a bad quantity, ...).
    #[error("{0}")]
    Config(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// `Result` with the kubelet's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
