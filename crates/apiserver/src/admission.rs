//! Built-in admission: what the server does to every object on its way to the store. Server-owned
//! metadata (`uid`, `creationTimestamp`, `generation`, `deletionTimestamp`), the spec/status
//! split of kinds with a status subresource, defaults and validation of the built-in kinds,
//! unknown-field checks (`fieldValidation`), and field ownership (`metadata.managedFields`) of
//! writes other than server-side apply.

use corten_schema::{field_set_of, FieldManager, FieldSet, ManagedFields};
use serde_json::{json, Map, Value};

use crate::error::{ApiError, Cause, Result};
use crate::meta::{self, metadata_mut};
use crate::registry::ResourceInfo;
use crate::request::{FieldValidation, Query};
use crate::{defaults, validation};

/// Metadata fields only the server sets.
const SERVER_OWNED: &[&str] =
    &["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"];

/// Whether the kind counts spec changes in `metadata.generation`.
fn has_generation(obj: &Value) -> bool {
    obj.get("spec").is_some()
}

/// Prepares a new object: server-owned metadata, initial status, defaults.
pub fn prepare_create(info: &ResourceInfo, mut obj: Value) -> Result<Value> {
    let m = metadata_mut(&mut obj);
    for f in SERVER_OWNED.iter().chain(["resourceVersion", "selfLink"].iter()) {
        m.remove(*f);
    }
    m.insert("uid".into(), json!(meta::new_uid()));
    m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
    if info.has_subresource("status") {
        // The status of a new object is the server's to set (kube resets it on create).
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    defaults::apply(info, &mut obj);
    if info.group.is_empty() && info.kind == "Pod" {
        default_toleration_seconds(&mut obj);
    }
    if has_generation(&obj) {
        metadata_mut(&mut obj).insert("generation".into(), json!(1));
    }
    Ok(obj)
}

/// The `DefaultTolerationSeconds` admission plugin: a new pod that does not tolerate the
/// `not-ready` or `unreachable` NoExecute taint tolerates it for 300 s.
fn default_toleration_seconds(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if tolerations.is_null() {
        *tolerations = json!([]);
    }
    let Some(list) = tolerations.as_array_mut() else { return };
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let tolerated = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k.is_empty() || k == key) && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            list.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
            );
        }
    }
}

