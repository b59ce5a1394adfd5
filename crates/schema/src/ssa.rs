//! Server-side apply and field ownership (`metadata.managedFields`), computed the way
//! kube-apiserver v1.33 computes them with structured-merge-diff.
//!
//! Every write is attributed to a *manager*. [`FieldManager::apply`] merges an applied
//! configuration (`application/apply-patch+yaml`) into the live object, removes the fields the
//! manager applied before and no longer applies (unless someone else owns them), and refuses to
//! change fields another manager owns unless forced ([`Conflicts`]). [`FieldManager::update`]
//! records any other write (create, update, patch): the fields it changed move to the writer.
//! Both return the new [`ManagedFields`]; the caller stores them with
//! [`ManagedFields::write_to`].
//!
//! Like kube-apiserver, the identity fields (`apiVersion`, `kind`, `metadata.name`,
//! `metadata.namespace`, `uid`, `resourceVersion`, `generation`, `creationTimestamp`, ...) are
//! never owned, entries left with no field are dropped, and at most ten `Update` entries are
//! kept (older ones are folded into `ancient-changes`). Times are given by the caller.

use std::fmt;

use serde_json::{json, Map, Value};

use crate::fieldpath::{FieldPath, FieldSet};
use crate::ssa_typed::{self as typed, Ty};
use crate::TypeRef;

/// Most `Update` entries kept; older ones are merged into [`ANCIENT_CHANGES`].
const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager older `Update` entries are folded into.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// The manager that owns what an object held when it was first applied to without any
/// managed fields.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Paths no manager owns (kube-apiserver's strip set).
fn never_owned() -> FieldSet {
    let mut set = FieldSet::new();
    for path in [
        &["apiVersion"][..],
        &["kind"],
        &["metadata"],
        &["metadata", "name"],
        &["metadata", "namespace"],
        &["metadata", "creationTimestamp"],
        &["metadata", "selfLink"],
        &["metadata", "uid"],
        &["metadata", "clusterName"],
        &["metadata", "generation"],
        &["metadata", "managedFields"],
        &["metadata", "resourceVersion"],
    ] {
        set.insert(&FieldPath::fields(path).0);
    }
    set
}

/// How a manager last wrote its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write (create, update, patch).
    Update,
}

impl Operation {
    /// `Apply` or `Update`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// `metadata.managedFields` that cannot be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid managedFields: {0}")]
pub struct ManagedFieldsError(pub String);

/// One `metadata.managedFields` entry: the fields one manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedFieldsEntry {
    /// The manager's name (`kubectl`, `kube-controller-manager`, ...).
    pub manager: String,
    /// How it last wrote.
    pub operation: Operation,
    /// The API version it wrote with (`apps/v1`).
    pub api_version: String,
    /// When its fields last changed, RFC 3339 in seconds.
    pub time: Option<String>,
    /// The subresource it wrote through (`status`), if any.
    pub subresource: Option<String>,
    /// The fields it owns.
    pub fields: FieldSet,
}

