//! The one error type of the controllers.

/// Why a controller could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("{action}")]
    Api {
        /// What was being done, e.g. `creating pod web-1 in default`.
        action: String,
        #[source]
        source: kube::Error,
    },
    /// The watch of a resource failed.
    #[error("watching {resource}")]
    Watch {
        /// The resource being watched.
        resource: &'static str,
        #[source]
        source: kube::runtime::watcher::Error,
    },
    /// An object in the API is not what the controller can work with.
    #[error("{0}")]
    Invalid(String),
    /// Work that did not finish this time and is retried (some of a namespace's content could
    /// not be deleted).
    #[error("{0}")]
    Unfinished(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what was being done to a kube error: `client.create(..).await.map_err(api("creating x"))?`.
pub(crate) fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Api { action, source }
}
