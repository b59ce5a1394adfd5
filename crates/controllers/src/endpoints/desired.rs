//! What the Endpoints and EndpointSlices of a Service should hold, computed from the Service and
//! its pods (or, for mirroring, a user's Endpoints) with no I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The most endpoints one EndpointSlice holds (kube-controller-manager's default).
pub(crate) const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The most addresses one Endpoints object holds; beyond it the rest is left out.
pub(crate) const MAX_ENDPOINTS_ADDRESSES: usize = 1000;

/// A port of an endpoint: name, number, protocol, appProtocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Port {
    pub name: Option<String>,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

impl Port {
    fn core(&self) -> CorePort {
        CorePort {
            name: self.name.clone(),
            port: self.port,
            protocol: Some(self.protocol.clone()),
            app_protocol: self.app_protocol.clone(),
        }
    }

    fn discovery(&self) -> EndpointPort {
        EndpointPort {
            name: self.name.clone(),
            port: Some(self.port),
            protocol: Some(self.protocol.clone()),
            app_protocol: self.app_protocol.clone(),
        }
    }
}

/// One pod that backs a Service, with the ports it serves them on.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub ip: String,
    pub hostname: Option<String>,
    pub node_name: Option<String>,
    pub target_ref: Option<ObjectReference>,
    /// Ready for traffic (Endpoints `addresses` rather than `notReadyAddresses`).
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub ports: Vec<Port>,
}

/// Whether a pod's `Ready` condition is `True`.
pub(crate) fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether the selector of `service` picks `pod` (an empty or absent selector picks none).
pub(crate) fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else { return false };
    if selector.is_empty() || service.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether `service` has no cluster IP (`clusterIP: None`).
pub(crate) fn headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The port `pod` serves `target` on: a number as is, a name looked up among its container
/// ports of `protocol`.
fn resolve_port(pod: &Pod, target: &IntOrString, protocol: &str) -> Option<i32> {
    match target {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            pod.spec.as_ref()?.containers.iter().flat_map(|c| c.ports.iter().flatten()).find_map(|p| {
                let proto = p.protocol.as_deref().unwrap_or("TCP");
                (p.name.as_deref() == Some(name.as_str()) && proto == protocol).then_some(p.container_port)
            })
        }
    }
}

/// The members of `service` among `pods` (already selected): pods with an IP that are not
/// finished; terminating ones only count while `publishNotReadyAddresses` is false for
/// Endpoints, but EndpointSlices keep them with `terminating: true`.
pub(crate) fn members(service: &Service, pods: &[Pod]) -> Vec<Member> {
    let spec = service.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut out = Vec::new();
    for pod in pods {
        let status = pod.status.as_ref();
        let Some(ip) = status.and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) else { continue };
        if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) {
            continue;
        }
        let mut ports = Vec::new();
        let mut missing = false;
        for sp in spec.ports.iter().flatten() {
            let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
            let target = sp.target_port.clone().unwrap_or(IntOrString::Int(sp.port));
            match resolve_port(pod, &target, &protocol) {
                Some(port) => ports.push(Port {
                    name: sp.name.clone().filter(|n| !n.is_empty()),
                    port,
                    protocol,
                    app_protocol: sp.app_protocol.clone(),
                }),
                None => missing = true,
            }
        }
        if missing && ports.is_empty() {
            continue;
        }
        ports.sort();
        let pod_spec = pod.spec.as_ref();
        let hostname = pod_spec
            .filter(|s| s.subdomain.as_deref() == service.metadata.name.as_deref())
            .and_then(|s| s.hostname.clone())
            .filter(|h| !h.is_empty());
        let ready = pod_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        out.push(Member {
            ip,
            hostname,
            node_name: pod_spec.and_then(|s| s.node_name.clone()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                uid: pod.metadata.uid.clone(),
                ..ObjectReference::default()
            }),
            ready: publish_not_ready || (ready && !terminating),
            serving: publish_not_ready || ready,
            terminating,
            ports,
        });
    }
    out.sort_by(|a, b| a.ip.cmp(&b.ip));
    out
}

/// The subsets of the Endpoints of a Service with these members: one subset per distinct set
/// of ports, addresses sorted by IP; terminating pods are left out unless
/// `publishNotReadyAddresses`.
pub(crate) fn subsets(service: &Service, members: &[Member]) -> Vec<EndpointSubset> {
    let publish_not_ready =
        service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let mut groups: BTreeMap<Vec<Port>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for m in members {
        if m.terminating && !publish_not_ready {
            continue;
        }
        let address = EndpointAddress {
            ip: m.ip.clone(),
            hostname: m.hostname.clone(),
            node_name: m.node_name.clone(),
            target_ref: m.target_ref.clone(),
        };
        let group = groups.entry(m.ports.clone()).or_default();
        if m.ready {
            group.0.push(address);
        } else {
            group.1.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| ports.iter().map(Port::core).collect()),
        })
        .collect()
}

