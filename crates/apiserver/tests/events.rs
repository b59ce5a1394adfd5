//! core/v1 Events and events.k8s.io/v1 Events share one storage, as in kube-apiserver: what the
//! scheduler writes through core/v1 and what kube-runtime's `Recorder` writes through
//! events.k8s.io/v1 is read, selected and watched through either API, converted.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use corten_apiserver::{ApiConfig, ApiServer, Identity};
use corten_store::{MemStore, MemStoreConfig};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference};
use k8s_openapi::api::events::v1::Event as NewEvent;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use serde_json::json;
use tokio_util::sync::{CancellationToken, DropGuard};

async fn cluster() -> Result<(Client, DropGuard)> {
    let store = MemStore::new(MemStoreConfig::default());
    let shutdown = CancellationToken::new();
    let server = ApiServer::new(store, ApiConfig::default(), shutdown.clone());
    server.bootstrap().await.context("bootstrap")?;
    let service = tower::ServiceBuilder::new()
        .map_request(|mut req: http::Request<kube::client::Body>| {
            req.extensions_mut().insert(Identity::admin());
            req
        })
        .service(server.router());
    Ok((Client::new(service, "default"), shutdown.drop_guard()))
}

/// A core/v1 Event as the scheduler writes it.
fn scheduled(name: &str, pod: &str) -> Result<CoreEvent> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": "default", "uid": "pod-uid"},
        "reason": "Scheduled",
        "message": format!("Successfully assigned default/{pod} to n1"),
        "source": {"component": "default-scheduler"},
        "firstTimestamp": "2026-01-02T03:04:05Z",
        "lastTimestamp": "2026-01-02T03:04:05Z",
        "count": 1,
        "type": "Normal",
    }))?)
}

fn deployment_ref() -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("Deployment".into()),
        name: Some("web".into()),
        namespace: Some("default".into()),
        uid: Some("deploy-uid".into()),
        ..ObjectReference::default()
    }
}

fn scaling() -> Event {
    Event {
        type_: EventType::Normal,
        reason: "ScalingReplicaSet".into(),
        note: Some("Scaled up replica set web-abc from 0 to 2".into()),
        action: "Scale".into(),
        secondary: None,
    }
}

fn recorder(client: &Client) -> Recorder {
    let reporter = Reporter { controller: "deployment-controller".into(), instance: Some("corten-0".into()) };
    Recorder::new(client.clone(), reporter)
}

/// The items of `api` matching the field selector `fields`.
async fn select<K>(api: &Api<K>, fields: &str) -> Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.list(&ListParams::default().fields(fields)).await?.items)
}

