//! Authorization: upstream RBAC over an in-memory cache of Roles, ClusterRoles and their
//! bindings ([`cache`]), impersonation ([`impersonate`]), escalation prevention for writes of
//! RBAC objects ([`escalation`]), the access reviews ([`review`]) and the bootstrap policy
//! ([`policy`]).
//!
//! Every request passes [`middleware`]: it authenticates (a request without credentials is
//! `system:anonymous`), applies `Impersonate-*` headers, decodes the request's attributes like
//! kube-apiserver's RequestInfo and asks [`Authorizer::authorize`]. A denied authenticated
//! request gets kube-apiserver's 403; a denied anonymous one gets 401 (anonymous requests may
//! only read the public health and version paths).

mod cache;
pub(crate) mod escalation;
mod impersonate;
pub(crate) mod policy;
pub(crate) mod review;
mod rules;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use corten_store::{Revision, Store};
use k8s_openapi::api::rbac::v1::Subject;

use crate::error::{ApiError, Result};
use crate::request::{parse_path, PathKind};
use crate::{Identity, Shared};

pub(crate) use cache::RoleKind;
pub(crate) use rules::Rule;

/// The group whose members may do everything (upstream's privileged-group authorizer).
pub const SUPERUSER_GROUP: &str = "system:masters";

/// Health paths every client may read, even before the bootstrap policy exists (the default
/// of upstream's `--authorization-always-allow-paths`).
const ALWAYS_ALLOWED: &[&str] = &["/healthz", "/livez", "/readyz"];

/// How long a request waits for the first load of the RBAC cache.
const SYNC_WAIT: Duration = Duration::from_secs(30);

/// What a request asks to do, as RBAC sees it (upstream `authorizer.Attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Attributes {
    pub verb: String,
    pub resource_request: bool,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub namespace: String,
    /// The path of a non-resource request.
    pub path: String,
}

impl Attributes {
    /// A resource request.
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Attributes::default()
        }
    }

    /// The attributes of an HTTP request (upstream RequestInfo).
    pub fn of_request(method: &Method, path: &str, query: Option<&str>) -> Self {
        let non_resource = || Attributes {
            verb: method.as_str().to_ascii_lowercase(),
            path: path.to_string(),
            ..Attributes::default()
        };
        let Some(PathKind::Resource(t)) = parse_path(path) else { return non_resource() };
        let params: Vec<(String, String)> = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(&s.replace('+', " "))
                        .decode_utf8_lossy()
                        .into_owned()
                };
                (decode(k), decode(v))
            })
            .collect();
        let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let watch =
            t.watch_path || param("watch").is_some_and(|v| matches!(v, "true" | "1" | "True" | "TRUE"));
        let named = t.name.is_some();
        let verb = match *method {
            Method::GET | Method::HEAD if watch => "watch",
            Method::GET | Method::HEAD if named => "get",
            Method::GET | Method::HEAD => "list",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if named => "delete",
            Method::DELETE => "deletecollection",
            _ => return non_resource(),
        };
        let mut name = t.name.clone().unwrap_or_default();
        if matches!(verb, "list" | "watch") && name.is_empty() {
            // A list or watch of one object by `metadata.name` is authorized for that name.
            if let Some(selector) = param("fieldSelector") {
                let mut one = selector.split(',').filter_map(|term| {
                    term.strip_prefix("metadata.name==").or_else(|| term.strip_prefix("metadata.name="))
                });
                if let Some(n) = one.next_back() {
                    name = n.to_string();
                }
            }
        }
        let mut namespace = t.namespace.clone().unwrap_or_default();
        if t.resource == "namespaces" && t.group.is_empty() && named {
            namespace = name.clone();
        }
        Attributes {
            verb: verb.into(),
            resource_request: true,
            group: t.group.clone(),
            version: t.version.clone(),
            resource: t.resource.clone(),
            subresource: t.subresource.clone().unwrap_or_default(),
            name,
            namespace,
            path: path.to_string(),
        }
    }
}

/// An authorization decision and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub allowed: bool,
    /// `RBAC: allowed by ...`, or for a denial the errors met on the way (`RBAC: role ... not found`).
    pub reason: String,
}

/// The RBAC authorizer and its cache.
#[derive(Debug)]
pub struct Authorizer {
    policy: parking_lot::RwLock<cache::Policy>,
    synced: tokio::sync::watch::Sender<Revision>,
    started: AtomicBool,
}

impl Default for Authorizer {
    fn default() -> Self {
        Authorizer {
            policy: parking_lot::RwLock::default(),
            synced: tokio::sync::watch::Sender::new(0),
            started: AtomicBool::new(false),
        }
    }
}

