//! The Priority admission plugin (kube-apiserver's `Priority`): a new pod's
//! `spec.priorityClassName` resolves to `spec.priority` and `spec.preemptionPolicy` from its
//! PriorityClass (the `globalDefault` class, or priority 0, without one); an unknown class or a
//! pod priority that disagrees with the class is forbidden. Updates keep what was resolved. Only
//! one PriorityClass may be the global default.

use corten_store::{KeyRange, RangeRequest, Store};
use serde_json::{json, Value};

use crate::error::{ApiError, Result};
use crate::meta;
use crate::registry::ResourceInfo;
use crate::{objects, Shared};

/// The priority of pods without a class when no class is the global default.
const DEFAULT_PRIORITY: i64 = 0;

/// The preemption policy of pods without a class when no class is the global default.
const DEFAULT_PREEMPTION: &str = "PreemptLowerPriority";

fn is_pod(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Pod"
}

fn is_priority_class(info: &ResourceInfo) -> bool {
    info.group == "scheduling.k8s.io" && info.kind == "PriorityClass"
}

/// Admits a new object: resolves a pod's priority, checks a new global default class.
pub(crate) async fn admit_create<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    obj: &mut Value,
) -> Result<()> {
    if is_pod(info) {
        let classes = priority_classes(shared).await?;
        resolve_pod(obj, &classes).map_err(|why| forbidden(info, obj, &why))
    } else if is_priority_class(info) {
        let classes = priority_classes(shared).await?;
        check_single_default(obj, &classes, false).map_err(|why| forbidden(info, obj, &why))
    } else {
        Ok(())
    }
}

/// Admits an update of `current` to `new`: a pod keeps its resolved priority and preemption
/// policy when the update leaves them out; a class may only become the global default when no
/// other class is.
pub(crate) async fn admit_update<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    current: &Value,
    new: &mut Value,
) -> Result<()> {
    if is_pod(info) {
        keep_resolved(current, new);
        Ok(())
    } else if is_priority_class(info) && is_global_default(new) && !is_global_default(current) {
        let classes = priority_classes(shared).await?;
        check_single_default(new, &classes, true).map_err(|why| forbidden(info, new, &why))
    } else {
        Ok(())
    }
}

/// `pods "x" is forbidden: ...`, named as admission names an object whose name is not
/// generated yet.
fn forbidden(info: &ResourceInfo, obj: &Value, why: &str) -> ApiError {
    let name = Some(meta::name_of(obj))
        .filter(|n| !n.is_empty())
        .or_else(|| meta::meta_str(obj, "generateName").filter(|n| !n.is_empty()))
        .unwrap_or("Unknown");
    ApiError::Forbidden(format!("{} \"{name}\" is forbidden: {why}", info.qualified()))
}

async fn priority_classes<S: Store>(shared: &Shared<S>) -> Result<Vec<Value>> {
    let info = shared
        .registry
        .get("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| ApiError::Internal("priorityclasses are not served".into()))?;
    let resp =
        shared.store.range(RangeRequest::new(KeyRange::Prefix(info.key_prefix().into_bytes()))).await?;
    resp.kvs.iter().map(|kv| objects::decode(info, kv)).collect()
}

fn is_global_default(class: &Value) -> bool {
    class.get("globalDefault").and_then(Value::as_bool) == Some(true)
}

/// The global default class: the lowest-valued one should a race have made several.
fn global_default(classes: &[Value]) -> Option<&Value> {
    classes.iter().filter(|c| is_global_default(c)).min_by_key(|c| value_of(c))
}

fn value_of(class: &Value) -> i64 {
    class.get("value").and_then(Value::as_i64).unwrap_or(0)
}

/// Sets a new pod's `spec.priorityClassName`, `spec.priority` and `spec.preemptionPolicy`
/// from `classes`; `Err` says why the pod is forbidden.
fn resolve_pod(pod: &mut Value, classes: &[Value]) -> std::result::Result<(), String> {
    let named = pod.pointer("/spec/priorityClassName").and_then(Value::as_str).filter(|n| !n.is_empty());
    let (class_name, priority, policy) = match named {
        Some(name) => {
            let class = classes
                .iter()
                .find(|c| meta::name_of(c) == name)
                .ok_or_else(|| format!("no PriorityClass with name {name} was found"))?;
            (Some(name.to_string()), value_of(class), preemption_of(class))
        }
        None => match global_default(classes) {
            Some(class) => (Some(meta::name_of(class).to_string()), value_of(class), preemption_of(class)),
            None => (None, DEFAULT_PRIORITY, Some(DEFAULT_PREEMPTION.to_string())),
        },
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
        if given != priority {
            return Err(format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            ));
        }
    }
    if let Some(policy) = policy {
        if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str) {
            if given != policy {
                return Err(format!(
                    "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
                ));
            }
        }
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    if let Some(name) = class_name {
        spec.insert("priorityClassName".into(), json!(name));
    }
    spec.insert("priority".into(), json!(priority));
    Ok(())
}

