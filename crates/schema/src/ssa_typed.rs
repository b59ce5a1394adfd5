//! The typed walks of server-side apply over `serde_json::Value`: the field set of an object,
//! merging an applied configuration into a live object, comparing two versions of an object,
//! and removing fields. Each follows the schema the way structured-merge-diff follows the
//! schema kube-apiserver converts from its OpenAPI:
//!
//! - objects with declared properties are structs, merged field by field unless
//!   `x-kubernetes-map-type: atomic`; objects with `additionalProperties` are maps, likewise;
//! - lists follow `x-kubernetes-list-type` (`atomic`, `set`, or `map` keyed by
//!   `x-kubernetes-list-map-keys`); without it a list with `x-kubernetes-patch-strategy: merge`
//!   is a map keyed by its patch merge key (or a set when it has none), any other list is atomic;
//! - where the schema knows nothing (unknown fields, free-form objects) the shape is deduced
//!   from the value: objects are maps merged key by key, lists are atomic.
//!
//! A scalar, an atomic list or map, and a value whose JSON type does not fit its schema are
//! leaves: owned, compared and replaced as a whole.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::fieldpath::{FieldSet, PathElement};
use crate::{Kind, ListType, MapType, TypeRef};

/// A position in the schema; `None` where the shape is deduced from the value.
pub(crate) type Ty<'a> = Option<TypeRef<'a>>;

/// How a position merges.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape<'a> {
    /// Owned and replaced as a whole.
    Leaf,
    /// An object merged key by key (a struct or a map).
    Fields,
    /// A list merged item by item.
    Items(ListKind<'a>),
    /// Unknown: an object is `Fields`, anything else a leaf.
    Deduced,
}

/// How the items of a granular list are identified.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListKind<'a> {
    /// Scalars, by value.
    Set,
    /// Objects, by these key fields.
    Map(Vec<&'a str>),
}

fn shape_of<'a>(ty: Ty<'a>) -> Shape<'a> {
    let Some(t) = ty else { return Shape::Deduced };
    match t.kind() {
        Kind::Object | Kind::Map => {
            if t.map_type() == Some(MapType::Atomic) {
                Shape::Leaf
            } else {
                Shape::Fields
            }
        }
        Kind::Array => list_shape(t),
        Kind::FreeObject | Kind::Any => Shape::Deduced,
        _ => Shape::Leaf,
    }
}

fn list_shape<'a>(t: TypeRef<'a>) -> Shape<'a> {
    let keys = || -> Vec<&'a str> {
        let keys: Vec<&'a str> = t.list_map_keys().collect();
        if keys.is_empty() {
            t.patch_merge_key().into_iter().collect()
        } else {
            keys
        }
    };
    let item_is_primitive = t.items().is_some_and(|i| i.is_primitive());
    match t.list_type() {
        Some(ListType::Atomic) => Shape::Leaf,
        Some(ListType::Set) => Shape::Items(ListKind::Set),
        Some(ListType::Map) => match keys() {
            k if k.is_empty() => Shape::Leaf,
            k => Shape::Items(ListKind::Map(k)),
        },
        None if t.patch_strategy().is_merge() => match t.patch_merge_key() {
            Some(key) => Shape::Items(ListKind::Map(vec![key])),
            None if item_is_primitive => Shape::Items(ListKind::Set),
            None => Shape::Leaf,
        },
        None => Shape::Leaf,
    }
}

/// The type under `key` of an object position, and whether `key` is a declared property.
fn child_of<'a>(ty: Ty<'a>, key: &str) -> (Ty<'a>, bool) {
    match ty {
        Some(t) if t.kind() == Kind::Object => match t.property(key) {
            Some(p) => (Some(p), true),
            None => (None, false),
        },
        Some(t) if t.kind() == Kind::Map => (t.additional_properties(), false),
        _ => (None, false),
    }
}

