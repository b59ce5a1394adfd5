//! Printers of the networking kinds: Services and their endpoints, Ingresses, network policies
//! and the service IP allocation objects.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{
    format_label_selector, format_labels, get, items, list_with_more, n, name, or, s, strings, text, Clock,
    Column, AGE, NAME,
};

pub(super) const SERVICE: &[Column] = &[
    NAME,
    text("Type", "How the service is exposed."),
    text("Cluster-IP", "The virtual IP of the service inside the cluster."),
    text("External-IP", "Addresses the service is reachable on from outside the cluster."),
    text("Port(s)", "The service's ports, with node ports."),
    AGE,
    text("Selector", "The labels of the pods behind the service.").wide(),
];

pub(super) const ENDPOINTS: &[Column] =
    &[NAME, text("Endpoints", "Addresses and ports of the endpoints."), AGE];

pub(super) const ENDPOINT_SLICE: &[Column] = &[
    NAME,
    text("AddressType", "The kind of addresses in the slice."),
    text("Ports", "The ports of the slice."),
    text("Endpoints", "The addresses of the slice."),
    AGE,
];

pub(super) const INGRESS: &[Column] = &[
    NAME,
    text("Class", "The IngressClass handling the ingress."),
    text("Hosts", "Hosts the rules match."),
    text("Address", "Addresses of the load balancer."),
    text("Ports", "Ports the ingress listens on."),
    AGE,
];

pub(super) const INGRESS_CLASS: &[Column] = &[
    NAME,
    text("Controller", "The controller implementing the class."),
    text("Parameters", "The resource holding the class's parameters."),
    AGE,
];

pub(super) const NETWORK_POLICY: &[Column] =
    &[NAME, text("Pod-Selector", "The pods the policy applies to."), AGE];

pub(super) const SERVICE_CIDR: &[Column] = &[NAME, text("CIDRs", "The service IP ranges."), AGE];

/// Upstream defines no Age column for IPAddress yet renders an age cell; kubectl ignores it.
pub(super) const IP_ADDRESS: &[Column] =
    &[NAME, text("ParentRef", "The object the address is allocated to.")];

/// Go's `net.JoinHostPort`: IPv6 addresses in brackets.
fn host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The load-balancer ingress points of a Service or an Ingress: IPs, or hostnames where there
/// is no IP, sorted and deduplicated.
fn load_balancer(o: &Value) -> BTreeSet<&str> {
    items(o, "/status/loadBalancer/ingress")
        .iter()
        .map(|i| if s(i, "/ip").is_empty() { s(i, "/hostname") } else { s(i, "/ip") })
        .filter(|a| !a.is_empty())
        .collect()
}

pub(super) fn service(o: &Value, clock: &Clock) -> Vec<Value> {
    let kind = or(s(o, "/spec/type"), "ClusterIP");
    let cluster_ip = strings(o, "/spec/clusterIPs")
        .first()
        .map_or_else(|| or(s(o, "/spec/clusterIP"), "<none>"), |ip| ip.to_string());
    let ports: Vec<String> = items(o, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = or(s(p, "/protocol"), "TCP");
            match n(p, "/nodePort") {
                np if np > 0 => format!("{}:{np}/{protocol}", n(p, "/port")),
                _ => format!("{}/{protocol}", n(p, "/port")),
            }
        })
        .collect();
    vec![
        name(o),
        json!(kind),
        json!(cluster_ip),
        json!(external_ip(o, &kind)),
        json!(or(&ports.join(","), "<none>")),
        clock.age(o),
        json!(format_labels(get(o, "/spec/selector"))),
    ]
}

