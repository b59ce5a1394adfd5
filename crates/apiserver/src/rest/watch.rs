//! `watch`: a chunked stream of JSON watch events from a store watch, with initial events,
//! bookmarks, selectors (objects leaving the selection arrive as DELETED), timeouts, and 410
//! as an ERROR event when the requested history is gone.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use corten_store::{EventKind, KeyRange, Revision, Store, WatchRequest, WatchResponse};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::read::{read_page, Filter};
use super::ApiRequest;
use crate::codec::{Negotiated, Shape};
use crate::error::{ApiError, Result};
use crate::objects;
use crate::registry::ResourceInfo;
use crate::request::{Query, VersionMatch};
use crate::{table, Shared};

/// Events buffered for a slow client before the watch is cut.
const CLIENT_BUFFER: usize = 1024;

/// How one watch renders its events.
struct Encoder {
    info: ResourceInfo,
    shape: Shape,
    meta_version: &'static str,
    filter: Filter,
}

impl Encoder {
    fn event(&self, kind: &str, obj: Value) -> Bytes {
        let object = match self.shape {
            Shape::Object => obj,
            Shape::Table => {
                table::table(&self.info, &[obj], &table::Include::Metadata, self.meta_version, None)
            }
            Shape::PartialMetadata => super::partial_metadata(&self.info, &obj, self.meta_version),
        };
        let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn bookmark(&self, revision: Revision, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": metadata});
        let mut line = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn error(&self, e: &ApiError) -> Bytes {
        let mut line =
            serde_json::to_vec(&json!({"type": "ERROR", "object": e.status()})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    /// The watch events one store event becomes for this watch's selection.
    fn translate(&self, ev: &corten_store::Event, revision: Revision) -> Result<Option<Bytes>> {
        let old = match &ev.prev_kv {
            Some(kv) => Some(objects::decode(&self.info, kv)?),
            None => None,
        };
        let old_in = old.as_ref().is_some_and(|o| self.filter.matches(o));
        Ok(match ev.kind {
            EventKind::Delete => match old {
                Some(mut o) if old_in => {
                    objects::set_resource_version(&mut o, revision);
                    Some(self.event("DELETED", o))
                }
                _ => None,
            },
            EventKind::Put => {
                let new = objects::decode(&self.info, &ev.kv)?;
                match (old_in, self.filter.matches(&new)) {
                    (true, true) => Some(self.event("MODIFIED", new)),
                    (false, true) => Some(self.event("ADDED", new)),
                    (true, false) => Some(self.event("DELETED", new)),
                    (false, false) => None,
                }
            }
        })
    }
}

/// Where a watch starts and whether it first lists what exists.
fn start_point(q: &Query) -> Result<(Option<Revision>, bool)> {
    let send_initial = q.send_initial_events == Some(true);
    if q.send_initial_events.is_some() {
        if q.resource_version_match != Some(VersionMatch::NotOlderThan) {
            return Err(ApiError::BadRequest(
                "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan"
                    .into(),
            ));
        }
        if send_initial && !q.allow_watch_bookmarks {
            return Err(ApiError::BadRequest(
                "sendInitialEvents requires setting allowWatchBookmarks to true".into(),
            ));
        }
    } else if q.resource_version_match.is_some() {
        return Err(ApiError::BadRequest(
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".into(),
        ));
    }
    match q.resource_version.as_deref() {
        // Legacy semantics: no resourceVersion or "0" means "everything that exists, then changes".
        None | Some("0") => Ok((None, q.send_initial_events != Some(false))),
        Some(rv) => Ok((Some(objects::parse_resource_version(rv)?), send_initial)),
    }
}

pub(super) async fn watch<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    req: &ApiRequest,
    n: Negotiated,
) -> Result<Response> {
    let q = &req.query;
    let filter = Filter::new(info, q)?;
    let namespace = req.namespace().or(filter.fields.exact_namespace()).map(String::from);
    let prefix = info.list_prefix(namespace.as_deref());
    let (from, initial) = start_point(q)?;
    let encoder = Encoder { info: info.clone(), shape: n.shape, meta_version: n.meta_version, filter };
    let timeout = match q.timeout_seconds {
        Some(s) => Duration::from_secs(s),
        None => shared.config.watch_timeout(),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(CLIENT_BUFFER);

    // Initial state, then changes from the revision it was read at.
    let mut start = from.map(|rv| rv + 1).unwrap_or(0);
    let mut preamble = Vec::new();
    if initial {
        let mut list_q = Query { resource_version: from.map(|rv| rv.to_string()), ..Query::default() };
        if from.is_none() && q.resource_version.as_deref() == Some("0") {
            list_q.resource_version = Some("0".into());
        }
        let page = read_page(shared, info, &prefix, &encoder.filter, &list_q).await?;
        for obj in page.items {
            preamble.push(encoder.event("ADDED", obj));
        }
        if q.send_initial_events == Some(true) {
            preamble.push(encoder.bookmark(page.revision, true));
        }
        start = page.revision + 1;
    }
    let mut wreq = WatchRequest::new(KeyRange::Prefix(prefix.into_bytes()), start).prev_kv();
    if q.allow_watch_bookmarks {
        wreq = wreq.progress(shared.config.bookmark_interval);
    }
    let stream = match shared.store.watch(wreq).await {
        Ok(s) => Some(s),
        Err(corten_store::Error::Compacted { requested, compacted }) => {
            let e = ApiError::Expired(format!(
                "too old resource version: {} ({compacted})",
                requested.saturating_sub(1)
            ));
            preamble.push(encoder.error(&e));
            None
        }
        Err(e) => return Err(e.into()),
    };
    let shutdown = shared.shutdown.clone();
    let bookmarks = q.allow_watch_bookmarks;
    tokio::spawn(async move {
        for line in preamble {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let Some(mut stream) = stream else { return };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let item = tokio::select! {
                _ = &mut deadline => return,
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                item = stream.next() => item,
            };
            let lines = match item {
                None => return,
                Some(Ok(WatchResponse::Events { revision, events })) => {
                    let mut lines = Vec::new();
                    for ev in &events {
                        match encoder.translate(ev, revision) {
                            Ok(Some(line)) => lines.push(line),
                            Ok(None) => {}
                            Err(e) => lines.push(encoder.error(&e)),
                        }
                    }
                    lines
                }
                Some(Ok(WatchResponse::Progress { revision })) if bookmarks => {
                    vec![encoder.bookmark(revision, false)]
                }
                Some(Ok(WatchResponse::Progress { .. })) => Vec::new(),
                Some(Err(e)) => {
                    let e = match e {
                        corten_store::Error::Compacted { requested, compacted } => {
                            ApiError::Expired(format!(
                                "too old resource version: {} ({compacted})",
                                requested.saturating_sub(1)
                            ))
                        }
                        other => ApiError::from(other),
                    };
                    let _ = tx.send(encoder.error(&e)).await;
                    return;
                }
            };
            for line in lines {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    }));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(resp)
}
