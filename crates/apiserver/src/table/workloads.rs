//! Printers of the workload kinds besides Pod: the pod controllers, pod templates and controller
//! revisions, horizontal pod autoscalers and disruption budgets.

use serde_json::{json, Value};

use super::{
    bool_ptr, boolean, condition_true, containers, format_label_selector, format_labels, get, human_duration,
    int, int_or_string, items, n, name, or, parse_time, quantity, quantity_or_nil, s, seconds_between,
    selector_string, text, Clock, Column, AGE, NAME,
};

const CONTAINERS: Column = text("Containers", "Names of the template's containers.").wide();
const IMAGES: Column = text("Images", "Images of the template's containers.").wide();
const SELECTOR: Column = text("Selector", "The label selector of the managed pods.").wide();

pub(super) const POD_TEMPLATE: &[Column] = &[
    NAME,
    text("Containers", "Names of the template's containers."),
    text("Images", "Images of the template's containers."),
    text("Pod Labels", "Labels of the pods made from the template."),
];

pub(super) const REPLICATION_CONTROLLER: &[Column] = &[
    NAME,
    int("Desired", "The number of replicas asked for."),
    int("Current", "The number of replicas that exist."),
    int("Ready", "The number of ready replicas."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(super) const REPLICA_SET: &[Column] = REPLICATION_CONTROLLER;

pub(super) const DEPLOYMENT: &[Column] = &[
    NAME,
    text("Ready", "Ready pods of the desired number."),
    text("Up-to-date", "Pods running the latest template."),
    text("Available", "Pods available to serve."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(super) const STATEFUL_SET: &[Column] =
    &[NAME, text("Ready", "Ready pods of the desired number."), AGE, CONTAINERS, IMAGES];

pub(super) const DAEMON_SET: &[Column] = &[
    NAME,
    int("Desired", "Nodes that should run the daemon pod."),
    int("Current", "Nodes running at least one daemon pod."),
    int("Ready", "Nodes whose daemon pod is ready."),
    int("Up-to-date", "Nodes running the latest template."),
    int("Available", "Nodes whose daemon pod is available."),
    text("Node Selector", "The node selector of the template."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(super) const JOB: &[Column] = &[
    NAME,
    text("Status", "Whether the job is running, complete, failed or suspended."),
    text("Completions", "Succeeded pods of the completions asked for."),
    text("Duration", "How long the job ran."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(super) const CRON_JOB: &[Column] = &[
    NAME,
    text("Schedule", "The cron schedule."),
    text("Timezone", "The time zone of the schedule."),
    boolean("Suspend", "Whether new runs are suspended."),
    int("Active", "Jobs that are running."),
    text("Last Schedule", "How long ago a job was last scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(super) const CONTROLLER_REVISION: &[Column] = &[
    NAME,
    text("Controller", "The object that owns the revision."),
    text("Revision", "The revision number."),
    AGE,
];

pub(super) const HPA: &[Column] = &[
    NAME,
    text("Reference", "The scaled object."),
    text("Targets", "Current and target values of the metrics."),
    text("MinPods", "The lowest replica count."),
    text("MaxPods", "The highest replica count."),
    text("Replicas", "The current replica count."),
    AGE,
];

pub(super) const PDB: &[Column] = &[
    NAME,
    text("Min Available", "Pods that must stay available."),
    text("Max Unavailable", "Pods that may be unavailable."),
    int("Allowed Disruptions", "Pods that may be disrupted now."),
    AGE,
];

/// `spec.replicas` of the pod controllers, which defaults to 1.
fn desired(o: &Value) -> i64 {
    get(o, "/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
}

pub(super) fn pod_template(o: &Value, _: &Clock) -> Vec<Value> {
    let (names, images) = containers(get(o, "/template/spec"));
    vec![name(o), json!(names), json!(images), json!(format_labels(get(o, "/template/metadata/labels")))]
}

pub(super) fn replication_controller(o: &Value, clock: &Clock) -> Vec<Value> {
    let (names, images) = containers(get(o, "/spec/template/spec"));
    vec![
        name(o),
        json!(desired(o)),
        json!(n(o, "/status/replicas")),
        json!(n(o, "/status/readyReplicas")),
        clock.age(o),
        json!(names),
        json!(images),
        json!(format_labels(get(o, "/spec/selector"))),
    ]
}

pub(super) fn replica_set(o: &Value, clock: &Clock) -> Vec<Value> {
    let mut cells = replication_controller(o, clock);
    cells[7] = json!(format_label_selector(get(o, "/spec/selector")));
    cells
}

pub(super) fn deployment(o: &Value, clock: &Clock) -> Vec<Value> {
    let (names, images) = containers(get(o, "/spec/template/spec"));
    let selector = selector_string(get(o, "/spec/selector")).unwrap_or_else(|| "<invalid>".into());
    vec![
        name(o),
        json!(format!("{}/{}", n(o, "/status/readyReplicas"), desired(o))),
        json!(n(o, "/status/updatedReplicas")),
        json!(n(o, "/status/availableReplicas")),
        clock.age(o),
        json!(names),
        json!(images),
        json!(selector),
    ]
}

pub(super) fn stateful_set(o: &Value, clock: &Clock) -> Vec<Value> {
    let (names, images) = containers(get(o, "/spec/template/spec"));
    let ready = format!("{}/{}", n(o, "/status/readyReplicas"), desired(o));
    vec![name(o), json!(ready), clock.age(o), json!(names), json!(images)]
}

pub(super) fn daemon_set(o: &Value, clock: &Clock) -> Vec<Value> {
    let (names, images) = containers(get(o, "/spec/template/spec"));
    vec![
        name(o),
        json!(n(o, "/status/desiredNumberScheduled")),
        json!(n(o, "/status/currentNumberScheduled")),
        json!(n(o, "/status/numberReady")),
        json!(n(o, "/status/updatedNumberScheduled")),
        json!(n(o, "/status/numberAvailable")),
        json!(format_labels(get(o, "/spec/template/spec/nodeSelector"))),
        clock.age(o),
        json!(names),
        json!(images),
        json!(format_label_selector(get(o, "/spec/selector"))),
    ]
}

pub(super) fn job(o: &Value, clock: &Clock) -> Vec<Value> {
    let succeeded = n(o, "/status/succeeded");
    let completions = match get(o, "/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match n(o, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = parse_time(s(o, "/status/startTime"));
    let duration = match (start, parse_time(s(o, "/status/completionTime"))) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(seconds_between(start, clock.0)),
        (Some(start), Some(end)) => human_duration(seconds_between(start, end)),
    };
    let (names, images) = containers(get(o, "/spec/template/spec"));
    vec![
        name(o),
        json!(job_status(o)),
        json!(completions),
        json!(duration),
        clock.age(o),
        json!(names),
        json!(images),
        json!(format_label_selector(get(o, "/spec/selector"))),
    ]
}

fn job_status(o: &Value) -> &'static str {
    let has = |kind| condition_true(o, "/status/conditions", kind);
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if get(o, "/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

pub(super) fn cron_job(o: &Value, clock: &Clock) -> Vec<Value> {
    let last = get(o, "/status/lastScheduleTime")
        .map_or_else(|| "<none>".into(), |_| clock.since(s(o, "/status/lastScheduleTime")));
    let (names, images) = containers(get(o, "/spec/jobTemplate/spec/template/spec"));
    vec![
        name(o),
        json!(s(o, "/spec/schedule")),
        json!(get(o, "/spec/timeZone").and_then(Value::as_str).unwrap_or("<none>")),
        json!(bool_ptr(get(o, "/spec/suspend"))),
        json!(items(o, "/status/active").len()),
        json!(last),
        clock.age(o),
        json!(names),
        json!(images),
        json!(format_label_selector(get(o, "/spec/jobTemplate/spec/selector"))),
    ]
}

pub(super) fn controller_revision(o: &Value, clock: &Clock) -> Vec<Value> {
    let owner =
        items(o, "/metadata/ownerReferences").iter().find(|r| r.get("controller") == Some(&json!(true)));
    let controller = owner.map_or_else(
        || "<none>".to_string(),
        |r| {
            let group = s(r, "/apiVersion").split_once('/').map_or("", |(g, _)| g);
            let (kind, owner_name) = (s(r, "/kind"), s(r, "/name"));
            match (group, kind) {
                ("", "") => owner_name.to_string(),
                ("", kind) => format!("{}/{owner_name}", kind.to_lowercase()),
                (group, kind) => format!("{}.{}/{owner_name}", kind.to_lowercase(), group.to_lowercase()),
            }
        },
    );
    vec![name(o), json!(controller), json!(n(o, "/revision")), clock.age(o)]
}

pub(super) fn horizontal_pod_autoscaler(o: &Value, clock: &Clock) -> Vec<Value> {
    let reference = format!("{}/{}", s(o, "/spec/scaleTargetRef/kind"), s(o, "/spec/scaleTargetRef/name"));
    let min = get(o, "/spec/minReplicas")
        .and_then(Value::as_i64)
        .map_or_else(|| "<unset>".into(), |m| m.to_string());
    vec![
        name(o),
        json!(reference),
        json!(hpa_targets(o)),
        json!(min),
        json!(n(o, "/spec/maxReplicas")),
        json!(n(o, "/status/currentReplicas")),
        clock.age(o),
    ]
}

/// The TARGETS cell: `current/target` of the first two metrics, `+ N more...` for the rest. Each
/// spec is paired with the status at the same index, as upstream does.
fn hpa_targets(o: &Value) -> String {
    let specs = items(o, "/spec/metrics");
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = items(o, "/status/currentMetrics");
    let list: Vec<String> =
        specs.iter().enumerate().map(|(i, spec)| hpa_metric(spec, statuses.get(i))).collect();
    if list.len() > 2 {
        format!("{} + {} more...", list[..2].join(", "), list.len() - 2)
    } else {
        list.join(", ")
    }
}

fn hpa_metric(spec: &Value, status: Option<&Value>) -> String {
    // the status of the same source kind, when the status at this index has one
    let current = |field: &str| status.and_then(|st| get(st, &format!("/{field}")));
    match s(spec, "/type") {
        kind @ ("External" | "Object") => {
            let field = if kind == "External" { "external" } else { "object" };
            let target = get(spec, &format!("/{field}/target"));
            match target.and_then(|t| get(t, "/averageValue")) {
                Some(avg) => {
                    let cur = current(field).and_then(|c| get(c, "/current/averageValue"));
                    format!("{}/{} (avg)", cur.map_or_else(|| "<unknown>".into(), quantity), quantity(avg))
                }
                None => {
                    let cur = current(field)
                        .map_or_else(|| "<unknown>".into(), |c| quantity_or_nil(get(c, "/current/value")));
                    format!("{cur}/{}", quantity_or_nil(target.and_then(|t| get(t, "/value"))))
                }
            }
        }
        "Pods" => {
            let cur = current("pods")
                .map_or_else(|| "<unknown>".into(), |c| quantity_or_nil(get(c, "/current/averageValue")));
            format!("{cur}/{}", quantity_or_nil(get(spec, "/pods/target/averageValue")))
        }
        kind @ ("Resource" | "ContainerResource") => {
            let field = if kind == "Resource" { "resource" } else { "containerResource" };
            let resource = s(spec, &format!("/{field}/name"));
            let target = get(spec, &format!("/{field}/target"));
            match target.and_then(|t| get(t, "/averageValue")) {
                Some(avg) => {
                    let cur = current(field).map_or_else(
                        || "<unknown>".into(),
                        |c| quantity_or_nil(get(c, "/current/averageValue")),
                    );
                    format!("{resource}: {cur}/{}", quantity(avg))
                }
                None => {
                    let percent = |v: Option<&Value>| v.and_then(Value::as_i64).map(|u| format!("{u}%"));
                    let cur = percent(current(field).and_then(|c| get(c, "/current/averageUtilization")));
                    let goal = percent(target.and_then(|t| get(t, "/averageUtilization")));
                    format!(
                        "{resource}: {}/{}",
                        or(&cur.unwrap_or_default(), "<unknown>"),
                        goal.as_deref().unwrap_or("<auto>")
                    )
                }
            }
        }
        _ => "<unknown type>".into(),
    }
}

pub(super) fn pod_disruption_budget(o: &Value, clock: &Clock) -> Vec<Value> {
    let bound = |p: &str| get(o, p).map_or_else(|| "N/A".into(), int_or_string);
    vec![
        name(o),
        json!(bound("/spec/minAvailable")),
        json!(bound("/spec/maxUnavailable")),
        json!(n(o, "/status/disruptionsAllowed")),
        clock.age(o),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::{ago, test_clock};
    use super::*;

    fn template(containers: Value) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}})
    }

    #[test]
    fn deployment_shows_ready_of_desired_and_wide_selector() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(30)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]},
                     "template": template(json!([{"name": "nginx", "image": "nginx:1"}, {"name": "side", "image": "busybox"}]))},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        assert_eq!(
            deployment(&d, &test_clock()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("30s"),
                json!("nginx,side"),
                json!("nginx:1,busybox"),
                json!("app=web,tier in (a,b)")
            ]
        );
    }

    #[test]
    fn replica_counts_default_to_one_desired_replica() {
        let rs = json!({"metadata": {"name": "rs"}, "spec": {"template": template(json!([]))}});
        let cells = replica_set(&rs, &test_clock());
        assert_eq!(cells[1..5], [json!(1), json!(0), json!(0), json!("<unknown>")]);
        assert_eq!(cells[7], "<none>");
        let rc =
            json!({"metadata": {"name": "rc"}, "spec": {"replicas": 2, "selector": {"b": "2", "a": "1"}}});
        let cells = replication_controller(&rc, &test_clock());
        assert_eq!(cells[5..], [json!(""), json!(""), json!("a=1,b=2")]);
        let sts =
            json!({"metadata": {"name": "db"}, "spec": {"replicas": 0}, "status": {"readyReplicas": 0}});
        assert_eq!(stateful_set(&sts, &test_clock())[1], "0/0");
    }

    #[test]
    fn daemon_set_shows_node_selector_and_wide_columns() {
        let ds = json!({
            "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "a", "image": "img"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}
        });
        let cells = daemon_set(&ds, &test_clock());
        assert_eq!(
            cells[1..7],
            [json!(3), json!(3), json!(2), json!(3), json!(2), json!("kubernetes.io/os=linux")]
        );
        assert_eq!(cells[8..], [json!("a"), json!("img"), json!("app=agent")]);
    }

    #[test]
    fn job_completions_status_and_duration_follow_its_spec() {
        let job_with = |spec: Value, status: Value| {
            job(&json!({"metadata": {"name": "j"}, "spec": spec, "status": status}), &test_clock())
        };
        let done = job_with(
            json!({"completions": 3}),
            json!({"succeeded": 3, "startTime": ago(200), "completionTime": ago(50),
                   "conditions": [{"type": "Complete", "status": "True"}]}),
        );
        assert_eq!(done[1..4], [json!("Complete"), json!("3/3"), json!("2m30s")]);
        let queue = job_with(json!({"parallelism": 4}), json!({"succeeded": 1, "startTime": ago(10)}));
        assert_eq!(queue[1..4], [json!("Running"), json!("1/1 of 4"), json!("10s")]);
        let single = job_with(
            json!({"parallelism": 1}),
            json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
        );
        assert_eq!(single[1..4], [json!("Suspended"), json!("0/1"), json!("")]);
        let failing =
            job_with(json!({}), json!({"conditions": [{"type": "FailureTarget", "status": "True"}]}));
        assert_eq!(failing[1], "FailureTarget");
        let mut deleted =
            json!({"metadata": {"name": "j", "deletionTimestamp": ago(1)}, "spec": {}, "status": {}});
        assert_eq!(job(&deleted, &test_clock())[1], "Terminating");
        deleted["status"]["conditions"] = json!([{"type": "Failed", "status": "True"}]);
        assert_eq!(job(&deleted, &test_clock())[1], "Failed");
    }

    #[test]
    fn cron_job_shows_schedule_zone_suspend_and_last_run() {
        let cj = json!({
            "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}},
            "status": {"active": [{"name": "a"}], "lastScheduleTime": ago(3600 * 5)}
        });
        assert_eq!(
            cron_job(&cj, &test_clock())[1..],
            [
                json!("0 3 * * *"),
                json!("<none>"),
                json!("<unset>"),
                json!(1),
                json!("5h"),
                json!("<unknown>"),
                json!("c"),
                json!("i"),
                json!("<none>")
            ]
        );
        let paused = json!({"metadata": {"name": "n"}, "spec": {"schedule": "@daily", "timeZone": "Etc/UTC", "suspend": true}});
        assert_eq!(
            cron_job(&paused, &test_clock())[2..6],
            [json!("Etc/UTC"), json!("True"), json!(0), json!("<none>")]
        );
    }

    #[test]
    fn pod_template_shows_containers_images_and_labels() {
        let pt =
            json!({"metadata": {"name": "t"}, "template": template(json!([{"name": "c", "image": "i"}]))});
        assert_eq!(
            pod_template(&pt, &test_clock()),
            vec![json!("t"), json!("c"), json!("i"), json!("app=web")]
        );
    }

    #[test]
    fn controller_revision_names_its_controlling_owner() {
        let rev = |owners: Value| {
            controller_revision(
                &json!({"metadata": {"name": "web-7d4", "ownerReferences": owners}, "revision": 4}),
                &test_clock(),
            )
        };
        let owned =
            rev(json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]));
        assert_eq!(owned[1..3], [json!("statefulset.apps/web"), json!(4)]);
        assert_eq!(rev(json!([{"apiVersion": "v1", "kind": "Pod", "name": "p"}]))[1], "<none>");
        assert_eq!(
            rev(json!([{"apiVersion": "v1", "kind": "Pod", "name": "p", "controller": true}]))[1],
            "pod/p"
        );
    }

    #[test]
    fn hpa_targets_pair_specs_with_current_metrics() {
        let hpa = json!({
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 10, "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}}
            ]},
            "status": {"currentReplicas": 3, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45, "averageValue": "90m"}}}
            ]}
        });
        assert_eq!(
            horizontal_pod_autoscaler(&hpa, &test_clock())[1..6],
            [
                json!("Deployment/web"),
                json!("cpu: 45%/80%, memory: <unknown>/500Mi + 1 more..."),
                json!("2"),
                json!(10),
                json!(3)
            ]
        );
        let bare = json!({"metadata": {"name": "h"}, "spec": {"maxReplicas": 1}});
        assert_eq!(
            horizontal_pod_autoscaler(&bare, &test_clock())[2..4],
            [json!("<none>"), json!("<unset>")]
        );
    }

    #[test]
    fn hpa_external_object_and_pods_metrics_print_values() {
        let metric = |spec: Value, status: Option<Value>| hpa_metric(&spec, status.as_ref());
        let ext_avg = json!({"type": "External", "external": {"target": {"averageValue": "30"}}});
        assert_eq!(
            metric(ext_avg, Some(json!({"external": {"current": {"averageValue": "12"}}}))),
            "12/30 (avg)"
        );
        let ext = json!({"type": "External", "external": {"target": {"value": "5"}}});
        assert_eq!(metric(ext.clone(), None), "<unknown>/5");
        assert_eq!(metric(ext, Some(json!({"external": {"current": {}}}))), "<nil>/5");
        let obj = json!({"type": "Object", "object": {"target": {"value": "2k"}}});
        assert_eq!(metric(obj, Some(json!({"object": {"current": {"value": "1500"}}}))), "1500/2k");
        let pods = json!({"type": "Pods", "pods": {"target": {"averageValue": 7}}});
        assert_eq!(metric(pods, Some(json!({"pods": {"current": {"averageValue": "3"}}}))), "3/7");
        let auto = json!({"type": "ContainerResource", "containerResource": {"name": "cpu", "target": {"type": "Utilization"}}});
        assert_eq!(metric(auto, None), "cpu: <unknown>/<auto>");
        assert_eq!(metric(json!({"type": "Weird"}), None), "<unknown type>");
    }

    #[test]
    fn pdb_shows_bounds_or_not_applicable() {
        let pdb = json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(pod_disruption_budget(&pdb, &test_clock())[1..4], [json!("50%"), json!("N/A"), json!(1)]);
        let pdb = json!({"metadata": {"name": "p"}, "spec": {"maxUnavailable": 1}});
        assert_eq!(pod_disruption_budget(&pdb, &test_clock())[1..4], [json!("N/A"), json!("1"), json!(0)]);
    }
}