fn preemption_of(class: &Value) -> Option<String> {
    class.get("preemptionPolicy").and_then(Value::as_str).map(String::from)
}

/// Copies `spec.priority` and `spec.preemptionPolicy` from the stored pod when an update
/// leaves them out.
fn keep_resolved(current: &Value, new: &mut Value) {
    let Some(old) = current.get("spec").and_then(Value::as_object) else { return };
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else { return };
    for field in ["priority", "preemptionPolicy"] {
        if let (None, Some(v)) = (spec.get(field).filter(|v| !v.is_null()), old.get(field)) {
            spec.insert(field.into(), v.clone());
        }
    }
}

/// `Err` when `class` would be a second global default (`updating`: an existing class that
/// becomes the default).
fn check_single_default(class: &Value, classes: &[Value], updating: bool) -> std::result::Result<(), String> {
    if !is_global_default(class) {
        return Ok(());
    }
    let name = meta::name_of(class);
    match global_default(classes) {
        Some(other) if !updating || meta::name_of(other) != name => Err(format!(
            "PriorityClass {} is marked as default. Only one default can exist",
            meta::name_of(other)
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, value: i64, default: bool, policy: &str) -> Value {
        json!({"metadata": {"name": name}, "value": value, "globalDefault": default, "preemptionPolicy": policy})
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn a_named_class_gives_its_value_and_preemption_policy() {
        let classes = [class("high", 1000, false, "Never")];
        let mut p = pod(json!({"priorityClassName": "high"}));
        assert_eq!(resolve_pod(&mut p, &classes), Ok(()));
        assert_eq!(
            p["spec"],
            json!({"priorityClassName": "high", "priority": 1000, "preemptionPolicy": "Never"})
        );
    }

    #[test]
    fn an_unknown_class_is_forbidden() {
        let mut p = pod(json!({"priorityClassName": "foo"}));
        assert_eq!(resolve_pod(&mut p, &[]), Err("no PriorityClass with name foo was found".to_string()));
    }

    #[test]
    fn without_a_class_the_lowest_global_default_applies_else_zero() {
        let mut p = pod(json!({}));
        assert_eq!(resolve_pod(&mut p, &[class("other", 5, false, "Never")]), Ok(()));
        assert_eq!(p["spec"], json!({"priority": 0, "preemptionPolicy": "PreemptLowerPriority"}));
        let classes = [class("b", 20, true, "Never"), class("a", 10, true, "PreemptLowerPriority")];
        let mut p = pod(json!({}));
        assert_eq!(resolve_pod(&mut p, &classes), Ok(()));
        assert_eq!(
            p["spec"],
            json!({"priorityClassName": "a", "priority": 10, "preemptionPolicy": "PreemptLowerPriority"})
        );
    }

    #[test]
    fn a_pod_priority_other_than_the_class_value_is_forbidden_an_equal_one_is_not() {
        let classes = [class("high", 1000, false, "PreemptLowerPriority")];
        let mut p = pod(json!({"priorityClassName": "high", "priority": 7}));
        let err = resolve_pod(&mut p, &classes);
        assert_eq!(err, Err("the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name".to_string()));
        let mut p = pod(json!({"priorityClassName": "high", "priority": 1000}));
        assert_eq!(resolve_pod(&mut p, &classes), Ok(()));
        let mut p = pod(json!({"priorityClassName": "high", "preemptionPolicy": "Never"}));
        assert!(resolve_pod(&mut p, &classes).is_err_and(|e| e.contains("PreemptionPolicy (Never)")));
    }

    #[test]
    fn updates_keep_the_resolved_priority() {
        let current = pod(json!({"priority": 1000, "preemptionPolicy": "Never"}));
        let mut new = pod(json!({"containers": []}));
        keep_resolved(&current, &mut new);
        assert_eq!(new["spec"], json!({"containers": [], "priority": 1000, "preemptionPolicy": "Never"}));
    }

    #[test]
    fn only_one_class_may_be_the_global_default() {
        let classes = [class("a", 10, true, "Never")];
        let err = check_single_default(&class("b", 1, true, "Never"), &classes, false);
        assert_eq!(err, Err("PriorityClass a is marked as default. Only one default can exist".to_string()));
        assert_eq!(check_single_default(&class("b", 1, false, "Never"), &classes, false), Ok(()));
        assert_eq!(check_single_default(&class("a", 11, true, "Never"), &classes, true), Ok(()));
    }
}