/// Prepares an update of `current` to `desired`: keeps server-owned metadata, keeps the half of
/// the object this endpoint does not own, bumps `generation` when the spec changed.
pub fn prepare_update(
    info: &ResourceInfo,
    current: &Value,
    mut desired: Value,
    status_only: bool,
) -> Result<Value> {
    let splits_status = info.has_subresource("status");
    if status_only {
        // The status endpoint changes only `status`: everything else stays as stored.
        let mut new = current.clone();
        match desired.get_mut("status").map(Value::take) {
            Some(status) => new["status"] = status,
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        return Ok(new);
    }
    let cur_meta = current.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    let m = metadata_mut(&mut desired);
    for f in SERVER_OWNED {
        match cur_meta.get(*f) {
            Some(v) => m.insert((*f).into(), v.clone()),
            None => m.remove(*f),
        };
    }
    m.remove("selfLink");
    // An object being deleted may lose finalizers but not gain new ones.
    if meta::is_deleting(current) {
        let old: Vec<String> = meta::finalizers(current);
        let new = meta::finalizers(&desired);
        if let Some(added) = new.iter().find(|f| !old.contains(f)) {
            return Err(ApiError::Forbidden(format!(
                "no new finalizers can be added if the object is being deleted, found new finalizers [\"{added}\"]"
            )));
        }
    }
    if splits_status {
        match current.get("status") {
            Some(s) => desired["status"] = s.clone(),
            None => {
                if let Some(o) = desired.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    defaults::apply(info, &mut desired);
    if has_generation(&desired) && desired.get("spec") != current.get("spec") {
        let generation = current.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        metadata_mut(&mut desired).insert("generation".into(), json!(generation));
    }
    Ok(desired)
}

/// How a delete proceeds: `Some(object)` marks it for deletion (finalizers or a grace period
/// pending) and stores that; `None` removes it now.
pub fn prepare_delete(
    info: &ResourceInfo,
    current: &Value,
    grace_period: Option<i64>,
    propagation: Option<&str>,
) -> Option<Value> {
    let mut obj = current.clone();
    let mut finalizers = meta::finalizers(current);
    match propagation {
        Some("Orphan") => add_finalizer(&mut finalizers, "orphan"),
        Some("Foreground") => add_finalizer(&mut finalizers, "foregroundDeletion"),
        _ => {}
    }
    let is_namespace = info.group.is_empty() && info.kind == "Namespace";
    let ns_finalizers = is_namespace
        && current.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    let grace = graceful_period(info, current, grace_period);
    if finalizers.is_empty() && !ns_finalizers && grace.is_none() {
        return None;
    }
    let already = meta::is_deleting(current);
    let m = metadata_mut(&mut obj);
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), json!(finalizers));
    }
    if !already {
        let seconds = grace.unwrap_or(0);
        let at = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(seconds)).ok();
        let at = at.and_then(|t| jiff::Timestamp::from_second(t.as_second()).ok()).map(|t| t.to_string());
        m.insert("deletionTimestamp".into(), json!(at.unwrap_or_else(meta::now_rfc3339)));
        m.insert("deletionGracePeriodSeconds".into(), json!(seconds));
        if let Some(g) = m.get("generation").and_then(Value::as_i64) {
            m.insert("generation".into(), json!(g + 1));
        }
    } else if let Some(g) = grace {
        // A shorter grace period on a second delete shortens the countdown.
        let current_grace = m.get("deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(i64::MAX);
        if g < current_grace {
            m.insert("deletionGracePeriodSeconds".into(), json!(g));
        }
    }
    if is_namespace {
        obj["status"] = json!({"phase": "Terminating"});
    }
    Some(obj)
}

fn add_finalizer(list: &mut Vec<String>, f: &str) {
    if !list.iter().any(|x| x == f) {
        list.push(f.to_string());
    }
}

/// The grace period of a graceful delete: only pods bound to a node get one (the kubelet ends
/// them and then deletes the pod with grace 0); `None` deletes at once.
fn graceful_period(info: &ResourceInfo, pod: &Value, requested: Option<i64>) -> Option<i64> {
    if !(info.group.is_empty() && info.kind == "Pod") {
        return None;
    }
    let bound = pod.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending");
    if !bound || matches!(phase, "Succeeded" | "Failed") {
        return None;
    }
    let default = pod.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
    // Grace 0 (`kubectl delete --force --grace-period=0`) removes the pod at once.
    Some(requested.unwrap_or(default)).filter(|g| *g > 0)
}

/// Validates an object (and, for updates, the transition from `old`).
pub fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = validate_metadata(obj);
    causes.extend(validation::validate(info, obj, old));
    causes
}

fn validate_metadata(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for field in ["labels", "annotations"] {
        if let Some(map) = obj.pointer(&format!("/metadata/{field}")) {
            match map.as_object() {
                Some(m) => causes.extend(validate_string_map(field, m)),
                None => {
                    causes.push(Cause::invalid(format!("metadata.{field}"), map, "must be a map of strings"))
                }
            }
        }
    }
    causes
}

