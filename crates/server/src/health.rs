//! `/healthz` and `/readyz`, answered like the Kubernetes API server's endpoints.
//!
//! Plain `GET /readyz` answers `200 ok` when every check passes. A failing check answers `503` with
//! every check listed and the failure's reason; `?verbose` lists the checks on success too:
//!
//! ```text
//! [+]ping ok
//! [-]store failed: store is not ready: no raft leader yet or log not applied
//! readyz check failed
//! ```

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::ServedStore;

/// One named check: `Ok(())` or the reason it fails.
type Check = (&'static str, Result<(), String>);

/// The query string both endpoints accept.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Params {
    /// Present (with any value, usually none) to list the checks even when all pass.
    verbose: Option<String>,
}

struct Health<S> {
    store: Arc<S>,
    shutdown: CancellationToken,
}

/// The router serving `/healthz` and `/readyz` for `store`.
pub(crate) fn router<S: ServedStore>(store: Arc<S>, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/healthz", get(healthz::<S>))
        .route("/readyz", get(readyz::<S>))
        .with_state(Arc::new(Health { store, shutdown }))
}

async fn healthz<S: ServedStore>(
    State(_): State<Arc<Health<S>>>,
    Query(params): Query<Params>,
) -> (StatusCode, String) {
    report("healthz", &[("ping", Ok(()))], params.verbose.is_some())
}

async fn readyz<S: ServedStore>(
    State(health): State<Arc<Health<S>>>,
    Query(params): Query<Params>,
) -> (StatusCode, String) {
    let store = if health.store.is_ready() {
        Ok(())
    } else {
        Err("store is not ready: no raft leader yet or log not applied".to_string())
    };
    let shutdown =
        if health.shutdown.is_cancelled() { Err("server is shutting down".to_string()) } else { Ok(()) };
    report("readyz", &[("ping", Ok(())), ("store", store), ("shutdown", shutdown)], params.verbose.is_some())
}

/// Renders checks the way Kubernetes does; a failure always lists every check with its reason.
fn report(endpoint: &str, checks: &[Check], verbose: bool) -> (StatusCode, String) {
    let passed = checks.iter().all(|(_, result)| result.is_ok());
    if passed && !verbose {
        return (StatusCode::OK, "ok".to_string());
    }
    let mut body = String::new();
    for (name, result) in checks {
        match result {
            Ok(()) => body.push_str(&format!("[+]{name} ok\n")),
            Err(reason) => body.push_str(&format!("[-]{name} failed: {reason}\n")),
        }
    }
    if passed {
        body.push_str(&format!("{endpoint} check passed\n"));
        (StatusCode::OK, body)
    } else {
        body.push_str(&format!("{endpoint} check failed\n"));
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}
