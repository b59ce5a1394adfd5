//! The cronjob controller of kube-controller-manager: starts a Job named
//! `<cronjob>-<minutes since the epoch>` at each start time of `spec.schedule` (in
//! `spec.timeZone`), honouring `concurrencyPolicy`, `startingDeadlineSeconds` and `suspend`,
//! keeps `status.active`, `lastScheduleTime` and `lastSuccessfulTime`, and deletes finished Jobs
//! beyond the history limits. Time comes from the [`Clock`](crate::Clock), so tests move it.

mod plan;
mod schedule;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller, Error as ControllerError};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::ResourceExt;
use tracing::{debug, warn};

use crate::error::api;
use crate::pods::emit;
use crate::{Ctx, Result};

/// The annotation on a Job with the start time it was created for (RFC 3339, in the zone).
const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// How long after a failure a CronJob is reconciled again.
const RETRY: Duration = Duration::from_secs(2);

pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<CronJob>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Job>::all(client), watcher::Config::default())
        .reconcile_all_on(ctx.clock.ticks())
        .graceful_shutdown_on(ctx.shutdown.clone().cancelled_owned());
    let recorder = Recorder::new(
        ctx.client.clone(),
        Reporter { controller: "cronjob-controller".into(), instance: None },
    );
    controller
        .run(reconcile, |_, _, _| Action::requeue(RETRY), Arc::new(State { ctx, recorder }))
        .for_each(|outcome| async move {
            match outcome {
                Ok(_) | Err(ControllerError::ObjectNotFound(_)) => {}
                Err(ControllerError::ReconcilerFailed(e, obj)) => {
                    warn!(error = %e, cronjob = %obj.name, "reconciling cronjob")
                }
                Err(e) => debug!(error = %e, "cronjob controller event"),
            }
        })
        .await;
    Ok(())
}

/// The Job `cj` starts for start time `scheduled`.
fn job_for(cj: &CronJob, scheduled: Timestamp, formatted: String) -> Job {
    let spec = cj.spec.clone().unwrap_or_default();
    let meta = spec.job_template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_ANNOTATION.into(), formatted);
    Job {
        metadata: ObjectMeta {
            name: Some(plan::job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj.name_any(),
                uid: cj.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: spec.job_template.spec,
        status: None,
    }
}

fn requeue(after: SignedDuration) -> Action {
    // A little past the start time, so the step that wakes sees it due.
    let after = Duration::try_from(after).unwrap_or_default() + Duration::from_millis(200);
    Action::requeue(after)
}

struct State {
    ctx: Ctx,
    recorder: Recorder,
}

async fn reconcile(cj: Arc<CronJob>, state: Arc<State>) -> Result<Action> {
    let (ctx, recorder) = (&state.ctx, &state.recorder);
    let (Some(namespace), name) = (cj.namespace(), cj.name_any()) else { return Ok(Action::await_change()) };
    let uid = cj.uid().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await
        .map_err(api(format!("listing jobs of cronjob {name} in {namespace}")))?
        .items
        .into_iter()
        .filter(|j| j.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid))
        .collect();
    let now = ctx.clock.now();
    let step = plan::step(&cj, &jobs, now);
    if let Some(warning) = &step.warning {
        warn!(cronjob = %name, namespace = %namespace, warning = %warning, "cronjob schedule");
        let reason = if warning.starts_with("too many") { "TooManyMissedTimes" } else { "InvalidSchedule" };
        emit(recorder, cj.as_ref(), true, reason, warning.clone()).await;
    }
    for job in &step.delete {
        match jobs_api.delete(job, &DeleteParams::background()).await {
            Ok(_) => {
                emit(recorder, cj.as_ref(), false, "SuccessfulDelete", format!("Deleted job {job}")).await
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api(format!("deleting job {job} of cronjob {name} in {namespace}"))(e)),
        }
    }
    let mut status = step.status.clone();
    if let Some(scheduled) = step.create {
        let formatted = match schedule::Schedule::parse(
            &cj.spec.as_ref().map(|s| s.schedule.clone()).unwrap_or_default(),
            cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()),
        ) {
            Ok(s) => s.format(scheduled),
            Err(_) => scheduled.to_string(),
        };
        let job = job_for(&cj, scheduled, formatted);
        let created = match jobs_api.create(&PostParams::default(), &job).await {
            Ok(created) => created,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let job_name = job.name_any();
                jobs_api
                    .get(&job_name)
                    .await
                    .map_err(api(format!("reading job {job_name} in {namespace}")))?
            }
            Err(e) => return Err(api(format!("creating a job of cronjob {name} in {namespace}"))(e)),
        };
        debug!(cronjob = %name, job = %created.name_any(), %scheduled, "started job");
        emit(recorder, cj.as_ref(), false, "SuccessfulCreate", format!("Created job {}", created.name_any()))
            .await;
        status = plan::with_created(status, &created, scheduled);
    }
    let old = cj.status.clone().unwrap_or_default();
    if status != old {
        let patch = crate::job::status_patch(&old, &status)?;
        Api::<CronJob>::namespaced(ctx.client.clone(), &namespace)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api(format!("updating the status of cronjob {name} in {namespace}")))?;
    }
    Ok(step.requeue.map_or(Action::await_change(), requeue))
}

#[cfg(test)]
mod tests;
