//! A pod's status from what the runtime has ([`View`]) and what the worker knows (why a
//! container waits, probe results): container statuses, phase, conditions, IPs, QoS class.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::container::qos_class;
use super::probe::Probes;
use super::view::{ContainerView, View};

/// Why a container is waiting, as the worker last decided (`CrashLoopBackOff`, `ErrImagePull`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waiting {
    pub reason: String,
    pub message: String,
}

/// Everything a status is computed from.
#[derive(Debug)]
pub(crate) struct StatusInputs<'a> {
    pub pod: &'a Pod,
    pub view: &'a View,
    pub waiting: &'a HashMap<String, Waiting>,
    pub probes: &'a HashMap<String, Probes>,
    pub host_ip: &'a str,
    pub runtime_name: &'a str,
    /// The pod ran longer than `activeDeadlineSeconds`.
    pub deadline_exceeded: bool,
    /// The pod's log directory (for `FallbackToLogsOnError`).
    pub log_dir: &'a std::path::Path,
    pub start_time: Time,
    pub now: Timestamp,
}

fn time(nanos: i64) -> Option<Time> {
    (nanos > 0).then(|| Timestamp::from_second(nanos / 1_000_000_000).ok()).flatten().map(Time)
}

fn termination_message(c: &ContainerView) -> Option<String> {
    let path = c.termination_file.as_deref()?;
    let text = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text[..text.len().min(4096)]).into_owned();
    (!text.is_empty()).then_some(text)
}

/// The tail of a CRI log file (`<time> <stream> <P|F> <message>` lines) as upstream uses it for
/// `FallbackToLogsOnError`: the last 80 lines, at most 2048 bytes.
pub(crate) fn log_tail(text: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut partial = false;
    for line in text.lines() {
        let mut parts = line.splitn(4, ' ');
        let (msg, full) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(_), Some("stdout" | "stderr"), Some(tag), msg) => (msg.unwrap_or(""), tag != "P"),
            _ => (line, true),
        };
        match lines.last_mut() {
            Some(last) if partial => last.push_str(msg),
            _ => lines.push(msg.to_string()),
        }
        partial = !full;
    }
    let start = lines.len().saturating_sub(80);
    let text = lines[start..].join("\n");
    let cut = text.len().saturating_sub(2048);
    let cut = (cut..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
    text[cut..].to_string()
}

fn fallback_message(c: &ContainerView, log_dir: &std::path::Path) -> Option<String> {
    if c.exit_code == 0 || c.log_path.is_empty() {
        return None;
    }
    let text = std::fs::read(log_dir.join(&c.log_path)).ok()?;
    let text = String::from_utf8_lossy(&text[text.len().saturating_sub(64 * 1024)..]).into_owned();
    Some(log_tail(&text)).filter(|t| !t.is_empty())
}

fn terminated(c: &ContainerView, runtime: &str, fallback: Option<&std::path::Path>) -> ContainerState {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    let message = termination_message(c)
        .or_else(|| fallback.and_then(|dir| fallback_message(c, dir)))
        .or_else(|| (!c.message.is_empty()).then(|| c.message.clone()));
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: c.exit_code,
            reason: Some(reason),
            message,
            started_at: time(c.started_at),
            finished_at: time(c.finished_at),
            container_id: Some(format!("{runtime}://{}", c.id)),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: Option<&str>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: message.filter(|m| !m.is_empty()).map(str::to_string),
        }),
        ..Default::default()
    }
}

fn container_status(i: &StatusInputs<'_>, c: &Container, default_reason: &str) -> ContainerStatus {
    let latest = i.view.latest(&c.name);
    let previous = i.view.previous(&c.name);
    let told = i.waiting.get(&c.name);
    let rt = i.runtime_name;
    let fallback =
        (c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")).then_some(i.log_dir);
    let last_of = |p: Option<&ContainerView>| p.filter(|p| p.exited()).map(|p| terminated(p, rt, fallback));
    let (state, last_state) = match latest {
        None => (
            waiting(told.map_or(default_reason, |w| w.reason.as_str()), told.map(|w| w.message.as_str())),
            None,
        ),
        Some(l) if l.running() => (
            ContainerState {
                running: Some(ContainerStateRunning { started_at: time(l.started_at) }),
                ..Default::default()
            },
            last_of(previous),
        ),
        Some(l) if l.exited() => match told.filter(|_| will_restart(i.pod, c, l.exit_code)) {
            Some(w) => (waiting(&w.reason, Some(w.message.as_str())), Some(terminated(l, rt, fallback))),
            None => (terminated(l, rt, fallback), last_of(previous)),
        },
        Some(_) => (
            waiting(
                told.map_or("ContainerCreating", |w| w.reason.as_str()),
                told.map(|w| w.message.as_str()),
            ),
            last_of(previous),
        ),
    };
    let running = latest.filter(|l| l.running());
    let probes = running.and_then(|l| i.probes.get(&l.id));
    let started = running.is_some() && probes.is_none_or(Probes::started);
    let ready = running.is_some()
        && probes.map_or(c.readiness_probe.is_none() && c.startup_probe.is_none(), Probes::ready);
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: latest.map(|l| l.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|l| format!("{rt}://{}", l.id)),
        restart_count: latest.map_or(0, |l| l.restart_count),
        ready,
        started: Some(started),
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ..Default::default()
    }
}

