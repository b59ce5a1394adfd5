//! `create`, `update`, `patch`, `delete` and `deletecollection`: optimistic concurrency on the
//! key's `mod_revision`, server-owned metadata, defaults, validation, the status/spec split,
//! field ownership (`managedFields`), server-side apply, finalizers and graceful deletion — all
//! in single store transactions.

use axum::http::StatusCode;
use axum::response::Response;
use corten_store::{Compare, Op, Store, Txn};
use serde_json::{json, Value};

use super::read::{read_page, Filter};
use super::{object_response, ApiRequest};
use crate::codec::{self, Negotiated};
use crate::error::{ApiError, Cause, Result};
use crate::meta::{self, metadata_mut};
use crate::objects;
use crate::registry::ResourceInfo;
use crate::request::Query;
use crate::{admission, Shared};

/// How often an update without a client resourceVersion is retried on a write race.
const UPDATE_RETRIES: usize = 8;

/// How often a create is tried: a generated name that is taken is tried 5 times; a race on an
/// allocation or on a quota's usage (concurrent creates charging the same quota) is tried again
/// up to this many times.
const CREATE_ATTEMPTS: usize = 32;

pub(super) use super::subresources::review;

/// The query of a client request, with its User-Agent for the default field manager.
fn client_query(req: &ApiRequest) -> Result<Query> {
    let mut q = req.query.clone();
    let ua = req.headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    q.user_agent = Some(ua.to_string());
    q.requester = req.identity.clone();
    admission::check_field_manager(&q)?;
    Ok(q)
}

/// Subresource requests (`status`, `scale`, ...), with writes attributed to their client.
pub(super) async fn subresource<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    verb: crate::request::Verb,
    req: &ApiRequest,
    n: Negotiated,
    sub: &str,
) -> Result<Response> {
    let req = ApiRequest {
        method: req.method.clone(),
        target: req.target.clone(),
        query: client_query(req)?,
        headers: req.headers.clone(),
        body: req.body.clone(),
        identity: req.identity.clone(),
    };
    super::subresources::subresource(shared, info, verb, &req, n, sub).await
}

/// How a write is recorded in `metadata.managedFields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    /// As an `Update` by the request's field manager (nothing for the server's own writes).
    Update,
    /// Already computed by server-side apply: the object carries its managed fields.
    Applied,
}

/// Decodes the request body as an object of `info`'s kind; a mismatching `apiVersion`/`kind` is
/// a 400, a missing one is filled in (as kube-apiserver defaults it from the path).
pub(super) fn decode_object(info: &ResourceInfo, req: &ApiRequest) -> Result<Value> {
    let mut obj = codec::decode_body(req.content_type(), &req.body)?;
    if !obj.is_object() {
        return Err(ApiError::BadRequest(format!(
            "the body of the request must be a JSON object of kind {}, not {}",
            info.kind,
            json_type(&obj)
        )));
    }
    check_kind(info, &mut obj)?;
    Ok(obj)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Fills in or checks `apiVersion` and `kind`.
pub(super) fn check_kind(info: &ResourceInfo, obj: &mut Value) -> Result<()> {
    let api_version = info.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = json!(api_version),
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )))
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(info.kind),
        Some(k) if k == info.kind => {}
        Some(k) => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )))
        }
    }
    Ok(())
}

/// Checks that `obj` decodes as the typed struct (400 with serde's message otherwise).
pub(super) fn type_check(info: &ResourceInfo, obj: &Value) -> Result<()> {
    match info.type_check {
        Some(check) => check(obj).map_err(|e| {
            ApiError::BadRequest(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                info.kind, info.version, info.kind
            ))
        }),
        None => Ok(()),
    }
}

/// Ensures the namespace of a new object exists and is not terminating.
async fn check_namespace<S: Store>(shared: &Shared<S>, namespace: &str) -> Result<()> {
    let ns_info = shared.registry.get("", "v1", "namespaces").cloned().ok_or(ApiError::UnknownPath)?;
    match objects::get(&shared.store, &ns_info, &ns_info.key("", namespace), false).await? {
        None => Err(ApiError::not_found(&ns_info, namespace)),
        Some((ns, _)) if meta::is_deleting(&ns) => Err(ApiError::Forbidden(format!(
            "unable to create new content in namespace {namespace} because it is being terminated"
        ))),
        Some(_) => Ok(()),
    }
}

