//! The Pod printer: READY counts regular containers and started restartable (sidecar) init
//! containers; STATUS walks init containers, then regular containers, then deletion, exactly as
//! upstream's `printPod`; RESTARTS adds how long ago the last container terminated.

use serde_json::{json, Value};

use super::{condition_true, flag, get, items, n, name, or, parse_time, s, text, Clock, Column, AGE, NAME};

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    text("Ready", "How many of the pod's containers are ready."),
    text("Status", "A summary of the pod's phase and container states."),
    text("Restarts", "Container restarts, and how long ago the latest one terminated."),
    AGE,
    text("IP", "The pod's primary IP address.").wide(),
    text("Node", "The node the pod is bound to.").wide(),
    text("Nominated Node", "The node the pod may run on once preemption completes.").wide(),
    text("Readiness Gates", "Readiness gates whose condition is true, of all gates.").wide(),
];

/// What the READY, STATUS and RESTARTS cells summarize.
#[derive(Debug, PartialEq)]
struct Summary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<jiff::Timestamp>,
}

pub(super) fn cells(o: &Value, clock: &Clock) -> Vec<Value> {
    let sum = summarize(o);
    let restarts = match sum.last_restart {
        Some(t) if sum.restarts != 0 => {
            format!("{} ({} ago)", sum.restarts, super::human_duration(super::seconds_between(t, clock.0)))
        }
        _ => sum.restarts.to_string(),
    };
    let ip = items(o, "/status/podIPs").first().map_or_else(|| s(o, "/status/podIP"), |ip| s(ip, "/ip"));
    let gates = items(o, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = items(o, "/status/conditions");
        let passed = gates
            .iter()
            .filter(|g| {
                let kind = s(g, "/conditionType");
                conditions.iter().find(|c| s(c, "/type") == kind).is_some_and(|c| s(c, "/status") == "True")
            })
            .count();
        format!("{passed}/{}", gates.len())
    };
    vec![
        name(o),
        json!(format!("{}/{}", sum.ready, sum.total)),
        json!(sum.reason),
        json!(restarts),
        clock.age(o),
        json!(or(ip, "<none>")),
        json!(or(s(o, "/spec/nodeName"), "<none>")),
        json!(or(s(o, "/status/nominatedNodeName"), "<none>")),
        json!(readiness_gates),
    ]
}

