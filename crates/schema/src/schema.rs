//! The schema value: named definitions as a compact tree, and [`TypeRef`] to walk them.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::Result;

/// Index of a definition inside its [`Schema`].
pub(crate) type DefId = u32;

/// One schema node: a definition's root, a property, list items or map values.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) shape: Shape,
    pub(crate) description: Option<Arc<str>>,
    pub(crate) ext: Option<Box<Ext>>,
}

/// The node the walker stands on where nothing is known: anything goes.
pub(crate) static ANY: Node = Node { shape: Shape::Any, description: None, ext: None };

/// What values a node accepts.
#[derive(Debug)]
pub(crate) enum Shape {
    /// Another definition (`$ref`).
    Ref(DefId),
    /// A string, integer, number or boolean, with its OpenAPI `format`.
    Scalar { ty: ScalarType, format: Option<Arc<str>> },
    /// An object with declared properties (possibly none: an empty struct).
    Object(Box<ObjectShape>),
    /// A list of the inner node.
    Array(Box<Node>),
    /// An object with arbitrary keys whose values are the inner node (`additionalProperties`).
    Map(Box<Node>),
    /// An integer or a string (`IntOrString`, `x-kubernetes-int-or-string`).
    IntOrString,
    /// A string or a number (`Quantity`).
    StringOrNumber,
    /// Any JSON object, unchecked (`RawExtension`, `FieldsV1`).
    FreeObject,
    /// Any JSON value, unchecked.
    Any,
}

/// Declared properties (sorted by name) and the required ones (in declaration order).
#[derive(Debug, Default)]
pub(crate) struct ObjectShape {
    pub(crate) properties: Box<[(Arc<str>, Node)]>,
    pub(crate) required: Box<[Arc<str>]>,
}

/// The rarely present parts of a node, boxed to keep [`Node`] small.
#[derive(Debug, Default)]
pub(crate) struct Ext {
    pub(crate) patch_strategy: Option<Arc<str>>,
    pub(crate) merge_key: Option<Arc<str>>,
    pub(crate) list_type: Option<ListType>,
    pub(crate) list_map_keys: Box<[Arc<str>]>,
    pub(crate) map_type: Option<MapType>,
    pub(crate) gvks: Box<[Gvk]>,
    pub(crate) unions: Option<Value>,
    pub(crate) preserve_unknown: bool,
    pub(crate) embedded_resource: bool,
    pub(crate) int_or_string: bool,
    pub(crate) nullable: bool,
    /// Other keywords, kept verbatim for the OpenAPI documents (validation of CRD schemas).
    pub(crate) extra: Map<String, Value>,
}

/// A named definition.
#[derive(Debug)]
pub(crate) struct Definition {
    pub(crate) name: Arc<str>,
    pub(crate) node: Node,
}

/// A scalar JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    /// `"type": "string"`.
    String,
    /// `"type": "integer"`.
    Integer,
    /// `"type": "number"`.
    Number,
    /// `"type": "boolean"`.
    Boolean,
}

impl ScalarType {
    /// The OpenAPI type name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScalarType::String => "string",
            ScalarType::Integer => "integer",
            ScalarType::Number => "number",
            ScalarType::Boolean => "boolean",
        }
    }
}

/// `x-kubernetes-list-type`: how server-side apply treats a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// The list is replaced as a whole.
    Atomic,
    /// A set of scalars.
    Set,
    /// A list of objects keyed by `x-kubernetes-list-map-keys`.
    Map,
}

impl ListType {
    /// The extension's value.
    pub fn as_str(self) -> &'static str {
        match self {
            ListType::Atomic => "atomic",
            ListType::Set => "set",
            ListType::Map => "map",
        }
    }
}

/// `x-kubernetes-map-type`: whether server-side apply merges an object field by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    /// The object is replaced as a whole.
    Atomic,
    /// Fields are owned separately.
    Granular,
}

impl MapType {
    /// The extension's value.
    pub fn as_str(self) -> &'static str {
        match self {
            MapType::Atomic => "atomic",
            MapType::Granular => "granular",
        }
    }
}