impl ManagedFieldsEntry {
    /// Whether this entry belongs to the writer `(manager, operation, subresource)` (and, for
    /// `Update`, `api_version`): kube-apiserver keeps one entry per such identity.
    pub fn is(
        &self,
        manager: &str,
        operation: Operation,
        subresource: Option<&str>,
        api_version: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    fn same_identity(&self, other: &ManagedFieldsEntry) -> bool {
        self.is(&other.manager, other.operation, other.subresource.as_deref(), &other.api_version)
    }

    /// The manager identifier kube-apiserver sorts conflicts by (JSON of the identity fields).
    fn identifier(&self) -> String {
        let mut id = format!(
            "{{\"manager\":{},\"operation\":\"{}\"",
            Value::String(self.manager.clone()),
            self.operation.as_str()
        );
        if self.operation == Operation::Update {
            id.push_str(&format!(",\"apiVersion\":{}", Value::String(self.api_version.clone())));
        }
        if let Some(sub) = &self.subresource {
            id.push_str(&format!(",\"subresource\":{}", Value::String(sub.clone())));
        }
        id.push('}');
        id
    }

    /// How conflict messages name this manager: `"kubectl"`, `"kubectl-edit" using apps/v1`,
    /// `"kubelet" with subresource "status" using v1`.
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    /// The entry as JSON (`{"manager":..,"operation":..,"apiVersion":..,"time":..,
    /// "fieldsType":"FieldsV1","fieldsV1":{..}}`; empty fields are omitted, as in Go).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.manager.is_empty() {
            m.insert("manager".into(), json!(self.manager));
        }
        m.insert("operation".into(), json!(self.operation.as_str()));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(sub) = &self.subresource {
            m.insert("subresource".into(), json!(sub));
        }
        Value::Object(m)
    }

    /// Decodes one entry, with kube-apiserver's checks (operation `Apply` or `Update`, an
    /// `apiVersion`, `fieldsType: FieldsV1`).
    pub fn from_json(v: &Value) -> Result<Self, ManagedFieldsError> {
        let err = |m: &str| ManagedFieldsError(m.to_owned());
        let Value::Object(m) = v else { return Err(err("an entry must be an object")) };
        let text = |k: &str| m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let operation = match m.get("operation").and_then(Value::as_str) {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            _ => return Err(err("operation must be `Apply` or `Update`")),
        };
        let api_version = text("apiVersion").ok_or_else(|| err("apiVersion must not be empty"))?;
        match m.get("fieldsType").and_then(Value::as_str) {
            Some("FieldsV1") => {}
            None | Some("") => return Err(err("missing fieldsType in managed fields entry")),
            Some(other) => return Err(ManagedFieldsError(format!("invalid fieldsType {other:?}"))),
        }
        let fields = match m.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(f) => FieldSet::from_fields_v1(f).map_err(|e| ManagedFieldsError(e.to_string()))?,
        };
        Ok(ManagedFieldsEntry {
            manager: text("manager").unwrap_or_default(),
            operation,
            api_version,
            time: text("time"),
            subresource: text("subresource"),
            fields,
        })
    }
}

/// The `metadata.managedFields` of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedFields {
    entries: Vec<ManagedFieldsEntry>,
}

impl ManagedFields {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Managed fields made of `entries` (entries of the same writer are merged).
    pub fn from_entries(entries: impl IntoIterator<Item = ManagedFieldsEntry>) -> Self {
        let mut out = ManagedFields::new();
        for e in entries {
            match out.entries.iter_mut().find(|x| x.same_identity(&e)) {
                Some(x) => {
                    x.fields.union_with(&e.fields);
                    if e.time > x.time {
                        x.time = e.time;
                    }
                }
                None => out.entries.push(e),
            }
        }
        out.sort();
        out
    }

