//! Server-side printing: `meta.k8s.io/v1` Tables with the columns `kubectl get` shows (priority
//! 0) and `kubectl get -o wide` adds (priority 1), cell for cell what kube-apiserver v1.33 prints.
//!
//! Every built-in kind that has a printer upstream has one here, split by concern: [`pod`],
//! [`workloads`], [`network`], [`storage`], [`cluster`] and [`control`]. Built-in kinds without one
//! print Name and Created At (upstream's default table convertor); custom resources print Name and
//! Age. Like the API server, cells are always rendered wide: kubectl drops the priority-1 columns
//! itself unless asked for `-o wide`.
//!
//! Printers read the stored JSON leniently: a missing field prints what upstream prints for its
//! zero value, never an error.

mod cluster;
mod control;
mod network;
mod pod;
mod storage;
mod workloads;

use std::cmp::Ordering;

use serde_json::{json, Value};

use crate::registry::ResourceInfo;

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

/// One column definition: name, type (`string`, `integer`, `boolean`, `date`), format, priority
/// (0 = always, 1 = `-o wide`) and a short description.
#[derive(Debug, Clone, Copy)]
struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    priority: u8,
    description: &'static str,
}

const fn text(name: &'static str, description: &'static str) -> Column {
    Column { name, kind: "string", format: "", priority: 0, description }
}

const fn int(name: &'static str, description: &'static str) -> Column {
    Column { name, kind: "integer", format: "", priority: 0, description }
}

const fn boolean(name: &'static str, description: &'static str) -> Column {
    Column { name, kind: "boolean", format: "", priority: 0, description }
}

impl Column {
    /// The same column, shown only by `-o wide`.
    const fn wide(self) -> Column {
        Column { priority: 1, ..self }
    }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    priority: 0,
    description: "Name must be unique within a namespace.",
};
const AGE: Column = text(
    "Age",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);
const CREATED_AT: Column = Column { kind: "date", ..text("Created At", AGE.description) };

/// The cells of one object, in column order, wide columns included.
type Cells = fn(&Value, &Clock) -> Vec<Value>;

/// How one kind prints.
#[derive(Debug, Clone, Copy)]
struct Printer {
    columns: &'static [Column],
    cells: Cells,
    /// Row conditions (`Completed` for finished pods).
    conditions: fn(&Value) -> Option<Value>,
    /// The order of a list's rows, for the kinds upstream sorts.
    order: Option<fn(&Value, &Value) -> Ordering>,
}

impl Printer {
    fn new(columns: &'static [Column], cells: Cells) -> Self {
        Printer { columns, cells, conditions: |_| None, order: None }
    }
}

/// The API groups kube-apiserver serves itself; their kinds without a printer use the default
/// table convertor, every other kind is a custom resource.
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

