//! The scheduler's error type.

/// What can go wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("kubernetes api request failed")]
    Kube(#[from] kube::Error),
}

/// The scheduler's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
