//! Label selectors (equality- and set-based) and field selectors, parsed from their query
//! strings and matched against JSON objects.

use serde_json::Value;

use crate::error::{ApiError, Result};
use crate::registry::ResourceInfo;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed `labelSelector`; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

fn valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    name_ok && prefix.is_none_or(crate::meta::is_dns1123_subdomain)
}

fn valid_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// Splits on commas that are not inside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| ApiError::BadRequest(format!("unable to parse requirement: {why}"));
        let mut reqs = Vec::new();
        for term in split_terms(s).into_iter().map(str::trim).filter(|t| !t.is_empty()) {
            let req = if let Some(key) = term.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().to_string())
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, set)) = set_term(term, " notin ") {
                Requirement::NotIn(k, set)
            } else if let Some((k, set)) = set_term(term, " in ") {
                Requirement::In(k, set)
            } else {
                Requirement::Exists(term.to_string())
            };
            let (key, values): (&str, Vec<&String>) = match &req {
                Requirement::Equals(k, v) | Requirement::NotEquals(k, v) => (k, vec![v]),
                Requirement::In(k, vs) | Requirement::NotIn(k, vs) => (k, vs.iter().collect()),
                Requirement::Exists(k) | Requirement::DoesNotExist(k) => (k, vec![]),
            };
            if !valid_label_key(key) {
                return Err(bad(&format!("invalid label key {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")));
            }
            if let Some(v) = values.iter().find(|v| !valid_label_value(v)) {
                return Err(bad(&format!("invalid label value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")));
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether `labels` (an object's `metadata.labels`, possibly absent) match.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v),
            Requirement::NotEquals(k, v) => get(k) != Some(v),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn set_term(term: &str, op: &str) -> Option<(String, Vec<String>)> {
    let (k, rest) = term.split_once(op)?;
    let rest = rest.trim();
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
    let values = inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
    Some((k.trim().to_string(), values))
}

/// A parsed `fieldSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// The fields besides `metadata.name` and `metadata.namespace` that a kind can be selected by
/// (kube-apiserver's per-type field label conversion functions).
fn selectable_fields(info: &ResourceInfo) -> &'static [&'static str] {
    match (info.group, info.kind) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "Event") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "source",
            "type",
        ],
        ("", "Secret") => &["type"],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Namespace") => &["status.phase"],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => &["status.replicas"],
        ("batch", "Job") => &["status.successful"],
        ("certificates.k8s.io", "CertificateSigningRequest") => &["spec.signerName"],
        _ => &[],
    }
}

impl FieldSelector {
    pub fn parse(s: &str, info: &ResourceInfo) -> Result<Self> {
        let mut reqs = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            let known = matches!(field, "metadata.name" | "metadata.namespace")
                || selectable_fields(info).contains(&field);
            if !known {
                return Err(ApiError::BadRequest(format!("field label not supported: {field}")));
            }
            reqs.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, equal, want)| {
            let actual = if field == "source" {
                event_source(obj)
            } else {
                field.split('.').try_fold(obj, |v, part| v.get(part))
            };
            let actual = match actual {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ if field == "spec.unschedulable" || field == "spec.hostNetwork" => "false".into(),
                _ => String::new(),
            };
            (actual == *want) == *equal
        })
    }

    /// The value of `metadata.namespace` the selector pins, if any.
    pub fn exact_namespace(&self) -> Option<&str> {
        self.0.iter().find(|(f, eq, _)| f == "metadata.namespace" && *eq).map(|(_, _, v)| v.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The `source` field label of an Event (core/v1 or events.k8s.io/v1): its source component,
/// else its reporting controller, as kube-apiserver selects it.
fn event_source(event: &Value) -> Option<&Value> {
    fn non_empty(v: Option<&Value>) -> Option<&Value> {
        v.filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    }
    non_empty(event.pointer("/source/component"))
        .or_else(|| non_empty(event.pointer("/deprecatedSource/component")))
        .or_else(|| non_empty(event.get("reportingComponent")))
        .or_else(|| non_empty(event.get("reportingController")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::registry::Registry;

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn label_selectors_support_equality_and_set_terms() {
        let labels = json!({"app": "web", "tier": "front"});
        assert!(sel("app=web,tier in (front, back)").matches(Some(&labels)));
        assert!(sel("app==web,!missing").matches(Some(&labels)));
        assert!(!sel("app!=web").matches(Some(&labels)));
        assert!(sel("tier notin (back)").matches(Some(&labels)));
        assert!(!sel("tier notin (front)").matches(Some(&labels)));
        assert!(sel("app").matches(Some(&labels)));
        assert!(!sel("app").matches(None));
        assert!(sel("").matches(None));
    }

    #[test]
    fn invalid_label_selectors_are_bad_requests() {
        assert!(LabelSelector::parse("a b=c").is_err());
        assert!(LabelSelector::parse("app=-bad").is_err());
    }

    #[test]
    fn field_selectors_match_per_type_fields_and_reject_unknown_ones() {
        let reg = Registry::builtin();
        let pods = reg.get("", "v1", "pods").map(|r| r.as_ref().clone());
        let pods = pods.unwrap_or_else(|| panic!("pods registered"));
        let pod =
            json!({"metadata": {"name": "a"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let f = FieldSelector::parse("spec.nodeName=n1,status.phase!=Pending", &pods);
        assert!(f.map(|f| f.matches(&pod)).unwrap_or(false));
        let f = FieldSelector::parse("spec.nodeName=", &pods);
        assert!(!f.map(|f| f.matches(&pod)).unwrap_or(true));
        let err = FieldSelector::parse("spec.bogus=1", &pods).map(drop).map_err(|e| e.to_string());
        assert_eq!(err, Err("field label not supported: spec.bogus".to_string()));
    }
}
