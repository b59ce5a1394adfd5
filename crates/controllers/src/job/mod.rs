//! The job controller and the TTL-after-finished controller of kube-controller-manager: runs the
//! pods of each Job (NonIndexed or Indexed, `parallelism`, `completions`), counts them through
//! the `batch.kubernetes.io/job-tracking` finalizer, applies `backoffLimit` (with exponential
//! backoff of replacements), `activeDeadlineSeconds`, `podFailurePolicy`, `successPolicy` and
//! `suspend`, writes the status and conditions, and deletes finished Jobs after
//! `ttlSecondsAfterFinished`.

mod indexes;
mod plan;
mod policy;
mod template;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::core::Selector;
use kube::runtime::controller::{Action, Controller, Error as ControllerError};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tracing::{debug, warn};

use crate::error::api;
use crate::pods::emit;
use crate::{Ctx, Error, Result};

use plan::Backoff;
use template::{CONTROLLER_UID_LABEL, TRACKING_FINALIZER};

/// How long after a failure a Job is reconciled again.
const RETRY: Duration = Duration::from_secs(2);
/// The `spec.managedBy` of Jobs this controller runs (or none).
const MANAGED_BY: &str = "kubernetes.io/job-controller";

struct State {
    ctx: Ctx,
    recorder: Recorder,
    /// Failures since the last success, per Job UID.
    backoff: Mutex<HashMap<String, Backoff>>,
}

/// Whether `conditions` has `type_` with status `True`.
pub(crate) fn condition_true(conditions: &[JobCondition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

/// The time a Job finished (its `Complete` or `Failed` condition turned true).
fn finished_at(job: &Job) -> Option<Timestamp> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0))
}

/// How long until a finished Job's TTL runs out (zero: delete it now).
fn ttl_left(job: &Job, now: Timestamp) -> Option<SignedDuration> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let expires = finished_at(job)?.checked_add(SignedDuration::from_secs(i64::from(ttl))).ok()?;
    Some(expires.duration_since(now).max(SignedDuration::ZERO))
}

fn requeue(after: SignedDuration) -> Action {
    Action::requeue(Duration::try_from(after).unwrap_or_default().max(Duration::from_millis(100)))
}

pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
        // The main watch skips deletions: this one sees them, to release the pods of a Job.
        .watches(Api::<Job>::all(client), watcher::Config::default(), |job: Job| {
            Some(ObjectRef::from_obj(&job))
        })
        .reconcile_all_on(ctx.clock.ticks())
        .graceful_shutdown_on(ctx.shutdown.clone().cancelled_owned());
    let recorder =
        Recorder::new(ctx.client.clone(), Reporter { controller: "job-controller".into(), instance: None });
    let state = Arc::new(State { ctx, recorder, backoff: Mutex::new(HashMap::new()) });
    controller
        .run(reconcile, |_, _, _| Action::requeue(RETRY), state.clone())
        .for_each(|outcome| {
            let state = state.clone();
            async move {
                match outcome {
                    Ok(_) => {}
                    Err(ControllerError::ObjectNotFound(gone)) => {
                        if let Some(ns) = gone.namespace.as_deref() {
                            if let Err(e) = release_orphans(&state.ctx, ns, &gone.name).await {
                                warn!(error = %e, job = %gone.name, "releasing pods of a deleted job");
                            }
                        }
                    }
                    Err(ControllerError::ReconcilerFailed(e, obj)) => {
                        warn!(error = %e, job = %obj.name, "reconciling job")
                    }
                    Err(e) => debug!(error = %e, "job controller event"),
                }
            }
        })
        .await;
    Ok(())
}

/// The pods `job` controls.
async fn pods_of(ctx: &Ctx, job: &Job, namespace: &str) -> Result<Vec<Pod>> {
    let uid = job.uid().unwrap_or_default();
    let selector = job.spec.as_ref().and_then(|s| s.selector.clone());
    let params = match selector.map(Selector::try_from) {
        Some(Ok(selector)) => ListParams::default().labels_from(&selector),
        Some(Err(e)) => {
            return Err(Error::Invalid(format!("job {} has a bad selector: {e}", job.name_any())))
        }
        None => ListParams::default().labels(&format!("{CONTROLLER_UID_LABEL}={uid}")),
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let list = pods.list(&params).await.map_err(api(format!("listing pods of job {}", job.name_any())))?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid))
        .collect())
}

/// Removes the tracking finalizer from `pod`.
async fn release(ctx: &Ctx, pod: &Pod) -> Result<()> {
    let (Some(namespace), name) = (pod.namespace(), pod.name_any()) else { return Ok(()) };
    let finalizers: Vec<&String> = pod.finalizers().iter().filter(|f| *f != TRACKING_FINALIZER).collect();
    let patch = json!({"metadata": {"finalizers": finalizers}});
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    match pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(api(format!("removing the job-tracking finalizer of pod {name} in {namespace}"))(e)),
    }
}

/// Releases the pods of a Job that no longer exists, so they can be deleted.
async fn release_orphans(ctx: &Ctx, namespace: &str, job: &str) -> Result<()> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let live_uid = jobs.get_opt(job).await.map_err(api(format!("reading job {job}")))?.and_then(|j| j.uid());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .map_err(api(format!("listing pods of deleted job {job}")))?;
    for pod in &list.items {
        let orphan = pod.owner_references().iter().any(|o| {
            o.controller == Some(true)
                && o.kind == "Job"
                && o.name == job
                && Some(&o.uid) != live_uid.as_ref()
        });
        if orphan && pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER) {
            release(ctx, pod).await?;
        }
    }
    Ok(())
}