/// The type of the items of a list position.
fn items_of(ty: Ty<'_>) -> Ty<'_> {
    ty.and_then(|t| t.items())
}

/// The type below a path element of `ty`, and whether the element is a declared property.
pub(crate) fn descend<'a>(ty: Ty<'a>, pe: &PathElement) -> (Ty<'a>, bool) {
    match pe {
        PathElement::Field(name) => child_of(ty, name),
        _ => (items_of(ty), false),
    }
}

/// How one or two values at a position are walked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Walk<'a> {
    Leaf,
    Fields,
    Items(ListKind<'a>),
}

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

/// How the values at one position are walked together (either may be absent). Empty
/// containers on both sides are a leaf, so `{}` versus absent is a change.
fn walk_of<'a>(ty: Ty<'a>, lhs: Option<&Value>, rhs: Option<&Value>) -> Walk<'a> {
    let fits_object = |v: Option<&Value>| matches!(v, None | Some(Value::Null | Value::Object(_)));
    let fits_list = |v: Option<&Value>| matches!(v, None | Some(Value::Null | Value::Array(_)));
    let walk = match shape_of(ty) {
        Shape::Leaf => Walk::Leaf,
        Shape::Fields | Shape::Deduced if fits_object(lhs) && fits_object(rhs) => {
            let any_object = matches!(lhs, Some(Value::Object(_))) || matches!(rhs, Some(Value::Object(_)));
            if any_object {
                Walk::Fields
            } else {
                Walk::Leaf
            }
        }
        Shape::Items(kind) if fits_list(lhs) && fits_list(rhs) => Walk::Items(kind),
        _ => Walk::Leaf,
    };
    if walk != Walk::Leaf && is_empty_container(lhs) && is_empty_container(rhs) {
        return Walk::Leaf;
    }
    walk
}

/// The value a list-map key field takes when an item omits it: the schema default of the only
/// such key in the built-in API (`protocol` of container and service ports is `TCP`).
fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| Value::String("TCP".to_owned()))
}

/// The path element of a list item; `strict` reports items that lack their keys (an applied
/// configuration), otherwise such an item is addressed by index.
fn item_element(
    kind: &ListKind<'_>,
    index: usize,
    item: &Value,
    strict: bool,
) -> Result<PathElement, String> {
    match kind {
        ListKind::Set => match item {
            Value::Object(_) | Value::Array(_) if strict => {
                Err(format!("element {index}: a set may only hold scalars"))
            }
            Value::Object(_) | Value::Array(_) => Ok(PathElement::Index(index)),
            scalar => Ok(PathElement::value(scalar)),
        },
        ListKind::Map(keys) => {
            let Value::Object(m) = item else {
                return if strict {
                    Err(format!("element {index}: expected an object in an associative list"))
                } else {
                    Ok(PathElement::Index(index))
                };
            };
            let mut fields: Vec<(&str, Value)> = Vec::with_capacity(keys.len());
            for key in keys {
                match m.get(*key).filter(|v| !v.is_null()) {
                    Some(v @ (Value::Object(_) | Value::Array(_))) if strict => {
                        return Err(format!(
                            "element {index}: key field {key:?} must be a scalar, not {v}"
                        ))
                    }
                    Some(v) => fields.push((key, v.clone())),
                    None => match key_default(key) {
                        Some(d) => fields.push((key, d)),
                        None if strict => {
                            return Err(format!(
                                "element {index}: associative list with keys has an element that omits key field {key:?} (and doesn't have default value)"
                            ))
                        }
                        None => return Ok(PathElement::Index(index)),
                    },
                }
            }
            Ok(PathElement::key(fields.iter().map(|(k, v)| (*k, v))))
        }
    }
}

/// The items of a list with their path elements, first occurrence of each element kept in
/// the index.
struct Indexed<'v> {
    order: Vec<(PathElement, &'v Value)>,
    first: BTreeMap<PathElement, &'v Value>,
}

