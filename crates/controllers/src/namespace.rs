//! The namespace controller: empties a namespace being deleted, then finalizes it.
//!
//! When a Namespace has a `deletionTimestamp` and the `kubernetes` finalizer in
//! `spec.finalizers`, every namespaced resource that can be listed and deleted (discovered
//! afresh each time, custom resources included) is emptied, with `deletecollection` where the
//! resource supports it. Objects that linger (finalizers, graceful pod termination) are waited
//! for by requeueing. Progress is reported in the upstream status conditions; once nothing
//! remains, `kubernetes` is removed through `namespaces/{name}/finalize` and the API server
//! deletes the namespace.

mod conditions;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::discovery::{self, Served};
use crate::error::{api, Error, Result};
use crate::Ctx;
use conditions::Totals;

/// The finalizer of `spec.finalizers` this controller owns.
const FINALIZER: &str = "kubernetes";

/// How soon a namespace whose content is still going away is looked at again.
const CONTENT_REQUEUE: Duration = Duration::from_secs(2);

/// How soon a namespace is retried after a failure.
const ERROR_REQUEUE: Duration = Duration::from_secs(5);

pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let shutdown = ctx.shutdown.clone();
    Controller::new(namespaces, watcher::Config::default())
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(ns: Arc<Namespace>, error: &Error, _: Arc<Ctx>) -> Action {
    warn!(namespace = %ns.name_any(), error = %error, "namespace deletion failed; retrying");
    Action::requeue(ERROR_REQUEUE)
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action> {
    let pending = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
    if ns.metadata.deletion_timestamp.is_none() || !pending {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let totals = delete_content(&ctx.client, &name).await;
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let old = ns.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let new = totals.conditions(&old);
    if new != old {
        let patch = Patch::Merge(json!({"status": {"conditions": new}}));
        if let Err(e) = namespaces.patch_status(&name, &PatchParams::default(), &patch).await {
            warn!(namespace = %name, error = %e, "updating namespace conditions failed");
        }
    }
    if !totals.errors.is_empty() {
        return Err(Error::Unfinished(format!(
            "deleting the content of namespace {name}: {}",
            totals.errors.join(", ")
        )));
    }
    if totals.remaining() {
        debug!(namespace = %name, "namespace content remains; waiting");
        return Ok(Action::requeue(CONTENT_REQUEUE));
    }
    finalize(&namespaces, &name).await?;
    Ok(Action::await_change())
}

/// Deletes everything in namespace `ns` and counts what is left.
async fn delete_content(client: &Client, ns: &str) -> Totals {
    let mut totals = Totals::default();
    let found = match discovery::discover(client).await {
        Ok(found) => found,
        Err(e) => {
            totals.discovery_error = Some(e.to_string());
            return totals;
        }
    };
    if !found.failed.is_empty() {
        let groups: Vec<String> = found.failed.iter().map(|(g, e)| format!("{g}: {e}")).collect();
        totals.discovery_error = Some(format!(
            "Discovery failed for some groups, {} failing: unable to retrieve the complete list of server APIs: {}",
            found.failed.len(),
            groups.join(", ")
        ));
    }
    for served in found.resources.iter().filter(|s| s.namespaced() && s.supports(&["list", "delete"])) {
        if let Err(e) = delete_resource(client, ns, served, &mut totals).await {
            totals.errors.push(e);
        }
    }
    totals
}

/// Deletes the objects of one resource in `ns`; records in `totals` what remains.
async fn delete_resource(
    client: &Client,
    ns: &str,
    served: &Served,
    totals: &mut Totals,
) -> std::result::Result<(), String> {
    let ar = &served.resource;
    let objects: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let what = format!("{}.{}", ar.plural, ar.group);
    let background = DeleteParams::background();
    let mut collection_done = false;
    if served.supports(&["deletecollection"]) {
        match objects.delete_collection(&background, &ListParams::default()).await {
            Ok(_) => collection_done = true,
            Err(kube::Error::Api(s)) if s.code == 405 => {}
            Err(e) => return Err(format!("deleting {what}: {e}")),
        }
    }
    if !collection_done {
        let list = objects
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| format!("listing {what}: {e}"))?;
        for item in list.items.iter().filter(|i| i.metadata.deletion_timestamp.is_none()) {
            match objects.delete(&item.name_any(), &background).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(format!("deleting {what} {}: {e}", item.name_any())),
            }
        }
    }
    let left =
        objects.list_metadata(&ListParams::default()).await.map_err(|e| format!("listing {what}: {e}"))?;
    if left.items.is_empty() {
        return Ok(());
    }
    let mut finalizers: BTreeMap<String, usize> = BTreeMap::new();
    for item in &left.items {
        for f in item.finalizers() {
            *finalizers.entry(f.clone()).or_default() += 1;
        }
    }
    totals.remaining.insert(what, left.items.len());
    for (f, n) in finalizers {
        *totals.finalizers.entry(f).or_default() += n;
    }
    if left.items.iter().any(|i| i.metadata.deletion_timestamp.is_none()) {
        return Err(format!(
            "unexpected items still remain in namespace: {ns} for gvr: {}/{}, Resource={}",
            ar.group, ar.version, ar.plural
        ));
    }
    Ok(())
}

/// Removes `kubernetes` from the namespace's `spec.finalizers` through the `finalize`
/// subresource; the API server deletes the namespace when no finalizer is left.
async fn finalize(namespaces: &Api<Namespace>, name: &str) -> Result<()> {
    let Some(mut ns) = namespaces.get_opt(name).await.map_err(api(format!("reading namespace {name}")))?
    else {
        return Ok(());
    };
    let spec = ns.spec.get_or_insert_with(Default::default);
    let finalizers = spec.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    finalizers.retain(|f| f != FINALIZER);
    match namespaces.replace_subresource("finalize", name, &PostParams::default(), &ns).await {
        Ok(_) => {
            info!(namespace = %name, "namespace content deleted; namespace finalized");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(api(format!("finalizing namespace {name}"))(e)),
    }
}
