//! The steps of the Job controller at fixed times, without an API server.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::plan::{plan, Backoff};
use super::template::TRACKING_FINALIZER;
use super::ttl_left;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn job(spec: serde_json::Value, status: serde_json::Value) -> Job {
    let mut spec_v = json!({"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}});
    if let (Some(base), Some(extra)) = (spec_v.as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "metadata": {"name": "j", "namespace": "default", "uid": "job-uid"},
        "spec": spec_v,
        "status": status,
    }))
    .unwrap()
}

fn pod(name: &str, phase: &str, exit_code: Option<i32>, index: Option<i32>) -> Pod {
    let mut p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "finalizers": [TRACKING_FINALIZER],
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": true}]},
        "status": {"phase": phase}
    }))
    .unwrap();
    if let Some(code) = exit_code {
        p.status.as_mut().unwrap().container_statuses = Some(vec![serde_json::from_value(json!({
            "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code}}
        }))
        .unwrap()]);
    }
    if let Some(i) = index {
        p.metadata.annotations = Some([(super::template::INDEX_KEY.to_string(), i.to_string())].into());
    }
    p
}

fn condition<'a>(
    status: &'a k8s_openapi::api::batch::v1::JobStatus,
    type_: &str,
) -> Option<(&'a str, &'a str)> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_deref().unwrap_or("")))
}

const NOW: &str = "2026-03-01T12:00:00Z";

#[test]
fn a_new_job_starts_parallelism_pods_and_records_its_start() {
    let j = job(json!({"parallelism": 2, "completions": 5}), json!({}));
    let p = plan(&j, &[], t(NOW), Backoff::default());
    assert_eq!(p.create, vec![None, None]);
    assert_eq!(p.status.active, Some(2));
    assert_eq!(p.status.start_time.map(|s| s.0), Some(t(NOW)));
}

#[test]
fn succeeded_pods_are_counted_once_then_the_job_completes() {
    let j = job(json!({"parallelism": 1, "completions": 1}), json!({"startTime": NOW}));
    let done = pod("a", "Succeeded", Some(0), None);
    let p = plan(&j, std::slice::from_ref(&done), t(NOW), Backoff::default());
    assert_eq!(p.release, vec!["a".to_string()]);
    assert_eq!(p.uncounted.uncounted_terminated_pods.unwrap().succeeded, Some(vec!["uid-a".to_string()]));
    assert_eq!(p.status.succeeded, Some(1));
    assert_eq!(condition(&p.status, "SuccessCriteriaMet"), Some(("True", "CompletionsReached")));
    assert_eq!(condition(&p.status, "Complete"), Some(("True", "CompletionsReached")));
    assert!(p.status.completion_time.is_some());
    assert!(p.create.is_empty());
}

#[test]
fn failures_beyond_the_backoff_limit_fail_the_job() {
    let j = job(json!({"backoffLimit": 1, "completions": 1}), json!({"startTime": NOW, "failed": 1}));
    let p = plan(&j, &[pod("b", "Failed", Some(1), None)], t(NOW), Backoff::default());
    assert_eq!(p.status.failed, Some(2));
    assert_eq!(condition(&p.status, "FailureTarget"), Some(("True", "BackoffLimitExceeded")));
    assert_eq!(condition(&p.status, "Failed"), Some(("True", "BackoffLimitExceeded")));
    assert!(p.create.is_empty());
}

#[test]
fn replacements_of_failed_pods_wait_an_exponential_backoff() {
    let j = job(json!({"backoffLimit": 6, "completions": 1}), json!({"startTime": NOW, "failed": 1}));
    let now = t(NOW);
    let backoff = Backoff { failures: 2, last_failure: Some(now - SignedDuration::from_secs(5)) };
    let p = plan(&j, &[], now, backoff);
    assert!(p.create.is_empty(), "second failure waits 20 s, only 5 s passed");
    assert_eq!(p.requeue, Some(SignedDuration::from_secs(15)));
    let p = plan(&j, &[], now + SignedDuration::from_secs(15), backoff);
    assert_eq!(p.create, vec![None]);
    let long = Backoff { failures: 30, last_failure: Some(now) };
    assert_eq!(plan(&j, &[], now, long).requeue, Some(SignedDuration::from_secs(360)));
}

