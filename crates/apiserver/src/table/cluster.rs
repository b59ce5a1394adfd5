//! Printers of cluster and namespace plumbing: nodes, namespaces, config and secrets, service
//! accounts, events (both APIs), quotas, leases, priority and runtime classes.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{
    boolean, flag, get, int, items, n, name, or, parse_time, quantity, s, text, Clock, Column, AGE, NAME,
};

pub(super) const NODE: &[Column] = &[
    NAME,
    text("Status", "Whether the node is ready, and schedulable."),
    text("Roles", "The node's roles, from its labels."),
    AGE,
    text("Version", "The kubelet version."),
    text("Internal-IP", "The node's internal IP address.").wide(),
    text("External-IP", "The node's external IP address.").wide(),
    text("OS-Image", "The operating system image.").wide(),
    text("Kernel-Version", "The kernel version.").wide(),
    text("Container-Runtime", "The container runtime and its version.").wide(),
];

pub(super) const NAMESPACE: &[Column] = &[NAME, text("Status", "The phase of the namespace."), AGE];

pub(super) const CONFIG_MAP: &[Column] = &[NAME, text("Data", "How many keys the config map holds."), AGE];

pub(super) const SECRET: &[Column] =
    &[NAME, text("Type", "The type of the secret."), text("Data", "How many keys the secret holds."), AGE];

pub(super) const SERVICE_ACCOUNT: &[Column] =
    &[NAME, text("Secrets", "How many secrets the service account lists."), AGE];

pub(super) const EVENT: &[Column] = &[
    text("Last Seen", "How long ago the event last occurred."),
    text("Type", "Normal or Warning."),
    text("Reason", "Why the event happened."),
    text("Object", "The object the event is about."),
    text("Subobject", "The part of the object the event is about.").wide(),
    text("Source", "The component that reported the event.").wide(),
    text("Message", "What happened."),
    text("First Seen", "How long ago the event first occurred.").wide(),
    text("Count", "How many times the event occurred.").wide(),
    Column { format: "name", ..NAME }.wide(),
];

pub(super) const RESOURCE_QUOTA: &[Column] = &[
    NAME,
    text("Request", "Used of hard limits, for everything but limits."),
    text("Limit", "Used of hard limits, for limits."),
    AGE,
];

pub(super) const LEASE: &[Column] = &[NAME, text("Holder", "The current holder of the lease."), AGE];

pub(super) const PRIORITY_CLASS: &[Column] = &[
    NAME,
    int("Value", "The priority of pods in the class."),
    boolean("Global-Default", "Whether pods without a class get this one."),
    AGE,
    text("PreemptionPolicy", "Whether pods of the class preempt others."),
];

pub(super) const RUNTIME_CLASS: &[Column] =
    &[NAME, text("Handler", "The CRI handler running the class's pods."), AGE];

