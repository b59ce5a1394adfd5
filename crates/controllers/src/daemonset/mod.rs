//! The DaemonSet controller: one pod per eligible node, pinned to it by node affinity (the
//! scheduler binds it), rolled out by RollingUpdate (maxUnavailable, maxSurge) or OnDelete, with
//! ControllerRevisions and the status `kubectl rollout status ds/x` reads.

mod nodes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::deployment::util::scaled_value;
use crate::error::api;
use crate::history::{self, REVISION_HASH};
use crate::pods::{self, controller_ref, pod_from_template};
use crate::{Ctx, Result};

/// How soon a failed sync is retried.
const RETRY: Duration = Duration::from_secs(2);

struct State {
    client: Client,
    recorder: Recorder,
}

/// Runs the DaemonSet controller until shutdown.
pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<DaemonSet>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default());
    let sets = controller.store();
    // Any node change may change where every daemon set should run.
    let controller =
        controller.watches(Api::<Node>::all(client.clone()), watcher::Config::default(), move |_: Node| {
            sets.state().iter().map(|ds| ObjectRef::from_obj(ds.as_ref())).collect::<Vec<_>>()
        });
    let reporter = Reporter { controller: "daemonset-controller".into(), instance: None };
    let state = Arc::new(State { client: client.clone(), recorder: Recorder::new(client, reporter) });
    let shutdown = ctx.shutdown.clone();
    pods::drive(controller, reconcile, state, RETRY, shutdown, "daemon set").await;
    Ok(())
}

/// What one node has and needs.
struct Placement<'a> {
    node: String,
    should_run: bool,
    /// Whether pods already there may stay even if no new one should be started.
    may_stay: bool,
    pods: Vec<&'a Pod>,
}