fn index_items<'v>(
    kind: &ListKind<'_>,
    list: Option<&'v Value>,
    strict: bool,
    path: &[PathElement],
) -> Result<Indexed<'v>, String> {
    let items: &[Value] = match list {
        Some(Value::Array(a)) => a,
        _ => &[],
    };
    let mut out = Indexed { order: Vec::with_capacity(items.len()), first: BTreeMap::new() };
    for (i, item) in items.iter().enumerate() {
        let pe = item_element(kind, i, item, strict).map_err(|e| format!("{}: {e}", display(path)))?;
        if out.first.contains_key(&pe) {
            if strict {
                return Err(format!("{}: duplicate entries for key {pe}", display(path)));
            }
        } else {
            out.first.insert(pe.clone(), item);
        }
        out.order.push((pe, item));
    }
    Ok(out)
}

pub(crate) fn display(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// JSON equality with numbers compared by value (`1` equals `1.0`), as decoded values compare.
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------------
// Field sets

/// The set of fields `value` specifies. `strict` rejects list items without their keys and
/// duplicate keys (as for an applied configuration); otherwise such items are addressed by
/// index and duplicates counted once.
pub(crate) fn field_set(ty: Ty<'_>, value: &Value, strict: bool) -> Result<FieldSet, String> {
    let mut set = FieldSet::new();
    let mut path = Vec::new();
    collect(ty, value, &mut path, &mut set, strict)?;
    Ok(set)
}

fn collect(
    ty: Ty<'_>,
    value: &Value,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
    strict: bool,
) -> Result<(), String> {
    match walk_of(ty, Some(value), None) {
        Walk::Leaf => {
            if !names_no_field(ty, value) {
                set.insert(path);
            }
        }
        Walk::Fields => {
            if let Value::Object(m) = value {
                for (k, v) in m {
                    let (child, declared) = child_of(ty, k);
                    path.push(PathElement::field(k.as_str()));
                    collect(child, v, path, set, strict)?;
                    if !declared {
                        set.insert(path);
                    }
                    path.pop();
                }
            }
        }
        Walk::Items(kind) => {
            let items = index_items(&kind, Some(value), strict, path)?;
            let item_ty = items_of(ty);
            for (pe, item) in items.order {
                path.push(pe);
                collect(item_ty, item, path, set, strict)?;
                set.insert(path);
                path.pop();
            }
        }
    }
    Ok(())
}

/// Whether a value names no field of its own: a null or empty struct, map or granular list
/// (every other leaf, an empty atomic list included, is a field).
fn names_no_field(ty: Ty<'_>, value: &Value) -> bool {
    match (shape_of(ty), value) {
        (Shape::Fields | Shape::Deduced | Shape::Items(_), Value::Null) => true,
        (Shape::Fields | Shape::Deduced, Value::Object(m)) => m.is_empty(),
        (Shape::Items(_), Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Merge

/// Merges `rhs` (an applied configuration) into `lhs` (the live object): the configuration's
/// leaves win, granular objects and lists keep what only the live side has. A `null` in the
/// configuration removes the field.
pub(crate) fn merge(ty: Ty<'_>, lhs: Option<&Value>, rhs: Option<&Value>) -> Option<Value> {
    let rhs = match rhs {
        None => return lhs.cloned(),
        Some(r) => r,
    };
    match walk_of(ty, lhs, Some(rhs)) {
        Walk::Leaf => Some(rhs.clone()),
        Walk::Fields => {
            let empty = Map::new();
            let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let r = rhs.as_object().unwrap_or(&empty);
            let mut out = Map::new();
            for (k, lv) in l {
                let (child, _) = child_of(ty, k);
                match r.get(k) {
                    Some(Value::Null) => {}
                    rv => {
                        if let Some(v) = merge(child, Some(lv), rv) {
                            out.insert(k.clone(), v);
                        }
                    }
                }
            }
            for (k, rv) in r {
                if l.contains_key(k) || rv.is_null() {
                    continue;
                }
                let (child, _) = child_of(ty, k);
                if let Some(v) = merge(child, None, Some(rv)) {
                    out.insert(k.clone(), v);
                }
            }
            Some(Value::Object(out))
        }
        Walk::Items(kind) => {
            // Both sides were indexed leniently by the caller's validation; here an item
            // without its keys is addressed by index.
            let l = index_items(&kind, lhs, false, &[]).unwrap_or_else(|_| Indexed::empty());
            let r = index_items(&kind, Some(rhs), false, &[]).unwrap_or_else(|_| Indexed::empty());
            Some(Value::Array(merge_items(items_of(ty), &l, &r)))
        }
    }
}

impl Indexed<'_> {
    fn empty() -> Self {
        Indexed { order: Vec::new(), first: BTreeMap::new() }
    }
}

/// Merges list items: items of both sides are merged, the configuration's order wins among
/// the items it names, and items only the live list has stay where they were relative to them.
fn merge_items(item_ty: Ty<'_>, l: &Indexed<'_>, r: &Indexed<'_>) -> Vec<Value> {
    let mut out = Vec::with_capacity(l.order.len() + r.order.len());
    let mut shared = r.order.iter().map(|(pe, _)| pe).filter(|pe| l.first.contains_key(*pe));
    let mut next_shared = shared.next();
    let mut emitted: BTreeSet<&PathElement> = BTreeSet::new();
    let (mut li, mut ri) = (0, 0);
    let merged = |pe: &PathElement, rv: &Value| merge(item_ty, l.first.get(pe).copied(), Some(rv));
    while li < l.order.len() || ri < r.order.len() {
        if li < l.order.len() && ri < r.order.len() {
            let (lpe, _) = &l.order[li];
            let (rpe, rv) = &r.order[ri];
            if lpe == rpe {
                if emitted.insert(rpe) {
                    out.extend(merged(rpe, rv));
                }
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if r.first.contains_key(lpe) && next_shared.is_some_and(|n| n != lpe) {
                // Named by the configuration, but not its turn yet.
                li += 1;
                continue;
            }
        }
        if li < l.order.len() {
            let (lpe, lv) = &l.order[li];
            if !r.first.contains_key(lpe) {
                out.push((*lv).clone());
                li += 1;
                continue;
            }
            if emitted.contains(lpe) {
                li += 1;
                continue;
            }
        }
        if ri < r.order.len() {
            let (rpe, rv) = &r.order[ri];
            if emitted.insert(rpe) {
                out.extend(merged(rpe, rv));
            }
            ri += 1;
            if next_shared == Some(rpe) {
                next_shared = shared.next();
            }
        } else {
            // Only live items named by the configuration remain, all emitted already.
            li += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Compare

/// The fields that differ between two versions of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Comparison {
    pub(crate) added: FieldSet,
    pub(crate) modified: FieldSet,
    pub(crate) removed: FieldSet,
}

impl Comparison {
    /// Drops the paths in or below members of `ignored`.
    pub(crate) fn without(self, ignored: &FieldSet) -> Comparison {
        Comparison {
            added: self.added.recursive_difference(ignored),
            modified: self.modified.recursive_difference(ignored),
            removed: self.removed.recursive_difference(ignored),
        }
    }

    pub(crate) fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// Compares `lhs` (old) and `rhs` (new).
///
/// Leaves that appear, change or disappear are added, modified or removed; so is a struct, map,
/// list or list item that appears or disappears as a whole (its path is then owned as `.` by
/// who added it). As kube-apiserver compares Go objects, a declared struct field (and a required
/// list or map) counts as present wherever its parent is, as its zero value would be.
pub(crate) fn compare(ty: Ty<'_>, lhs: &Value, rhs: &Value) -> Comparison {
    let mut c = Comparison::default();
    compare_at(ty, Some(lhs), Some(rhs), (false, false), &mut Vec::new(), &mut c);
    c
}

/// Whether the field `key` of an object of type `ty` exists as a zero value whenever the object
/// does (a nested struct, or a required list or map).
fn zero_present(ty: Ty<'_>, key: &str) -> bool {
    let Some(t) = ty else { return false };
    let Some(child) = t.property(key) else { return false };
    match child.kind() {
        Kind::Object => true,
        Kind::Array | Kind::Map => t.required().any(|r| r == key),
        _ => false,
    }
}

fn compare_at(
    ty: Ty<'_>,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    implied: (bool, bool),
    path: &mut Vec<PathElement>,
    c: &mut Comparison,
) {
    let walk = walk_of(ty, lhs, rhs);
    let (lhs_there, rhs_there) = (lhs.is_some() || implied.0, rhs.is_some() || implied.1);
    match walk {
        Walk::Leaf => {
            if path.is_empty() {
                return;
            }
            match (lhs, rhs) {
                // An empty value where the zero value is implied is no change.
                (None, Some(v)) if implied.0 && is_empty_container(Some(v)) => {}
                (Some(v), None) if implied.1 && is_empty_container(Some(v)) => {}
                (None, Some(_)) => c.added.insert(path),
                (Some(_), None) => c.removed.insert(path),
                (Some(l), Some(r)) if !values_equal(l, r) => c.modified.insert(path),
                _ => {}
            }
            return;
        }
        Walk::Fields => {
            let empty = Map::new();
            let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
            let keys: BTreeSet<&String> = l.keys().chain(r.keys()).collect();
            for k in keys {
                let (child, _) = child_of(ty, k);
                let zero = zero_present(ty, k);
                path.push(PathElement::field(k.as_str()));
                compare_at(child, l.get(k), r.get(k), (zero && lhs_there, zero && rhs_there), path, c);
                path.pop();
            }
        }
        Walk::Items(kind) => {
            let l = index_items(&kind, lhs, false, path).unwrap_or_else(|_| Indexed::empty());
            let r = index_items(&kind, rhs, false, path).unwrap_or_else(|_| Indexed::empty());
            let item_ty = items_of(ty);
            let pes: BTreeSet<&PathElement> = l.first.keys().chain(r.first.keys()).collect();
            for pe in pes {
                path.push(pe.clone());
                compare_at(
                    item_ty,
                    l.first.get(pe).copied(),
                    r.first.get(pe).copied(),
                    (false, false),
                    path,
                    c,
                );
                path.pop();
            }
        }
    }
    if !path.is_empty() {
        if !lhs_there {
            c.added.insert(path);
        } else if !rhs_there {
            c.removed.insert(path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Removal and named fields

/// Removes from `value` every field and list item that is a member of `set` (with everything
/// below it).
pub(crate) fn remove_items(ty: Ty<'_>, value: &mut Value, set: &FieldSet) {
    if set.is_empty() {
        return;
    }
    match walk_of(ty, Some(value), None) {
        Walk::Leaf => {}
        Walk::Fields => {
            if let Value::Object(m) = value {
                let keys: Vec<String> = m.keys().cloned().collect();
                for k in keys {
                    let pe = PathElement::field(k.as_str());
                    if set.has_member(&pe) {
                        m.remove(&k);
                    } else if let (Some(sub), Some(v)) = (set.children(&pe), m.get_mut(&k)) {
                        remove_items(child_of(ty, &k).0, v, sub);
                    }
                }
            }
        }
        Walk::Items(kind) => {
            let item_ty = items_of(ty);
            let Value::Array(items) = value else { return };
            let mut kept = Vec::with_capacity(items.len());
            for (i, mut item) in std::mem::take(items).into_iter().enumerate() {
                let Ok(pe) = item_element(&kind, i, &item, false) else {
                    kept.push(item);
                    continue;
                };
                if set.has_member(&pe) {
                    continue;
                }
                if let Some(sub) = set.children(&pe) {
                    remove_items(item_ty, &mut item, sub);
                }
                kept.push(item);
            }
            *items = kept;
        }
    }
}

/// `set` with every declared struct field that has paths below it made a member too (map
/// keys and list items are not), so removing it removes the field as a whole.
pub(crate) fn with_named_fields(ty: Ty<'_>, set: &FieldSet) -> FieldSet {
    let mut out = FieldSet::new();
    for (pe, member, children) in set.entries() {
        let (child_ty, declared) = descend(ty, pe);
        if member || (declared && !children.is_empty()) {
            out.insert_member(pe);
        }
        if !children.is_empty() {
            out.add_children(pe, &with_named_fields(child_ty, children));
        }
    }
    out
}
