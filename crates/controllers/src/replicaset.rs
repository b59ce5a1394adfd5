//! The ReplicaSet and ReplicationController controllers (one logic for both, like upstream):
//! keep `replicas` active pods matching the selector, adopting orphans and releasing pods that
//! stop matching, and report replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
//! observedGeneration and the ReplicaFailure condition in the status.
//!
//! One watch of pods feeds both the pod cache and the triggers, and [`Expectations`] keep a slow
//! cache from causing double creates or deletes.

mod expectations;

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::future;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tracing::debug;

use self::expectations::Expectations;
use crate::error::api;
use crate::pods::{self, controller_of, controller_ref, pod_from_template};
use crate::{Ctx, Error, Result};

/// The most pods created or deleted in one sync (upstream `BurstReplicas`).
const BURST: usize = 500;
/// How soon a failed sync is retried.
const RETRY: Duration = Duration::from_secs(2);

/// What the controller needs to know about a ReplicaSet or a ReplicationController.
#[derive(Debug)]
struct View {
    selector: Option<Selector>,
    replicas: i32,
    min_ready_seconds: i32,
    template: Option<PodTemplateSpec>,
}

/// The counts and conditions of a replica status (the same fields for both kinds).
#[derive(Debug, Default, PartialEq)]
struct Status {
    replicas: i32,
    fully_labeled: i32,
    ready: i32,
    available: i32,
    observed_generation: i64,
    conditions: Vec<ReplicaSetCondition>,
}

/// A kind this controller manages: ReplicaSet or ReplicationController.
trait Replicated:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The reporting component of the events, as upstream names it.
    const CONTROLLER: &'static str;
    fn view(&self) -> View;
    fn status(&self) -> Status;
}

impl Replicated for ReplicaSet {
    const CONTROLLER: &'static str = "replicaset-controller";

    fn view(&self) -> View {
        let spec = self.spec.as_ref();
        View {
            selector: pods::selector(spec.map(|s| &s.selector)),
            replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
            min_ready_seconds: spec.and_then(|s| s.min_ready_seconds).unwrap_or(0),
            template: spec.and_then(|s| s.template.clone()),
        }
    }

    fn status(&self) -> Status {
        let Some(s) = &self.status else { return Status::default() };
        Status {
            replicas: s.replicas,
            fully_labeled: s.fully_labeled_replicas.unwrap_or(0),
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions: s.conditions.clone().unwrap_or_default(),
        }
    }
}

impl Replicated for ReplicationController {
    const CONTROLLER: &'static str = "replication-controller";

    fn view(&self) -> View {
        let spec = self.spec.as_ref();
        let template = spec.and_then(|s| s.template.clone());
        // An RC without a selector selects the labels of its template (upstream defaulting).
        let labels = spec
            .and_then(|s| s.selector.clone())
            .filter(|s| !s.is_empty())
            .or_else(|| template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()));
        View {
            selector: labels.filter(|l| !l.is_empty()).map(Selector::from_iter),
            replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
            min_ready_seconds: spec.and_then(|s| s.min_ready_seconds).unwrap_or(0),
            template,
        }
    }

    fn status(&self) -> Status {
        let Some(s) = &self.status else { return Status::default() };
        let conditions = s.conditions.iter().flatten().map(|c| ReplicaSetCondition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: c.last_transition_time.clone(),
        });
        Status {
            replicas: s.replicas,
            fully_labeled: s.fully_labeled_replicas.unwrap_or(0),
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions: conditions.collect(),
        }
    }
}

/// Runs the ReplicaSet controller until shutdown.
pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    run_kind::<ReplicaSet>(ctx).await
}

/// Runs the ReplicationController controller until shutdown.
pub(crate) async fn run_replication_controllers(ctx: Ctx) -> Result<()> {
    run_kind::<ReplicationController>(ctx).await
}

struct State {
    client: Client,
    recorder: Recorder,
    pods: Store<Pod>,
    expectations: Arc<Expectations>,
}

