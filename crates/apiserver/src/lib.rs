//! The Kubernetes API server of Corten: an axum [`Router`] generic over [`corten_store::Store`]
//! that kubectl, client-go, kube-rs and the Python client cannot tell from kube-apiserver v1.33.
//!
//! One generic REST machinery serves every resource (`rest`): the [`registry`] describes each
//! type once (group, version, kind, plural, scope, short names, subresources), and everything
//! else — routing, discovery, OpenAPI, tables, selectors, watch, patch — is derived from it and
//! works on JSON objects. Type-specific behaviour is small and looked up by kind: defaults,
//! validation, service address allocation, pod priority, LimitRanger and ResourceQuota admission,
//! table columns, and the conversion of a resource that shares another's storage
//! (`events.k8s.io` Events).
//!
//! Authentication happens before the router: the TLS layer ([`serve`]) puts the verified client
//! certificate's [`Identity`] into the request extensions; bearer tokens are checked by the
//! [`TokenAuthenticator`] given in [`ApiConfig`]. Every request is then authorized by RBAC
//! (`authz`), after `Impersonate-*` headers are applied.
//!
//! This crate must not depend on RocksDB, openraft or any store implementation, nor on the
//! scheduler, controllers or kubelet.

mod admission;
mod alloc;
mod authz;
pub mod bootstrap;
mod codec;
mod convert;
mod defaults;
mod discovery;
mod error;
mod limits;
mod meta;
mod metrics;
mod objects;
mod openapi;
mod patch;
mod priority;
mod quota;
pub mod registry;
mod request;
mod rest;
mod schema;
mod selectors;
pub mod serve;
mod serviceaccount;
mod table;
#[cfg(feature = "testing")]
pub mod testing;
mod tokens;
mod validation;

pub use alloc::ServiceCidr;
pub use error::{ApiError, Result};
pub use tokens::{BoundObject, IssueError, ServiceAccountClaims, TokenAuthentication, TokenIssuer};

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use corten_store::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
use crate::request::{parse_path, PathKind, Query};

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// A user with `groups` (plus `system:authenticated`).
    pub fn new(user: impl Into<String>, groups: impl IntoIterator<Item = String>) -> Self {
        let mut groups: Vec<String> = groups.into_iter().collect();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Identity { user: user.into(), groups }
    }

    /// The cluster administrator (`system:masters`).
    pub fn admin() -> Self {
        Identity::new("system:admin", ["system:masters".to_string()])
    }

    fn anonymous() -> Self {
        Identity { user: "system:anonymous".into(), groups: vec!["system:unauthenticated".into()] }
    }
}

/// Verifies bearer tokens (service-account JWTs).
pub trait TokenAuthenticator: Send + Sync + 'static {
    /// What a valid token stands for; `None` for an invalid or expired token. A
    /// service-account token returns its claims too: the API server accepts it only while its
    /// service account and bound objects still exist with the token's uids.
    fn authenticate(&self, token: &str) -> Option<TokenAuthentication>;
}

/// Settings of the API server.
#[derive(Clone)]
pub struct ApiConfig {
    /// ClusterIPs are allocated from here (`--service-cidr`, default 10.43.0.0/16).
    pub service_cidr: ServiceCidr,
    /// How often a watch that allows bookmarks gets one when nothing else happens.
    pub bookmark_interval: Duration,
    /// Watches without `timeoutSeconds` end after a random time in `[t, 2t)`.
    pub min_request_timeout: Duration,
    /// Verifies bearer tokens; `None` rejects every token.
    pub tokens: Option<Arc<dyn TokenAuthenticator>>,
    /// Signs the tokens of `serviceaccounts/<name>/token`; `None`: that subresource is not served.
    pub token_issuer: Option<Arc<dyn TokenIssuer>>,
    /// The store's readiness for `/readyz` (`Err` says why not); `None`: ready when it answers.
    pub ready: Option<ReadyCheck>,
    /// The API server's TLS client towards kubelets (its client certificate, trusting the
    /// cluster CA) for `pods/log`, `exec`, `attach`, `portforward` and `nodes/proxy`; `None`:
    /// those answer 503.
    pub kubelet_tls: Option<Arc<rustls::ClientConfig>>,
}