    /// Sorts the entries as kube-apiserver lists them: `Apply` before `Update`, then by time,
    /// manager, API version and subresource.
    fn sort(&mut self) {
        self.entries.sort_by(|a, b| {
            (a.operation, &a.time, &a.manager, &a.api_version, &a.subresource).cmp(&(
                b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
        });
    }

    /// The entries, in kube-apiserver's order.
    pub fn entries(&self) -> &[ManagedFieldsEntry] {
        &self.entries
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of a writer (see [`ManagedFieldsEntry::is`]).
    pub fn find(
        &self,
        manager: &str,
        operation: Operation,
        subresource: Option<&str>,
        api_version: &str,
    ) -> Option<&ManagedFieldsEntry> {
        self.entries.iter().find(|e| e.is(manager, operation, subresource, api_version))
    }

    /// Decodes a `managedFields` list.
    pub fn from_json(list: &Value) -> Result<Self, ManagedFieldsError> {
        match list {
            Value::Null => Ok(ManagedFields::new()),
            Value::Array(items) => {
                let entries =
                    items.iter().map(ManagedFieldsEntry::from_json).collect::<Result<Vec<_>, _>>()?;
                Ok(ManagedFields::from_entries(entries))
            }
            _ => Err(ManagedFieldsError("managedFields must be a list".to_owned())),
        }
    }

    /// Decodes `metadata.managedFields` of an object (absent is empty).
    pub fn from_object(obj: &Value) -> Result<Self, ManagedFieldsError> {
        match obj.pointer("/metadata/managedFields") {
            None => Ok(ManagedFields::new()),
            Some(list) => ManagedFields::from_json(list),
        }
    }

    /// The managed fields an update starts from, as kube-apiserver picks them: those the client
    /// sent in `new` when it sent any that decode (a list of only empty entries, `[{}]`, resets
    /// them), else those of `live` (undecodable ones are dropped). Subresource writes always
    /// start from `live`.
    pub fn for_update(live: &Value, new: &Value, subresource: bool) -> Self {
        if !subresource {
            if let Some(Value::Array(sent)) = new.pointer("/metadata/managedFields") {
                if !sent.is_empty() && sent.iter().all(|e| e.as_object().is_some_and(Map::is_empty)) {
                    return ManagedFields::new();
                }
                if let Ok(m) = ManagedFields::from_json(&Value::Array(sent.clone())) {
                    if !m.is_empty() {
                        return m;
                    }
                }
            }
        }
        ManagedFields::from_object(live).unwrap_or_default()
    }

    /// The JSON list, sorted as kube-apiserver sorts it: `Apply` before `Update`, then by time,
    /// manager, API version and subresource.
    pub fn to_json(&self) -> Value {
        Value::Array(self.entries.iter().map(ManagedFieldsEntry::to_json).collect())
    }

    /// Stores these managed fields as `metadata.managedFields` of `obj` (removing the field when
    /// there is no entry).
    pub fn write_to(&self, obj: &mut Value) {
        let Value::Object(root) = obj else { return };
        if self.entries.is_empty() {
            if let Some(Value::Object(meta)) = root.get_mut("metadata") {
                meta.remove("managedFields");
            }
            return;
        }
        let meta = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        if let Value::Object(meta) = meta {
            meta.insert("managedFields".into(), self.to_json());
        }
    }

    fn entry_mut(
        &mut self,
        manager: &str,
        operation: Operation,
        subresource: Option<&str>,
        api_version: &str,
    ) -> &mut ManagedFieldsEntry {
        let i = match self.entries.iter().position(|e| e.is(manager, operation, subresource, api_version)) {
            Some(i) => i,
            None => {
                self.entries.push(ManagedFieldsEntry {
                    manager: manager.to_owned(),
                    operation,
                    api_version: api_version.to_owned(),
                    time: None,
                    subresource: subresource.map(str::to_owned),
                    fields: FieldSet::new(),
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[i]
    }

    /// Removes never-owned paths and drops entries without fields.
    fn tidy(&mut self) {
        let strip = never_owned();
        for e in &mut self.entries {
            e.fields = e.fields.difference(&strip);
        }
        self.entries.retain(|e| !e.fields.is_empty());
        self.cap_update_managers();
        self.sort();
    }

    /// Folds the oldest `Update` entries into one `ancient-changes` entry per API version until
    /// at most [`MAX_UPDATE_MANAGERS`] remain.
    fn cap_update_managers(&mut self) {
        let mut updaters: Vec<(Option<String>, String, String, Option<String>)> = self
            .entries
            .iter()
            .filter(|e| e.operation == Operation::Update)
            .map(|e| (e.time.clone(), e.manager.clone(), e.api_version.clone(), e.subresource.clone()))
            .collect();
        if updaters.len() <= MAX_UPDATE_MANAGERS {
            return;
        }
        updaters.sort();
        let mut remaining = updaters.len();
        let mut first_of_version: Vec<(String, (String, Option<String>))> = Vec::new();
        for (time, manager, version, sub) in updaters {
            if remaining <= MAX_UPDATE_MANAGERS {
                break;
            }
            let Some((_, (first_manager, first_sub))) = first_of_version.iter().find(|(v, _)| *v == version)
            else {
                first_of_version.push((version, (manager, sub)));
                continue;
            };
            let (first_manager, first_sub) = (first_manager.clone(), first_sub.clone());
            if self.find(ANCIENT_CHANGES, Operation::Update, None, &version).is_none() {
                if let Some(first) = self
                    .entries
                    .iter_mut()
                    .find(|e| e.is(&first_manager, Operation::Update, first_sub.as_deref(), &version))
                {
                    first.manager = ANCIENT_CHANGES.to_owned();
                    first.subresource = None;
                }
            }
            let Some(pos) =
                self.entries.iter().position(|e| e.is(&manager, Operation::Update, sub.as_deref(), &version))
            else {
                continue;
            };
            let merged = self.entries.remove(pos);
            let bucket = self.entry_mut(ANCIENT_CHANGES, Operation::Update, None, &version);
            bucket.fields.union_with(&merged.fields);
            bucket.time = time;
            remaining -= 1;
        }
    }
}

/// One field another manager owns that an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The owner.
    pub manager: String,
    /// How the owner wrote it.
    pub operation: Operation,
    /// The API version the owner used.
    pub api_version: String,
    /// The subresource the owner wrote through.
    pub subresource: Option<String>,
    /// The field (`.spec.replicas`).
    pub path: FieldPath,
}

impl Conflict {
    fn owner(&self) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: self.manager.clone(),
            operation: self.operation,
            api_version: self.api_version.clone(),
            time: None,
            subresource: self.subresource.clone(),
            fields: FieldSet::new(),
        }
    }

    /// The message of the `FieldManagerConflict` cause: `conflict with "kubectl-edit" using
    /// apps/v1`.
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.owner().describe())
    }

    /// The field of the cause: `.spec.replicas`.
    pub fn field(&self) -> String {
        self.path.to_string()
    }
}

/// The conflicts of a refused apply, sorted by owner then field; [`fmt::Display`] is
/// kube-apiserver's message (`Apply failed with 1 conflict: conflict with "m" using apps/v1:
/// .spec.replicas`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

impl fmt::Display for Conflicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [one] = self.0.as_slice() {
            return write!(f, "Apply failed with 1 conflict: {}: {}", one.cause_message(), one.path);
        }
        write!(f, "Apply failed with {} conflicts: ", self.0.len())?;
        let mut lines = Vec::new();
        let mut last: Option<String> = None;
        for c in &self.0 {
            let id = c.owner().identifier();
            if last.as_ref() != Some(&id) {
                lines.push(format!("conflicts with {}:", c.owner().describe()));
                last = Some(id);
            }
            lines.push(format!("- {}", c.path));
        }
        f.write_str(&lines.join("\n"))
    }
}

