//! Field paths and sets of them, in the `FieldsV1` encoding of `metadata.managedFields`.
//!
//! A [`FieldSet`] is a tree keyed by [`PathElement`]s: `f:<name>` for a field of a struct or a
//! key of a map, `k:{...}` for an item of a list-map by its key fields, `v:<json>` for an item
//! of a set, `i:<n>` for an item by index. A node is a *member* when the path ending there is in
//! the set; a node can be a member and have children (`"."` marks that in `FieldsV1`). Set
//! operations follow structured-merge-diff: [`FieldSet::difference`] removes members only,
//! [`FieldSet::recursive_difference`] removes whole subtrees under the other set's members.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde_json::{Map, Value};

/// A `FieldsV1` document that cannot be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid FieldsV1: {0}")]
pub struct FieldsV1Error(pub String);

/// One step of a field path.
///
/// The order (fields, then keys, then values, then indexes) is the order structured-merge-diff
/// iterates sets in, so conflicts are listed the way kube-apiserver lists them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of a struct or a key of a map (`f:name`).
    Field(String),
    /// An item of a list-map by its key fields, as canonical JSON with sorted keys
    /// (`k:{"name":"nginx"}`).
    Key(String),
    /// An item of a set by its value, as canonical JSON (`v:"example.com/finalizer"`).
    Value(String),
    /// An item of a list by index (`i:0`).
    Index(usize),
}

impl PathElement {
    /// A field or map key.
    pub fn field(name: impl Into<String>) -> Self {
        PathElement::Field(name.into())
    }

    /// A list-map item identified by `fields` (name, value) pairs, in any order.
    pub fn key<'v>(fields: impl IntoIterator<Item = (&'v str, &'v Value)>) -> Self {
        let mut fields: Vec<(&str, &Value)> = fields.into_iter().collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        fields.dedup_by(|a, b| a.0 == b.0);
        let mut out = String::from("{");
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(&mut out, name);
            out.push(':');
            write_canonical(&mut out, value);
        }
        out.push('}');
        PathElement::Key(out)
    }

    /// A set item identified by its value.
    pub fn value(value: &Value) -> Self {
        PathElement::Value(canonical_json(value))
    }

    /// The `FieldsV1` key of this element (`f:name`, `k:{...}`, `v:...`, `i:0`).
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(json) => format!("k:{json}"),
            PathElement::Value(json) => format!("v:{json}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `FieldsV1` key; `Ok(None)` for element kinds this version does not know (they
    /// are dropped, as structured-merge-diff drops them).
    pub fn decode(s: &str) -> Result<Option<Self>, FieldsV1Error> {
        let (kind, rest) = match s.split_once(':') {
            Some((kind, rest)) if kind.len() == 1 => (kind, rest),
            _ => return Err(FieldsV1Error(format!("path element {s:?} lacks its type prefix"))),
        };
        let json = || {
            serde_json::from_str::<Value>(rest).map_err(|e| FieldsV1Error(format!("path element {s:?}: {e}")))
        };
        Ok(Some(match kind {
            "f" => PathElement::Field(rest.to_owned()),
            "k" => match json()? {
                Value::Object(m) => PathElement::key(m.iter().map(|(k, v)| (k.as_str(), v))),
                _ => return Err(FieldsV1Error(format!("path element {s:?}: a key must be a JSON object"))),
            },
            "v" => PathElement::value(&json()?),
            "i" => PathElement::Index(
                rest.parse().map_err(|_| FieldsV1Error(format!("path element {s:?}: bad index")))?,
            ),
            _ => return Ok(None),
        }))
    }
}

/// As structured-merge-diff prints it in conflict messages: `.name`, `[name="nginx"]`,
/// `[="value"]`, `[0]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(json) => {
                f.write_char('[')?;
                match serde_json::from_str::<Map<String, Value>>(json) {
                    Ok(fields) => {
                        let mut fields: Vec<_> = fields.into_iter().collect();
                        fields.sort_by(|a, b| a.0.cmp(&b.0));
                        for (i, (name, value)) in fields.iter().enumerate() {
                            if i > 0 {
                                f.write_char(',')?;
                            }
                            write!(f, "{name}={}", canonical_json(value))?;
                        }
                    }
                    Err(_) => f.write_str(json)?,
                }
                f.write_char(']')
            }
            PathElement::Value(json) => write!(f, "[={json}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the root of an object (`.spec.template.spec.containers[name="nginx"].image`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(pub Vec<PathElement>);

impl FieldPath {
    /// A path of field names only (`FieldPath::fields(&["spec", "replicas"])`).
    pub fn fields(names: &[&str]) -> Self {
        FieldPath(names.iter().map(|n| PathElement::field(*n)).collect())
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|pe| write!(f, "{pe}"))
    }
}

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    nodes: BTreeMap<PathElement, Node>,
}

