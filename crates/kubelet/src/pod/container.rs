//! The CRI `ContainerConfig` of a container: image, command and args (expanded), environment,
//! mounts, log path, labels and annotations the kubelet finds it by, Linux resources and
//! security context.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use corten_cri::api;
use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};

use super::env::{expand, Vars};
use super::sandbox::namespace_options;
use super::{
    ANNOTATION_IMAGE, ANNOTATION_RESTART_COUNT, ANNOTATION_TERMINATION_FILE, LABEL_CONTAINER_NAME,
    LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID,
};
use corten_schema::quantity;

const CPU_PERIOD: i64 = 100_000;
const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const DEFAULT_READONLY_PATHS: &[&str] =
    &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The pod's QoS class (`Guaranteed`, `Burstable`, `BestEffort`).
pub(crate) fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else { return "BestEffort" };
    let all: Vec<&Container> = spec.containers.iter().chain(spec.init_containers.iter().flatten()).collect();
    let get = |r: &Option<ResourceRequirements>, limits: bool, name: &str| {
        r.as_ref()
            .and_then(|r| if limits { r.limits.as_ref() } else { r.requests.as_ref() })
            .and_then(|m| m.get(name))
            .map(|q| q.0.clone())
    };
    let any = all.iter().any(|c| {
        ["cpu", "memory"]
            .iter()
            .any(|n| get(&c.resources, true, n).is_some() || get(&c.resources, false, n).is_some())
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|c| {
        ["cpu", "memory"].iter().all(|n| {
            let limit = get(&c.resources, true, n);
            let request = get(&c.resources, false, n).or_else(|| limit.clone());
            limit.is_some() && request == limit
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Linux resources of a container: cpu shares from the request, quota from the limit,
/// the memory limit, and the OOM score by QoS class.
pub(crate) fn linux_resources(c: &Container, qos: &str) -> api::LinuxContainerResources {
    let res = c.resources.clone().unwrap_or_default();
    let get = |m: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               n: &str| m.as_ref().and_then(|m| m.get(n)).map(|q| q.0.clone());
    let cpu_limit = get(&res.limits, "cpu").and_then(|q| quantity::milli(&q));
    let cpu_request = get(&res.requests, "cpu").and_then(|q| quantity::milli(&q)).or(cpu_limit);
    let memory_limit = get(&res.limits, "memory").and_then(|q| quantity::units(&q));
    let memory_request = get(&res.requests, "memory").and_then(|q| quantity::units(&q)).or(memory_limit);
    let cpu_shares = cpu_request.map(|m| (m * 1024 / 1000).max(2) as i64).unwrap_or(2);
    let oom_score_adj = match qos {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let total =
                crate::machine::mem_total(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default())
                    .unwrap_or(1) as i128;
            let req = memory_request.unwrap_or(0);
            (1000 - (1000 * req) / total.max(1)).clamp(3, 999) as i64
        }
    };
    api::LinuxContainerResources {
        cpu_period: if cpu_limit.is_some() { CPU_PERIOD } else { 0 },
        cpu_quota: cpu_limit.map(|m| ((m * CPU_PERIOD as i128) / 1000).max(1000) as i64).unwrap_or(0),
        cpu_shares,
        memory_limit_in_bytes: memory_limit.unwrap_or(0) as i64,
        oom_score_adj,
        ..Default::default()
    }
}

fn security_context(pod: &Pod, c: &Container) -> api::LinuxContainerSecurityContext {
    let spec = pod.spec.clone().unwrap_or_default();
    let psc = spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let privileged = sc.privileged.unwrap_or(false);
    let caps = sc.capabilities.clone().unwrap_or_default();
    api::LinuxContainerSecurityContext {
        capabilities: Some(api::Capability {
            add_capabilities: caps.add.unwrap_or_default(),
            drop_capabilities: caps.drop.unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(namespace_options(&spec)),
        run_as_user: sc.run_as_user.or(psc.run_as_user).map(|value| api::Int64Value { value }),
        run_as_group: sc.run_as_group.or(psc.run_as_group).map(|value| api::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: psc.supplemental_groups.unwrap_or_default(),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths: if privileged {
            vec![]
        } else {
            DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect()
        },
        readonly_paths: if privileged {
            vec![]
        } else {
            DEFAULT_READONLY_PATHS.iter().map(|s| s.to_string()).collect()
        },
        ..Default::default()
    }
}

/// Where the container's `/dev/termination-log` lives on the host.
pub(crate) fn termination_file(pod_dir: &Path, container: &str, restart_count: i32) -> PathBuf {
    pod_dir.join("containers").join(container).join(format!("{restart_count}.termination-log"))
}

/// Everything [`container_config`] needs besides the pod and container.
#[derive(Debug)]
pub(crate) struct ContainerInputs<'a> {
    pub restart_count: i32,
    pub env: Vars,
    pub volumes: &'a HashMap<String, PathBuf>,
    pub etc_hosts: Option<&'a Path>,
    pub termination_file: &'a Path,
    pub image: String,
}

/// The `ContainerConfig` of `c`; `Err` with upstream's message when a mount names no volume.
pub(crate) fn container_config(
    pod: &Pod,
    c: &Container,
    inputs: ContainerInputs<'_>,
) -> Result<api::ContainerConfig, String> {
    let m = &pod.metadata;
    let qos = qos_class(pod);
    let env = inputs.env;
    let lookup = |n: &str| env.get(n);
    let command: Vec<String> = c.command.iter().flatten().map(|s| expand(s, &lookup)).collect();
    let args: Vec<String> = c.args.iter().flatten().map(|s| expand(s, &lookup)).collect();
    let mut mounts = Vec::new();
    for vm in c.volume_mounts.iter().flatten() {
        let Some(host) = inputs.volumes.get(&vm.name) else {
            return Err(format!("cannot find volume {:?} to mount into container {:?}", vm.name, c.name));
        };
        let sub = vm.sub_path.as_deref().or(vm.sub_path_expr.as_deref()).unwrap_or("");
        let sub = if vm.sub_path_expr.is_some() { expand(sub, &lookup) } else { sub.to_string() };
        if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
            return Err(format!("invalid subPath {sub:?}"));
        }
        let host_path = if sub.is_empty() { host.clone() } else { host.join(&sub) };
        if !sub.is_empty() && !host_path.exists() {
            let _ = std::fs::create_dir_all(&host_path);
        }
        let propagation = match vm.mount_propagation.as_deref() {
            Some("HostToContainer") => api::MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => api::MountPropagation::PropagationBidirectional,
            _ => api::MountPropagation::PropagationPrivate,
        };
        mounts.push(api::Mount {
            container_path: vm.mount_path.clone(),
            host_path: host_path.to_string_lossy().into_owned(),
            readonly: vm.read_only.unwrap_or(false),
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    let has_mount = |mounts: &[api::Mount], p: &str| mounts.iter().any(|x| x.container_path == p);
    if let Some(hosts) = inputs.etc_hosts.filter(|_| !has_mount(&mounts, "/etc/hosts")) {
        mounts.push(api::Mount {
            container_path: "/etc/hosts".into(),
            host_path: hosts.to_string_lossy().into_owned(),
            ..Default::default()
        });
    }
    let termination_path =
        c.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
    if !has_mount(&mounts, &termination_path) {
        mounts.push(api::Mount {
            container_path: termination_path,
            host_path: inputs.termination_file.to_string_lossy().into_owned(),
            ..Default::default()
        });
    }
    let labels = HashMap::from([
        (LABEL_POD_NAME.to_string(), m.name.clone().unwrap_or_default()),
        (LABEL_POD_NAMESPACE.to_string(), m.namespace.clone().unwrap_or_default()),
        (LABEL_POD_UID.to_string(), m.uid.clone().unwrap_or_default()),
        (LABEL_CONTAINER_NAME.to_string(), c.name.clone()),
    ]);
    let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
    let annotations = HashMap::from([
        (ANNOTATION_RESTART_COUNT.to_string(), inputs.restart_count.to_string()),
        (ANNOTATION_TERMINATION_FILE.to_string(), inputs.termination_file.to_string_lossy().into_owned()),
        (
            "io.kubernetes.container.terminationMessagePath".to_string(),
            c.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into()),
        ),
        ("io.kubernetes.pod.terminationGracePeriod".to_string(), grace.to_string()),
        (ANNOTATION_IMAGE.to_string(), c.image.clone().unwrap_or_default()),
    ]);
    Ok(api::ContainerConfig {
        metadata: Some(api::ContainerMetadata { name: c.name.clone(), attempt: inputs.restart_count as u32 }),
        image: Some(api::ImageSpec {
            image: inputs.image,
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env.into_pairs().into_iter().map(|(key, value)| api::KeyValue { key, value }).collect(),
        mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", c.name, inputs.restart_count),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(linux_resources(c, qos)),
            security_context: Some(security_context(pod, c)),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "namespace": "d", "uid": "u"},
            "spec": {"containers": containers}}))
        .unwrap_or_default()
    }

    #[test]
    fn qos_class_follows_requests_and_limits() {
        assert_eq!(qos_class(&pod(serde_json::json!([{"name": "a"}]))), "BestEffort");
        let g =
            pod(serde_json::json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]));
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = pod(serde_json::json!([{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]));
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn cpu_and_memory_become_shares_quota_and_a_limit() {
        let p = pod(serde_json::json!([{"name": "a", "resources": {
            "requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "128Mi"}}}]));
        let c = &p.spec.as_ref().map(|s| s.containers[0].clone()).unwrap_or_default();
        let r = linux_resources(c, qos_class(&p));
        assert_eq!((r.cpu_shares, r.cpu_quota, r.cpu_period), (256, 50_000, 100_000));
        assert_eq!(r.memory_limit_in_bytes, 128 << 20);
    }

    #[test]
    fn the_config_expands_args_and_labels_the_container_for_adoption() {
        let p = pod(serde_json::json!([{"name": "app", "image": "busybox", "command": ["sh", "-c"],
            "args": ["echo $(GREETING)"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]));
        let c = p.spec.as_ref().map(|s| s.containers[0].clone()).unwrap_or_default();
        let mut env = Vars::default();
        env.set("GREETING".into(), "hi".into());
        let volumes = HashMap::from([("data".to_string(), PathBuf::from("/v/data"))]);
        let inputs = ContainerInputs {
            restart_count: 3,
            env,
            volumes: &volumes,
            etc_hosts: None,
            termination_file: Path::new("/t"),
            image: "busybox".into(),
        };
        let cfg = container_config(&p, &c, inputs).unwrap_or_default();
        assert_eq!(cfg.args, ["echo hi"]);
        assert_eq!(cfg.log_path, "app/3.log");
        assert_eq!(cfg.annotations.get(ANNOTATION_RESTART_COUNT).map(String::as_str), Some("3"));
        assert_eq!(cfg.labels.get(LABEL_CONTAINER_NAME).map(String::as_str), Some("app"));
        assert!(cfg.mounts.iter().any(|m| m.container_path == "/data" && m.host_path == "/v/data"));
        assert!(cfg.mounts.iter().any(|m| m.container_path == "/dev/termination-log"));
        let missing =
            pod(serde_json::json!([{"name": "app", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]));
        let c = missing.spec.as_ref().map(|s| s.containers[0].clone()).unwrap_or_default();
        let inputs = ContainerInputs { env: Vars::default(), ..inputs_for_error(&volumes) };
        assert!(container_config(&missing, &c, inputs).is_err());
    }

    fn inputs_for_error(volumes: &HashMap<String, PathBuf>) -> ContainerInputs<'_> {
        ContainerInputs {
            restart_count: 0,
            env: Vars::default(),
            volumes,
            etc_hosts: None,
            termination_file: Path::new("/t"),
            image: "x".into(),
        }
    }
}