pub(super) fn node(o: &Value, clock: &Clock) -> Vec<Value> {
    // like upstream's condition map, the last Ready condition wins
    let ready = items(o, "/status/conditions").iter().rev().find(|c| s(c, "/type") == "Ready");
    let mut status = match ready {
        Some(c) if s(c, "/status") == "True" => vec!["Ready"],
        Some(_) => vec!["NotReady"],
        None => vec!["Unknown"],
    };
    if flag(o, "/spec/unschedulable") {
        status.push("SchedulingDisabled");
    }
    let roles: BTreeSet<&str> = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) => Some(role).filter(|r| !r.is_empty()),
            None if k == "kubernetes.io/role" => v.as_str().filter(|r| !r.is_empty()),
            None => None,
        })
        .collect();
    let address = |kind: &str| {
        let found = items(o, "/status/addresses").iter().find(|a| s(a, "/type") == kind);
        found.map_or_else(|| "<none>".to_string(), |a| s(a, "/address").to_string())
    };
    let info = |field: &str| or(s(o, &format!("/status/nodeInfo/{field}")), "<unknown>");
    vec![
        name(o),
        json!(status.join(",")),
        json!(or(&roles.into_iter().collect::<Vec<_>>().join(","), "<none>")),
        clock.age(o),
        json!(s(o, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

pub(super) fn namespace(o: &Value, clock: &Clock) -> Vec<Value> {
    vec![name(o), json!(s(o, "/status/phase")), clock.age(o)]
}

/// The number of keys of the object at `pointer`.
fn keys(o: &Value, pointer: &str) -> usize {
    o.pointer(pointer).and_then(Value::as_object).map_or(0, serde_json::Map::len)
}

pub(super) fn config_map(o: &Value, clock: &Clock) -> Vec<Value> {
    vec![name(o), json!(keys(o, "/data") + keys(o, "/binaryData")), clock.age(o)]
}

pub(super) fn secret(o: &Value, clock: &Clock) -> Vec<Value> {
    vec![name(o), json!(s(o, "/type")), json!(keys(o, "/data")), clock.age(o)]
}

pub(super) fn service_account(o: &Value, clock: &Clock) -> Vec<Value> {
    vec![name(o), json!(items(o, "/secrets").len()), clock.age(o)]
}

/// Where an event API keeps the fields the printer reads; `events.k8s.io/v1` renames and
/// deprecates the core ones.
struct EventFields {
    subject: &'static str,
    message: &'static str,
    first: &'static str,
    last: &'static str,
    count: &'static str,
    source: &'static str,
    /// The reporting controller: `reportingComponent` in core/v1.
    reporting: &'static str,
}

const CORE_EVENT: EventFields = EventFields {
    subject: "/involvedObject",
    message: "/message",
    first: "/firstTimestamp",
    last: "/lastTimestamp",
    count: "/count",
    source: "/source",
    reporting: "/reportingComponent",
};

const EVENTS_V1: EventFields = EventFields {
    subject: "/regarding",
    message: "/note",
    first: "/deprecatedFirstTimestamp",
    last: "/deprecatedLastTimestamp",
    count: "/deprecatedCount",
    source: "/deprecatedSource",
    reporting: "/reportingController",
};

pub(super) fn core_event(o: &Value, clock: &Clock) -> Vec<Value> {
    event(o, clock, &CORE_EVENT)
}

pub(super) fn events_event(o: &Value, clock: &Clock) -> Vec<Value> {
    event(o, clock, &EVENTS_V1)
}

fn event(o: &Value, clock: &Clock, f: &EventFields) -> Vec<Value> {
    let first = match parse_time(s(o, f.first)) {
        Some(_) => clock.since(s(o, f.first)),
        None => clock.since(s(o, "/eventTime")),
    };
    let mut last = match parse_time(s(o, f.last)) {
        Some(_) => clock.since(s(o, f.last)),
        None => first.clone(),
    };
    let mut count = n(o, f.count);
    if let Some(series) = get(o, "/series") {
        last = clock.since(s(series, "/lastObservedTime"));
        count = n(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let subject = get(o, f.subject).unwrap_or(&Value::Null);
    let kind = s(subject, "/kind").to_lowercase();
    let target = match s(subject, "/name") {
        "" => kind,
        subject_name => format!("{kind}/{subject_name}"),
    };
    let component = or(s(o, &format!("{}/component", f.source)), s(o, f.reporting));
    let instance = or(s(o, &format!("{}/host", f.source)), s(o, "/reportingInstance"));
    let source = if instance.is_empty() { component } else { format!("{component}, {instance}") };
    vec![
        json!(last),
        json!(s(o, "/type")),
        json!(s(o, "/reason")),
        json!(target),
        json!(s(subject, "/fieldPath")),
        json!(source),
        json!(s(o, f.message).trim()),
        json!(first),
        json!(count),
        name(o),
    ]
}

pub(super) fn resource_quota(o: &Value, clock: &Clock) -> Vec<Value> {
    let hard = o.pointer("/status/hard").and_then(Value::as_object);
    let mut resources: Vec<&String> = hard.into_iter().flat_map(|h| h.keys()).collect();
    resources.sort_unstable();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for resource in resources {
        let used = o
            .pointer("/status/used")
            .and_then(|u| u.get(resource.as_str()))
            .map_or_else(|| "0".into(), quantity);
        let limit = hard.and_then(|h| h.get(resource.as_str())).map_or_else(String::new, quantity);
        let entry = format!("{resource}: {used}/{limit}");
        match resource.split_once('.') {
            Some(("limits", _)) => limits.push(entry),
            _ => requests.push(entry),
        }
    }
    vec![name(o), json!(requests.join(", ")), json!(limits.join(", ")), clock.age(o)]
}

pub(super) fn lease(o: &Value, clock: &Clock) -> Vec<Value> {
    vec![name(o), json!(s(o, "/spec/holderIdentity")), clock.age(o)]
}

pub(super) fn priority_class(o: &Value, clock: &Clock) -> Vec<Value> {
    vec![
        name(o),
        json!(n(o, "/value")),
        json!(flag(o, "/globalDefault")),
        clock.age(o),
        json!(s(o, "/preemptionPolicy")),
    ]
}

pub(super) fn runtime_class(o: &Value, clock: &Clock) -> Vec<Value> {
    vec![name(o), json!(s(o, "/handler")), clock.age(o)]
}

#[cfg(test)]
mod tests {
    use super::super::{ago, test_clock};
    use super::*;

    #[test]
    fn node_shows_readiness_cordon_roles_and_wide_info() {
        let node_json = json!({
            "metadata": {"name": "n1", "creationTimestamp": ago(86400 * 2), "labels": {
                "node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/etcd": "true",
                "node-role.kubernetes.io/": "", "kubernetes.io/role": "master", "kubernetes.io/hostname": "n1"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Ubuntu 24.04", "kernelVersion": "6.8.0"}}
        });
        assert_eq!(
            node(&node_json, &test_clock()),
            vec![
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,etcd,master"),
                json!("2d"),
                json!("v1.33.0"),
                json!("10.0.0.1"),
                json!("<none>"),
                json!("Ubuntu 24.04"),
                json!("6.8.0"),
                json!("<unknown>")
            ]
        );
        let not_ready = json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(node(&not_ready, &test_clock())[1..3], [json!("NotReady"), json!("<none>")]);
        let fresh = json!({"metadata": {"name": "n3"}});
        assert_eq!(node(&fresh, &test_clock())[1], "Unknown");
    }

    #[test]
    fn config_secret_and_account_cells_count_entries() {
        let cm =
            json!({"metadata": {"name": "cm"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(config_map(&cm, &test_clock())[1], 3);
        let secret_json = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(secret(&secret_json, &test_clock())[1..3], [json!("kubernetes.io/tls"), json!(2)]);
        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(service_account(&sa, &test_clock())[1], 0);
        let ns = json!({"metadata": {"name": "kube-system"}, "status": {"phase": "Active"}});
        assert_eq!(namespace(&ns, &test_clock())[1], "Active");
    }

    #[test]
    fn core_events_show_times_target_source_and_count() {
        let ev = json!({
            "metadata": {"name": "web.17a"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{nginx}"},
            "type": "Normal", "reason": "Pulled", "message": "  Pulled image \"nginx\"\n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 4
        });
        assert_eq!(
            core_event(&ev, &test_clock()),
            vec![
                json!("30s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{nginx}"),
                json!("kubelet, n1"),
                json!("Pulled image \"nginx\""),
                json!("10m"),
                json!(4),
                json!("web.17a")
            ]
        );
        let singleton = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Node"}, "eventTime": "2024-12-31T23:58:00.000000Z",
            "reportingComponent": "scheduler"});
        assert_eq!(
            core_event(&singleton, &test_clock())[..9],
            [
                json!("2m"),
                json!(""),
                json!(""),
                json!("node"),
                json!(""),
                json!("scheduler"),
                json!(""),
                json!("2m"),
                json!(1)
            ]
        );
    }

    #[test]
    fn events_api_events_map_to_the_same_columns() {
        let ev = json!({
            "metadata": {"name": "web.18b"},
            "regarding": {"kind": "Deployment", "name": "web"},
            "type": "Warning", "reason": "Failed", "note": "boom",
            "reportingController": "deployment-controller", "reportingInstance": "cp-1",
            "eventTime": ago(900), "series": {"count": 9, "lastObservedTime": ago(60)}
        });
        assert_eq!(
            events_event(&ev, &test_clock()),
            vec![
                json!("60s"),
                json!("Warning"),
                json!("Failed"),
                json!("deployment/web"),
                json!(""),
                json!("deployment-controller, cp-1"),
                json!("boom"),
                json!("15m"),
                json!(9),
                json!("web.18b")
            ]
        );
        let old = json!({"metadata": {"name": "e"}, "regarding": {"kind": "Pod", "name": "p"},
            "deprecatedSource": {"component": "kubelet"}, "deprecatedFirstTimestamp": ago(7200), "deprecatedCount": 2});
        assert_eq!(
            events_event(&old, &test_clock())[..9],
            [
                json!("120m"),
                json!(""),
                json!(""),
                json!("pod/p"),
                json!(""),
                json!("kubelet"),
                json!(""),
                json!("120m"),
                json!(2)
            ]
        );
    }

    #[test]
    fn resource_quota_splits_requests_from_limits() {
        let quota = json!({"metadata": {"name": "compute"}, "status": {
            "hard": {"requests.cpu": "1", "limits.memory": "2Gi", "pods": "10", "limits.cpu": "2", "requests.memory": "1Gi"},
            "used": {"requests.cpu": "500m", "limits.cpu": "1", "pods": "3"}}});
        assert_eq!(
            resource_quota(&quota, &test_clock())[1..3],
            [
                json!("pods: 3/10, requests.cpu: 500m/1, requests.memory: 0/1Gi"),
                json!("limits.cpu: 1/2, limits.memory: 0/2Gi")
            ]
        );
        let empty = json!({"metadata": {"name": "q"}});
        assert_eq!(resource_quota(&empty, &test_clock())[1..3], [json!(""), json!("")]);
    }

    #[test]
    fn lease_priority_and_runtime_classes_print_their_fields() {
        let l = json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "cp-1_abc"}});
        assert_eq!(lease(&l, &test_clock())[1], "cp-1_abc");
        assert_eq!(lease(&json!({"metadata": {"name": "x"}}), &test_clock())[1], "");
        let pc = json!({"metadata": {"name": "system-node-critical"}, "value": 2000001000, "preemptionPolicy": "PreemptLowerPriority"});
        let cells = priority_class(&pc, &test_clock());
        assert_eq!(cells[1..3], [json!(2000001000), json!(false)]);
        assert_eq!(cells[4], "PreemptLowerPriority");
        let rc = json!({"metadata": {"name": "gvisor"}, "handler": "runsc"});
        assert_eq!(runtime_class(&rc, &test_clock())[1], "runsc");
    }
}