/// A readiness check: `Ok(())` or the reason it fails.
pub type ReadyCheck = Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("service_cidr", &self.service_cidr)
            .field("bookmark_interval", &self.bookmark_interval)
            .field("min_request_timeout", &self.min_request_timeout)
            .field("tokens", &self.tokens.is_some())
            .field("token_issuer", &self.token_issuer.is_some())
            .field("ready", &self.ready.is_some())
            .field("kubelet_tls", &self.kubelet_tls.is_some())
            .finish()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            service_cidr: ServiceCidr::parse("10.43.0.0/16").unwrap_or_else(|| unreachable!("valid literal")),
            bookmark_interval: Duration::from_secs(60),
            min_request_timeout: Duration::from_secs(1800),
            tokens: None,
            token_issuer: None,
            ready: None,
            kubelet_tls: None,
        }
    }
}

impl ApiConfig {
    /// A watch's default lifetime: kube-apiserver's `min-request-timeout` with jitter.
    fn watch_timeout(&self) -> Duration {
        let jitter = f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 256.0;
        self.min_request_timeout.mul_f64(1.0 + jitter)
    }
}

/// What every request handler shares.
pub struct Shared<S> {
    store: S,
    registry: Registry,
    config: ApiConfig,
    shutdown: CancellationToken,
    openapi: openapi::Documents,
    metrics: metrics::Metrics,
    authz: authz::Authorizer,
}

impl<S> std::fmt::Debug for Shared<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("config", &self.config).finish_non_exhaustive()
    }
}

impl<S: Store> Shared<S> {
    /// The user a bearer token stands for; a service-account token only while its service
    /// account and bound objects are still there ([`tokens::check_bound`]).
    async fn authenticate_token(&self, token: &str) -> Option<Identity> {
        let auth = self.config.tokens.as_ref()?.authenticate(token)?;
        if let Some(claims) = &auth.service_account {
            if let Err(why) = tokens::check_bound(self, claims).await {
                tracing::debug!(user = %auth.identity.user, reason = %why, "service-account token refused");
                return None;
            }
        }
        Some(auth.identity)
    }
}

/// The API server over a store.
pub struct ApiServer<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for ApiServer<S> {
    fn clone(&self) -> Self {
        ApiServer { shared: self.shared.clone() }
    }
}

impl<S> std::fmt::Debug for ApiServer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl<S: Store> ApiServer<S> {
    /// An API server over `store`; watches end when `shutdown` fires.
    pub fn new(store: S, config: ApiConfig, shutdown: CancellationToken) -> Self {
        let registry = Registry::builtin();
        let openapi = openapi::Documents::new(&registry);
        let metrics = metrics::Metrics::default();
        let authz = authz::Authorizer::default();
        let shared = Arc::new(Shared { store, registry, config, shutdown, openapi, metrics, authz });
        if tokio::runtime::Handle::try_current().is_ok() {
            authz::Authorizer::start(&shared);
        }
        ApiServer { shared }
    }

    /// Creates what a new cluster has: the system namespaces, the `kubernetes` Service and the
    /// system PriorityClasses.
    pub async fn bootstrap(&self) -> Result<()> {
        bootstrap::ensure_defaults(&self.shared).await
    }

    /// The HTTP router of the whole API (health, version, discovery, OpenAPI, resources).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(health))
            .route("/livez", get(health))
            .route("/readyz", get(ready::<S>))
            .route("/version", get(version))
            .route("/openapi/v2", get(openapi::v2::<S>))
            .route("/openapi/v3", get(openapi::v3_index::<S>))
            .route("/openapi/v3/{*path}", get(openapi::v3::<S>))
            .route("/metrics", get(metrics::serve::<S>))
            .fallback(api::<S>)
            .layer(axum::middleware::from_fn_with_state(self.shared.clone(), authz::middleware::<S>))
            .layer(axum::middleware::from_fn_with_state(self.shared.clone(), metrics::track::<S>))
            .with_state(self.shared.clone())
    }
}

