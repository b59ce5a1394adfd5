//! Bringing the EndpointSlices of one Service to what they should hold, with the fewest writes:
//! slices that already hold a wanted set are kept, others are rewritten, created or deleted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::ResourceExt;

use super::{
    api_err, service_labels, MANAGED_BY_LABEL, MIRRORING_CONTROLLER, SERVICE_NAME_LABEL, SLICE_CONTROLLER,
};
use crate::{Ctx, Result};

/// What one slice should hold.
type Contents = (Vec<EndpointPort>, Vec<Endpoint>);

/// The slices of a Service with a selector: `wanted` (or one empty placeholder), owned by it.
pub(super) async fn sync_service_slices(
    ctx: &Ctx,
    service: &Service,
    namespace: &str,
    wanted: Vec<Contents>,
) -> Result<()> {
    let name = service.name_any();
    let mut labels = service_labels(service);
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), SLICE_CONTROLLER.into());
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: name.clone(),
        uid: service.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let wanted = if wanted.is_empty() { vec![(Vec::new(), Vec::new())] } else { wanted };
    sync(ctx, namespace, &name, SLICE_CONTROLLER, labels, owner, wanted).await
}

/// The slices mirroring the user-managed `endpoints` of a selector-less Service (none when
/// there is nothing to mirror), owned by the Endpoints.
pub(super) async fn sync_mirrored_slices(
    ctx: &Ctx,
    namespace: &str,
    name: &str,
    endpoints: Option<&Endpoints>,
) -> Result<()> {
    let Some(ep) = endpoints else {
        return sync(
            ctx,
            namespace,
            name,
            MIRRORING_CONTROLLER,
            BTreeMap::new(),
            OwnerReference::default(),
            vec![],
        )
        .await;
    };
    let mut labels = ep.labels().clone();
    labels.insert(SERVICE_NAME_LABEL.into(), name.into());
    labels.insert(MANAGED_BY_LABEL.into(), MIRRORING_CONTROLLER.into());
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Endpoints".into(),
        name: name.into(),
        uid: ep.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    sync(ctx, namespace, name, MIRRORING_CONTROLLER, labels, owner, super::desired::mirrored(ep)).await
}

fn holds(slice: &EndpointSlice, contents: &Contents, labels: &BTreeMap<String, String>) -> bool {
    let mut endpoints = slice.endpoints.clone();
    endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    slice.ports.clone().unwrap_or_default() == contents.0
        && endpoints == contents.1
        && slice.metadata.labels.as_ref() == Some(labels)
}

async fn sync(
    ctx: &Ctx,
    namespace: &str,
    service: &str,
    manager: &str,
    labels: BTreeMap<String, String>,
    owner: OwnerReference,
    wanted: Vec<Contents>,
) -> Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), namespace);
    let query = format!("{SERVICE_NAME_LABEL}={service},{MANAGED_BY_LABEL}={manager}");
    let mut existing = api
        .list(&ListParams::default().labels(&query))
        .await
        .map_err(api_err("listing endpointslices of service", namespace, service))?
        .items;
    existing.retain(|s| s.metadata.deletion_timestamp.is_none());
    // Keep the slices that already hold a wanted set.
    let mut pending = Vec::new();
    for contents in wanted {
        match existing.iter().position(|s| holds(s, &contents, &labels)) {
            Some(i) => {
                existing.swap_remove(i);
            }
            None => pending.push(contents),
        }
    }
    for (ports, endpoints) in pending {
        let ports = (!ports.is_empty()).then_some(ports);
        match existing.pop() {
            Some(mut slice) => {
                slice.ports = ports;
                slice.endpoints = endpoints;
                slice.metadata.labels = Some(labels.clone());
                slice.metadata.owner_references = Some(vec![owner.clone()]);
                let name = slice.name_any();
                api.replace(&name, &PostParams::default(), &slice).await.map_err(api_err(
                    "updating endpointslice",
                    namespace,
                    &name,
                ))?;
            }
            None => {
                let mut slice = EndpointSlice {
                    address_type: "IPv4".into(),
                    endpoints,
                    ports,
                    ..EndpointSlice::default()
                };
                slice.metadata.generate_name = Some(format!("{service}-"));
                slice.metadata.namespace = Some(namespace.into());
                slice.metadata.labels = Some(labels.clone());
                slice.metadata.owner_references = Some(vec![owner.clone()]);
                api.create(&PostParams::default(), &slice).await.map_err(api_err(
                    "creating endpointslice for service",
                    namespace,
                    service,
                ))?;
            }
        }
    }
    for slice in existing {
        let name = slice.name_any();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api_err("deleting endpointslice", namespace, &name)(e)),
        }
    }
    Ok(())
}
