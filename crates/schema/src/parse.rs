//! Reading OpenAPI / JSON Schema objects into the compact [`Node`] tree.
//!
//! Accepts both flavours: the JSON Schema of the embedded data (`"type": [T, "null"]`,
//! `#/$defs/` references) and OpenAPI v2/v3 (`#/definitions/`, `#/components/schemas/`,
//! `allOf: [{$ref}]`, `nullable`, `x-kubernetes-int-or-string`). Keywords that do not shape the
//! value (validation such as `minimum` or `pattern`, `default`, `enum`) are kept verbatim in
//! [`Ext::extra`] so the OpenAPI documents can publish them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::schema::{DefId, Ext, Gvk, ListType, MapType, Node, ObjectShape, ScalarType, Shape};
use crate::{Error, Result};

/// Builtin definitions whose objects hold arbitrary content (Go `RawExtension`-like types).
const FREE_FORM_BUILTINS: &[&str] = &[
    "io.k8s.apimachinery.pkg.runtime.RawExtension",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
];

const REF_PREFIXES: &[&str] = &["#/$defs/", "#/definitions/", "#/components/schemas/"];

/// Parses definitions of one batch, interning repeated strings.
pub(crate) struct Parser<'a> {
    names: &'a HashMap<Arc<str>, DefId>,
    strings: HashSet<Arc<str>>,
    builtin_quirks: bool,
    current: String,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(names: &'a HashMap<Arc<str>, DefId>, builtin_quirks: bool) -> Self {
        Parser { names, strings: HashSet::new(), builtin_quirks, current: String::new() }
    }

    /// Parses the root node of the definition `name`.
    pub(crate) fn definition(&mut self, name: &str, value: &Value) -> Result<Node> {
        self.current.clear();
        self.current.push_str(name);
        let free_form = self.builtin_quirks && FREE_FORM_BUILTINS.contains(&name);
        let mut node = self.node(value, None)?;
        if free_form {
            node.shape = Shape::FreeObject;
        }
        Ok(node)
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.strings.get(s) {
            return found.clone();
        }
        let arc: Arc<str> = Arc::from(s);
        self.strings.insert(arc.clone());
        arc
    }

    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidDefinition { name: self.current.clone(), reason: reason.into() }
    }

    fn resolve(&self, reference: &str) -> Result<DefId> {
        let name = REF_PREFIXES.iter().find_map(|p| reference.strip_prefix(p)).unwrap_or(reference);
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| Error::UnresolvedRef { from: self.current.clone(), to: name.to_owned() })
    }

    fn string_list(&mut self, v: &Value, what: &str) -> Result<Box<[Arc<str>]>> {
        let items = v.as_array().ok_or_else(|| self.invalid(format!("{what} must be a list of strings")))?;
        items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(|s| self.intern(s))
                    .ok_or_else(|| self.invalid(format!("{what} must be a list of strings")))
            })
            .collect()
    }

    /// Parses one schema object. `property` is the name it has in its parent, if any.
    fn node(&mut self, value: &Value, property: Option<&str>) -> Result<Node> {
        let obj = match value {
            Value::Object(obj) => obj,
            // `true` as a schema (e.g. `additionalProperties: true`) accepts anything.
            Value::Bool(true) => return Ok(Node { shape: Shape::Any, description: None, ext: None }),
            _ => return Err(self.invalid("a schema must be an object")),
        };
        let mut ext = Ext::default();
        let mut description = None;
        let mut types: Vec<&str> = Vec::new();
        let mut format = None;
        let mut reference = None;
        let mut properties = None;
        let mut required = None;
        let mut items = None;
        let mut additional = None;
        let mut one_of = None;
        for (key, v) in obj {
            match key.as_str() {
                "description" => {
                    if let Some(s) = v.as_str() {
                        description = Some(self.intern(s));
                    }
                }
                "type" => match v {
                    Value::String(s) => types.push(s),
                    Value::Array(list) => types.extend(list.iter().filter_map(Value::as_str)),
                    _ => return Err(self.invalid("type must be a string or a list")),
                },
                "format" => format = v.as_str(),
                "$ref" => {
                    let r = v.as_str().ok_or_else(|| self.invalid("$ref must be a string"))?;
                    reference = Some(self.resolve(r)?);
                }
                "allOf" if single_ref(v).is_some() => {
                    let r = single_ref(v).unwrap_or_default();
                    reference = Some(self.resolve(r)?);
                }
                "properties" => properties = Some(v),
                "required" => required = Some(self.string_list(v, "required")?),
                "items" => items = Some(v),
                "additionalProperties" => match v {
                    Value::Bool(false) => {}
                    _ => additional = Some(v),
                },
                "oneOf" if scalar_union(v).is_some() => one_of = scalar_union(v),
                "x-kubernetes-patch-strategy" => {
                    ext.patch_strategy = v.as_str().map(|s| self.intern(s));
                }
                "x-kubernetes-patch-merge-key" => {
                    ext.merge_key = v.as_str().map(|s| self.intern(s));
                }
                "x-kubernetes-list-type" => {
                    ext.list_type = match v.as_str() {
                        Some("atomic") => Some(ListType::Atomic),
                        Some("set") => Some(ListType::Set),
                        Some("map") => Some(ListType::Map),
                        _ => return Err(self.invalid(format!("unknown list type {v}"))),
                    }
                }
                "x-kubernetes-list-map-keys" => {
                    ext.list_map_keys = self.string_list(v, "x-kubernetes-list-map-keys")?;
                }
                "x-kubernetes-map-type" => {
                    ext.map_type = match v.as_str() {
                        Some("atomic") => Some(MapType::Atomic),
                        Some("granular") => Some(MapType::Granular),
                        _ => return Err(self.invalid(format!("unknown map type {v}"))),
                    }
                }
                "x-kubernetes-group-version-kind" => ext.gvks = self.gvks(v)?,
                "x-kubernetes-unions" => ext.unions = Some(v.clone()),
                "x-kubernetes-preserve-unknown-fields" => {
                    ext.preserve_unknown = v.as_bool().unwrap_or(false);
                }
                "x-kubernetes-embedded-resource" => {
                    ext.embedded_resource = v.as_bool().unwrap_or(false);
                }
                "x-kubernetes-int-or-string" => ext.int_or_string = v.as_bool().unwrap_or(false),
                "nullable" => ext.nullable = v.as_bool().unwrap_or(false),
                "enum" if self.builtin_quirks && matches!(property, Some("apiVersion") | Some("kind")) => {
                    // Added by the JSON Schema conversion; not part of the Kubernetes schema.
                }
                _ => {
                    ext.extra.insert(key.clone(), v.clone());
                }
            }
        }
        // "null" in a type list is the JSON Schema spelling of an optional field.
        types.retain(|t| *t != "null");
        let shape = if let Some(id) = reference {
            Shape::Ref(id)
        } else if ext.int_or_string {
            Shape::IntOrString
        } else if let Some(union) = one_of {
            union
        } else {
            match types.as_slice() {
                [] if properties.is_some() => self.object(properties, required.take())?,
                [] if additional.is_some() => self.map(additional)?,
                [] if items.is_some() => Shape::Array(Box::new(self.items(items)?)),
                [] => Shape::Any,
                ["object"] if properties.is_some() => self.object(properties, required.take())?,
                ["object"] if additional.is_some() => self.map(additional)?,
                ["object"] if ext.preserve_unknown => Shape::FreeObject,
                ["object"] => self.object(None, required.take())?,
                ["array"] => Shape::Array(Box::new(self.items(items)?)),
                [scalar] => Shape::Scalar {
                    ty: match *scalar {
                        "string" => ScalarType::String,
                        "integer" => ScalarType::Integer,
                        "number" => ScalarType::Number,
                        "boolean" => ScalarType::Boolean,
                        other => return Err(self.invalid(format!("unknown type {other:?}"))),
                    },
                    format: format.take().map(|f| self.intern(f)),
                },
                _ => return Err(self.invalid(format!("unsupported type list {types:?}"))),
            }
        };
        if let Some(f) = format {
            if !matches!(shape, Shape::IntOrString) {
                ext.extra.insert("format".to_owned(), Value::from(f));
            }
        }
        if let Some(req) = required {
            if !req.is_empty() {
                ext.extra.insert(
                    "required".to_owned(),
                    Value::from(req.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                );
            }
        }
        let ext = if ext_is_empty(&ext) { None } else { Some(Box::new(ext)) };
        Ok(Node { shape, description, ext })
    }

    fn object(&mut self, properties: Option<&Value>, required: Option<Box<[Arc<str>]>>) -> Result<Shape> {
        let mut props = Vec::new();
        if let Some(p) = properties {
            let map = p.as_object().ok_or_else(|| self.invalid("properties must be an object"))?;
            props.reserve_exact(map.len());
            for (name, schema) in map {
                let node = self.node(schema, Some(name))?;
                props.push((self.intern(name), node));
            }
        }
        props.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Shape::Object(Box::new(ObjectShape {
            properties: props.into_boxed_slice(),
            required: required.unwrap_or_default(),
        })))
    }

    fn map(&mut self, additional: Option<&Value>) -> Result<Shape> {
        let node = match additional {
            Some(v) => self.node(v, None)?,
            None => Node { shape: Shape::Any, description: None, ext: None },
        };
        Ok(Shape::Map(Box::new(node)))
    }

    fn items(&mut self, items: Option<&Value>) -> Result<Node> {
        match items {
            Some(v) => self.node(v, None),
            None => Ok(Node { shape: Shape::Any, description: None, ext: None }),
        }
    }

    fn gvks(&mut self, v: &Value) -> Result<Box<[Gvk]>> {
        let list = match v {
            Value::Array(list) => list.as_slice(),
            Value::Object(_) => std::slice::from_ref(v),
            _ => return Err(self.invalid("x-kubernetes-group-version-kind must be a list")),
        };
        list.iter()
            .map(|g| {
                let field = |k: &str| g.get(k).and_then(Value::as_str);
                match (field("group"), field("version"), field("kind")) {
                    (group, Some(version), Some(kind)) => Ok(Gvk {
                        group: self.intern(group.unwrap_or("")),
                        version: self.intern(version),
                        kind: self.intern(kind),
                    }),
                    _ => Err(self.invalid("x-kubernetes-group-version-kind needs version and kind")),
                }
            })
            .collect()
    }
}

