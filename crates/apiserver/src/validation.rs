//! Validation of the built-in kinds: what kube-apiserver rejects that users run into, with the
//! same field paths and wording. Type errors are caught earlier by decoding into the typed
//! struct; this is about values and transitions.

use serde_json::{json, Value};

use crate::error::Cause;
use crate::meta;
use crate::registry::ResourceInfo;

/// Validates `obj` (and the change from `old` on update).
pub fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut c = Vec::new();
    match (info.group, info.kind) {
        ("", "Pod") => {
            pod_spec(obj.get("spec"), "spec", &mut c);
            if let Some(old) = old {
                pod_update(obj, old, &mut c);
            }
        }
        ("", "ConfigMap" | "Secret") => {
            if let Some(old) = old {
                immutable_data(obj, old, &mut c);
            }
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            workload(obj, &mut c);
            if let Some(old) = old {
                unchanged(obj, old, "/spec/selector", "spec.selector", &mut c);
            }
        }
        ("batch", "Job") => {
            pod_spec(obj.pointer("/spec/template/spec"), "spec.template.spec", &mut c);
            let restart = obj.pointer("/spec/template/spec/restartPolicy").and_then(Value::as_str);
            if let Some(r) = restart.filter(|r| !matches!(*r, "OnFailure" | "Never")) {
                c.push(Cause::not_supported(
                    "spec.template.spec.restartPolicy",
                    &json!(r),
                    &["OnFailure", "Never"],
                ));
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            priority_class(obj, &mut c);
            if let Some(old) = old {
                if obj.get("value") != old.get("value") {
                    c.push(Cause::forbidden("value", "may not be changed in an update."));
                }
                unchanged(obj, old, "/preemptionPolicy", "preemptionPolicy", &mut c);
            }
        }
        ("", "Service") => {
            service(obj, &mut c);
            if let Some(old) = old {
                let set = |v: &Value| {
                    v.pointer("/spec/clusterIP").and_then(Value::as_str).is_some_and(|s| !s.is_empty())
                };
                if set(obj) && set(old) {
                    unchanged(obj, old, "/spec/clusterIP", "spec.clusterIPs[0]", &mut c);
                }
            }
        }
        ("", "LimitRange") => c.extend(crate::limits::validate_limit_range(obj)),
        _ => {}
    }
    c
}

/// The highest priority a PriorityClass outside the `system-` ones may have.
const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;

/// `system-` names are the system classes' (with their values, never the global default);
/// other classes stay at or below [`HIGHEST_USER_DEFINABLE_PRIORITY`].
fn priority_class(obj: &Value, c: &mut Vec<Cause>) {
    let name = crate::meta::name_of(obj);
    let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
    if name.starts_with("system-") {
        let known = crate::bootstrap::SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _, _)| *n == name);
        let error = match known {
            None => Some(format!("{name} is not a known system priority class")),
            Some((_, v, _)) if *v != value => Some(format!("value of {name} PriorityClass must be {v}")),
            Some(_) if obj.get("globalDefault").and_then(Value::as_bool) == Some(true) => {
                Some(format!("globalDefault of {name} PriorityClass must be false"))
            }
            Some(_) => None,
        };
        if let Some(error) = error {
            c.push(Cause::forbidden(
                "metadata.name",
                format!("priority class names with 'system-' prefix are reserved for system use only. error: {error}"),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        c.push(Cause::forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"),
        ));
    }
    if let Some(policy) = obj.get("preemptionPolicy").filter(|p| !p.is_null()) {
        if !matches!(policy.as_str(), Some("PreemptLowerPriority" | "Never")) {
            c.push(Cause::not_supported("preemptionPolicy", policy, &["PreemptLowerPriority", "Never"]));
        }
    }
}

fn unchanged(obj: &Value, old: &Value, pointer: &str, field: &str, c: &mut Vec<Cause>) {
    let new = obj.pointer(pointer);
    if new != old.pointer(pointer) {
        c.push(Cause::invalid(field, new.unwrap_or(&Value::Null), "field is immutable"));
    }
}

