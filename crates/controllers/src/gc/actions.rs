//! What the garbage collector does with one queued object, as kube-controller-manager's
//! `attemptToDeleteItem`, `processDeletingDependentsItem` and `orphanDependents` do it. Every
//! decision reads the object and its owners live; every write carries the `resourceVersion`
//! (and deletes the uid) it was decided on, so a concurrent change makes it fail and retry.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::Api;
use serde_json::json;
use tracing::{debug, info, warn};

use super::graph::{Node, FOREGROUND, ORPHAN};
use super::Collector;
use crate::error::{api, Result};

/// How soon an object is looked at again after a failed request.
const ERROR_RETRY: Duration = Duration::from_secs(5);

/// How soon an object is looked at again after losing a write race.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);

/// How soon an object whose owner's kind is not served is looked at again.
const UNKNOWN_OWNER_RETRY: Duration = Duration::from_secs(30);

/// How soon orphaning or foreground deletion is retried while the watches still list.
const SYNC_RETRY: Duration = Duration::from_millis(500);

/// What is left to do for an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Done,
    RetryAfter(Duration),
}

/// What an owner reference points at, by a live read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnerState {
    /// The owner exists and is not waiting for its dependents.
    Solid,
    /// No object with the reference's uid exists.
    Dangling,
    /// The owner is being deleted in the foreground.
    Waiting,
    /// The reference's kind is not served: nothing can be said.
    Unknown,
}

impl Collector {
    /// Handles the object `uid` as the graph shows it; failures are retried later.
    pub(super) async fn work(&mut self, uid: String) {
        let Some(node) = self.graph.get(&uid).cloned() else {
            return;
        };
        let outcome = if node.awaits_collector() {
            if !self.synced() {
                Ok(Step::RetryAfter(SYNC_RETRY))
            } else if node.has_finalizer(ORPHAN) {
                self.orphan_dependents(&uid, &node).await
            } else {
                self.delete_dependents(&uid, &node).await
            }
        } else if !node.deleting && !node.owners.is_empty() {
            self.attempt_to_delete(&uid, &node).await
        } else {
            Ok(Step::Done)
        };
        match outcome {
            Ok(Step::Done) => {}
            Ok(Step::RetryAfter(after)) => self.retry_later(uid, after),
            Err(e) => {
                warn!(object = %describe(&node), error = %e, "garbage collector: retrying");
                self.retry_later(uid, ERROR_RETRY);
            }
        }
    }

