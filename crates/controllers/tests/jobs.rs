//! The job and cronjob controllers against the in-process API server, on a manual clock. Pods
//! are faked: their phase and exit codes are patched into their status as a kubelet would.

mod common;

use std::collections::BTreeSet;

use anyhow::Result;
use common::{eventually, Harness};
use corten_controllers::{Clock, Config};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

async fn create_job(client: &Client, name: &str, spec: serde_json::Value) -> Result<Job> {
    let mut full = json!({"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}], "restartPolicy": "Never"}}});
    if let (Some(base), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    let job: Job = serde_json::from_value(json!({"metadata": {"name": name}, "spec": full}))?;
    Ok(Api::<Job>::default_namespaced(client.clone()).create(&PostParams::default(), &job).await?)
}

/// The pods of job `name` that are neither finished nor deleting.
async fn running_pods(client: &Client, name: &str) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let list =
        pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}"))).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
        })
        .collect())
}

/// Ends pod `name` as a kubelet would: `Succeeded` for exit code 0, `Failed` otherwise.
async fn finish(client: &Client, name: &str, exit_code: i32) -> Result<()> {
    let phase = if exit_code == 0 { "Succeeded" } else { "Failed" };
    let status = json!({"status": {"phase": phase, "containerStatuses": [{
        "name": "main", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": if exit_code == 0 { "Completed" } else { "Error" }}}
    }]}});
    Api::<Pod>::default_namespaced(client.clone())
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// `(status, reason)` of condition `type_` of job `name`.
async fn condition(client: &Client, name: &str, type_: &str) -> Result<Option<(String, String)>> {
    let job = Api::<Job>::default_namespaced(client.clone()).get(name).await?;
    Ok(job
        .status
        .and_then(|s| s.conditions)
        .into_iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.reason.unwrap_or_default())))
}

async fn wait_condition(client: &Client, job: &str, type_: &str, reason: &str) -> Result<()> {
    eventually(&format!("job {job} {type_} with reason {reason}"), || async {
        let seen = condition(client, job, type_).await?;
        Ok(if seen == Some(("True".into(), reason.into())) {
            Ok(())
        } else {
            Err(format!("{type_}: {seen:?}"))
        })
    })
    .await
}

/// Waits for `count` running pods of `job` and returns them.
async fn wait_running(client: &Client, job: &str, count: usize) -> Result<Vec<Pod>> {
    eventually(&format!("{count} running pods of {job}"), || async {
        let pods = running_pods(client, job).await?;
        Ok(if pods.len() == count { Ok(pods) } else { Err(format!("{} pods", pods.len())) })
    })
    .await
}

