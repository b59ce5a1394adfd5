//! An API server in process for the tests of API clients (feature `testing`): the scheduler, the
//! controllers and the kubelet test against the same router kubectl talks to, over `MemStore`,
//! through a `kube::Client` with no socket. Production code never uses this module.

use std::net::SocketAddr;

use axum::body::Body;
use corten_store::{MemStore, MemStoreConfig};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::{CancellationToken, DropGuard};
use tower::ServiceExt;

use std::sync::Arc;

use crate::{
    ApiConfig, ApiError, ApiServer, BoundObject, Identity, IssueError, Result, ServiceAccountClaims,
    TokenAuthentication, TokenAuthenticator, TokenIssuer,
};

/// A bootstrapped API server over a fresh `MemStore` and a client that calls it as
/// `identity`; everything stops when this is dropped.
pub struct TestCluster {
    /// A client of the in-process API server (default namespace `default`).
    pub client: kube::Client,
    /// The store behind it, for assertions that must bypass the API.
    pub store: MemStore,
    router: axum::Router,
    identity: Identity,
    shutdown: CancellationToken,
    _guard: DropGuard,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `kube::Client` has no `Debug`.
        f.debug_struct("TestCluster").field("store", &self.store).finish_non_exhaustive()
    }
}

impl TestCluster {
    /// A cluster with the default [`ApiConfig`], called as the cluster administrator.
    pub async fn start() -> Result<TestCluster> {
        Self::start_with(ApiConfig::default(), Identity::admin()).await
    }

    /// A cluster with `config` whose client calls as `identity`.
    ///
    /// A `config` that neither verifies nor issues tokens gets [`TestTokens`] for both, so
    /// `serviceaccounts/token` and bearer tokens work as in a real cluster.
    pub async fn start_with(mut config: ApiConfig, identity: Identity) -> Result<TestCluster> {
        if config.tokens.is_none() && config.token_issuer.is_none() {
            let keys = Arc::new(TestTokens::generate().map_err(|e| ApiError::Internal(e.to_string()))?);
            config.tokens = Some(keys.clone());
            config.token_issuer = Some(keys);
        }
        let store = MemStore::new(MemStoreConfig::default());
        let shutdown = CancellationToken::new();
        let server = ApiServer::new(store.clone(), config, shutdown.clone());
        server.bootstrap().await?;
        let router = server.router();
        let as_identity = identity.clone();
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut req: http::Request<kube::client::Body>| {
                req.extensions_mut().insert(as_identity.clone());
                req
            })
            .service(router.clone());
        let client = kube::Client::new(service, "default");
        Ok(TestCluster { client, store, router, identity, _guard: shutdown.clone().drop_guard(), shutdown })
    }

    /// Also serves the API over plain HTTP/1.1 and HTTP/2 on a loopback port (as the client's
    /// identity, with protocol upgrades), for tests that need a real socket: streamed responses,
    /// `101 Switching Protocols`. Stops with the cluster.
    pub async fn serve_http(&self) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (router, identity, shutdown) =
            (self.router.clone(), self.identity.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    () = shutdown.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(_) => continue,
                    },
                };
                let (router, identity) = (router.clone(), identity.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(identity.clone());
                            router.clone().oneshot(req.map(Body::new))
                        });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).await;
                });
            }
        });
        Ok(addr)
    }

    /// A client that calls with `Authorization: Bearer <token>` instead of an identity, so the
    /// server authenticates the token.
    pub fn client_with_token(&self, token: &str) -> Result<kube::Client> {
        let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| ApiError::BadRequest(format!("a token must be a valid header value: {e}")))?;
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut req: http::Request<kube::client::Body>| {
                req.headers_mut().insert(http::header::AUTHORIZATION, value.clone());
                req
            })
            .service(self.router.clone());
        Ok(kube::Client::new(service, "default"))
    }

    /// A client of the same API server that calls as `identity` (as if authenticated by its
    /// client certificate), for tests of authorization.
    pub fn client_as(&self, identity: Identity) -> kube::Client {
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut req: http::Request<kube::client::Body>| {
                req.extensions_mut().insert(identity.clone());
                req
            })
            .service(self.router.clone());
        kube::Client::new(service, "default")
    }

    /// Cancelled when the cluster is dropped: give it to the components under test.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Service-account tokens for test clusters: the real ES256 signer of `corten-pki` with a fresh
/// key, for the API server's own audience ([`corten_pki::DEFAULT_ISSUER`]). `corten server`
/// wires its own equivalent around the cluster key on disk.
#[derive(Debug, Clone)]
pub struct TestTokens {
    keys: corten_pki::ServiceAccountTokens,
}

impl TestTokens {
    /// A signer with a new random key.
    pub fn generate() -> corten_pki::Result<Self> {
        Ok(TestTokens { keys: corten_pki::ServiceAccountTokens::generate()? })
    }
}

impl TokenIssuer for TestTokens {
    fn api_audiences(&self) -> Vec<String> {
        vec![corten_pki::DEFAULT_ISSUER.to_string()]
    }

    fn issue(&self, claims: &ServiceAccountClaims) -> std::result::Result<String, IssueError> {
        let object = |o: &Option<BoundObject>| {
            o.as_ref().map(|o| corten_pki::ObjectRef { name: o.name.clone(), uid: o.uid.clone() })
        };
        let signed = corten_pki::TokenClaims {
            iss: corten_pki::DEFAULT_ISSUER.to_string(),
            sub: claims.username(),
            aud: claims.audiences.clone(),
            exp: claims.expires_at,
            iat: claims.issued_at,
            nbf: claims.issued_at,
            jti: claims.id.clone(),
            kubernetes: corten_pki::KubernetesClaims {
                namespace: claims.namespace.clone(),
                serviceaccount: corten_pki::ObjectRef { name: claims.name.clone(), uid: claims.uid.clone() },
                pod: object(&claims.pod),
                secret: object(&claims.secret),
                node: object(&claims.node),
            },
        };
        Ok(self.keys.sign(&signed)?)
    }
}

impl TokenAuthenticator for TestTokens {
    fn authenticate(&self, token: &str) -> Option<TokenAuthentication> {
        let c = self.keys.verify(token, std::time::SystemTime::now()).ok()?;
        if !c.aud.iter().any(|a| a == corten_pki::DEFAULT_ISSUER) {
            return None;
        }
        let object = |o: Option<corten_pki::ObjectRef>| o.map(|o| BoundObject { name: o.name, uid: o.uid });
        let k = c.kubernetes;
        let claims = ServiceAccountClaims {
            namespace: k.namespace,
            name: k.serviceaccount.name,
            uid: k.serviceaccount.uid,
            audiences: c.aud,
            issued_at: c.iat,
            expires_at: c.exp,
            id: c.jti,
            pod: object(k.pod),
            secret: object(k.secret),
            node: object(k.node),
        };
        Some(TokenAuthentication { identity: claims.identity(), service_account: Some(claims) })
    }
}
