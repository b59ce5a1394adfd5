//! Resource lists (`requests`, `limits`, `hard`, `used`) of JSON objects as exact quantities;
//! the effective requests and limits of a pod (upstream `resourcehelper.PodRequests` /
//! `PodLimits`); and what an object uses of the resources a ResourceQuota can name (upstream's
//! quota evaluators) and whether a pod is in a quota scope. LimitRanger and ResourceQuota
//! admission in the API server and the ResourceQuota controller share these.
//!
//! What an object uses: pods (`pods`, `cpu`, `requests.*`, `limits.*`, hugepages, extended
//! resources; terminal pods use nothing), services (`services`, `services.nodeports`,
//! `services.loadbalancers`), PersistentVolumeClaims (`persistentvolumeclaims`,
//! `requests.storage`, per storage class), the legacy object counts (`configmaps`, `secrets`,
//! `replicationcontrollers`, `resourcequotas`) and `count/<resource>` (`count/deployments.apps`)
//! for every resource. Quota scopes (`Terminating`, `NotTerminating`, `BestEffort`,
//! `NotBestEffort`, `PriorityClass`, `CrossNamespacePodAffinity`) select pods; a quota with
//! scopes matches nothing else.

use std::collections::BTreeMap;

use crate::quantity::{self, Format, Quantity};
use serde_json::{Map, Value};

/// A resource list by resource name.
pub type ResourceList = BTreeMap<String, Quantity>;

/// A quantity written as a JSON string (or, leniently, a number).
pub fn quantity_of(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => quantity::parse(s).ok(),
        Value::Number(n) => quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

/// The resource list at `v` (a JSON map); entries that are not quantities are skipped.
pub fn list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), quantity_of(q)?)))
        .collect()
}

/// A resource list as JSON, each quantity in canonical form.
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(list.iter().map(|(k, q)| (k.clone(), Value::String(q.to_string()))).collect::<Map<_, _>>())
}

/// `a += b`, key by key.
pub fn add_into(a: &mut ResourceList, b: &ResourceList) {
    for (k, q) in b {
        let sum = a.get(k).map_or(*q, |have| have.saturating_add(q));
        a.insert(k.clone(), sum);
    }
}

/// `a = max(a, b)`, key by key.
fn max_into(a: &mut ResourceList, b: &ResourceList) {
    for (k, q) in b {
        if a.get(k).is_none_or(|have| q > have) {
            a.insert(k.clone(), *q);
        }
    }
}

fn containers<'a>(spec: Option<&'a Value>, field: &str) -> impl Iterator<Item = &'a Value> {
    spec.and_then(|s| s.get(field)).and_then(Value::as_array).into_iter().flatten()
}

/// One of a container's `resources.requests` or `resources.limits`.
pub fn container_list(c: &Value, which: &str) -> ResourceList {
    list(c.pointer(&format!("/resources/{which}")))
}

/// A pod's effective `which` (`requests` or `limits`): the sum over its containers and sidecars
/// (restartable init containers), at least the largest init container with the sidecars started
/// before it, plus the pod overhead (for limits, only on resources with a limit).
pub fn pod_total(pod: &Value, which: &str) -> ResourceList {
    let mut total = pod_containers_total(pod, which);
    let overhead = list(pod.pointer("/spec/overhead"));
    if which == "requests" {
        add_into(&mut total, &overhead);
    } else {
        for (k, q) in overhead {
            if let Some(have) = total.get_mut(&k) {
                *have = have.saturating_add(&q);
            }
        }
    }
    total
}

/// [`pod_total`] without the pod overhead (what LimitRanger holds to `Pod` limits).
pub fn pod_containers_total(pod: &Value, which: &str) -> ResourceList {
    let spec = pod.get("spec");
    let mut total = ResourceList::new();
    for c in containers(spec, "containers") {
        add_into(&mut total, &container_list(c, which));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in containers(spec, "initContainers") {
        let own = container_list(c, which);
        let effective = if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            add_into(&mut total, &own);
            add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut with_sidecars = own;
            add_into(&mut with_sidecars, &sidecars);
            with_sidecars
        };
        max_into(&mut init_max, &effective);
    }
    max_into(&mut total, &init_max);
    total
}