/// The row conditions of a finished pod, which let clients tell completed rows apart.
pub(super) fn conditions(o: &Value) -> Option<Value> {
    let (reason, message) = match s(o, "/status/phase") {
        "Succeeded" => ("Succeeded", "The pod completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

/// The finish time of a container's previous run, if it terminated.
fn last_terminated(status: &Value) -> Option<jiff::Timestamp> {
    parse_time(s(status, "/lastState/terminated/finishedAt"))
}

fn keep_latest(latest: &mut Option<jiff::Timestamp>, t: Option<jiff::Timestamp>) {
    if let Some(t) = t {
        if latest.is_none_or(|l| l < t) {
            *latest = Some(t);
        }
    }
}

/// The reason of a terminated state without one: `<prefix>Signal:N` or `<prefix>ExitCode:N`.
fn exit_reason(terminated: &Value, prefix: &str) -> String {
    match (s(terminated, "/reason"), n(terminated, "/signal")) {
        ("", 0) => format!("{prefix}ExitCode:{}", n(terminated, "/exitCode")),
        ("", signal) => format!("{prefix}Signal:{signal}"),
        (reason, _) => format!("{prefix}{reason}"),
    }
}

fn summarize(o: &Value) -> Summary {
    let phase = s(o, "/status/phase");
    let mut reason = or(s(o, "/status/reason"), phase);
    let conditions = items(o, "/status/conditions");
    if conditions.iter().any(|c| s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated") {
        reason = "SchedulingGated".into();
    }

    let init_specs = items(o, "/spec/initContainers");
    let sidecar = |name: &str| {
        init_specs.iter().find(|c| s(c, "/name") == name).is_some_and(|c| s(c, "/restartPolicy") == "Always")
    };
    let sidecars = init_specs.iter().filter(|c| s(c, "/restartPolicy") == "Always").count();
    let mut sum = Summary {
        ready: 0,
        total: items(o, "/spec/containers").len() + sidecars,
        reason: String::new(),
        restarts: 0,
        last_restart: None,
    };
    let (mut sidecar_restarts, mut sidecar_last) = (0, None);

    let mut initializing = false;
    for (i, c) in items(o, "/status/initContainerStatuses").iter().enumerate() {
        sum.restarts += n(c, "/restartCount");
        keep_latest(&mut sum.last_restart, last_terminated(c));
        let is_sidecar = sidecar(s(c, "/name"));
        if is_sidecar {
            sidecar_restarts += n(c, "/restartCount");
            keep_latest(&mut sidecar_last, last_terminated(c));
        }
        let terminated = get(c, "/state/terminated");
        let waiting = s(c, "/state/waiting/reason");
        if terminated.is_some_and(|t| n(t, "/exitCode") == 0) {
            continue;
        }
        if is_sidecar && flag(c, "/started") {
            if flag(c, "/ready") {
                sum.ready += 1;
            }
            continue;
        }
        reason = match terminated {
            Some(t) => exit_reason(t, "Init:"),
            None if !waiting.is_empty() && waiting != "PodInitializing" => format!("Init:{waiting}"),
            None => format!("Init:{i}/{}", init_specs.len()),
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(o, "/status/conditions", "Initialized") {
        sum.restarts = sidecar_restarts;
        sum.last_restart = sidecar_last;
        let mut has_running = false;
        for c in items(o, "/status/containerStatuses").iter().rev() {
            sum.restarts += n(c, "/restartCount");
            keep_latest(&mut sum.last_restart, last_terminated(c));
            let waiting = s(c, "/state/waiting/reason");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = get(c, "/state/terminated") {
                reason = exit_reason(t, "");
            } else if flag(c, "/ready") && get(c, "/state/running").is_some() {
                has_running = true;
                sum.ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let ready = condition_true(o, "/status/conditions", "Ready");
            reason = if ready { "Running" } else { "NotReady" }.into();
        }
    }

    if get(o, "/metadata/deletionTimestamp").is_some() {
        if s(o, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }
    sum.reason = reason;
    sum
}

#[cfg(test)]
mod tests {
    use super::super::{ago, test_clock};
    use super::*;

    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "p", "creationTimestamp": ago(3600)}, "spec": spec, "status": status})
    }

    fn row(o: &Value) -> Vec<Value> {
        cells(o, &test_clock())
    }

    fn running(ready: bool, restarts: i64) -> Value {
        json!({"name": "c", "ready": ready, "restartCount": restarts, "state": {"running": {}}})
    }

    #[test]
    fn running_pod_counts_ready_containers() {
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b"}]}),
            json!({"phase": "Running", "containerStatuses": [running(true, 0), running(false, 0)]}),
        );
        assert_eq!(row(&p)[1..4], [json!("1/2"), json!("Running"), json!("0")]);
        assert_eq!(row(&p)[4], "60m");
    }

    #[test]
    fn waiting_init_container_shows_init_progress() {
        let p = pod(
            json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "i2", "state": {"running": {}}}
            ], "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        assert_eq!(row(&p)[1..3], [json!("0/1"), json!("Init:1/2")]);
        let podinit = pod(
            json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"waiting": {"reason": "PodInitializing"}}}
            ]}),
        );
        assert_eq!(row(&podinit)[2], "Init:0/1");
    }

    #[test]
    fn crashing_init_container_shows_its_reason() {
        let p = pod(
            json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(120)}}}
            ], "containerStatuses": [{"name": "a", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        assert_eq!(row(&p)[2..4], [json!("Init:CrashLoopBackOff"), json!("4 (2m ago)")]);
    }

    #[test]
    fn failed_init_container_without_reason_shows_exit_code_or_signal() {
        let failed = |terminated: Value| {
            pod(
                json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]}),
                json!({"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"terminated": terminated}}]}),
            )
        };
        assert_eq!(row(&failed(json!({"exitCode": 3})))[2], "Init:ExitCode:3");
        assert_eq!(row(&failed(json!({"exitCode": 137, "signal": 9})))[2], "Init:Signal:9");
        assert_eq!(row(&failed(json!({"exitCode": 1, "reason": "Error"})))[2], "Init:Error");
    }

    #[test]
    fn main_container_waiting_for_init_shows_pod_initializing() {
        let p = pod(
            json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]}),
            json!({"phase": "Pending", "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [{"name": "i1", "state": {"terminated": {"exitCode": 0}}}],
                "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        assert_eq!(row(&p)[2], "PodInitializing");
    }

    #[test]
    fn restartable_sidecars_count_toward_ready_and_restarts() {
        let p = pod(
            json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}, {"name": "setup"}],
                   "containers": [{"name": "a"}]}),
            json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "proxy", "started": true, "ready": true, "restartCount": 2, "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(600)}}},
                    {"name": "setup", "restartCount": 5, "state": {"terminated": {"exitCode": 0}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(60)}}}
                ],
                "containerStatuses": [{"name": "a", "ready": true, "restartCount": 1, "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}}}]}),
        );
        // the regular init container's restarts are dropped once the pod is initialized
        assert_eq!(row(&p)[1..4], [json!("2/2"), json!("Running"), json!("3 (5m ago)")]);
    }

    #[test]
    fn unstarted_sidecar_blocks_initialization() {
        let p = pod(
            json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "a"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "proxy", "started": false, "state": {"running": {}}}
            ]}),
        );
        assert_eq!(row(&p)[1..3], [json!("0/2"), json!("Init:0/1")]);
    }

    #[test]
    fn restarts_without_a_termination_time_have_no_suffix() {
        let mut c = running(true, 7);
        c["lastState"] = json!({"terminated": {"exitCode": 1}});
        let p = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Running", "containerStatuses": [c]}),
        );
        assert_eq!(row(&p)[3], "7");
    }

    #[test]
    fn first_container_reason_wins() {
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b"}]}),
            json!({"phase": "Running", "containerStatuses": [
                {"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff"}}},
                {"name": "b", "state": {"terminated": {"exitCode": 0, "signal": 15}}}
            ]}),
        );
        assert_eq!(row(&p)[2], "ImagePullBackOff");
        let p = pod(
            json!({"containers": [{"name": "b"}]}),
            json!({"phase": "Running", "containerStatuses": [{"name": "b", "state": {"terminated": {"exitCode": 0, "signal": 15}}}]}),
        );
        assert_eq!(row(&p)[2], "Signal:15");
    }

    #[test]
    fn completed_container_beside_running_one_shows_running_or_not_ready() {
        let status = |ready_condition: &str| {
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": ready_condition}], "containerStatuses": [
                running(true, 0),
                {"name": "job", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ]})
        };
        let spec = json!({"containers": [{"name": "c"}, {"name": "job"}]});
        assert_eq!(row(&pod(spec.clone(), status("True")))[2], "Running");
        assert_eq!(row(&pod(spec, status("False")))[2], "NotReady");
    }

    #[test]
    fn succeeded_pod_shows_completed_and_a_completed_row_condition() {
        let p = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Succeeded", "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
        );
        assert_eq!(row(&p)[1..3], [json!("0/1"), json!("Completed")]);
        let cond = conditions(&p).unwrap_or_else(|| panic!("a completed condition"));
        assert_eq!(cond[0]["type"], "Completed");
        assert_eq!(cond[0]["reason"], "Succeeded");
        assert_eq!(
            conditions(&pod(json!({}), json!({"phase": "Failed"}))).map(|c| c[0]["reason"].clone()),
            Some(json!("Failed"))
        );
        assert_eq!(conditions(&pod(json!({}), json!({"phase": "Running"}))), None);
    }

    #[test]
    fn deleted_pods_show_terminating_unless_finished_or_node_lost() {
        let mut p = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Running", "containerStatuses": [running(true, 0)]}),
        );
        p["metadata"]["deletionTimestamp"] = json!(ago(5));
        assert_eq!(row(&p)[2], "Terminating");
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(row(&p)[2], "Unknown");
        let mut done = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "c", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ]}),
        );
        done["metadata"]["deletionTimestamp"] = json!(ago(5));
        assert_eq!(row(&done)[2], "Completed");
    }

    #[test]
    fn pod_reason_and_scheduling_gates_override_the_phase() {
        let evicted =
            pod(json!({"containers": [{"name": "c"}]}), json!({"phase": "Failed", "reason": "Evicted"}));
        assert_eq!(row(&evicted)[2], "Evicted");
        let gated = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(row(&gated)[2], "SchedulingGated");
    }

    #[test]
    fn wide_cells_show_ip_node_nomination_and_readiness_gates() {
        let p = pod(
            json!({"containers": [{"name": "c"}], "readinessGates": [{"conditionType": "a"}, {"conditionType": "b"}]}),
            json!({"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
                   "conditions": [{"type": "a", "status": "True"}, {"type": "b", "status": "False"}]}),
        );
        assert_eq!(row(&p)[5..], [json!("10.0.0.1"), json!("<none>"), json!("<none>"), json!("1/2")]);
        let bare = pod(json!({"containers": [], "nodeName": "n1"}), json!({"nominatedNodeName": "n2"}));
        assert_eq!(row(&bare)[5..], [json!("<none>"), json!("n1"), json!("n2"), json!("<none>")]);
    }
}
