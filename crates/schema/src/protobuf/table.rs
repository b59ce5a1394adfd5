//! The embedded descriptor table (`data/v1.33-protobuf.json.zlib`, written by
//! `tools/gen_proto_descriptors.py`): per message its fields by tag with their JSON names and
//! types, and which message each `apiVersion`/`kind` is. Inflated and checked once, on first use.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

static COMPRESSED: &[u8] = include_bytes!("../../data/v1.33-protobuf.json.zlib");

/// Upper bound of the inflated size (the real one is about 150 KB).
const MAX_INFLATED: usize = 4 << 20;

static TABLE: LazyLock<Result<Table, String>> = LazyLock::new(|| {
    let text = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(COMPRESSED, MAX_INFLATED)
        .map_err(|e| format!("inflate: {e:?}"))?;
    let raw: RawTable = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    Table::from_raw(raw)
});

/// The table, or why the embedded data is unusable (a build defect).
pub(super) fn table() -> Result<&'static Table, &'static str> {
    TABLE.as_ref().map_err(String::as_str)
}

/// The scalar or message type of a field (of a map's values, for maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Type {
    String,
    Bytes,
    Int32,
    Int64,
    Bool,
    Double,
    Message,
}

/// Messages whose JSON form is not an object of their fields (a custom `MarshalJSON` in Go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Special {
    /// An ordinary message: a JSON object.
    None,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `metav1.Time`: RFC 3339 in seconds, `null` when unset.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with microseconds.
    MicroTime,
    /// `metav1.Duration`: Go's duration string (`1h0m0s`).
    Duration,
    /// `metav1.FieldsV1`, apiextensions `JSON`: embedded JSON bytes.
    RawJson,
    /// `runtime.RawExtension`: embedded JSON, or an embedded protobuf object.
    RawExtension,
    /// apiextensions `JSONSchemaPropsOrArray`: a schema or an array of schemas.
    PropsOrArray,
    /// apiextensions `JSONSchemaPropsOrBool`: a schema or a boolean.
    PropsOrBool,
    /// apiextensions `JSONSchemaPropsOrStringArray`: a schema or an array of strings.
    PropsOrStringArray,
    /// A named Go slice (`ExtraValue`, `Verbs`): protobuf wraps it as `repeated T items = 1`.
    List,
}

/// One field of a message.
#[derive(Debug)]
pub(super) struct Field {
    pub tag: u32,
    /// The JSON property (empty for inline fields).
    pub json: String,
    pub ty: Type,
    pub repeated: bool,
    /// A `map<string, ty>`, encoded as repeated entries `{key = 1, value = 2}`.
    pub map: bool,
    /// Keep zero values: a Go pointer (`replicas: 0` is not "unset") or a required field. Go
    /// encodes every non-pointer field, so for the others a zero value means unset and Go's JSON
    /// leaves it out (`omitempty`).
    pub keep_zero: bool,
    /// A Go struct embedded with `json:",inline"`: its fields are the parent's.
    pub inline: bool,
    /// The message type (index into [`Table::messages`]) of message fields.
    pub message: Option<usize>,
}

/// One message type.
#[derive(Debug)]
pub(super) struct Message {
    /// The schema definition name (`io.k8s.api.core.v1.Pod`).
    pub name: String,
    pub special: Special,
    /// Sorted by tag.
    pub fields: Vec<Field>,
}

impl Message {
    /// The field with `tag`, with its position in [`Message::fields`].
    pub fn field(&self, tag: u32) -> Option<(usize, &Field)> {
        let i = self.fields.binary_search_by_key(&tag, |f| f.tag).ok()?;
        self.fields.get(i).map(|f| (i, f))
    }
}

/// All messages and the kinds that name them.
#[derive(Debug)]
pub(super) struct Table {
    pub messages: Vec<Message>,
    kinds: HashMap<(String, String), usize>,
}

impl Table {
    /// The message of `apiVersion`/`kind`.
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<&Message> {
        let i = self.kinds.get(&(api_version.to_string(), kind.to_string()))?;
        self.messages.get(*i)
    }

    /// The message at `index` (checked at load time: every index in the table is valid).
    pub fn message(&self, index: usize) -> Option<&Message> {
        self.messages.get(index)
    }

    fn from_raw(raw: RawTable) -> Result<Table, String> {
        let count = raw.messages.len();
        let target = |m: i64, at: &str| -> Result<Option<usize>, String> {
            match usize::try_from(m) {
                Ok(i) if i < count => Ok(Some(i)),
                Ok(_) => Err(format!("{at}: message index {m} out of range")),
                Err(_) => Ok(None),
            }
        };
        let mut messages = Vec::with_capacity(count);
        for m in raw.messages {
            let special =
                special(&m.special).ok_or_else(|| format!("{}: unknown special {:?}", m.name, m.special))?;
            let mut fields = Vec::with_capacity(m.fields.len());
            for RawField(tag, json, ty, flags, msg) in m.fields {
                let at = format!("{}.{json} (tag {tag})", m.name);
                let ty = scalar(&ty).ok_or_else(|| format!("{at}: unknown type {ty:?}"))?;
                let message = target(msg, &at)?;
                if (ty == Type::Message) != message.is_some() {
                    return Err(format!("{at}: message type and index disagree"));
                }
                fields.push(Field {
                    tag,
                    json,
                    ty,
                    repeated: flags & 1 != 0,
                    map: flags & 2 != 0,
                    keep_zero: flags & 4 != 0,
                    inline: flags & 8 != 0,
                    message,
                });
            }
            fields.sort_by_key(|f| f.tag);
            if fields.windows(2).any(|w| w[0].tag == w[1].tag) {
                return Err(format!("{}: duplicate tags", m.name));
            }
            messages.push(Message { name: m.name, special, fields });
        }
        let mut kinds = HashMap::with_capacity(raw.kinds.len());
        for RawKind(api_version, kind, msg) in raw.kinds {
            let at = format!("{api_version} {kind}");
            let i = target(msg, &at)?.ok_or_else(|| format!("{at}: no message"))?;
            kinds.insert((api_version, kind), i);
        }
        Ok(Table { messages, kinds })
    }
}

fn scalar(name: &str) -> Option<Type> {
    Some(match name {
        "string" => Type::String,
        "bytes" => Type::Bytes,
        "int32" => Type::Int32,
        "int64" => Type::Int64,
        "bool" => Type::Bool,
        "double" => Type::Double,
        "message" => Type::Message,
        _ => return None,
    })
}

fn special(name: &str) -> Option<Special> {
    Some(match name {
        "" => Special::None,
        "intOrString" => Special::IntOrString,
        "quantity" => Special::Quantity,
        "time" => Special::Time,
        "microTime" => Special::MicroTime,
        "duration" => Special::Duration,
        "rawJson" => Special::RawJson,
        "rawExtension" => Special::RawExtension,
        "propsOrArray" => Special::PropsOrArray,
        "propsOrBool" => Special::PropsOrBool,
        "propsOrStringArray" => Special::PropsOrStringArray,
        "list" => Special::List,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct RawTable {
    messages: Vec<RawMessage>,
    kinds: Vec<RawKind>,
}

#[derive(Deserialize)]
struct RawMessage {
    name: String,
    special: String,
    fields: Vec<RawField>,
}

/// `[tag, json name, type, flags, message index or -1]`
#[derive(Deserialize)]
struct RawField(u32, String, String, u8, i64);

/// `[apiVersion, kind, message index]`
#[derive(Deserialize)]
struct RawKind(String, String, i64);
