//! Kubernetes protobuf (`application/vnd.kubernetes.protobuf`) request bodies to JSON.
//!
//! client-go's typed clients (and so `kubectl create`, `run`, `auth whoami`, ...) send bodies as
//! the 4-byte magic `k8s\0` followed by a `runtime.Unknown` envelope: `typeMeta` (1) with
//! `apiVersion` (1) and `kind` (2), `raw` (2) with the object's own protobuf encoding,
//! `contentEncoding` (3) and `contentType` (4). [`decode_protobuf`] turns one into the JSON object
//! kube-apiserver would get from the same Go struct through `encoding/json`: JSON field names,
//! unset fields left out, bytes as base64, maps as objects, and the special types (`IntOrString`,
//! `Quantity`, `Time`, `MicroTime`, `Duration`, `RawExtension`, `FieldsV1`, ...) in their JSON
//! forms.
//!
//! The decoder is data-driven: the descriptors of every v1.33 message are embedded (see
//! `data/README.md` and `tools/gen_proto_descriptors.py`). Unknown field tags are skipped, as
//! protobuf requires of older readers.

mod format;
mod table;
mod wire;

use serde_json::{Map, Value};

use table::{Field, Message, Special, Table, Type};
use wire::{Reader, Wire, WireError};

/// The media type of Kubernetes protobuf bodies.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// Deepest nesting of messages accepted (kube-apiserver's JSON decoder allows about 10,000; real
/// objects, even CRD schemas, stay far below 100).
const MAX_DEPTH: usize = 100;

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("the body does not start with the Kubernetes protobuf prefix (k8s\\x00)")]
    NoMagic,
    /// The envelope names no kind, or one without a built-in protobuf message.
    #[error("no kind {kind:?} is registered for version {api_version:?} in protobuf")]
    UnknownKind {
        /// The envelope's `apiVersion`.
        api_version: String,
        /// The envelope's `kind`.
        kind: String,
    },
    /// A compressed (`contentEncoding`) envelope, or one holding another format (`contentType`).
    #[error("unsupported protobuf envelope content encoding or type {0:?}")]
    UnsupportedEncoding(String),
    /// Bytes that are not a protobuf message of the expected type.
    #[error("malformed protobuf in {at}: {reason}")]
    Malformed {
        /// The message (and field) being read.
        at: String,
        /// What is wrong: truncated, bad wire type, ...
        reason: String,
    },
    /// A well-formed field whose value has no JSON form (an invalid time, embedded JSON that is
    /// not JSON, ...).
    #[error("invalid value in {at}: {reason}")]
    InvalidValue {
        /// The message and field.
        at: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Messages nested deeper than the decoder allows.
    #[error("protobuf messages nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The embedded descriptor table is unusable (a build defect).
    #[error("embedded protobuf descriptors are corrupt: {0}")]
    CorruptData(String),
}

impl ProtobufError {
    /// The HTTP status for this error: 400 for the body's faults, 500 for the build's.
    pub fn http_status(&self) -> u16 {
        match self {
            ProtobufError::CorruptData(_) => 500,
            _ => 400,
        }
    }
}

type Result<T, E = ProtobufError> = std::result::Result<T, E>;

/// Decodes a Kubernetes protobuf body (`k8s\0` + `runtime.Unknown`) of a built-in kind into its
/// JSON object, with `apiVersion` and `kind` from the envelope.
pub fn decode_protobuf(body: &[u8]) -> Result<Value> {
    let table = table::table().map_err(|e| ProtobufError::CorruptData(e.to_string()))?;
    Decoder { table }.envelope(body, 0)
}

/// Whether [`decode_protobuf`] knows `apiVersion`/`kind` (every built-in v1.33 kind).
pub fn protobuf_decodes(api_version: &str, kind: &str) -> bool {
    table::table().is_ok_and(|t| t.kind(api_version, kind).is_some())
}

struct Decoder {
    table: &'static Table,
}

/// What the wire held for one field of a message being decoded.
enum Slot<'a> {
    Value(Value),
    List(Vec<Value>),
    Map(Map<String, Value>),
    /// A singular message field: protobuf merges repeated occurrences, so keep them all.
    Message(Vec<&'a [u8]>),
}

