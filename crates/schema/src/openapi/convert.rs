//! Schema nodes to OpenAPI v2 (swagger) and v3 schema objects, the way kube-apiserver publishes
//! the built-in types, and the set of definitions a document needs.

use std::collections::BTreeSet;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Map, Value};

use crate::schema::{DefId, Definition, Node, Shape};
use crate::Schema;

/// Which OpenAPI version a schema object is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    V2,
    V3,
}

impl Flavor {
    pub(crate) fn ref_to(self, name: &str) -> String {
        match self {
            Flavor::V2 => format!("#/definitions/{name}"),
            Flavor::V3 => format!("#/components/schemas/{name}"),
        }
    }
}

/// Keywords a swagger 2.0 schema object may carry besides those built here; anything else kept
/// from a CRD schema (`nullable`, `anyOf`, `oneOf`, `not`, ...) exists only in v3.
const V2_KEYWORDS: &[&str] = &[
    "default",
    "enum",
    "example",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "format",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "multipleOf",
    "pattern",
    "required",
    "title",
    "uniqueItems",
];

/// Converts one node to a schema object.
pub(crate) fn schema_object(schema: &Schema, node: &Node, flavor: Flavor) -> Value {
    let mut m = Map::new();
    if let Some(d) = &node.description {
        m.insert("description".into(), Value::from(&**d));
    }
    let ext = node.ext.as_deref();
    if let Some(ext) = ext {
        for (k, v) in &ext.extra {
            let keep = match flavor {
                Flavor::V3 => true,
                Flavor::V2 => V2_KEYWORDS.contains(&k.as_str()) || k.starts_with("x-"),
            };
            if keep {
                m.insert(k.clone(), v.clone());
            }
        }
        if let Some(s) = &ext.patch_strategy {
            m.insert("x-kubernetes-patch-strategy".into(), Value::from(&**s));
        }
        if let Some(s) = &ext.merge_key {
            m.insert("x-kubernetes-patch-merge-key".into(), Value::from(&**s));
        }
        if let Some(t) = ext.list_type {
            m.insert("x-kubernetes-list-type".into(), Value::from(t.as_str()));
        }
        if !ext.list_map_keys.is_empty() {
            let keys: Vec<Value> = ext.list_map_keys.iter().map(|k| Value::from(&**k)).collect();
            m.insert("x-kubernetes-list-map-keys".into(), Value::Array(keys));
        }
        if let Some(t) = ext.map_type {
            m.insert("x-kubernetes-map-type".into(), Value::from(t.as_str()));
        }
        if !ext.gvks.is_empty() {
            let gvks: Vec<Value> = ext
                .gvks
                .iter()
                .map(|g| json!({"group": &*g.group, "kind": &*g.kind, "version": &*g.version}))
                .collect();
            m.insert("x-kubernetes-group-version-kind".into(), Value::Array(gvks));
        }
        if let Some(u) = &ext.unions {
            m.insert("x-kubernetes-unions".into(), u.clone());
        }
        if ext.preserve_unknown {
            m.insert("x-kubernetes-preserve-unknown-fields".into(), Value::Bool(true));
        }
        if ext.embedded_resource {
            m.insert("x-kubernetes-embedded-resource".into(), Value::Bool(true));
        }
        if ext.nullable && flavor == Flavor::V3 {
            m.insert("nullable".into(), Value::Bool(true));
        }
    }
    match &node.shape {
        Shape::Ref(id) => {
            if let Some(def) = schema.def(*id) {
                let target = Value::from(flavor.ref_to(&def.name));
                // v3 cannot give `$ref` siblings: kube-apiserver wraps it in `allOf`.
                if flavor == Flavor::V3 && !m.is_empty() {
                    m.insert("allOf".into(), json!([{"$ref": target}]));
                } else {
                    m.insert("$ref".into(), target);
                }
            }
        }
        Shape::Scalar { ty, format } => {
            m.insert("type".into(), Value::from(ty.as_str()));
            if let Some(f) = format {
                m.insert("format".into(), Value::from(&**f));
            }
        }
        Shape::Object(obj) => {
            m.insert("type".into(), Value::from("object"));
            if !obj.properties.is_empty() {
                let props: Map<String, Value> = obj
                    .properties
                    .iter()
                    .map(|(k, n)| (k.to_string(), schema_object(schema, n, flavor)))
                    .collect();
                m.insert("properties".into(), Value::Object(props));
            }
            if !obj.required.is_empty() {
                let req: Vec<Value> = obj.required.iter().map(|r| Value::from(&**r)).collect();
                m.insert("required".into(), Value::Array(req));
            }
        }
        Shape::Array(items) => {
            m.insert("type".into(), Value::from("array"));
            m.insert("items".into(), schema_object(schema, items, flavor));
        }
        Shape::Map(values) => {
            m.insert("type".into(), Value::from("object"));
            m.insert("additionalProperties".into(), schema_object(schema, values, flavor));
        }
        Shape::FreeObject => {
            m.insert("type".into(), Value::from("object"));
        }
        Shape::Any => {}
        Shape::IntOrString => match flavor {
            Flavor::V2 => {
                m.insert("type".into(), Value::from("string"));
                m.insert("format".into(), Value::from("int-or-string"));
                m.remove("anyOf");
                m.remove("x-kubernetes-int-or-string");
            }
            Flavor::V3 if ext.is_some_and(|e| e.int_or_string) => {
                m.insert("x-kubernetes-int-or-string".into(), Value::Bool(true));
                m.entry("anyOf").or_insert_with(|| json!([{"type": "integer"}, {"type": "string"}]));
            }
            Flavor::V3 => {
                m.insert("format".into(), Value::from("int-or-string"));
                m.insert("oneOf".into(), json!([{"type": "integer"}, {"type": "string"}]));
            }
        },
        Shape::StringOrNumber => match flavor {
            Flavor::V2 => {
                m.insert("type".into(), Value::from("string"));
            }
            Flavor::V3 => {
                m.insert("oneOf".into(), json!([{"type": "string"}, {"type": "number"}]));
            }
        },
    }
    m.into()
}

/// The definitions reachable from `roots`, by name (sorted).
pub(crate) fn closure(schema: &Schema, roots: impl IntoIterator<Item = DefId>) -> Vec<&Definition> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<DefId> = roots.into_iter().collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        if let Some(def) = schema.def(id) {
            collect_refs(&def.node, &mut stack);
        }
    }
    let mut defs: Vec<&Definition> = seen.into_iter().filter_map(|id| schema.def(id)).collect();
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    defs
}

fn collect_refs(node: &Node, out: &mut Vec<DefId>) {
    match &node.shape {
        Shape::Ref(id) => out.push(*id),
        Shape::Object(obj) => obj.properties.iter().for_each(|(_, n)| collect_refs(n, out)),
        Shape::Array(inner) | Shape::Map(inner) => collect_refs(inner, out),
        _ => {}
    }
}

/// A `{name: schema}` map written straight to the serializer, one definition at a time, so a
/// whole document never exists as a `Value`.
pub(crate) struct Definitions<'s> {
    pub(crate) schema: &'s Schema,
    pub(crate) defs: Vec<&'s Definition>,
    pub(crate) flavor: Flavor,
}

impl Serialize for Definitions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.defs.len()))?;
        for def in &self.defs {
            let value = schema_object(self.schema, &def.node, self.flavor);
            map.serialize_entry(&*def.name, &value)?;
        }
        map.end()
    }
}
