//! The `pods/eviction` subresource (`POST` a `policy/v1` or `policy/v1beta1` Eviction), the way
//! kube-apiserver's `EvictionREST` answers it: a pod that is finished, pending or already
//! terminating is deleted at once; otherwise the one PodDisruptionBudget that selects it must
//! allow a disruption, which is taken from its `status.disruptionsAllowed` and recorded in its
//! `status.disruptedPods` (a compare-and-swap on the budget, retried on a race) before the pod is
//! marked `DisruptionTarget` and deleted with the Eviction's `deleteOptions`.

use axum::http::StatusCode;
use axum::response::Response;
use corten_store::{Compare, Op, RangeRequest, Store, Txn};
use serde_json::{json, Value};

use super::write::{delete_object, update_object, DeleteOptions, Half};
use super::ApiRequest;
use crate::codec::{self, Negotiated};
use crate::error::{ApiError, Result};
use crate::meta;
use crate::objects;
use crate::registry::ResourceInfo;
use crate::request::Query;
use crate::Shared;

/// How often an eviction retries after a write race on the pod or the budget (upstream
/// `EvictionsRetry` has 20 steps).
const RETRIES: usize = 20;
/// More entries than this in `status.disruptedPods` mean the disruption controller is behind
/// (upstream `MaxDisruptedPodSize`).
const MAX_DISRUPTED_PODS: usize = 2000;
/// The message of every eviction a budget refuses.
const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";
/// The `details.causes[].reason` naming the budget (`policyv1.DisruptionBudgetCause`).
const DISRUPTION_BUDGET_CAUSE: &str = "DisruptionBudget";

/// Serves `POST .../pods/<name>/eviction`; `info` is the pods resource.
pub(super) async fn evict<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    req: &ApiRequest,
    n: Negotiated,
) -> Result<Response> {
    let ns = req.namespace().unwrap_or("").to_string();
    let name = req.name().to_string();
    let eviction = codec::decode_body(req.content_type(), &req.body)?;
    check_eviction(&eviction)?;
    if meta::name_of(&eviction) != name {
        return Err(ApiError::BadRequest("name in URL does not match name in Eviction object".into()));
    }
    let mut options = DeleteOptions { dry_run: req.query.dry_run, ..DeleteOptions::default() };
    if let Some(body) = eviction.get("deleteOptions").filter(|d| d.is_object()) {
        options.merge_body(body);
    }
    let options = options.check()?;
    // A resourceVersion the client pinned is honoured as is: no retry on a conflict.
    let client_pinned = options.precondition_rv.is_some();

    // Pods that cannot count towards a budget are deleted without looking at one.
    let mut attempt = 0;
    let pod = loop {
        attempt += 1;
        let (pod, _) = objects::get(&shared.store, info, &info.key(&ns, &name), false)
            .await?
            .ok_or_else(|| ApiError::not_found(info, &name))?;
        if !can_ignore_budget(&pod) {
            break pod;
        }
        let mut opts = options.clone();
        if pins_resource_version(&pod) && opts.precondition_rv.is_none() {
            opts.precondition_rv = meta::meta_str(&pod, "resourceVersion").map(String::from);
        }
        match mark_and_delete(shared, info, &ns, &name, opts).await {
            Ok(()) => return Ok(success(n)),
            Err(ApiError::Conflict { .. }) if !client_pinned && attempt < RETRIES => continue,
            Err(e) => return Err(e),
        }
    };

    let pdb_info = shared
        .registry
        .get("policy", "v1", "poddisruptionbudgets")
        .cloned()
        .ok_or_else(|| ApiError::Internal("policy/v1 poddisruptionbudgets are not served".into()))?;
    let budgets = budgets_of(shared, &pdb_info, &ns, &pod).await?;
    if budgets.len() > 1 {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            "code": 500,
        });
        // Like kube-apiserver: the Status is the result of a successful create, its code says 500.
        return Ok(codec::respond(StatusCode::CREATED, &status, n.format));
    }
    let mut pin = false;
    let mut budget_name = String::new();
    if let Some(pdb) = budgets.first() {
        budget_name = meta::name_of(pdb).to_string();
        if !is_ready(&pod) && may_evict_unhealthy(pdb) {
            // An unready pod does not count as healthy: no disruption is used up, but the delete
            // is pinned to this version of the pod so it cannot have become ready meanwhile.
            pin = true;
        } else {
            take_disruption(shared, &pdb_info, &ns, &budget_name, &name, options.dry_run).await?;
        }
    }

    let mut opts = options.clone();
    if pin {
        opts.precondition_rv = meta::meta_str(&pod, "resourceVersion").map(String::from);
    }
    match mark_and_delete(shared, info, &ns, &name, opts).await {
        Ok(()) => Ok(success(n)),
        Err(ApiError::Conflict { .. }) if pin && !client_pinned => Err(not_processed(&budget_name)),
        Err(e) => Err(e),
    }
}