impl Decoder {
    fn envelope(&self, body: &[u8], depth: usize) -> Result<Value> {
        let rest = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
        let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
        let (mut encoding, mut content_type) = (String::new(), String::new());
        let mut r = Reader::new(rest);
        while let Some((tag, value)) = r.next_field().map_err(|e| malformed("runtime.Unknown", e))? {
            match (tag, value) {
                (1, Wire::Len(type_meta)) => {
                    let mut t = Reader::new(type_meta);
                    while let Some((tag, value)) =
                        t.next_field().map_err(|e| malformed("runtime.TypeMeta", e))?
                    {
                        match (tag, value) {
                            (1, Wire::Len(s)) => api_version = String::from_utf8_lossy(s).into_owned(),
                            (2, Wire::Len(s)) => kind = String::from_utf8_lossy(s).into_owned(),
                            (1 | 2, other) => return Err(bad_wire_type("runtime.TypeMeta", other)),
                            _ => {}
                        }
                    }
                }
                (2, Wire::Len(bytes)) => raw = bytes,
                (3, Wire::Len(s)) => encoding = String::from_utf8_lossy(s).into_owned(),
                (4, Wire::Len(s)) => content_type = String::from_utf8_lossy(s).into_owned(),
                (1..=4, other) => return Err(bad_wire_type("runtime.Unknown", other)),
                _ => {}
            }
        }
        if !encoding.is_empty() {
            return Err(ProtobufError::UnsupportedEncoding(encoding));
        }
        // client-go leaves the content type empty (the raw bytes are protobuf).
        if !content_type.is_empty() && content_type != PROTOBUF_CONTENT_TYPE {
            return Err(ProtobufError::UnsupportedEncoding(content_type));
        }
        let message = self.table.kind(&api_version, &kind).ok_or_else(|| ProtobufError::UnknownKind {
            api_version: api_version.clone(),
            kind: kind.clone(),
        })?;
        let mut object = Map::new();
        object.insert("apiVersion".into(), Value::String(api_version));
        object.insert("kind".into(), Value::String(kind));
        if let Value::Object(fields) = self.message(message, raw, depth)? {
            object.extend(fields);
        }
        Ok(Value::Object(object))
    }

    /// A message in its JSON form.
    fn message(&self, message: &Message, bytes: &[u8], depth: usize) -> Result<Value> {
        if depth >= MAX_DEPTH {
            return Err(ProtobufError::TooDeep);
        }
        match message.special {
            Special::RawJson | Special::RawExtension => return self.raw(message, bytes, depth),
            // Go encodes the zero time as an empty message and marshals it as null.
            Special::Time | Special::MicroTime if bytes.is_empty() => return Ok(Value::Null),
            _ => {}
        }
        let slots = self.fields(message, bytes, depth)?;
        let by_tag = |tag: u32| message.field(tag).and_then(|(i, _)| slots.get(i)).and_then(Option::as_ref);
        let int = |tag: u32| by_tag(tag).and_then(Value::as_i64).unwrap_or(0);
        Ok(match message.special {
            Special::None => {
                let mut object = Map::new();
                for (field, slot) in message.fields.iter().zip(slots) {
                    let Some(value) = slot else { continue };
                    if field.inline {
                        if let Value::Object(inner) = value {
                            object.extend(inner);
                        }
                    } else if keep(field, &value) {
                        object.insert(field.json.clone(), value);
                    }
                }
                Value::Object(object)
            }
            Special::List => by_tag(1).cloned().unwrap_or_else(|| Value::Array(Vec::new())),
            Special::IntOrString => match int(1) {
                0 => Value::from(int(2)),
                1 => by_tag(3).cloned().unwrap_or_else(|| Value::String(String::new())),
                other => return Err(invalid(&message.name, format!("IntOrString type {other}"))),
            },
            Special::Quantity => match by_tag(1).and_then(Value::as_str) {
                Some(s) if !s.is_empty() => Value::String(s.to_string()),
                _ => Value::String("0".into()),
            },
            Special::Time | Special::MicroTime => {
                let micro = message.special == Special::MicroTime;
                // metav1.Time keeps whole seconds (its Unmarshal drops the nanoseconds).
                let nanos = if micro { i32::try_from(int(2)).unwrap_or(0) } else { 0 };
                let text = format::rfc3339(int(1), nanos, micro)
                    .ok_or_else(|| invalid(&message.name, format!("time {}s is out of range", int(1))))?;
                Value::String(text)
            }
            Special::Duration => Value::String(format::go_duration(int(1))),
            Special::PropsOrArray | Special::PropsOrStringArray => match (by_tag(2), by_tag(1)) {
                (Some(array), _) => array.clone(),
                (None, Some(schema)) => schema.clone(),
                (None, None) => Value::Null,
            },
            Special::PropsOrBool => match by_tag(2) {
                Some(schema) => schema.clone(),
                None => Value::Bool(by_tag(1).and_then(Value::as_bool).unwrap_or(false)),
            },
            Special::RawJson | Special::RawExtension => Value::Null,
        })
    }

