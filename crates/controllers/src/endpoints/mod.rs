//! The endpoints, endpointslice and endpointslice-mirroring controllers of kube-controller-manager
//! as one reconciler of Services:
//!
//! - a Service with a selector gets an `Endpoints` of its name (ready and not-ready addresses of
//!   the selected pods with an IP) and `EndpointSlice`s managed by
//!   `endpointslice-controller.k8s.io` (owned by the Service, at most 100 endpoints each, one
//!   empty placeholder when no pod matches);
//! - a Service without a selector keeps whatever `Endpoints` its user (or the API server, for
//!   `kubernetes`) writes, and those are mirrored into slices managed by
//!   `endpointslicemirroring-controller.k8s.io` (owned by the Endpoints) unless labelled
//!   `endpointslice.kubernetes.io/skip-mirror: "true"`.
//!
//! Objects that already hold what they should are not written.

mod desired;
mod slices;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller, Error as ControllerError};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::ResourceExt;
use tracing::{debug, warn};

use crate::error::api;
use crate::{Ctx, Error, Result};

/// `kubernetes.io/service-name`: the Service a slice belongs to.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `endpointslice.kubernetes.io/managed-by`: the controller that writes a slice.
pub(crate) const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The managed-by value of slices of Services with selectors.
pub(crate) const SLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// The managed-by value of slices mirrored from user-managed Endpoints.
pub(crate) const MIRRORING_CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";
/// Endpoints with this label set to `"true"` are not mirrored.
const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// `endpoints.kubernetes.io/managed-by`: set on the Endpoints this controller writes.
const ENDPOINTS_MANAGED_BY_LABEL: &str = "endpoints.kubernetes.io/managed-by";
const ENDPOINTS_CONTROLLER: &str = "endpoint-controller";
/// Set on Endpoints that hold only the first [`desired::MAX_ENDPOINTS_ADDRESSES`] addresses.
const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// Set on the Endpoints and slices of headless Services.
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// How long after a failure a Service is reconciled again.
const RETRY: Duration = Duration::from_secs(5);
/// A full resync of every Service now and then, for pods whose labels stopped matching.
const RESYNC: Duration = Duration::from_secs(300);

pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<Service>::all(client.clone()), watcher::Config::default());
    let services = controller.store();
    // The slices this controller wrote, to find the Services of a pod that stopped matching.
    let (slices, writer) = reflector::store::<EndpointSlice>();
    let slice_watch = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={SLICE_CONTROLLER}"));
    let slice_cache = reflector(writer, watcher(Api::<EndpointSlice>::all(client.clone()), slice_watch))
        .default_backoff()
        .for_each(|_| futures::future::ready(()));
    let controller = controller
        .owns(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default())
        // The main watch skips deletions: this one sees them, to clean up after a Service.
        .watches(Api::<Service>::all(client.clone()), watcher::Config::default(), |svc: Service| {
            Some(ObjectRef::from_obj(&svc))
        })
        .watches(Api::<Endpoints>::all(client.clone()), watcher::Config::default(), |ep: Endpoints| {
            ep.namespace().map(|ns| ObjectRef::new(&ep.name_any()).within(&ns))
        })
        .watches(Api::<Pod>::all(client.clone()), watcher::Config::default(), move |pod: Pod| {
            services_of(&services, &slices, &pod)
        })
        .graceful_shutdown_on(ctx.shutdown.clone().cancelled_owned());
    let ctx = Arc::new(ctx);
    let controller = controller
        .run(reconcile, |_, _, _| Action::requeue(RETRY), ctx.clone())
        .for_each(|outcome| {
            let ctx = ctx.clone();
            async move {
                match outcome {
                    Ok(_) => {}
                    Err(ControllerError::ObjectNotFound(gone)) => {
                        if let Some(ns) = gone.namespace.as_deref() {
                            if let Err(e) = forget(&ctx, ns, &gone.name).await {
                                warn!(error = %e, service = %gone.name, "cleaning up after a deleted service");
                            }
                        }
                    }
                    Err(ControllerError::ReconcilerFailed(e, obj)) => {
                        warn!(error = %e, service = %obj.name, "reconciling service endpoints")
                    }
                    Err(e) => debug!(error = %e, "endpoints controller event"),
                }
            }
        });
    // The controller ends on shutdown; the slice cache runs as long as it does.
    tokio::select! {
        () = controller => {}
        () = slice_cache => {}
    }
    Ok(())
}

/// The Services a pod event concerns: those that select the pod now, and those whose slices
/// list it (it may have stopped matching).
fn services_of(
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    pod: &Pod,
) -> Vec<ObjectRef<Service>> {
    let mut refs: Vec<ObjectRef<Service>> = services
        .state()
        .into_iter()
        .filter(|svc| desired::selects(svc, pod))
        .map(|svc| ObjectRef::from_obj(svc.as_ref()))
        .collect();
    let (Some(namespace), Some(uid)) = (pod.namespace(), pod.uid()) else { return refs };
    for slice in slices.state() {
        let lists_pod =
            slice.endpoints.iter().any(|e| e.target_ref.as_ref().and_then(|r| r.uid.as_ref()) == Some(&uid));
        if lists_pod && slice.namespace().as_deref() == Some(namespace.as_str()) {
            if let Some(service) = slice.labels().get(SERVICE_NAME_LABEL) {
                refs.push(ObjectRef::new(service).within(&namespace));
            }
        }
    }
    refs
}