/// Accepts an Eviction of `policy/v1` or `policy/v1beta1` (or one naming neither, typed by the
/// path).
fn check_eviction(eviction: &Value) -> Result<()> {
    if !eviction.is_object() {
        return Err(ApiError::BadRequest("the body of the request must be an Eviction object".into()));
    }
    match eviction.get("apiVersion").and_then(Value::as_str) {
        None | Some("" | "policy/v1" | "policy/v1beta1") => {}
        Some(v) => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version (policy/v1)"
            )))
        }
    }
    match eviction.get("kind").and_then(Value::as_str) {
        None | Some("" | "Eviction") => Ok(()),
        Some(k) => Err(ApiError::BadRequest(format!(
            "the kind in the data ({k}) does not match the expected kind (Eviction)"
        ))),
    }
}

/// The `201 Created` Status of a successful eviction.
fn success(n: Negotiated) -> Response {
    let status =
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    codec::respond(StatusCode::CREATED, &status, n.format)
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

/// Finished, pending and terminating pods are deleted without a budget check (upstream
/// `canIgnorePDB`).
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || meta::is_deleting(pod)
}

/// Whether the delete of a pod that skips the budget is pinned to its resourceVersion: all but
/// finished and terminating pods, which cannot become ready any more.
fn pins_resource_version(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !meta::is_deleting(pod)
}

/// Whether the pod's Ready condition is True.
fn is_ready(pod: &Value) -> bool {
    let conditions = pod.pointer("/status/conditions").and_then(Value::as_array);
    conditions.into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Whether the budget lets an unready pod go without using up a disruption: always with
/// `unhealthyPodEvictionPolicy: AlwaysAllow`, else (`IfHealthyBudget`, the default) while the
/// application has the healthy pods it needs.
fn may_evict_unhealthy(pdb: &Value) -> bool {
    if pdb.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str) == Some("AlwaysAllow") {
        return true;
    }
    let count = |f: &str| pdb.pointer(&format!("/status/{f}")).and_then(Value::as_i64).unwrap_or(0);
    count("currentHealthy") >= count("desiredHealthy") && count("desiredHealthy") > 0
}

/// The budgets in `ns` whose selector selects the pod; an empty or invalid selector selects
/// nothing.
async fn budgets_of<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    ns: &str,
    pod: &Value,
) -> Result<Vec<Value>> {
    let prefix = info.list_prefix(Some(ns));
    let resp = shared.store.range(RangeRequest::prefix(prefix.into_bytes())).await?;
    let labels = pod.pointer("/metadata/labels");
    let mut found = Vec::new();
    for kv in &resp.kvs {
        let pdb = objects::decode(info, kv)?;
        if pdb.pointer("/spec/selector").is_some_and(|s| selects(s, labels)) {
            found.push(pdb);
        }
    }
    Ok(found)
}