/// Upstream `describeSubject`.
fn describe_subject(s: &Subject, binding_ns: &str) -> String {
    if s.kind == "ServiceAccount" {
        let ns = s.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(binding_ns);
        format!("{} {:?}", s.kind, format!("{}/{}", s.name, ns))
    } else {
        format!("{} {:?}", s.kind, s.name)
    }
}

/// Whether `s` names `user` (upstream `appliesToUser`).
fn applies_to(s: &Subject, user: &Identity, binding_ns: &str) -> bool {
    match s.kind.as_str() {
        "User" => s.name == user.user,
        "Group" => user.groups.contains(&s.name),
        "ServiceAccount" => {
            let ns = s.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(binding_ns);
            !ns.is_empty() && user.user == format!("system:serviceaccount:{ns}:{}", s.name)
        }
        _ => false,
    }
}

impl Authorizer {
    /// Starts the cache's store watch (once).
    pub(crate) fn start<S: Store>(shared: &Arc<Shared<S>>) {
        if shared.authz.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let token = shared.shutdown.clone();
            cache::run(&shared.store, &shared.authz.policy, &shared.authz.synced, token).await;
        });
    }

    /// Waits until the cache has been loaded (or `SYNC_WAIT` passed).
    async fn wait_synced(&self) -> Result<()> {
        self.wait_for(1, SYNC_WAIT)
            .await
            .then_some(())
            .ok_or_else(|| ApiError::Unavailable("the authorization cache is not loaded yet".into()))
    }

    /// Waits until the cache reflects `revision` (at most `timeout`); whether it does.
    pub(crate) async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.synced.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await.is_ok_and(|r| r.is_ok())
    }

    /// Visits the rules that apply to `user` for a request in `namespace` (`""`: cluster
    /// scope, where only ClusterRoleBindings count) with their source's description; stops when
    /// `visit` returns `true`. Returns the resolution errors met.
    fn visit(
        &self,
        user: &Identity,
        namespace: &str,
        visit: &mut dyn FnMut(&str, &[Rule]) -> bool,
    ) -> Vec<String> {
        let p = self.policy.read();
        let mut errors = Vec::new();
        for b in p.cluster_role_bindings.values() {
            let Some(subject) = b.subjects.iter().find(|s| applies_to(s, user, "")) else { continue };
            match p.cluster_roles.get(&b.role_name) {
                Some(rules) => {
                    let source = format!(
                        "ClusterRoleBinding {:?} of ClusterRole {:?} to {}",
                        b.name,
                        b.role_name,
                        describe_subject(subject, "")
                    );
                    if visit(&source, rules) {
                        return errors;
                    }
                }
                None => {
                    errors.push(format!("clusterrole.rbac.authorization.k8s.io {:?} not found", b.role_name))
                }
            }
        }
        if namespace.is_empty() {
            return errors;
        }
        for b in p.role_bindings.get(namespace).into_iter().flat_map(|m| m.values()) {
            let Some(subject) = b.subjects.iter().find(|s| applies_to(s, user, namespace)) else { continue };
            let (kind, rules) = match b.role_kind {
                RoleKind::ClusterRole => ("ClusterRole", p.cluster_roles.get(&b.role_name)),
                RoleKind::Role => ("Role", p.roles.get(&(namespace.to_string(), b.role_name.clone()))),
            };
            match rules {
                Some(rules) => {
                    let source = format!(
                        "RoleBinding {:?} of {kind} {:?} to {}",
                        format!("{namespace}/{}", b.name),
                        b.role_name,
                        describe_subject(subject, namespace)
                    );
                    if visit(&source, rules) {
                        return errors;
                    }
                }
                None => errors.push(format!(
                    "{}.rbac.authorization.k8s.io {:?} not found",
                    kind.to_ascii_lowercase(),
                    b.role_name
                )),
            }
        }
        errors
    }

    /// Whether `user` may do `a` (upstream: privileged group, then RBAC).
    pub(crate) fn authorize(&self, user: &Identity, a: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == SUPERUSER_GROUP) {
            return Decision { allowed: true, reason: String::new() };
        }
        let mut allowed_by = None;
        let ns = if a.resource_request { a.namespace.as_str() } else { "" };
        let errors = self.visit(user, ns, &mut |source, rules| {
            let hit = rules.iter().any(|r| r.allows(a));
            if hit {
                allowed_by = Some(format!("RBAC: allowed by {source}"));
            }
            hit
        });
        match allowed_by {
            Some(reason) => Decision { allowed: true, reason },
            None => {
                let reason = match errors.len() {
                    0 => String::new(),
                    1 => format!("RBAC: {}", errors[0]),
                    _ => format!("RBAC: [{}]", errors.join(", ")),
                };
                Decision { allowed: false, reason }
            }
        }
    }

    /// Every rule that applies to `user` in `namespace` (`""`: cluster-wide only), and the
    /// resolution errors.
    pub(crate) fn rules_for(&self, user: &Identity, namespace: &str) -> (Vec<Rule>, Vec<String>) {
        let mut all = Vec::new();
        let errors = self.visit(user, namespace, &mut |_, rules| {
            all.extend_from_slice(rules);
            false
        });
        (all, errors)
    }

    /// The rules of the role a binding refers to, `None` when it does not exist.
    pub(crate) fn role_rules(&self, kind: &RoleKind, namespace: &str, name: &str) -> Option<Vec<Rule>> {
        let p = self.policy.read();
        match kind {
            RoleKind::ClusterRole => p.cluster_roles.get(name).cloned(),
            RoleKind::Role => p.roles.get(&(namespace.to_string(), name.to_string())).cloned(),
        }
    }
}