fn names<T: kube::Resource>(items: &[T]) -> Vec<String> {
    let mut names: Vec<String> = items.iter().filter_map(|e| e.meta().name.clone()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn an_event_written_through_either_api_reads_converted_through_the_other() -> Result<()> {
    let (client, _guard) = cluster().await?;
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let new: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    let written = core.create(&PostParams::default(), &scheduled("web-0.1", "web-0")?).await?;
    let rec = recorder(&client);
    rec.publish(&scaling(), &deployment_ref()).await?;

    let read = new.get("web-0.1").await?;
    assert_eq!(read.metadata.uid, written.metadata.uid);
    assert_eq!(read.metadata.resource_version, written.metadata.resource_version);
    assert_eq!(read.regarding.as_ref().and_then(|r| r.name.as_deref()), Some("web-0"));
    assert_eq!(read.note.as_deref(), Some("Successfully assigned default/web-0 to n1"));
    assert_eq!(read.reason.as_deref(), Some("Scheduled"));
    assert_eq!(read.type_.as_deref(), Some("Normal"));
    assert_eq!(read.deprecated_source.and_then(|s| s.component).as_deref(), Some("default-scheduler"));
    assert_eq!(read.deprecated_count, Some(1));
    assert_eq!(read.deprecated_first_timestamp, written.first_timestamp);

    let recorded = new.list(&ListParams::default()).await?.items;
    assert_eq!(names(&recorded), names(&core.list(&ListParams::default()).await?.items));
    let name = recorded
        .iter()
        .find(|e| e.reason.as_deref() == Some("ScalingReplicaSet"))
        .and_then(|e| e.metadata.name.clone())
        .context("the recorder's event is listed through events.k8s.io/v1")?;
    let as_core = core.get(&name).await?;
    assert_eq!(as_core.involved_object, deployment_ref());
    assert_eq!(as_core.message.as_deref(), Some("Scaled up replica set web-abc from 0 to 2"));
    assert_eq!(as_core.reporting_component.as_deref(), Some("deployment-controller"));
    assert_eq!(as_core.reporting_instance.as_deref(), Some("corten-0"));
    assert_eq!(as_core.action.as_deref(), Some("Scale"));
    assert!(as_core.event_time.is_some(), "eventTime is kept: {as_core:?}");
    assert!(as_core.series.is_none());

    // A repeat is a merge patch of `series` through events.k8s.io/v1; core/v1 sees the series.
    rec.publish(&scaling(), &deployment_ref()).await?;
    let repeated = core.get(&name).await?;
    assert_eq!(repeated.series.as_ref().and_then(|s| s.count), Some(2), "{repeated:?}");
    assert!(repeated.series.and_then(|s| s.last_observed_time).is_some());
    assert_eq!(core.list(&ListParams::default()).await?.items.len(), 2, "the repeat is no new event");
    Ok(())
}

#[tokio::test]
async fn kubectl_describe_field_selectors_find_events_of_both_apis() -> Result<()> {
    let (client, _guard) = cluster().await?;
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let new: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    core.create(&PostParams::default(), &scheduled("web-0.1", "web-0")?).await?;
    core.create(&PostParams::default(), &scheduled("web-1.1", "web-1")?).await?;
    recorder(&client).publish(&scaling(), &deployment_ref()).await?;

    // `kubectl describe deployment web` lists core/v1 Events with this selector.
    let describe = "involvedObject.name=web,involvedObject.namespace=default,involvedObject.kind=Deployment,involvedObject.uid=deploy-uid";
    let found = select(&core, describe).await?;
    assert_eq!(found.len(), 1, "one event about the deployment: {found:?}");
    assert_eq!(found[0].reason.as_deref(), Some("ScalingReplicaSet"));
    assert_eq!(select(&core, "reportingComponent=deployment-controller").await?.len(), 1);

    assert_eq!(names(&select(&new, "regarding.name=web-0,type=Normal").await?), ["web-0.1"]);
    assert_eq!(select(&new, "regarding.uid=deploy-uid").await?.len(), 1);
    assert_eq!(select(&new, "reportingController=deployment-controller").await?.len(), 1);
    // `source` is the source component, else the reporting controller, in both APIs.
    assert_eq!(names(&select(&new, "source=default-scheduler").await?), ["web-0.1", "web-1.1"]);
    assert_eq!(select(&core, "source=deployment-controller").await?.len(), 1);
    assert_eq!(names(&select(&new, "regarding.kind=Pod,regarding.name!=web-0").await?), ["web-1.1"]);

    let err =
        select(&new, "involvedObject.name=web").await.err().and_then(|e| e.downcast::<kube::Error>().ok());
    match err {
        Some(kube::Error::Api(s)) => {
            assert_eq!(s.code, 400, "core field labels are not events.k8s.io's: {s:?}")
        }
        other => bail!("expected a 400 for a core field label on events.k8s.io, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_watch_on_one_api_sees_writes_through_the_other() -> Result<()> {
    let (client, _guard) = cluster().await?;
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let new: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    let mut new_watch =
        new.watch(&WatchParams::default().fields("regarding.kind=Pod").timeout(20), "0").await?.boxed();
    let mut core_watch = core
        .watch(&WatchParams::default().fields("involvedObject.kind=Deployment").timeout(20), "0")
        .await?
        .boxed();

    core.create(&PostParams::default(), &scheduled("web-0.1", "web-0")?).await?;
    recorder(&client).publish(&scaling(), &deployment_ref()).await?;

    match tokio::time::timeout(Duration::from_secs(20), new_watch.try_next()).await?? {
        Some(WatchEvent::Added(e)) => {
            assert_eq!(e.metadata.name.as_deref(), Some("web-0.1"));
            assert_eq!(e.regarding.and_then(|r| r.name).as_deref(), Some("web-0"));
        }
        other => bail!("expected the scheduler's event ADDED on events.k8s.io/v1, got {other:?}"),
    }
    let recorded = match tokio::time::timeout(Duration::from_secs(20), core_watch.try_next()).await?? {
        Some(WatchEvent::Added(e)) => {
            assert_eq!(e.involved_object.name.as_deref(), Some("web"));
            assert_eq!(e.reporting_component.as_deref(), Some("deployment-controller"));
            e.metadata.name.context("named event")?
        }
        other => bail!("expected the recorder's event ADDED on core/v1, got {other:?}"),
    };

    new.delete(&recorded, &DeleteParams::default()).await?;
    match tokio::time::timeout(Duration::from_secs(20), core_watch.try_next()).await?? {
        Some(WatchEvent::Deleted(e)) => assert_eq!(e.metadata.name, Some(recorded.clone())),
        other => bail!("expected the recorder's event DELETED on core/v1, got {other:?}"),
    }
    let gone = core.get_opt(&recorded).await?;
    assert!(gone.is_none(), "deleted through events.k8s.io/v1, still in core/v1: {gone:?}");
    Ok(())
}

#[tokio::test]
async fn one_name_is_one_event_in_both_apis() -> Result<()> {
    let (client, _guard) = cluster().await?;
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let new: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    core.create(&PostParams::default(), &scheduled("web-0.1", "web-0")?).await?;
    let twin: NewEvent = serde_json::from_value(json!({
        "metadata": {"name": "web-0.1"},
        "eventTime": "2026-01-02T03:04:05.000000Z",
        "reportingController": "x",
        "reportingInstance": "x",
        "action": "A",
        "reason": "R",
        "regarding": {"kind": "Pod", "name": "web-0", "namespace": "default"},
    }))?;
    match new.create(&PostParams::default(), &twin).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.message, "events.events.k8s.io \"web-0.1\" already exists");
        }
        other => bail!("expected 409 for a name taken through core/v1, got {other:?}"),
    }

    // An update through events.k8s.io/v1 changes what core/v1 reads.
    let mut read = new.get("web-0.1").await?;
    read.note = Some("rewritten".into());
    new.replace("web-0.1", &PostParams::default(), &read).await?;
    let as_core = core.get("web-0.1").await?;
    assert_eq!(as_core.message.as_deref(), Some("rewritten"));
    assert_eq!(as_core.source.and_then(|s| s.component).as_deref(), Some("default-scheduler"));
    Ok(())
}
