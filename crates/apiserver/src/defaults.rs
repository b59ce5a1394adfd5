//! Defaults of the built-in kinds that users notice (kube-apiserver's `SetDefaults_*`), applied
//! on create and update to plain JSON objects.

use serde_json::{json, Value};

use crate::registry::ResourceInfo;

/// Sets `obj[field]` to `value` when it is absent or null.
fn default(obj: &mut Value, field: &str, value: Value) {
    if let Some(o) = obj.as_object_mut() {
        let slot = o.entry(field.to_string()).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

/// The object at `path` (JSON pointer), when it is an object.
fn at<'a>(obj: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    obj.pointer_mut(path).filter(|v| v.is_object())
}

fn each<'a>(obj: &'a mut Value, path: &str) -> impl Iterator<Item = &'a mut Value> {
    obj.pointer_mut(path).and_then(Value::as_array_mut).into_iter().flatten().filter(|v| v.is_object())
}

/// Applies the defaults of `info`'s kind to `obj`.
pub fn apply(info: &ResourceInfo, obj: &mut Value) {
    match (info.group, info.kind) {
        ("", "Pod") => pod_spec(obj.pointer_mut("/spec")),
        ("", "PodTemplate") => pod_template(obj, "/template"),
        ("", "ReplicationController") => {
            replicas(obj);
            pod_template(obj, "/spec/template");
        }
        ("apps", "Deployment") => {
            replicas(obj);
            if let Some(spec) = at(obj, "/spec") {
                // Clients send `strategy: {}` (kubectl create deployment does): default inside it.
                rolling_update(
                    spec,
                    "strategy",
                    &[("maxUnavailable", json!("25%")), ("maxSurge", json!("25%"))],
                );
                default(spec, "revisionHistoryLimit", json!(10));
                default(spec, "progressDeadlineSeconds", json!(600));
            }
            pod_template(obj, "/spec/template");
        }
        ("apps", "ReplicaSet") => {
            replicas(obj);
            pod_template(obj, "/spec/template");
        }
        ("apps", "StatefulSet") => {
            replicas(obj);
            if let Some(spec) = at(obj, "/spec") {
                default(spec, "podManagementPolicy", json!("OrderedReady"));
                rolling_update(spec, "updateStrategy", &[("partition", json!(0))]);
                default(spec, "revisionHistoryLimit", json!(10));
                default(
                    spec,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
            }
            pod_template(obj, "/spec/template");
        }
        ("apps", "DaemonSet") => {
            if let Some(spec) = at(obj, "/spec") {
                rolling_update(
                    spec,
                    "updateStrategy",
                    &[("maxUnavailable", json!(1)), ("maxSurge", json!(0))],
                );
                default(spec, "revisionHistoryLimit", json!(10));
            }
            pod_template(obj, "/spec/template");
        }
        ("batch", "Job") => {
            if let Some(spec) = at(obj, "/spec") {
                default(spec, "backoffLimit", json!(6));
                default(spec, "completionMode", json!("NonIndexed"));
                default(spec, "suspend", json!(false));
                default(spec, "podReplacementPolicy", json!("TerminatedOrFailed"));
                if spec.get("parallelism").is_none_or(Value::is_null) {
                    spec["parallelism"] = json!(1);
                }
                if spec.get("completions").is_none_or(Value::is_null) && spec["parallelism"] == json!(1) {
                    spec["completions"] = json!(1);
                }
            }
            if let Some(tpl) = at(obj, "/spec/template/spec") {
                default(tpl, "restartPolicy", json!("Never"));
            }
            job_selector(obj);
            pod_template(obj, "/spec/template");
        }
        ("batch", "CronJob") => {
            if let Some(spec) = at(obj, "/spec") {
                default(spec, "concurrencyPolicy", json!("Allow"));
                default(spec, "suspend", json!(false));
                default(spec, "successfulJobsHistoryLimit", json!(3));
                default(spec, "failedJobsHistoryLimit", json!(1));
            }
            pod_template(obj, "/spec/jobTemplate/spec/template");
        }
        ("", "Service") => service(obj),
        ("", "LimitRange") => crate::limits::default_limit_range(obj),
        ("", "Namespace") => {
            default(obj, "spec", json!({}));
            if let Some(spec) = at(obj, "/spec") {
                default(spec, "finalizers", json!(["kubernetes"]));
            }
            default(obj, "status", json!({"phase": "Active"}));
        }
        ("", "Secret") => {
            default(obj, "type", json!("Opaque"));
            secret_string_data(obj);
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(spec) = at(obj, "/spec") {
                default(spec, "volumeMode", json!("Filesystem"));
            }
            default(obj, "status", json!({"phase": "Pending"}));
        }
        ("", "PersistentVolume") => {
            if let Some(spec) = at(obj, "/spec") {
                default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                default(spec, "volumeMode", json!("Filesystem"));
            }
            default(obj, "status", json!({"phase": "Pending"}));
        }
        ("storage.k8s.io", "StorageClass") => {
            default(obj, "reclaimPolicy", json!("Delete"));
            default(obj, "volumeBindingMode", json!("Immediate"));
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            default(obj, "preemptionPolicy", json!("PreemptLowerPriority"))
        }
        _ => {}
    }
    if info.group.is_empty() && info.kind == "Pod" {
        default(obj, "status", json!({"phase": "Pending"}));
        if let Some(status) = at(obj, "/status") {
            default(status, "phase", json!("Pending"));
        }
        let qos = qos_class(obj.get("spec"));
        if let Some(status) = at(obj, "/status") {
            default(status, "qosClass", json!(qos));
        }
    }
}

/// `stringData` is write-only: its entries are stored base64-encoded in `data` (overriding
/// entries of the same key there), as kube-apiserver converts it.
fn secret_string_data(obj: &mut Value) {
    use base64::Engine as _;
    let Some(Value::Object(string_data)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = json!({});
    }
    for (k, v) in string_data {
        let text = v.as_str().unwrap_or_default();
        obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// Defaults an update strategy (absent or `{}`) to RollingUpdate with `settings`.
fn rolling_update(spec: &mut Value, field: &str, settings: &[(&str, Value)]) {
    default(spec, field, json!({}));
    let Some(strategy) = at(spec, &format!("/{field}")) else { return };
    default(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] != "RollingUpdate" {
        return;
    }
    default(strategy, "rollingUpdate", json!({}));
    if let Some(ru) = at(strategy, "/rollingUpdate") {
        for (k, v) in settings {
            default(ru, k, v.clone());
        }
    }
}

fn replicas(obj: &mut Value) {
    if let Some(spec) = at(obj, "/spec") {
        default(spec, "replicas", json!(1));
    }
}

fn pod_template(obj: &mut Value, path: &str) {
    pod_spec(obj.pointer_mut(&format!("{path}/spec")));
}

/// `SetDefaults_PodSpec` and the container defaults.
fn pod_spec(spec: Option<&mut Value>) {
    let Some(spec) = spec.filter(|s| s.is_object()) else { return };
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "enableServiceLinks", json!(true));
    if spec.get("serviceAccountName").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
        let sa = spec["serviceAccountName"].clone();
        default(spec, "serviceAccount", sa);
    }
    for containers in ["/initContainers", "/containers", "/ephemeralContainers"] {
        for c in each(spec, containers) {
            container(c);
        }
    }
    for v in each(spec, "/volumes") {
        for (source, mode) in [
            ("secret", "defaultMode"),
            ("configMap", "defaultMode"),
            ("downwardAPI", "defaultMode"),
            ("projected", "defaultMode"),
        ] {
            if let Some(src) = at(v, &format!("/{source}")) {
                default(src, mode, json!(420));
            }
        }
        if let Some(hp) = at(v, "/hostPath") {
            default(hp, "type", json!(""));
        }
        if v.as_object().is_some_and(|o| o.len() == 1) {
            // A volume with only a name is an emptyDir.
            default(v, "emptyDir", json!({}));
        }
    }
}

fn container(c: &mut Value) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("").to_string();
    let tag = image.rsplit('/').next().and_then(|last| last.split_once(':')).map(|(_, t)| t.to_string());
    let digest = image.contains('@');
    let policy = match tag.as_deref() {
        _ if digest => "IfNotPresent",
        None | Some("latest") => "Always",
        Some(_) => "IfNotPresent",
    };
    default(c, "imagePullPolicy", json!(policy));
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    for p in each(c, "/ports") {
        default(p, "protocol", json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = at(c, &format!("/{probe}")) {
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            if let Some(h) = at(p, "/httpGet") {
                default(h, "path", json!("/"));
                default(h, "scheme", json!("HTTP"));
            }
        }
    }
    // Requests default to limits when only limits are set.
    if let Some(limits) = c.pointer("/resources/limits").cloned().filter(Value::is_object) {
        if let Some(res) = at(c, "/resources") {
            default(res, "requests", json!({}));
            if let (Some(req), Some(lim)) = (res["requests"].as_object_mut(), limits.as_object()) {
                for (k, v) in lim {
                    req.entry(k.clone()).or_insert(v.clone());
                }
            }
        }
    }
}

/// The pod's QoS class from its containers' requests and limits.
pub fn qos_class(spec: Option<&Value>) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| spec.and_then(|s| s.get(*f)).and_then(Value::as_array))
        .flatten()
        .collect();
    let (mut any, mut guaranteed) = (false, true);
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(res));
            let r = req.and_then(|r| r.get(res)).or(l);
            if l.is_none() || r != l {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// The selector and pod labels kube-apiserver generates for a Job without
/// `manualSelector: true`: `batch.kubernetes.io/controller-uid` (the selector), and
/// `batch.kubernetes.io/job-name` plus the legacy `controller-uid` and `job-name` on the template.
fn job_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let meta = |f: &str| obj.pointer(&format!("/metadata/{f}")).and_then(Value::as_str).map(String::from);
    let (Some(uid), name) = (meta("uid"), meta("name")) else { return };
    let Some(spec) = at(obj, "/spec") else { return };
    default(spec, "selector", json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
    let Some(template) = at(obj, "/spec/template") else { return };
    default(template, "metadata", json!({}));
    let Some(tm) = at(template, "/metadata") else { return };
    default(tm, "labels", json!({}));
    let Some(labels) = at(tm, "/labels") else { return };
    default(labels, "batch.kubernetes.io/controller-uid", json!(uid));
    default(labels, "controller-uid", json!(uid));
    if let Some(name) = name {
        default(labels, "batch.kubernetes.io/job-name", json!(name));
        default(labels, "job-name", json!(name));
    }
}

fn service(obj: &mut Value) {
    let Some(spec) = at(obj, "/spec") else { return };
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    let headless_external = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
    if !headless_external {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        default(spec, "ipFamilies", json!(["IPv4"]));
    }
    if matches!(spec.get("type").and_then(Value::as_str), Some("NodePort" | "LoadBalancer")) {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if spec.get("type").and_then(Value::as_str) == Some("LoadBalancer") {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    for p in each(spec, "/ports") {
        default(p, "protocol", json!("TCP"));
        if let Some(port) = p.get("port").cloned() {
            default(p, "targetPort", port);
        }
    }
    default(obj, "status", json!({"loadBalancer": {}}));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn info(group: &str, version: &str, plural: &str) -> ResourceInfo {
        let reg = Registry::builtin();
        reg.get(group, version, plural).map(|r| r.as_ref().clone()).unwrap_or_else(|| panic!("{plural}"))
    }

    #[test]
    fn pods_get_the_defaults_kubectl_shows() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "busybox"}, {"name": "d", "image": "busybox:1.36"}]}});
        apply(&info("", "v1", "pods"), &mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["spec"]["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
    }

    #[test]
    fn deployments_default_strategy_and_history() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}});
        apply(&info("apps", "v1", "deployments"), &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn empty_strategies_are_filled_in_like_absent_ones() {
        let tpl = json!({"spec": {"containers": [{"name": "c", "image": "x:1"}]}});
        let mut d = json!({"spec": {"strategy": {}, "template": tpl}});
        apply(&info("apps", "v1", "deployments"), &mut d);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let mut ds = json!({"spec": {"updateStrategy": {}, "template": tpl}});
        apply(&info("apps", "v1", "daemonsets"), &mut ds);
        assert_eq!(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"], 1);
        let mut sts = json!({"spec": {"updateStrategy": {"type": "OnDelete"}, "template": tpl}});
        apply(&info("apps", "v1", "statefulsets"), &mut sts);
        assert_eq!(sts["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
    }

    #[test]
    fn services_default_type_affinity_and_target_port() {
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        apply(&info("", "v1", "services"), &mut s);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["sessionAffinity"], "None");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn secret_string_data_is_stored_as_base64_data() {
        let mut s = json!({"data": {"a": "eA=="}, "stringData": {"b": "s3cret", "a": "y"}});
        apply(&info("", "v1", "secrets"), &mut s);
        assert_eq!(s, json!({"type": "Opaque", "data": {"a": "eQ==", "b": "czNjcmV0"}}));
    }

    #[test]
    fn qos_class_follows_requests_and_limits() {
        let g = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(Some(&g)), "Guaranteed");
        let b = json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(qos_class(Some(&b)), "Burstable");
    }

    #[test]
    fn jobs_get_a_selector_and_pod_labels_from_their_uid() {
        let jobs = info("batch", "v1", "jobs");
        let mut job = json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {}}}});
        apply(&jobs, &mut job);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        let labels = &job["spec"]["template"]["metadata"]["labels"];
        assert_eq!(
            (labels["job-name"].as_str(), labels["controller-uid"].as_str()),
            (Some("pi"), Some("u-1"))
        );
        let mut manual = json!({"metadata": {"name": "m", "uid": "u-2"}, "spec": {"manualSelector": true, "template": {}}});
        apply(&jobs, &mut manual);
        assert!(manual["spec"].get("selector").is_none());
    }
}