/// A group/version/kind from `x-kubernetes-group-version-kind` (group `""` is the core group).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gvk {
    /// API group, `""` for core.
    pub group: Arc<str>,
    /// API version, e.g. `v1`.
    pub version: Arc<str>,
    /// Kind, e.g. `Pod`.
    pub kind: Arc<str>,
}

/// `x-kubernetes-patch-strategy`, split into its parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PatchStrategy<'a> {
    raw: Option<&'a str>,
}

impl<'a> PatchStrategy<'a> {
    /// The raw extension value (`"merge"`, `"retainKeys"`, `"merge,retainKeys"`, `"replace"`).
    pub fn as_str(&self) -> Option<&'a str> {
        self.raw
    }

    fn parts(&self) -> impl Iterator<Item = &'a str> {
        self.raw.into_iter().flat_map(|s| s.split(','))
    }

    /// Lists merge element-wise (by merge key), maps merge key by key.
    pub fn is_merge(&self) -> bool {
        self.parts().any(|p| p == "merge")
    }

    /// The field is replaced as a whole.
    pub fn is_replace(&self) -> bool {
        self.parts().any(|p| p == "replace")
    }

    /// Clients send `$retainKeys` for this field (a union such as a Deployment's strategy).
    pub fn retains_keys(&self) -> bool {
        self.parts().any(|p| p == "retainKeys")
    }
}

/// What kind of value a [`TypeRef`] describes (after following `$ref`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// An object with declared properties.
    Object,
    /// A list.
    Array,
    /// An object with arbitrary keys and typed values.
    Map,
    /// A scalar.
    Scalar(ScalarType),
    /// An integer or a string.
    IntOrString,
    /// A string or a number (`Quantity`).
    StringOrNumber,
    /// Any object, not checked.
    FreeObject,
    /// Any value, not checked.
    Any,
}

/// A set of named type definitions: the built-in Kubernetes API, plus CRD schemas added at run
/// time.
///
/// Cloning is cheap (definitions are shared), so a server keeps `Schema::builtin().clone()` with
/// its CRDs added and swaps it when they change.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub(crate) defs: Vec<Option<Arc<Definition>>>,
    pub(crate) by_name: HashMap<Arc<str>, DefId>,
    by_gvk: HashMap<String, DefId>,
}

fn gvk_key(group: &str, version: &str, kind: &str) -> String {
    format!("{group}/{version}/{kind}")
}

