//! DefaultPreemption: when a pod fits nowhere, find the node where evicting the fewest and
//! least important lower-priority pods makes it fit (sparing pods a PodDisruptionBudget
//! protects where possible), or explain in upstream's words why preemption cannot help.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;

use crate::cycle::{Diagnosis, Filters};
use crate::filters::Failure;
use crate::selectors::{label_selector_matches, labels_of};
use crate::snapshot::Snapshot;

/// Upstream's reason for nodes where evictions cannot help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Upstream's reason for nodes without lower-priority pods.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// The outcome of preemption for one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Preemption {
    /// Evicting `victims` from `node` makes room; the pod is nominated to it.
    Nominate {
        /// The node.
        node: String,
        /// The pods to evict.
        victims: Vec<Arc<Pod>>,
    },
    /// Preemption cannot help; the message continues the pod's `FitError`
    /// (`preemption: 0/3 nodes are available: ...`).
    Fails(String),
}

/// A pod's priority (`spec.priority`, zero when unset).
pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// `pod` with `spec.priority` (and an unset `preemptionPolicy`) taken from its PriorityClass,
/// or the global default class, when the API server did not fill them in.
pub fn with_priority(pod: Arc<Pod>, classes: &[Arc<PriorityClass>]) -> Arc<Pod> {
    let Some(spec) = pod.spec.as_ref().filter(|s| s.priority.is_none()) else { return pod };
    let name = spec.priority_class_name.as_deref().filter(|n| !n.is_empty());
    let class = match name {
        Some(name) => classes.iter().find(|c| c.metadata.name.as_deref() == Some(name)),
        None => classes.iter().find(|c| c.global_default == Some(true)),
    };
    // The two system classes exist in every cluster, even where nobody created them.
    let (value, policy) = match (class, name) {
        (Some(c), _) => (c.value, c.preemption_policy.clone()),
        (None, Some("system-node-critical")) => (2_000_001_000, None),
        (None, Some("system-cluster-critical")) => (2_000_000_000, None),
        (None, _) => return pod,
    };
    let mut resolved = (*pod).clone();
    if let Some(s) = resolved.spec.as_mut() {
        s.priority = Some(value);
        if s.preemption_policy.is_none() {
            s.preemption_policy = policy;
        }
    }
    Arc::new(resolved)
}

/// `snapshot` with the pods that preemption nominated to a node counted on it, when they are at
/// least as important as `pod`: the room made for them is not given away (upstream
/// `RunFilterPluginsWithNominatedPods`). `None` when there is nothing to reserve.
pub fn reserve_nominated(snapshot: &Snapshot, pod: &Pod, nominated: &[Arc<Pod>]) -> Option<Snapshot> {
    let mut reserving = nominated
        .iter()
        .filter(|q| q.metadata.uid != pod.metadata.uid && priority(q) >= priority(pod))
        .filter_map(|q| {
            let node = q.status.as_ref()?.nominated_node_name.clone().filter(|n| !n.is_empty())?;
            let mut placed = (**q).clone();
            placed.spec.as_mut()?.node_name = Some(node);
            Some(Arc::new(placed))
        })
        .peekable();
    reserving.peek()?;
    let mut view = snapshot.clone();
    for q in reserving {
        view.add_pod(q);
    }
    Some(view)
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// The victims on one node, the PodDisruptionBudgets their eviction violates, and the node.
struct Candidate {
    node: String,
    victims: Vec<Arc<Pod>>,
    pdb_violations: usize,
}

/// Splits `pods` (most important first) into those whose eviction a PDB forbids and the rest.
fn split_by_pdb(pods: Vec<Arc<Pod>>, pdbs: &[Arc<PodDisruptionBudget>]) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let mut allowed: Vec<i32> =
        pdbs.iter().map(|p| p.status.as_ref().map(|s| s.disruptions_allowed).unwrap_or(0)).collect();
    pods.into_iter().partition(|pod| {
        let mut violates = false;
        for (i, pdb) in pdbs.iter().enumerate() {
            let same_ns = pdb.metadata.namespace == pod.metadata.namespace;
            let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
            let selected = selector.is_some_and(|s| label_selector_matches(s, labels_of(&pod.metadata)));
            let disrupted = pdb
                .status
                .as_ref()
                .and_then(|s| s.disrupted_pods.as_ref())
                .is_some_and(|d| pod.metadata.name.as_ref().is_some_and(|n| d.contains_key(n)));
            if same_ns && selected && !disrupted {
                allowed[i] -= 1;
                violates |= allowed[i] < 0;
            }
        }
        violates
    })
}

