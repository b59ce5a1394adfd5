//! The built-in type schema (`corten-schema`) as the API server uses it: the type of a
//! resource, for strategic merge patches and unknown-field checks.

use corten_schema::{Schema, TypeRef};
use serde_json::Value;

use crate::registry::ResourceInfo;

/// The schema type of `info`'s kind, when the built-in schema has one.
pub fn type_of(info: &ResourceInfo) -> Option<TypeRef<'static>> {
    Schema::try_builtin().ok()?.for_kind(info.group, info.version, info.kind)
}

/// Paths of fields in `obj` that its kind's schema does not know (`spec.foo`,
/// `spec.containers[0].bar`).
pub fn unknown_fields(info: &ResourceInfo, obj: &Value) -> Vec<String> {
    type_of(info).map(|ty| corten_schema::unknown_fields(obj, ty)).unwrap_or_default()
}