/// The pod compute resources a quota can track.
const POD_RESOURCES: &[&str] = &[
    "pods",
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];

/// A resource as quota names it: `count/<plural>[.<group>]`, evaluated by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaResource<'a> {
    /// API group, `""` for the core group.
    pub group: &'a str,
    /// The kind of its objects.
    pub kind: &'a str,
    /// Plural resource name.
    pub plural: &'a str,
}

/// The kinds with an evaluator of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pod,
    Service,
    Claim,
    /// Counted only: a legacy count name (`configmaps`) besides `count/<resource>`.
    Count(Option<&'static str>),
}

fn kind_of(info: &QuotaResource<'_>) -> Kind {
    match (info.group, info.kind) {
        ("", "Pod") => Kind::Pod,
        ("", "Service") => Kind::Service,
        ("", "PersistentVolumeClaim") => Kind::Claim,
        ("", "ConfigMap") => Kind::Count(Some("configmaps")),
        ("", "Secret") => Kind::Count(Some("secrets")),
        ("", "ReplicationController") => Kind::Count(Some("replicationcontrollers")),
        ("", "ResourceQuota") => Kind::Count(Some("resourcequotas")),
        _ => Kind::Count(None),
    }
}

/// `count/pods`, `count/deployments.apps`.
pub fn count_name(info: &QuotaResource<'_>) -> String {
    if info.group.is_empty() {
        format!("count/{}", info.plural)
    } else {
        format!("count/{}.{}", info.plural, info.group)
    }
}

fn one() -> Quantity {
    Quantity::from_units(1, Format::DecimalSi)
}

/// An extended resource name (`example.com/gpu`): qualified, outside `kubernetes.io/`.
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// Whether quota resource `name` counts something objects of `info` use.
pub fn tracks(info: &QuotaResource<'_>, name: &str) -> bool {
    if name == count_name(info) {
        return true;
    }
    match kind_of(info) {
        Kind::Pod => {
            POD_RESOURCES.contains(&name)
                || name.starts_with("hugepages-")
                || name.starts_with("requests.hugepages-")
                || name.strip_prefix("requests.").is_some_and(is_extended)
        }
        Kind::Service => matches!(name, "services" | "services.nodeports" | "services.loadbalancers"),
        Kind::Claim => {
            matches!(name, "persistentvolumeclaims" | "requests.storage")
                || name.ends_with(".storageclass.storage.k8s.io/requests.storage")
                || name.ends_with(".storageclass.storage.k8s.io/persistentvolumeclaims")
        }
        Kind::Count(legacy) => legacy == Some(name),
    }
}

/// The compute usage of requests and limits (upstream `podComputeUsageHelper`).
pub fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("pods".into(), one());
    for res in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(res) {
            out.insert(res.into(), *q);
            out.insert(format!("requests.{res}"), *q);
        }
        if let Some(q) = limits.get(res) {
            out.insert(format!("limits.{res}"), *q);
        }
    }
    for (name, q) in requests {
        if name.starts_with("hugepages-") {
            out.insert(name.clone(), *q);
            out.insert(format!("requests.{name}"), *q);
        }
        if is_extended(name) {
            out.insert(format!("requests.{name}"), *q);
        }
    }
    out
}

pub fn is_terminal(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
}

