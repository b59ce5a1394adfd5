//! The Kubernetes strategic merge patch (`application/strategic-merge-patch+json`), applied the
//! way kube-apiserver v1.33 applies it.
//!
//! Maps merge recursively and `null` deletes a key. A list merges only where the schema gives
//! it `x-kubernetes-patch-strategy: merge`: lists of objects element-wise by the merge key,
//! lists of scalars as a set union; other lists are replaced. Directives: `$patch: replace |
//! delete` in a map or as a list element, `$retainKeys`, `$setElementOrder/<field>` and
//! `$deleteFromPrimitiveList/<field>`. Where the schema knows nothing (unknown fields, free-form
//! objects) the patch merges like a JSON merge patch.
//!
//! Ordering follows upstream: `$setElementOrder` wins; otherwise elements named in the patch come
//! in patch order, and elements only in the live object keep their relative order, interleaved
//! where both lists know an element (so an element new to the list lands before the live ones).

use serde_json::{Map, Value};

use crate::{Error, Result, TypeRef};

const DIRECTIVE: &str = "$patch";
const REPLACE: &str = "replace";
const DELETE: &str = "delete";
const MERGE: &str = "merge";
const RETAIN_KEYS: &str = "$retainKeys";
const RETAIN_KEYS_STRATEGY: &str = "retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Applies a strategic merge patch to `doc`, whose type is `ty` (for example
/// `Schema::builtin().for_kind("apps", "v1", "Deployment")`).
///
/// Both documents must be JSON objects. Malformed directives are [`Error::BadPatch`] (400),
/// lists of lists [`Error::PatchNotApplicable`] (422), anything else that upstream rejects
/// (a list element without its merge key, an unknown `$patch` value)
/// [`Error::PatchFailed`].
pub fn strategic_merge_patch(doc: Value, patch: Value, ty: TypeRef<'_>) -> Result<Value> {
    let (Value::Object(original), Value::Object(patch)) = (doc, patch) else {
        return Err(Error::BadPatch("invalid JSON document".to_owned()));
    };
    merge_map(original, patch, Some(ty)).map(Value::Object)
}

fn failed(msg: impl Into<String>) -> Error {
    Error::PatchFailed(msg.into())
}

fn bad_retain_keys() -> Error {
    Error::BadPatch("invalid patch format of retainKeys".to_owned())
}

fn bad_primitive_list() -> Error {
    Error::BadPatch("invalid patch format of primitive list".to_owned())
}

fn bad_set_element_order() -> Error {
    Error::BadPatch("invalid patch format of setElementOrder list".to_owned())
}

fn no_merge_key(m: &Map<String, Value>, key: &str) -> Error {
    failed(format!("map: {} does not contain declared merge key: {key}", Value::Object(m.clone())))
}

fn bad_arg_type(expected: &str, actual: &Value) -> Error {
    failed(format!("expected a {expected}, but received a {}", type_name(actual)))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

/// Whether two values have the same JSON type (all numbers are one type, as in Go).
fn same_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Scalar equality as Go compares decoded JSON (`1` equals `1.0`).
fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The field's type and its strategy with `retainKeys` split off.
struct FieldMeta<'a> {
    ty: Option<TypeRef<'a>>,
    strategy: &'a str,
    merge_key: Option<&'a str>,
}

fn field_meta<'a>(parent: Option<TypeRef<'a>>, key: &str) -> Result<FieldMeta<'a>> {
    let ty = parent.and_then(|p| p.child(key));
    let raw = ty.and_then(|t| t.patch_strategy().as_str());
    let parts: Vec<&'a str> = raw.map(|s| s.split(',').collect()).unwrap_or_default();
    let strategy = match parts.as_slice() {
        [] => "",
        [one] if *one == RETAIN_KEYS_STRATEGY => "",
        [one] => one,
        [a, b] if *a == RETAIN_KEYS_STRATEGY => b,
        [a, b] if *b == RETAIN_KEYS_STRATEGY => a,
        _ => return Err(failed(format!("unexpected patch strategy: {parts:?}"))),
    };
    Ok(FieldMeta { ty, strategy, merge_key: ty.and_then(|t| t.patch_merge_key()) })
}