pub(super) async fn create<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    req: &ApiRequest,
    n: Negotiated,
) -> Result<Response> {
    let obj = decode_object(info, req)?;
    let q = client_query(req)?;
    let created = create_object(shared, info, req.namespace(), obj, &q).await?;
    Ok(object_response(StatusCode::CREATED, info, created, n, &req.query))
}

/// Creates `obj` (already kind-checked) in `namespace`; returns the stored object. The create is
/// recorded in `managedFields` for the query's field manager, if any.
pub(crate) async fn create_object<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    namespace: Option<&str>,
    obj: Value,
    q: &Query,
) -> Result<Value> {
    create_tracked(shared, info, namespace, obj, q, Track::Update).await
}

async fn create_tracked<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    namespace: Option<&str>,
    mut obj: Value,
    q: &Query,
    track: Track,
) -> Result<Value> {
    let namespace =
        if info.namespaced {
            let path_ns = namespace.ok_or_else(|| ApiError::BadRequest("a namespace is required".into()))?;
            match meta::meta_str(&obj, "namespace") {
                Some(ns) if !ns.is_empty() && ns != path_ns => return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                        .into(),
                )),
                _ => {}
            }
            metadata_mut(&mut obj).insert("namespace".into(), json!(path_ns));
            Some(path_ns)
        } else {
            metadata_mut(&mut obj).remove("namespace");
            None
        };
    let generate = meta::meta_str(&obj, "generateName").unwrap_or("").to_string();
    let generated = meta::name_of(&obj).is_empty() && !generate.is_empty();
    type_check(info, &obj)?;
    let warnings = admission::field_warnings(info, &obj, q)?;
    drop(warnings);
    if let Some(ns) = namespace {
        check_namespace(shared, ns).await?;
    }
    crate::serviceaccount::admit_create(shared, info, &mut obj).await?;
    crate::priority::admit_create(shared, info, &mut obj).await?;
    for attempt in 0..CREATE_ATTEMPTS {
        let mut candidate = obj.clone();
        if generated {
            metadata_mut(&mut candidate)
                .insert("name".into(), json!(format!("{generate}{}", meta::random_suffix())));
        }
        let name = meta::name_of(&candidate).to_string();
        let mut causes = meta::validate_name(info, &name);
        if name.is_empty() && generate.is_empty() {
            causes = vec![Cause::required("metadata.name")];
        }
        let mut new = admission::prepare_create(info, candidate)?;
        crate::authz::escalation::admit(shared, info, &new, None, q)?;
        if track == Track::Update {
            if let Some(manager) = admission::field_manager(q) {
                admission::record_update(info, None, &mut new, &manager, None);
            }
        }
        causes.extend(admission::validate(info, &new, None));
        if !causes.is_empty() {
            return Err(ApiError::invalid(info, &name, causes));
        }
        crate::limits::admit(shared, info, &mut new, None).await?;
        let key = info.key(namespace.unwrap_or(""), &name);
        let mut txn = Txn::new().when(Compare::absent(key.as_bytes().to_vec()));
        let (new, extra) = crate::alloc::on_create(shared, info, new).await?;
        for (k, v) in &extra {
            txn = txn
                .when(Compare::absent(k.as_bytes().to_vec()))
                .success(Op::put(k.as_bytes().to_vec(), v.clone()));
        }
        txn = crate::quota::charge(shared, info, &new, None).await?.add_to(txn);
        txn = txn.success(Op::put(key.as_bytes().to_vec(), objects::encode(info, &new)?));
        if let Some(stored) = commit(shared, txn, new, q.dry_run).await? {
            return Ok(stored);
        }
        // Either the name is taken or an allocation raced; tell them apart.
        let taken = objects::get(&shared.store, info, &key, false).await?.is_some();
        if taken && (!generated || attempt >= 4) {
            return Err(ApiError::already_exists(info, &name));
        }
    }
    Err(ApiError::Unavailable("could not allocate a unique name or address; try again".into()))
}

/// Runs `txn` (not for a dry run) and returns `new` stamped with the revision it was written at;
/// `None` when a compare failed, for the caller to retry or report.
async fn commit<S: Store>(shared: &Shared<S>, txn: Txn, new: Value, dry_run: bool) -> Result<Option<Value>> {
    if dry_run {
        return Ok(Some(new));
    }
    let resp = shared.store.txn(txn).await?;
    if !resp.succeeded {
        return Ok(None);
    }
    let mut stored = new;
    objects::set_resource_version(&mut stored, resp.revision);
    Ok(Some(stored))
}

