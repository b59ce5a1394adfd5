//! The rules of a Job that look at single pods and indexes: `podFailurePolicy` (what a failed
//! pod means) and `successPolicy` (when an Indexed Job has succeeded early).

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::{PodFailurePolicy, SuccessPolicy};
use k8s_openapi::api::core::v1::Pod;

use super::indexes;

/// What a failed pod does to its Job under `podFailurePolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Counts toward `backoffLimit` (no rule matched, or `Count`).
    Count,
    /// Counts, and fails the pod's index at once (`FailIndex`, with `backoffLimitPerIndex`).
    FailIndex,
    /// Not counted at all (`Ignore`).
    Ignore,
    /// Fails the whole Job with this message (`FailJob`).
    FailJob(String),
}

/// The first rule of `policy` that matches the failed `pod`, as a [`Verdict`].
pub(crate) fn judge(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let Some(policy) = policy else { return Verdict::Count };
    let pod_key = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    );
    let status = pod.status.as_ref();
    for (i, rule) in policy.rules.iter().enumerate() {
        let what = if let Some(req) = &rule.on_exit_codes {
            let containers = status.into_iter().flat_map(|s| {
                s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten())
            });
            containers.filter(|c| req.container_name.as_ref().is_none_or(|n| *n == c.name)).find_map(|c| {
                let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
                let listed = req.values.contains(&code);
                let hit = match req.operator.as_str() {
                    "In" => listed,
                    "NotIn" => code != 0 && !listed,
                    _ => false,
                };
                hit.then(|| format!("Container {} for pod {pod_key} failed with exit code {code}", c.name))
            })
        } else {
            let conditions = status.and_then(|s| s.conditions.as_ref());
            rule.on_pod_conditions.iter().flatten().find_map(|pattern| {
                let want = if pattern.status.is_empty() { "True" } else { pattern.status.as_str() };
                conditions
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == pattern.type_ && c.status == want))
                    .then(|| format!("Pod {pod_key} has condition {}", pattern.type_))
            })
        };
        let Some(what) = what else { continue };
        return match rule.action.as_str() {
            "FailJob" => Verdict::FailJob(format!("{what} matching FailJob rule at index {i}")),
            "Ignore" => Verdict::Ignore,
            "FailIndex" => Verdict::FailIndex,
            _ => Verdict::Count,
        };
    }
    Verdict::Count
}

/// The index of the first `successPolicy` rule that the completed indexes satisfy.
pub(crate) fn success_rule(
    policy: Option<&SuccessPolicy>,
    completed: &BTreeSet<i32>,
    completions: i32,
) -> Option<usize> {
    policy?.rules.iter().position(|rule| {
        let (matched, required) = match &rule.succeeded_indexes {
            Some(text) => {
                let wanted = indexes::parse(Some(text), completions);
                let done = wanted.intersection(completed).count();
                (done, rule.succeeded_count.map_or(wanted.len(), |n| n.max(0) as usize))
            }
            None => match rule.succeeded_count {
                Some(n) => (completed.len(), n.max(0) as usize),
                None => return false,
            },
        };
        required > 0 && matched >= required
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed_pod(exit_code: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": conditions, "containerStatuses": [{
                "name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code}}
            }]}
        }))
        .unwrap()
    }

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let p = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [42]}},
        ]));
        assert_eq!(
            judge(Some(&p), &failed_pod(42, json!([]))),
            Verdict::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            )
        );
        let disrupted = failed_pod(42, json!([{"type": "DisruptionTarget", "status": "True"}]));
        assert_eq!(judge(Some(&p), &disrupted), Verdict::Ignore);
        assert_eq!(judge(Some(&p), &failed_pod(1, json!([]))), Verdict::Count);
        assert_eq!(judge(None, &failed_pod(42, json!([]))), Verdict::Count);
    }

    #[test]
    fn success_rules_need_their_indexes_or_their_count() {
        let p: SuccessPolicy = serde_json::from_value(json!({"rules": [
            {"succeededIndexes": "0-2"},
            {"succeededIndexes": "4-9", "succeededCount": 2},
        ]}))
        .unwrap();
        let done = |v: &[i32]| v.iter().copied().collect::<BTreeSet<_>>();
        assert_eq!(success_rule(Some(&p), &done(&[0, 1]), 10), None);
        assert_eq!(success_rule(Some(&p), &done(&[0, 1, 2]), 10), Some(0));
        assert_eq!(success_rule(Some(&p), &done(&[5, 7]), 10), Some(1));
    }
}
