//! One step of the Job controller as a pure function: from the Job, its pods and the time to the
//! writes that bring them forward ([`Plan`]). Finished pods are counted in two phases as
//! upstream does: their UIDs go to `status.uncountedTerminatedPods` first, then their tracking
//! finalizers are removed, then they move to the `succeeded` / `failed` counters, so no pod is
//! counted twice or lost when the controller stops half-way.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::policy::{self, Verdict};
use super::template::{index_failures_of, index_of, TRACKING_FINALIZER};
use super::{condition_true, indexes};

/// The first pause before a failed pod is replaced; it doubles with every further failure.
const BACKOFF_BASE: SignedDuration = SignedDuration::from_secs(10);
/// The longest pause before a failed pod is replaced.
const BACKOFF_MAX: SignedDuration = SignedDuration::from_secs(360);

/// The failures of a Job since its last success, kept in memory between steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub failures: u32,
    pub last_failure: Option<Timestamp>,
}

impl Backoff {
    /// When a new pod may be created again.
    fn ready_at(&self) -> Option<Timestamp> {
        let last = self.last_failure?;
        if self.failures == 0 {
            return None;
        }
        let factor = 2i32.saturating_pow(self.failures.saturating_sub(1).min(16));
        let delay = BACKOFF_BASE.checked_mul(factor).unwrap_or(BACKOFF_MAX).min(BACKOFF_MAX);
        last.checked_add(delay).ok()
    }
}

/// The writes of one step, applied in field order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// The status recording newly finished pods as uncounted, written before any finalizer
    /// is removed (when it differs from the stored status).
    pub uncounted: JobStatus,
    /// Pods whose tracking finalizer goes.
    pub release: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<String>,
    /// Pods to create: one entry each, the completion index for Indexed Jobs.
    pub create: Vec<Option<i32>>,
    /// The status after all of the above.
    pub status: JobStatus,
    /// The failure record after this step.
    pub backoff: Backoff,
    /// When to look again even if nothing changes (backoff, deadline).
    pub requeue: Option<SignedDuration>,
    /// With `backoffLimitPerIndex`: how often each index failed so far (`None` without it).
    pub failures_per_index: Option<BTreeMap<i32, i32>>,
}

impl Plan {
    /// The failure count to record on a new pod for `index`.
    pub(crate) fn index_failures(&self, index: Option<i32>) -> Option<i32> {
        let counts = self.failures_per_index.as_ref()?;
        Some(index.and_then(|i| counts.get(&i).copied()).unwrap_or(0))
    }
}

