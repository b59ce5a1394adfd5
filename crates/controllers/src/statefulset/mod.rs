//! The StatefulSet controller: pods with stable names `<set>-<ordinal>`, created in order one at a
//! time (OrderedReady) or all at once (Parallel), their claims from volume claim templates,
//! rolling updates in reverse ordinal order down to the partition (or OnDelete), and the
//! ControllerRevisions and status `kubectl rollout status sts/x` reads.

mod identity;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::error::api;
use crate::history;
use crate::pods;
use crate::{Ctx, Result};

/// How soon a failed sync is retried.
const RETRY: Duration = Duration::from_secs(2);

struct State {
    client: Client,
    recorder: Recorder,
}

/// Runs the StatefulSet controller until shutdown.
pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<StatefulSet>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default());
    let reporter = Reporter { controller: "statefulset-controller".into(), instance: None };
    let state = Arc::new(State { client: client.clone(), recorder: Recorder::new(client, reporter) });
    let shutdown = ctx.shutdown.clone();
    pods::drive(controller, reconcile, state, RETRY, shutdown, "stateful set").await;
    Ok(())
}

/// What one sync decided to do.
enum Step<'a> {
    Create(i32),
    Delete(&'a Pod),
}

async fn reconcile(set: Arc<StatefulSet>, state: Arc<State>) -> Result<Action> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let spec = set.spec.clone().unwrap_or_default();
    let old_status = set.status.clone().unwrap_or_default();

    // Revisions: the update revision is the template now, the current one what the pods ran
    // before the rollout.
    let revisions = history::owned(&state.client, set.as_ref()).await?;
    // Upstream always hashes a collision count, 0 until there was a collision.
    let hash = history::hash(&spec.template, Some(old_status.collision_count.unwrap_or(0)));
    history::ensure(&state.client, set.as_ref(), &spec.template, &hash, &revisions).await?;
    let update_revision = format!("{name}-{hash}");
    let current_rev = old_status
        .current_revision
        .as_ref()
        .and_then(|c| revisions.iter().find(|r| r.metadata.name.as_ref() == Some(c)));
    let current_revision = current_rev.map_or_else(|| update_revision.clone(), |r| r.name_any());
    let current_template =
        current_rev.and_then(history::template_of).unwrap_or_else(|| spec.template.clone());

    let pods_api = Api::<Pod>::namespaced(state.client.clone(), &ns);
    let list = pods_api.list(&ListParams::default()).await.map_err(api(format!("listing pods in {ns}")))?;
    let member = |p: &Pod| identity::ordinal(&name, &p.name_any()).is_some();
    let claimed =
        history::claim_pods(&state.client, set.as_ref(), Some(&spec.selector), list.items, member).await?;
    let owned: Vec<&Pod> = claimed.iter().collect();
    let by_ordinal: BTreeMap<i32, &Pod> =
        owned.iter().filter_map(|p| Some((identity::ordinal(&name, &p.name_any())?, *p))).collect();

    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let replicas = spec.replicas.unwrap_or(1);
    let end = start + replicas;
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let partition = strategy.rolling_update.and_then(|r| r.partition).unwrap_or(0);
    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let terminating = |p: &Pod| p.metadata.deletion_timestamp.is_some();
    let healthy = |p: &Pod| {
        !terminating(p)
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && pods::is_ready(p)
    };
    let revision = |p: &Pod| history::revision_of(&p.metadata).unwrap_or_default().to_string();

    let (mut steps, blocked) = plan(&by_ordinal, start, end, parallel, &healthy, &terminating);
    if steps.is_empty() && !blocked && rolling {
        // One pod at a time from the highest ordinal down to the partition.
        for ord in (start + partition.max(0)..end).rev() {
            let Some(pod) = by_ordinal.get(&ord) else { break };
            if revision(pod) != update_revision && !terminating(pod) {
                steps.push(Step::Delete(pod));
                break;
            }
            if !healthy(pod) {
                break;
            }
        }
    }

    let mut failure = None;
    for step in &steps {
        let outcome = match step {
            Step::Create(ord) => {
                let (template, rev) = if rolling && *ord < start + partition {
                    (&current_template, &current_revision)
                } else {
                    (&spec.template, &update_revision)
                };
                create(&state, &set, template, rev, *ord).await
            }
            Step::Delete(pod) => {
                delete(&state, &set, pod, !by_ordinal_in_range(pod, &name, start, end)).await
            }
        };
        if let Err(e) = outcome {
            failure = Some(e);
            break;
        }
    }

    // Status, from the pods seen at the start of this sync (their events bring the next one).
    let count =
        |f: &dyn Fn(&Pod) -> bool| i32::try_from(owned.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX);
    let n_replicas = count(&|_| true);
    let ready = count(&|p| healthy(p));
    let available = count(&|p| healthy(p) && pods::is_available(p, min_ready, now));
    let mut current = count(&|p| !terminating(p) && revision(p) == current_revision);
    let updated = count(&|p| !terminating(p) && revision(p) == update_revision);
    let mut status_current_revision = current_revision.clone();
    if rolling && updated == n_replicas && ready == n_replicas && n_replicas == replicas {
        status_current_revision = update_revision.clone();
        current = updated;
    }
    let status = json!({"status": {
        "replicas": n_replicas,
        "readyReplicas": ready,
        "availableReplicas": available,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": status_current_revision,
        "updateRevision": update_revision,
        "observedGeneration": set.metadata.generation,
        "collisionCount": old_status.collision_count.unwrap_or(0),
    }});
    let before = serde_json::to_value(&set.status).unwrap_or_default();
    if history::status_changed(&before, &status) {
        let sets = Api::<StatefulSet>::namespaced(state.client.clone(), &ns);
        sets.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .map_err(api(format!("updating the status of stateful set {ns}/{name}")))?;
    }
    let keep = [hash.as_str(), current_revision.trim_start_matches(&format!("{name}-"))];
    history::prune(&state.client, &revisions, &keep, spec.revision_history_limit.unwrap_or(10)).await;
    if let Some(e) = failure {
        return Err(e);
    }
    let next = owned.iter().filter_map(|p| pods::until_available(p, min_ready, now)).min();
    Ok(match next {
        Some(d) => Action::requeue(d.unsigned_abs() + Duration::from_millis(100)),
        None => Action::await_change(),
    })
}