/// `txn` deleting the object at `key` and releasing what it had allocated.
fn delete_ops(txn: Txn, info: &ResourceInfo, key: &str, current: &Value) -> Txn {
    let txn = txn.success(Op::delete(key.as_bytes().to_vec()));
    crate::alloc::on_delete(info, current)
        .into_iter()
        .fold(txn, |txn, k| txn.success(Op::delete(k.into_bytes())))
}

/// What a mutation produces from the current object (None: the object does not exist).
pub(super) type Mutation<'a> = dyn Fn(&Value) -> Result<Value> + Send + Sync + 'a;

/// Which half of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Half {
    /// The main resource: everything but `status` (for kinds with a status subresource).
    Main,
    /// The status subresource: only `status`.
    Status,
}

/// Reads the object, applies `mutate`, and writes the result if the key is unchanged since
/// the read; retries on a race unless the client pinned a `resourceVersion`. The write is
/// recorded in `managedFields` for the query's field manager (with subresource `status` for
/// [`Half::Status`]), if any.
pub(super) async fn update_object<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    namespace: &str,
    name: &str,
    half: Half,
    q: &Query,
    mutate: &Mutation<'_>,
) -> Result<Value> {
    update_tracked(shared, info, namespace, name, half, q, Track::Update, mutate).await
}

#[allow(clippy::too_many_arguments)]
async fn update_tracked<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    namespace: &str,
    name: &str,
    half: Half,
    q: &Query,
    track: Track,
    mutate: &Mutation<'_>,
) -> Result<Value> {
    let key = info.key(namespace, name);
    for _ in 0..UPDATE_RETRIES {
        let (current, cur_rev) = objects::get(&shared.store, info, &key, false)
            .await?
            .ok_or_else(|| ApiError::not_found(info, name))?;
        let mut desired = mutate(&current)?;
        check_kind(info, &mut desired)?;
        let pinned =
            meta::meta_str(&desired, "resourceVersion").filter(|rv| !rv.is_empty()).map(String::from);
        if let Some(rv) = &pinned {
            if objects::parse_resource_version(rv)? != cur_rev {
                return Err(ApiError::modified(info, name));
            }
        }
        if meta::name_of(&desired) != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta::name_of(&desired)
            )));
        }
        if info.namespaced {
            match meta::meta_str(&desired, "namespace") {
                Some(ns) if !ns.is_empty() && ns != namespace => return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                        .into(),
                )),
                _ => {}
            }
        }
        type_check(info, &desired)?;
        admission::field_warnings(info, &desired, q)?;
        let mut new = admission::prepare_update(info, &current, desired, half == Half::Status)?;
        if half == Half::Main {
            crate::authz::escalation::admit(shared, info, &new, Some(&current), q)?;
        }
        crate::priority::admit_update(shared, info, &current, &mut new).await?;
        if track == Track::Update {
            if let Some(manager) = admission::field_manager(q) {
                let subresource = (half == Half::Status).then_some("status");
                admission::record_update(info, Some(&current), &mut new, &manager, subresource);
            }
        }
        let causes = admission::validate(info, &new, Some(&current));
        if !causes.is_empty() {
            return Err(ApiError::invalid(info, name, causes));
        }
        if half == Half::Main {
            crate::limits::admit(shared, info, &mut new, Some(&current)).await?;
        }
        if same_object(&new, &current) {
            return Ok(current);
        }
        let finished =
            meta::is_deleting(&new) && meta::finalizers(&new).is_empty() && deletion_may_finish(info, &new);
        let txn = Txn::new().when(Compare::mod_revision(key.as_bytes().to_vec(), cur_rev));
        let txn = if finished {
            delete_ops(txn, info, &key, &current)
        } else {
            let txn = txn.success(Op::put(key.as_bytes().to_vec(), objects::encode(info, &new)?));
            if half == Half::Main {
                crate::quota::charge(shared, info, &new, Some(&current)).await?.add_to(txn)
            } else {
                txn
            }
        };
        if let Some(stored) = commit(shared, txn, new, q.dry_run).await? {
            return Ok(stored);
        }
        // Lost a race: try again on the new version. A resourceVersion the client pinned (an
        // update's body, or one a patch sets) no longer matches it and fails above; a patch
        // that pins nothing inherits the new version and applies, as kube-apiserver's does.
    }
    Err(ApiError::conflict(info, name, "too many concurrent writes; try again"))
}