/// Why an apply was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// Fields other managers own would change (kube-apiserver answers 409 Conflict).
    #[error("{0}")]
    Conflicts(Conflicts),
    /// The applied configuration sets `metadata.managedFields` (400).
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsInConfig,
    /// The applied configuration does not fit the schema: a list item without its keys, a
    /// duplicate key (the detail names the field).
    #[error("failed to create typed patch object: {0}")]
    InvalidConfig(String),
}

/// Computes ownership for writes of one manager to objects of one type.
#[derive(Debug, Clone)]
pub struct FieldManager<'a> {
    /// The type of the objects (`None`: deduced from the values, as for unknown kinds).
    pub ty: Option<TypeRef<'a>>,
    /// The writer (`fieldManager`, or the User-Agent's product name).
    pub manager: &'a str,
    /// The subresource written through (`status`), if any.
    pub subresource: Option<&'a str>,
    /// The API version of the request (`apps/v1`).
    pub api_version: &'a str,
    /// The time to stamp changed entries with, RFC 3339 in seconds.
    pub time: &'a str,
    /// Fields this endpoint does not write (kube-apiserver's reset fields, such as `status` on
    /// the main resource of a kind with a status subresource); paths in or below them are
    /// neither owned nor compared.
    pub ignored: FieldSet,
}