#[tokio::test]
async fn a_job_completes_after_its_completions_with_parallelism_respected() -> Result<()> {
    let cluster = Harness::start_with(&["job"], Config::default(), Clock::system()).await?;
    let client = cluster.client();
    let job = create_job(&client, "work", json!({"completions": 3, "parallelism": 2})).await?;
    for done in 0..3 {
        let want = if done == 2 { 1 } else { 2 };
        let pods = wait_running(&client, "work", want).await?;
        let pod = &pods[0];
        assert_eq!(pod.labels().get("batch.kubernetes.io/controller-uid"), job.uid().as_ref());
        assert_eq!(pod.labels().get("job-name").map(String::as_str), Some("work"));
        assert!(pod.finalizers().contains(&"batch.kubernetes.io/job-tracking".to_string()));
        finish(&client, &pod.name_any(), 0).await?;
    }
    wait_condition(&client, "work", "Complete", "CompletionsReached").await?;
    let status = Api::<Job>::default_namespaced(client.clone()).get("work").await?.status.unwrap_or_default();
    assert_eq!((status.succeeded, status.failed, status.active), (Some(3), Some(0), Some(0)));
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    assert_eq!(condition(&client, "work", "SuccessCriteriaMet").await?.map(|c| c.0).as_deref(), Some("True"));
    let pods = Api::<Pod>::default_namespaced(client.clone()).list(&ListParams::default()).await?;
    assert!(
        pods.items.iter().all(|p| !p.finalizers().contains(&"batch.kubernetes.io/job-tracking".to_string())),
        "counted pods lose the tracking finalizer"
    );
    let events: Api<Event> = Api::default_namespaced(client.clone());
    eventually("events of the job's pods and its completion", || async {
        let mut reasons: Vec<String> = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("work"))
            .filter_map(|e| e.reason)
            .collect();
        reasons.sort();
        reasons.dedup();
        Ok(if reasons == ["Completed", "SuccessfulCreate"] { Ok(()) } else { Err(format!("{reasons:?}")) })
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn exceeding_the_backoff_limit_fails_the_job_after_a_backoff() -> Result<()> {
    let clock = Clock::manual(Timestamp::now());
    let cluster = Harness::start_with(&["job"], Config::default(), clock.clone()).await?;
    let client = cluster.client();
    create_job(&client, "flaky", json!({"backoffLimit": 1})).await?;
    let pods = wait_running(&client, "flaky", 1).await?;
    finish(&client, &pods[0].name_any(), 1).await?;
    eventually("one failure counted", || async {
        let job = Api::<Job>::default_namespaced(client.clone()).get("flaky").await?;
        let failed = job.status.and_then(|s| s.failed);
        Ok(if failed == Some(1) { Ok(()) } else { Err(format!("failed {failed:?}")) })
    })
    .await?;
    assert!(running_pods(&client, "flaky").await?.is_empty(), "the replacement waits out the backoff");
    clock.advance(SignedDuration::from_secs(11));
    let pods = wait_running(&client, "flaky", 1).await?;
    finish(&client, &pods[0].name_any(), 1).await?;
    wait_condition(&client, "flaky", "Failed", "BackoffLimitExceeded").await?;
    assert_eq!(
        condition(&client, "flaky", "FailureTarget").await?,
        Some(("True".into(), "BackoffLimitExceeded".into()))
    );
    Ok(())
}

#[tokio::test]
async fn a_fail_job_rule_fails_the_job_on_its_exit_code() -> Result<()> {
    let cluster = Harness::start_with(&["job"], Config::default(), Clock::system()).await?;
    let client = cluster.client();
    let policy = json!({"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}]});
    create_job(&client, "strict", json!({"backoffLimit": 6, "podFailurePolicy": policy})).await?;
    let pods = wait_running(&client, "strict", 1).await?;
    finish(&client, &pods[0].name_any(), 42).await?;
    wait_condition(&client, "strict", "Failed", "PodFailurePolicy").await?;
    assert!(running_pods(&client, "strict").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn an_indexed_job_runs_each_index_once_and_records_them() -> Result<()> {
    let cluster = Harness::start_with(&["job"], Config::default(), Clock::system()).await?;
    let client = cluster.client();
    create_job(&client, "idx", json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3}))
        .await?;
    let pods = wait_running(&client, "idx", 3).await?;
    let mut seen = BTreeSet::new();
    for pod in &pods {
        let index =
            pod.annotations().get("batch.kubernetes.io/job-completion-index").cloned().unwrap_or_default();
        assert_eq!(pod.labels().get("batch.kubernetes.io/job-completion-index"), Some(&index));
        assert_eq!(pod.spec.as_ref().and_then(|s| s.hostname.clone()), Some(format!("idx-{index}")));
        seen.insert(index);
    }
    assert_eq!(seen, ["0", "1", "2"].map(String::from).into_iter().collect::<BTreeSet<_>>());
    for pod in &pods {
        finish(&client, &pod.name_any(), 0).await?;
    }
    wait_condition(&client, "idx", "Complete", "CompletionsReached").await?;
    let status = Api::<Job>::default_namespaced(client.clone()).get("idx").await?.status.unwrap_or_default();
    assert_eq!(status.completed_indexes.as_deref(), Some("0-2"));
    Ok(())
}

#[tokio::test]
async fn suspending_a_job_stops_its_pods_and_resuming_starts_them_again() -> Result<()> {
    let cluster = Harness::start_with(&["job"], Config::default(), Clock::system()).await?;
    let client = cluster.client();
    create_job(&client, "pausable", json!({"completions": 4, "parallelism": 2})).await?;
    wait_running(&client, "pausable", 2).await?;
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    jobs.patch("pausable", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": true}})))
        .await?;
    wait_condition(&client, "pausable", "Suspended", "JobSuspended").await?;
    eventually("no pods of the suspended job", || async {
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        let left = pods.list(&ListParams::default().labels("job-name=pausable")).await?.items.len();
        Ok(if left == 0 { Ok(()) } else { Err(format!("{left} pods")) })
    })
    .await?;
    jobs.patch("pausable", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": false}})))
        .await?;
    wait_running(&client, "pausable", 2).await?;
    eventually("Suspended False with JobResumed", || async {
        let seen = condition(&client, "pausable", "Suspended").await?;
        Ok(if seen == Some(("False".into(), "JobResumed".into())) {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        })
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_job_running_past_its_active_deadline_fails_and_stops_its_pods() -> Result<()> {
    let clock = Clock::manual(Timestamp::now());
    let cluster = Harness::start_with(&["job"], Config::default(), clock.clone()).await?;
    let client = cluster.client();
    create_job(&client, "slow", json!({"activeDeadlineSeconds": 30})).await?;
    wait_running(&client, "slow", 1).await?;
    clock.advance(SignedDuration::from_secs(31));
    wait_condition(&client, "slow", "Failed", "DeadlineExceeded").await?;
    assert!(running_pods(&client, "slow").await?.is_empty(), "the running pod was stopped");
    Ok(())
}

#[tokio::test]
async fn a_finished_job_is_deleted_when_its_ttl_runs_out() -> Result<()> {
    let clock = Clock::manual(Timestamp::now());
    let cluster = Harness::start_with(&["job"], Config::default(), clock.clone()).await?;
    let client = cluster.client();
    create_job(&client, "brief", json!({"ttlSecondsAfterFinished": 60})).await?;
    let pods = wait_running(&client, "brief", 1).await?;
    finish(&client, &pods[0].name_any(), 0).await?;
    wait_condition(&client, "brief", "Complete", "CompletionsReached").await?;
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    assert!(jobs.get("brief").await?.metadata.deletion_timestamp.is_none(), "kept until the ttl runs out");
    clock.advance(SignedDuration::from_secs(61));
    eventually("job brief deleted", || async {
        // Foreground deletion: without a garbage collector the Job stays, marked for deletion.
        let job = jobs.get_opt("brief").await?;
        Ok(match job {
            None => Ok(()),
            Some(j) if j.metadata.deletion_timestamp.is_some() => Ok(()),
            Some(_) => Err("the job, not being deleted".to_string()),
        })
    })
    .await?;
    Ok(())
}

fn cronjob(name: &str, policy: &str) -> Result<CronJob> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"schedule": "* * * * *", "concurrencyPolicy": policy, "successfulJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"labels": {"from": name}}, "spec": {"template": {"spec": {
                "containers": [{"name": "main", "image": "busybox"}], "restartPolicy": "Never"}}}}}
    }))?)
}