/// The key a `$prefix/<key>` directive names.
fn extract_key<'k>(key: &'k str, prefix: &str) -> Result<&'k str> {
    match key.split_once('/') {
        Some((p, rest)) if p == prefix => Ok(rest),
        _ if prefix == DELETE_FROM_PRIMITIVE_LIST => Err(bad_primitive_list()),
        _ => Err(bad_set_element_order()),
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Option<TypeRef<'_>>,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some(REPLACE) => {
                patch.remove(DIRECTIVE);
                Ok(patch)
            }
            Some(DELETE) => Ok(Map::new()),
            _ => Err(failed(format!(
                "unknown patch type: {} in map: {}",
                directive_text(directive),
                Value::Object(patch.clone())
            ))),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, ty)?;

    for (raw_key, patch_value) in patch {
        let (key, is_delete_list) = if raw_key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            (extract_key(&raw_key, DELETE_FROM_PRIMITIVE_LIST)?.to_owned(), true)
        } else {
            (raw_key, false)
        };
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let Some(current) = original.get_mut(&key) else {
            if !is_delete_list {
                take_patch_value(&mut original, key, patch_value);
            }
            continue;
        };
        if !same_type(current, &patch_value) {
            if !is_delete_list {
                take_patch_value(&mut original, key, patch_value);
            }
            continue;
        }
        match patch_value {
            Value::Object(patch_map) => {
                let meta = field_meta(ty, &key)?;
                let Value::Object(current_map) = std::mem::take(current) else {
                    return Err(failed("internal error: expected a map"));
                };
                *current = Value::Object(if meta.strategy == REPLACE {
                    patch_map
                } else {
                    merge_map(current_map, patch_map, meta.ty)?
                });
            }
            Value::Array(patch_list) => {
                let meta = field_meta(ty, &key)?;
                let Value::Array(current_list) = std::mem::take(current) else {
                    return Err(failed("internal error: expected a list"));
                };
                *current =
                    Value::Array(merge_slice_handler(current_list, patch_list, &meta, is_delete_list)?);
            }
            scalar => *current = scalar,
        }
    }
    Ok(original)
}

fn directive_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Takes a patch value for a field the original lacks (or holds with another type): nulls and
/// `$patch` directives inside it are dropped, as upstream does since v1.28.
fn take_patch_value(original: &mut Map<String, Value>, key: String, mut value: Value) {
    discard_nulls(&mut value);
    match remove_directives(value) {
        Some(v) => {
            original.insert(key, v);
        }
        None => {
            original.remove(&key);
        }
    }
}

fn discard_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(discard_nulls);
        }
        Value::Array(list) => list.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// Removes `$patch` maps from a value; `None` when the value itself is one.
fn remove_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(
                map.into_iter().filter_map(|(k, v)| remove_directives(v).map(|v| (k, v))).collect(),
            ))
        }
        Value::Array(list) => Some(Value::Array(list.into_iter().filter_map(remove_directives).collect())),
        other => Some(other),
    }
}

/// `$retainKeys`: drops the original's keys not listed; every key set by the patch must be listed.
fn apply_retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> Result<()> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(bad_retain_keys());
    };
    let listed = |k: &str| retain.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if !listed(k) {
            return Err(bad_retain_keys());
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// Processes every `$setElementOrder/<field>` with the patch list of that field, if any.
fn merge_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Option<TypeRef<'_>>,
) -> Result<()> {
    let keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for directive_key in keys {
        let Some(order) = patch.remove(&directive_key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(bad_arg_type("slice", &order));
        };
        let field = extract_key(&directive_key, SET_ELEMENT_ORDER)?.to_owned();
        let original_list = match original.get(&field) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(bad_arg_type("slice", other)),
        };
        let patch_list = match patch.remove(&field) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(other) => return Err(bad_arg_type("slice", &other)),
        };
        let meta = field_meta(ty, &field)?;
        let merge_key = meta.merge_key.unwrap_or("");
        validate_against_order(patch_list.as_deref().unwrap_or(&[]), &order, merge_key)?;

        let original_items = original_list.clone().unwrap_or_default();
        let patch_items = patch_list.clone().unwrap_or_default();
        let merged = match (original_list, patch_list) {
            (Some(list), None) => list,
            (None, Some(list)) => match remove_directives(Value::Array(list)) {
                Some(Value::Array(list)) => list,
                _ => continue,
            },
            (Some(o), Some(p)) => merge_slice_handler(o, p, &meta, false)?,
            (None, None) => continue,
        };
        let (in_order, server_only) = partition(merged, &order, merge_key)?;
        let is_map = element_kind_is_map(&original_items, &patch_items)?;
        let normalized =
            normalize_element_order(in_order, server_only, &order, &original_items, merge_key, is_map)?;
        original.insert(field, Value::Array(normalized));
    }
    Ok(())
}

