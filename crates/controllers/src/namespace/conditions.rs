//! The status conditions of a namespace being deleted, with kube-controller-manager's types,
//! reasons and messages (`pkg/controller/namespace/deletion/status_condition_utils.go`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NamespaceCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
const GV_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// Every condition type, in upstream order, with its reason and message when all is well.
const OK: [(&str, &str, &str); 5] = [
    (DISCOVERY_FAILURE, "ResourcesDiscovered", "All resources successfully discovered"),
    (GV_PARSING_FAILURE, "ParsedGroupVersions", "All legacy kube types successfully parsed"),
    (CONTENT_FAILURE, "ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
    (CONTENT_REMAINING, "ContentRemoved", "All content successfully removed"),
    (FINALIZERS_REMAINING, "ContentHasNoFinalizers", "All content-preserving finalizers finished"),
];

/// What one pass over a namespace's content found.
#[derive(Debug, Default)]
pub(super) struct Totals {
    /// Why discovery was incomplete, if it was.
    pub discovery_error: Option<String>,
    /// The errors of deleting or listing content.
    pub errors: Vec<String>,
    /// `<plural>.<group>` to the number of objects left.
    pub remaining: BTreeMap<String, usize>,
    /// Finalizer to the number of objects left that carry it.
    pub finalizers: BTreeMap<String, usize>,
}

impl Totals {
    /// Whether something is left in the namespace (or discovery could not tell).
    pub fn remaining(&self) -> bool {
        !self.remaining.is_empty() || self.discovery_error.is_some()
    }

    /// The namespace's conditions after this pass; conditions that did not change keep their
    /// `lastTransitionTime`.
    pub fn conditions(&self, old: &[NamespaceCondition]) -> Vec<NamespaceCondition> {
        let mut failing: BTreeMap<&str, (&str, String)> = BTreeMap::new();
        if let Some(e) = &self.discovery_error {
            failing.insert(DISCOVERY_FAILURE, ("DiscoveryFailed", e.clone()));
        }
        if !self.errors.is_empty() {
            let mut msgs = self.errors.clone();
            msgs.sort();
            let msg =
                format!("Failed to delete all resource types, {} remaining: {}", msgs.len(), msgs.join(", "));
            failing.insert(CONTENT_FAILURE, ("ContentDeletionFailed", msg));
        }
        if !self.remaining.is_empty() {
            let parts: Vec<String> =
                self.remaining.iter().map(|(r, n)| format!("{r} has {n} resource instances")).collect();
            let msg = format!("Some resources are remaining: {}", parts.join(", "));
            failing.insert(CONTENT_REMAINING, ("SomeResourcesRemain", msg));
        }
        if !self.finalizers.is_empty() {
            let parts: Vec<String> =
                self.finalizers.iter().map(|(f, n)| format!("{f} in {n} resource instances")).collect();
            let msg = format!("Some content in the namespace has finalizers remaining: {}", parts.join(", "));
            failing.insert(FINALIZERS_REMAINING, ("SomeFinalizersRemain", msg));
        }
        let now = Time(jiff::Timestamp::now());
        OK.iter()
            .map(|(kind, ok_reason, ok_message)| {
                let (status, reason, message) = match failing.get(kind) {
                    Some((reason, message)) => ("True", *reason, message.clone()),
                    None => ("False", *ok_reason, (*ok_message).to_string()),
                };
                let same = old.iter().find(|c| {
                    c.type_ == *kind
                        && c.status == status
                        && c.reason.as_deref() == Some(reason)
                        && c.message.as_deref() == Some(message.as_str())
                });
                same.cloned().unwrap_or_else(|| NamespaceCondition {
                    type_: (*kind).to_string(),
                    status: status.to_string(),
                    reason: Some(reason.to_string()),
                    message: Some(message),
                    last_transition_time: Some(now.clone()),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_content_and_finalizers_are_reported_with_upstream_messages() {
        let mut totals = Totals::default();
        totals.remaining.insert("configmaps.".into(), 2);
        totals.remaining.insert("widgets.example.com".into(), 1);
        totals.finalizers.insert("example.com/keep".into(), 3);
        let conds = totals.conditions(&[]);
        let by_type = |t: &str| conds.iter().find(|c| c.type_ == t).cloned();
        let remaining = by_type(CONTENT_REMAINING).expect("content remaining condition");
        assert_eq!(remaining.status, "True");
        assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            remaining.message.as_deref(),
            Some(
                "Some resources are remaining: configmaps. has 2 resource instances, widgets.example.com has 1 resource instances"
            )
        );
        let finalizers = by_type(FINALIZERS_REMAINING).expect("finalizers remaining condition");
        assert_eq!(
            finalizers.message.as_deref(),
            Some("Some content in the namespace has finalizers remaining: example.com/keep in 3 resource instances")
        );
        let discovery = by_type(DISCOVERY_FAILURE).expect("discovery condition");
        assert_eq!(
            (discovery.status.as_str(), discovery.reason.as_deref()),
            ("False", Some("ResourcesDiscovered"))
        );
        assert_eq!(conds.len(), 5);
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let totals = Totals::default();
        let mut first = totals.conditions(&[]);
        let past = Time(jiff::Timestamp::UNIX_EPOCH);
        for c in &mut first {
            c.last_transition_time = Some(past.clone());
        }
        let mut failing = Totals::default();
        failing.errors.push("deleting pods.: boom".into());
        let second = failing.conditions(&first);
        for c in &second {
            let kept = c.last_transition_time.as_ref() == Some(&past);
            assert_eq!(kept, c.type_ != CONTENT_FAILURE, "condition {} transition time", c.type_);
        }
        let failure = second.iter().find(|c| c.type_ == CONTENT_FAILURE).expect("content failure condition");
        assert_eq!(
            failure.message.as_deref(),
            Some("Failed to delete all resource types, 1 remaining: deleting pods.: boom")
        );
    }
}