fn printer(info: &ResourceInfo) -> Printer {
    use self::{cluster as c, control as ctl, network as net, storage as st, workloads as w};
    let p = Printer::new;
    match (info.group, info.kind) {
        ("", "Pod") => Printer { conditions: pod::conditions, ..p(pod::COLUMNS, pod::cells) },
        ("", "PodTemplate") => p(w::POD_TEMPLATE, w::pod_template),
        ("", "ReplicationController") => p(w::REPLICATION_CONTROLLER, w::replication_controller),
        ("apps", "ReplicaSet") => p(w::REPLICA_SET, w::replica_set),
        ("apps", "Deployment") => p(w::DEPLOYMENT, w::deployment),
        ("apps", "StatefulSet") => p(w::STATEFUL_SET, w::stateful_set),
        ("apps", "DaemonSet") => p(w::DAEMON_SET, w::daemon_set),
        ("apps", "ControllerRevision") => p(w::CONTROLLER_REVISION, w::controller_revision),
        ("batch", "Job") => p(w::JOB, w::job),
        ("batch", "CronJob") => p(w::CRON_JOB, w::cron_job),
        ("autoscaling", "HorizontalPodAutoscaler") => p(w::HPA, w::horizontal_pod_autoscaler),
        ("policy", "PodDisruptionBudget") => p(w::PDB, w::pod_disruption_budget),
        ("", "Service") => p(net::SERVICE, net::service),
        ("", "Endpoints") => p(net::ENDPOINTS, net::endpoints),
        ("discovery.k8s.io", "EndpointSlice") => p(net::ENDPOINT_SLICE, net::endpoint_slice),
        ("networking.k8s.io", "Ingress") => p(net::INGRESS, net::ingress),
        ("networking.k8s.io", "IngressClass") => p(net::INGRESS_CLASS, net::ingress_class),
        ("networking.k8s.io", "NetworkPolicy") => p(net::NETWORK_POLICY, net::network_policy),
        ("networking.k8s.io", "ServiceCIDR") => p(net::SERVICE_CIDR, net::service_cidr),
        ("networking.k8s.io", "IPAddress") => p(net::IP_ADDRESS, net::ip_address),
        ("", "PersistentVolume") => p(st::PV, st::persistent_volume),
        ("", "PersistentVolumeClaim") => p(st::PVC, st::persistent_volume_claim),
        ("storage.k8s.io", "StorageClass") => p(st::STORAGE_CLASS, st::storage_class),
        ("storage.k8s.io", "CSIDriver") => p(st::CSI_DRIVER, st::csi_driver),
        ("storage.k8s.io", "CSINode") => p(st::CSI_NODE, st::csi_node),
        ("storage.k8s.io", "CSIStorageCapacity") => p(st::CSI_STORAGE_CAPACITY, st::csi_storage_capacity),
        ("storage.k8s.io", "VolumeAttachment") => p(st::VOLUME_ATTACHMENT, st::volume_attachment),
        ("", "Node") => p(c::NODE, c::node),
        ("", "Namespace") => p(c::NAMESPACE, c::namespace),
        ("", "ConfigMap") => p(c::CONFIG_MAP, c::config_map),
        ("", "Secret") => p(c::SECRET, c::secret),
        ("", "ServiceAccount") => p(c::SERVICE_ACCOUNT, c::service_account),
        ("", "Event") => p(c::EVENT, c::core_event),
        ("events.k8s.io", "Event") => p(c::EVENT, c::events_event),
        ("", "ResourceQuota") => p(c::RESOURCE_QUOTA, c::resource_quota),
        ("coordination.k8s.io", "Lease") => p(c::LEASE, c::lease),
        ("scheduling.k8s.io", "PriorityClass") => p(c::PRIORITY_CLASS, c::priority_class),
        ("node.k8s.io", "RuntimeClass") => p(c::RUNTIME_CLASS, c::runtime_class),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            p(ctl::ROLE_BINDING, ctl::role_binding)
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => p(ctl::CSR, ctl::certificate_signing_request),
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration",
        ) => p(ctl::WEBHOOK_CONFIGURATION, ctl::webhook_configuration),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => p(ctl::VAP, ctl::admission_policy),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            p(ctl::VAP_BINDING, ctl::admission_policy_binding)
        }
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => {
            Printer { order: Some(ctl::flow_schema_order), ..p(ctl::FLOW_SCHEMA, ctl::flow_schema) }
        }
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => {
            p(ctl::PRIORITY_LEVEL, ctl::priority_level_configuration)
        }
        ("apiregistration.k8s.io", "APIService") => p(ctl::API_SERVICE, ctl::api_service),
        (group, _) if BUILTIN_GROUPS.contains(&group) => p(&[NAME, CREATED_AT], default_cells),
        _ => p(&[NAME, Column { kind: "date", ..AGE }], custom_cells),
    }
}