/// Whether the container `c` of `pod` is started again after exiting with `exit_code`.
fn will_restart(pod: &Pod, c: &Container, exit_code: i32) -> bool {
    let spec = pod.spec.as_ref();
    let policy = spec.and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    let init =
        spec.and_then(|s| s.init_containers.as_ref()).is_some_and(|l| l.iter().any(|x| x.name == c.name));
    if init && !super::worker::is_sidecar(c) {
        exit_code != 0 && policy != "Never"
    } else {
        super::worker::is_sidecar(c) || restarts(policy, exit_code)
    }
}

/// Whether a container that exited with `exit_code` is restarted under `policy`.
pub(crate) fn restarts(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

fn condition(ty: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: ty.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.map(str::to_string),
        message,
        ..Default::default()
    }
}

/// The phase upstream's `getPhase` gives: init failures with `Never` fail the pod; a waiting
/// container keeps it Pending; crash-looping containers count as stopped.
fn phase(policy: &str, init: &[ContainerStatus], regular: &[ContainerStatus]) -> &'static str {
    let term = |s: &ContainerStatus| s.state.as_ref().and_then(|st| st.terminated.clone());
    for s in init {
        match term(s) {
            Some(t) if t.exit_code == 0 => {}
            Some(_) if policy == "Never" => return "Failed",
            _ => return "Pending",
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in regular {
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s.last_state.as_ref().is_some_and(|l| l.terminated.is_some()) {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

/// The condition types the kubelet owns; the others (readiness gates, `DisruptionTarget`, ...)
/// are kept as they are.
const OWN: &[&str] =
    &["PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled"];

fn names(list: &[&ContainerStatus]) -> String {
    format!("[{}]", list.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(" "))
}

/// The status of the pod; times of unchanged conditions come from the pod's current status.
pub(crate) fn pod_status(i: &StatusInputs<'_>) -> PodStatus {
    let spec = i.pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let current = i.pod.status.clone().unwrap_or_default();
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let init: Vec<ContainerStatus> =
        init_specs.iter().map(|c| container_status(i, c, "PodInitializing")).collect();
    let sidecar =
        |s: &ContainerStatus| init_specs.iter().any(|c| c.name == s.name && super::worker::is_sidecar(c));
    // Init containers complete by succeeding; sidecars by having started.
    let complete = |s: &ContainerStatus| {
        let state = s.state.as_ref();
        if sidecar(s) {
            s.started == Some(true)
        } else {
            state.and_then(|st| st.terminated.as_ref()).is_some_and(|t| t.exit_code == 0)
        }
    };
    let init_done = init.iter().all(complete);
    let plain_init: Vec<ContainerStatus> = init.iter().filter(|s| !sidecar(s)).cloned().collect();
    let default_reason = if init_done { "ContainerCreating" } else { "PodInitializing" };
    let regular: Vec<ContainerStatus> =
        spec.containers.iter().map(|c| container_status(i, c, default_reason)).collect();
    let sticky = current.phase.as_deref().filter(|p| matches!(*p, "Succeeded" | "Failed"));
    let sidecars_pending = init.iter().any(|s| sidecar(s) && !complete(s));
    let computed = || if sidecars_pending { "Pending" } else { phase(policy, &plain_init, &regular) };
    let deadline = sticky.is_none() && i.deadline_exceeded;
    let phase = if deadline { "Failed" } else { sticky.unwrap_or_else(computed) }.to_string();
    let terminal = matches!(phase.as_str(), "Succeeded" | "Failed");
    let sandbox = i.view.ready_sandbox();
    let ips: Vec<String> = sandbox.map(|s| s.ips.clone()).unwrap_or_default();
    let ips = if ips.is_empty() && terminal {
        current.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect()
    } else {
        ips
    };
    let host_network = spec.host_network.unwrap_or(false);
    let ips = if host_network { vec![i.host_ip.to_string()] } else { ips };

    let incomplete: Vec<&ContainerStatus> = init.iter().filter(|s| !complete(s)).collect();
    let unready: Vec<&ContainerStatus> = regular.iter().filter(|s| !s.ready).collect();
    let mut conditions = vec![
        condition("PodReadyToStartContainers", sandbox.is_some(), None, None),
        if incomplete.is_empty() {
            condition("Initialized", true, None, None)
        } else {
            let m = format!("containers with incomplete status: {}", names(&incomplete));
            condition("Initialized", false, Some("ContainersNotInitialized"), Some(m))
        },
    ];
    let (reason, message) = if terminal {
        (Some("PodCompleted"), None)
    } else if unready.is_empty() {
        (None, None)
    } else {
        (Some("ContainersNotReady"), Some(format!("containers with unready status: {}", names(&unready))))
    };
    let ready = unready.is_empty() && !terminal;
    conditions.push(condition("ContainersReady", ready, reason, message.clone()));
    // Readiness gates: each gate's condition (set by someone else) must be True too.
    let others: Vec<PodCondition> =
        current.conditions.iter().flatten().filter(|c| !OWN.contains(&c.type_.as_str())).cloned().collect();
    let missing_gate = spec.readiness_gates.iter().flatten().find_map(|g| {
        match others.iter().find(|c| c.type_ == g.condition_type) {
            None => Some(format!(
                "corresponding condition of pod readiness gate {:?} does not exist.",
                g.condition_type
            )),
            Some(c) if c.status != "True" => Some(format!(
                "the status of pod readiness gate {:?} is not \"True\", but {}",
                g.condition_type, c.status
            )),
            Some(_) => None,
        }
    });
    match missing_gate {
        Some(m) if ready => {
            conditions.push(condition("Ready", false, Some("ReadinessGatesNotReady"), Some(m)))
        }
        _ => conditions.push(condition("Ready", ready, reason, message)),
    }
    let scheduled = current
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled")
        .cloned()
        .unwrap_or_else(|| condition("PodScheduled", true, None, None));
    conditions.push(scheduled);
    for c in &mut conditions {
        let prev = current.conditions.iter().flatten().find(|p| p.type_ == c.type_);
        c.last_transition_time = match prev {
            Some(p) if p.status == c.status => p.last_transition_time.clone(),
            _ => Some(Time(i.now)),
        };
        if let Some(p) = prev {
            c.last_probe_time = p.last_probe_time.clone();
        }
    }
    conditions.extend(others);
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: Some(i.host_ip.to_string()),
        host_ips: Some(vec![HostIP { ip: i.host_ip.to_string() }]),
        pod_ip: ips.first().cloned(),
        pod_ips: (!ips.is_empty()).then(|| ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: Some(current.start_time.clone().unwrap_or_else(|| i.start_time.clone())),
        qos_class: Some(qos_class(i.pod).to_string()),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(regular),
        reason: if deadline { Some("DeadlineExceeded".into()) } else { current.reason.clone() },
        message: if deadline {
            Some("Pod was active on the node longer than the specified deadline".into())
        } else {
            current.message.clone()
        },
        ..current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: serde_json::Value, last: serde_json::Value) -> ContainerStatus {
        serde_json::from_value(serde_json::json!({"name": "a", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": state, "lastState": last}))
        .unwrap_or_default()
    }

    #[test]
    fn the_log_fallback_joins_partial_lines_and_keeps_the_tail() {
        let log = "2024-01-01T00:00:00Z stdout F starting\n2024-01-01T00:00:01Z stderr P fatal: \n\
                   2024-01-01T00:00:01Z stderr F disk full\nplain line\n";
        assert_eq!(log_tail(log), "starting\nfatal: disk full\nplain line");
        let long: String = (0..200).map(|i| format!("t stdout F line {i}\n")).collect();
        let tail = log_tail(&long);
        assert!(tail.ends_with("line 199") && tail.starts_with("line 120"), "{tail}");
    }

    #[test]
    fn phase_follows_restart_policy_and_container_states() {
        let running = status(serde_json::json!({"running": {}}), serde_json::json!({}));
        let ok = status(serde_json::json!({"terminated": {"exitCode": 0}}), serde_json::json!({}));
        let failed = status(serde_json::json!({"terminated": {"exitCode": 2}}), serde_json::json!({}));
        let crashloop = status(
            serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            serde_json::json!({"terminated": {"exitCode": 1}}),
        );
        let creating =
            status(serde_json::json!({"waiting": {"reason": "ContainerCreating"}}), serde_json::json!({}));
        assert_eq!(phase("Always", &[], &[running.clone(), ok.clone()]), "Running");
        assert_eq!(phase("Never", &[], std::slice::from_ref(&ok)), "Succeeded");
        assert_eq!(phase("Never", &[], &[ok.clone(), failed.clone()]), "Failed");
        assert_eq!(phase("OnFailure", &[], std::slice::from_ref(&ok)), "Succeeded");
        assert_eq!(phase("Always", &[], std::slice::from_ref(&ok)), "Running");
        assert_eq!(phase("Always", &[], &[crashloop]), "Running");
        assert_eq!(phase("Always", &[], std::slice::from_ref(&creating)), "Pending");
        assert_eq!(phase("Never", std::slice::from_ref(&failed), std::slice::from_ref(&creating)), "Failed");
        assert_eq!(phase("Always", &[running], &[creating]), "Pending");
        assert!(
            restarts("OnFailure", 1)
                && !restarts("OnFailure", 0)
                && !restarts("Never", 1)
                && restarts("Always", 0)
        );
    }
}
