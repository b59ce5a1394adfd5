//! `get` and `list`: reads at the right revision, selectors, pagination with continue tokens.

use axum::http::StatusCode;
use axum::response::Response;
use corten_store::{KeyRange, RangeRequest, Revision, Store};
use serde_json::{json, Value};

use super::{object_response, partial_metadata, ApiRequest};
use crate::codec::{self, Negotiated, Shape};
use crate::error::{ApiError, Result};
use crate::objects::{self, Continue};
use crate::registry::ResourceInfo;
use crate::request::{Query, VersionMatch};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::{table, Shared};

/// How many keys a filtered list reads from the store at a time.
const LIST_BATCH: usize = 500;

pub(super) async fn get<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    req: &ApiRequest,
    n: Negotiated,
) -> Result<Response> {
    let key = info.key(req.namespace().unwrap_or(""), req.name());
    // resourceVersion "0" allows any (possibly stale) version: a local read.
    let serializable = req.query.resource_version.as_deref() == Some("0");
    let (obj, _) = objects::get(&shared.store, info, &key, serializable)
        .await?
        .ok_or_else(|| ApiError::not_found(info, req.name()))?;
    Ok(object_response(StatusCode::OK, info, obj, n, &req.query))
}

/// The selectors of a list or watch.
#[derive(Debug, Default)]
pub(super) struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn new(info: &ResourceInfo, q: &Query) -> Result<Self> {
        Ok(Filter {
            labels: LabelSelector::parse(q.label_selector.as_deref().unwrap_or(""))?,
            fields: FieldSelector::parse(q.field_selector.as_deref().unwrap_or(""), info)?,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj.pointer("/metadata/labels")) && self.fields.matches(obj)
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

/// One page of a list.
pub(super) struct Page {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

/// Reads the objects of `prefix` (as objects of `info`) matching `filter`, honouring `limit`,
/// `continue` and the `resourceVersion` semantics of a list.
pub(super) async fn read_page<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    prefix: &str,
    filter: &Filter,
    q: &Query,
) -> Result<Page> {
    let (mut revision, mut start, serializable) = match &q.continue_token {
        Some(token) => {
            if q.resource_version.as_deref().is_some_and(|rv| !rv.is_empty()) {
                return Err(ApiError::BadRequest(
                    "specifying resource version is not allowed when using continue".into(),
                ));
            }
            let c = Continue::decode(token)?;
            (c.rv, format!("{prefix}{}", c.start), false)
        }
        None => {
            let (rev, serializable) = match (q.resource_version.as_deref(), q.resource_version_match) {
                (None, Some(_)) => {
                    return Err(ApiError::BadRequest(
                        "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
                    ))
                }
                (None, None) => (0, false),
                (Some("0"), Some(VersionMatch::Exact)) => {
                    return Err(ApiError::BadRequest(
                        "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"".into(),
                    ))
                }
                (Some("0"), _) => (0, true),
                (Some(rv), Some(VersionMatch::Exact)) => (objects::parse_resource_version(rv)?, false),
                (Some(rv), _) => {
                    let wanted = objects::parse_resource_version(rv)?;
                    let current = shared.store.status().await?.revision;
                    if wanted > current {
                        return Err(ApiError::TooLargeResourceVersion { requested: wanted, current });
                    }
                    (0, false)
                }
            };
            (rev, prefix.to_string(), serializable)
        }
    };
    let end = corten_store::prefix_end(prefix.as_bytes()).unwrap_or_default();
    let limit = q.limit.unwrap_or(0);
    let mut items = Vec::new();
    loop {
        let batch = if limit == 0 {
            0
        } else if filter.is_empty() {
            limit - items.len()
        } else {
            LIST_BATCH
        };
        let mut range =
            RangeRequest::new(KeyRange::Range { start: start.clone().into_bytes(), end: end.clone() })
                .limit(batch);
        range.revision = revision;
        if serializable {
            range = range.serializable();
        }
        let resp = match shared.store.range(range).await {
            Err(corten_store::Error::Compacted { .. }) if q.continue_token.is_some() => {
                return Err(objects::expired_continue())
            }
            other => other?,
        };
        revision = resp.revision;
        let mut last_key = None;
        for kv in &resp.kvs {
            last_key = Some(kv.key.clone());
            let obj = objects::decode(info, kv)?;
            if filter.matches(&obj) {
                items.push(obj);
                if limit > 0 && items.len() == limit {
                    break;
                }
            }
        }
        let scanned_all = last_key.as_deref() == resp.kvs.last().map(|kv| kv.key.as_slice());
        let more = resp.more || !scanned_all;
        let full = limit > 0 && items.len() >= limit;
        match last_key {
            Some(last) if more && full => {
                let mut next = String::from_utf8_lossy(&last[prefix.len()..]).into_owned();
                next.push('\0');
                let remaining = if filter.is_empty() {
                    remaining_count(shared, &last, &end, revision).await.ok()
                } else {
                    None
                };
                return Ok(Page {
                    items,
                    revision,
                    continue_token: Some(Continue::new(revision, next).encode()),
                    remaining,
                });
            }
            Some(last) if more => {
                let mut next = last;
                next.push(0);
                start = String::from_utf8_lossy(&next).into_owned();
            }
            _ => return Ok(Page { items, revision, continue_token: None, remaining: None }),
        }
    }
}

async fn remaining_count<S: Store>(
    shared: &Shared<S>,
    last: &[u8],
    end: &[u8],
    revision: Revision,
) -> Result<u64> {
    let mut start = last.to_vec();
    start.push(0);
    let req =
        RangeRequest::new(KeyRange::Range { start, end: end.to_vec() }).count_only().at_revision(revision);
    Ok(shared.store.range(req).await?.count)
}

pub(super) async fn list<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    req: &ApiRequest,
    n: Negotiated,
) -> Result<Response> {
    let filter = Filter::new(info, &req.query)?;
    let namespace = req.namespace().or(filter.fields.exact_namespace());
    let prefix = info.list_prefix(namespace);
    let page = read_page(shared, info, &prefix, &filter, &req.query).await?;
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        metadata["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        metadata["remainingItemCount"] = json!(r);
    }
    let body = match n.shape {
        Shape::Object => json!({
            "kind": info.list_kind(),
            "apiVersion": info.api_version(),
            "metadata": metadata,
            "items": page.items,
        }),
        Shape::Table => {
            table::table(info, &page.items, &table::Include::Metadata, n.meta_version, Some(metadata))
        }
        Shape::PartialMetadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": format!("meta.k8s.io/{}", n.meta_version),
            "metadata": metadata,
            "items": page.items.iter().map(|o| partial_metadata(info, o, n.meta_version)).collect::<Vec<_>>(),
        }),
    };
    Ok(codec::respond(StatusCode::OK, &body, n.format))
}