/// The default table convertor: the name and the creation time in RFC 3339 (UTC, seconds).
fn default_cells(o: &Value, _: &Clock) -> Vec<Value> {
    let created = parse_time(s(o, "/metadata/creationTimestamp"))
        .map_or_else(|| "0001-01-01T00:00:00Z".to_string(), |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    vec![name(o), json!(created)]
}

/// A custom resource without additional printer columns: the name and its age.
fn custom_cells(o: &Value, clock: &Clock) -> Vec<Value> {
    vec![name(o), clock.age(o)]
}

/// A Table of `objects`; `list_meta` is the list's metadata (resourceVersion, continue).
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    include: &Include,
    meta_version: &str,
    list_meta: Option<Value>,
) -> Value {
    let printer = printer(info);
    let clock = Clock::now();
    let defs: Vec<Value> = printer
        .columns
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority})
        })
        .collect();
    let mut ordered: Vec<&Value> = objects.iter().collect();
    if let Some(order) = printer.order {
        ordered.sort_by(|a, b| order(a, b));
    }
    let rows: Vec<Value> = ordered
        .into_iter()
        .map(|o| {
            let mut row = json!({"cells": (printer.cells)(o, &clock)});
            if let Some(conditions) = (printer.conditions)(o) {
                row["conditions"] = conditions;
            }
            match include {
                Include::None => {}
                Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": format!("meta.k8s.io/{meta_version}"),
                        "metadata": o.get("metadata").cloned().unwrap_or(Value::Null),
                    })
                }
                Include::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    let metadata = list_meta.unwrap_or_else(|| {
        let rv = objects.first().and_then(|o| o.pointer("/metadata/resourceVersion")).cloned();
        json!({"resourceVersion": rv})
    });
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{meta_version}"),
        "metadata": metadata,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

/// The instant a table is rendered at, so that every age in it is measured from one clock (and
/// tests can fix it).
#[derive(Debug, Clone, Copy)]
struct Clock(jiff::Timestamp);

impl Clock {
    fn now() -> Self {
        Clock(jiff::Timestamp::now())
    }

    /// Upstream's `translateTimestampSince`: the age of `timestamp`, `<unknown>` when unset.
    fn since(&self, timestamp: &str) -> String {
        parse_time(timestamp)
            .map_or_else(|| "<unknown>".into(), |t| human_duration(seconds_between(t, self.0)))
    }

    /// The age of an object, as a cell.
    fn age(&self, o: &Value) -> Value {
        json!(self.since(s(o, "/metadata/creationTimestamp")))
    }
}

fn parse_time(timestamp: &str) -> Option<jiff::Timestamp> {
    timestamp.parse().ok()
}

/// Whole seconds from `from` to `to`, truncated toward zero like Go's `int(d.Seconds())`.
fn seconds_between(from: jiff::Timestamp, to: jiff::Timestamp) -> i64 {
    let nanos = to.as_nanosecond() - from.as_nanosecond();
    i64::try_from(nanos / 1_000_000_000).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

/// Formats seconds the way `kubectl get` prints ages (apimachinery's `HumanDuration`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", secs % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else if d < 365 * 8 {
        if d % 365 == 0 {
            format!("{}y", d / 365)
        } else {
            format!("{}y{}d", d / 365, d % 365)
        }
    } else {
        format!("{}y", d / 365)
    }
}

// ---- lenient readers of stored JSON ----

/// The value at `pointer`, treating JSON `null` as absent.
fn get<'a>(o: &'a Value, pointer: &str) -> Option<&'a Value> {
    o.pointer(pointer).filter(|v| !v.is_null())
}

/// The string at `pointer`, `""` when absent.
fn s<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `pointer`, 0 when absent.
fn n(o: &Value, pointer: &str) -> i64 {
    o.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// Whether the value at `pointer` is `true`.
fn flag(o: &Value, pointer: &str) -> bool {
    o.pointer(pointer).and_then(Value::as_bool).unwrap_or(false)
}

/// The array at `pointer`, empty when absent.
fn items<'a>(o: &'a Value, pointer: &str) -> &'a [Value] {
    o.pointer(pointer).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The strings of the array at `pointer`.
fn strings<'a>(o: &'a Value, pointer: &str) -> Vec<&'a str> {
    items(o, pointer).iter().filter_map(Value::as_str).collect()
}

/// The first condition of `kind` in the conditions array at `pointer`.
fn condition<'a>(o: &'a Value, pointer: &str, kind: &str) -> Option<&'a Value> {
    items(o, pointer).iter().find(|c| s(c, "/type") == kind)
}

/// Whether the first condition of `kind` has status `True`.
fn condition_true(o: &Value, pointer: &str, kind: &str) -> bool {
    condition(o, pointer, kind).is_some_and(|c| s(c, "/status") == "True")
}

fn name(o: &Value) -> Value {
    json!(s(o, "/metadata/name"))
}