    /// `RawExtension`, `FieldsV1`, apiextensions `JSON`: the embedded JSON of their `raw` bytes
    /// (field 1); a `RawExtension` may also hold a protobuf object.
    fn raw(&self, message: &Message, bytes: &[u8], depth: usize) -> Result<Value> {
        let mut raw: &[u8] = &[];
        let mut r = Reader::new(bytes);
        while let Some((tag, value)) = r.next_field().map_err(|e| malformed(&message.name, e))? {
            match (tag, value) {
                (1, Wire::Len(b)) => raw = b,
                (1, other) => return Err(bad_wire_type(&message.name, other)),
                _ => {}
            }
        }
        if raw.is_empty() {
            Ok(Value::Null)
        } else if message.special == Special::RawExtension && raw.starts_with(MAGIC) {
            self.envelope(raw, depth + 1)
        } else {
            serde_json::from_slice(raw).map_err(|e| invalid(&message.name, format!("embedded JSON: {e}")))
        }
    }

    /// The decoded value of every field of `message` present in `bytes`, by field position.
    fn fields(&self, message: &Message, bytes: &[u8], depth: usize) -> Result<Vec<Option<Value>>> {
        let mut slots: Vec<Option<Slot<'_>>> = message.fields.iter().map(|_| None).collect();
        let mut r = Reader::new(bytes);
        while let Some((tag, value)) = r.next_field().map_err(|e| malformed(&message.name, e))? {
            let Some((i, field)) = message.field(tag) else { continue };
            let Some(slot) = slots.get_mut(i) else { continue };
            if field.map {
                let Wire::Len(entry) = value else { return Err(bad_wire_type(&at(message, field), value)) };
                let (key, value) = self.map_entry(message, field, entry, depth)?;
                match slot {
                    Some(Slot::Map(map)) => {
                        map.insert(key, value);
                    }
                    _ => *slot = Some(Slot::Map(Map::from_iter([(key, value)]))),
                }
            } else if field.repeated {
                if !matches!(slot, Some(Slot::List(_))) {
                    *slot = Some(Slot::List(Vec::new()));
                }
                if let Some(Slot::List(list)) = slot {
                    self.repeated(message, field, value, list, depth)?;
                }
            } else if field.ty == Type::Message {
                let Wire::Len(inner) = value else { return Err(bad_wire_type(&at(message, field), value)) };
                match slot {
                    Some(Slot::Message(parts)) => parts.push(inner),
                    _ => *slot = Some(Slot::Message(vec![inner])),
                }
            } else {
                *slot = Some(Slot::Value(self.scalar(message, field, value)?));
            }
        }
        let mut out = Vec::with_capacity(slots.len());
        for (field, slot) in message.fields.iter().zip(slots) {
            out.push(match slot {
                None => None,
                Some(Slot::Value(v)) => Some(v),
                Some(Slot::List(list)) => Some(Value::Array(list)),
                Some(Slot::Map(map)) => Some(Value::Object(map)),
                Some(Slot::Message(parts)) => {
                    let target = self.target(message, field)?;
                    let value = if let [one] = parts.as_slice() {
                        self.message(target, one, depth + 1)?
                    } else {
                        self.message(target, &parts.concat(), depth + 1)?
                    };
                    Some(value)
                }
            });
        }
        Ok(out)
    }

    /// Appends one occurrence of a repeated field (one element, or a packed run of scalars).
    fn repeated(
        &self,
        message: &Message,
        field: &Field,
        value: Wire<'_>,
        list: &mut Vec<Value>,
        depth: usize,
    ) -> Result<()> {
        match (field.ty, value) {
            (Type::Message, Wire::Len(inner)) => {
                let target = self.target(message, field)?;
                list.push(self.message(target, inner, depth + 1)?);
            }
            (Type::Int32 | Type::Int64 | Type::Bool, Wire::Len(packed)) => {
                let mut r = Reader::new(packed);
                while !r.is_empty() {
                    let v = r.varint().map_err(|e| malformed(&at(message, field), e))?;
                    list.push(self.scalar(message, field, Wire::Varint(v))?);
                }
            }
            (Type::Double, Wire::Len(packed)) => {
                let mut r = Reader::new(packed);
                while !r.is_empty() {
                    let v = r.fixed64().map_err(|e| malformed(&at(message, field), e))?;
                    list.push(self.scalar(message, field, Wire::Fixed64(v))?);
                }
            }
            _ => list.push(self.scalar(message, field, value)?),
        }
        Ok(())
    }