/// Whether two versions of an object differ only in `resourceVersion` and the times of their
/// `managedFields` entries (a no-op write: kube-apiserver keeps the old times then).
fn same_object(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
                for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                    e.remove("time");
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// Namespaces also wait for `spec.finalizers`.
fn deletion_may_finish(info: &ResourceInfo, obj: &Value) -> bool {
    if info.group.is_empty() && info.kind == "Namespace" {
        return obj.pointer("/spec/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty);
    }
    true
}

pub(super) async fn update<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    req: &ApiRequest,
    n: Negotiated,
) -> Result<Response> {
    let body = decode_object(info, req)?;
    let ns = req.namespace().unwrap_or("");
    let q = client_query(req)?;
    let updated = update_object(shared, info, ns, req.name(), Half::Main, &q, &|_| Ok(body.clone())).await?;
    Ok(object_response(StatusCode::OK, info, updated, n, &req.query))
}

pub(super) async fn patch<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    req: &ApiRequest,
    n: Negotiated,
) -> Result<Response> {
    let q = client_query(req)?;
    let patch = crate::patch::Patch::decode(req.content_type(), &req.body, &q)?;
    if let crate::patch::Patch::Apply(config) = &patch {
        return server_side_apply(shared, info, req, n, &q, config).await;
    }
    let ns = req.namespace().unwrap_or("");
    let apply = |cur: &Value| patch.apply(info, cur);
    let patched = update_object(shared, info, ns, req.name(), Half::Main, &q, &apply).await?;
    Ok(object_response(StatusCode::OK, info, patched, n, &req.query))
}

/// `application/apply-patch+yaml`: applies the configuration with field ownership, creating
/// the object when it does not exist.
async fn server_side_apply<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    req: &ApiRequest,
    n: Negotiated,
    q: &Query,
    config: &Value,
) -> Result<Response> {
    let manager = q.field_manager.clone().unwrap_or_default();
    let ns = req.namespace().unwrap_or("");
    let name = req.name();
    let time = meta::now_rfc3339();
    let apply = |cur: &Value| crate::patch::server_side_apply(info, cur, config, &manager, q.force, &time);
    match update_tracked(shared, info, ns, name, Half::Main, q, Track::Applied, &apply).await {
        Err(ApiError::NotFound { .. }) => {
            let mut live = json!({"metadata": {"name": name}});
            if info.namespaced {
                live["metadata"]["namespace"] = json!(ns);
            }
            let mut obj = crate::patch::server_side_apply(info, &live, config, &manager, q.force, &time)?;
            check_kind(info, &mut obj)?;
            if meta::name_of(&obj) != name {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta::name_of(&obj)
                )));
            }
            let created = create_tracked(shared, info, req.namespace(), obj, q, Track::Applied).await?;
            Ok(object_response(StatusCode::CREATED, info, created, n, &req.query))
        }
        result => Ok(object_response(StatusCode::OK, info, result?, n, &req.query)),
    }
}

/// `DeleteOptions` from the body and the query.
#[derive(Debug, Clone, Default)]
pub(super) struct DeleteOptions {
    pub(super) grace_period: Option<i64>,
    pub(super) propagation: Option<String>,
    pub(super) precondition_uid: Option<String>,
    pub(super) precondition_rv: Option<String>,
    pub(super) dry_run: bool,
}

impl DeleteOptions {
    pub(super) fn from_request(req: &ApiRequest) -> Result<Self> {
        let mut o = DeleteOptions {
            grace_period: req.query.grace_period_seconds,
            propagation: req.query.propagation_policy.clone(),
            dry_run: req.query.dry_run,
            ..Default::default()
        };
        if !req.body.iter().all(u8::is_ascii_whitespace) {
            let body = codec::decode_body(req.content_type(), &req.body)?;
            o.merge_body(&body);
        }
        o.check()
    }

    /// Takes what a `DeleteOptions` object sets (a delete's body, an Eviction's
    /// `deleteOptions`) over the query's values.
    pub(super) fn merge_body(&mut self, body: &Value) {
        let o = self;
        if let Some(g) = body.get("gracePeriodSeconds").and_then(Value::as_i64) {
            o.grace_period = Some(g);
        }
        if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
            o.propagation = Some(p.to_string());
        }
        if body.get("orphanDependents").and_then(Value::as_bool) == Some(true) && o.propagation.is_none() {
            o.propagation = Some("Orphan".into());
        }
        o.precondition_uid = body.pointer("/preconditions/uid").and_then(Value::as_str).map(String::from);
        o.precondition_rv =
            body.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(String::from);
        if body.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|d| d == "All")) {
            o.dry_run = true;
        }
    }

    /// Rejects an unknown `propagationPolicy`.
    pub(super) fn check(self) -> Result<Self> {
        let o = self;
        match o.propagation.as_deref() {
            None | Some("Orphan" | "Background" | "Foreground") => Ok(o),
            Some(p) => Err(ApiError::BadRequest(format!(
                "propagationPolicy {p:?} is invalid: supported values: \"Orphan\", \"Background\", \"Foreground\""
            ))),
        }
    }
}

