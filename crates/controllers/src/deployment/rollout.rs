//! One sync of a deployment (upstream `syncDeployment`): claim its ReplicaSets, find or create
//! the new one, then scale (paused or a scaling event), roll (RollingUpdate) or recreate, clean
//! up old revisions and write the status with its conditions.

use std::collections::HashSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use tracing::{debug, info};

use super::util::*;
use crate::error::api;
use crate::pods::{self, controller_of, controller_ref};
use crate::{Error, Result};

/// Every field of a deployment status, so that a merge patch replaces the whole status.
const STATUS_KEYS: &[&str] = &[
    "availableReplicas",
    "collisionCount",
    "conditions",
    "observedGeneration",
    "readyReplicas",
    "replicas",
    "terminatingReplicas",
    "unavailableReplicas",
    "updatedReplicas",
];

/// How soon to look again while old pods of a Recreate rollout are still terminating.
const OLD_PODS_POLL: Duration = Duration::from_secs(1);

/// Syncs the deployment `ns/name` once; what to do next.
pub(super) async fn sync(client: Client, recorder: Recorder, ns: &str, name: &str) -> Result<Action> {
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns);
    let Some(d) = deployments.get_opt(name).await.map_err(api(format!("reading deployment {ns}/{name}")))?
    else {
        return Ok(Action::await_change());
    };
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now());
    let mut r = Rollout {
        recorder,
        deployments,
        replica_sets: Api::namespaced(client.clone(), ns),
        pods: Api::namespaced(client, ns),
        d,
        now,
    };
    r.sync().await
}

struct Rollout {
    recorder: Recorder,
    deployments: Api<Deployment>,
    replica_sets: Api<ReplicaSet>,
    pods: Api<Pod>,
    d: Deployment,
    now: Timestamp,
}

fn all<'a>(new: Option<&'a ReplicaSet>, olds: &'a [ReplicaSet]) -> Vec<&'a ReplicaSet> {
    olds.iter().chain(new).collect()
}

impl Rollout {
    fn name(&self) -> String {
        self.d.name_any()
    }