impl Schema {
    /// An empty schema.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in Kubernetes v1.33 schema, inflated and parsed on first use.
    ///
    /// # Panics
    /// If the embedded data is corrupt: a build defect that this crate's tests rule out. Use
    /// [`Schema::try_builtin`] to handle it as an error instead.
    pub fn builtin() -> &'static Schema {
        match Self::try_builtin() {
            Ok(schema) => schema,
            Err(e) => panic!("{e}"),
        }
    }

    /// The built-in Kubernetes v1.33 schema, or why the embedded data could not be loaded.
    pub fn try_builtin() -> Result<&'static Schema> {
        crate::data::builtin()
    }

    /// Adds (or replaces) definitions given as OpenAPI / JSON Schema objects keyed by name.
    ///
    /// `$ref`s may name definitions of the same batch or already present ones (as
    /// `#/definitions/X`, `#/components/schemas/X` or `#/$defs/X`). Nothing is added on error.
    pub fn add_definitions(&mut self, defs: &Map<String, Value>) -> Result<()> {
        let entries: Vec<(&str, &Value)> = defs.iter().map(|(k, v)| (k.as_str(), v)).collect();
        self.add_parsed(&entries, false)
    }

    /// Allocates ids for names not yet present, so later batches can refer to them.
    pub(crate) fn register_names<'n>(&mut self, names: impl Iterator<Item = &'n str>) {
        for name in names {
            if !self.by_name.contains_key(name) {
                let id = self.defs.len() as DefId;
                self.defs.push(None);
                self.by_name.insert(Arc::from(name), id);
            }
        }
    }

    /// Adds definitions; `builtin_quirks` undoes the JSON Schema conversion of the embedded data.
    pub(crate) fn add_parsed(&mut self, defs: &[(&str, &Value)], builtin_quirks: bool) -> Result<()> {
        let mut names = self.by_name.clone();
        let mut next = self.defs.len();
        let mut ids = Vec::with_capacity(defs.len());
        for (name, _) in defs {
            let entry = match names.get_key_value(*name) {
                Some((key, id)) => (*id, key.clone()),
                None => {
                    let id = DefId::try_from(next).map_err(|_| crate::Error::InvalidDefinition {
                        name: (*name).to_owned(),
                        reason: "too many definitions".to_owned(),
                    })?;
                    next += 1;
                    let key: Arc<str> = Arc::from(*name);
                    names.insert(key.clone(), id);
                    (id, key)
                }
            };
            ids.push(entry);
        }
        let mut parser = crate::parse::Parser::new(&names, builtin_quirks);
        let mut parsed = Vec::with_capacity(defs.len());
        for ((name, value), (id, key)) in defs.iter().zip(ids) {
            let node = parser.definition(name, value)?;
            parsed.push((id, Definition { name: key, node }));
        }
        drop(parser);
        self.defs.resize_with(next, || None);
        for (id, def) in parsed {
            if self.defs[id as usize].is_some() {
                // A replaced definition may have served other kinds before.
                self.by_gvk.retain(|_, v| *v != id);
            }
            if let Some(ext) = &def.node.ext {
                for gvk in ext.gvks.iter() {
                    self.by_gvk.insert(gvk_key(&gvk.group, &gvk.version, &gvk.kind), id);
                }
            }
            self.defs[id as usize] = Some(Arc::new(def));
        }
        self.by_name = names;
        Ok(())
    }

    /// Removes a definition; references to it then accept anything.
    pub fn remove_definition(&mut self, name: &str) -> bool {
        let Some(id) = self.by_name.remove(name) else {
            return false;
        };
        self.defs[id as usize] = None;
        self.by_gvk.retain(|_, v| *v != id);
        true
    }

    /// How many definitions the schema holds.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether the schema holds no definitions.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Names of all definitions, sorted.
    pub fn definition_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(|k| &**k).collect();
        names.sort_unstable();
        names
    }

    /// The definition named `name` (e.g. `io.k8s.api.core.v1.Pod`).
    pub fn definition(&self, name: &str) -> Option<TypeRef<'_>> {
        let id = *self.by_name.get(name)?;
        self.def(id).map(|def| TypeRef::of_definition(self, def))
    }

    /// The definition of a kind, found via `x-kubernetes-group-version-kind` (group `""` is core).
    pub fn for_kind(&self, group: &str, version: &str, kind: &str) -> Option<TypeRef<'_>> {
        let id = *self.by_gvk.get(&gvk_key(group, version, kind))?;
        self.def(id).map(|def| TypeRef::of_definition(self, def))
    }

    /// The name of the definition for a kind.
    pub fn definition_name_for_kind(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        let id = *self.by_gvk.get(&gvk_key(group, version, kind))?;
        self.def(id).map(|def| &*def.name)
    }

    pub(crate) fn def(&self, id: DefId) -> Option<&Definition> {
        self.defs.get(id as usize).and_then(|d| d.as_deref())
    }

    pub(crate) fn def_by_name(&self, name: &str) -> Option<(DefId, &Definition)> {
        let id = *self.by_name.get(name)?;
        self.def(id).map(|d| (id, d))
    }

    /// Roughly how many heap bytes the definitions take (shared strings counted once per use).
    pub fn approximate_heap_bytes(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        let mut total = self.defs.capacity() * std::mem::size_of::<Option<Arc<Definition>>>();
        for def in self.defs.iter().flatten() {
            total += std::mem::size_of::<Definition>() + 16;
            total += arc_str_bytes(&def.name, &mut seen);
            total += node_heap_bytes(&def.node, &mut seen);
        }
        total + self.by_name.capacity() * 32 + self.by_gvk.capacity() * 48
    }
}

fn arc_str_bytes(s: &Arc<str>, seen: &mut std::collections::HashSet<*const u8>) -> usize {
    if seen.insert(s.as_ptr()) {
        s.len() + 16
    } else {
        0
    }
}