fn validate_string_map(field: &str, m: &Map<String, Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (k, v) in m {
        let path = format!("metadata.{field}");
        let key_ok = {
            let (prefix, name) = k.rsplit_once('/').map_or((None, k.as_str()), |(p, n)| (Some(p), n));
            !name.is_empty()
                && name.len() <= 63
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name.ends_with(|c: char| c.is_ascii_alphanumeric())
                && prefix.is_none_or(meta::is_dns1123_subdomain)
        };
        if !key_ok {
            causes.push(Cause::invalid(
                &path,
                &json!(k),
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ));
        }
        if field == "labels" {
            let s = v.as_str().unwrap_or("");
            let ok = v.is_string()
                && (s.is_empty()
                    || (s.len() <= 63
                        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                        && s.ends_with(|c: char| c.is_ascii_alphanumeric())));
            if !ok {
                causes.push(Cause::invalid(
                    &path,
                    v,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                ));
            }
        }
    }
    causes
}

/// Unknown and duplicate fields for `fieldValidation`: `Strict` turns them into a 400; `Warn`
/// returns them as warnings for the response; `Ignore` drops them.
pub fn field_warnings(info: &ResourceInfo, obj: &Value, q: &Query) -> Result<Vec<String>> {
    if q.field_validation == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let unknown: Vec<String> = crate::schema::unknown_fields(info, obj)
        .into_iter()
        .map(|path| format!("unknown field \"{path}\""))
        .collect();
    if q.field_validation == FieldValidation::Strict && !unknown.is_empty() {
        return Err(ApiError::BadRequest(format!("strict decoding error: {}", unknown.join(", "))));
    }
    Ok(unknown)
}

/// The longest field manager name kube-apiserver accepts.
const FIELD_MANAGER_MAX_LEN: usize = 128;

/// The field manager of a write: the `fieldManager` parameter, else the product name of the
/// client's User-Agent (`kubectl/v1.33.0 (linux/amd64) kubernetes/abc` gives `kubectl`), as
/// kube-apiserver derives it. `None` for the server's own writes (no User-Agent recorded).
pub fn field_manager(q: &Query) -> Option<String> {
    if let Some(m) = &q.field_manager {
        return Some(m.clone());
    }
    let ua = q.user_agent.as_deref()?;
    let product = ua.split('/').next().unwrap_or("");
    let mut out = String::new();
    for c in product.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > FIELD_MANAGER_MAX_LEN {
            break;
        }
        out.push(c);
    }
    Some(out)
}

/// Checks the `fieldManager` parameter as kube-apiserver does.
pub fn check_field_manager(q: &Query) -> Result<()> {
    match &q.field_manager {
        Some(m) if m.len() > FIELD_MANAGER_MAX_LEN => Err(ApiError::BadRequest(format!(
            "fieldManager: Too long: may not be more than {FIELD_MANAGER_MAX_LEN} bytes"
        ))),
        Some(m) if m.chars().any(char::is_control) => Err(ApiError::BadRequest(format!(
            "fieldManager: Invalid value: {m:?}: must only contain printable characters"
        ))),
        _ => Ok(()),
    }
}

/// Fields a write through the main resource (`status: false`) or the status subresource does
/// not own: the main resource of a kind with a status subresource leaves `status` alone (the
/// status endpoint changes nothing else, so it needs no such set).
pub fn ignored_fields(info: &ResourceInfo, status: bool) -> FieldSet {
    if !status && info.has_subresource("status") {
        field_set_of(&[&["status"]])
    } else {
        FieldSet::new()
    }
}

/// Records a create (`current` is `None`), update or non-apply patch in `new`'s
/// `metadata.managedFields`: the fields it changed become `manager`'s `Update` entry.
/// `subresource` is the subresource written through (`status`).
pub fn record_update(
    info: &ResourceInfo,
    current: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
) {
    let empty = json!({});
    let old = current.unwrap_or(&empty);
    let base = ManagedFields::for_update(old, new, subresource.is_some());
    let api_version = info.api_version();
    let time = meta::now_rfc3339();
    let fm = FieldManager {
        ty: crate::schema::type_of(info),
        manager,
        subresource,
        api_version: &api_version,
        time: &time,
        ignored: ignored_fields(info, subresource == Some("status")),
    };
    fm.update(old, new, base).write_to(new);
}
