//! The steps of the CronJob controller at fixed times, without an API server.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use serde_json::json;

use super::plan::{job_name, step};

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const CREATED: &str = "2026-03-01T12:00:30Z";

fn cronjob(spec: serde_json::Value, status: serde_json::Value) -> CronJob {
    let mut base = json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}}}});
    if let (Some(b), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
        b.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "metadata": {"name": "cj", "namespace": "default", "uid": "cj-uid", "creationTimestamp": CREATED},
        "spec": base,
        "status": status,
    }))
    .unwrap()
}

fn job(name: &str, outcome: Option<&str>, started: &str) -> Job {
    let conditions = match outcome {
        Some(kind) => json!([{"type": kind, "status": "True"}]),
        None => json!([]),
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "creationTimestamp": started},
        "status": {"conditions": conditions, "startTime": started, "completionTime": if outcome == Some("Complete") { json!(started) } else { json!(null) }},
    }))
    .unwrap()
}

#[test]
fn nothing_starts_before_the_first_start_time() {
    let s = step(&cronjob(json!({}), json!({})), &[], t("2026-03-01T12:04:00Z"));
    assert_eq!(s.create, None);
    assert_eq!(s.requeue, Some(SignedDuration::from_secs(60)));
}

#[test]
fn a_due_start_time_creates_its_job_once() {
    let cj = cronjob(json!({}), json!({}));
    let s = step(&cj, &[], t("2026-03-01T12:05:10Z"));
    assert_eq!(s.create, Some(t("2026-03-01T12:05:00Z")));
    assert_eq!(
        job_name("cj", t("2026-03-01T12:05:00Z")),
        format!("cj-{}", t("2026-03-01T12:05:00Z").as_second() / 60)
    );
    let done = cronjob(json!({}), json!({"lastScheduleTime": "2026-03-01T12:05:00Z"}));
    assert_eq!(step(&done, &[], t("2026-03-01T12:06:00Z")).create, None);
}

#[test]
fn forbid_skips_while_a_job_runs_and_replace_deletes_it() {
    let status = json!({"lastScheduleTime": "2026-03-01T12:05:00Z"});
    let running = [job("cj-old", None, "2026-03-01T12:05:00Z")];
    let now = t("2026-03-01T12:10:05Z");
    let forbid = step(&cronjob(json!({"concurrencyPolicy": "Forbid"}), status.clone()), &running, now);
    assert_eq!((forbid.create, forbid.delete.clone()), (None, vec![]));
    let replace = step(&cronjob(json!({"concurrencyPolicy": "Replace"}), status.clone()), &running, now);
    assert_eq!(
        (replace.create, replace.delete),
        (Some(t("2026-03-01T12:10:00Z")), vec!["cj-old".to_string()])
    );
    let allow = step(&cronjob(json!({"concurrencyPolicy": "Allow"}), status), &running, now);
    assert_eq!(allow.create, Some(t("2026-03-01T12:10:00Z")));
    assert_eq!(allow.status.active.map(|a| a.len()), Some(1));
}

#[test]
fn a_start_time_older_than_the_starting_deadline_is_skipped() {
    let cj = cronjob(json!({"startingDeadlineSeconds": 30}), json!({}));
    assert_eq!(step(&cj, &[], t("2026-03-01T12:05:40Z")).create, None);
    assert_eq!(step(&cj, &[], t("2026-03-01T12:05:20Z")).create, Some(t("2026-03-01T12:05:00Z")));
}

#[test]
fn too_many_missed_start_times_warn_but_the_latest_still_runs() {
    let cj = cronjob(json!({"schedule": "* * * * *"}), json!({}));
    let s = step(&cj, &[], t("2026-03-02T12:00:10Z"));
    assert_eq!(s.create, Some(t("2026-03-02T12:00:00Z")));
    assert!(s.warning.is_some_and(|w| w.starts_with("too many missed start times")));
}

#[test]
fn suspended_cronjobs_start_nothing() {
    let cj = cronjob(json!({"suspend": true}), json!({}));
    assert_eq!(step(&cj, &[], t("2026-03-01T13:00:00Z")).create, None);
}

#[test]
fn finished_jobs_beyond_the_history_limits_are_deleted_oldest_first() {
    let cj = cronjob(json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1}), json!({}));
    let jobs = [
        job("ok-1", Some("Complete"), "2026-03-01T12:05:00Z"),
        job("ok-2", Some("Complete"), "2026-03-01T12:10:00Z"),
        job("bad-1", Some("Failed"), "2026-03-01T12:06:00Z"),
        job("bad-2", Some("Failed"), "2026-03-01T12:11:00Z"),
        job("run", None, "2026-03-01T12:12:00Z"),
    ];
    let s = step(&cj, &jobs, t("2026-03-01T12:12:30Z"));
    assert_eq!(s.delete, vec!["ok-1".to_string(), "bad-1".to_string()]);
    assert_eq!(s.status.last_successful_time.map(|t| t.0), Some(t("2026-03-01T12:10:00Z")));
    let active: Vec<_> = s.status.active.into_iter().flatten().filter_map(|r| r.name).collect();
    assert_eq!(active, vec!["run".to_string()]);
}