/// Deletes the Endpoints this controller wrote for a Service that is gone (its slices go with
/// it through their owner reference).
async fn forget(ctx: &Ctx, namespace: &str, name: &str) -> Result<()> {
    let endpoints: Api<Endpoints> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(ep) = endpoints.get_opt(name).await.map_err(api_err("reading endpoints", namespace, name))?
    else {
        return Ok(());
    };
    if ep.labels().get(ENDPOINTS_MANAGED_BY_LABEL).map(String::as_str) == Some(ENDPOINTS_CONTROLLER) {
        match endpoints.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api_err("deleting endpoints", namespace, name)(e)),
        }
    }
    Ok(())
}

fn api_err(what: &str, namespace: &str, name: &str) -> impl FnOnce(kube::Error) -> Error {
    api(format!("{what} {name} in {namespace}"))
}

async fn reconcile(cached: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action> {
    let (Some(namespace), name) = (cached.namespace(), cached.name_any()) else {
        return Ok(Action::await_change());
    };
    // The cache may lag behind a deletion: never write for a Service that is gone.
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    let service =
        match services.get_opt(&name).await.map_err(api_err("reading service", &namespace, &name))? {
            Some(svc) if svc.uid() == cached.uid() => svc,
            _ => {
                forget(&ctx, &namespace, &name).await?;
                return Ok(Action::await_change());
            }
        };
    if service.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let external_name = service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    let selector = service.spec.as_ref().and_then(|s| s.selector.clone()).filter(|s| !s.is_empty());
    if external_name && selector.is_some() {
        // An ExternalName Service is a DNS alias: it gets no endpoints from its selector.
        return Ok(Action::await_change());
    }
    match selector {
        Some(selector) => {
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
            let query = selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
            let pods = pods
                .list(&ListParams::default().labels(&query))
                .await
                .map_err(api_err("listing pods of service", &namespace, &name))?
                .items;
            let members = desired::members(&service, &pods);
            write_endpoints(&ctx, &service, &namespace, &name, &members).await?;
            slices::sync_service_slices(&ctx, &service, &namespace, desired::slices(&members)).await?;
        }
        None => {
            let endpoints: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
            let ep =
                endpoints.get_opt(&name).await.map_err(api_err("reading endpoints", &namespace, &name))?;
            let mirror = ep.filter(|ep| {
                ep.labels().get(SKIP_MIRROR_LABEL).map(String::as_str) != Some("true")
                    && ep.labels().get(ENDPOINTS_MANAGED_BY_LABEL).map(String::as_str)
                        != Some(ENDPOINTS_CONTROLLER)
            });
            slices::sync_mirrored_slices(&ctx, &namespace, &name, mirror.as_ref()).await?;
        }
    }
    Ok(Action::requeue(RESYNC))
}

/// The labels of the Endpoints and slices of `service`: its own, plus the headless mark.
fn service_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.labels().clone();
    if desired::headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// Creates or updates the Endpoints of a Service with a selector.
async fn write_endpoints(
    ctx: &Ctx,
    service: &Service,
    namespace: &str,
    name: &str,
    members: &[desired::Member],
) -> Result<()> {
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), namespace);
    let (subsets, truncated) =
        desired::truncate(desired::subsets(service, members), desired::MAX_ENDPOINTS_ADDRESSES);
    let mut labels = service_labels(service);
    labels.insert(ENDPOINTS_MANAGED_BY_LABEL.into(), ENDPOINTS_CONTROLLER.into());
    let subsets = (!subsets.is_empty()).then_some(subsets);
    match api.get_opt(name).await.map_err(api_err("reading endpoints", namespace, name))? {
        Some(mut current) => {
            let marked = current.annotations().get(OVER_CAPACITY_ANNOTATION).is_some();
            if current.subsets == subsets
                && current.metadata.labels.as_ref() == Some(&labels)
                && marked == truncated
            {
                return Ok(());
            }
            current.subsets = subsets;
            current.metadata.labels = Some(labels);
            let annotations = current.metadata.annotations.get_or_insert_with(BTreeMap::new);
            if truncated {
                annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
            } else {
                annotations.remove(OVER_CAPACITY_ANNOTATION);
            }
            api.replace(name, &PostParams::default(), &current).await.map_err(api_err(
                "updating endpoints",
                namespace,
                name,
            ))?;
        }
        None => {
            let mut ep = Endpoints { subsets, ..Endpoints::default() };
            ep.metadata.name = Some(name.into());
            ep.metadata.namespace = Some(namespace.into());
            ep.metadata.labels = Some(labels);
            if truncated {
                ep.metadata.annotations =
                    Some([(OVER_CAPACITY_ANNOTATION.into(), "truncated".into())].into());
            }
            api.create(&PostParams::default(), &ep).await.map_err(api_err(
                "creating endpoints",
                namespace,
                name,
            ))?;
        }
    }
    Ok(())
}