/// `value`, or `fallback` when it is empty.
fn or(value: &str, fallback: &str) -> String {
    if value.is_empty() { fallback } else { value }.to_string()
}

/// A quantity as stored (a string, or a bare number).
fn quantity(v: &Value) -> String {
    match v {
        Value::String(q) => q.clone(),
        Value::Number(q) => q.to_string(),
        _ => String::new(),
    }
}

/// A `*resource.Quantity` printed by Go: `<nil>` when unset.
fn quantity_or_nil(v: Option<&Value>) -> String {
    v.map_or_else(|| "<nil>".into(), quantity)
}

/// An `IntOrString`: `1` or `50%`.
fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

/// Go's `printBoolPtr`: `True`, `False` or `<unset>`.
fn bool_ptr(v: Option<&Value>) -> String {
    match v.and_then(Value::as_bool) {
        Some(true) => "True".into(),
        Some(false) => "False".into(),
        None => "<unset>".into(),
    }
}

/// `labels.FormatLabels`: `k=v` pairs sorted by key, `<none>` when empty.
fn format_labels(map: Option<&Value>) -> String {
    let mut pairs: Vec<(&String, &str)> = map
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, v.as_str().unwrap_or("")))
        .collect();
    pairs.sort_unstable();
    or(&pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","), "<none>")
}

