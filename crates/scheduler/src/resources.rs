//! What a pod requests and what a node offers, in milli-units per resource name.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use corten_schema::quantity::milli;

/// The CPU request a pod without one is scored as (upstream `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU: i128 = 100;
/// The memory request a pod without one is scored as (upstream `DefaultMemoryRequest`, 200 MB).
pub const DEFAULT_MEMORY_MILLI: i128 = 200 * 1024 * 1024 * 1000;

/// Amounts of resources by name (`cpu`, `memory`, `ephemeral-storage`, extended resources),
/// each in milli-units; a missing name is zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources(pub BTreeMap<String, i128>);

impl Resources {
    /// A resource list (`requests`, `allocatable`, `overhead`) read as milli-units; entries that
    /// are not quantities are skipped.
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        Resources(list.into_iter().flatten().filter_map(|(k, q)| Some((k.clone(), milli(&q.0)?))).collect())
    }

    /// The amount of `name`, zero when absent.
    pub fn get(&self, name: &str) -> i128 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Adds every amount of `other`.
    pub fn add(&mut self, other: &Resources) {
        for (k, v) in &other.0 {
            *self.0.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// Raises every amount to at least the one in `other`.
    pub fn max_with(&mut self, other: &Resources) {
        for (k, v) in &other.0 {
            let e = self.0.entry(k.clone()).or_insert(*v);
            *e = (*e).max(*v);
        }
    }
}

/// A container's requests; limits stand in for requests they lack (the API defaulting rule).
fn container_requests(c: &Container) -> Resources {
    let res = c.resources.as_ref();
    let mut r = Resources::from_list(res.and_then(|r| r.limits.as_ref()));
    for (k, v) in Resources::from_list(res.and_then(|r| r.requests.as_ref())).0 {
        r.0.insert(k, v);
    }
    r
}

/// A pod's effective requests as upstream `resourcehelper.PodRequests` computes them: the sum of
/// the regular containers and restartable (sidecar) init containers, raised to the largest
/// init-container step (each plain init container runs beside the sidecars started before it),
/// plus the pod overhead.
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = pod.spec.as_ref() else { return Resources::default() };
    let mut reqs = Resources::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let own = container_requests(c);
        let step = if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&own);
            sidecars.add(&own);
            sidecars.clone()
        } else {
            let mut step = own;
            step.add(&sidecars);
            step
        };
        init_peak.max_with(&step);
    }
    reqs.max_with(&init_peak);
    reqs.add(&Resources::from_list(spec.overhead.as_ref()));
    reqs
}

/// The (cpu, memory) a pod is scored with: its requests with upstream's defaults for containers
/// that request neither (so best-effort pods still spread).
pub fn non_zero_requests(pod: &Pod) -> (i128, i128) {
    let Some(spec) = pod.spec.as_ref() else { return (0, 0) };
    let non_zero = |c: &Container| {
        let r = container_requests(c);
        let cpu = r.0.get("cpu").copied().unwrap_or(DEFAULT_MILLI_CPU);
        let mem = r.0.get("memory").copied().unwrap_or(DEFAULT_MEMORY_MILLI);
        (cpu, mem)
    };
    let (mut cpu, mut mem) = spec.containers.iter().map(non_zero).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    for c in spec.init_containers.iter().flatten() {
        let (c_cpu, c_mem) = non_zero(c);
        cpu = cpu.max(c_cpu);
        mem = mem.max(c_mem);
    }
    let overhead = Resources::from_list(spec.overhead.as_ref());
    (cpu + overhead.get("cpu"), mem + overhead.get("memory"))
}

/// What the node offers to pods (`status.allocatable`, or `status.capacity` when unset).
pub fn allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    Resources::from_list(status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn cpu(m: &str) -> serde_json::Value {
        json!({"name": m, "image": "i", "resources": {"requests": {"cpu": m}}})
    }

    #[test]
    fn regular_containers_add_up_and_overhead_is_added() {
        let p = pod(json!({"containers": [cpu("100m"), cpu("200m")], "overhead": {"cpu": "50m"}}));
        assert_eq!(pod_requests(&p).get("cpu"), 350);
    }

    #[test]
    fn a_large_init_container_dominates_the_regular_ones() {
        let p = pod(json!({"containers": [cpu("100m")], "initContainers": [cpu("500m"), cpu("200m")]}));
        assert_eq!(pod_requests(&p).get("cpu"), 500);
    }

    #[test]
    fn sidecars_run_beside_later_init_containers_and_the_regular_ones() {
        let mut sidecar = cpu("300m");
        sidecar["restartPolicy"] = json!("Always");
        let p = pod(json!({"containers": [cpu("100m")], "initContainers": [sidecar, cpu("500m")]}));
        // max(100 + 300, 300 + 500)
        assert_eq!(pod_requests(&p).get("cpu"), 800);
    }

    #[test]
    fn limits_stand_in_for_missing_requests() {
        let p = pod(json!({"containers": [{"name": "c", "resources": {"limits": {"memory": "1Ki"}}}]}));
        assert_eq!(pod_requests(&p).get("memory"), 1_024_000);
    }

    #[test]
    fn best_effort_pods_are_scored_with_default_requests() {
        let p = pod(json!({"containers": [{"name": "c"}]}));
        assert_eq!(non_zero_requests(&p), (DEFAULT_MILLI_CPU, DEFAULT_MEMORY_MILLI));
        assert_eq!(pod_requests(&p), Resources::default());
    }
}