async fn reconcile(ds: Arc<DaemonSet>, state: Arc<State>) -> Result<Action> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let spec = ds.spec.clone().unwrap_or_default();
    let pods_api = Api::<Pod>::namespaced(state.client.clone(), &ns);

    let revisions = history::owned(&state.client, ds.as_ref()).await?;
    let collision = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = history::hash(&spec.template, collision);
    history::ensure(&state.client, ds.as_ref(), &spec.template, &hash, &revisions).await?;
    history::prune(&state.client, &revisions, &[&hash], spec.revision_history_limit.unwrap_or(10)).await;

    let mut template_spec = spec.template.spec.clone().unwrap_or_default();
    nodes::add_default_tolerations(&mut template_spec);
    let node_list = Api::<Node>::all(state.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(api("listing nodes"))?;
    let pod_list =
        pods_api.list(&ListParams::default()).await.map_err(api(format!("listing pods in {ns}")))?;
    let claimed =
        history::claim_pods(&state.client, ds.as_ref(), Some(&spec.selector), pod_list.items, |_| true)
            .await?;
    let owned: Vec<&Pod> = claimed.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();

    let mut placements: BTreeMap<String, Placement> = node_list
        .items
        .iter()
        .map(|n| {
            let should_run = nodes::should_run(&template_spec, n);
            let may_stay = nodes::should_continue_running(&template_spec, n);
            (n.name_any(), Placement { node: n.name_any(), should_run, may_stay, pods: Vec::new() })
        })
        .collect();
    let mut orphaned = Vec::new();
    for pod in &owned {
        match nodes::node_of(pod).and_then(|n| placements.get_mut(&n)) {
            Some(p) => p.pods.push(pod),
            // The node is gone.
            None => orphaned.push(*pod),
        }
    }

    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let available = |p: &Pod| pods::is_available(p, min_ready, now);
    let updated = |p: &Pod| history::revision_of(&p.metadata) == Some(hash.as_str());

    let desired_n = placements.values().filter(|p| p.should_run).count();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let ru = strategy.rolling_update.unwrap_or_default();
    let total = i32::try_from(desired_n).unwrap_or(i32::MAX);
    let surge = if rolling {
        ru.max_surge.as_ref().map_or(Ok(0), |v| scaled_value(v, total, true)).unwrap_or(0)
    } else {
        0
    };
    let max_unavailable = ru
        .max_unavailable
        .as_ref()
        .map_or(Ok(1), |v| scaled_value(v, total, true))
        .unwrap_or(1)
        .max(i32::from(surge == 0));

    let mut create: Vec<String> = Vec::new();
    let mut delete: Vec<&Pod> = orphaned;
    for p in placements.values() {
        if !p.should_run {
            if !p.may_stay {
                delete.extend(p.pods.iter().copied());
            }
            continue;
        }
        // Failed pods are replaced; of surplus pods the oldest stays (with surge, the oldest
        // old and the oldest updated one).
        let (failed, mut live): (Vec<&Pod>, Vec<&Pod>) = p
            .pods
            .iter()
            .partition(|pod| pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"));
        delete.extend(failed);
        if live.is_empty() {
            create.push(p.node.clone());
            continue;
        }
        live.sort_by_key(|pod| pod.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let mut kept_old = false;
        let mut kept_new = false;
        for pod in live {
            let keep = if surge > 0 && updated(pod) { &mut kept_new } else { &mut kept_old };
            if *keep {
                delete.push(pod);
            }
            *keep = true;
        }
    }

    let desired: Vec<&Placement> = placements.values().filter(|p| p.should_run).collect();
    if rolling {
        roll(&desired, surge, max_unavailable, &updated, &available, &mut create, &mut delete);
    }

    let mut seen = std::collections::HashSet::new();
    delete.retain(|p| seen.insert(p.metadata.uid.clone()));
    let mut failure = None;
    for node in &create {
        let template =
            PodTemplateSpec { metadata: spec.template.metadata.clone(), spec: Some(template_spec.clone()) };
        let mut pod = pod_from_template(&template, &name, controller_ref(ds.as_ref()));
        pod.metadata.labels.get_or_insert_with(BTreeMap::new).insert(REVISION_HASH.into(), hash.clone());
        if let Some(s) = pod.spec.as_mut() {
            nodes::pin_to_node(s, node);
        }
        match pods_api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let note = format!("Created pod: {}", created.name_any());
                pods::emit(&state.recorder, ds.as_ref(), false, "SuccessfulCreate", note).await;
            }
            Err(e) => {
                pods::emit(
                    &state.recorder,
                    ds.as_ref(),
                    true,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                )
                .await;
                failure = Some(api(format!("creating a daemon pod of {ns}/{name} on {node}"))(e));
            }
        }
    }
    for pod in &delete {
        match pods_api.delete(&pod.name_any(), &Default::default()).await {
            Ok(_) => {
                let note = format!("Deleted pod: {}", pod.name_any());
                pods::emit(&state.recorder, ds.as_ref(), false, "SuccessfulDelete", note).await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => failure = Some(api(format!("deleting pod {ns}/{}", pod.name_any()))(e)),
        }
    }

    // Status, from what was seen before this sync's changes (the next event recounts).
    let count = |f: &dyn Fn(&Placement) -> bool| -> i32 {
        i32::try_from(placements.values().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let desired_n = i32::try_from(desired_n).unwrap_or(i32::MAX);
    let number_available = count(&|p| p.should_run && p.pods.iter().any(|pod| available(pod)));
    let status = json!({"status": {
        "desiredNumberScheduled": desired_n,
        "currentNumberScheduled": count(&|p| p.should_run && !p.pods.is_empty()),
        "numberMisscheduled": count(&|p| !p.should_run && !p.pods.is_empty()),
        "numberReady": count(&|p| p.should_run && p.pods.iter().any(|pod| pods::is_ready(pod))),
        "numberAvailable": number_available,
        "numberUnavailable": desired_n - number_available,
        "updatedNumberScheduled": count(&|p| p.should_run && p.pods.iter().any(|pod| updated(pod))),
        "observedGeneration": ds.metadata.generation,
    }});
    let current = serde_json::to_value(&ds.status).unwrap_or_default();
    if history::status_changed(&current, &status) {
        let sets = Api::<DaemonSet>::namespaced(state.client.clone(), &ns);
        sets.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .map_err(api(format!("updating the status of daemon set {ns}/{name}")))?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    // Come back when a ready pod may have become available.
    let next = owned.iter().filter_map(|p| pods::until_available(p, min_ready, now)).min();
    Ok(match next {
        Some(d) => Action::requeue(d.unsigned_abs() + Duration::from_millis(100)),
        None if !create.is_empty() || !delete.is_empty() => Action::requeue(Duration::from_secs(5)),
        None => Action::await_change(),
    })
}

/// One step of a rolling update (upstream `rollingUpdate`): with no surge, delete old pods while
/// at most `max_unavailable` nodes lack an available pod; with surge, start an updated pod next
/// to old available ones (at most `surge` at a time) and delete the old pod once the new one
/// is available.
fn roll<'a>(
    desired: &[&Placement<'a>],
    surge: i32,
    max_unavailable: i32,
    updated: &dyn Fn(&Pod) -> bool,
    available: &dyn Fn(&Pod) -> bool,
    create: &mut Vec<String>,
    delete: &mut Vec<&'a Pod>,
) {
    let unavailable = desired.iter().filter(|p| !p.pods.iter().any(|pod| available(pod))).count();
    let mut budget = usize::try_from(max_unavailable).unwrap_or(0).saturating_sub(unavailable);
    if surge == 0 {
        for p in desired {
            let Some(old) = p.pods.iter().find(|pod| !updated(pod)) else { continue };
            if p.pods.len() > 1 {
                continue;
            }
            if !available(old) {
                // Already unavailable: replacing it costs nothing.
                delete.push(old);
            } else if budget > 0 {
                budget -= 1;
                delete.push(old);
            }
        }
        return;
    }
    let surging =
        desired.iter().filter(|p| p.pods.iter().any(|pod| updated(pod)) && p.pods.len() > 1).count();
    let mut surge_budget = usize::try_from(surge).unwrap_or(0).saturating_sub(surging);
    for p in desired {
        let old: Vec<&Pod> = p.pods.iter().copied().filter(|pod| !updated(pod)).collect();
        if old.is_empty() {
            continue;
        }
        let new = p.pods.iter().find(|pod| updated(pod));
        match new {
            Some(new) if available(new) => delete.extend(old),
            Some(_) => {}
            None if old.iter().all(|pod| !available(pod)) && budget > 0 => {
                budget -= 1;
                delete.extend(old);
            }
            None if surge_budget > 0 => {
                surge_budget -= 1;
                create.push(p.node.clone());
            }
            None => {}
        }
    }
}