fn node_heap_bytes(node: &Node, seen: &mut std::collections::HashSet<*const u8>) -> usize {
    let mut total = 0;
    if let Some(d) = &node.description {
        total += arc_str_bytes(d, seen);
    }
    if let Some(ext) = &node.ext {
        total += std::mem::size_of::<Ext>() + ext.gvks.len() * std::mem::size_of::<Gvk>();
        total += ext.list_map_keys.len() * 16 + ext.extra.len() * 64;
    }
    match &node.shape {
        Shape::Object(o) => {
            total += std::mem::size_of::<ObjectShape>();
            total += o.properties.len() * std::mem::size_of::<(Arc<str>, Node)>();
            total += o.required.len() * 16;
            for (name, child) in o.properties.iter() {
                total += arc_str_bytes(name, seen);
                total += node_heap_bytes(child, seen);
            }
        }
        Shape::Array(inner) | Shape::Map(inner) => {
            total += std::mem::size_of::<Node>() + node_heap_bytes(inner, seen);
        }
        Shape::Scalar { format: Some(f), .. } => total += arc_str_bytes(f, seen),
        _ => {}
    }
    total
}

/// A position in a schema: a definition, or a field, list element or map value inside one.
///
/// Field-level metadata (description, patch strategy, merge key, list type) is read from the
/// field itself; the shape (properties, items) from the definition it refers to.
#[derive(Clone, Copy)]
pub struct TypeRef<'a> {
    schema: &'a Schema,
    field: &'a Node,
    target: &'a Node,
    target_name: Option<&'a str>,
}

impl std::fmt::Debug for TypeRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypeRef").field("kind", &self.kind()).field("definition", &self.target_name).finish()
    }
}

impl<'a> TypeRef<'a> {
    fn of_definition(schema: &'a Schema, def: &'a Definition) -> Self {
        let mut t = TypeRef::new(schema, &def.node);
        if t.target_name.is_none() {
            t.target_name = Some(&def.name);
        }
        t
    }

    pub(crate) fn new(schema: &'a Schema, field: &'a Node) -> Self {
        let mut target = field;
        let mut target_name = None;
        // Follow chains of references; a cycle of bare references ends as "anything".
        for _ in 0..16 {
            let Shape::Ref(id) = target.shape else { break };
            match schema.def(id) {
                Some(def) => {
                    target = &def.node;
                    target_name = Some(&*def.name);
                }
                None => {
                    target = &ANY;
                    break;
                }
            }
        }
        if matches!(target.shape, Shape::Ref(_)) {
            target = &ANY;
        }
        TypeRef { schema, field, target, target_name }
    }