fn external_ip(o: &Value, kind: &str) -> String {
    let external = strings(o, "/spec/externalIPs");
    match kind {
        "ClusterIP" | "NodePort" => or(&external.join(","), "<none>"),
        "LoadBalancer" => {
            let all: Vec<&str> = load_balancer(o).into_iter().chain(external).collect();
            or(&all.join(","), "<pending>")
        }
        "ExternalName" => s(o, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

/// The ENDPOINTS cell: `ip:port` for every address and port (bare IPs for port-less subsets),
/// the first three and `+ N more...`; `<none>` without subsets.
pub(super) fn endpoints(o: &Value, clock: &Clock) -> Vec<Value> {
    let subsets = items(o, "/subsets");
    let cell = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        let mut all = Vec::new();
        for subset in subsets {
            let ips = items(subset, "/addresses").iter().map(|a| s(a, "/ip"));
            let ports = items(subset, "/ports");
            if ports.is_empty() {
                all.extend(ips.map(str::to_string));
            } else {
                for p in ports {
                    all.extend(ips.clone().map(|ip| host_port(ip, n(p, "/port"))));
                }
            }
        }
        // unlike the slice printers, an empty list stays empty
        if all.is_empty() {
            String::new()
        } else {
            list_with_more(all, 3)
        }
    };
    vec![name(o), json!(cell), clock.age(o)]
}

pub(super) fn endpoint_slice(o: &Value, clock: &Clock) -> Vec<Value> {
    let ports: Vec<String> = items(o, "/ports")
        .iter()
        .map(|p| match (get(p, "/port").and_then(Value::as_i64), get(p, "/name").and_then(Value::as_str)) {
            (Some(port), _) => port.to_string(),
            (None, Some(port_name)) => port_name.to_string(),
            (None, None) => "*".into(),
        })
        .collect();
    let addresses: Vec<String> =
        items(o, "/endpoints").iter().flat_map(|e| strings(e, "/addresses")).map(str::to_string).collect();
    vec![
        name(o),
        json!(s(o, "/addressType")),
        json!(list_with_more(ports, 3)),
        json!(list_with_more(addresses, 3)),
        clock.age(o),
    ]
}

/// The HOSTS cell: the first three hosts, `*` when no rule names one. Once three are listed,
/// every further rule counts as one more, host or not.
fn ingress_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut hosts = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
        }
        if !more && !s(rule, "/host").is_empty() {
            hosts.push(s(rule, "/host"));
        }
    }
    if hosts.is_empty() {
        return "*".into();
    }
    let list = hosts.join(",");
    if more {
        format!("{list} + {} more...", rules.len() - MAX)
    } else {
        list
    }
}

pub(super) fn ingress(o: &Value, clock: &Clock) -> Vec<Value> {
    let class = get(o, "/spec/ingressClassName").and_then(Value::as_str).unwrap_or("<none>");
    let address: Vec<&str> = load_balancer(o).into_iter().collect();
    let ports = if items(o, "/spec/tls").is_empty() { "80" } else { "80, 443" };
    vec![
        name(o),
        json!(class),
        json!(ingress_hosts(items(o, "/spec/rules"))),
        json!(address.join(",")),
        json!(ports),
        clock.age(o),
    ]
}

pub(super) fn ingress_class(o: &Value, clock: &Clock) -> Vec<Value> {
    let parameters = get(o, "/spec/parameters").map_or_else(
        || "<none>".to_string(),
        |p| match get(p, "/apiGroup").and_then(Value::as_str) {
            Some(group) => format!("{}.{group}/{}", s(p, "/kind"), s(p, "/name")),
            None => format!("{}/{}", s(p, "/kind"), s(p, "/name")),
        },
    );
    vec![name(o), json!(s(o, "/spec/controller")), json!(parameters), clock.age(o)]
}

pub(super) fn network_policy(o: &Value, clock: &Clock) -> Vec<Value> {
    vec![name(o), json!(format_label_selector(get(o, "/spec/podSelector"))), clock.age(o)]
}

pub(super) fn service_cidr(o: &Value, clock: &Clock) -> Vec<Value> {
    vec![name(o), json!(strings(o, "/spec/cidrs").join(",")), clock.age(o)]
}

pub(super) fn ip_address(o: &Value, clock: &Clock) -> Vec<Value> {
    let parent = get(o, "/spec/parentRef").map_or_else(
        || "<none>".to_string(),
        |p| {
            let resource = match s(p, "/group") {
                "" => s(p, "/resource").to_string(),
                group => format!("{}.{group}", s(p, "/resource")),
            };
            let mut parent = resource.to_lowercase();
            if !s(p, "/namespace").is_empty() {
                parent = format!("{parent}/{}", s(p, "/namespace"));
            }
            format!("{parent}/{}", s(p, "/name"))
        },
    );
    vec![name(o), json!(parent), clock.age(o)]
}

#[cfg(test)]
mod tests {
    use super::super::test_clock;
    use super::*;

    fn svc(spec: Value, status: Value) -> Vec<Value> {
        service(&json!({"metadata": {"name": "s"}, "spec": spec, "status": status}), &test_clock())
    }