fn by_ordinal_in_range(pod: &Pod, set: &str, start: i32, end: i32) -> bool {
    identity::ordinal(set, &pod.name_any()).is_some_and(|o| (start..end).contains(&o))
}

/// What to create and delete this sync (upstream `updateStatefulSet` before the update loop):
/// finished pods are replaced, missing ones created in order, pods beyond the replicas deleted
/// highest first. OrderedReady stops at the first pod that is not Running and Ready (and says
/// so: then no pod is updated either).
fn plan<'a>(
    pods: &BTreeMap<i32, &'a Pod>,
    start: i32,
    end: i32,
    parallel: bool,
    healthy: &dyn Fn(&Pod) -> bool,
    terminating: &dyn Fn(&Pod) -> bool,
) -> (Vec<Step<'a>>, bool) {
    let mut steps = Vec::new();
    let finished =
        |p: &Pod| matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed" | "Succeeded"));
    for ord in start..end {
        match pods.get(&ord) {
            None => {
                steps.push(Step::Create(ord));
                if !parallel {
                    return (steps, true);
                }
            }
            Some(pod) if finished(pod) && !terminating(pod) => {
                steps.push(Step::Delete(pod));
                if !parallel {
                    return (steps, true);
                }
            }
            Some(pod) if !healthy(pod) && !parallel => return (steps, true),
            Some(_) => {}
        }
    }
    let condemned = pods.iter().rev().filter(|(o, _)| !(start..end).contains(*o)).map(|(_, p)| *p);
    for pod in condemned {
        if terminating(pod) {
            if parallel {
                continue;
            }
            return (steps, true);
        }
        steps.push(Step::Delete(pod));
        if !parallel {
            return (steps, true);
        }
    }
    (steps, false)
}

/// Creates the claims (if missing) and the pod with `ordinal`.
async fn create(
    state: &State,
    set: &StatefulSet,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    revision: &str,
    ordinal: i32,
) -> Result<()> {
    let ns = set.namespace().unwrap_or_default();
    let claims_api = Api::<PersistentVolumeClaim>::namespaced(state.client.clone(), &ns);
    for claim in identity::claims(set, ordinal) {
        let claim_name = claim.name_any();
        match claims_api.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                let note = format!(
                    "create Claim {claim_name} Pod {}-{ordinal} in StatefulSet {} success",
                    set.name_any(),
                    set.name_any()
                );
                pods::emit(&state.recorder, set, false, "SuccessfulCreate", note).await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(api(format!("creating claim {ns}/{claim_name}"))(e)),
        }
    }
    let pod = identity::new_pod(set, template, revision, ordinal);
    let pod_name = pod.name_any();
    let pods_api = Api::<Pod>::namespaced(state.client.clone(), &ns);
    match pods_api.create(&PostParams::default(), &pod).await {
        Ok(_) => {
            let note = format!("create Pod {pod_name} in StatefulSet {} successful", set.name_any());
            pods::emit(&state.recorder, set, false, "SuccessfulCreate", note).await;
            Ok(())
        }
        // Still terminating from an earlier life, or created by a sync this one did not see.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => {
            let note = format!("create Pod {pod_name} in StatefulSet {} failed error: {e}", set.name_any());
            pods::emit(&state.recorder, set, true, "FailedCreate", note).await;
            Err(api(format!("creating pod {ns}/{pod_name}"))(e))
        }
    }
}

/// Deletes `pod`; when it is scaled away and the retention policy says so, its claims too.
async fn delete(state: &State, set: &StatefulSet, pod: &Pod, condemned: bool) -> Result<()> {
    let ns = set.namespace().unwrap_or_default();
    let pod_name = pod.name_any();
    let pods_api = Api::<Pod>::namespaced(state.client.clone(), &ns);
    match pods_api.delete(&pod_name, &Default::default()).await {
        Ok(_) => {
            let note = format!("delete Pod {pod_name} in StatefulSet {} successful", set.name_any());
            pods::emit(&state.recorder, set, false, "SuccessfulDelete", note).await;
        }
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(api(format!("deleting pod {ns}/{pod_name}"))(e)),
    }
    let delete_claims = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref())
        .and_then(|p| p.when_scaled.as_deref())
        == Some("Delete");
    if condemned && delete_claims {
        let ordinal = identity::ordinal(&set.name_any(), &pod_name).unwrap_or_default();
        let claims_api = Api::<PersistentVolumeClaim>::namespaced(state.client.clone(), &ns);
        for claim in identity::claims(set, ordinal) {
            match claims_api.delete(&claim.name_any(), &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api(format!("deleting claim {ns}/{}", claim.name_any()))(e)),
            }
        }
    }
    Ok(())
}
