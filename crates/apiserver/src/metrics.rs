//! `/metrics` in the Prometheus text format: request counts by verb and code, request latency
//! sums, and the store's revision, under kube-apiserver's metric names where one exists.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use corten_store::Store;
use parking_lot::Mutex;

use crate::{authenticate, Shared};

/// (verb, code) -> (count, total seconds).
type RequestStats = BTreeMap<(&'static str, u16), (u64, f64)>;

/// Counters of served requests.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<RequestStats>,
}

fn verb_of(method: &Method, query: Option<&str>) -> &'static str {
    let watch = query.is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    match *method {
        Method::GET if watch => "WATCH",
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

/// Counts every request (the middleware around the router).
pub(crate) async fn track<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    req: Request,
    next: Next,
) -> Response {
    let verb = verb_of(req.method(), req.uri().query());
    let start = Instant::now();
    let resp = next.run(req).await;
    let elapsed = start.elapsed().as_secs_f64();
    let mut map = shared.metrics.requests.lock();
    let entry = map.entry((verb, resp.status().as_u16())).or_default();
    entry.0 += 1;
    entry.1 += elapsed;
    resp
}

pub(crate) async fn serve<S: Store>(State(shared): State<Arc<Shared<S>>>, req: Request) -> Response {
    if let Err(e) = authenticate(&shared, &req).await {
        return e.into_response();
    }
    let mut out = String::new();
    out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out by verb and HTTP response code.\n");
    out.push_str("# TYPE apiserver_request_total counter\n");
    let requests = shared.metrics.requests.lock().clone();
    for ((verb, code), (count, _)) in &requests {
        let _ = writeln!(out, "apiserver_request_total{{code=\"{code}\",verb=\"{verb}\"}} {count}");
    }
    out.push_str(
        "# HELP apiserver_request_duration_seconds_sum Total time spent serving requests, by verb.\n",
    );
    out.push_str("# TYPE apiserver_request_duration_seconds_sum counter\n");
    let mut by_verb: BTreeMap<&str, f64> = BTreeMap::new();
    for ((verb, _), (_, secs)) in &requests {
        *by_verb.entry(verb).or_default() += secs;
    }
    for (verb, secs) in by_verb {
        let _ = writeln!(out, "apiserver_request_duration_seconds_sum{{verb=\"{verb}\"}} {secs}");
    }
    if let Ok(status) = shared.store.status().await {
        out.push_str("# HELP corten_store_revision The store's current revision.\n# TYPE corten_store_revision gauge\n");
        let _ = writeln!(out, "corten_store_revision {}", status.revision);
        out.push_str("# HELP corten_store_compact_revision The store's compaction point.\n# TYPE corten_store_compact_revision gauge\n");
        let _ = writeln!(out, "corten_store_compact_revision {}", status.compact_revision);
    }
    let mut resp = (StatusCode::OK, out).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    resp
}