/// A `LabelSelector` as its `labels.Selector` string (requirements sorted by key, values sorted),
/// `None` when it cannot be converted (an unknown operator or malformed values).
fn selector_string(selector: Option<&Value>) -> Option<String> {
    let Some(selector) = selector else { return Some(String::new()) };
    let mut requirements: Vec<(String, String)> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))))
        .collect();
    for e in items(selector, "/matchExpressions") {
        let key = s(e, "/key");
        let mut values = strings(e, "/values");
        values.sort_unstable();
        let rendered = match (s(e, "/operator"), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_string(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key.to_string(), rendered));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Some(requirements.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
}

/// `metav1.FormatLabelSelector`: the selector string, `<none>` when empty, `<error>` when invalid.
fn format_label_selector(selector: Option<&Value>) -> String {
    selector_string(selector).map_or_else(|| "<error>".into(), |s| or(&s, "<none>"))
}

/// The container names and images of a pod spec, comma-separated.
fn containers(spec: Option<&Value>) -> (String, String) {
    let list = spec.map_or(&[][..], |spec| items(spec, "/containers"));
    let names: Vec<&str> = list.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = list.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// The first `max` entries joined by commas and `+ N more...` when there are more, `<unset>` when
/// there are none (upstream's `listWithMoreString`).
fn list_with_more(all: Vec<String>, max: usize) -> String {
    let total = all.len();
    let shown = all.into_iter().take(max).collect::<Vec<_>>().join(",");
    if total > max {
        format!("{shown} + {} more...", total - max)
    } else {
        or(&shown, "<unset>")
    }
}

/// A fixed clock for tests: 2025-01-01T00:00:00Z.
#[cfg(test)]
fn test_clock() -> Clock {
    Clock(jiff::Timestamp::from_second(1_735_689_600).unwrap_or_else(|e| panic!("test clock: {e}")))
}

/// A timestamp `secs` before the test clock, as stored.
#[cfg(test)]
fn ago(secs: i64) -> String {
    let t = test_clock().0.as_second() - secs;
    jiff::Timestamp::from_second(t).unwrap_or_else(|e| panic!("timestamp: {e}")).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn info(group: &str, kind: &str) -> ResourceInfo {
        let reg = Registry::builtin();
        reg.by_kind(group, kind)
            .map(|r| r.as_ref().clone())
            .unwrap_or_else(|| panic!("{group}/{kind} not served"))
    }

    #[test]
    fn ages_print_like_kubectl() {
        assert_eq!(human_duration(-5), "<invalid>");
        assert_eq!(human_duration(-1), "0s");
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3600 * 3 + 60 * 7), "3h7m");
        assert_eq!(human_duration(3600 * 30), "30h");
        assert_eq!(human_duration(86400 * 3), "3d");
        assert_eq!(human_duration(86400 * 3 + 3600 * 5), "3d5h");
        assert_eq!(human_duration(86400 * 400), "400d");
        assert_eq!(human_duration(86400 * 365 * 3), "3y");
        assert_eq!(human_duration(86400 * (365 * 3 + 10)), "3y10d");
        assert_eq!(human_duration(86400 * 365 * 9), "9y");
    }

    #[test]
    fn ages_are_measured_from_the_table_clock() {
        let clock = test_clock();
        assert_eq!(clock.since(&ago(300)), "5m");
        assert_eq!(clock.since(""), "<unknown>");
        assert_eq!(clock.since("2024-12-31T23:59:30.123456Z"), "29s");
    }

    #[test]
    fn pod_rows_show_ready_status_and_restarts() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.42.0.5", "containerStatuses": [
                {"ready": true, "restartCount": 2, "state": {"running": {}}},
                {"ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        });
        let t = table(&info("", "Pod"), &[pod], &Include::Metadata, "v1", None);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "3");
        assert_eq!(cells[5], "10.42.0.5");
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["columnDefinitions"][3]["type"], "string");
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "web");
        assert!(t["rows"][0].get("conditions").is_none());
    }

    #[test]
    fn every_served_kind_has_a_cell_for_each_column() {
        let obj = json!({"metadata": {"name": "x", "namespace": "ns", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        for r in Registry::builtin().resources() {
            let p = printer(r);
            let cells = (p.cells)(&obj, &test_clock());
            // upstream's IPAddress printer renders an age cell without an Age column
            let extra = usize::from(r.kind == "IPAddress");
            assert_eq!(cells.len(), p.columns.len() + extra, "{}/{}", r.group, r.kind);
            let name_at = p.columns.iter().position(|c| c.format == "name").unwrap_or(usize::MAX);
            assert_eq!(cells.get(name_at), Some(&json!("x")), "{}/{}", r.group, r.kind);
        }
    }

    #[test]
    fn built_in_kinds_without_a_printer_show_name_and_created_at() {
        let role = json!({"metadata": {"name": "reader", "creationTimestamp": "2024-05-01T10:00:00.5Z"}});
        for (group, kind) in [
            ("rbac.authorization.k8s.io", "Role"),
            ("", "LimitRange"),
            ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ] {
            let t = table(&info(group, kind), std::slice::from_ref(&role), &Include::None, "v1", None);
            assert_eq!(t["columnDefinitions"][1]["name"], "Created At");
            assert_eq!(t["columnDefinitions"][1]["type"], "date");
            assert_eq!(t["rows"][0]["cells"], json!(["reader", "2024-05-01T10:00:00Z"]));
            assert!(t["rows"][0].get("object").is_none());
        }
    }

    #[test]
    fn custom_resources_show_name_and_age() {
        let mut crd = info("", "Pod");
        crd.group = "example.com";
        crd.kind = "Widget";
        let p = printer(&crd);
        let cells =
            (p.cells)(&json!({"metadata": {"name": "w", "creationTimestamp": ago(90)}}), &test_clock());
        assert_eq!(p.columns[1].name, "Age");
        assert_eq!(p.columns[1].kind, "date");
        assert_eq!(cells, vec![json!("w"), json!("90s")]);
    }

    #[test]
    fn label_selectors_print_sorted_requirements() {
        let sel = json!({
            "matchLabels": {"tier": "web", "app": "shop"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "zone", "operator": "DoesNotExist"},
                {"key": "canary", "operator": "Exists"},
                {"key": "b", "operator": "NotIn", "values": ["x"]}
            ]
        });
        assert_eq!(
            format_label_selector(Some(&sel)),
            "app=shop,b notin (x),canary,env in (dev,prod),tier=web,!zone"
        );
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_label_selector(None), "<none>");
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "Near"}]});
        assert_eq!(format_label_selector(Some(&bad)), "<error>");
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(format_labels(None), "<none>");
    }

    #[test]
    fn long_lists_end_with_how_many_more() {
        let list = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(list_with_more(list(0), 3), "<unset>");
        assert_eq!(list_with_more(list(3), 3), "0,1,2");
        assert_eq!(list_with_more(list(5), 3), "0,1,2 + 2 more...");
    }
}