    fn status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }

    fn paused(&self) -> bool {
        self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
    }

    async fn sync(&mut self) -> Result<Action> {
        let Some(selector) = pods::selector(self.d.spec.as_ref().map(|s| &s.selector)) else {
            // A deployment selecting everything (or nothing valid) is left alone, like upstream.
            let (generation, mut status) = (self.d.metadata.generation, self.status());
            if status.observed_generation < generation {
                status.observed_generation = generation;
                self.write_status(status).await?;
            }
            return Ok(Action::await_change());
        };
        let rss = self.claim(&selector).await?;
        let (new, olds) = self.sync_revision(rss).await?;
        if self.d.metadata.deletion_timestamp.is_some() {
            self.sync_status(new.as_ref(), &olds).await?;
            return Ok(Action::await_change());
        }
        self.check_paused().await?;
        if self.paused() || self.is_scaling_event(new.as_ref(), &olds) {
            return self.scale_only(new, olds).await;
        }
        if is_rolling(&self.d) {
            self.rolling(new, olds).await
        } else {
            self.recreate(new, olds, &selector).await
        }
    }

    /// The ReplicaSets this deployment controls, adopting orphans it selects and releasing the
    /// ones it no longer selects.
    async fn claim(&self, selector: &Selector) -> Result<Vec<ReplicaSet>> {
        let list =
            self.replica_sets.list(&ListParams::default()).await.map_err(api("listing replica sets"))?;
        let uid = self.d.uid().unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        for rs in list.items {
            let matches = pods::selects(selector, rs.labels());
            match controller_of(&rs.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        owned.push(rs);
                    } else if !deleting {
                        pods::release(&self.replica_sets, &rs.metadata, &uid).await?;
                    }
                }
                Some(_) => {}
                None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                    let owner = controller_ref(&self.d);
                    if let Some(adopted) = pods::adopt(&self.replica_sets, &rs.metadata, owner).await? {
                        owned.push(adopted);
                    }
                }
                None => {}
            }
        }
        Ok(owned)
    }

    /// Splits the ReplicaSets into the new one (the deployment's template) and the old ones,
    /// bringing the new one's annotations and minReadySeconds and the deployment's revision up
    /// to date (upstream `getAllReplicaSetsAndSyncRevision` without creating).
    async fn sync_revision(
        &mut self,
        mut rss: Vec<ReplicaSet>,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>)> {
        rss.sort_by(by_creation);
        let template = self.d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let found = rss.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &template))
        });
        let Some(i) = found else { return Ok((None, rss)) };
        let mut new = rss.remove(i);
        let olds = rss;
        let new_revision = max_revision(&olds.iter().collect::<Vec<_>>()) + 1;
        let mut copy = new.clone();
        let annotations_changed = set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let spec = copy.spec.get_or_insert_with(Default::default);
        let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
        if annotations_changed || min_ready_changed {
            spec.min_ready_seconds = min_ready;
            new = self.replace_rs(&copy).await?;
        }
        if let Some(rev) = new.annotations().get(REVISION).cloned() {
            self.set_revision(&rev).await?;
        }
        if progress_deadline(&self.d).is_some() && condition(&self.status(), PROGRESSING).is_none() {
            let mut status = self.status();
            let msg = format!("Found new replica set {:?}", new.name_any());
            set_condition(&mut status, new_condition(PROGRESSING, "True", FOUND_NEW_RS, msg, self.now));
            self.write_status(status).await?;
        }
        Ok((Some(new), olds))
    }

    /// Creates the new ReplicaSet `<deployment>-<hash>` for the current template.
    async fn create_new(&mut self, olds: &[ReplicaSet]) -> Result<ReplicaSet> {
        let spec = self.d.spec.clone().unwrap_or_default();
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collision);
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_with(Default::default);
        let labels = meta.labels.get_or_insert_with(Default::default);
        labels.insert(HASH_LABEL.into(), hash.clone());
        let labels = labels.clone();
        let mut selector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", self.name());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.namespace(),
                labels: Some(labels),
                owner_references: Some(vec![controller_ref(&self.d)]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let new_revision = max_revision(&olds.iter().collect::<Vec<_>>()) + 1;
        let replicas = new_rs_new_replicas(&self.d, &all(Some(&rs), olds), &rs);
        set_spec_replicas(&mut rs, replicas);
        set_new_rs_annotations(&self.d, &mut rs, new_revision, false);
        let (created, already_existed) = match self.replica_sets.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                info!(deployment = %self.name(), replica_set = %name, replicas, "created new replica set");
                if replicas > 0 {
                    let note = format!("Scaled up replica set {name} from 0 to {replicas}");
                    pods::emit(&self.recorder, &self.d, false, "ScalingReplicaSet", note).await;
                }
                (created, false)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing =
                    self.replica_sets.get(&name).await.map_err(api(format!("reading replica set {name}")))?;
                let ours =
                    controller_of(&existing.metadata).is_some_and(|r| Some(&r.uid) == self.d.uid().as_ref());
                let same = existing.spec.as_ref().and_then(|s| s.template.as_ref());
                if ours && same.is_some_and(|t| equal_ignore_hash(t, &spec.template)) {
                    (existing, true)
                } else {
                    // A hash collision: the next sync hashes with a higher collision count.
                    let mut status = self.status();
                    status.collision_count = Some(collision.unwrap_or(0) + 1);
                    self.write_status(status).await?;
                    return Err(Error::Invalid(format!("replica set {name} exists with another template")));
                }
            }
            Err(e) => {
                if progress_deadline(&self.d).is_some() {
                    let mut status = self.status();
                    let msg = format!("Failed to create new replica set {name:?}: {e}");
                    set_condition(
                        &mut status,
                        new_condition(PROGRESSING, "False", FAILED_RS_CREATE, msg, self.now),
                    );
                    self.write_status(status).await?;
                }
                return Err(api(format!("creating replica set {name}"))(e));
            }
        };
        if !already_existed && progress_deadline(&self.d).is_some() {
            let mut status = self.status();
            let msg = format!("Created new replica set {name:?}");
            set_condition(&mut status, new_condition(PROGRESSING, "True", NEW_RS_CREATED, msg, self.now));
            self.write_status(status).await?;
        }
        self.set_revision(&new_revision.to_string()).await?;
        Ok(created)
    }

    /// Sets the deployment's revision annotation (a metadata change: no new generation).
    async fn set_revision(&mut self, revision: &str) -> Result<()> {
        if self.d.annotations().get(REVISION).map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
        let name = self.name();
        self.d = self
            .deployments
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api(format!("setting the revision of deployment {name}")))?;
        Ok(())
    }

    /// Sets the Progressing condition to DeploymentPaused or DeploymentResumed when `paused`
    /// changed (upstream `checkPausedConditions`).
    async fn check_paused(&mut self) -> Result<()> {
        if progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let mut status = self.status();
        let reason = condition(&status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return Ok(());
        }
        let paused_shown = reason.as_deref() == Some(PAUSED);
        let cond = match (self.paused(), paused_shown) {
            (true, false) => {
                new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused".into(), self.now)
            }
            (false, true) => {
                new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed".into(), self.now)
            }
            _ => return Ok(()),
        };
        set_condition(&mut status, cond);
        self.write_status(status).await
    }

    /// Whether the deployment's replicas changed since its active ReplicaSets were scaled.
    fn is_scaling_event(&self, new: Option<&ReplicaSet>, olds: &[ReplicaSet]) -> bool {
        all(new, olds)
            .into_iter()
            .filter(|rs| spec_replicas(rs) > 0)
            .filter_map(desired_annotation)
            .any(|n| n != desired(&self.d))
    }

    /// A paused deployment or a scaling event: scale, clean up when paused, write the status.
    async fn scale_only(&mut self, mut new: Option<ReplicaSet>, mut olds: Vec<ReplicaSet>) -> Result<Action> {
        self.scale(new.as_mut(), &mut olds).await?;
        if self.paused() {
            self.cleanup(&olds).await?;
        }
        self.sync_status(new.as_ref(), &olds).await?;
        Ok(Action::await_change())
    }

    /// Scales the ReplicaSets to the deployment's replicas, in proportion during a rollout
    /// (upstream `scale`).
    async fn scale(&self, new: Option<&mut ReplicaSet>, olds: &mut [ReplicaSet]) -> Result<()> {
        let want = desired(&self.d);
        let active_count = olds.iter().chain(new.as_deref()).filter(|rs| spec_replicas(rs) > 0).count();
        // One active set (or none): it (or the newest) takes all the replicas.
        if active_count <= 1 {
            let target: Option<&mut ReplicaSet> = if active_count == 1 {
                match new {
                    Some(n) if spec_replicas(n) > 0 => Some(n),
                    _ => olds.iter_mut().find(|rs| spec_replicas(rs) > 0),
                }
            } else {
                match new {
                    Some(n) => Some(n),
                    None => olds.iter_mut().max_by(|a, b| by_creation(a, b)),
                }
            };
            if let Some(rs) = target {
                if spec_replicas(rs) != want {
                    self.scale_rs(rs, want).await?;
                }
            }
            return Ok(());
        }
        if is_saturated(&self.d, new.as_deref()) {
            for rs in olds.iter_mut().filter(|rs| spec_replicas(rs) > 0) {
                self.scale_rs(rs, 0).await?;
            }
            return Ok(());
        }
        if !is_rolling(&self.d) {
            return Ok(());
        }
        let mut active: Vec<&mut ReplicaSet> =
            olds.iter_mut().chain(new).filter(|rs| spec_replicas(rs) > 0).collect();
        let total: i32 = active.iter().map(|rs| spec_replicas(rs)).sum();
        let allowed = if want > 0 { want + max_surge(&self.d) } else { 0 };
        let to_add = allowed - total;
        if to_add > 0 {
            active.sort_by(|a, b| by_size_newer(a, b));
        } else if to_add < 0 {
            active.sort_by(|a, b| by_size_older(a, b));
        }
        let mut added = 0;
        let mut sizes = Vec::with_capacity(active.len());
        for rs in &active {
            let p = if to_add != 0 { proportion(rs, &self.d, to_add, added) } else { 0 };
            added += p;
            sizes.push(spec_replicas(rs) + p);
        }
        // The leftover goes to the largest set.
        if let Some(first) = sizes.first_mut() {
            if to_add != 0 {
                *first = (*first + to_add - added).max(0);
            }
        }
        for (rs, size) in active.into_iter().zip(sizes) {
            self.scale_rs(rs, size).await?;
        }
        Ok(())
    }

    /// Sets a ReplicaSet's replicas and replica annotations; whether its size changed.
    async fn scale_rs(&self, rs: &mut ReplicaSet, n: i32) -> Result<bool> {
        let (want, max) = (desired(&self.d), desired(&self.d) + max_surge(&self.d));
        let resize = spec_replicas(rs) != n;
        if !resize && !replicas_annotations_need_update(rs, want, max) {
            return Ok(false);
        }
        let mut copy = rs.clone();
        let from = spec_replicas(rs);
        set_spec_replicas(&mut copy, n);
        set_replicas_annotations(&mut copy, want, max);
        *rs = self.replace_rs(&copy).await?;
        if resize {
            info!(deployment = %self.name(), replica_set = %rs.name_any(), from, to = n, "scaled replica set");
            let way = if n > from { "up" } else { "down" };
            let note = format!("Scaled {way} replica set {} from {from} to {n}", rs.name_any());
            pods::emit(&self.recorder, &self.d, false, "ScalingReplicaSet", note).await;
        }
        Ok(resize)
    }

    /// Scales `rs` to `n` if it is not there; whether it changed.
    async fn scale_to(&self, rs: &mut ReplicaSet, n: i32) -> Result<bool> {
        if spec_replicas(rs) == n {
            return Ok(false);
        }
        self.scale_rs(rs, n).await
    }

    async fn replace_rs(&self, rs: &ReplicaSet) -> Result<ReplicaSet> {
        let name = rs.name_any();
        self.replica_sets
            .replace(&name, &PostParams::default(), rs)
            .await
            .map_err(api(format!("updating replica set {name}")))
    }

    /// A RollingUpdate step: grow the new set within maxSurge, else shrink the old ones within
    /// maxUnavailable, else clean up a finished rollout (upstream `rolloutRolling`).
    async fn rolling(&mut self, new: Option<ReplicaSet>, mut olds: Vec<ReplicaSet>) -> Result<Action> {
        let mut new = match new {
            Some(n) => n,
            None => self.create_new(&olds).await?,
        };
        let want = desired(&self.d);
        let grew = if spec_replicas(&new) > want {
            self.scale_to(&mut new, want).await?
        } else if spec_replicas(&new) < want {
            let n = new_rs_new_replicas(&self.d, &all(Some(&new), &olds), &new);
            self.scale_to(&mut new, n).await?
        } else {
            false
        };
        if !grew && !self.shrink_olds(&new, &mut olds).await? && is_complete(&self.d, &self.status()) {
            self.cleanup(&olds).await?;
        }
        self.sync_rollout_status(Some(&new), &olds).await
    }

    /// Scales old sets down as far as maxUnavailable allows, unhealthy replicas first
    /// (upstream `reconcileOldReplicaSets`); whether anything was scaled.
    async fn shrink_olds(&self, new: &ReplicaSet, olds: &mut [ReplicaSet]) -> Result<bool> {
        let old_pods = sum_spec(&olds.iter().collect::<Vec<_>>());
        if old_pods == 0 {
            return Ok(false);
        }
        let min_available = desired(&self.d) - max_unavailable(&self.d);
        let new_unavailable = spec_replicas(new) - available_replicas(new);
        let max_scaled_down = old_pods + spec_replicas(new) - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        olds.sort_by(by_creation);
        // Unhealthy replicas first: they cost no availability.
        let mut cleaned = 0;
        for rs in olds.iter_mut() {
            if cleaned >= max_scaled_down {
                break;
            }
            let unhealthy = spec_replicas(rs) - available_replicas(rs);
            if spec_replicas(rs) == 0 || unhealthy <= 0 {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(unhealthy);
            self.scale_to(rs, spec_replicas(rs) - down).await?;
            cleaned += down;
        }
        // Then healthy ones, down to the minimum availability.
        let available: i32 = olds.iter().chain([new]).map(available_replicas).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for rs in olds.iter_mut() {
                if scaled >= total {
                    break;
                }
                if spec_replicas(rs) == 0 {
                    continue;
                }
                let down = spec_replicas(rs).min(total - scaled);
                self.scale_to(rs, spec_replicas(rs) - down).await?;
                scaled += down;
            }
        }
        debug!(deployment = %self.name(), cleaned, scaled, "scaled old replica sets down");
        Ok(cleaned + scaled > 0)
    }

    /// A Recreate step: all old pods gone first, then the new set at full size
    /// (upstream `rolloutRecreate`).
    async fn recreate(
        &mut self,
        new: Option<ReplicaSet>,
        mut olds: Vec<ReplicaSet>,
        selector: &Selector,
    ) -> Result<Action> {
        let mut scaled = false;
        for rs in olds.iter_mut().filter(|rs| spec_replicas(rs) > 0) {
            scaled |= self.scale_to(rs, 0).await?;
        }
        if scaled {
            return self.sync_rollout_status(new.as_ref(), &olds).await;
        }
        if self.old_pods_running(new.as_ref(), &olds, selector).await? {
            let next = self.sync_rollout_status(new.as_ref(), &olds).await?;
            // The sets report no replicas but pods still terminate: no event will say when
            // the last one is gone.
            let lingering = olds.iter().all(|rs| actual_replicas(rs) == 0);
            return Ok(if lingering { Action::requeue(OLD_PODS_POLL) } else { next });
        }
        let mut new = match new {
            Some(n) => n,
            None => self.create_new(&olds).await?,
        };
        self.scale_to(&mut new, desired(&self.d)).await?;
        if is_complete(&self.d, &self.status()) {
            self.cleanup(&olds).await?;
        }
        self.sync_rollout_status(Some(&new), &olds).await
    }

    /// Whether pods of the old sets still exist and have not finished (upstream
    /// `oldPodsRunning`).
    async fn old_pods_running(
        &self,
        new: Option<&ReplicaSet>,
        olds: &[ReplicaSet],
        selector: &Selector,
    ) -> Result<bool> {
        if olds.iter().map(actual_replicas).sum::<i32>() > 0 {
            return Ok(true);
        }
        let old_uids: HashSet<String> = olds.iter().filter_map(|rs| rs.uid()).collect();
        let new_uid = new.and_then(|rs| rs.uid());
        let list = self
            .pods
            .list(&ListParams::default().labels_from(selector))
            .await
            .map_err(api("listing pods"))?;
        Ok(list.items.iter().any(|p| {
            let owner = controller_of(&p.metadata).map(|r| r.uid.clone());
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            owner.is_some_and(|o| old_uids.contains(&o) && Some(&o) != new_uid.as_ref())
                && !matches!(phase, Some("Succeeded" | "Failed"))
        }))
    }

    /// Deletes the oldest empty sets beyond `revisionHistoryLimit` (upstream `cleanupDeployment`).
    async fn cleanup(&self, olds: &[ReplicaSet]) -> Result<()> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else { return Ok(()) };
        let mut cleanable: Vec<&ReplicaSet> =
            olds.iter().filter(|rs| rs.metadata.deletion_timestamp.is_none()).collect();
        let excess =
            usize::try_from(i64::try_from(cleanable.len()).unwrap_or(0) - i64::from(limit)).unwrap_or(0);
        if excess == 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| by_revision(a, b));
        for rs in cleanable.into_iter().take(excess) {
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            if actual_replicas(rs) != 0
                || spec_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let name = rs.name_any();
            match self.replica_sets.delete(&name, &DeleteParams::default()).await {
                Ok(_) => info!(deployment = %self.name(), replica_set = %name, "deleted old replica set"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api(format!("deleting replica set {name}"))(e)),
            }
        }
        Ok(())
    }

    /// Writes the computed status if it changed (upstream `syncDeploymentStatus`).
    async fn sync_status(&mut self, new: Option<&ReplicaSet>, olds: &[ReplicaSet]) -> Result<()> {
        let status = calculate_status(&all(new, olds), new, &self.d, self.now);
        if status != self.status() {
            self.write_status(status).await?;
        }
        Ok(())
    }

    /// Writes the computed status with the Progressing condition and the ReplicaFailure of the
    /// sets; when to look again for a progress deadline (upstream `syncRolloutStatus`).
    async fn sync_rollout_status(&mut self, new: Option<&ReplicaSet>, olds: &[ReplicaSet]) -> Result<Action> {
        let mut status = calculate_status(&all(new, olds), new, &self.d, self.now);
        let deadline = progress_deadline(&self.d);
        if deadline.is_none() {
            remove_condition(&mut status, PROGRESSING);
        }
        let current = condition(&self.status(), PROGRESSING).cloned();
        let complete_before = status.replicas == status.updated_replicas
            && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
        let name = self.name();
        let subject = |what: &str| match new {
            Some(rs) => format!("ReplicaSet {:?} {what}", rs.name_any()),
            None => format!("Deployment {name:?} {what}"),
        };
        if deadline.is_some() && !complete_before {
            if is_complete(&self.d, &status) {
                let msg = subject("has successfully progressed.");
                set_condition(
                    &mut status,
                    new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, self.now),
                );
            } else if is_progressing(&self.d, &status) {
                let mut cond =
                    new_condition(PROGRESSING, "True", RS_UPDATED, subject("is progressing."), self.now);
                if let Some(c) = &current {
                    if c.status == "True" {
                        cond.last_transition_time = c.last_transition_time.clone();
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, cond);
            } else if is_timed_out(&self.d, &status, self.now) {
                let msg = subject("has timed out progressing.");
                set_condition(&mut status, new_condition(PROGRESSING, "False", TIMED_OUT, msg, self.now));
            }
        }
        let failure = all(new, olds).into_iter().find_map(|rs| {
            let c = rs.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == REPLICA_FAILURE)?;
            Some(k8s_openapi::api::apps::v1::DeploymentCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time.clone(),
            })
        });
        match failure {
            Some(c) => set_condition(&mut status, c),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        if status != self.status() {
            self.write_status(status).await?;
        }
        Ok(self.requeue_if_stuck())
    }

    /// When a rollout shows no progress, look again when its deadline passes
    /// (upstream `requeueStuckDeployment`).
    fn requeue_if_stuck(&self) -> Action {
        let status = self.status();
        let (Some(deadline), Some(cond)) = (progress_deadline(&self.d), condition(&status, PROGRESSING))
        else {
            return Action::await_change();
        };
        if is_complete(&self.d, &status) || cond.reason.as_deref() == Some(TIMED_OUT) {
            return Action::await_change();
        }
        let from = cond.last_update_time.as_ref().map_or(self.now, |t| t.0);
        let at = from + SignedDuration::from_secs(i64::from(deadline));
        let after = at.duration_since(Timestamp::now());
        if after < SignedDuration::from_secs(1) {
            return Action::requeue(Duration::from_secs(1));
        }
        Action::requeue(after.unsigned_abs() + Duration::from_secs(1))
    }

    /// Replaces the deployment's status (a merge patch naming every field).
    async fn write_status(&mut self, status: DeploymentStatus) -> Result<()> {
        let mut value = serde_json::to_value(&status)
            .map_err(|e| Error::Invalid(format!("encoding the status of deployment {}: {e}", self.name())))?;
        if let Value::Object(fields) = &mut value {
            for key in STATUS_KEYS {
                fields.entry(*key).or_insert(Value::Null);
            }
        }
        let name = self.name();
        self.d = self
            .deployments
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": value})))
            .await
            .map_err(api(format!("updating the status of deployment {name}")))?;
        Ok(())
    }
}
