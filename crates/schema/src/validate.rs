//! Field validation for `fieldValidation=Strict|Warn`: unknown and duplicate fields.
//!
//! Paths are worded as kube-apiserver words them: dot-separated field names with list indexes in
//! brackets, e.g. `spec.containers[0].foo`; the server reports `unknown field "<path>"` and
//! `duplicate field "<path>"`.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::{Kind, TypeRef};

/// Paths of fields in `value` that the schema `ty` does not declare, in document order.
///
/// Subtrees that keep unknown fields (free-form objects, `x-kubernetes-preserve-unknown-fields`,
/// `RawExtension`) are not looked into; values of the wrong type are left to other validation.
pub fn unknown_fields(value: &Value, ty: TypeRef<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let mut path = String::new();
    walk_unknown(value, ty, &mut path, &mut out);
    out
}

fn push_field(path: &mut String, name: &str) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(name);
    len
}

fn push_index(path: &mut String, i: usize) -> usize {
    use std::fmt::Write;
    let len = path.len();
    let _ = write!(path, "[{i}]");
    len
}

fn walk_unknown(value: &Value, ty: TypeRef<'_>, path: &mut String, out: &mut Vec<String>) {
    match (ty.kind(), value) {
        (Kind::Object, Value::Object(map)) => {
            let preserve = ty.preserves_unknown_fields();
            let embedded = ty.is_embedded_resource();
            for (key, child) in map {
                let len = push_field(path, key);
                match ty.property(key) {
                    Some(child_ty) => walk_unknown(child, child_ty, path, out),
                    None if preserve => {}
                    None if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") => {}
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Kind::Map, Value::Object(map)) => {
            let Some(values) = ty.additional_properties() else {
                return;
            };
            for (key, child) in map {
                let len = push_field(path, key);
                walk_unknown(child, values, path, out);
                path.truncate(len);
            }
        }
        (Kind::Array, Value::Array(list)) => {
            let Some(items) = ty.items() else { return };
            for (i, child) in list.iter().enumerate() {
                let len = push_index(path, i);
                walk_unknown(child, items, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Paths of object keys that appear more than once in the JSON text `raw`, in document order.
///
/// Reads the text once with a streaming visitor; stops quietly at the first syntax error (the
/// caller rejects malformed JSON anyway).
pub fn duplicate_fields(raw: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut path = String::new();
    let mut de = serde_json::Deserializer::from_slice(raw);
    let _ = PathSeed { path: &mut path, out: &mut out }.deserialize(&mut de);
    out
}

/// Deserializes one value, recording duplicate keys of the objects inside it.
struct PathSeed<'p> {
    path: &'p mut String,
    out: &'p mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for PathSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PathSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let len = push_index(self.path, i);
            let more = seq.next_element_seed(PathSeed { path: &mut *self.path, out: &mut *self.out })?;
            self.path.truncate(len);
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let len = push_field(self.path, &key);
            if !seen.insert(key) {
                // Report each duplicate once, however often it repeats.
                let path = self.path.clone();
                if !self.out.contains(&path) {
                    self.out.push(path);
                }
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(PathSeed { path: &mut *self.path, out: &mut *self.out })?;
            }
            self.path.truncate(len);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Schema;
    use serde_json::json;

    fn pod() -> TypeRef<'static> {
        match Schema::builtin().for_kind("", "v1", "Pod") {
            Some(t) => t,
            None => panic!("no Pod schema"),
        }
    }

    #[test]
    fn unknown_fields_are_reported_with_dotted_paths() {
        let doc = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "bogus": 1},
            "spec": {"foo": true, "containers": [
                {"name": "a", "image": "x"},
                {"name": "b", "image": "y", "imagePullPolicyy": "Always"}
            ]}
        });
        assert_eq!(
            unknown_fields(&doc, pod()),
            ["metadata.bogus", "spec.containers[1].imagePullPolicyy", "spec.foo"]
        );
    }

    #[test]
    fn a_clean_object_has_no_unknown_fields() {
        let doc = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"any-key": "v"}, "annotations": {"k": "v"}},
            "spec": {"containers": [{"name": "a", "image": "x",
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                "ports": [{"containerPort": 80}]}]}
        });
        assert!(unknown_fields(&doc, pod()).is_empty());
    }

    #[test]
    fn unknown_top_level_fields_have_no_prefix() {
        let doc = json!({"apiVersion": "v1", "kind": "Pod", "extra": {}});
        assert_eq!(unknown_fields(&doc, pod()), ["extra"]);
    }

    #[test]
    fn free_form_subtrees_are_not_checked() {
        let revision = match Schema::builtin().for_kind("apps", "v1", "ControllerRevision") {
            Some(t) => t,
            None => panic!("no ControllerRevision schema"),
        };
        let doc = json!({"revision": 1, "data": {"anything": {"goes": [1, 2]}},
            "metadata": {"managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}]}});
        assert!(unknown_fields(&doc, revision).is_empty());
    }

    #[test]
    fn map_values_are_checked_with_the_value_schema() {
        let cm = match Schema::builtin().for_kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition") {
            Some(t) => t,
            None => panic!("no CRD schema"),
        };
        let doc = json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {"type": "object", "typo": 1}}
        }}}]}});
        assert_eq!(
            unknown_fields(&doc, cm),
            ["spec.versions[0].schema.openAPIV3Schema.properties.spec.typo"]
        );
    }

    #[test]
    fn preserve_unknown_fields_keeps_a_crd_subtree_unchecked() {
        let mut schema = Schema::new();
        let defs = json!({"com.example.v1.Widget": {
            "type": "object",
            "x-kubernetes-group-version-kind": [{"group": "example.com", "version": "v1", "kind": "Widget"}],
            "properties": {
                "spec": {"type": "object", "properties": {
                    "size": {"type": "integer"},
                    "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }}
            }
        }});
        if let Err(e) = schema.add_definitions(defs.as_object().unwrap_or(&Default::default())) {
            panic!("{e}");
        }
        let Some(ty) = schema.for_kind("example.com", "v1", "Widget") else {
            panic!("no widget");
        };
        let doc = json!({"spec": {"size": 1, "colour": "red", "config": {"x": {"y": 1}}}});
        assert_eq!(unknown_fields(&doc, ty), ["spec.colour"]);
    }

    #[test]
    fn duplicate_fields_are_reported_with_their_path() {
        let raw = br#"{"metadata": {"name": "a", "name": "b"}, "spec": {"containers": [
            {"name": "x", "image": "i", "image": "j"}]}}"#;
        assert_eq!(duplicate_fields(raw), ["metadata.name", "spec.containers[0].image"]);
    }

    #[test]
    fn duplicate_fields_report_a_repeated_key_once() {
        assert_eq!(duplicate_fields(br#"{"a": 1, "a": 2, "a": 3}"#), ["a"]);
    }

    #[test]
    fn json_without_duplicates_reports_nothing() {
        assert!(duplicate_fields(br#"{"a": {"b": [1, {"c": null}]}, "d": "e"}"#).is_empty());
    }

    #[test]
    fn malformed_json_reports_what_was_seen_before_the_error() {
        assert_eq!(duplicate_fields(br#"{"a": 1, "a": 2, "b": "#), ["a"]);
    }
}