/// A merge patch turning status `old` into `new` (fields `new` lacks become null).
pub(crate) fn status_patch<T: serde::Serialize>(old: &T, new: &T) -> Result<Value> {
    let to_value =
        |s: &T| serde_json::to_value(s).map_err(|e| Error::Invalid(format!("encoding a status: {e}")));
    let (old, mut new) = (to_value(old)?, to_value(new)?);
    if let (Some(old), Some(new)) = (old.as_object(), new.as_object_mut()) {
        for key in old.keys() {
            new.entry(key.clone()).or_insert(Value::Null);
        }
    }
    Ok(json!({ "status": new }))
}

async fn write_status(ctx: &Ctx, job: &Job, old: &JobStatus, new: &JobStatus) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let (namespace, name) = (job.namespace().unwrap_or_default(), job.name_any());
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(status_patch(old, new)?))
        .await
        .map_err(api(format!("updating the status of job {name} in {namespace}")))?;
    Ok(())
}

/// Events for the conditions that turned true in this step.
async fn announce(recorder: &Recorder, job: &Job, old: &JobStatus, new: &JobStatus) {
    let was = old.conditions.clone().unwrap_or_default();
    for c in new.conditions.iter().flatten().filter(|c| c.status == "True") {
        if condition_true(&was, &c.type_) {
            continue;
        }
        let message = c.message.clone().unwrap_or_default();
        match c.type_.as_str() {
            "Complete" => emit(recorder, job, false, "Completed", "Job completed".into()).await,
            "Failed" => emit(recorder, job, true, c.reason.as_deref().unwrap_or("Failed"), message).await,
            "Suspended" => emit(recorder, job, false, "Suspended", "Job suspended".into()).await,
            _ => {}
        }
    }
    let resumed = |conditions: &[JobCondition]| {
        conditions.iter().any(|c| c.type_ == "Suspended" && c.status == "False")
    };
    if condition_true(&was, "Suspended") && resumed(new.conditions.as_deref().unwrap_or_default()) {
        emit(recorder, job, false, "Resumed", "Job resumed".into()).await;
    }
}

async fn reconcile(cached: Arc<Job>, state: Arc<State>) -> Result<Action> {
    let ctx = &state.ctx;
    let (Some(namespace), name) = (cached.namespace(), cached.name_any()) else {
        return Ok(Action::await_change());
    };
    // The cache may lag behind: work from the stored Job, and not at all for a deleted one.
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let job = match jobs.get_opt(&name).await.map_err(api(format!("reading job {name} in {namespace}")))? {
        Some(job) if job.uid() == cached.uid() => job,
        _ => {
            release_orphans(ctx, &namespace, &name).await?;
            return Ok(Action::await_change());
        }
    };
    let spec = job.spec.clone().unwrap_or_default();
    if spec.managed_by.as_deref().is_some_and(|m| m != MANAGED_BY) {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let pods = pods_of(ctx, &job, &namespace).await?;
    if job.metadata.deletion_timestamp.is_some() || finished_at(&job).is_some() {
        if let Some(uid) = job.uid() {
            state.backoff.lock().remove(&uid);
        }
        for pod in pods.iter().filter(|p| p.finalizers().iter().any(|f| f == TRACKING_FINALIZER)) {
            release(ctx, pod).await?;
        }
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        return match ttl_left(&job, now) {
            Some(left) if left.is_zero() => {
                let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Foreground),
                    ..DeleteParams::default()
                };
                match jobs.delete(&name, &params).await {
                    Ok(_) => {
                        debug!(job = %name, namespace = %namespace, "deleted finished job after its ttl")
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(api(format!("deleting finished job {name} in {namespace}"))(e)),
                }
                Ok(Action::await_change())
            }
            Some(left) => Ok(requeue(left)),
            None => Ok(Action::await_change()),
        };
    }

    let uid = job.uid().unwrap_or_default();
    let backoff = state.backoff.lock().get(&uid).copied().unwrap_or_default();
    let plan = plan::plan(&job, &pods, now, backoff);
    state.backoff.lock().insert(uid, plan.backoff);
    let old = job.status.clone().unwrap_or_default();
    let mut written = old.clone();
    if plan.uncounted.uncounted_terminated_pods != old.uncounted_terminated_pods && !plan.release.is_empty() {
        write_status(ctx, &job, &old, &plan.uncounted).await?;
        written = plan.uncounted.clone();
    }
    for pod in pods.iter().filter(|p| plan.release.contains(&p.name_any())) {
        release(ctx, pod).await?;
    }
    let api_pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    for pod in &plan.delete {
        match api_pods.delete(pod, &DeleteParams::background()).await {
            Ok(_) => {
                emit(&state.recorder, &job, false, "SuccessfulDelete", format!("Deleted pod: {pod}")).await
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api(format!("deleting pod {pod} of job {name} in {namespace}"))(e)),
        }
    }
    for index in &plan.create {
        let pod = api_pods
            .create(&PostParams::default(), &template::pod_for(&job, *index, plan.index_failures(*index)))
            .await
            .map_err(api(format!("creating a pod of job {name} in {namespace}")))?;
        emit(&state.recorder, &job, false, "SuccessfulCreate", format!("Created pod: {}", pod.name_any()))
            .await;
    }
    write_status(ctx, &job, &written, &plan.status).await?;
    announce(&state.recorder, &job, &old, &plan.status).await;
    Ok(plan.requeue.map_or(Action::await_change(), requeue))
}

#[cfg(test)]
mod tests;