    #[test]
    fn cluster_ip_service_shows_ports_and_no_external_ip() {
        let cells = svc(
            json!({"type": "ClusterIP", "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10", "fd00::a"], "selector": {"k8s-app": "dns"},
                   "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}),
            json!({}),
        );
        assert_eq!(
            cells[1..5],
            [json!("ClusterIP"), json!("10.43.0.10"), json!("<none>"), json!("53/UDP,53/TCP")]
        );
        assert_eq!(cells[6], "k8s-app=dns");
        let headless =
            svc(json!({"clusterIP": "None", "clusterIPs": ["None"], "externalIPs": ["1.2.3.4"]}), json!({}));
        assert_eq!(headless[1..5], [json!("ClusterIP"), json!("None"), json!("1.2.3.4"), json!("<none>")]);
        assert_eq!(headless[6], "<none>");
    }

    #[test]
    fn node_port_and_load_balancer_services_show_node_ports_and_ingress_points() {
        let np = svc(
            json!({"type": "NodePort", "clusterIP": "10.0.0.1", "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
            json!({}),
        );
        assert_eq!(np[3..5], [json!("<none>"), json!("80:30080/TCP")]);
        let pending = svc(json!({"type": "LoadBalancer", "clusterIP": "10.0.0.2"}), json!({}));
        assert_eq!(pending[3], "<pending>");
        let lb = svc(
            json!({"type": "LoadBalancer", "clusterIP": "10.0.0.3", "externalIPs": ["9.9.9.9"]}),
            json!({"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}, {"ip": "1.2.3.4"}, {"ip": "1.2.3.4"}]}}),
        );
        assert_eq!(lb[3], "1.2.3.4,5.6.7.8,lb.example.com,9.9.9.9");
        let ext = svc(json!({"type": "ExternalName", "externalName": "db.example.com"}), json!({}));
        assert_eq!(ext[1..4], [json!("ExternalName"), json!("<none>"), json!("db.example.com")]);
    }

    #[test]
    fn endpoints_list_three_addresses_then_how_many_more() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]}
        ]});
        assert_eq!(endpoints(&ep, &test_clock())[1], "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more...");
        let v6 = json!({"metadata": {"name": "v6"}, "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]}]});
        assert_eq!(endpoints(&v6, &test_clock())[1], "[fd00::1]:8080");
        let headless = json!({"metadata": {"name": "h"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}]});
        assert_eq!(endpoints(&headless, &test_clock())[1], "10.0.0.1,10.0.0.2");
        assert_eq!(endpoints(&json!({"metadata": {"name": "e"}}), &test_clock())[1], "<none>");
        let not_ready = json!({"metadata": {"name": "n"}, "subsets": [{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]});
        assert_eq!(endpoints(&not_ready, &test_clock())[1], "");
    }

    #[test]
    fn endpoint_slices_show_address_type_ports_and_addresses() {
        let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80}, {"name": "metrics"}, {}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]});
        assert_eq!(
            endpoint_slice(&slice, &test_clock())[1..4],
            [json!("IPv4"), json!("80,metrics,*"), json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...")]
        );
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv6"});
        assert_eq!(endpoint_slice(&empty, &test_clock())[2..4], [json!("<unset>"), json!("<unset>")]);
    }

    #[test]
    fn ingress_shows_class_hosts_address_and_ports() {
        let ing = json!({"metadata": {"name": "web"},
            "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"]}],
                     "rules": [{"host": "a.example.com"}, {}, {"host": "b.example.com"}, {"host": "c.example.com"}, {"host": "d.example.com"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.5"}]}}});
        assert_eq!(
            ingress(&ing, &test_clock())[1..5],
            [
                json!("nginx"),
                json!("a.example.com,b.example.com,c.example.com + 2 more..."),
                json!("10.0.0.5"),
                json!("80, 443")
            ]
        );
        let bare = json!({"metadata": {"name": "b"}, "spec": {"rules": [{}]}});
        assert_eq!(
            ingress(&bare, &test_clock())[1..5],
            [json!("<none>"), json!("*"), json!(""), json!("80")]
        );
    }

    #[test]
    fn ingress_class_shows_controller_and_parameters() {
        let class = |params: Value| {
            ingress_class(
                &json!({"metadata": {"name": "c"}, "spec": {"controller": "k8s.io/ingress-nginx", "parameters": params}}),
                &test_clock(),
            )
        };
        assert_eq!(class(json!(null))[1..3], [json!("k8s.io/ingress-nginx"), json!("<none>")]);
        assert_eq!(
            class(json!({"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"}))[2],
            "IngressParameters.k8s.example.com/p"
        );
        assert_eq!(class(json!({"kind": "ConfigMap", "name": "cm"}))[2], "ConfigMap/cm");
    }

    #[test]
    fn network_policy_service_cidr_and_ip_address_cells() {
        let np = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
        assert_eq!(network_policy(&np, &test_clock())[1], "<none>");
        let np =
            json!({"metadata": {"name": "web"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
        assert_eq!(network_policy(&np, &test_clock())[1], "app=web");
        let cidr =
            json!({"metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.43.0.0/16", "fd00:43::/112"]}});
        assert_eq!(service_cidr(&cidr, &test_clock())[1], "10.43.0.0/16,fd00:43::/112");
        let ip = json!({"metadata": {"name": "10.43.0.1"}, "spec": {"parentRef": {"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"}}});
        assert_eq!(ip_address(&ip, &test_clock())[1], "services/default/kubernetes");
        let ip = json!({"metadata": {"name": "10.0.0.9"}, "spec": {"parentRef": {"group": "Gateway.Networking.k8s.io", "resource": "Gateways", "name": "gw"}}});
        assert_eq!(ip_address(&ip, &test_clock())[1], "gateways.gateway.networking.k8s.io/gw");
        assert_eq!(ip_address(&json!({"metadata": {"name": "x"}}), &test_clock())[1], "<none>");
    }
}
