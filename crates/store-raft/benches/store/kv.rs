//! The small surface every benchmarked backend offers: put, full range read, prefix watch.
//!
//! Corten's backends are driven through `corten_store::Store` ([`StoreKv`]), etcd through the
//! `etcd-client` crate over gRPC on loopback ([`EtcdKv`]), so one workload runs against both.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{bail, Context};
use corten_store::{KeyRange, RangeRequest, Store, WatchRequest, WatchResponse};
use futures::{Stream, StreamExt};

/// A stream of watch deliveries: the values of the events of one response.
pub type Values = Pin<Box<dyn Stream<Item = anyhow::Result<Vec<Vec<u8>>>> + Send>>;

/// What the workloads need from a backend. Clones share one connection/store.
pub trait Kv: Clone + Send + Sync + 'static {
    /// Writes one key unconditionally and waits for the acknowledgement.
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Reads every key under `prefix` with values (a linearizable read); returns how many.
    fn range_prefix(&self, prefix: Vec<u8>) -> impl Future<Output = anyhow::Result<usize>> + Send;

    /// Watches `prefix` from now on; resolves once the watch is registered.
    fn watch_prefix(&self, prefix: Vec<u8>) -> impl Future<Output = anyhow::Result<Values>> + Send;
}

/// Any `corten_store::Store`, in process.
#[derive(Debug)]
pub struct StoreKv<S>(pub Arc<S>);

impl<S> Clone for StoreKv<S> {
    fn clone(&self) -> Self {
        StoreKv(self.0.clone())
    }
}

impl<S: Store> Kv for StoreKv<S> {
    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> anyhow::Result<()> {
        self.0.put(key, value).await?;
        Ok(())
    }

    async fn range_prefix(&self, prefix: Vec<u8>) -> anyhow::Result<usize> {
        Ok(self.0.range(RangeRequest::prefix(prefix)).await?.kvs.len())
    }

    async fn watch_prefix(&self, prefix: Vec<u8>) -> anyhow::Result<Values> {
        let stream = self.0.watch(WatchRequest::new(KeyRange::Prefix(prefix), 0)).await?;
        Ok(Box::pin(stream.filter_map(|resp| async move {
            match resp {
                Ok(WatchResponse::Events { events, .. }) => {
                    Some(Ok(events.into_iter().map(|e| e.kv.value).collect()))
                }
                Ok(WatchResponse::Progress { .. }) => None,
                Err(e) => Some(Err(e.into())),
            }
        })))
    }
}

/// An etcd cluster reached over gRPC (plain HTTP/2 on loopback).
#[derive(Clone)]
pub struct EtcdKv {
    client: etcd_client::Client,
}

impl std::fmt::Debug for EtcdKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EtcdKv")
    }
}

impl EtcdKv {
    /// Connects to `endpoints` (`http://host:port`); requests are balanced over them.
    pub async fn connect(endpoints: &[String]) -> anyhow::Result<Self> {
        let client = etcd_client::Client::connect(endpoints, None).await.context("connecting to etcd")?;
        Ok(EtcdKv { client })
    }

    /// Answers once a linearizable read succeeds (the cluster has a leader).
    pub async fn ready(&self) -> anyhow::Result<()> {
        self.client.kv_client().get("/bench/ready", None).await?;
        Ok(())
    }
}

impl Kv for EtcdKv {
    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> anyhow::Result<()> {
        self.client.kv_client().put(key, value, None).await?;
        Ok(())
    }

    async fn range_prefix(&self, prefix: Vec<u8>) -> anyhow::Result<usize> {
        let mut kv = self.client.kv_client().max_decoding_message_size(256 << 20);
        let resp = kv.get(prefix, Some(etcd_client::GetOptions::new().with_prefix())).await?;
        Ok(resp.kvs().len())
    }

    async fn watch_prefix(&self, prefix: Vec<u8>) -> anyhow::Result<Values> {
        let mut watch = self.client.watch_client();
        let mut stream = watch.watch(prefix, Some(etcd_client::WatchOptions::new().with_prefix())).await?;
        // The first response confirms the watch is registered.
        match stream.message().await? {
            Some(resp) if resp.created() => {}
            other => bail!("etcd watch was not created: {other:?}"),
        }
        Ok(Box::pin(futures::stream::unfold(stream, |mut stream| async move {
            match stream.message().await {
                Ok(Some(resp)) => {
                    let values = resp.events().iter().filter_map(|e| e.kv().map(|kv| kv.value().to_vec()));
                    Some((Ok(values.collect()), stream))
                }
                Ok(None) => None,
                Err(e) => Some((Err(e.into()), stream)),
            }
        })))
    }
}