#[test]
fn a_fail_job_rule_fails_the_job_on_its_exit_code() {
    let j = job(
        json!({"backoffLimit": 6, "completions": 2, "parallelism": 2, "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}}]}}),
        json!({"startTime": NOW}),
    );
    let pods = [pod("a", "Failed", Some(3), None), pod("b", "Running", None, None)];
    let p = plan(&j, &pods, t(NOW), Backoff::default());
    assert_eq!(condition(&p.status, "FailureTarget"), Some(("True", "PodFailurePolicy")));
    assert_eq!(p.delete, vec!["b".to_string()], "the running pod is stopped");
    assert_eq!(condition(&p.status, "Failed"), None, "failed only once no pod runs");
}

#[test]
fn indexed_jobs_create_the_lowest_missing_indexes() {
    let j = job(
        json!({"completionMode": "Indexed", "completions": 4, "parallelism": 2}),
        json!({"startTime": NOW, "completedIndexes": "0", "succeeded": 1}),
    );
    let pods = [pod("j-2", "Running", None, Some(2))];
    let p = plan(&j, &pods, t(NOW), Backoff::default());
    assert_eq!(p.create, vec![Some(1)]);
    let done = [pod("j-1", "Succeeded", Some(0), Some(1)), pod("j-2", "Running", None, Some(2))];
    let p = plan(&j, &done, t(NOW), Backoff::default());
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0-1"));
    assert_eq!(p.create, vec![Some(3)]);
}

#[test]
fn a_suspended_job_stops_its_pods_and_says_so() {
    let j = job(json!({"suspend": true, "completions": 1}), json!({"startTime": NOW}));
    let p = plan(&j, &[pod("a", "Running", None, None)], t(NOW), Backoff::default());
    assert_eq!(p.delete, vec!["a".to_string()]);
    assert_eq!(condition(&p.status, "Suspended"), Some(("True", "JobSuspended")));
    assert_eq!(p.status.start_time, None);
}

#[test]
fn the_active_deadline_fails_a_running_job() {
    let j = job(json!({"activeDeadlineSeconds": 30, "completions": 1}), json!({"startTime": NOW}));
    let early = plan(
        &j,
        &[pod("a", "Running", None, None)],
        t(NOW) + SignedDuration::from_secs(10),
        Backoff::default(),
    );
    assert_eq!(early.requeue, Some(SignedDuration::from_secs(20)));
    let late = plan(&j, &[], t(NOW) + SignedDuration::from_secs(30), Backoff::default());
    assert_eq!(condition(&late.status, "Failed"), Some(("True", "DeadlineExceeded")));
}

#[test]
fn the_ttl_counts_from_the_finish() {
    let j = job(
        json!({"ttlSecondsAfterFinished": 60}),
        json!({"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": NOW}]}),
    );
    assert_eq!(ttl_left(&j, t(NOW) + SignedDuration::from_secs(45)), Some(SignedDuration::from_secs(15)));
    assert_eq!(ttl_left(&j, t(NOW) + SignedDuration::from_secs(90)), Some(SignedDuration::ZERO));
}