/// `subsets` cut to at most `max` addresses, ready ones first; and whether anything was cut.
pub(crate) fn truncate(subsets: Vec<EndpointSubset>, max: usize) -> (Vec<EndpointSubset>, bool) {
    let total: usize = subsets
        .iter()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len) + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum();
    if total <= max {
        return (subsets, false);
    }
    let mut budget = max;
    let mut take = |list: &mut Option<Vec<EndpointAddress>>| {
        if let Some(l) = list {
            l.truncate(budget);
            budget -= l.len();
            if l.is_empty() {
                *list = None;
            }
        }
    };
    let mut subsets = subsets;
    for s in subsets.iter_mut() {
        take(&mut s.addresses);
    }
    for s in subsets.iter_mut() {
        take(&mut s.not_ready_addresses);
    }
    subsets.retain(|s| s.addresses.is_some() || s.not_ready_addresses.is_some());
    (subsets, true)
}

/// The contents of the EndpointSlices for these members: per distinct port set, chunks of at
/// most [`MAX_ENDPOINTS_PER_SLICE`] IPv4 endpoints sorted by address.
pub(crate) fn slices(members: &[Member]) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    let mut groups: BTreeMap<Vec<Port>, Vec<Endpoint>> = BTreeMap::new();
    for m in members.iter().filter(|m| is_ipv4(&m.ip)) {
        groups.entry(m.ports.clone()).or_default().push(Endpoint {
            addresses: vec![m.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(m.ready),
                serving: Some(m.serving),
                terminating: Some(m.terminating),
            }),
            hostname: m.hostname.clone(),
            node_name: m.node_name.clone(),
            target_ref: m.target_ref.clone(),
            ..Endpoint::default()
        });
    }
    chunked(groups)
}

/// The contents of the EndpointSlices mirroring a user's Endpoints, subset by subset.
pub(crate) fn mirrored(endpoints: &Endpoints) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    let mut groups: BTreeMap<Vec<Port>, Vec<Endpoint>> = BTreeMap::new();
    for subset in endpoints.subsets.iter().flatten() {
        let mut ports: Vec<Port> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| Port {
                name: p.name.clone().filter(|n| !n.is_empty()),
                port: p.port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        ports.sort();
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset.not_ready_addresses.iter().flatten().map(|a| (a, false));
        let group = groups.entry(ports).or_default();
        for (a, ready) in ready.chain(not_ready).filter(|(a, _)| is_ipv4(&a.ip)) {
            group.push(Endpoint {
                addresses: vec![a.ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    serving: Some(ready),
                    terminating: Some(false),
                }),
                hostname: a.hostname.clone(),
                node_name: a.node_name.clone(),
                target_ref: a.target_ref.clone(),
                ..Endpoint::default()
            });
        }
    }
    chunked(groups)
}

fn chunked(groups: BTreeMap<Vec<Port>, Vec<Endpoint>>) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    let mut out = Vec::new();
    for (ports, mut endpoints) in groups {
        endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        endpoints.dedup_by(|a, b| a.addresses == b.addresses);
        let ports: Vec<EndpointPort> = ports.iter().map(Port::discovery).collect();
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    out
}

fn is_ipv4(ip: &str) -> bool {
    ip.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}))
            .unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": ip, "phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    #[test]
    fn ready_and_not_ready_pods_land_in_separate_address_lists() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}));
        let pods = [pod("b", "10.0.0.2", false), pod("a", "10.0.0.1", true)];
        let subsets = subsets(&svc, &members(&svc, &pods));
        assert_eq!(subsets.len(), 1);
        let ready: Vec<_> = subsets[0].addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
        let not_ready: Vec<_> =
            subsets[0].not_ready_addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
        assert_eq!((ready, not_ready), (vec!["10.0.0.1"], vec!["10.0.0.2"]));
        assert_eq!(subsets[0].ports.as_ref().map(|p| p[0].port), Some(8080));
    }

    #[test]
    fn a_pod_without_the_named_port_is_left_out() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "grpc"}]}));
        assert!(members(&svc, &[pod("a", "10.0.0.1", true)]).is_empty());
    }

    #[test]
    fn endpoints_keep_the_first_thousand_addresses_ready_first() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let pods: Vec<Pod> = (0..1200)
            .map(|i| {
                pod(&format!("p{i}"), &format!("10.{}.{}.{}", i / 600, (i / 200) % 3, i % 200), i % 2 == 0)
            })
            .collect();
        let (subsets, truncated) = truncate(subsets(&svc, &members(&svc, &pods)), MAX_ENDPOINTS_ADDRESSES);
        assert!(truncated);
        let ready: usize = subsets.iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum();
        let not_ready: usize =
            subsets.iter().map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len)).sum();
        assert_eq!((ready, not_ready), (600, 400));
        let small = subsets.clone();
        assert_eq!(truncate(small.clone(), 5000), (small, false));
    }

    #[test]
    fn slices_hold_at_most_a_hundred_endpoints() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let pods: Vec<Pod> =
            (0..250).map(|i| pod(&format!("p{i}"), &format!("10.0.{}.{}", i / 200, i % 200), true)).collect();
        let sizes: Vec<usize> = slices(&members(&svc, &pods)).iter().map(|(_, e)| e.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
    }

    #[test]
    fn terminating_pods_stay_in_slices_but_leave_endpoints() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let mut p = pod("a", "10.0.0.1", true);
        p.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
        let members = members(&svc, &[p]);
        assert!(subsets(&svc, &members).is_empty());
        let slices = slices(&members);
        let conditions = slices[0].1[0].conditions.clone().unwrap();
        assert_eq!(
            (conditions.ready, conditions.serving, conditions.terminating),
            (Some(false), Some(true), Some(true))
        );
    }
}
