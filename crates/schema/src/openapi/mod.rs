//! The OpenAPI documents kube-apiserver serves: `/openapi/v2` (swagger 2.0), the `/openapi/v3`
//! index and one `/openapi/v3/<api|apis/group>/<version>` document per group-version.
//!
//! They carry what kubectl reads: definitions with descriptions (`kubectl explain`), the
//! `x-kubernetes-patch-*` extensions (client-side apply), `x-kubernetes-group-version-kind` on
//! definitions and operations, and the `fieldValidation` parameter of PATCH (kubectl checks it
//! before relying on server-side field validation). Paths are minimal but valid.
//!
//! Output is deterministic: keys are sorted and definitions are written one at a time straight
//! to the serializer; `*_bytes` and `serde_json::to_vec` of the `Value` variants are identical.
//! Callers cache the bytes; [`content_hash`] of the v3 bytes is the `hash` in the index.

mod convert;
mod paths;

use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Map, Value};

use crate::schema::DefId;
use crate::Schema;
use convert::{closure, Definitions, Flavor};
use paths::GroupVersion;

/// The version string kube-apiserver v1.33 puts into `info.version`.
const KUBERNETES_VERSION: &str = "v1.33.0";

/// A resource the server serves, as the OpenAPI documents describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedResource {
    /// API group, `""` for core.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`; its schema is found with [`Schema::for_kind`].
    pub kind: String,
    /// Plural resource name, e.g. `deployments`.
    pub plural: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Kubernetes verbs: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`.
    pub verbs: Vec<String>,
    /// Subresources such as `status`, `scale`, `log`, `exec`, `binding`, `eviction`.
    pub subresources: Vec<String>,
    /// Whether PATCH accepts `application/strategic-merge-patch+json` (built-in types do,
    /// custom resources do not).
    pub strategic_merge_patch: bool,
}

impl ServedResource {
    /// A built-in resource with every standard verb, no subresources and strategic merge patch.
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        ServedResource {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespaced,
            verbs: ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
                .map(String::from)
                .to_vec(),
            subresources: Vec::new(),
            strategic_merge_patch: true,
        }
    }

    /// The same resource with these verbs.
    pub fn with_verbs(mut self, verbs: &[&str]) -> Self {
        self.verbs = verbs.iter().map(|v| (*v).to_owned()).collect();
        self
    }

    /// The same resource with these subresources.
    pub fn with_subresources(mut self, subresources: &[&str]) -> Self {
        self.subresources = subresources.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// `api/v1` or `apis/<group>/<version>`: the key of its document in the v3 index.
    pub fn v3_path(&self) -> String {
        v3_key(&self.group, &self.version)
    }
}

fn v3_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The paths of `resources` and the definitions they need.
fn build_paths<'r>(
    schema: &Schema,
    resources: impl Iterator<Item = &'r ServedResource>,
    flavor: Flavor,
) -> (Map<String, Value>, Vec<DefId>) {
    let mut out = Map::new();
    let mut roots = Vec::new();
    let mut seen_gv = std::collections::BTreeSet::new();
    for res in resources {
        let Some(kind_def) = schema.definition_name_for_kind(&res.group, &res.version, &res.kind) else {
            // Without a schema there is nothing valid to point the operations at.
            continue;
        };
        let list_kind = format!("{}List", res.kind);
        let list_def = schema.definition_name_for_kind(&res.group, &res.version, &list_kind);
        paths::resource_paths(res, kind_def, list_def, flavor, &mut out);
        for name in [Some(kind_def), list_def].into_iter().flatten() {
            roots.extend(schema.def_by_name(name).map(|(id, _)| id));
        }
        for name in paths::referenced_definitions(res) {
            roots.extend(schema.def_by_name(&name).map(|(id, _)| id));
        }
        if seen_gv.insert((res.group.clone(), res.version.clone())) {
            let gv = GroupVersion { group: &res.group, version: &res.version };
            paths::discovery_path(&gv, flavor, &mut out);
        }
    }
    (out, roots)
}

fn security_scheme() -> Value {
    json!({"BearerToken": {
        "description": "Bearer Token authentication",
        "in": "header",
        "name": "authorization",
        "type": "apiKey"
    }})
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": KUBERNETES_VERSION})
}

/// The swagger 2.0 document, streamed.
struct V2Document<'s> {
    paths: Map<String, Value>,
    definitions: Definitions<'s>,
}

impl Serialize for V2Document<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Keys in sorted order, as a `serde_json::Value` would write them.
        let mut m = serializer.serialize_map(Some(6))?;
        m.serialize_entry("definitions", &self.definitions)?;
        m.serialize_entry("info", &info())?;
        m.serialize_entry("paths", &self.paths)?;
        m.serialize_entry("security", &json!([{"BearerToken": []}]))?;
        m.serialize_entry("securityDefinitions", &security_scheme())?;
        m.serialize_entry("swagger", "2.0")?;
        m.end()
    }
}

fn v2_document<'s>(schema: &'s Schema, resources: &[ServedResource]) -> V2Document<'s> {
    let (paths, roots) = build_paths(schema, resources.iter(), Flavor::V2);
    V2Document {
        paths,
        definitions: Definitions { schema, defs: closure(schema, roots), flavor: Flavor::V2 },
    }
}

/// The `/openapi/v2` document for `resources`: swagger 2.0 with the definitions they use.
pub fn openapi_v2(schema: &Schema, resources: &[ServedResource]) -> Value {
    serde_json::to_value(v2_document(schema, resources)).unwrap_or(Value::Null)
}

/// [`openapi_v2`] as JSON bytes, without building the whole document in memory.
pub fn openapi_v2_bytes(schema: &Schema, resources: &[ServedResource]) -> Vec<u8> {
    serde_json::to_vec(&v2_document(schema, resources)).unwrap_or_default()
}

/// One OpenAPI 3.0 group-version document, streamed.
struct V3Document<'s> {
    paths: Map<String, Value>,
    schemas: Definitions<'s>,
}

struct Components<'a, 's>(&'a Definitions<'s>);

impl Serialize for Components<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(Some(2))?;
        m.serialize_entry("schemas", self.0)?;
        m.serialize_entry("securitySchemes", &security_scheme())?;
        m.end()
    }
}

impl Serialize for V3Document<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(Some(5))?;
        m.serialize_entry("components", &Components(&self.schemas))?;
        m.serialize_entry("info", &info())?;
        m.serialize_entry("openapi", "3.0.0")?;
        m.serialize_entry("paths", &self.paths)?;
        m.serialize_entry("security", &json!([{"BearerToken": []}]))?;
        m.end()
    }
}

fn v3_document<'s>(
    schema: &'s Schema,
    group: &str,
    version: &str,
    resources: &[ServedResource],
) -> Option<V3Document<'s>> {
    let mut selected = resources.iter().filter(|r| r.group == group && r.version == version).peekable();
    selected.peek()?;
    let (paths, roots) = build_paths(schema, selected, Flavor::V3);
    Some(V3Document {
        paths,
        schemas: Definitions { schema, defs: closure(schema, roots), flavor: Flavor::V3 },
    })
}

/// The `/openapi/v3/<api|apis/group>/<version>` document, or `None` if nothing of that
/// group-version is served.
pub fn openapi_v3(
    schema: &Schema,
    group: &str,
    version: &str,
    resources: &[ServedResource],
) -> Option<Value> {
    let doc = v3_document(schema, group, version, resources)?;
    serde_json::to_value(doc).ok()
}

/// [`openapi_v3`] as JSON bytes, without building the whole document in memory.
pub fn openapi_v3_bytes(
    schema: &Schema,
    group: &str,
    version: &str,
    resources: &[ServedResource],
) -> Option<Vec<u8>> {
    let doc = v3_document(schema, group, version, resources)?;
    serde_json::to_vec(&doc).ok()
}

/// The `/openapi/v3` index: `{"paths": {"api/v1": {"serverRelativeURL":
/// "/openapi/v3/api/v1?hash=<HASH>"}, ...}}` where HASH is [`content_hash`] of
/// [`openapi_v3_bytes`] for that group-version.
///
/// Hashes are computed by streaming each document through the hasher: no document is kept.
pub fn openapi_v3_index(schema: &Schema, resources: &[ServedResource]) -> Value {
    let mut gvs = BTreeMap::new();
    for r in resources {
        gvs.entry(v3_key(&r.group, &r.version)).or_insert((r.group.as_str(), r.version.as_str()));
    }
    let mut paths = Map::new();
    for (key, (group, version)) in gvs {
        let Some(doc) = v3_document(schema, group, version, resources) else {
            continue;
        };
        let mut hasher = Fnv128::new();
        if serde_json::to_writer(&mut hasher, &doc).is_err() {
            continue;
        }
        let url = format!("/openapi/v3/{key}?hash={}", hasher.hex());
        paths.insert(key, json!({ "serverRelativeURL": url }));
    }
    json!({ "paths": paths })
}

/// A stable content hash of a document: 32 upper-case hex digits (FNV-1a, 128 bits).
///
/// kubectl treats the `hash` of the v3 index as an opaque cache key; any change of the bytes
/// changes it.
pub fn content_hash(bytes: &[u8]) -> String {
    let mut h = Fnv128::new();
    h.update(bytes);
    h.hex()
}

struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;

    fn new() -> Self {
        Fnv128(Self::OFFSET)
    }

    fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u128::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn hex(&self) -> String {
        format!("{:032X}", self.0)
    }
}

impl std::io::Write for Fnv128 {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