impl FieldManager<'_> {
    fn ty(&self) -> Ty<'_> {
        self.ty
    }

    /// Applies `config` (an applied configuration) to `live` (`{}` when creating) with
    /// `managed` (the live object's managed fields). Returns the new object (without
    /// `managedFields`) and its managed fields.
    ///
    /// The configuration's fields become this manager's `Apply` entry; fields it applied before
    /// and no longer applies are removed from the object unless another manager owns them; a
    /// field another manager owns and the configuration changes is a conflict, unless `force`,
    /// which takes it over.
    pub fn apply(
        &self,
        live: &Value,
        config: &Value,
        managed: ManagedFields,
        force: bool,
    ) -> Result<(Value, ManagedFields), ApplyError> {
        if config.pointer("/metadata/managedFields").is_some_and(|v| !v.is_null()) {
            return Err(ApplyError::ManagedFieldsInConfig);
        }
        let live = without_managed_fields(live);
        let mut managed = managed;
        if managed.is_empty() {
            // An object nobody owns yet (written before ownership was tracked): what it holds
            // belongs to `before-first-apply`, so the first apply conflicts instead of silently
            // taking everything over.
            let existing = typed::field_set(self.ty(), &live, false)
                .unwrap_or_default()
                .recursive_difference(&self.ignored)
                .difference(&never_owned());
            if !existing.is_empty() {
                let entry = managed.entry_mut(BEFORE_FIRST_APPLY, Operation::Update, None, self.api_version);
                entry.fields = existing;
            }
        }
        let config_set = typed::field_set(self.ty(), config, true)
            .map_err(ApplyError::InvalidConfig)?
            .recursive_difference(&self.ignored);
        let mut merged = typed::merge(self.ty(), Some(&live), Some(config)).unwrap_or_else(|| live.clone());
        if let Some(m) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }

        let me = (self.manager, Operation::Apply, self.subresource);
        let last =
            managed.find(me.0, me.1, me.2, self.api_version).map(|e| e.fields.clone()).unwrap_or_default();
        {
            let entry = managed.entry_mut(me.0, me.1, me.2, self.api_version);
            entry.fields = config_set;
            entry.api_version = self.api_version.to_owned();
        }

        if !last.is_empty() {
            let ty = self.ty();
            let merged_set =
                typed::with_named_fields(ty, &typed::field_set(ty, &merged, false).unwrap_or_default());
            let mut owned = FieldSet::new();
            for e in &managed.entries {
                owned.union_with(&e.fields);
            }
            let owned = typed::with_named_fields(ty, &owned);
            let last = typed::with_named_fields(ty, &last);
            // The identity fields (and `metadata` as a whole) are never removed, even when a
            // configuration without `metadata` drops the last owned field below it.
            let remove = merged_set.intersection(&last).difference(&owned).difference(&never_owned());
            typed::remove_items(ty, &mut merged, &remove);
        }

        let cmp = typed::compare(self.ty(), &live, &merged).without(&self.ignored);
        let changed = cmp.added.union(&cmp.modified);
        let mut conflicts = Vec::new();
        let mut taken = Vec::new();
        for (i, e) in managed.entries.iter().enumerate() {
            if e.is(me.0, me.1, me.2, self.api_version) {
                continue;
            }
            let overlap = e.fields.intersection(&changed);
            if overlap.is_empty() {
                continue;
            }
            for path in overlap.paths() {
                conflicts.push((
                    e.identifier(),
                    Conflict {
                        manager: e.manager.clone(),
                        operation: e.operation,
                        api_version: e.api_version.clone(),
                        subresource: e.subresource.clone(),
                        path,
                    },
                ));
            }
            taken.push((i, overlap));
        }
        if !force && !conflicts.is_empty() {
            conflicts.sort_by(|a, b| a.0.cmp(&b.0));
            return Err(ApplyError::Conflicts(Conflicts(conflicts.into_iter().map(|(_, c)| c).collect())));
        }
        for (i, overlap) in taken {
            let e = &mut managed.entries[i];
            e.fields = e.fields.difference(&overlap);
        }
        for e in &mut managed.entries {
            if e.is(me.0, me.1, me.2, self.api_version) {
                e.time = Some(self.time.to_owned());
            } else if !cmp.removed.is_empty() {
                e.fields = e.fields.difference(&cmp.removed);
            }
        }
        managed.tidy();
        Ok((merged, managed))
    }

    /// Records a write that changed `old` into `new` (any write but an apply; `old` is `{}` for
    /// a create): the fields it added or changed become this manager's `Update` entry and leave
    /// every other entry, the fields it removed leave every entry. `managed` is what the write
    /// starts from (see [`ManagedFields::for_update`]).
    pub fn update(&self, old: &Value, new: &Value, managed: ManagedFields) -> ManagedFields {
        let old = without_managed_fields(old);
        let new = without_managed_fields(new);
        let cmp = typed::compare(self.ty(), &old, &new).without(&self.ignored);
        let mut managed = managed;
        if !cmp.is_same() {
            let changed = cmp.added.union(&cmp.modified);
            for e in &mut managed.entries {
                e.fields = e.fields.difference(&changed).difference(&cmp.removed);
            }
            let mine = changed.recursive_difference(&self.ignored).difference(&never_owned());
            if !mine.is_empty() {
                let entry =
                    managed.entry_mut(self.manager, Operation::Update, self.subresource, self.api_version);
                entry.fields.union_with(&mine);
                entry.time = Some(self.time.to_owned());
            }
        }
        managed.tidy();
        managed
    }
}

/// The fields `value` specifies, as a `FieldsV1` set, following `ty` (list-map items by their
/// keys, set items by value, atomic lists and maps as leaves). Items without their keys and
/// duplicate keys are errors (the message names the list).
pub fn field_set(ty: Option<TypeRef<'_>>, value: &Value) -> Result<FieldSet, String> {
    typed::field_set(ty, value, true)
}

/// A set of field-name paths (`field_set_of(&[&["status"]])`), e.g. for
/// [`FieldManager::ignored`].
pub fn field_set_of(paths: &[&[&str]]) -> FieldSet {
    let mut set = FieldSet::new();
    for p in paths {
        set.insert(&FieldPath::fields(p).0);
    }
    set
}

fn without_managed_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    if !v.is_object() {
        v = Value::Object(Map::new());
    }
    v
}

#[cfg(test)]
#[path = "ssa_tests.rs"]
mod tests;
