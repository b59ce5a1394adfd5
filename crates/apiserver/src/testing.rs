//! An API server in process for the tests of API clients (feature `testing`): the scheduler, the
//! controllers and the kubelet test against the same router kubectl talks to, over `MemStore`,
//! through a `kube::Client` with no socket. Production code never uses this module.

use corten_store::{MemStore, MemStoreConfig};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{ApiConfig, ApiServer, Identity, Result};

/// A bootstrapped API server over a fresh `MemStore` and a client that calls it as
/// `identity`; everything stops when this is dropped.
pub struct TestCluster {
    /// A client of the in-process API server (default namespace `default`).
    pub client: kube::Client,
    /// The store behind it, for assertions that must bypass the API.
    pub store: MemStore,
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
    pub async fn start_with(config: ApiConfig, identity: Identity) -> Result<TestCluster> {
        let store = MemStore::new(MemStoreConfig::default());
        let shutdown = CancellationToken::new();
        let server = ApiServer::new(store.clone(), config, shutdown.clone());
        server.bootstrap().await?;
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut req: http::Request<kube::client::Body>| {
                req.extensions_mut().insert(identity.clone());
                req
            })
            .service(server.router());
        let client = kube::Client::new(service, "default");
        Ok(TestCluster { client, store, _guard: shutdown.clone().drop_guard(), shutdown })
    }

    /// Cancelled when the cluster is dropped: give it to the components under test.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}
