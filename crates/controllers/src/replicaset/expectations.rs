//! Expectations: which pods a controller has just created or deleted and not yet seen in its
//! cache. While any are outstanding the controller does not count pods again, so a slow cache
//! never makes it create or delete twice (upstream `UIDTrackingControllerExpectations`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::pods::controller_of;

/// After this long, outstanding expectations are given up: the cache must have missed an event.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Outstanding creations and deletions per controller (keyed by the controller's UID).
#[derive(Debug, Default)]
pub(crate) struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

#[derive(Debug)]
struct Pending {
    /// Names of pods created and not yet seen.
    adds: HashSet<String>,
    /// UIDs of pods deleted and still seen alive.
    dels: HashSet<String>,
    since: Instant,
}

impl Expectations {
    /// Records that the controller `owner` created the pods named `names`.
    pub(crate) fn expect_creations(&self, owner: &str, names: impl IntoIterator<Item = String>) {
        self.with(owner, |p| p.adds.extend(names));
    }

    /// Records that the controller `owner` deleted the pods with UIDs `uids`.
    pub(crate) fn expect_deletions(&self, owner: &str, uids: impl IntoIterator<Item = String>) {
        self.with(owner, |p| p.dels.extend(uids));
    }

    /// Notes a pod seen by the watch: a creation of its controller is observed.
    pub(crate) fn observe(&self, pod: &Pod) {
        let Some(owner) = controller_of(&pod.metadata) else { return };
        let mut pending = self.pending.lock();
        if let Some(p) = pending.get_mut(&owner.uid) {
            p.adds.remove(&pod.name_any());
        }
    }

    /// Whether `owner` may count its pods again, given the pods of the cache (`names` and
    /// `alive_uids` of its non-terminating pods): every creation seen, every deletion gone.
    pub(crate) fn satisfied<'a>(
        &self,
        owner: &str,
        names: impl IntoIterator<Item = &'a str>,
        alive_uids: &HashSet<&str>,
    ) -> bool {
        let mut pending = self.pending.lock();
        let Some(p) = pending.get_mut(owner) else { return true };
        for name in names {
            p.adds.remove(name);
        }
        p.dels.retain(|uid| alive_uids.contains(uid.as_str()));
        if (p.adds.is_empty() && p.dels.is_empty()) || p.since.elapsed() >= TIMEOUT {
            pending.remove(owner);
            return true;
        }
        false
    }

    fn with(&self, owner: &str, f: impl FnOnce(&mut Pending)) {
        let mut pending = self.pending.lock();
        let p = pending.entry(owner.to_string()).or_insert_with(|| Pending {
            adds: HashSet::new(),
            dels: HashSet::new(),
            since: Instant::now(),
        });
        p.since = Instant::now();
        f(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn owned_pod(name: &str, owner: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn creations_are_satisfied_once_every_pod_is_seen() {
        let e = Expectations::default();
        e.expect_creations("rs", ["a".to_string(), "b".to_string()]);
        assert!(!e.satisfied("rs", ["a"], &HashSet::new()));
        e.observe(&owned_pod("b", "rs"));
        assert!(e.satisfied("rs", [], &HashSet::new()));
        assert!(e.satisfied("other", [], &HashSet::new()));
    }

    #[test]
    fn deletions_are_satisfied_once_the_pods_are_gone_from_the_cache() {
        let e = Expectations::default();
        e.expect_deletions("rs", ["u1".to_string()]);
        assert!(!e.satisfied("rs", [], &HashSet::from(["u1"])));
        assert!(e.satisfied("rs", [], &HashSet::from(["u2"])));
    }

    #[tokio::test(start_paused = true)]
    async fn expectations_expire_after_the_timeout() {
        let e = Expectations::default();
        e.expect_creations("rs", ["a".to_string()]);
        tokio::time::advance(TIMEOUT - Duration::from_secs(1)).await;
        assert!(!e.satisfied("rs", [], &HashSet::new()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(e.satisfied("rs", [], &HashSet::new()));
    }
}