/// Checks that the patch list names its elements in the `$setElementOrder` order.
fn validate_against_order(patch_list: &[Value], order: &[Value], merge_key: &str) -> Result<()> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let kept: Vec<&Value> = if merge_key.is_empty() {
        patch_list.iter().collect()
    } else {
        let mut kept = Vec::new();
        for v in patch_list {
            let Value::Object(m) = v else {
                return Err(bad_arg_type("map", v));
            };
            if m.get(DIRECTIVE).and_then(Value::as_str) != Some(DELETE) {
                kept.push(v);
            }
        }
        kept
    };
    let (mut p, mut o) = (0, 0);
    while p < kept.len() && o < order.len() {
        if kept[p].as_object().is_some_and(|m| m.contains_key(DIRECTIVE)) {
            p += 1;
            continue;
        }
        if merge_key_equal(kept[p], &order[o], merge_key)? {
            p += 1;
        }
        o += 1;
    }
    if p < kept.len() && o >= order.len() {
        return Err(failed(format!(
            "the order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}",
            Value::Array(patch_list.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

fn merge_key_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool> {
    if merge_key.is_empty() {
        return Ok(scalar_eq(left, right));
    }
    let (Value::Object(l), Value::Object(r)) = (left, right) else {
        let not_map = if left.is_object() { right } else { left };
        return Err(bad_arg_type("map", not_map));
    };
    let lk = l.get(merge_key).ok_or_else(|| no_merge_key(l, merge_key))?;
    let rk = r.get(merge_key).ok_or_else(|| no_merge_key(r, merge_key))?;
    Ok(scalar_eq(lk, rk))
}

fn merge_slice_handler(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &FieldMeta<'_>,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    if meta.strategy == MERGE || is_delete_list {
        merge_slice(
            original,
            patch,
            meta.ty.and_then(|t| t.items()),
            meta.merge_key.unwrap_or(""),
            is_delete_list,
        )
    } else {
        Ok(patch)
    }
}

/// Whether the elements of the lists are maps; errors on lists of lists or mixed types.
fn element_kind_is_map(a: &[Value], b: &[Value]) -> Result<bool> {
    let mut first: Option<&Value> = None;
    for v in a.iter().chain(b) {
        match first {
            None => {
                if v.is_array() {
                    return Err(Error::PatchNotApplicable("lists of lists are not supported".to_owned()));
                }
                first = Some(v);
            }
            Some(f) if !same_type(f, v) => {
                return Err(failed(format!(
                    "list element types are not identical: [{} {}]",
                    Value::Array(a.to_vec()),
                    Value::Array(b.to_vec())
                )))
            }
            Some(_) => {}
        }
    }
    match first {
        Some(v) => Ok(v.is_object()),
        None => Err(failed("no elements in any of the given slices")),
    }
}

fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    elem: Option<TypeRef<'_>>,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let is_map = element_kind_is_map(&original, &patch)?;
    let (server_order, patch, merged) = if !is_map {
        if is_delete_list {
            return Ok(original.into_iter().filter(|v| !patch.iter().any(|d| scalar_eq(d, v))).collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(&patch) {
            if !merged.iter().any(|m| scalar_eq(m, v)) {
                merged.push(v.clone());
            }
        }
        (original, patch, merged)
    } else {
        if merge_key.is_empty() {
            let name = elem.and_then(|e| e.definition_name()).unwrap_or("map");
            return Err(failed(format!("cannot merge lists without merge key for {name}")));
        }
        let (original, patch) = merge_special_elements(original, patch, merge_key)?;
        let server_order = original.clone();
        let merged = merge_by_key(original, patch.clone(), merge_key, elem)?;
        (server_order, patch, merged)
    };
    let (in_patch, server_only) = partition(merged, &patch, merge_key)?;
    normalize_element_order(in_patch, server_only, &patch, &server_order, merge_key, is_map)
}

/// Handles `$patch` elements of a list of maps: `delete` removes the named element,
/// `replace` makes the other patch elements the whole list.
fn merge_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        let Value::Object(m) = &v else {
            return Err(bad_arg_type("map", &v));
        };
        let Some(directive) = m.get(DIRECTIVE) else {
            plain.push(v);
            continue;
        };
        match directive.as_str() {
            Some(DELETE) => {
                let key = m.get(merge_key).ok_or_else(|| no_merge_key(m, merge_key))?;
                let mut kept = Vec::with_capacity(original.len());
                for (i, o) in original.into_iter().enumerate() {
                    let Value::Object(om) = &o else {
                        return Err(failed(format!("value for key {i} is not a map.")));
                    };
                    if !om.get(merge_key).is_some_and(|k| scalar_eq(k, key)) {
                        kept.push(o);
                    }
                }
                original = kept;
            }
            Some(REPLACE) => replace = true,
            Some(MERGE) => return Err(failed("merging lists cannot yet be specified in the patch")),
            _ => {
                return Err(failed(format!(
                    "unknown patch type: {} in map: {}",
                    directive_text(directive),
                    v
                )))
            }
        }
    }
    if replace {
        Ok((plain, Vec::new()))
    } else {
        Ok((original, plain))
    }
}

fn find_by_key(list: &[Value], merge_key: &str, key: &Value) -> Result<Option<usize>> {
    for (i, v) in list.iter().enumerate() {
        let Value::Object(m) = v else {
            return Err(failed(format!("value for key {i} is not a map.")));
        };
        if m.get(merge_key).is_some_and(|k| scalar_eq(k, key)) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Merges each patch element into the original element with the same key, or appends it.
fn merge_by_key(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
    elem: Option<TypeRef<'_>>,
) -> Result<Vec<Value>> {
    for v in patch {
        let Value::Object(m) = v else {
            return Err(bad_arg_type("map", &v));
        };
        let key = m.get(merge_key).cloned().ok_or_else(|| no_merge_key(&m, merge_key))?;
        match find_by_key(&original, merge_key, &key)? {
            Some(i) => {
                let Value::Object(current) = std::mem::take(&mut original[i]) else {
                    return Err(failed("internal error: expected a map"));
                };
                original[i] = Value::Object(merge_map(current, m, elem)?);
            }
            None => original.push(Value::Object(m)),
        }
    }
    Ok(original)
}

/// Splits `items` into those present in `by` (by merge key if there is one, else by value) and
/// the others, keeping their order.
fn partition(items: Vec<Value>, by: &[Value], merge_key: &str) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut present = Vec::with_capacity(items.len());
    let mut absent = Vec::new();
    for v in items {
        let found = if !merge_key.is_empty() {
            let Value::Object(m) = &v else {
                return Err(bad_arg_type("map", &v));
            };
            let key = m.get(merge_key).ok_or_else(|| no_merge_key(m, merge_key))?;
            find_by_key(by, merge_key, key)?.is_some()
        } else {
            by.iter().any(|b| scalar_eq(b, &v))
        };
        if found {
            present.push(v);
        } else {
            absent.push(v);
        }
    }
    Ok((present, absent))
}

/// Position of `v` in `list`, by merge key for maps, by value for scalars.
fn index_of(list: &[Value], v: &Value, merge_key: &str, is_map: bool) -> Option<usize> {
    if is_map {
        let key = v.get(merge_key)?;
        list.iter().position(|o| o.get(merge_key).is_some_and(|k| scalar_eq(k, key)))
    } else {
        list.iter().position(|o| scalar_eq(o, v))
    }
}

/// Sorts `items` by their position in `order` (stable; unknown ones last, `$patch: delete`
/// maps after everything).
fn normalize_slice_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    is_map: bool,
) -> Result<Vec<Value>> {
    let mut to_delete = Vec::new();
    let mut items = if is_map {
        for v in items.iter().chain(order) {
            let Value::Object(m) = v else {
                return Err(bad_arg_type("map", v));
            };
            if !m.contains_key(merge_key) {
                return Err(no_merge_key(m, merge_key));
            }
        }
        let mut kept = Vec::with_capacity(items.len());
        for v in items {
            if v.get(DIRECTIVE).and_then(Value::as_str) == Some(DELETE) {
                to_delete.push(v);
            } else {
                kept.push(v);
            }
        }
        kept
    } else {
        items
    };
    items.sort_by_key(|v| index_of(order, v, merge_key, is_map).unwrap_or(usize::MAX));
    items.extend(to_delete);
    Ok(items)
}

/// Orders the patch's elements by `patch_order` and the server-only ones by `server_order`, then
/// interleaves them: a server-only element goes first only when both are in `server_order` and
/// it comes earlier there.
fn normalize_element_order(
    in_patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    is_map: bool,
) -> Result<Vec<Value>> {
    let right = normalize_slice_order(in_patch, patch_order, merge_key, is_map)?;
    let left = normalize_slice_order(server_only, server_order, merge_key, is_map)?;
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    index_of(server_order, l, merge_key, is_map),
                    index_of(server_order, r, merge_key, is_map),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "smp_tests.rs"]
mod tests;
