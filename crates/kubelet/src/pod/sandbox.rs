//! The CRI `PodSandboxConfig` of a pod: metadata, hostname, DNS, port mappings, labels and the
//! Linux namespace and security options.

use std::path::PathBuf;

use corten_cri::api::{self, NamespaceMode};
use k8s_openapi::api::core::v1::{Pod, PodSpec};

use super::{LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};
use crate::Config;

/// The log directory of a pod: `<pod_log_dir>/<namespace>_<name>_<uid>`.
pub(crate) fn log_directory(config: &Config, pod: &Pod) -> PathBuf {
    let m = &pod.metadata;
    config.pod_log_dir.join(format!(
        "{}_{}_{}",
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or(""),
        m.uid.as_deref().unwrap_or("")
    ))
}

/// The pod's hostname: `spec.hostname` or the pod name, at most 63 characters.
pub(crate) fn hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    let mut h: String = name.chars().take(63).collect();
    while h.ends_with(['-', '.']) {
        h.pop();
    }
    h
}

/// The namespace options shared by the sandbox and its containers.
pub(crate) fn namespace_options(spec: &PodSpec) -> api::NamespaceOption {
    let mode = |host: Option<bool>, otherwise: NamespaceMode| {
        if host.unwrap_or(false) {
            NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    let pid_default = if spec.share_process_namespace.unwrap_or(false) {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    api::NamespaceOption {
        network: mode(spec.host_network, NamespaceMode::Pod),
        pid: mode(spec.host_pid, pid_default),
        ipc: mode(spec.host_ipc, NamespaceMode::Pod),
        ..Default::default()
    }
}

fn host_resolv_conf() -> api::DnsConfig {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut dns = api::DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.servers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => dns.searches = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

/// The DNS of a pod by `dnsPolicy` (`ClusterFirst` by default; `Default` is the host's), merged
/// with `spec.dnsConfig`.
pub(crate) fn dns_config(config: &Config, pod: &Pod) -> api::DnsConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_network = spec.host_network.unwrap_or(false);
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    } && !config.cluster_dns.is_empty();
    let mut dns = if policy == "None" {
        api::DnsConfig::default()
    } else if cluster {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let d = &config.cluster_domain;
        let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
        searches.extend(host_resolv_conf().searches);
        api::DnsConfig {
            servers: config.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
            searches,
            options: vec!["ndots:5".into()],
        }
    } else {
        host_resolv_conf()
    };
    if let Some(extra) = spec.dns_config {
        dns.servers.extend(extra.nameservers.unwrap_or_default());
        dns.searches.extend(extra.searches.unwrap_or_default());
        for o in extra.options.unwrap_or_default() {
            let Some(name) = o.name else { continue };
            dns.options.retain(|x| x.split(':').next() != Some(name.as_str()));
            dns.options.push(match o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    dns
}

/// The `PodSandboxConfig` of `pod` for its `attempt`-th sandbox.
pub(crate) fn sandbox_config(config: &Config, pod: &Pod, attempt: u32) -> api::PodSandboxConfig {
    let m = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let (name, namespace, uid) = (
        m.name.clone().unwrap_or_default(),
        m.namespace.clone().unwrap_or_default(),
        m.uid.clone().unwrap_or_default(),
    );
    let mut labels: std::collections::HashMap<String, String> =
        m.labels.clone().unwrap_or_default().into_iter().collect();
    labels.insert(LABEL_POD_NAME.into(), name.clone());
    labels.insert(LABEL_POD_NAMESPACE.into(), namespace.clone());
    labels.insert(LABEL_POD_UID.into(), uid.clone());
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| api::PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => api::Protocol::Udp as i32,
                Some("SCTP") => api::Protocol::Sctp as i32,
                _ => api::Protocol::Tcp as i32,
            },
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let psc = spec.security_context.clone().unwrap_or_default();
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged).unwrap_or(false));
    let security_context = api::LinuxSandboxSecurityContext {
        namespace_options: Some(namespace_options(&spec)),
        run_as_user: psc.run_as_user.map(|value| api::Int64Value { value }),
        run_as_group: psc.run_as_group.map(|value| api::Int64Value { value }),
        supplemental_groups: psc.supplemental_groups.clone().unwrap_or_default(),
        privileged,
        ..Default::default()
    };
    let sysctls = psc.sysctls.unwrap_or_default().into_iter().map(|s| (s.name, s.value)).collect();
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata { name, uid, namespace, attempt }),
        hostname: if spec.host_network.unwrap_or(false) { String::new() } else { hostname(pod) },
        log_directory: log_directory(config, pod).to_string_lossy().into_owned(),
        dns_config: Some(dns_config(config, pod)),
        port_mappings,
        labels,
        annotations: m.annotations.clone().unwrap_or_default().into_iter().collect(),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(security_context),
            sysctls,
            ..Default::default()
        }),
        windows: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}},
            "spec": spec,
        }))
        .unwrap_or_default()
    }

    #[test]
    fn cluster_first_pods_get_the_cluster_dns_and_search_path() {
        let mut config = Config::new("n1", "/tmp/k");
        config.cluster_dns = vec!["10.43.0.10".parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into())];
        let dns = dns_config(&config, &pod(serde_json::json!({"containers": []})));
        assert_eq!(dns.servers, ["10.43.0.10"]);
        assert_eq!(dns.searches[..3], ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
        assert_eq!(dns.options, ["ndots:5"]);
        let none = pod(serde_json::json!({"containers": [], "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}]}}));
        let dns = dns_config(&config, &none);
        assert_eq!((dns.servers, dns.options), (vec!["1.1.1.1".to_string()], vec!["ndots:2".to_string()]));
    }

    #[test]
    fn the_sandbox_carries_pod_labels_ports_and_namespaces() {
        let p = pod(serde_json::json!({"hostPID": true, "containers": [{"name": "a", "image": "x",
            "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}]}));
        let sb = sandbox_config(&Config::new("n1", "/tmp/k"), &p, 2);
        assert_eq!(sb.labels.get(LABEL_POD_UID).map(String::as_str), Some("u1"));
        assert_eq!(sb.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(sb.metadata.as_ref().map(|m| m.attempt), Some(2));
        assert_eq!(sb.hostname, "web");
        assert_eq!(sb.port_mappings.len(), 1);
        assert_eq!((sb.port_mappings[0].container_port, sb.port_mappings[0].host_port), (80, 8080));
        let ns =
            sb.linux.and_then(|l| l.security_context).and_then(|s| s.namespace_options).unwrap_or_default();
        assert_eq!((ns.network, ns.pid), (NamespaceMode::Pod as i32, NamespaceMode::Node as i32));
        assert!(sb.log_directory.ends_with("shop_web_u1"));
    }
}