/// The identity of a request: from its verified client certificate or bearer token. What the
/// request says is read before the returned future runs, so the future does not borrow the
/// (not `Sync`) request.
fn authenticate<'a, S: Store>(
    shared: &'a Shared<S>,
    req: &Request,
) -> impl std::future::Future<Output = Result<Identity>> + Send + 'a {
    let known = req.extensions().get::<Identity>().cloned();
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = auth.and_then(|a| a.strip_prefix("Bearer ")).map(|t| t.trim().to_string());
    async move {
        if let Some(id) = known {
            return Ok(id);
        }
        match token {
            Some(token) => shared
                .authenticate_token(&token)
                .await
                .ok_or_else(|| ApiError::Unauthorized("Unauthorized".into())),
            None => Err(ApiError::Unauthorized("Unauthorized".into())),
        }
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn ready<S: Store>(State(shared): State<Arc<Shared<S>>>, req: Request) -> Response {
    let verbose =
        req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "verbose" || p.starts_with("verbose=")));
    let store = match &shared.config.ready {
        Some(check) => check(),
        None => Ok(()),
    };
    let store = match store {
        Ok(()) => shared.store.status().await.map(drop).map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let ok = store.is_ok();
    let line = match &store {
        Ok(()) => "[+]etcd ok".to_string(),
        Err(e) => format!("[-]etcd failed: {e}"),
    };
    let body = if verbose || !ok {
        format!("[+]ping ok\n{line}\nreadyz check {}\n", if ok { "passed" } else { "failed" })
    } else {
        "ok".to_string()
    };
    let code = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, body).into_response()
}

/// `/version`: the Kubernetes version Corten implements.
async fn version() -> Response {
    let body = json!({
        "major": "1",
        "minor": "33",
        "gitVersion": format!("v1.33.0+corten-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else if cfg!(target_arch = "aarch64") { "arm64" } else { std::env::consts::ARCH }),
    });
    codec::respond(StatusCode::OK, &body, codec::Format::Json)
}

/// Everything under `/api` and `/apis`.
async fn api<S: Store>(State(shared): State<Arc<Shared<S>>>, req: Request) -> Response {
    match api_inner(&shared, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn api_inner<S: Store>(shared: &Shared<S>, req: Request) -> Result<Response> {
    let kind = parse_path(req.uri().path()).ok_or(ApiError::UnknownPath)?;
    let identity = authenticate(shared, &req).await?;
    let headers: HeaderMap = req.headers().clone();
    match kind {
        PathKind::Root { core } => Ok(discovery::root(&shared.registry, core, &headers)),
        PathKind::Group(g) => discovery::group(&shared.registry, &g, &headers),
        PathKind::GroupVersion { group, version } => {
            discovery::group_version(&shared.registry, &group, &version, &headers)
        }
        // Streams and upgrades: the body is not read here and the upgrade extension stays.
        PathKind::Resource(target) if rest::connect::handles(&target) => {
            rest::connect::serve(shared, target, req).await
        }
        PathKind::Resource(target) => {
            let query = Query::parse(req.uri().query())?;
            let method = req.method().clone();
            let body = read_body(req.into_body()).await?;
            let req = rest::ApiRequest { method, target, query, headers, body, identity: Some(identity) };
            rest::serve(shared, req).await
        }
    }
}

/// Reads a request body up to [`codec::MAX_BODY_BYTES`] (413 beyond).
async fn read_body(body: Body) -> Result<bytes::Bytes> {
    axum::body::to_bytes(body, codec::MAX_BODY_BYTES).await.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| {
            s.to_string().contains("length limit") || s.is::<http_body_util::LengthLimitError>()
        });
        if too_large {
            ApiError::TooLarge(codec::MAX_BODY_BYTES)
        } else {
            ApiError::BadRequest(format!("reading the request body: {e}"))
        }
    })
}