    /// One map entry `{key = 1, value = 2}`; a missing key or value is the type's zero value.
    fn map_entry(
        &self,
        message: &Message,
        field: &Field,
        entry: &[u8],
        depth: usize,
    ) -> Result<(String, Value)> {
        let (mut key, mut value) = (String::new(), None);
        let mut r = Reader::new(entry);
        while let Some((tag, wire)) = r.next_field().map_err(|e| malformed(&at(message, field), e))? {
            match (tag, wire) {
                (1, Wire::Len(k)) => key = String::from_utf8_lossy(k).into_owned(),
                (1, other) => return Err(bad_wire_type(&at(message, field), other)),
                (2, wire) => value = Some(wire),
                _ => {}
            }
        }
        let value = match (field.ty, value) {
            (Type::Message, Some(Wire::Len(inner))) => {
                self.message(self.target(message, field)?, inner, depth + 1)?
            }
            (Type::Message, None) => self.message(self.target(message, field)?, &[], depth + 1)?,
            (_, Some(wire)) => self.scalar(message, field, wire)?,
            (ty, None) => zero(ty),
        };
        Ok((key, value))
    }

    /// A scalar field's value (one element, for repeated fields).
    fn scalar(&self, message: &Message, field: &Field, value: Wire<'_>) -> Result<Value> {
        Ok(match (field.ty, value) {
            (Type::String, Wire::Len(s)) => Value::String(String::from_utf8_lossy(s).into_owned()),
            (Type::Bytes, Wire::Len(b)) => Value::String(format::base64(b)),
            // int32 is sign-extended to 64 bits on the wire; Go truncates.
            (Type::Int32, Wire::Varint(v)) => Value::from(v as i64 as i32),
            (Type::Int64, Wire::Varint(v)) => Value::from(v as i64),
            (Type::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
            (Type::Double, Wire::Fixed64(bits)) => number(f64::from_bits(bits))
                .ok_or_else(|| invalid(&at(message, field), "a NaN or infinite number".into()))?,
            (_, other) => return Err(bad_wire_type(&at(message, field), other)),
        })
    }

    fn target(&self, message: &Message, field: &Field) -> Result<&'static Message> {
        field
            .message
            .and_then(|i| self.table.message(i))
            .ok_or_else(|| ProtobufError::CorruptData(format!("{} has no message type", at(message, field))))
    }
}

/// Whether a present field goes into the JSON object. Go encodes every non-pointer field, so a
/// zero scalar means "unset" unless the field is a pointer or required (`keep_zero`), and Go's
/// JSON leaves it out (`omitempty`). Messages stay (Go never omits a struct), except a zero time
/// (`null`).
fn keep(field: &Field, value: &Value) -> bool {
    if field.keep_zero || field.repeated || field.map {
        return true;
    }
    match value {
        Value::String(s) => !s.is_empty(),
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Null => false,
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn zero(ty: Type) -> Value {
    match ty {
        Type::String | Type::Bytes => Value::String(String::new()),
        Type::Int32 | Type::Int64 | Type::Double => Value::from(0),
        Type::Bool => Value::Bool(false),
        Type::Message => Value::Null,
    }
}

/// A double as Go's JSON writes it: integral values without a fraction.
fn number(v: f64) -> Option<Value> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return Some(Value::from(v as i64));
    }
    serde_json::Number::from_f64(v).map(Value::Number)
}

fn at(message: &Message, field: &Field) -> String {
    format!("{}.{}", message.name, field.json)
}

fn malformed(at: &str, e: WireError) -> ProtobufError {
    let reason = match e {
        WireError::Truncated => "truncated message".to_string(),
        WireError::BadVarint => "varint longer than 10 bytes".to_string(),
        WireError::BadWireType(t) => format!("unsupported wire type {t}"),
        WireError::ZeroTag => "field number 0".to_string(),
    };
    ProtobufError::Malformed { at: at.to_string(), reason }
}

fn bad_wire_type(at: &str, value: Wire<'_>) -> ProtobufError {
    ProtobufError::Malformed {
        at: at.to_string(),
        reason: format!("unexpected wire type {}", value.wire_type()),
    }
}

fn invalid(at: &str, reason: String) -> ProtobufError {
    ProtobufError::InvalidValue { at: at.to_string(), reason }
}

#[cfg(test)]
mod tests;