/// Whether a LabelSelector selects `labels`; `false` for an empty or invalid selector.
fn selects(selector: &Value, labels: Option<&Value>) -> bool {
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let match_labels = selector.get("matchLabels").and_then(Value::as_object);
    let expressions = selector.get("matchExpressions").and_then(Value::as_array);
    if match_labels.is_none_or(|m| m.is_empty()) && expressions.is_none_or(|e| e.is_empty()) {
        return false;
    }
    for (k, v) in match_labels.into_iter().flatten() {
        if label(k) != v.as_str() {
            return false;
        }
    }
    for e in expressions.into_iter().flatten() {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let ok = match e.get("operator").and_then(Value::as_str) {
            Some("In") if !values.is_empty() => label(key).is_some_and(|v| values.contains(&v)),
            Some("NotIn") if !values.is_empty() => label(key).is_none_or(|v| !values.contains(&v)),
            Some("Exists") if values.is_empty() => label(key).is_some(),
            Some("DoesNotExist") if values.is_empty() => label(key).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The 429 of a budget whose status is behind its spec (or that a racing write made stale).
fn not_processed(budget: &str) -> ApiError {
    ApiError::TooManyRequests {
        message: REFUSED.into(),
        causes: vec![(
            DISRUPTION_BUDGET_CAUSE,
            format!("The disruption budget {budget} is still being processed by the server."),
        )],
        retry_after: 10,
    }
}

/// Takes one disruption from the budget `name` for the pod `pod` (upstream `checkAndDecrement`),
/// retrying when another write to the budget races this one; a dry run only checks.
async fn take_disruption<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    ns: &str,
    name: &str,
    pod: &str,
    dry_run: bool,
) -> Result<()> {
    let key = info.key(ns, name);
    for _ in 0..RETRIES {
        let (current, revision) = objects::get(&shared.store, info, &key, false)
            .await?
            .ok_or_else(|| ApiError::not_found(info, name))?;
        let updated = decrement(&current, pod, &meta::now_rfc3339())?;
        if dry_run {
            return Ok(());
        }
        let txn = Txn::new()
            .when(Compare::mod_revision(key.as_bytes().to_vec(), revision))
            .success(Op::put(key.as_bytes().to_vec(), objects::encode(info, &updated)?));
        if shared.store.txn(txn).await?.succeeded {
            return Ok(());
        }
    }
    Err(ApiError::conflict(
        info,
        name,
        format!("couldn't update PodDisruptionBudget {name:?} due to conflicts"),
    ))
}

/// The budget with one disruption less and `pod` recorded as disrupted at `now`, or why the
/// budget refuses.
fn decrement(pdb: &Value, pod: &str, now: &str) -> Result<Value> {
    let name = meta::name_of(pdb);
    let status = |f: &str| pdb.pointer(&format!("/status/{f}")).and_then(Value::as_i64).unwrap_or(0);
    let generation = pdb.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    if status("observedGeneration") < generation {
        return Err(not_processed(name));
    }
    let allowed = status("disruptionsAllowed");
    let forbidden =
        |why: &str| ApiError::Forbidden(format!("poddisruptionbudget.policy {name:?} is forbidden: {why}"));
    if allowed < 0 {
        return Err(forbidden("pdb disruptions allowed is negative"));
    }
    let disrupted = pdb.pointer("/status/disruptedPods").and_then(Value::as_object);
    if disrupted.is_some_and(|d| d.len() > MAX_DISRUPTED_PODS) {
        return Err(forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(ApiError::TooManyRequests {
            message: REFUSED.into(),
            causes: vec![(
                DISRUPTION_BUDGET_CAUSE,
                format!(
                    "The disruption budget {name} needs {} healthy pods and has {} currently",
                    status("desiredHealthy"),
                    status("currentHealthy")
                ),
            )],
            retry_after: 0,
        });
    }
    let mut new = pdb.clone();
    if !new.get("status").is_some_and(Value::is_object) {
        new["status"] = json!({});
    }
    let s = &mut new["status"];
    s["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        let observed = status("observedGeneration");
        set_condition(s, "DisruptionAllowed", "False", "InsufficientPods", observed, now);
    }
    if !s.get("disruptedPods").is_some_and(Value::is_object) {
        s["disruptedPods"] = json!({});
    }
    s["disruptedPods"][pod] = json!(now);
    Ok(new)
}

/// Sets a `metav1.Condition` in `status.conditions` like `apimeta.SetStatusCondition`: the
/// transition time changes only with the status.
fn set_condition(status: &mut Value, type_: &str, value: &str, reason: &str, observed: i64, now: &str) {
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let Some(conditions) = status["conditions"].as_array_mut() else { return };
    match conditions.iter_mut().find(|c| c["type"] == type_) {
        Some(c) => {
            if c["status"] != value {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(value);
            c["reason"] = json!(reason);
            c["message"] = json!("");
            c["observedGeneration"] = json!(observed);
        }
        None => conditions.push(json!({
            "type": type_, "status": value, "reason": reason, "message": "",
            "observedGeneration": observed, "lastTransitionTime": now,
        })),
    }
}

/// Marks the pod `DisruptionTarget` (reason `EvictionByEvictionAPI`, not for a dry run) and
/// deletes it with `options`; a resourceVersion precondition moves on to the marked version.
async fn mark_and_delete<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    ns: &str,
    name: &str,
    mut options: DeleteOptions,
) -> Result<()> {
    if !options.dry_run {
        let preconditions = (options.precondition_uid.clone(), options.precondition_rv.clone());
        let mark = |cur: &Value| {
            let (uid, rv) = &preconditions;
            let conflict = |message: String| ApiError::Conflict {
                qualified: "Pod".into(),
                group: String::new(),
                plural: "Pod".into(),
                name: name.to_string(),
                message,
            };
            let cur_uid = meta::meta_str(cur, "uid").unwrap_or("");
            if let Some(uid) = uid.as_deref().filter(|u| !u.is_empty() && *u != cur_uid) {
                return Err(conflict(format!(
                    "the UID in the precondition ({uid}) does not match the UID in record ({cur_uid}). The object might have been deleted and then recreated"
                )));
            }
            let cur_rv = meta::meta_str(cur, "resourceVersion").unwrap_or("");
            if let Some(rv) = rv.as_deref().filter(|r| !r.is_empty() && *r != cur_rv) {
                return Err(conflict(format!(
                    "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({cur_rv}). The object might have been modified"
                )));
            }
            Ok(with_disruption_target(cur))
        };
        let marked = update_object(shared, info, ns, name, Half::Status, &Query::default(), &mark).await?;
        if options.precondition_rv.is_some() {
            options.precondition_rv = meta::meta_str(&marked, "resourceVersion").map(String::from);
        }
    }
    delete_object(shared, info, ns, name, &options).await.map(drop)
}

/// The pod with the condition `DisruptionTarget=True` of an eviction (upstream
/// `UpdatePodCondition`: the transition time changes only with the status).
fn with_disruption_target(pod: &Value) -> Value {
    let mut new = pod.clone();
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    if !new.get("status").is_some_and(Value::is_object) {
        new["status"] = json!({});
    }
    let status = &mut new["status"];
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let Some(conditions) = status["conditions"].as_array_mut() else { return new };
    let now = meta::now_rfc3339();
    match conditions.iter_mut().find(|c| c["type"] == "DisruptionTarget") {
        Some(c) => {
            if c["status"] != "True" {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!("True");
            c["reason"] = json!("EvictionByEvictionAPI");
            c["message"] = json!("Eviction API: evicting");
        }
        None => conditions.push(json!({
            "type": "DisruptionTarget", "status": "True", "lastProbeTime": null, "lastTransitionTime": now,
            "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting",
        })),
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(status: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": 1}, "status": status})
    }

    #[test]
    fn a_budget_with_no_disruption_left_refuses_with_its_counts() {
        let p = pdb(
            json!({"observedGeneration": 1, "disruptionsAllowed": 0, "desiredHealthy": 2, "currentHealthy": 2}),
        );
        let e = decrement(&p, "web-1", "2026-01-01T00:00:00Z").err();
        let s = e.map(|e| e.status()).unwrap_or_default();
        assert_eq!(s["code"], 429);
        assert_eq!(s["reason"], "TooManyRequests");
        assert_eq!(s["message"], REFUSED);
        assert_eq!(s["details"]["causes"][0]["reason"], "DisruptionBudget");
        assert_eq!(
            s["details"]["causes"][0]["message"],
            "The disruption budget web needs 2 healthy pods and has 2 currently"
        );
    }

    #[test]
    fn a_budget_behind_its_generation_asks_to_retry_later() {
        let p = pdb(json!({"observedGeneration": 0, "disruptionsAllowed": 3}));
        let s = decrement(&p, "web-1", "t").err().map(|e| e.status()).unwrap_or_default();
        assert_eq!(s["code"], 429);
        assert_eq!(s["details"]["retryAfterSeconds"], 10);
    }

    #[test]
    fn taking_the_last_disruption_records_the_pod_and_flips_the_condition() -> Result<()> {
        let p = pdb(json!({"observedGeneration": 1, "disruptionsAllowed": 1,
            "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                            "message": "", "observedGeneration": 1, "lastTransitionTime": "old"}]}));
        let new = decrement(&p, "web-1", "now")?;
        assert_eq!(new["status"]["disruptionsAllowed"], 0);
        assert_eq!(new["status"]["disruptedPods"]["web-1"], "now");
        let c = &new["status"]["conditions"][0];
        assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("False"), Some("InsufficientPods")));
        assert_eq!(c["lastTransitionTime"], "now");
        Ok(())
    }

    #[test]
    fn empty_and_invalid_selectors_select_nothing() {
        let labels = json!({"app": "web", "tier": "a"});
        assert!(!selects(&json!({}), Some(&labels)));
        assert!(!selects(
            &json!({"matchExpressions": [{"key": "app", "operator": "In", "values": []}]}),
            Some(&labels)
        ));
        assert!(selects(&json!({"matchLabels": {"app": "web"}}), Some(&labels)));
        let exprs = json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["b"]},
                                                {"key": "app", "operator": "Exists"}]});
        assert!(selects(&exprs, Some(&labels)));
        assert!(!selects(&json!({"matchLabels": {"app": "db"}}), Some(&labels)));
    }

    #[test]
    fn pending_finished_and_terminating_pods_skip_the_budget() {
        assert!(can_ignore_budget(&json!({"status": {"phase": "Pending"}})));
        assert!(can_ignore_budget(&json!({"status": {"phase": "Succeeded"}})));
        assert!(can_ignore_budget(
            &json!({"metadata": {"deletionTimestamp": "x"}, "status": {"phase": "Running"}})
        ));
        assert!(!can_ignore_budget(&json!({"status": {"phase": "Running"}})));
        assert!(pins_resource_version(&json!({"status": {"phase": "Pending"}})));
        assert!(!pins_resource_version(&json!({"status": {"phase": "Failed"}})));
    }
}
