//! The garbage collector's view of the cluster: every watched object by uid with its owner
//! references, and the reverse index from an owner's uid to its dependents. It is a cache: it
//! may prove that an object exists or has dependents, never that an owner is gone (that takes a
//! live read).

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The finalizer that makes the garbage collector remove the owner references to an object.
pub(super) const ORPHAN: &str = "orphan";

/// The finalizer that makes the garbage collector delete an object's dependents first.
pub(super) const FOREGROUND: &str = "foregroundDeletion";

/// One object as the watches last showed it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    /// The watched resource it belongs to (`<group>/<plural>`).
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    /// The node of an object's metadata, if it has a uid and a name.
    pub fn from_meta(resource: &str, meta: &ObjectMeta) -> Option<(String, Node)> {
        let uid = meta.uid.clone().filter(|u| !u.is_empty())?;
        let node = Node {
            resource: resource.to_string(),
            namespace: meta.namespace.clone().filter(|n| !n.is_empty()),
            name: meta.name.clone()?,
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        };
        Some((uid, node))
    }

    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Whether the collector has work on this object as an owner being deleted.
    pub fn awaits_collector(&self) -> bool {
        self.deleting && (self.has_finalizer(ORPHAN) || self.has_finalizer(FOREGROUND))
    }
}

/// The objects by uid and the dependents of each owner uid.
#[derive(Debug, Default)]
pub(super) struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// Records `node` under `uid`; returns the uids that need a look because of the change.
    pub fn upsert(&mut self, uid: String, node: Node) -> Vec<String> {
        let old = self.nodes.get(&uid).cloned();
        let mut todo = Vec::new();
        if node.awaits_collector() {
            todo.push(uid.clone());
        }
        let owners_changed = old.as_ref().is_none_or(|o| o.owners != node.owners);
        if owners_changed && !node.deleting && !node.owners.is_empty() {
            // Owners seen alive need no check; unseen or deleting ones do.
            let unsure = node.owners.iter().any(|r| self.nodes.get(&r.uid).is_none_or(|o| o.deleting));
            if unsure {
                todo.push(uid.clone());
            }
        }
        if let Some(old) = &old {
            for r in &old.owners {
                if !node.owners.iter().any(|n| n.uid == r.uid) {
                    // An owner waiting in foreground deletion may no longer be blocked.
                    self.unlink(&r.uid, &uid);
                    if self.nodes.get(&r.uid).is_some_and(Node::awaits_collector) {
                        todo.push(r.uid.clone());
                    }
                }
            }
        }
        for r in &node.owners {
            self.dependents.entry(r.uid.clone()).or_default().insert(uid.clone());
        }
        self.nodes.insert(uid, node);
        todo.dedup();
        todo
    }

    /// Forgets the object `uid`; returns the uids that need a look: its dependents (their owner
    /// may be gone) and its owners (one may wait for it in foreground deletion).
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        for r in &node.owners {
            self.unlink(&r.uid, uid);
        }
        let mut todo: Vec<String> = self.dependents_of(uid).map(|(d, _)| d.to_string()).collect();
        todo.extend(node.owners.iter().filter(|r| self.nodes.contains_key(&r.uid)).map(|r| r.uid.clone()));
        todo
    }

    /// The uids of the objects of `resource`.
    pub fn uids_of(&self, resource: &str) -> Vec<String> {
        self.nodes.iter().filter(|(_, n)| n.resource == resource).map(|(u, _)| u.clone()).collect()
    }

    /// The objects that name `owner` in their owner references.
    pub fn dependents_of<'a>(&'a self, owner: &str) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        self.dependents
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d).map(|n| (d.as_str(), n)))
    }

    /// The dependents of `owner` that block its foreground deletion (`blockOwnerDeletion`).
    pub fn blocking_dependents_of(&self, owner: &str) -> usize {
        self.dependents_of(owner)
            .filter(|(_, n)| n.owners.iter().any(|r| r.uid == owner && r.block_owner_deletion == Some(true)))
            .count()
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_ref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("owner-{uid}"),
            uid: uid.into(),
            block_owner_deletion: Some(block),
            ..OwnerReference::default()
        }
    }

    fn node(owners: Vec<OwnerReference>) -> Node {
        Node {
            resource: "/configmaps".into(),
            namespace: Some("default".into()),
            name: "x".into(),
            owners,
            deleting: false,
            finalizers: Vec::new(),
        }
    }

    #[test]
    fn a_dependent_of_an_unseen_owner_is_checked_and_one_of_a_seen_owner_is_not() {
        let mut g = Graph::default();
        assert_eq!(g.upsert("d1".into(), node(vec![owner_ref("o", false)])), vec!["d1".to_string()]);
        assert!(g.upsert("o".into(), node(vec![])).is_empty());
        assert!(g.upsert("d2".into(), node(vec![owner_ref("o", false)])).is_empty());
    }

    #[test]
    fn removing_an_owner_brings_up_its_dependents() {
        let mut g = Graph::default();
        g.upsert("o".into(), node(vec![]));
        g.upsert("d".into(), node(vec![owner_ref("o", true)]));
        assert_eq!(g.blocking_dependents_of("o"), 1);
        assert_eq!(g.remove("o"), vec!["d".to_string()]);
        assert_eq!(g.dependents_of("o").count(), 1, "the dependent still names its owner");
    }

    #[test]
    fn an_owner_in_foreground_deletion_is_looked_at_when_a_dependent_goes_or_lets_go() {
        let mut g = Graph::default();
        let mut owner = node(vec![]);
        owner.deleting = true;
        owner.finalizers = vec![FOREGROUND.into()];
        assert_eq!(g.upsert("o".into(), owner), vec!["o".to_string()]);
        g.upsert("d1".into(), node(vec![owner_ref("o", true)]));
        g.upsert("d2".into(), node(vec![owner_ref("o", true)]));
        assert_eq!(g.blocking_dependents_of("o"), 2);
        assert_eq!(g.remove("d1"), vec!["o".to_string()]);
        assert_eq!(g.upsert("d2".into(), node(vec![])), vec!["o".to_string()]);
        assert_eq!(g.blocking_dependents_of("o"), 0);
    }
}
