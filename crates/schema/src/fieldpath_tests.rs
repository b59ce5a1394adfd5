//! Field paths and sets in the `FieldsV1` encoding.

use serde_json::json;

use super::*;

fn set(fields_v1: Value) -> FieldSet {
    match FieldSet::from_fields_v1(&fields_v1) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn strings(s: &FieldSet) -> Vec<String> {
    s.paths().iter().map(ToString::to_string).collect()
}

#[test]
fn fields_v1_round_trips_members_with_children() {
    let v = json!({
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}
    });
    let s = set(v.clone());
    assert_eq!(s.to_fields_v1(), v);
    assert_eq!(
        strings(&s),
        [
            ".metadata.labels.app",
            ".spec.containers[name=\"nginx\"]",
            ".spec.containers[name=\"nginx\"].image",
            ".spec.containers[name=\"nginx\"].name",
        ]
    );
    assert_eq!(s.len(), 4);
}

#[test]
fn keys_are_canonical_whatever_order_they_come_in() {
    let a = PathElement::key([("protocol", &json!("TCP")), ("containerPort", &json!(80))]);
    let b = PathElement::decode("k:{\"protocol\":\"TCP\",\"containerPort\":80}");
    assert_eq!(Ok(Some(a.clone())), b);
    assert_eq!(a.encode(), "k:{\"containerPort\":80,\"protocol\":\"TCP\"}");
    assert_eq!(a.to_string(), "[containerPort=80,protocol=\"TCP\"]");
    assert_eq!(PathElement::value(&json!("x")).to_string(), "[=\"x\"]");
    assert_eq!(PathElement::Index(3).encode(), "i:3");
}

#[test]
fn unknown_element_kinds_are_dropped_and_malformed_ones_rejected() {
    let s = set(json!({"f:a": {}, "z:whatever": {}}));
    assert_eq!(strings(&s), [".a"]);
    assert!(FieldSet::from_fields_v1(&json!({"nocolon": {}})).is_err());
    assert!(FieldSet::from_fields_v1(&json!({"k:notjson": {}})).is_err());
    assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
    assert!(FieldSet::from_fields_v1(&json!([])).is_err());
}

#[test]
fn difference_removes_members_only_and_recursive_difference_whole_subtrees() {
    let a = set(json!({"f:spec": {".": {}, "f:replicas": {}, "f:paused": {}}}));
    let b = set(json!({"f:spec": {}}));
    assert_eq!(strings(&a.difference(&b)), [".spec.paused", ".spec.replicas"]);
    assert!(a.recursive_difference(&b).is_empty());
    let c = set(json!({"f:spec": {"f:replicas": {}}}));
    assert_eq!(strings(&a.recursive_difference(&c)), [".spec", ".spec.paused"]);
}

#[test]
fn union_and_intersection_work_on_nested_members() {
    let a = set(json!({"f:metadata": {"f:labels": {"f:a": {}, "f:b": {}}}}));
    let b = set(json!({"f:metadata": {"f:labels": {"f:b": {}, "f:c": {}}}, "f:spec": {"f:x": {}}}));
    assert_eq!(strings(&a.intersection(&b)), [".metadata.labels.b"]);
    assert_eq!(a.union(&b).len(), 4);
    assert!(a.union(&b).contains(&FieldPath::fields(&["spec", "x"]).0));
    assert!(!a.contains(&FieldPath::fields(&["metadata", "labels"]).0));
}

#[test]
fn members_come_before_subtrees_and_fields_before_keys_values_and_indexes() {
    let mut s = FieldSet::new();
    s.insert(&[PathElement::field("b"), PathElement::field("c")]);
    s.insert(&[PathElement::field("z")]);
    s.insert(&[PathElement::Index(0)]);
    s.insert(&[PathElement::value(&json!("v"))]);
    s.insert(&[PathElement::key([("name", &json!("k"))])]);
    assert_eq!(strings(&s), [".z", "[name=\"k\"]", "[=\"v\"]", "[0]", ".b.c"]);
}