    /// The schema this position belongs to.
    pub fn schema(&self) -> &'a Schema {
        self.schema
    }

    fn ext(&self) -> impl Iterator<Item = &'a Ext> {
        self.field
            .ext
            .as_deref()
            .into_iter()
            .chain(self.target.ext.as_deref().filter(|_| !std::ptr::eq(self.field, self.target)))
    }

    /// The kind of value accepted here.
    pub fn kind(&self) -> Kind {
        match &self.target.shape {
            Shape::Object(_) => Kind::Object,
            Shape::Array(_) => Kind::Array,
            Shape::Map(_) => Kind::Map,
            Shape::Scalar { ty, .. } => Kind::Scalar(*ty),
            Shape::IntOrString => Kind::IntOrString,
            Shape::StringOrNumber => Kind::StringOrNumber,
            Shape::FreeObject => Kind::FreeObject,
            Shape::Any | Shape::Ref(_) => Kind::Any,
        }
    }

    /// The name of the definition this position refers to, if it is (or refers to) one.
    pub fn definition_name(&self) -> Option<&'a str> {
        self.target_name
    }

    /// The description, from the field if it has one, else from its definition.
    pub fn description(&self) -> Option<&'a str> {
        self.field.description.as_deref().or(self.target.description.as_deref())
    }

    /// The OpenAPI `format` of a scalar.
    pub fn format(&self) -> Option<&'a str> {
        match &self.target.shape {
            Shape::Scalar { format, .. } => format.as_deref(),
            Shape::IntOrString => Some("int-or-string"),
            _ => None,
        }
    }

    /// Whether this is a scalar (string, integer, number, boolean, int-or-string, quantity).
    pub fn is_primitive(&self) -> bool {
        matches!(self.kind(), Kind::Scalar(_) | Kind::IntOrString | Kind::StringOrNumber)
    }

    /// Whether this is an object with declared properties.
    pub fn is_object(&self) -> bool {
        self.kind() == Kind::Object
    }

    /// Whether this is a list.
    pub fn is_array(&self) -> bool {
        self.kind() == Kind::Array
    }

    /// Whether this is a map with typed values.
    pub fn is_map(&self) -> bool {
        self.kind() == Kind::Map
    }

    /// Whether this is an int-or-string.
    pub fn is_int_or_string(&self) -> bool {
        self.kind() == Kind::IntOrString
    }

    /// Whether unknown fields are kept here rather than reported or pruned.
    pub fn preserves_unknown_fields(&self) -> bool {
        matches!(self.kind(), Kind::FreeObject | Kind::Any) || self.ext().any(|e| e.preserve_unknown)
    }

    /// Whether this is an embedded resource (`x-kubernetes-embedded-resource`).
    pub fn is_embedded_resource(&self) -> bool {
        self.ext().any(|e| e.embedded_resource)
    }

    /// A declared property of an object.
    pub fn property(&self, name: &str) -> Option<TypeRef<'a>> {
        let Shape::Object(obj) = &self.target.shape else {
            return None;
        };
        let i = obj.properties.binary_search_by(|(k, _)| (**k).cmp(name)).ok()?;
        Some(TypeRef::new(self.schema, &obj.properties[i].1))
    }

    /// The declared properties of an object, sorted by name.
    pub fn properties(&self) -> impl Iterator<Item = (&'a str, TypeRef<'a>)> + 'a {
        let schema = self.schema;
        let props: &'a [(Arc<str>, Node)] = match &self.target.shape {
            Shape::Object(obj) => &obj.properties,
            _ => &[],
        };
        props.iter().map(move |(k, n)| (&**k, TypeRef::new(schema, n)))
    }

    /// The required properties of an object.
    pub fn required(&self) -> impl Iterator<Item = &'a str> + 'a {
        let req: &'a [Arc<str>] = match &self.target.shape {
            Shape::Object(obj) => &obj.required,
            _ => &[],
        };
        req.iter().map(|s| &**s)
    }

    /// The element type of a list.
    pub fn items(&self) -> Option<TypeRef<'a>> {
        match &self.target.shape {
            Shape::Array(inner) => Some(TypeRef::new(self.schema, inner)),
            _ => None,
        }
    }

    /// The value type of a map (`additionalProperties`).
    pub fn additional_properties(&self) -> Option<TypeRef<'a>> {
        match &self.target.shape {
            Shape::Map(inner) => Some(TypeRef::new(self.schema, inner)),
            _ => None,
        }
    }

    /// The type under `key` in an object (a property) or a map (its values).
    pub fn child(&self, key: &str) -> Option<TypeRef<'a>> {
        match &self.target.shape {
            Shape::Object(_) => self.property(key),
            Shape::Map(_) => self.additional_properties(),
            _ => None,
        }
    }

    /// The patch strategy of this field (`x-kubernetes-patch-strategy`).
    pub fn patch_strategy(&self) -> PatchStrategy<'a> {
        PatchStrategy { raw: self.ext().find_map(|e| e.patch_strategy.as_deref()) }
    }

    /// The merge key of a list field (`x-kubernetes-patch-merge-key`).
    pub fn patch_merge_key(&self) -> Option<&'a str> {
        self.ext().find_map(|e| e.merge_key.as_deref())
    }

    /// The list type of a list field (`x-kubernetes-list-type`).
    pub fn list_type(&self) -> Option<ListType> {
        self.ext().find_map(|e| e.list_type)
    }

    /// The keys of a `map` list (`x-kubernetes-list-map-keys`).
    pub fn list_map_keys(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.ext()
            .find(|e| !e.list_map_keys.is_empty())
            .into_iter()
            .flat_map(|e| e.list_map_keys.iter().map(|s| &**s))
    }

    /// The map type of an object (`x-kubernetes-map-type`).
    pub fn map_type(&self) -> Option<MapType> {
        self.ext().find_map(|e| e.map_type)
    }

    /// The kinds this definition is the schema of (`x-kubernetes-group-version-kind`).
    pub fn group_version_kinds(&self) -> &'a [Gvk] {
        self.target.ext.as_deref().map(|e| &*e.gvks).unwrap_or(&[])
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
