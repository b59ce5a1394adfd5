//! Label selectors, node selector terms and tolerations: the matching rules every plugin shares.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object (empty when it has none).
pub type Labels = BTreeMap<String, String>;

static NO_LABELS: Labels = BTreeMap::new();

/// The labels of `meta`, or an empty map.
pub fn labels_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &Labels {
    meta.labels.as_ref().unwrap_or(&NO_LABELS)
}

/// Whether `labels` satisfy `selector` (an empty selector matches everything).
pub fn label_selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let by_labels =
        selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k).is_some_and(|l| l == v));
    by_labels
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether `selector` (optional, as in a pod affinity term) matches: a missing one matches nothing.
pub fn optional_selector_matches(selector: Option<&LabelSelector>, labels: &Labels) -> bool {
    selector.is_some_and(|s| label_selector_matches(s, labels))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let as_int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) =
                (value.and_then(|v| as_int(v)), values.first().and_then(|b| as_int(b)))
            else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether `node` satisfies one node selector term (all its expressions and fields; a term with
/// neither matches no node).
pub fn node_term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = labels_of(&node.metadata);
    let name = node.metadata.name.clone();
    exprs.iter().all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, name.as_ref()))
}

/// Whether `t` tolerates `taint` (same key or an empty key with `Exists`, same effect or any,
/// and the value for `Equal`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    let exists = t.operator.as_deref() == Some("Exists");
    if key.is_empty() {
        return exists;
    }
    if key != taint.key {
        return false;
    }
    exists || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{from_value, json};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selectors_combine_labels_and_expressions() {
        let s: LabelSelector = from_value(json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}))
        .unwrap();
        assert!(label_selector_matches(&s, &labels(&[("app", "web")])));
        assert!(!label_selector_matches(&s, &labels(&[("app", "web"), ("tier", "db")])));
        assert!(!label_selector_matches(&s, &labels(&[("app", "db")])));
        assert!(label_selector_matches(&LabelSelector::default(), &labels(&[])));
        assert!(!optional_selector_matches(None, &labels(&[])));
    }

    #[test]
    fn node_terms_match_labels_with_numeric_operators_and_the_name_field() {
        let node: Node = from_value(json!({"metadata": {"name": "n1", "labels": {"cores": "8"}}})).unwrap();
        let term = |t: serde_json::Value| -> NodeSelectorTerm { from_value(t).unwrap() };
        assert!(node_term_matches(
            &term(json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]})),
            &node
        ));
        assert!(!node_term_matches(
            &term(json!({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]})),
            &node
        ));
        assert!(node_term_matches(
            &term(json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})),
            &node
        ));
        assert!(!node_term_matches(&term(json!({})), &node));
    }

    #[test]
    fn tolerations_match_by_key_value_and_effect() {
        let taint: Taint = from_value(json!({"key": "k", "value": "v", "effect": "NoSchedule"})).unwrap();
        let tol = |t: serde_json::Value| -> Toleration { from_value(t).unwrap() };
        assert!(tolerates(&tol(json!({"key": "k", "value": "v"})), &taint));
        assert!(tolerates(&tol(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})), &taint));
        assert!(tolerates(&tol(json!({"operator": "Exists"})), &taint));
        assert!(!tolerates(&tol(json!({"key": "k", "value": "w"})), &taint));
        assert!(!tolerates(&tol(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})), &taint));
        assert!(!tolerates(&tol(json!({"value": "v"})), &taint));
    }
}
