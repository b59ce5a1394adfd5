//! The LimitRanger admission plugin and the LimitRange kind.
//!
//! A new pod gets the `default` limits and `defaultRequest` requests of its namespace's
//! LimitRanges (type `Container`) on every container that does not set them, noted in the
//! `kubernetes.io/limit-ranger` annotation; then pods (on create) and PersistentVolumeClaims
//! (on create and update) are checked against `min`, `max` and `maxLimitRequestRatio`, and a
//! violation is forbidden with kube-apiserver's message. LimitRange objects get upstream's
//! defaults (`default` from `max`, `defaultRequest` from `default` or `min`) and validation.

use std::collections::BTreeSet;

use corten_schema::quantity::Quantity;
use corten_store::{KeyRange, RangeRequest, Store};
use serde_json::{json, Value};

use crate::error::{ApiError, Cause, Result};
use crate::meta;
use crate::registry::ResourceInfo;
use crate::{objects, Shared};
use corten_schema::resources::{self, container_list, ResourceList};

/// The annotation naming what LimitRanger set on a pod.
const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The largest value whose milli-value still fits an int64 (`resource.MaxMilliValue`).
const MAX_MILLI_VALUE: i128 = (i64::MAX / 1000) as i128;

fn is_pod(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Pod"
}

fn is_pvc(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "PersistentVolumeClaim"
}

/// Admits a pod or PersistentVolumeClaim write (`old` is the stored object of an update):
/// applies container defaults to a new pod, then enforces every LimitRange of the namespace.
/// Pod updates are not checked (their resources cannot change), as upstream.
pub(crate) async fn admit<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<()> {
    let pod = is_pod(info) && old.is_none();
    if !(pod || is_pvc(info)) {
        return Ok(());
    }
    let namespace = meta::meta_str(obj, "namespace").unwrap_or("").to_string();
    let ranges = limit_ranges(shared, &namespace).await?;
    if ranges.is_empty() {
        return Ok(());
    }
    if pod {
        for range in &ranges {
            apply_defaults(range, obj);
        }
    }
    for range in &ranges {
        let errors = if pod { validate_pod(range, obj) } else { validate_pvc(range, obj) };
        if !errors.is_empty() {
            return Err(forbidden(info, obj, &aggregate(&errors)));
        }
    }
    Ok(())
}

async fn limit_ranges<S: Store>(shared: &Shared<S>, namespace: &str) -> Result<Vec<Value>> {
    let info = shared
        .registry
        .get("", "v1", "limitranges")
        .ok_or_else(|| ApiError::Internal("limitranges are not served".into()))?;
    let prefix = info.list_prefix(Some(namespace));
    let resp = shared.store.range(RangeRequest::new(KeyRange::Prefix(prefix.into_bytes()))).await?;
    resp.kvs.iter().map(|kv| objects::decode(info, kv)).collect()
}

/// `pods "x" is forbidden: why`, named like admission names an object.
pub(crate) fn forbidden(info: &ResourceInfo, obj: &Value, why: &str) -> ApiError {
    let name = Some(meta::name_of(obj))
        .filter(|n| !n.is_empty())
        .or_else(|| meta::meta_str(obj, "generateName").filter(|n| !n.is_empty()))
        .unwrap_or("Unknown");
    ApiError::Forbidden(format!("{} \"{name}\" is forbidden: {why}", info.qualified()))
}