fn pod_spec(spec: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    let Some(spec) = spec else {
        c.push(Cause::required(format!("{path}.containers")));
        return;
    };
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(Vec::is_empty) {
        c.push(Cause::required(format!("{path}.containers")));
    }
    let mut names = Vec::new();
    for list in ["initContainers", "containers"] {
        for (i, ctr) in spec.get(list).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let at = format!("{path}.{list}[{i}]");
            match ctr.get("name").and_then(Value::as_str) {
                None | Some("") => c.push(Cause::required(format!("{at}.name"))),
                Some(n) if !meta::is_dns1123_label(n) => c.push(Cause::invalid(
                    format!("{at}.name"),
                    &json!(n),
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                )),
                Some(n) if names.contains(&n) => c.push(Cause::duplicate(format!("{at}.name"), &json!(n))),
                Some(n) => names.push(n),
            }
            if ctr.get("image").and_then(Value::as_str).is_none_or(|i| i.trim().is_empty()) {
                c.push(Cause::required(format!("{at}.image")));
            }
        }
    }
    if let Some(r) = spec.get("restartPolicy").and_then(Value::as_str) {
        if !matches!(r, "Always" | "OnFailure" | "Never") {
            c.push(Cause::not_supported(
                format!("{path}.restartPolicy"),
                &json!(r),
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
}

/// Pod updates may change only a few spec fields (kube's `ValidatePodUpdate`).
fn pod_update(obj: &Value, old: &Value, c: &mut Vec<Cause>) {
    let strip = |pod: &Value| {
        let mut spec = pod.get("spec").cloned().unwrap_or(Value::Null);
        for list in ["containers", "initContainers"] {
            for ctr in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(o) = ctr.as_object_mut() {
                    o.remove("image");
                }
            }
        }
        if let Some(o) = spec.as_object_mut() {
            for f in
                ["activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "schedulingGates"]
            {
                o.remove(f);
            }
            if old.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("").is_empty() {
                o.remove("nodeName");
            }
        }
        spec
    };
    if strip(obj) != strip(old) {
        c.push(Cause::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
}

fn immutable_data(obj: &Value, old: &Value, c: &mut Vec<Cause>) {
    if old.get("immutable") != Some(&json!(true)) {
        return;
    }
    if obj.get("immutable") != Some(&json!(true)) {
        c.push(Cause::forbidden("immutable", "field is immutable when `immutable` is set"));
    }
    for field in ["data", "binaryData", "stringData"] {
        if obj.get(field) != old.get(field) && !(field == "stringData" && obj.get(field).is_none()) {
            c.push(Cause::forbidden(field, "field is immutable when `immutable` is set"));
        }
    }
}

fn workload(obj: &Value, c: &mut Vec<Cause>) {
    let selector = obj.pointer("/spec/selector");
    let labels = obj.pointer("/spec/template/metadata/labels");
    match selector {
        None | Some(Value::Null) => c.push(Cause::required("spec.selector")),
        Some(sel) => {
            let match_labels = sel.get("matchLabels").and_then(Value::as_object);
            let exprs = sel.get("matchExpressions").and_then(Value::as_array);
            if match_labels.is_none_or(|m| m.is_empty()) && exprs.is_none_or(Vec::is_empty) {
                c.push(Cause::invalid("spec.selector", sel, "empty selector is invalid for deployment"));
            }
            let matches =
                match_labels.into_iter().flatten().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
            if !matches {
                c.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    labels.unwrap_or(&Value::Null),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    pod_spec(obj.pointer("/spec/template/spec"), "spec.template.spec", c);
    if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64) {
        if r < 0 {
            c.push(Cause::invalid("spec.replicas", &json!(r), "must be greater than or equal to 0"));
        }
    }
}

fn service(obj: &Value, c: &mut Vec<Cause>) {
    let spec = obj.get("spec");
    let ty = spec.and_then(|s| s.get("type")).and_then(Value::as_str).unwrap_or("ClusterIP");
    if !matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
        c.push(Cause::not_supported(
            "spec.type",
            &json!(ty),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let headless = spec.and_then(|s| s.get("clusterIP")).and_then(Value::as_str) == Some("None");
    let ports = spec.and_then(|s| s.get("ports")).and_then(Value::as_array);
    if ty != "ExternalName" && !headless && ports.is_none_or(Vec::is_empty) {
        c.push(Cause::required("spec.ports"));
    }
    let multi = ports.is_some_and(|p| p.len() > 1);
    let mut names = Vec::new();
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            c.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                &json!(port),
                "must be between 1 and 65535, inclusive",
            ));
        }
        match p.get("name").and_then(Value::as_str) {
            None | Some("") if multi => c.push(Cause::required(format!("spec.ports[{i}].name"))),
            Some(n) if names.contains(&n) => {
                c.push(Cause::duplicate(format!("spec.ports[{i}].name"), &json!(n)))
            }
            Some(n) => names.push(n),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn info(group: &str, plural: &str) -> ResourceInfo {
        let reg = Registry::builtin();
        reg.get(group, "v1", plural).map(|r| r.as_ref().clone()).unwrap_or_else(|| panic!("{plural}"))
    }

    #[test]
    fn system_priority_class_names_are_reserved_and_user_values_capped() {
        let pc = info("scheduling.k8s.io", "priorityclasses");
        let fields =
            |obj: Value| validate(&pc, &obj, None).into_iter().map(|c| c.message).collect::<Vec<_>>();
        assert!(
            fields(json!({"metadata": {"name": "system-node-critical"}, "value": 2_000_001_000})).is_empty()
        );
        assert_eq!(
            fields(json!({"metadata": {"name": "system-mine"}, "value": 1})),
            ["Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"]
        );
        assert_eq!(
            fields(json!({"metadata": {"name": "huge"}, "value": 1_000_000_001})),
            ["Forbidden: maximum allowed value of a user defined priority is 1000000000"]
        );
        let old = json!({"metadata": {"name": "a"}, "value": 1, "preemptionPolicy": "Never"});
        let changed = json!({"metadata": {"name": "a"}, "value": 2, "preemptionPolicy": "Never"});
        let causes = validate(&pc, &changed, Some(&old));
        assert_eq!(causes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(), ["value"]);
    }

    #[test]
    fn pods_need_containers_with_names_and_images() {
        let causes = validate(&info("", "pods"), &json!({"spec": {"containers": [{"name": "a"}]}}), None);
        assert_eq!(causes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(), ["spec.containers[0].image"]);
        let causes = validate(&info("", "pods"), &json!({"spec": {}}), None);
        assert_eq!(causes[0].field, "spec.containers");
    }

    #[test]
    fn deployment_selector_must_match_and_stay_the_same() {
        let d = |app: &str| {
            json!({"spec": {"selector": {"matchLabels": {"app": app}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
        };
        assert!(validate(&info("apps", "deployments"), &d("web"), None).is_empty());
        let bad = validate(&info("apps", "deployments"), &d("db"), None);
        assert_eq!(bad[0].field, "spec.template.metadata.labels");
        let changed = validate(&info("apps", "deployments"), &d("web"), Some(&d("other")));
        assert_eq!(changed[0].field, "spec.selector");
    }

    #[test]
    fn immutable_configmaps_cannot_change_data() {
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let new = json!({"immutable": true, "data": {"a": "2"}});
        let causes = validate(&info("", "configmaps"), &new, Some(&old));
        assert_eq!(causes[0].field, "data");
    }
}