/// What `obj` uses of every resource a quota can name.
pub fn usage(info: &QuotaResource<'_>, obj: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    match kind_of(info) {
        Kind::Pod => {
            if is_terminal(obj) {
                return out;
            }
            out = compute_usage(&pod_total(obj, "requests"), &pod_total(obj, "limits"));
        }
        Kind::Service => {
            out.insert("services".into(), one());
            let ports = obj.pointer("/spec/ports").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            let node_ports = match obj.pointer("/spec/type").and_then(Value::as_str) {
                Some("NodePort") => ports.len(),
                Some("LoadBalancer") => {
                    out.insert("services.loadbalancers".into(), one());
                    if obj.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool)
                        == Some(false)
                    {
                        ports
                            .iter()
                            .filter(|p| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0)
                            .count()
                    } else {
                        ports.len()
                    }
                }
                _ => 0,
            };
            let node_ports = i64::try_from(node_ports).unwrap_or(i64::MAX);
            out.insert("services.nodeports".into(), Quantity::from_units(node_ports, Format::DecimalSi));
        }
        Kind::Claim => {
            out.insert("persistentvolumeclaims".into(), one());
            let requested = list(obj.pointer("/spec/resources/requests")).get("storage").copied();
            let allocated = list(obj.pointer("/status/allocatedResources")).get("storage").copied();
            let storage = requested.max(allocated);
            if let Some(s) = storage {
                out.insert("requests.storage".into(), s);
            }
            let class = obj
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .or_else(|| {
                    obj.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
                        .and_then(Value::as_str)
                })
                .filter(|c| !c.is_empty());
            if let Some(class) = class {
                out.insert(format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"), one());
                if let Some(s) = storage {
                    out.insert(format!("{class}.storageclass.storage.k8s.io/requests.storage"), s);
                }
            }
        }
        Kind::Count(legacy) => {
            if let Some(name) = legacy {
                out.insert(name.into(), one());
            }
        }
    }
    if !(kind_of(info) == Kind::Pod && is_terminal(obj)) {
        out.insert(count_name(info), one());
    }
    out
}

/// A quota's scope selectors as `(scope, operator, values)`.
pub fn scope_selectors(quota: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .collect();
    for e in
        quota.pointer("/spec/scopeSelector/matchExpressions").and_then(Value::as_array).into_iter().flatten()
    {
        let s = |f: &str| e.get(f).and_then(Value::as_str).unwrap_or("").to_string();
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from);
        out.push((s("scopeName"), s("operator"), values.collect()));
    }
    out
}

/// Whether a pod is in a quota scope.
pub fn pod_in_scope(pod: &Value, scope: &str, operator: &str, values: &[String]) -> bool {
    let terminating =
        pod.pointer("/spec/activeDeadlineSeconds").and_then(Value::as_i64).is_some_and(|s| s >= 0);
    let best_effort = is_best_effort(pod);
    match scope {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "PriorityClass" => {
            let class = pod.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or("");
            match operator {
                "Exists" => !class.is_empty(),
                "DoesNotExist" => false,
                "In" => values.iter().any(|v| v == class),
                "NotIn" => !values.iter().any(|v| v == class),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => {
            let affinity = pod.pointer("/spec/affinity");
            ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
                let terms = |field: &str, inner: Option<&str>| {
                    affinity
                        .and_then(|a| a.get(*kind))
                        .and_then(|k| k.get(field))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(move |t| match inner {
                            Some(i) => t.get(i),
                            None => Some(t),
                        })
                        .any(|t| {
                            t.get("namespaceSelector").is_some_and(|s| !s.is_null())
                                || t.get("namespaces")
                                    .and_then(Value::as_array)
                                    .is_some_and(|n| !n.is_empty())
                        })
                };
                terms("requiredDuringSchedulingIgnoredDuringExecution", None)
                    || terms("preferredDuringSchedulingIgnoredDuringExecution", Some("podAffinityTerm"))
            })
        }
        _ => false,
    }
}

/// Whether a pod is BestEffort: no container requests or limits cpu or memory.
pub fn is_best_effort(pod: &Value) -> bool {
    let spec = pod.get("spec");
    ["containers", "initContainers"].iter().flat_map(|f| containers(spec, f)).all(|c| {
        ["requests", "limits"].iter().all(|w| {
            let l = container_list(c, w);
            !l.contains_key("cpu") && !l.contains_key("memory")
        })
    })
}