#[test]
fn with_a_backoff_limit_per_index_an_index_fails_alone() {
    let j = job(
        json!({"completionMode": "Indexed", "completions": 2, "parallelism": 2, "backoffLimitPerIndex": 1}),
        json!({"startTime": NOW}),
    );
    // Index 0 failed once: it is retried, its new pod knows of the failure.
    let first = [pod("j-0-a", "Failed", Some(1), Some(0)), pod("j-1", "Running", None, Some(1))];
    let p = plan(&j, &first, t(NOW), Backoff::default());
    assert_eq!(p.status.failed_indexes.as_deref(), Some(""));
    assert_eq!(condition(&p.status, "FailureTarget"), None);
    assert_eq!(p.requeue, Some(SignedDuration::from_secs(10)), "retried after the backoff");
    let j_after = job(
        json!({"completionMode": "Indexed", "completions": 2, "parallelism": 2, "backoffLimitPerIndex": 1}),
        json!({"startTime": NOW, "failed": 1, "failedIndexes": ""}),
    );
    let mut counted = first[0].clone();
    counted.metadata.finalizers = None;
    let later = [counted.clone(), first[1].clone()];
    let p = plan(&j_after, &later, t(NOW) + SignedDuration::from_secs(10), p.backoff);
    assert_eq!(p.create, vec![Some(0)]);
    assert_eq!(p.index_failures(Some(0)), Some(1));
    // Its second failure exceeds the limit: index 0 fails, index 1 goes on.
    let mut again = pod("j-0-b", "Failed", Some(1), Some(0));
    again
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(super::template::INDEX_FAILURES_KEY.into(), "1".into());
    let second = [counted, again, pod("j-1", "Running", None, Some(1))];
    let p = plan(&j_after, &second, t(NOW), Backoff::default());
    assert_eq!(p.status.failed_indexes.as_deref(), Some("0"));
    assert!(p.create.is_empty());
    assert_eq!(condition(&p.status, "FailureTarget"), None, "index 1 still runs");
    // Once index 1 succeeds, the Job fails for its failed index.
    let j = job(
        json!({"completionMode": "Indexed", "completions": 2, "parallelism": 2, "backoffLimitPerIndex": 1}),
        json!({"startTime": NOW, "failedIndexes": "0", "failed": 2}),
    );
    let p = plan(&j, &[pod("j-1", "Succeeded", Some(0), Some(1))], t(NOW), Backoff::default());
    assert_eq!(condition(&p.status, "Failed"), Some(("True", "FailedIndexes")));
}

#[test]
fn a_success_policy_completes_an_indexed_job_early() {
    let j = job(
        json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3,
            "successPolicy": {"rules": [{"succeededIndexes": "0"}]}}),
        json!({"startTime": NOW}),
    );
    let pods = [pod("j-0", "Succeeded", Some(0), Some(0)), pod("j-1", "Running", None, Some(1))];
    let p = plan(&j, &pods, t(NOW), Backoff::default());
    assert_eq!(condition(&p.status, "SuccessCriteriaMet"), Some(("True", "SuccessPolicy")));
    assert_eq!(p.delete, vec!["j-1".to_string()], "the other indexes are stopped");
    assert_eq!(condition(&p.status, "Complete"), None, "complete once they are gone");
}

#[test]
fn a_suspended_job_with_nothing_to_stop_writes_nothing_new() {
    let j = job(json!({"suspend": true, "completions": 1}), json!({}));
    let first = plan(&j, &[], t(NOW), Backoff::default());
    let again = job(json!({"suspend": true, "completions": 1}), serde_json::to_value(&first.status).unwrap());
    let second = plan(&again, &[], t(NOW) + SignedDuration::from_secs(30), Backoff::default());
    assert_eq!(second.status, first.status);
}

#[test]
fn a_running_job_that_changed_nothing_writes_nothing_new() {
    let j = job(json!({"completions": 4, "parallelism": 2}), json!({"startTime": NOW}));
    let pods = [pod("a", "Running", None, None), pod("b", "Running", None, None)];
    let first = plan(&j, &pods, t(NOW), Backoff::default());
    assert!(first.create.is_empty() && first.delete.is_empty());
    let again =
        job(json!({"completions": 4, "parallelism": 2}), serde_json::to_value(&first.status).unwrap());
    assert_eq!(
        plan(&again, &pods, t(NOW) + SignedDuration::from_secs(5), Backoff::default()).status,
        first.status
    );
}

#[test]
fn with_replacement_policy_failed_a_terminating_pod_is_not_replaced_yet() {
    let mut going = pod("a", "Running", None, None);
    going.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(NOW)));
    going.metadata.finalizers = None; // already counted as failed
    let pods = [going];
    let eager = job(json!({"completions": 1, "backoffLimit": 6}), json!({"startTime": NOW}));
    assert_eq!(plan(&eager, &pods, t(NOW), Backoff::default()).status.terminating, Some(1));
    let patient = job(
        json!({"completions": 1, "podReplacementPolicy": "Failed"}),
        json!({"startTime": NOW, "failed": 1}),
    );
    assert!(plan(&patient, &pods, t(NOW), Backoff::default()).create.is_empty());
    let eager = job(json!({"completions": 1}), json!({"startTime": NOW, "failed": 1}));
    assert_eq!(plan(&eager, &pods, t(NOW), Backoff::default()).create, vec![None]);
}
