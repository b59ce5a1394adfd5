//! The pods of a Job: made from its template with the Job's labels, the tracking finalizer and
//! a controller reference, plus the completion index for Indexed Jobs.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

/// The finalizer that keeps a finished pod until the Job has counted it.
pub(crate) const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The completion index of a pod of an Indexed Job (annotation and label).
pub(crate) const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// How often the index of a pod failed before it (with `backoffLimitPerIndex`).
pub(crate) const INDEX_FAILURES_KEY: &str = "batch.kubernetes.io/job-index-failure-count";
/// The labels every pod of a Job carries; the first is the default selector.
pub(crate) const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// The completion index of a pod, from its annotation (or label).
pub(crate) fn index_of(pod: &Pod) -> Option<i32> {
    pod.annotations().get(INDEX_KEY).or_else(|| pod.labels().get(INDEX_KEY)).and_then(|v| v.parse().ok())
}

/// How often the index of `pod` had failed before it was created.
pub(crate) fn index_failures_of(pod: &Pod) -> i32 {
    pod.annotations().get(INDEX_FAILURES_KEY).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A new pod of `job`, for completion index `index` when the Job is Indexed; `failures` is
/// how often that index failed so far, recorded with `backoffLimitPerIndex`.
pub(crate) fn pod_for(job: &Job, index: Option<i32>, failures: Option<i32>) -> Pod {
    let name = job.name_any();
    let uid = job.uid().unwrap_or_default();
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    for (k, v) in [
        (CONTROLLER_UID_LABEL, &uid),
        (LEGACY_CONTROLLER_UID_LABEL, &uid),
        (JOB_NAME_LABEL, &name),
        (LEGACY_JOB_NAME_LABEL, &name),
    ] {
        labels.entry(k.into()).or_insert_with(|| v.clone());
    }
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut finalizers = meta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    let mut spec = template.spec.unwrap_or_default();
    let generate_name = match index {
        Some(i) => {
            annotations.insert(INDEX_KEY.into(), i.to_string());
            if let Some(n) = failures {
                annotations.insert(INDEX_FAILURES_KEY.into(), n.to_string());
            }
            labels.insert(INDEX_KEY.into(), i.to_string());
            if spec.hostname.as_deref().is_none_or(str::is_empty) {
                spec.hostname = Some(format!("{name}-{i}"));
            }
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: format!("metadata.annotations['{INDEX_KEY}']"),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            };
            for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
                let vars = c.env.get_or_insert_with(Vec::new);
                if !vars.iter().any(|v| v.name == env.name) {
                    vars.push(env.clone());
                }
            }
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name,
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn indexed_pods_carry_their_index_hostname_and_the_job_labels() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "work", "namespace": "default", "uid": "u1"},
            "spec": {"completionMode": "Indexed", "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}
            }}
        }))
        .unwrap();
        let pod = pod_for(&job, Some(3), None);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("work-3-"));
        assert_eq!(index_of(&pod), Some(3));
        assert_eq!(pod.labels().get(CONTROLLER_UID_LABEL).map(String::as_str), Some("u1"));
        assert_eq!(pod.labels().get("job-name").map(String::as_str), Some("work"));
        assert_eq!(pod.finalizers(), [TRACKING_FINALIZER.to_string()]);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("work-3"));
        assert_eq!(spec.containers[0].env.as_ref().map(|e| e[0].name.as_str()), Some("JOB_COMPLETION_INDEX"));
    }
}