/// Several errors as one message, like `utilerrors.NewAggregate`: duplicates dropped, more
/// than one in brackets.
fn aggregate(errors: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    match seen.as_slice() {
        [one] => (*one).to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn items(range: &Value) -> impl Iterator<Item = &Value> {
    range.pointer("/spec/limits").and_then(Value::as_array).into_iter().flatten()
}

fn item_type(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Sets each container's missing limits and requests from the range's `Container` items.
fn apply_defaults(range: &Value, pod: &mut Value) {
    let (mut limits, mut requests) = (serde_json::Map::new(), serde_json::Map::new());
    for item in items(range).filter(|i| item_type(i) == "Container") {
        for (field, into) in [("defaultRequest", &mut requests), ("default", &mut limits)] {
            if let Some(m) = item.get(field).and_then(Value::as_object) {
                into.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    if limits.is_empty() && requests.is_empty() {
        return;
    }
    let mut notes: Vec<String> = Vec::new();
    for (field, what) in [("containers", "container"), ("initContainers", "init container")] {
        let Some(list) = pod.pointer_mut(&format!("/spec/{field}")).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in list.iter_mut().filter(|c| c.is_object()) {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            if !c.get("resources").is_some_and(Value::is_object) {
                c["resources"] = json!({});
            }
            let res = &mut c["resources"];
            let mut set = |which: &str, defaults: &serde_json::Map<String, Value>| -> Vec<String> {
                if !res.get(which).is_some_and(Value::is_object) {
                    res[which] = json!({});
                }
                let mut set = Vec::new();
                if let Some(have) = res.get_mut(which).and_then(Value::as_object_mut) {
                    for (k, v) in defaults {
                        if !have.contains_key(k) {
                            have.insert(k.clone(), v.clone());
                            set.push(k.clone());
                        }
                    }
                }
                set.sort();
                set
            };
            let set_limits = set("limits", &limits);
            let set_requests = set("requests", &requests);
            if !set_requests.is_empty() {
                notes.push(format!("{} request for {what} {name}", set_requests.join(", ")));
            }
            if !set_limits.is_empty() {
                notes.push(format!("{} limit for {what} {name}", set_limits.join(", ")));
            }
        }
    }
    if !notes.is_empty() {
        let annotations = meta::metadata_mut(pod).entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations[ANNOTATION] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
}

/// Values of a request, limit and enforced bound at a common precision (milli-units when
/// that cannot overflow), as upstream's `requestLimitEnforcedValues`.
fn comparable(req: Option<&Quantity>, lim: Option<&Quantity>, enforced: &Quantity) -> (i128, i128, i128) {
    let zero = Quantity::ZERO;
    let (req, lim) = (req.unwrap_or(&zero), lim.unwrap_or(&zero));
    if req.value() <= MAX_MILLI_VALUE && lim.value() <= MAX_MILLI_VALUE && enforced.value() <= MAX_MILLI_VALUE
    {
        (req.milli_value(), lim.milli_value(), enforced.milli_value())
    } else {
        (req.value(), lim.value(), enforced.value())
    }
}

fn min_constraint(
    ty: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let (req, lim) = (requests.get(name), limits.get(name));
    let (r, l, e) = comparable(req, lim, enforced);
    match (req, lim) {
        (None, _) => Some(format!("minimum {name} usage per {ty} is {enforced}.  No request is specified")),
        (Some(req), _) if r < e => {
            Some(format!("minimum {name} usage per {ty} is {enforced}, but request is {req}"))
        }
        (_, Some(lim)) if l < e => {
            Some(format!("minimum {name} usage per {ty} is {enforced}, but limit is {lim}"))
        }
        _ => None,
    }
}

fn max_constraint(
    ty: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let (req, lim) = (requests.get(name), limits.get(name));
    let (r, l, e) = comparable(req, lim, enforced);
    match (req, lim) {
        (_, None) => Some(format!("maximum {name} usage per {ty} is {enforced}.  No limit is specified")),
        (_, Some(lim)) if l > e => {
            Some(format!("maximum {name} usage per {ty} is {enforced}, but limit is {lim}"))
        }
        (Some(req), _) if r > e => {
            Some(format!("maximum {name} usage per {ty} is {enforced}, but request is {req}"))
        }
        _ => None,
    }
}

fn ratio_constraint(
    ty: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let (req, lim) = (requests.get(name), limits.get(name));
    let (r, l, _) = comparable(req, lim, enforced);
    if req.is_none() || r == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {ty} is {enforced}, but no request is specified or request is 0"
        ));
    }
    if lim.is_none() || l == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {ty} is {enforced}, but no limit is specified or limit is 0"
        ));
    }
    let shown = l as f64 / r as f64;
    let (observed, max) = if enforced.value() <= MAX_MILLI_VALUE {
        (shown * 1000.0, enforced.milli_value() as f64)
    } else {
        (shown, enforced.value() as f64)
    };
    (observed > max).then(|| {
        format!("{name} max limit to request ratio per {ty} is {enforced}, but provided ratio is {shown:.6}")
    })
}

/// Every min/max/ratio violation of `requests` and `limits` under `item`.
fn check_item(
    item: &Value,
    ty: &str,
    requests: &ResourceList,
    limits: &ResourceList,
    errors: &mut Vec<String>,
) {
    let bounds = |field: &str| resources::list(item.get(field));
    for (name, q) in bounds("min") {
        errors.extend(min_constraint(ty, &name, &q, requests, limits));
    }
    for (name, q) in bounds("max") {
        errors.extend(max_constraint(ty, &name, &q, requests, limits));
    }
    for (name, q) in bounds("maxLimitRequestRatio") {
        errors.extend(ratio_constraint(ty, &name, &q, requests, limits));
    }
}

fn validate_pod(range: &Value, pod: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    for item in items(range) {
        match item_type(item) {
            ty @ "Container" => {
                for field in ["containers", "initContainers"] {
                    let list = pod.pointer(&format!("/spec/{field}")).and_then(Value::as_array);
                    for c in list.into_iter().flatten() {
                        let (req, lim) = (container_list(c, "requests"), container_list(c, "limits"));
                        check_item(item, ty, &req, &lim, &mut errors);
                    }
                }
            }
            ty @ "Pod" => {
                let (req, lim) = (
                    resources::pod_containers_total(pod, "requests"),
                    resources::pod_containers_total(pod, "limits"),
                );
                check_item(item, ty, &req, &lim, &mut errors);
            }
            _ => {}
        }
    }
    errors
}

fn validate_pvc(range: &Value, pvc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let requests = resources::list(pvc.pointer("/spec/resources/requests"));
    for item in items(range).filter(|i| item_type(i) == "PersistentVolumeClaim") {
        let ty = "PersistentVolumeClaim";
        for (name, q) in resources::list(item.get("min")) {
            errors.extend(min_constraint(ty, &name, &q, &requests, &ResourceList::new()));
        }
        for (name, enforced) in resources::list(item.get("max")) {
            let req = requests.get(&name);
            let (r, _, e) = comparable(req, None, &enforced);
            match req {
                None => errors
                    .push(format!("maximum {name} usage per {ty} is {enforced}.  No request is specified")),
                Some(req) if r > e => {
                    errors.push(format!("maximum {name} usage per {ty} is {enforced}, but request is {req}"))
                }
                _ => {}
            }
        }
    }
    errors
}

/// Upstream's LimitRange defaults: for `Container` items, a missing `default` comes from `max`,
/// a missing `defaultRequest` from `default`, else from `min`.
pub fn default_limit_range(obj: &mut Value) {
    let Some(list) = obj.pointer_mut("/spec/limits").and_then(Value::as_array_mut) else { return };
    for item in list.iter_mut().filter(|i| item_type(i) == "Container") {
        let get = |item: &Value, f: &str| item.get(f).and_then(Value::as_object).cloned().unwrap_or_default();
        let (max, min) = (get(item, "max"), get(item, "min"));
        let mut default = get(item, "default");
        for (k, v) in max {
            default.entry(k).or_insert(v);
        }
        let mut default_request = get(item, "defaultRequest");
        for (k, v) in default.iter().chain(min.iter()) {
            default_request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if !default.is_empty() {
            item["default"] = Value::Object(default);
        }
        if !default_request.is_empty() {
            item["defaultRequest"] = Value::Object(default_request);
        }
    }
}

/// Upstream's LimitRange validation (`ValidateLimitRange`).
pub fn validate_limit_range(obj: &Value) -> Vec<Cause> {
    let mut c = Vec::new();
    let mut types = BTreeSet::new();
    for (i, item) in items(obj).enumerate() {
        let at = format!("spec.limits[{i}]");
        let ty = item_type(item);
        if !types.insert(ty.to_string()) {
            c.push(Cause::duplicate(format!("{at}.type"), &json!(ty)));
        }
        let fields = ["min", "max", "default", "defaultRequest", "maxLimitRequestRatio"];
        let [min, max, default, default_request, ratio] = fields.map(|f| resources::list(item.get(f)));
        for f in fields {
            for (k, v) in item.get(f).and_then(Value::as_object).into_iter().flatten() {
                if resources::quantity_of(v).is_none() {
                    c.push(Cause::invalid(
                        format!("{at}.{f}[{k}]"),
                        v,
                        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    ));
                }
            }
        }
        if ty == "Pod" {
            if !default.is_empty() {
                c.push(Cause::forbidden(
                    format!("{at}.default"),
                    "may not be specified when `type` is 'Pod'",
                ));
            }
            if !default_request.is_empty() {
                c.push(Cause::forbidden(
                    format!("{at}.defaultRequest"),
                    "may not be specified when `type` is 'Pod'",
                ));
            }
        }
        let keys: BTreeSet<&String> = min
            .keys()
            .chain(max.keys())
            .chain(default.keys())
            .chain(default_request.keys())
            .chain(ratio.keys())
            .collect();
        for k in keys {
            let path = |f: &str| format!("{at}.{f}[{k}]");
            let (mn, mx, d, dr, r) =
                (min.get(k), max.get(k), default.get(k), default_request.get(k), ratio.get(k));
            // Upstream's ordering rules: (reported field, its value, the larger side, the smaller
            // side); a cause when the larger side exceeds the smaller one.
            let orderings = [
                ("min", mn, ("min value", mn), ("max value", mx)),
                ("defaultRequest", dr, ("min value", mn), ("default request value", dr)),
                ("defaultRequest", dr, ("default request value", dr), ("max value", mx)),
                ("defaultRequest", dr, ("default request value", dr), ("default limit value", d)),
                ("default", d, ("min value", mn), ("default value", d)),
                ("default", d, ("default value", d), ("max value", mx)),
            ];
            for (field, reported, (hi_label, hi), (lo_label, lo)) in orderings {
                if let (Some(value), Some(hi), Some(lo)) = (reported, hi, lo) {
                    if hi > lo {
                        c.push(Cause::invalid(
                            path(field),
                            &json!(value.to_string()),
                            format!("{hi_label} {hi} is greater than {lo_label} {lo}"),
                        ));
                    }
                }
            }
            if let Some(r) = r {
                if r.nanos() < Quantity::from_units(1, Default::default()).nanos() {
                    c.push(Cause::invalid(
                        path("maxLimitRequestRatio"),
                        &json!(r.to_string()),
                        format!("ratio {r} is less than 1"),
                    ));
                }
                if let (Some(mn), Some(mx)) = (mn, mx) {
                    if mn.milli_value() > 0 {
                        let max_ratio = mx.milli_value() as f64 / mn.milli_value() as f64;
                        if r.milli_value() as f64 / 1000.0 > max_ratio {
                            c.push(Cause::invalid(
                                path("maxLimitRequestRatio"),
                                &json!(r.to_string()),
                                format!("ratio {r} is greater than max/min = {max_ratio:.6}"),
                            ));
                        }
                    }
                }
            }
        }
        if ty == "PersistentVolumeClaim" && !min.contains_key("storage") && !max.contains_key("storage") {
            let mut cause = Cause::required(format!("{at}.limits"));
            cause.message =
                "Required value: either minimum or maximum storage value is required, but neither was provided".into();
            c.push(cause);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Value {
        json!({"spec": {"limits": limits}})
    }

    #[test]
    fn defaults_fill_what_containers_leave_out_and_are_annotated() {
        let mut lr =
            range(json!([{"type": "Container", "default": {"cpu": "500m"}, "min": {"memory": "64Mi"}}]));
        default_limit_range(&mut lr);
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "app", "resources": {"limits": {"memory": "1Gi"}}},
        ]}});
        apply_defaults(&lr, &mut pod);
        let res = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(res["limits"], json!({"cpu": "500m", "memory": "1Gi"}));
        assert_eq!(res["requests"], json!({"cpu": "500m", "memory": "64Mi"}));
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container app; cpu limit for container app"
        );
    }

    #[test]
    fn violations_read_like_upstream() {
        let lr = range(json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "100Mi"},
            "maxLimitRequestRatio": {"cpu": "2"}}]));
        let pod = json!({"spec": {"containers": [{"name": "a", "resources": {
            "limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "50Mi"}}}]}});
        assert_eq!(
            validate_pod(&lr, &pod),
            vec![
                "minimum memory usage per Container is 100Mi, but request is 50Mi",
                "maximum cpu usage per Container is 1, but limit is 2",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
            ]
        );
        assert_eq!(aggregate(&["a".into(), "a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }

    #[test]
    fn limit_ranges_must_be_consistent() {
        let lr = range(json!([{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]));
        let causes = validate_limit_range(&lr);
        assert_eq!(causes[0].field, "spec.limits[0].min[cpu]");
        assert_eq!(causes[0].message, "Invalid value: \"2\": min value 2 is greater than max value 1");
        let pvc = range(json!([{"type": "PersistentVolumeClaim"}]));
        assert_eq!(validate_limit_range(&pvc).len(), 1);
    }
}