/// kube-apiserver's 403 for a denied request: `pods "web" is forbidden: User "jane" cannot get
/// resource "pods" in API group "" in the namespace "default"`.
pub(crate) fn forbidden(user: &Identity, a: &Attributes, reason: &str) -> ApiError {
    let msg = if !a.resource_request {
        format!("User {:?} cannot {} path {:?}", user.user, a.verb, a.path)
    } else {
        let resource = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        if a.namespace.is_empty() {
            format!(
                "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
                user.user, a.verb, resource, a.group
            )
        } else {
            format!(
                "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
                user.user, a.verb, resource, a.group, a.namespace
            )
        }
    };
    let msg = msg.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let msg = if reason.is_empty() { msg } else { format!("{msg}: {reason}") };
    let (resource, group) =
        if a.resource_request { (a.resource.as_str(), a.group.as_str()) } else { ("", "") };
    ApiError::forbidden(group, resource, &a.name, msg)
}

/// The identity of a request: its client certificate or bearer token, `None` without
/// credentials; an invalid token is a 401. Checking a service-account token reads the store
/// (its service account and bound objects must still exist), so this is a future; it reads the
/// request up front and does not borrow it (a request is not `Sync`).
fn credentials<'a, S: Store>(
    shared: &'a Shared<S>,
    req: &Request,
) -> impl std::future::Future<Output = Result<Option<Identity>>> + Send + 'a {
    let known = req.extensions().get::<Identity>().cloned();
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = auth.and_then(|a| a.strip_prefix("Bearer ")).map(|t| t.trim().to_string());
    async move {
        if known.is_some() {
            return Ok(known);
        }
        match token {
            Some(token) => shared
                .authenticate_token(&token)
                .await
                .map(Some)
                .ok_or_else(|| ApiError::Unauthorized("Unauthorized".into())),
            None => Ok(None),
        }
    }
}

/// Authenticates, impersonates and authorizes every request; the request continues with the
/// effective [`Identity`] in its extensions.
pub(crate) async fn middleware<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    mut req: Request,
    next: Next,
) -> Response {
    match admit(&shared, &mut req).await {
        Ok(rbac_write) => {
            let resp = next.run(req).await;
            if rbac_write && resp.status().is_success() {
                // Read your own writes: the writer's next request sees its new policy.
                if let Ok(status) = shared.store.status().await {
                    shared.authz.wait_for(status.revision, Duration::from_secs(2)).await;
                }
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// The checks of [`middleware`]; `Ok(true)` for a write of an RBAC object.
async fn admit<S: Store>(shared: &Arc<Shared<S>>, req: &mut Request) -> Result<bool> {
    Authorizer::start(shared);
    let user = credentials(shared, req).await?;
    let authenticated = user.is_some();
    let user = user.unwrap_or_else(Identity::anonymous);
    let attrs = Attributes::of_request(req.method(), req.uri().path(), req.uri().query());
    if !attrs.resource_request && ALWAYS_ALLOWED.contains(&attrs.path.as_str()) {
        req.extensions_mut().insert(user);
        return Ok(false);
    }
    shared.authz.wait_synced().await?;
    let user = impersonate::apply(&shared.authz, user, req.headers())?;
    let decision = shared.authz.authorize(&user, &attrs);
    if !decision.allowed {
        if !authenticated {
            return Err(ApiError::Unauthorized("Unauthorized".into()));
        }
        return Err(forbidden(&user, &attrs, &decision.reason));
    }
    if matches!(attrs.subresource.as_str(), "exec" | "attach" | "portforward") && attrs.verb == "get" {
        // A websocket upgrade (GET) of a streaming subresource needs `create` too, as upstream.
        let create = Attributes { verb: "create".into(), ..attrs.clone() };
        let decision = shared.authz.authorize(&user, &create);
        if !decision.allowed {
            return Err(forbidden(&user, &create, &decision.reason));
        }
    }
    let rbac_write = attrs.resource_request
        && attrs.group == "rbac.authorization.k8s.io"
        && !matches!(attrs.verb.as_str(), "get" | "list" | "watch");
    req.extensions_mut().insert(user);
    Ok(rbac_write)
}
