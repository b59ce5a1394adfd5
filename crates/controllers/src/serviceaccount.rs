//! The service account and root CA publishers: every active namespace gets a `default`
//! ServiceAccount and the `kube-root-ca.crt` ConfigMap (key `ca.crt`, the cluster CA), both
//! recreated when deleted; the ConfigMap is reset when its data is changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tracing::{debug, warn};

use crate::error::{api, Error, Result};
use crate::Ctx;

/// The service account every namespace gets.
const DEFAULT_SA: &str = "default";

/// The ConfigMap that carries the cluster CA.
const ROOT_CA: &str = "kube-root-ca.crt";

/// The key of the CA bundle in [`ROOT_CA`].
const CA_KEY: &str = "ca.crt";

/// The annotation kube-controller-manager puts on [`ROOT_CA`].
const DESCRIPTION: &str = "kubernetes.io/description";
const DESCRIPTION_TEXT: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    let client = ctx.client.clone();
    let shutdown = ctx.shutdown.clone();
    let to_namespace = |namespace: Option<String>| namespace.map(|ns| ObjectRef::<Namespace>::new(&ns));
    Controller::new(Api::<Namespace>::all(client.clone()), watcher::Config::default())
        .watches(
            Api::<ServiceAccount>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={DEFAULT_SA}")),
            move |sa| to_namespace(sa.metadata.namespace),
        )
        .watches(
            Api::<ConfigMap>::all(client),
            watcher::Config::default().fields(&format!("metadata.name={ROOT_CA}")),
            move |cm| to_namespace(cm.metadata.namespace),
        )
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(ns: Arc<Namespace>, error: &Error, _: Arc<Ctx>) -> Action {
    warn!(namespace = %ns.name_any(), error = %error, "publishing the default service account or root CA failed");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action> {
    let active = ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()).is_none_or(|p| p == "Active");
    if !active {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    ensure_service_account(&ctx, &name).await?;
    ensure_root_ca(&ctx, &name).await?;
    Ok(Action::await_change())
}

async fn ensure_service_account(ctx: &Ctx, ns: &str) -> Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    if accounts
        .get_metadata_opt(DEFAULT_SA)
        .await
        .map_err(api(format!("reading service account {ns}/{DEFAULT_SA}")))?
        .is_some()
    {
        return Ok(());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta { name: Some(DEFAULT_SA.into()), ..ObjectMeta::default() },
        ..ServiceAccount::default()
    };
    create_ignoring_races(accounts.create(&PostParams::default(), &sa).await.map(drop), ns, "service account")
}

async fn ensure_root_ca(ctx: &Ctx, ns: &str) -> Result<()> {
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let data = BTreeMap::from([(CA_KEY.to_string(), ctx.config.root_ca_pem.clone())]);
    let current = maps.get_opt(ROOT_CA).await.map_err(api(format!("reading configmap {ns}/{ROOT_CA}")))?;
    let Some(mut cm) = current else {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(ROOT_CA.into()),
                annotations: Some(BTreeMap::from([(DESCRIPTION.into(), DESCRIPTION_TEXT.into())])),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        };
        return create_ignoring_races(
            maps.create(&PostParams::default(), &cm).await.map(drop),
            ns,
            "root CA configmap",
        );
    };
    let described = cm.annotations().get(DESCRIPTION).is_some_and(|d| !d.is_empty());
    if cm.data.as_ref() == Some(&data) && cm.binary_data.is_none() && described {
        return Ok(());
    }
    debug!(namespace = %ns, "resetting the root CA configmap");
    cm.data = Some(data);
    cm.binary_data = None;
    cm.annotations_mut().insert(DESCRIPTION.into(), DESCRIPTION_TEXT.into());
    match maps.replace(ROOT_CA, &PostParams::default(), &cm).await {
        Ok(_) => Ok(()),
        // Changed or deleted meanwhile: the watch brings the namespace back.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(e) => Err(api(format!("resetting configmap {ns}/{ROOT_CA}"))(e)),
    }
}

/// A create that lost to a concurrent one (409) or to the namespace's deletion (403 while it
/// terminates, 404 once gone) is not a failure.
fn create_ignoring_races(outcome: kube::Result<()>, ns: &str, what: &str) -> Result<()> {
    match outcome {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("being terminated") => Ok(()),
        Err(e) => Err(api(format!("creating the {what} in {ns}"))(e)),
    }
}
