//! Object metadata: name validation, the fields the server owns (`uid`, `creationTimestamp`,
//! `resourceVersion`, `generation`), and small JSON accessors.

use serde_json::{json, Map, Value};

use crate::error::Cause;
use crate::registry::ResourceInfo;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 label: at most 63 lower-case alphanumerics or '-', alphanumeric at both ends.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && is_label_chars(s)
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label_chars)
}

/// RFC 1035 label: like a 1123 label but starting with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Validates `metadata.name` with the rule kube-apiserver uses for the kind.
pub fn validate_name(info: &ResourceInfo, name: &str) -> Vec<Cause> {
    let field = "metadata.name";
    let v = json!(name);
    if name.is_empty() {
        return vec![Cause::required(field)];
    }
    let rule_error = match (info.group, info.kind) {
        ("", "Namespace") => (!is_dns1123_label(name)).then(|| {
            if name.len() > 63 {
                "must be no more than 63 characters".to_string()
            } else {
                DNS1123_LABEL_MSG.to_string()
            }
        }),
        ("", "Service") => (!is_dns1035_label(name)).then(|| {
            if name.len() > 63 {
                "must be no more than 63 characters".to_string()
            } else {
                DNS1035_LABEL_MSG.to_string()
            }
        }),
        ("rbac.authorization.k8s.io", _) => (name == "." || name == ".." || name.contains(['/', '%']))
            .then(|| format!("may not be '.' or '..' and may not contain '/' or '%': {name:?}")),
        _ => (!is_dns1123_subdomain(name)).then(|| {
            if name.len() > 253 {
                "must be no more than 253 characters".to_string()
            } else {
                DNS1123_SUBDOMAIN_MSG.to_string()
            }
        }),
    };
    rule_error.map(|msg| vec![Cause::invalid(field, &v, msg)]).unwrap_or_default()
}

/// The current time as an RFC 3339 timestamp with seconds precision (`metav1.Time`).
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).map(|t| t.to_string()).unwrap_or_else(|_| now.to_string())
}

/// A fresh object UID.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Five random lower-case alphanumerics, the suffix of `generateName`.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes.iter().take(5).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// `obj.metadata`, created as `{}` when missing or not an object.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.name`, or "".
pub fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Whether the object carries a `deletionTimestamp`.
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn names_follow_the_rule_of_their_kind() {
        let reg = Registry::builtin();
        let info = |g: &str, p: &str| {
            reg.get(g, "v1", p).map(|r| r.as_ref().clone()).unwrap_or_else(|| panic!("{p}"))
        };
        assert!(validate_name(&info("", "configmaps"), "a.b-c").is_empty());
        assert_eq!(validate_name(&info("", "configmaps"), "Bad")[0].field, "metadata.name");
        assert!(!validate_name(&info("", "namespaces"), "a.b").is_empty());
        assert!(!validate_name(&info("", "services"), "1abc").is_empty());
        assert!(validate_name(&info("rbac.authorization.k8s.io", "clusterroles"), "system:admin").is_empty());
        assert_eq!(validate_name(&info("", "pods"), "")[0].reason, "FieldValueRequired");
    }

    #[test]
    fn timestamps_have_second_precision() {
        let t = now_rfc3339();
        assert!(t.ends_with('Z') && !t.contains('.'), "{t}");
    }

    #[test]
    fn generated_suffixes_are_five_safe_characters() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }
}