/// The Jobs of cronjob `name`, sorted by name.
async fn jobs_of(client: &Client, name: &str) -> Result<Vec<Job>> {
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let mut items = jobs.list(&ListParams::default().labels(&format!("from={name}"))).await?.items;
    items.retain(|j| j.metadata.deletion_timestamp.is_none());
    items.sort_by_key(|j| j.name_any());
    Ok(items)
}

async fn wait_jobs(client: &Client, name: &str, want: &[String]) -> Result<Vec<Job>> {
    eventually(&format!("jobs {want:?} of {name}"), || async {
        let jobs = jobs_of(client, name).await?;
        let names: Vec<String> = jobs.iter().map(|j| j.name_any()).collect();
        Ok(if names == want { Ok(jobs) } else { Err(format!("{names:?}")) })
    })
    .await
}

fn minute_job(name: &str, t: Timestamp) -> String {
    format!("{name}-{}", t.as_second().div_euclid(60))
}

#[tokio::test]
async fn cronjobs_start_jobs_on_schedule_under_each_concurrency_policy() -> Result<()> {
    // Start the clock a little past a minute boundary, after the CronJobs' creation.
    let now = Timestamp::now();
    let base = Timestamp::from_second(now.as_second().div_euclid(60) * 60 + 60)?;
    let clock = Clock::manual(now);
    let cluster = Harness::start_with(&["cronjob"], Config::default(), clock.clone()).await?;
    let client = cluster.client();
    let cronjobs: Api<CronJob> = Api::default_namespaced(client.clone());
    for (name, policy) in [("allow", "Allow"), ("forbid", "Forbid"), ("replace", "Replace")] {
        cronjobs.create(&PostParams::default(), &cronjob(name, policy)?).await?;
    }

    // First start time: every CronJob starts one Job named after the minute.
    clock.set(base + SignedDuration::from_secs(1));
    let first = minute_job("allow", base);
    let jobs = wait_jobs(&client, "allow", std::slice::from_ref(&first)).await?;
    let job = &jobs[0];
    assert_eq!(job.owner_references()[0].kind, "CronJob");
    let stamp = job.annotations().get("batch.kubernetes.io/cronjob-scheduled-timestamp").cloned();
    assert_eq!(stamp.map(|s| s.parse::<Timestamp>().ok()), Some(Some(base)));
    wait_jobs(&client, "forbid", &[minute_job("forbid", base)]).await?;
    wait_jobs(&client, "replace", &[minute_job("replace", base)]).await?;
    eventually("allow lists its job as active", || async {
        let status = cronjobs.get("allow").await?.status.unwrap_or_default();
        let active: Vec<String> = status.active.iter().flatten().filter_map(|r| r.name.clone()).collect();
        let last = status.last_schedule_time.map(|t| t.0);
        Ok(if active == [first.clone()] && last == Some(base) {
            Ok(())
        } else {
            Err(format!("{active:?} {last:?}"))
        })
    })
    .await?;

    // Second start time, the first Jobs still running.
    let second = base + SignedDuration::from_secs(60);
    clock.set(second + SignedDuration::from_secs(1));
    wait_jobs(&client, "allow", &[first.clone(), minute_job("allow", second)]).await?;
    wait_jobs(&client, "replace", &[minute_job("replace", second)]).await?;
    assert_eq!(
        jobs_of(&client, "forbid").await?.iter().map(|j| j.name_any()).collect::<Vec<_>>(),
        vec![minute_job("forbid", base)],
        "forbid starts nothing while its job runs"
    );

    // Finished Jobs beyond successfulJobsHistoryLimit (1) are deleted, oldest first.
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    for (i, name) in [first.clone(), minute_job("allow", second)].iter().enumerate() {
        let done = Timestamp::from_second(Timestamp::now().as_second() + i as i64)?;
        let status = json!({"status": {"startTime": done.to_string(), "completionTime": done.to_string(),
            "conditions": [{"type": "Complete", "status": "True"}]}});
        jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    }
    wait_jobs(&client, "allow", &[minute_job("allow", second)]).await?;
    eventually("allow with no active jobs and a last success", || async {
        let status = cronjobs.get("allow").await?.status.unwrap_or_default();
        let active = status.active.map_or(0, |a| a.len());
        Ok(if active == 0 && status.last_successful_time.is_some() {
            Ok(())
        } else {
            Err(format!("{active} active"))
        })
    })
    .await?;
    Ok(())
}
