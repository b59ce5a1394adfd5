//! The Deployment controller: rolls a deployment's pod template out through ReplicaSets named
//! `<deployment>-<pod-template-hash>`, with the RollingUpdate (maxSurge/maxUnavailable) and
//! Recreate strategies, proportional scaling, pausing, revision history and the Progressing and
//! Available conditions, writing exactly what upstream writes so `kubectl rollout` works.

mod rollout;
pub(crate) mod util;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, ResourceExt};

use crate::pods::{self, controller_of};
use crate::{Ctx, Result};

/// How soon a failed sync is retried.
const RETRY: Duration = Duration::from_secs(2);

/// Runs the deployment controller until shutdown.
pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    let controller = Controller::new(Api::<Deployment>::all(ctx.client.clone()), watcher::Config::default());
    let deployments = controller.store();
    let controller = controller.watches(
        Api::<ReplicaSet>::all(ctx.client.clone()),
        watcher::Config::default(),
        move |rs: ReplicaSet| owners_of(&deployments, &rs),
    );
    let reporter = Reporter { controller: "deployment-controller".into(), instance: None };
    let recorder = Recorder::new(ctx.client.clone(), reporter);
    let shutdown = ctx.shutdown.clone();
    pods::drive(
        controller,
        reconcile,
        Arc::new(State { client: ctx.client.clone(), recorder }),
        RETRY,
        shutdown,
        "deployment",
    )
    .await;
    Ok(())
}

/// The deployments to wake for a ReplicaSet event: its controller, or for an orphan every
/// deployment in its namespace that selects it.
fn owners_of(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace();
    if let Some(owner) = controller_of(&rs.metadata) {
        if owner.kind != "Deployment" || owner.api_version != "apps/v1" {
            return Vec::new();
        }
        let mut r = ObjectRef::new(&owner.name);
        r.namespace = ns;
        return vec![r];
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace() == ns)
        .filter(|d| {
            let sel = pods::selector(d.spec.as_ref().map(|s| &s.selector));
            sel.is_some_and(|s| pods::selects(&s, rs.labels()))
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

struct State {
    client: Client,
    recorder: Recorder,
}

async fn reconcile(obj: Arc<Deployment>, state: Arc<State>) -> Result<Action> {
    let ns = obj.namespace().unwrap_or_default();
    rollout::sync(state.client.clone(), state.recorder.clone(), &ns, &obj.name_any()).await
}