/// Whether `quota` (its `status.hard` and scopes) applies to `obj` of resource `info`.
pub fn quota_matches(quota: &Value, info: &QuotaResource<'_>, obj: &Value) -> bool {
    let hard = list(quota.pointer("/status/hard"));
    if !hard.keys().any(|k| tracks(info, k)) {
        return false;
    }
    let selectors = scope_selectors(quota);
    selectors.is_empty()
        || (kind_of(info) == Kind::Pod && selectors.iter().all(|(s, op, v)| pod_in_scope(obj, s, op, v)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn res(plural: &'static str, kind: &'static str) -> QuotaResource<'static> {
        QuotaResource { group: "", kind, plural }
    }

    fn pretty(l: &ResourceList) -> String {
        l.iter().map(|(k, q)| format!("{k}={q}")).collect::<Vec<_>>().join(",")
    }

    #[test]
    fn pods_use_their_requests_and_limits_and_terminal_pods_nothing() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "resources": {
            "requests": {"cpu": "250m", "memory": "64Mi", "example.com/gpu": "1"}, "limits": {"cpu": "1"}}}]}});
        let u = usage(&res("pods", "Pod"), &pod);
        assert_eq!(
            pretty(&u),
            "count/pods=1,cpu=250m,limits.cpu=1,memory=64Mi,pods=1,requests.cpu=250m,requests.example.com/gpu=1,requests.memory=64Mi"
        );
        pod["status"] = json!({"phase": "Succeeded"});
        assert!(usage(&res("pods", "Pod"), &pod).is_empty());
    }

    #[test]
    fn services_count_node_ports_and_load_balancers() {
        let svc = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(
            pretty(&usage(&res("services", "Service"), &svc)),
            "count/services=1,services=1,services.loadbalancers=1,services.nodeports=2"
        );
        let deploy = QuotaResource { group: "apps", kind: "Deployment", plural: "deployments" };
        assert_eq!(pretty(&usage(&deploy, &json!({}))), "count/deployments.apps=1");
    }

    #[test]
    fn claims_count_storage_per_class() {
        let pvc =
            json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}});
        assert_eq!(
            pretty(&usage(&res("persistentvolumeclaims", "PersistentVolumeClaim"), &pvc)),
            "count/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/requests.storage=1Gi,persistentvolumeclaims=1,requests.storage=1Gi"
        );
    }

    #[test]
    fn scopes_select_pods_by_deadline_qos_and_priority_class() {
        let pod =
            json!({"spec": {"activeDeadlineSeconds": 10, "priorityClassName": "high", "containers": [{}]}});
        assert!(pod_in_scope(&pod, "Terminating", "Exists", &[]));
        assert!(!pod_in_scope(&pod, "NotTerminating", "Exists", &[]));
        assert!(pod_in_scope(&pod, "BestEffort", "Exists", &[]));
        assert!(pod_in_scope(&pod, "PriorityClass", "In", &["high".into()]));
        assert!(!pod_in_scope(&pod, "PriorityClass", "NotIn", &["high".into()]));
        let quota = json!({"spec": {"scopes": ["NotBestEffort"]}, "status": {"hard": {"pods": "1"}}});
        assert!(!quota_matches(&quota, &res("pods", "Pod"), &pod));
        assert!(!quota_matches(&quota, &res("services", "Service"), &json!({})));
    }

    #[test]
    fn pod_requests_add_containers_and_take_the_largest_init_container() {
        let pod = json!({"spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"resources": {"requests": {"cpu": "200m"}}},
            ],
            "initContainers": [
                {"resources": {"requests": {"cpu": "1", "memory": "32Mi"}}},
            ],
            "overhead": {"cpu": "10m"},
        }});
        let r = pod_total(&pod, "requests");
        assert_eq!(r["cpu"].to_string(), "1010m");
        assert_eq!(r["memory"].to_string(), "64Mi");
    }

    #[test]
    fn sidecars_run_beside_the_containers() {
        let pod = json!({"spec": {
            "containers": [{"resources": {"limits": {"cpu": "1"}}}],
            "initContainers": [{"restartPolicy": "Always", "resources": {"limits": {"cpu": "500m"}}}],
        }});
        assert_eq!(pod_total(&pod, "limits")["cpu"].to_string(), "1500m");
    }
}