/// The fewest victims on node `i` that let `pod` fit: every lower-priority pod is removed, then
/// the most important are given back while the pod still fits (PDB-protected ones first).
fn select_victims(
    pod: &Pod,
    snapshot: &Snapshot,
    i: usize,
    pdbs: &[Arc<PodDisruptionBudget>],
) -> Result<Candidate, Failure> {
    let mut potential: Vec<Arc<Pod>> =
        snapshot.nodes[i].pods.iter().filter(|p| priority(p) < priority(pod)).cloned().collect();
    if potential.is_empty() {
        return Err(Failure::unresolvable(NO_VICTIMS));
    }
    let mut trial = snapshot.clone();
    for v in &potential {
        trial.nodes[i].remove_pod(uid(v));
    }
    if let Some(f) = Filters::new(pod, &trial).check(&trial.nodes[i]) {
        return Err(f);
    }
    potential.sort_by(|a, b| {
        priority(b)
            .cmp(&priority(a))
            .then_with(|| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp))
    });
    let (violating, rest) = split_by_pdb(potential, pdbs);
    let violating_count = violating.len();
    let mut candidate =
        Candidate { node: trial.nodes[i].name().to_string(), victims: Vec::new(), pdb_violations: 0 };
    for (n, v) in violating.into_iter().chain(rest).enumerate() {
        trial.nodes[i].add_pod(v.clone());
        if Filters::new(pod, &trial).check(&trial.nodes[i]).is_some() {
            trial.nodes[i].remove_pod(uid(&v));
            candidate.pdb_violations += usize::from(n < violating_count);
            candidate.victims.push(v);
        }
    }
    Ok(candidate)
}

