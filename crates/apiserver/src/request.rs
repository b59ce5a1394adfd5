//! What a request asks for: its path decoded into group, version, namespace, resource, name and
//! subresource (kube-apiserver's RequestInfo), its verb, and its query options.

use std::collections::HashMap;

use axum::http::Method;

use crate::error::{ApiError, Result};

/// A resource request's target, decoded from its path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The deprecated `/watch/` path prefix was used.
    pub watch_path: bool,
    /// The path after a `proxy` subresource, still percent-encoded: `""`, `"/"` or `"/a/b"`.
    pub proxy_path: Option<String>,
}

/// What a path is: a discovery document or a resource request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    /// `/api` or `/apis`.
    Root {
        core: bool,
    },
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`.
    GroupVersion {
        group: String,
        version: String,
    },
    Resource(Target),
}

/// Decodes a path under `/api` or `/apis`; `None` for any other path.
pub fn parse_path(path: &str) -> Option<PathKind> {
    let parts: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned())
        .collect();
    let (group, version, rest) = match parts.first().map(String::as_str) {
        Some("api") => match parts.len() {
            1 => return Some(PathKind::Root { core: true }),
            _ => (String::new(), parts[1].clone(), &parts[2..]),
        },
        Some("apis") => match parts.len() {
            1 => return Some(PathKind::Root { core: false }),
            2 => return Some(PathKind::Group(parts[1].clone())),
            _ => (parts[1].clone(), parts[2].clone(), &parts[3..]),
        },
        _ => return None,
    };
    if rest.is_empty() {
        return Some(PathKind::GroupVersion { group, version });
    }
    let mut rest = rest;
    let mut target = Target { group, version, ..Target::default() };
    if rest[0] == "watch" {
        target.watch_path = true;
        rest = &rest[1..];
    }
    if rest.first().map(String::as_str) == Some("namespaces") && rest.len() > 1 {
        target.namespace = Some(rest[1].clone());
        // `/namespaces/<ns>` and `/namespaces/<ns>/{status,finalize}` address the namespace itself.
        if rest.len() > 2 && !matches!(rest[2].as_str(), "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    // A proxy subresource takes any further path, passed on as it came.
    let proxy = rest.len() >= 3 && rest[2] == "proxy";
    let checked = if proxy { &rest[..3] } else { rest };
    if rest.is_empty() || checked.iter().any(String::is_empty) {
        return None;
    }
    target.resource = rest[0].clone();
    target.name = rest.get(1).cloned();
    target.subresource = rest.get(2).cloned();
    if proxy {
        target.proxy_path = Some(raw_suffix(path, parts.len() - rest.len() + 3));
    } else if rest.len() > 3 {
        return None;
    }
    if target.resource == "namespaces" && target.name.is_some() {
        target.namespace = None;
    }
    Some(PathKind::Resource(target))
}

/// The raw path after its first `skip` segments, with a leading `/` (`""` when nothing is left).
fn raw_suffix(path: &str, skip: usize) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.get(skip..) {
        Some(rest) if !rest.is_empty() => format!("/{}", rest.join("/")),
        _ => String::new(),
    }
}

/// The verb of a resource request, as RBAC and audit name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn of(method: &Method, target: &Target, query: &Query) -> Result<Verb> {
        let named = target.name.is_some();
        Ok(match *method {
            Method::GET | Method::HEAD if target.watch_path || query.watch => Verb::Watch,
            Method::GET | Method::HEAD if named => Verb::Get,
            Method::GET | Method::HEAD => Verb::List,
            Method::POST => Verb::Create,
            Method::PUT => Verb::Update,
            Method::PATCH => Verb::Patch,
            Method::DELETE if named => Verb::Delete,
            Method::DELETE => Verb::DeleteCollection,
            _ => return Err(ApiError::MethodNotAllowed),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// `resourceVersionMatch` of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionMatch {
    NotOlderThan,
    Exact,
}

/// `fieldValidation` of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// The query options every verb understands (ListOptions, GetOptions, CreateOptions, ...).
#[derive(Debug, Clone)]
pub struct Query {
    pub watch: bool,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<VersionMatch>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: bool,
    pub send_initial_events: Option<bool>,
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
    pub force: bool,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub pretty: bool,
    /// `includeObject` of Table responses.
    pub include_object: crate::table::Include,
    /// The `User-Agent` header of a client write (not a query parameter; the write handlers
    /// fill it in): its product name is the default field manager. `None` for the server's own
    /// writes, which are not recorded in `managedFields`.
    pub user_agent: Option<String>,
    /// Who sent a client write (the write handlers fill it in), for the escalation checks of
    /// RBAC objects; `None` for the server's own writes.
    pub requester: Option<crate::Identity>,
}

fn flag(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE")
}

impl Default for Query {
    fn default() -> Self {
        Query {
            watch: false,
            label_selector: None,
            field_selector: None,
            resource_version: None,
            resource_version_match: None,
            limit: None,
            continue_token: None,
            timeout_seconds: None,
            allow_watch_bookmarks: false,
            send_initial_events: None,
            dry_run: false,
            field_manager: None,
            field_validation: FieldValidation::default(),
            force: false,
            grace_period_seconds: None,
            propagation_policy: None,
            pretty: false,
            include_object: crate::table::Include::Metadata,
            user_agent: None,
            requester: None,
        }
    }
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query> {
        let mut q = Query::default();
        let mut params: HashMap<String, String> = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
            };
            params.insert(decode(k), decode(v));
        }
        let int = |name: &str, v: &str| -> Result<i64> {
            v.parse::<i64>().map_err(|_| ApiError::BadRequest(format!("invalid value for {name}: {v:?}")))
        };
        for (k, v) in &params {
            match k.as_str() {
                "watch" => q.watch = flag(v),
                "labelSelector" => q.label_selector = Some(v.clone()).filter(|s| !s.is_empty()),
                "fieldSelector" => q.field_selector = Some(v.clone()).filter(|s| !s.is_empty()),
                "resourceVersion" => q.resource_version = Some(v.clone()).filter(|s| !s.is_empty()),
                "resourceVersionMatch" => {
                    q.resource_version_match = match v.as_str() {
                        "" => None,
                        "NotOlderThan" => Some(VersionMatch::NotOlderThan),
                        "Exact" => Some(VersionMatch::Exact),
                        other => {
                            return Err(ApiError::BadRequest(format!(
                                "invalid resourceVersionMatch {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                            )))
                        }
                    }
                }
                "limit" => q.limit = Some(int(k, v)?.max(0) as usize).filter(|l| *l > 0),
                "continue" => q.continue_token = Some(v.clone()).filter(|s| !s.is_empty()),
                "timeoutSeconds" => q.timeout_seconds = Some(int(k, v)?.max(0) as u64),
                "allowWatchBookmarks" => q.allow_watch_bookmarks = flag(v),
                "sendInitialEvents" => q.send_initial_events = Some(flag(v)),
                "dryRun" => q.dry_run = v == "All",
                "fieldManager" => q.field_manager = Some(v.clone()).filter(|s| !s.is_empty()),
                "fieldValidation" => {
                    q.field_validation = match v.as_str() {
                        "Ignore" => FieldValidation::Ignore,
                        "Warn" | "" => FieldValidation::Warn,
                        "Strict" => FieldValidation::Strict,
                        other => {
                            return Err(ApiError::BadRequest(format!(
                                "fieldValidation {other:?} is invalid: must be one of \"Ignore\", \"Warn\" or \"Strict\""
                            )))
                        }
                    }
                }
                "force" => q.force = flag(v),
                "gracePeriodSeconds" => q.grace_period_seconds = Some(int(k, v)?),
                "propagationPolicy" => q.propagation_policy = Some(v.clone()).filter(|s| !s.is_empty()),
                "pretty" => q.pretty = flag(v),
                "includeObject" => {
                    q.include_object = match v.as_str() {
                        "None" => crate::table::Include::None,
                        "Object" => crate::table::Include::Object,
                        _ => crate::table::Include::Metadata,
                    }
                }
                _ => {}
            }
        }
        if let Some(dry) = params.get("dryRun") {
            if !dry.is_empty() && dry != "All" {
                return Err(ApiError::BadRequest(format!(
                    "invalid dry run value {dry:?}: supported values: \"All\""
                )));
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match parse_path(path) {
            Some(PathKind::Resource(t)) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_paths_decode_like_kube_apiserver() {
        let t = target("/apis/apps/v1/namespaces/default/deployments/web/scale");
        assert_eq!(
            (t.group.as_str(), t.version.as_str(), t.namespace.as_deref(), t.resource.as_str()),
            ("apps", "v1", Some("default"), "deployments")
        );
        assert_eq!((t.name.as_deref(), t.subresource.as_deref()), (Some("web"), Some("scale")));
    }

    #[test]
    fn namespace_paths_address_the_namespace_itself() {
        let t = target("/api/v1/namespaces/kube-system");
        assert_eq!(
            (t.resource.as_str(), t.name.as_deref(), t.namespace),
            ("namespaces", Some("kube-system"), None)
        );
        let t = target("/api/v1/namespaces/x/finalize");
        assert_eq!((t.name.as_deref(), t.subresource.as_deref()), (Some("x"), Some("finalize")));
        let t = target("/api/v1/namespaces");
        assert_eq!((t.resource.as_str(), t.name), ("namespaces", None));
    }

    #[test]
    fn watch_prefix_and_discovery_paths_are_recognised() {
        assert!(target("/api/v1/watch/namespaces/default/pods").watch_path);
        assert_eq!(parse_path("/apis"), Some(PathKind::Root { core: false }));
        assert_eq!(parse_path("/apis/apps"), Some(PathKind::Group("apps".into())));
        assert_eq!(
            parse_path("/api/v1"),
            Some(PathKind::GroupVersion { group: String::new(), version: "v1".into() })
        );
        assert_eq!(parse_path("/healthz"), None);
    }

    #[test]
    fn proxy_subresources_keep_the_rest_of_the_path_raw() {
        let t = target("/api/v1/namespaces/default/pods/web:8080/proxy/a%20b//c/");
        assert_eq!((t.name.as_deref(), t.subresource.as_deref()), (Some("web:8080"), Some("proxy")));
        assert_eq!(t.proxy_path.as_deref(), Some("/a%20b//c/"));
        let t = target("/api/v1/nodes/n1/proxy");
        assert_eq!((t.namespace, t.proxy_path.as_deref()), (None, Some("")));
        assert_eq!(target("/api/v1/nodes/n1/proxy/").proxy_path.as_deref(), Some("/"));
        assert_eq!(target("/api/v1/namespaces/default/pods/p/log").proxy_path, None);
        assert_eq!(parse_path("/api/v1/namespaces/default/pods/p/log/extra"), None);
    }

    #[test]
    fn query_rejects_bad_numbers_and_unknown_validation_modes() {
        assert!(Query::parse(Some("limit=abc")).is_err());
        assert!(Query::parse(Some("fieldValidation=Loose")).is_err());
        let q = Query::parse(Some("labelSelector=app%3Dweb&limit=5&watch=1")).map_err(|e| e.to_string());
        let q = q.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((q.label_selector.as_deref(), q.limit, q.watch), (Some("app=web"), Some(5), true));
    }
}