async fn run_kind<K: Replicated>(ctx: Ctx) -> Result<()> {
    let (pod_store, writer) = reflector::store();
    let pod_events = reflector::reflector(
        writer,
        watcher(Api::<Pod>::all(ctx.client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    let expectations = Arc::new(Expectations::default());
    let controller = Controller::new(Api::<K>::all(ctx.client.clone()), watcher::Config::default());
    let owners = controller.store();
    let seen = expectations.clone();
    let controller = controller.watches_stream(pod_events, move |pod: Pod| {
        seen.observe(&pod);
        owners_of::<K>(&owners, &pod)
    });
    let reporter = Reporter { controller: K::CONTROLLER.into(), instance: None };
    let recorder = Recorder::new(ctx.client.clone(), reporter);
    let state = Arc::new(State { client: ctx.client.clone(), recorder, pods: pod_store, expectations });
    let shutdown = ctx.shutdown.clone();
    pods::drive(controller, reconcile::<K>, state, RETRY, shutdown, K::CONTROLLER).await;
    Ok(())
}

/// The controllers to wake for a pod event: its controller if it is of kind `K`, else (an orphan)
/// every `K` in its namespace whose selector selects it.
fn owners_of<K: Replicated>(owners: &Store<K>, pod: &Pod) -> Vec<ObjectRef<K>> {
    let ns = pod.namespace();
    if let Some(owner) = controller_of(&pod.metadata) {
        if owner.kind != K::kind(&()) || owner.api_version != K::api_version(&()) {
            return Vec::new();
        }
        let mut r = ObjectRef::new(&owner.name);
        r.namespace = ns;
        return vec![r];
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    owners
        .state()
        .iter()
        .filter(|o| o.namespace() == ns)
        .filter(|o| o.view().selector.is_some_and(|s| pods::selects(&s, pod.labels())))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

async fn reconcile<K: Replicated>(obj: Arc<K>, state: Arc<State>) -> Result<Action> {
    if state.pods.wait_until_ready().await.is_err() {
        return Err(Error::Invalid("the pod cache was dropped".into()));
    }
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let uid = obj.uid().unwrap_or_default();
    let view = obj.view();
    let deleting = obj.meta().deletion_timestamp.is_some();
    let pods_api = Api::<Pod>::namespaced(state.client.clone(), &ns);

    let mut owned = Vec::new();
    let active = state.pods.state().into_iter().filter(|p| p.namespace().as_deref() == Some(ns.as_str()));
    for pod in active.filter(|p| pods::is_active(p)) {
        let matches = view.selector.as_ref().is_some_and(|s| pods::selects(s, pod.labels()));
        let controller = controller_of(&pod.metadata).map(|r| r.uid.as_str());
        if controller == Some(uid.as_str()) {
            if matches {
                owned.push(pod);
            } else if !deleting {
                pods::release(&pods_api, &pod.metadata, &uid).await?;
            }
        } else if controller.is_none()
            && matches
            && !deleting
            && pods::adopt(&pods_api, &pod.metadata, controller_ref(obj.as_ref())).await?.is_some()
        {
            owned.push(pod);
        }
    }

    let alive: HashSet<&str> = owned.iter().filter_map(|p| p.metadata.uid.as_deref()).collect();
    let names = owned.iter().filter_map(|p| p.metadata.name.as_deref());
    let satisfied = state.expectations.satisfied(&uid, names, &alive);
    let mut failure = None;
    if satisfied && !deleting {
        failure = manage(&state, obj.as_ref(), &view, &owned).await.err();
    }

    let now = Timestamp::now();
    let template_labels =
        view.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone());
    let fully_labeled = |p: &Pod| template_labels.iter().flatten().all(|(k, v)| p.labels().get(k) == Some(v));
    let old = obj.status();
    let mut status = Status {
        replicas: count(&owned, |_| true),
        fully_labeled: count(&owned, fully_labeled),
        ready: count(&owned, pods::is_ready),
        available: count(&owned, |p| pods::is_available(p, view.min_ready_seconds, now)),
        observed_generation: obj.meta().generation.unwrap_or(0),
        conditions: old.conditions.clone(),
    };
    let failed_before = status.conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match &failure {
        Some((reason, e)) if !failed_before => status.conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some((*reason).into()),
            message: Some(failure_message(e)),
            last_transition_time: Some(Time(now)),
        }),
        None if failed_before => status.conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    if status != old {
        let owners = Api::<K>::namespaced(state.client.clone(), &ns);
        owners
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(status_patch(&status)))
            .await
            .map_err(api(format!("updating the status of {} {ns}/{name}", K::kind(&()))))?;
    }
    if let Some((_, e)) = failure {
        return Err(e);
    }
    if !satisfied {
        return Ok(Action::requeue(expectations::TIMEOUT));
    }
    // Come back when the next ready pod becomes available.
    let next = owned.iter().filter_map(|p| pods::until_available(p, view.min_ready_seconds, now)).min();
    Ok(match next {
        Some(d) => Action::requeue(d.unsigned_abs() + Duration::from_millis(100)),
        None => Action::await_change(),
    })
}

fn count(pods: &[Arc<Pod>], f: impl Fn(&Pod) -> bool) -> i32 {
    i32::try_from(pods.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
}

/// The message of a ReplicaFailure condition: what the API server said.
fn failure_message(e: &Error) -> String {
    match e {
        Error::Api { source: kube::Error::Api(status), .. } => status.message.clone(),
        other => other.to_string(),
    }
}

/// A merge patch that sets the whole status (zero counts are omitted, like upstream).
fn status_patch(s: &Status) -> Value {
    let nz = |n: i32| if n == 0 { Value::Null } else { json!(n) };
    json!({"status": {
        "replicas": s.replicas,
        "fullyLabeledReplicas": nz(s.fully_labeled),
        "readyReplicas": nz(s.ready),
        "availableReplicas": nz(s.available),
        "observedGeneration": if s.observed_generation == 0 { Value::Null } else { json!(s.observed_generation) },
        "conditions": if s.conditions.is_empty() { Value::Null } else { json!(s.conditions) },
    }})
}

/// Creates or deletes pods so that `owned` (the active pods) comes to `replicas`; on failure,
/// the reason of the ReplicaFailure condition and the error.
async fn manage<K: Replicated>(
    state: &State,
    obj: &K,
    view: &View,
    owned: &[Arc<Pod>],
) -> Result<(), (&'static str, Error)> {
    let ns = obj.namespace().unwrap_or_default();
    let uid = obj.uid().unwrap_or_default();
    let pods_api = Api::<Pod>::namespaced(state.client.clone(), &ns);
    let want = usize::try_from(view.replicas).unwrap_or(0);
    if owned.len() < want {
        let Some(template) = &view.template else {
            return Err((
                "FailedCreate",
                Error::Invalid(format!("{ns}/{} has no pod template", obj.name_any())),
            ));
        };
        let pod = pod_from_template(template, &obj.name_any(), controller_ref(obj));
        if let Err(e) = create_pods(state, &pods_api, obj, &pod, (want - owned.len()).min(BURST)).await {
            let note = format!("Error creating: {}", failure_message(&e));
            pods::emit(&state.recorder, obj, true, "FailedCreate", note).await;
            return Err(("FailedCreate", e));
        }
    } else if owned.len() > want {
        let mut victims: Vec<&Pod> = owned.iter().map(AsRef::as_ref).collect();
        pods::sort_for_deletion(&mut victims);
        victims.truncate((owned.len() - want).min(BURST));
        let uids: Vec<String> = victims.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        state.expectations.expect_deletions(&uid, uids);
        let deletes = victims.iter().map(|p| delete_pod(&pods_api, p));
        let results = future::join_all(deletes).await;
        let mut failed = None;
        for (pod, r) in victims.iter().zip(results) {
            match r {
                Ok(()) => {
                    let note = format!("Deleted pod: {}", pod.name_any());
                    pods::emit(&state.recorder, obj, false, "SuccessfulDelete", note).await;
                }
                Err(e) => {
                    let note = format!("Error deleting: {}", failure_message(&e));
                    pods::emit(&state.recorder, obj, true, "FailedDelete", note).await;
                    failed = Some(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(("FailedDelete", e));
        }
    }
    Ok(())
}

/// Creates `n` copies of `pod` in batches of 1, 2, 4, ... (upstream slow start), stopping at the
/// first batch with a failure so a quota error does not become hundreds of requests.
async fn create_pods<K: Replicated>(
    state: &State,
    pods_api: &Api<Pod>,
    obj: &K,
    pod: &Pod,
    n: usize,
) -> Result<()> {
    let uid = obj.uid().unwrap_or_default();
    let owner = uid.as_str();
    let mut done = 0;
    let mut batch = 1;
    while done < n {
        let size = batch.min(n - done);
        let params = PostParams::default();
        let creates = (0..size).map(|_| pods_api.create(&params, pod));
        let results = future::join_all(creates).await;
        let mut failed = None;
        let mut names = Vec::new();
        for r in results {
            match r {
                Ok(created) => names.push(created.name_any()),
                Err(e) => failed = Some(e),
            }
        }
        debug!(owner, created = names.len(), "created pods");
        for name in &names {
            pods::emit(&state.recorder, obj, false, "SuccessfulCreate", format!("Created pod: {name}")).await;
        }
        state.expectations.expect_creations(owner, names);
        if let Some(e) = failed {
            let prefix = pod.metadata.generate_name.clone().unwrap_or_default();
            return Err(api(format!("creating pod {prefix}* for {}", obj.name_any()))(e));
        }
        done += size;
        batch *= 2;
    }
    Ok(())
}

async fn delete_pod(pods_api: &Api<Pod>, pod: &Pod) -> Result<()> {
    let name = pod.name_any();
    match pods_api.delete(&name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(api(format!("deleting pod {name}"))(e)),
    }
}