pub(super) async fn delete<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    req: &ApiRequest,
    n: Negotiated,
) -> Result<Response> {
    let opts = DeleteOptions::from_request(req)?;
    let (code, body) = delete_object(shared, info, req.namespace().unwrap_or(""), req.name(), &opts).await?;
    Ok(match body {
        Deleted::Object(obj) => object_response(code, info, obj, n, &req.query),
        Deleted::Status(status) => codec::respond(code, &status, n.format),
    })
}

/// What a delete answers with.
pub(super) enum Deleted {
    Object(Value),
    Status(Value),
}

/// Kinds whose delete answers with the object rather than a Status.
fn returns_deleted_object(info: &ResourceInfo) -> bool {
    matches!(
        (info.group, info.kind),
        ("", "Pod" | "Namespace" | "Service" | "Node") | ("apiextensions.k8s.io", _)
    )
}

pub(super) async fn delete_object<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    namespace: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(StatusCode, Deleted)> {
    let key = info.key(namespace, name);
    for _ in 0..UPDATE_RETRIES {
        let (current, cur_rev) = objects::get(&shared.store, info, &key, false)
            .await?
            .ok_or_else(|| ApiError::not_found(info, name))?;
        let uid = meta::meta_str(&current, "uid").unwrap_or("").to_string();
        if let Some(want) = &opts.precondition_uid {
            if *want != uid {
                return Err(ApiError::conflict(
                    info,
                    name,
                    format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"),
                ));
            }
        }
        if let Some(want) = &opts.precondition_rv {
            if objects::parse_resource_version(want)? != cur_rev {
                return Err(ApiError::conflict(
                    info,
                    name,
                    format!(
                        "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {cur_rev}"
                    ),
                ));
            }
        }
        let pending =
            admission::prepare_delete(info, &current, opts.grace_period, opts.propagation.as_deref());
        let txn = Txn::new().when(Compare::mod_revision(key.as_bytes().to_vec(), cur_rev));
        let (txn, code, answer) = match pending {
            Some(marked) if same_object(&marked, &current) => {
                return Ok((StatusCode::OK, Deleted::Object(current)));
            }
            Some(marked) => {
                let txn = txn.success(Op::put(key.as_bytes().to_vec(), objects::encode(info, &marked)?));
                let code = if opts.propagation.as_deref() == Some("Foreground") {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::OK
                };
                (txn, code, Deleted::Object(marked))
            }
            None => {
                let txn = delete_ops(txn, info, &key, &current);
                let answer = if returns_deleted_object(info) {
                    Deleted::Object(current.clone())
                } else {
                    Deleted::Status(super::success_status(info, name, Some(&uid)))
                };
                (txn, StatusCode::OK, answer)
            }
        };
        if opts.dry_run {
            return Ok((code, answer));
        }
        let resp = shared.store.txn(txn).await?;
        if resp.succeeded {
            let answer = match answer {
                Deleted::Object(mut o) => {
                    objects::set_resource_version(&mut o, resp.revision);
                    Deleted::Object(o)
                }
                status => status,
            };
            return Ok((code, answer));
        }
    }
    Err(ApiError::conflict(info, name, "too many concurrent writes; try again"))
}

pub(super) async fn delete_collection<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    req: &ApiRequest,
    n: Negotiated,
) -> Result<Response> {
    let opts = DeleteOptions::from_request(req)?;
    let filter = Filter::new(info, &req.query)?;
    let mut q = req.query.clone();
    q.limit = None;
    q.continue_token = None;
    let page = read_page(shared, info, &info.list_prefix(req.namespace()), &filter, &q).await?;
    let mut deleted = Vec::new();
    for obj in page.items {
        let ns = meta::meta_str(&obj, "namespace").unwrap_or("").to_string();
        match delete_object(shared, info, &ns, meta::name_of(&obj), &opts).await {
            Ok((_, Deleted::Object(o))) => deleted.push(o),
            Ok((_, Deleted::Status(_))) => deleted.push(obj),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "kind": info.list_kind(),
        "apiVersion": info.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": deleted,
    });
    Ok(codec::respond(StatusCode::OK, &body, n.format))
}