/// Runs preemption for `pod`, which failed on every node as `diagnosis` says.
pub fn preempt(
    pod: &Pod,
    snapshot: &Snapshot,
    diagnosis: &Diagnosis,
    pdbs: &[Arc<PodDisruptionBudget>],
) -> Preemption {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Preemption::Fails("preemption: not eligible due to preemptionPolicy=Never.".into());
    }
    let nominated = pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref());
    if let Some(info) = nominated.and_then(|n| snapshot.nodes.iter().find(|i| i.name() == n)) {
        let waiting =
            info.pods.iter().any(|p| p.metadata.deletion_timestamp.is_some() && priority(p) < priority(pod));
        if waiting {
            return Preemption::Fails(
                "preemption: not eligible due to a terminating pod on the nominated node.".into(),
            );
        }
    }
    let mut statuses = BTreeMap::new();
    let mut candidates = Vec::new();
    for (i, info) in snapshot.nodes.iter().enumerate() {
        if diagnosis.failures.get(info.name()).is_none_or(|f| f.unresolvable) {
            statuses.insert(info.name().to_string(), Failure::unresolvable(NOT_HELPFUL));
            continue;
        }
        match select_victims(pod, snapshot, i, pdbs) {
            Ok(c) => candidates.push(c),
            Err(f) => {
                statuses.insert(info.name().to_string(), f);
            }
        }
    }
    // Upstream's order: fewest PDB violations, lowest most-important victim, lowest priority
    // sum, fewest victims.
    let best = candidates.into_iter().min_by_key(|c| {
        let top = c.victims.iter().map(|v| priority(v)).max().unwrap_or(i32::MIN);
        let sum: i64 = c.victims.iter().map(|v| i64::from(priority(v))).sum();
        (c.pdb_violations, top, sum, c.victims.len())
    });
    match best {
        Some(c) => Preemption::Nominate { node: c.node, victims: c.victims },
        None => {
            let d = Diagnosis { num_nodes: snapshot.nodes.len(), failures: statuses };
            Preemption::Fails(format!("preemption: {}", d.message(None)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cycle::schedule;
    use crate::testutil::{node, pod};
    use serde_json::json;

    fn asking(name: &str, cpu: &str, prio: i32, on: Option<&str>) -> Arc<Pod> {
        let mut p = pod(
            name,
            json!({"spec": {"priority": prio, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}),
        );
        p.spec.as_mut().unwrap().node_name = on.map(String::from);
        Arc::new(p)
    }

    fn one_cpu(name: &str) -> Arc<k8s_openapi::api::core::v1::Node> {
        Arc::new(node(name, json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}})))
    }

    fn run(p: &Pod, s: &Snapshot, pdbs: &[Arc<PodDisruptionBudget>]) -> Preemption {
        let diagnosis = schedule(p, s, &mut rand::rng()).unwrap_err();
        preempt(p, s, &diagnosis, pdbs)
    }

    #[test]
    fn the_fewest_lower_priority_pods_are_evicted() {
        let s = Snapshot::new(
            [one_cpu("a")],
            [
                asking("low-1", "400m", 0, Some("a")),
                asking("low-2", "400m", 0, Some("a")),
                asking("mid", "200m", 5, Some("a")),
            ],
        );
        let Preemption::Nominate { node, victims } = run(&asking("high", "300m", 10, None), &s, &[]) else {
            panic!("expected a nomination")
        };
        assert_eq!(node, "a");
        assert_eq!(victims.len(), 1, "evicting one 400m pod is enough: {victims:?}");
        assert_eq!(priority(&victims[0]), 0);
    }

    #[test]
    fn the_node_with_less_important_victims_is_chosen() {
        let s = Snapshot::new(
            [one_cpu("a"), one_cpu("b")],
            [asking("mid", "1", 5, Some("a")), asking("low", "1", 1, Some("b"))],
        );
        let Preemption::Nominate { node, .. } = run(&asking("high", "1", 10, None), &s, &[]) else {
            panic!("expected a nomination")
        };
        assert_eq!(node, "b");
    }

    #[test]
    fn pods_a_budget_protects_are_spared_when_others_suffice() {
        let mut guarded = (*asking("guarded", "500m", 0, Some("a"))).clone();
        guarded.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        let s = Snapshot::new([one_cpu("a")], [Arc::new(guarded), asking("plain", "500m", 0, Some("a"))]);
        let pdb: PodDisruptionBudget =
            serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "db"}}}, "status": {"disruptionsAllowed": 0,
            "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}}))
            .unwrap();
        let Preemption::Nominate { victims, .. } =
            run(&asking("high", "500m", 10, None), &s, &[Arc::new(pdb)])
        else {
            panic!("expected a nomination")
        };
        let names: Vec<_> = victims.iter().map(|v| v.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, vec!["plain"]);
    }

    #[test]
    fn equal_priority_pods_are_never_victims() {
        let taint = json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}});
        let s =
            Snapshot::new([one_cpu("a"), Arc::new(node("t", taint))], [asking("peer", "1", 0, Some("a"))]);
        assert_eq!(
            run(&asking("p", "1", 0, None), &s, &[]),
            Preemption::Fails(
                "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, \
                 1 Preemption is not helpful for scheduling."
                    .into()
            )
        );
    }

    #[test]
    fn room_made_for_a_nominated_pod_is_not_given_to_a_less_important_one() {
        let s = Snapshot::new([one_cpu("a")], []);
        let mut preemptor = (*asking("high", "1", 10, None)).clone();
        preemptor.status = Some(serde_json::from_value(json!({"nominatedNodeName": "a"})).unwrap());
        let nominated = [Arc::new(preemptor)];
        let low = asking("low", "1", 0, None);
        let view = reserve_nominated(&s, &low, &nominated).expect("a reservation");
        assert!(schedule(&low, &view, &mut rand::rng()).is_err());
        let higher = asking("higher", "1", 20, None);
        assert!(reserve_nominated(&s, &higher, &nominated).is_none());
        assert!(reserve_nominated(&s, &nominated[0], &nominated).is_none(), "a pod does not block itself");
    }

    #[test]
    fn priority_comes_from_the_named_class_or_the_global_default() {
        let class = |name: &str, value: i32, default: bool| -> Arc<PriorityClass> {
            Arc::new(
                serde_json::from_value(
                    json!({"metadata": {"name": name}, "value": value, "globalDefault": default,
                    "preemptionPolicy": "Never"}),
                )
                .unwrap(),
            )
        };
        let classes = [class("high", 1000, false), class("base", 7, true)];
        let named = |n: &str| Arc::new(pod("p", json!({"spec": {"priorityClassName": n}})));
        let high = with_priority(named("high"), &classes);
        assert_eq!(priority(&high), 1000);
        assert_eq!(high.spec.as_ref().unwrap().preemption_policy.as_deref(), Some("Never"));
        assert_eq!(priority(&with_priority(Arc::new(pod("p", json!({}))), &classes)), 7);
        assert_eq!(priority(&with_priority(named("system-node-critical"), &[])), 2_000_001_000);
        let explicit = Arc::new(pod("p", json!({"spec": {"priority": 3, "priorityClassName": "high"}})));
        assert_eq!(priority(&with_priority(explicit, &classes)), 3, "the API server's value wins");
    }

    #[test]
    fn a_pod_that_never_preempts_says_so() {
        let s = Snapshot::new([one_cpu("a")], [asking("low", "1", 0, Some("a"))]);
        let mut p = (*asking("p", "1", 10, None)).clone();
        p.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        assert_eq!(
            run(&p, &s, &[]),
            Preemption::Fails("preemption: not eligible due to preemptionPolicy=Never.".into())
        );
    }
}