    /// The API of the objects of `node`'s resource, in its namespace.
    fn api_of(&self, node: &Node) -> Option<Api<DynamicObject>> {
        let served = self.resources.get(&node.resource)?;
        Some(match (&node.namespace, served.namespaced()) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &served.resource),
            _ => Api::all_with(self.client.clone(), &served.resource),
        })
    }

    /// Deletes a dependent whose owners are all gone (or waiting for it), or removes the
    /// references to missing owners when others remain.
    async fn attempt_to_delete(&mut self, uid: &str, node: &Node) -> Result<Step> {
        let Some(objects) = self.api_of(node) else {
            return Ok(Step::Done);
        };
        let Some(latest) = live(&objects, node, uid).await? else {
            return Ok(Step::Done);
        };
        if latest.deletion_timestamp.is_some() {
            return Ok(Step::Done);
        }
        let owners = latest.owner_references.clone().unwrap_or_default();
        if owners.is_empty() {
            return Ok(Step::Done);
        }
        let (mut solid, mut gone, mut unknown) = (0, Vec::new(), false);
        let mut waiting = false;
        for r in &owners {
            match self.owner_state(r, node.namespace.as_deref()).await? {
                OwnerState::Solid => solid += 1,
                OwnerState::Unknown => unknown = true,
                OwnerState::Dangling => gone.push(r.uid.clone()),
                OwnerState::Waiting => {
                    waiting = true;
                    gone.push(r.uid.clone());
                }
            }
        }
        let later = if unknown { Step::RetryAfter(UNKNOWN_OWNER_RETRY) } else { Step::Done };
        if solid > 0 || unknown {
            if gone.is_empty() {
                return Ok(later);
            }
            // Keep the object for its live owners; let go of the missing and the waiting ones,
            // so a foreground deletion is not held up by an object it will not delete.
            let step = remove_owner_refs(&objects, node, &latest, &gone).await?;
            return Ok(if step == Step::Done { later } else { step });
        }
        if waiting && !self.synced() {
            // Whether this object has dependents of its own decides how it is deleted.
            return Ok(Step::RetryAfter(SYNC_RETRY));
        }
        // An owner waits for this object: if it has dependents of its own, they go first.
        let policy = if waiting && self.graph.dependents_of(uid).next().is_some() {
            PropagationPolicy::Foreground
        } else if has(&latest, ORPHAN) {
            PropagationPolicy::Orphan
        } else if has(&latest, FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        info!(object = %describe(node), ?policy, "garbage collector: deleting an object whose owners are gone");
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: latest.resource_version,
            }),
            ..DeleteParams::default()
        };
        match objects.delete(&node.name, &params).await {
            Ok(_) => Ok(Step::Done),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Step::Done),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Step::RetryAfter(CONFLICT_RETRY)),
            Err(e) => Err(api(format!("deleting {}", describe(node)))(e)),
        }
    }

    /// Reads the owner `r` of an object in `namespace`.
    async fn owner_state(&self, r: &OwnerReference, namespace: Option<&str>) -> Result<OwnerState> {
        let group = r.api_version.split_once('/').map_or("", |(g, _)| g);
        let Some(served) = self.kinds.get(&(group.to_string(), r.kind.clone())) else {
            debug!(kind = %r.kind, api_version = %r.api_version, "garbage collector: owner kind not served");
            return Ok(OwnerState::Unknown);
        };
        let owners: Api<DynamicObject> = match (served.namespaced(), namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &served.resource),
            // A namespaced owner cannot own a cluster-scoped object: no such owner exists.
            (true, None) => return Ok(OwnerState::Dangling),
            (false, _) => Api::all_with(self.client.clone(), &served.resource),
        };
        let owner = owners
            .get_metadata_opt(&r.name)
            .await
            .map_err(api(format!("reading owner {} {}", r.kind, r.name)))?;
        Ok(match owner {
            Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                if o.metadata.deletion_timestamp.is_some() && has(&o.metadata, FOREGROUND) {
                    OwnerState::Waiting
                } else {
                    OwnerState::Solid
                }
            }
            _ => OwnerState::Dangling,
        })
    }

    /// Foreground deletion of the owner `uid`: deletes its dependents, and removes the
    /// finalizer once none blocks the owner's deletion any more.
    async fn delete_dependents(&mut self, uid: &str, node: &Node) -> Result<Step> {
        if self.graph.blocking_dependents_of(uid) == 0 {
            return self.remove_finalizer(uid, node, FOREGROUND).await;
        }
        let pending: Vec<String> =
            self.graph.dependents_of(uid).filter(|(_, d)| !d.deleting).map(|(d, _)| d.to_string()).collect();
        for d in pending {
            self.enqueue(d);
        }
        // The dependents' deletions (watch events) bring the owner back.
        Ok(Step::Done)
    }

    /// Orphan deletion of the owner `uid`: removes the references to it from its dependents,
    /// then the finalizer.
    async fn orphan_dependents(&mut self, uid: &str, node: &Node) -> Result<Step> {
        let dependents: Vec<(String, Node)> =
            self.graph.dependents_of(uid).map(|(d, n)| (d.to_string(), n.clone())).collect();
        for (d_uid, dependent) in dependents {
            let Some(objects) = self.api_of(&dependent) else {
                continue;
            };
            let Some(latest) = live(&objects, &dependent, &d_uid).await? else {
                continue;
            };
            if !latest.owner_references.iter().flatten().any(|r| r.uid == uid) {
                continue;
            }
            let step = remove_owner_refs(&objects, &dependent, &latest, &[uid.to_string()]).await?;
            if step != Step::Done {
                return Ok(step);
            }
        }
        self.remove_finalizer(uid, node, ORPHAN).await
    }

    /// Removes the finalizer `f` from the object `uid`.
    async fn remove_finalizer(&self, uid: &str, node: &Node, f: &str) -> Result<Step> {
        let Some(objects) = self.api_of(node) else {
            return Ok(Step::Done);
        };
        let Some(latest) = live(&objects, node, uid).await? else {
            return Ok(Step::Done);
        };
        if !has(&latest, f) {
            return Ok(Step::Done);
        }
        let rest: Vec<&String> = latest.finalizers.iter().flatten().filter(|x| *x != f).collect();
        debug!(object = %describe(node), finalizer = f, "garbage collector: removing finalizer");
        let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": latest.resource_version}});
        write_outcome(objects.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch)).await, node)
    }
}

/// The object's metadata read live, if it still is the object `uid`.
async fn live(objects: &Api<DynamicObject>, node: &Node, uid: &str) -> Result<Option<ObjectMeta>> {
    let found =
        objects.get_metadata_opt(&node.name).await.map_err(api(format!("reading {}", describe(node))))?;
    Ok(found.map(|o| o.metadata).filter(|m| m.uid.as_deref() == Some(uid)))
}

/// Removes the owner references with the given uids from `latest`, the object `node`.
async fn remove_owner_refs(
    objects: &Api<DynamicObject>,
    node: &Node,
    latest: &ObjectMeta,
    uids: &[String],
) -> Result<Step> {
    let rest: Vec<&OwnerReference> =
        latest.owner_references.iter().flatten().filter(|r| !uids.contains(&r.uid)).collect();
    info!(object = %describe(node), removed = ?uids, "garbage collector: removing owner references");
    let patch = json!({"metadata": {"ownerReferences": rest, "resourceVersion": latest.resource_version}});
    write_outcome(objects.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch)).await, node)
}

/// Maps the answer to a write: gone is done, a conflict is retried soon.
fn write_outcome(outcome: kube::Result<DynamicObject>, node: &Node) -> Result<Step> {
    match outcome {
        Ok(_) => Ok(Step::Done),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Step::Done),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Step::RetryAfter(CONFLICT_RETRY)),
        Err(e) => Err(api(format!("updating {}", describe(node)))(e)),
    }
}

fn has(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

/// `<resource> <namespace>/<name>` for logs and errors.
fn describe(node: &Node) -> String {
    match &node.namespace {
        Some(ns) => format!("{} {ns}/{}", node.resource, node.name),
        None => format!("{} {}", node.resource, node.name),
    }
}