/// One path element of a set: whether the path ending here is a member, and the paths below.
/// Invariant: a node is a member or has children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    member: bool,
    children: FieldSet,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// How many paths the set holds.
    pub fn len(&self) -> usize {
        self.nodes.values().map(|n| usize::from(n.member) + n.children.len()).sum()
    }

    /// Adds a path (the empty path is ignored).
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let node = self.nodes.entry(first.clone()).or_default();
        if rest.is_empty() {
            node.member = true;
        } else {
            node.children.insert(rest);
        }
    }

    /// Whether `path` is in the set.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        match path.split_first() {
            None => false,
            Some((first, [])) => self.nodes.get(first).is_some_and(|n| n.member),
            Some((first, rest)) => self.nodes.get(first).is_some_and(|n| n.children.contains(rest)),
        }
    }

    /// Whether `pe` (one step below this set's root) is a member.
    pub(crate) fn has_member(&self, pe: &PathElement) -> bool {
        self.nodes.get(pe).is_some_and(|n| n.member)
    }

    /// The paths below `pe`, if any.
    pub(crate) fn children(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.nodes.get(pe).map(|n| &n.children).filter(|c| !c.is_empty())
    }

    /// The path elements one step below the root, with whether each is a member and what lies
    /// below it.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&PathElement, bool, &FieldSet)> {
        self.nodes.iter().map(|(pe, n)| (pe, n.member, &n.children))
    }

    /// Marks `pe` as a member (keeping what lies below it).
    pub(crate) fn insert_member(&mut self, pe: &PathElement) {
        self.nodes.entry(pe.clone()).or_default().member = true;
    }

    /// Adds `children` below `pe`.
    pub(crate) fn add_children(&mut self, pe: &PathElement, children: &FieldSet) {
        if !children.is_empty() {
            self.nodes.entry(pe.clone()).or_default().children.union_with(children);
        }
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// Adds every path of `other`.
    pub fn union_with(&mut self, other: &FieldSet) {
        for (pe, theirs) in &other.nodes {
            let node = self.nodes.entry(pe.clone()).or_default();
            node.member |= theirs.member;
            node.children.union_with(&theirs.children);
        }
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for (pe, mine) in &self.nodes {
            let Some(theirs) = other.nodes.get(pe) else { continue };
            let node = Node {
                member: mine.member && theirs.member,
                children: mine.children.intersection(&theirs.children),
            };
            if node.member || !node.children.is_empty() {
                out.nodes.insert(pe.clone(), node);
            }
        }
        out
    }

    /// Paths of this set that are not in `other` (a member of `other` removes only that path,
    /// not the paths below it).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for (pe, mine) in &self.nodes {
            let node = match other.nodes.get(pe) {
                None => mine.clone(),
                Some(theirs) => Node {
                    member: mine.member && !theirs.member,
                    children: mine.children.difference(&theirs.children),
                },
            };
            if node.member || !node.children.is_empty() {
                out.nodes.insert(pe.clone(), node);
            }
        }
        out
    }

    /// Paths of this set that are neither in `other` nor below one of its members.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for (pe, mine) in &self.nodes {
            let node = match other.nodes.get(pe) {
                None => mine.clone(),
                Some(theirs) if theirs.member => continue,
                Some(theirs) => Node {
                    member: mine.member,
                    children: mine.children.recursive_difference(&theirs.children),
                },
            };
            if node.member || !node.children.is_empty() {
                out.nodes.insert(pe.clone(), node);
            }
        }
        out
    }

    /// The member paths, in structured-merge-diff's iteration order (at each level the members
    /// first, then the subtrees).
    pub fn paths(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<FieldPath>) {
        for (pe, node) in &self.nodes {
            if node.member {
                prefix.push(pe.clone());
                out.push(FieldPath(prefix.clone()));
                prefix.pop();
            }
        }
        for (pe, node) in &self.nodes {
            prefix.push(pe.clone());
            node.children.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON of this set.
    pub fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        for (pe, node) in &self.nodes {
            let mut inner = match node.children.to_fields_v1() {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if node.member && !inner.is_empty() {
                inner.insert(".".to_owned(), Value::Object(Map::new()));
            }
            out.insert(pe.encode(), Value::Object(inner));
        }
        Value::Object(out)
    }

    /// Decodes `FieldsV1` JSON. Element kinds this version does not know are dropped.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, FieldsV1Error> {
        let Value::Object(map) = value else {
            return Err(FieldsV1Error("a field set must be a JSON object".to_owned()));
        };
        let mut out = FieldSet::new();
        for (key, inner) in map {
            if key == "." {
                continue;
            }
            let Some(pe) = PathElement::decode(key)? else { continue };
            let Value::Object(inner_map) = inner else {
                return Err(FieldsV1Error(format!("the value of {key:?} must be a JSON object")));
            };
            let children = FieldSet::from_fields_v1(inner)?;
            let member = inner_map.contains_key(".") || children.is_empty();
            let node = out.nodes.entry(pe).or_default();
            node.member |= member;
            node.children.union_with(&children);
        }
        Ok(out)
    }
}

/// Canonical JSON: object keys sorted, no whitespace.
pub(crate) fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, value);
    out
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, k);
                out.push(':');
                write_canonical(out, v);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, v);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn write_json_string(out: &mut String, s: &str) {
    out.push_str(&Value::String(s.to_owned()).to_string());
}

#[cfg(test)]
#[path = "fieldpath_tests.rs"]
mod tests;