/// Sets condition `type_` in `conditions`: unchanged when it already says this, a new
/// transition time only when the status flips.
pub(crate) fn set_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" };
    let new = JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status && c.reason == new.reason && c.message == new.message => {}
        Some(c) if c.status == status => {
            c.reason = new.reason;
            c.message = new.message;
            c.last_probe_time = new.last_probe_time;
        }
        Some(c) => *c = new,
        None => conditions.push(new),
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// One step of `job` with its `pods` at `now`.
pub(crate) fn plan(job: &Job, pods: &[Pod], now: Timestamp, backoff: Backoff) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let suspended = spec.suspend == Some(true);
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let finishing =
        condition_true(&conditions, "FailureTarget") || condition_true(&conditions, "SuccessCriteriaMet");

    // Count the pods that finished since the last step.
    let uncounted = old.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut uncounted_succeeded: BTreeSet<String> =
        uncounted.succeeded.unwrap_or_default().into_iter().collect();
    let mut uncounted_failed: BTreeSet<String> = uncounted.failed.unwrap_or_default().into_iter().collect();
    let mut completed = indexes::parse(old.completed_indexes.as_deref(), completions.unwrap_or(0));
    let per_index_limit = spec.backoff_limit_per_index.filter(|_| indexed);
    let mut failed_indexes = indexes::parse(old.failed_indexes.as_deref(), completions.unwrap_or(0));
    // How often each index failed: the failed pods still present tell, each carrying the count
    // of the failures before it.
    let mut failures_per_index: BTreeMap<i32, i32> = BTreeMap::new();
    for pod in pods.iter().filter(|p| phase(p) == "Failed") {
        if let Some(i) = index_of(pod) {
            let n = index_failures_of(pod) + 1;
            let slot = failures_per_index.entry(i).or_insert(0);
            *slot = (*slot).max(n);
        }
    }
    let mut release = Vec::new();
    let mut failure_message = None;
    let mut backoff = backoff;
    for pod in pods {
        let uid = pod.uid().unwrap_or_default();
        if !pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER) {
            continue;
        }
        if uncounted_succeeded.contains(&uid) || uncounted_failed.contains(&uid) {
            release.push(pod.name_any());
            continue;
        }
        let deleting = pod.metadata.deletion_timestamp.is_some();
        match phase(pod) {
            "Succeeded" => {
                uncounted_succeeded.insert(uid);
                if let Some(i) = index_of(pod).filter(|_| indexed) {
                    if completions.is_some_and(|c| i < c) {
                        completed.insert(i);
                    }
                }
                backoff.failures = 0;
            }
            // Pods the Job itself stopped (suspended or finishing) fail without counting.
            "Failed" if deleting && (suspended || finishing) => {}
            "Failed" => match policy::judge(spec.pod_failure_policy.as_ref(), pod) {
                Verdict::Ignore => {}
                verdict => {
                    if let Verdict::FailJob(message) = &verdict {
                        failure_message.get_or_insert(message.clone());
                    }
                    if let (Some(limit), Some(i)) = (per_index_limit, index_of(pod)) {
                        let failures = failures_per_index.get(&i).copied().unwrap_or(1);
                        if verdict == Verdict::FailIndex || failures > limit {
                            failed_indexes.insert(i);
                        }
                    }
                    uncounted_failed.insert(uid);
                    backoff.failures += 1;
                    backoff.last_failure = Some(now);
                }
            },
            // A pod deleted before it finished counts as failed, unless the Job itself
            // removed it (suspended or finishing).
            _ if deleting && !suspended && !finishing => {
                uncounted_failed.insert(uid);
                backoff.failures += 1;
                backoff.last_failure = Some(now);
            }
            _ if deleting => {}
            _ => continue,
        }
        release.push(pod.name_any());
    }
    let mut first = old.clone();
    first.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(uncounted_succeeded.iter().cloned().collect()),
        failed: Some(uncounted_failed.iter().cloned().collect()),
    });
    if indexed {
        first.completed_indexes = indexes::format(&completed);
    }
    let succeeded = old.succeeded.unwrap_or(0) + uncounted_succeeded.len() as i32;
    let failed = old.failed.unwrap_or(0) + uncounted_failed.len() as i32;

    let mut active: Vec<&Pod> =
        pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && !is_terminal(p)).collect();
    let mut terminating =
        pods.iter().filter(|p| p.metadata.deletion_timestamp.is_some() && !is_terminal(p)).count() as i32;

    // Decide whether the Job is done.
    let start = old.start_time.as_ref().map(|t| t.0);
    let deadline = spec
        .active_deadline_seconds
        .zip(start)
        .and_then(|(secs, start)| start.checked_add(SignedDuration::from_secs(secs)).ok());
    if !condition_true(&conditions, "FailureTarget") && !condition_true(&conditions, "SuccessCriteriaMet") {
        let failure = if let Some(message) = failure_message {
            Some(("PodFailurePolicy", message))
        } else if per_index_limit.is_none() && failed > spec.backoff_limit.unwrap_or(6) {
            Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit".to_string()))
        } else if spec.max_failed_indexes.is_some_and(|max| failed_indexes.len() as i32 > max) {
            Some((
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes".to_string(),
            ))
        } else if per_index_limit.is_some()
            && !failed_indexes.is_empty()
            && completed.len() + failed_indexes.len() >= completions.unwrap_or(0) as usize
        {
            Some(("FailedIndexes", "Job has failed indexes".to_string()))
        } else if !suspended && deadline.is_some_and(|d| now >= d) {
            Some(("DeadlineExceeded", "Job was active longer than specified deadline".to_string()))
        } else {
            None
        };
        let success = if failure.is_some() {
            None
        } else if indexed {
            let c = completions.unwrap_or(0);
            match policy::success_rule(spec.success_policy.as_ref(), &completed, c) {
                Some(i) => Some(("SuccessPolicy", format!("Matched rules at index {i}"))),
                None => (completed.len() as i32 >= c)
                    .then(|| ("CompletionsReached", "Reached expected number of succeeded pods".to_string())),
            }
        } else {
            let done = match completions {
                Some(c) => succeeded >= c,
                None => succeeded >= 1 && active.is_empty(),
            };
            done.then(|| ("CompletionsReached", "Reached expected number of succeeded pods".to_string()))
        };
        if let Some((reason, message)) = &failure {
            set_condition(&mut conditions, "FailureTarget", true, reason, message, now);
        }
        if let Some((reason, message)) = &success {
            set_condition(&mut conditions, "SuccessCriteriaMet", true, reason, message, now);
        }
    }

    let mut plan = Plan { release, ..Plan::default() };
    let mut status = JobStatus {
        succeeded: Some(succeeded),
        failed: Some(failed),
        uncounted_terminated_pods: Some(UncountedTerminatedPods {
            succeeded: Some(vec![]),
            failed: Some(vec![]),
        }),
        completed_indexes: if indexed { indexes::format(&completed) } else { old.completed_indexes.clone() },
        start_time: old.start_time.clone(),
        completion_time: old.completion_time.clone(),
        failed_indexes: old.failed_indexes.clone(),
        ..JobStatus::default()
    };
    let target = ["FailureTarget", "SuccessCriteriaMet"]
        .into_iter()
        .find_map(|t| conditions.iter().find(|c| c.type_ == t && c.status == "True").cloned());
    if let Some(target) = target {
        // Stop what still runs; the terminal condition follows once no pod is left running.
        let quiet = active.is_empty() && terminating == 0;
        plan.delete.extend(active.iter().map(|p| p.name_any()));
        terminating += active.len() as i32;
        active.clear();
        if quiet {
            let reason = target.reason.clone().unwrap_or_default();
            let message = target.message.clone().unwrap_or_default();
            if target.type_ == "FailureTarget" {
                set_condition(&mut conditions, "Failed", true, &reason, &message, now);
            } else {
                set_condition(&mut conditions, "Complete", true, &reason, &message, now);
                status.completion_time = Some(Time(now));
            }
        }
    } else if suspended {
        plan.delete.extend(active.iter().map(|p| p.name_any()));
        terminating += active.len() as i32;
        active.clear();
        set_condition(&mut conditions, "Suspended", true, "JobSuspended", "Job suspended", now);
        status.start_time = None;
    } else {
        if condition_true(&conditions, "Suspended") {
            set_condition(&mut conditions, "Suspended", false, "JobResumed", "Job resumed", now);
        }
        status.start_time.get_or_insert(Time(now));
        if let Some(d) = spec
            .active_deadline_seconds
            .and_then(|secs| status.start_time.as_ref()?.0.checked_add(SignedDuration::from_secs(secs)).ok())
        {
            plan.requeue = Some(d.duration_since(now).max(SignedDuration::ZERO));
        }
        // `podReplacementPolicy: Failed`: a terminating pod still holds its place.
        let waiting: Vec<&Pod> = if spec.pod_replacement_policy.as_deref() == Some("Failed") {
            pods.iter().filter(|p| p.metadata.deletion_timestamp.is_some() && !is_terminal(p)).collect()
        } else {
            Vec::new()
        };
        let gated = backoff.ready_at().filter(|at| now < *at);
        if let Some(at) = gated {
            let wait = at.duration_since(now);
            plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
        }
        // Surplus first: the not-ready and the newest go first.
        active.sort_by_key(|p| {
            (is_ready(p), std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)))
        });
        if indexed {
            let c = completions.unwrap_or(0);
            let mut held = BTreeSet::new();
            let (keep, surplus): (Vec<&Pod>, Vec<&Pod>) = active.iter().copied().partition(|p| {
                index_of(p).is_some_and(|i| {
                    i < c && !completed.contains(&i) && !failed_indexes.contains(&i) && held.insert(i)
                })
            });
            plan.delete.extend(surplus.iter().map(|p| p.name_any()));
            let mut keep = keep;
            keep.sort_by_key(|p| std::cmp::Reverse(index_of(p)));
            let excess = keep.len().saturating_sub(parallelism as usize);
            plan.delete.extend(keep.iter().take(excess).map(|p| p.name_any()));
            held.extend(waiting.iter().filter_map(|p| index_of(p)));
            let room = (parallelism as usize).saturating_sub(keep.len() + waiting.len());
            if gated.is_none() {
                let pending = (0..c)
                    .filter(|i| !completed.contains(i) && !held.contains(i) && !failed_indexes.contains(i));
                plan.create.extend(pending.take(room).map(Some));
            }
        } else {
            let want = match completions {
                Some(c) => parallelism.min((c - succeeded).max(0)),
                None if succeeded > 0 => 0,
                None => parallelism,
            } as usize;
            if active.len() > want {
                plan.delete.extend(active.iter().take(active.len() - want).map(|p| p.name_any()));
            } else if gated.is_none() {
                let missing = want.saturating_sub(active.len() + waiting.len());
                plan.create.extend(std::iter::repeat_n(None, missing));
            }
        }
        terminating += plan.delete.len() as i32;
        active.retain(|p| !plan.delete.contains(&p.name_any()));
    }
    status.active = Some(active.len() as i32 + plan.create.len() as i32);
    status.ready = Some(active.iter().filter(|p| is_ready(p)).count() as i32);
    status.terminating = Some(terminating);
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    if per_index_limit.is_some() {
        status.failed_indexes = indexes::format(&failed_indexes).or(Some(String::new()));
        plan.failures_per_index = Some(failures_per_index);
    }
    plan.uncounted = first;
    plan.status = status;
    plan.backoff = backoff;
    plan
}