fn ext_is_empty(ext: &Ext) -> bool {
    ext.patch_strategy.is_none()
        && ext.merge_key.is_none()
        && ext.list_type.is_none()
        && ext.list_map_keys.is_empty()
        && ext.map_type.is_none()
        && ext.gvks.is_empty()
        && ext.unions.is_none()
        && !ext.preserve_unknown
        && !ext.embedded_resource
        && !ext.int_or_string
        && !ext.nullable
        && ext.extra.is_empty()
}

/// `allOf: [{"$ref": X}]`, the OpenAPI v3 spelling of a reference with siblings.
fn single_ref(v: &Value) -> Option<&str> {
    match v.as_array()?.as_slice() {
        [only] => {
            let obj = only.as_object()?;
            if obj.len() == 1 {
                obj.get("$ref")?.as_str()
            } else {
                None
            }
        }
        _ => None,
    }
}

/// `oneOf` of two scalar types: int-or-string or string-or-number.
fn scalar_union(v: &Value) -> Option<Shape> {
    let mut types = Vec::new();
    for alt in v.as_array()? {
        let alt: &Map<String, Value> = alt.as_object()?;
        match alt.get("type")? {
            Value::String(s) => types.push(s.as_str()),
            Value::Array(list) => {
                types.extend(list.iter().filter_map(Value::as_str).filter(|t| *t != "null"))
            }
            _ => return None,
        }
    }
    types.sort_unstable();
    match types.as_slice() {
        ["integer", "string"] => Some(Shape::IntOrString),
        ["number", "string"] => Some(Shape::StringOrNumber),
        _ => None,
    }
}
