//! One step of the CronJob controller as a pure function of the CronJob, its Jobs and the time.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::schedule::{Schedule, MAX_MISSED};

/// What one step does.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Step {
    /// The status before any Job is created (active Jobs, last success).
    pub status: CronJobStatus,
    /// Start a Job for this scheduled time.
    pub create: Option<Timestamp>,
    /// Jobs to delete: replaced ones and those beyond the history limits.
    pub delete: Vec<String>,
    /// When the next start time comes.
    pub requeue: Option<SignedDuration>,
    /// Something the CronJob's owner should know (bad schedule, missed starts).
    pub warning: Option<String>,
}

/// How a Job ended, if it has.
pub(crate) fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().filter(|c| c.status == "True").find_map(|c| match c.type_.as_str() {
        "Complete" => Some("Complete"),
        "Failed" => Some("Failed"),
        _ => None,
    })
}

/// The reference to `job` kept in `status.active`.
pub(crate) fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// The name of the Job for start time `t`: `<cronjob>-<minutes since the epoch>`.
pub(crate) fn job_name(cronjob: &str, t: Timestamp) -> String {
    format!("{cronjob}-{}", t.as_second().div_euclid(60))
}

fn started(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

/// The finished Jobs beyond the history limits, oldest first.
fn beyond_history(cj: &CronJob, jobs: &[Job]) -> Vec<String> {
    let spec = cj.spec.as_ref();
    let mut out = Vec::new();
    for (kind, limit) in [
        ("Complete", spec.and_then(|s| s.successful_jobs_history_limit).unwrap_or(3)),
        ("Failed", spec.and_then(|s| s.failed_jobs_history_limit).unwrap_or(1)),
    ] {
        let mut done: Vec<&Job> = jobs.iter().filter(|j| finished(j) == Some(kind)).collect();
        done.sort_by_key(|j| (started(j), j.name_any()));
        let surplus = done.len().saturating_sub(limit.max(0) as usize);
        out.extend(done.iter().take(surplus).map(|j| j.name_any()));
    }
    out
}

/// One step of `cj`, whose Jobs are `jobs`, at `now`.
pub(crate) fn step(cj: &CronJob, jobs: &[Job], now: Timestamp) -> Step {
    let spec = cj.spec.clone().unwrap_or_default();
    let mut status = cj.status.clone().unwrap_or_default();
    let name = cj.name_any();

    // Active: the Jobs still running; finished ones leave, recording the last success.
    let mut active: Vec<ObjectReference> = Vec::new();
    for job in jobs {
        match finished(job) {
            None if job.metadata.deletion_timestamp.is_none() => {
                // Keep the reference as first written: the Job's later versions change nothing.
                let known = status.active.iter().flatten().find(|r| r.uid == job.metadata.uid);
                active.push(known.cloned().unwrap_or_else(|| job_ref(job)));
            }
            Some("Complete") => {
                let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
                if done.as_ref().map(|t| t.0) > status.last_successful_time.as_ref().map(|t| t.0) {
                    status.last_successful_time = done;
                }
            }
            _ => {}
        }
    }
    active.sort_by(|a, b| a.name.cmp(&b.name));
    let mut step = Step { delete: beyond_history(cj, jobs), ..Step::default() };
    if cj.metadata.deletion_timestamp.is_some() {
        status.active = (!active.is_empty()).then_some(active);
        step.status = status;
        return step;
    }
    let schedule = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            status.active = (!active.is_empty()).then_some(active);
            step.status = status;
            step.warning = Some(e);
            return step;
        }
    };
    if spec.suspend != Some(true) {
        if let Some(next) = schedule.next_after(now) {
            step.requeue = Some(next.duration_since(now));
        }
        let mut earliest = status
            .last_schedule_time
            .as_ref()
            .or(cj.metadata.creation_timestamp.as_ref())
            .map_or(now, |t| t.0);
        let deadline = spec.starting_deadline_seconds.map(SignedDuration::from_secs);
        if let Some(window) = deadline {
            earliest = earliest.max(now.checked_sub(window).unwrap_or(earliest));
        }
        let due = schedule.due(earliest, now);
        if due.count > MAX_MISSED {
            step.warning = Some(format!(
                "too many missed start times: {}. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                due.count
            ));
        }
        let late = |t: Timestamp| deadline.is_some_and(|d| t.checked_add(d).is_ok_and(|end| end < now));
        let seen = |t: Timestamp| {
            status.last_schedule_time.as_ref().map(|l| l.0) == Some(t)
                || jobs.iter().any(|j| j.name_any() == job_name(&name, t))
        };
        if let Some(t) = due.latest.filter(|t| !late(*t) && !seen(*t)) {
            match spec.concurrency_policy.as_deref() {
                Some("Forbid") if !active.is_empty() => {}
                Some("Replace") => {
                    step.delete.extend(active.drain(..).filter_map(|r| r.name));
                    step.create = Some(t);
                }
                _ => step.create = Some(t),
            }
        }
    }
    status.active = (!active.is_empty()).then_some(active);
    step.status = status;
    step
}

/// `status` after the Job for start time `scheduled` was created.
pub(crate) fn with_created(mut status: CronJobStatus, job: &Job, scheduled: Timestamp) -> CronJobStatus {
    let mut active = status.active.take().unwrap_or_default();
    if !active.iter().any(|r| r.uid == job.metadata.uid) {
        active.push(job_ref(job));
    }
    status.active = Some(active);
    status.last_schedule_time = Some(Time(scheduled));
    status
}
