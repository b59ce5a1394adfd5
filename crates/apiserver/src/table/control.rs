//! Printers of the control-plane kinds: RBAC bindings, certificate signing requests, admission
//! configuration, API priority and fairness, and API services.

use std::cmp::Ordering;

use serde_json::{json, Value};

use super::{
    condition, get, human_duration, int, items, n, name, or, s, strings, text, Clock, Column, AGE, NAME,
};

pub(super) const ROLE_BINDING: &[Column] = &[
    NAME,
    text("Role", "The role the binding grants."),
    AGE,
    text("Users", "Users the binding grants the role to.").wide(),
    text("Groups", "Groups the binding grants the role to.").wide(),
    text("ServiceAccounts", "Service accounts the binding grants the role to.").wide(),
];

pub(super) const CSR: &[Column] = &[
    NAME,
    AGE,
    text("SignerName", "The signer asked to sign the request."),
    text("Requestor", "The user who made the request."),
    text("RequestedDuration", "The validity asked for the certificate."),
    text("Condition", "Whether the request is approved, denied, failed or issued."),
];

pub(super) const WEBHOOK_CONFIGURATION: &[Column] =
    &[NAME, int("Webhooks", "How many webhooks the configuration registers."), AGE];

pub(super) const VAP: &[Column] = &[
    NAME,
    int("Validations", "How many validation rules the policy has."),
    text("ParamKind", "The kind of the policy's parameter resources."),
    AGE,
];

pub(super) const VAP_BINDING: &[Column] = &[
    NAME,
    text("PolicyName", "The policy the binding applies."),
    text("ParamRef", "The parameter resource the binding configures the policy with."),
    AGE,
];

pub(super) const FLOW_SCHEMA: &[Column] = &[
    NAME,
    text("PriorityLevel", "The priority level of matching requests."),
    text("MatchingPrecedence", "Lower values are matched first."),
    text("DistinguisherMethod", "How matching requests are split into flows."),
    AGE,
    text("MissingPL", "Whether the priority level does not exist."),
];

pub(super) const PRIORITY_LEVEL: &[Column] = &[
    NAME,
    text("Type", "Limited or Exempt."),
    text("NominalConcurrencyShares", "The level's share of the server's concurrency."),
    text("Queues", "How many queues the level has."),
    text("HandSize", "How many queues a flow is shuffled into."),
    text("QueueLengthLimit", "How many requests a queue holds."),
    AGE,
];

pub(super) const API_SERVICE: &[Column] = &[
    NAME,
    text("Service", "The service that serves the API, or Local."),
    text("Available", "Whether the API is available."),
    AGE,
];

pub(super) fn role_binding(o: &Value, clock: &Clock) -> Vec<Value> {
    let (mut users, mut groups, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in items(o, "/subjects") {
        match s(subject, "/kind") {
            "User" => users.push(s(subject, "/name").to_string()),
            "Group" => groups.push(s(subject, "/name").to_string()),
            "ServiceAccount" => {
                accounts.push(format!("{}/{}", s(subject, "/namespace"), s(subject, "/name")))
            }
            _ => {}
        }
    }
    vec![
        name(o),
        json!(format!("{}/{}", s(o, "/roleRef/kind"), s(o, "/roleRef/name"))),
        clock.age(o),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(accounts.join(", ")),
    ]
}

pub(super) fn certificate_signing_request(o: &Value, clock: &Clock) -> Vec<Value> {
    let duration = get(o, "/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .map_or_else(|| "<none>".into(), human_duration);
    vec![
        name(o),
        clock.age(o),
        json!(or(s(o, "/spec/signerName"), "<none>")),
        json!(s(o, "/spec/username")),
        json!(duration),
        json!(csr_condition(o)),
    ]
}

/// Denied over Approved over Pending (by condition type, whatever its status), then `,Failed`
/// and `,Issued` when they apply.
fn csr_condition(o: &Value) -> String {
    let has = |kind: &str| condition(o, "/status/conditions", kind).is_some();
    let mut status = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !s(o, "/status/certificate").is_empty() {
        status.push_str(",Issued");
    }
    status
}

pub(super) fn webhook_configuration(o: &Value, clock: &Clock) -> Vec<Value> {
    vec![name(o), json!(items(o, "/webhooks").len()), clock.age(o)]
}

pub(super) fn admission_policy(o: &Value, clock: &Clock) -> Vec<Value> {
    let param_kind = get(o, "/spec/paramKind")
        .map_or_else(|| "<unset>".to_string(), |k| format!("{}/{}", s(k, "/apiVersion"), s(k, "/kind")));
    vec![name(o), json!(items(o, "/spec/validations").len()), json!(param_kind), clock.age(o)]
}

pub(super) fn admission_policy_binding(o: &Value, clock: &Clock) -> Vec<Value> {
    let param = match get(o, "/spec/paramRef") {
        Some(p) if !s(p, "/name").is_empty() => match s(p, "/namespace") {
            // without a namespace the binding cannot tell whether the parameter is cluster-scoped
            "" => format!("*/{}", s(p, "/name")),
            ns => format!("{ns}/{}", s(p, "/name")),
        },
        Some(p) => get(p, "/selector").map_or_else(|| "<unset>".into(), go_label_selector),
        None => "<unset>".into(),
    };
    vec![name(o), json!(s(o, "/spec/policyName")), json!(param), clock.age(o)]
}

/// A `LabelSelector` the way its generated Go `String()` prints it, which is what upstream shows
/// for selector parameter references.
fn go_label_selector(selector: &Value) -> String {
    let mut labels: Vec<(&String, &str)> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, v.as_str().unwrap_or("")))
        .collect();
    labels.sort_unstable();
    let labels: String = labels.iter().map(|(k, v)| format!("{k}: {v},")).collect();
    let expressions: String = items(selector, "/matchExpressions")
        .iter()
        .map(|e| {
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                s(e, "/key"),
                s(e, "/operator"),
                strings(e, "/values").join(" ")
            )
        })
        .collect();
    format!("&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{expressions}}},}}")
}

pub(super) fn flow_schema(o: &Value, clock: &Clock) -> Vec<Value> {
    let distinguisher =
        get(o, "/spec/distinguisherMethod").map_or_else(|| "<none>".into(), |d| s(d, "/type").to_string());
    let missing = condition(o, "/status/conditions", "Dangling")
        .map_or_else(|| "?".into(), |c| s(c, "/status").to_string());
    vec![
        name(o),
        json!(s(o, "/spec/priorityLevelConfiguration/name")),
        json!(n(o, "/spec/matchingPrecedence")),
        json!(distinguisher),
        clock.age(o),
        json!(missing),
    ]
}

/// Flow schemas list in matching order: by precedence, then by name.
pub(super) fn flow_schema_order(a: &Value, b: &Value) -> Ordering {
    let precedence = |o: &Value| n(o, "/spec/matchingPrecedence");
    precedence(a).cmp(&precedence(b)).then_with(|| s(a, "/metadata/name").cmp(s(b, "/metadata/name")))
}

pub(super) fn priority_level_configuration(o: &Value, clock: &Clock) -> Vec<Value> {
    let none = || json!("<none>");
    let (mut shares, mut queues, mut hand_size, mut queue_length) = (none(), none(), none(), none());
    if let Some(limited) = get(o, "/spec/limited") {
        shares = json!(n(limited, "/nominalConcurrencyShares"));
        if let Some(queuing) = get(limited, "/limitResponse/queuing") {
            queues = json!(n(queuing, "/queues"));
            hand_size = json!(n(queuing, "/handSize"));
            queue_length = json!(n(queuing, "/queueLengthLimit"));
        }
    }
    vec![name(o), json!(s(o, "/spec/type")), shares, queues, hand_size, queue_length, clock.age(o)]
}

pub(super) fn api_service(o: &Value, clock: &Clock) -> Vec<Value> {
    let service = get(o, "/spec/service")
        .map_or_else(|| "Local".to_string(), |svc| format!("{}/{}", s(svc, "/namespace"), s(svc, "/name")));
    let available = match condition(o, "/status/conditions", "Available") {
        None => "Unknown".to_string(),
        Some(c) if s(c, "/status") == "True" || s(c, "/reason").is_empty() => s(c, "/status").to_string(),
        Some(c) => format!("{} ({})", s(c, "/status"), s(c, "/reason")),
    };
    vec![name(o), json!(service), json!(available), clock.age(o)]
}

#[cfg(test)]
mod tests {
    use super::super::{ago, printer, test_clock};
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn role_binding_shows_role_and_subjects_by_kind() {
        let rb = json!({"metadata": {"name": "admins"}, "roleRef": {"kind": "ClusterRole", "name": "admin"}, "subjects": [
            {"kind": "User", "name": "alice"}, {"kind": "Group", "name": "ops"}, {"kind": "User", "name": "bob"},
            {"kind": "ServiceAccount", "namespace": "ci", "name": "deployer"}, {"kind": "Robot", "name": "r"}]});
        assert_eq!(
            role_binding(&rb, &test_clock()),
            vec![
                json!("admins"),
                json!("ClusterRole/admin"),
                json!("<unknown>"),
                json!("alice, bob"),
                json!("ops"),
                json!("ci/deployer")
            ]
        );
    }

    #[test]
    fn csr_condition_ranks_denied_over_approved_and_adds_issued() {
        let csr = |conditions: Value, cert: &str| {
            certificate_signing_request(
                &json!({"metadata": {"name": "c", "creationTimestamp": ago(10)},
                        "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "username": "alice", "expirationSeconds": 86400},
                        "status": {"conditions": conditions, "certificate": cert}}),
                &test_clock(),
            )
        };
        assert_eq!(
            csr(json!([]), ""),
            vec![
                json!("c"),
                json!("10s"),
                json!("kubernetes.io/kube-apiserver-client"),
                json!("alice"),
                json!("24h"),
                json!("Pending")
            ]
        );
        assert_eq!(csr(json!([{"type": "Approved", "status": "True"}]), "LS0t")[5], "Approved,Issued");
        assert_eq!(
            csr(json!([{"type": "Approved"}, {"type": "Denied"}, {"type": "Failed"}]), "")[5],
            "Denied,Failed"
        );
        let bare = json!({"metadata": {"name": "c"}, "spec": {}});
        assert_eq!(
            certificate_signing_request(&bare, &test_clock())[2..5],
            [json!("<none>"), json!(""), json!("<none>")]
        );
    }

    #[test]
    fn admission_objects_count_webhooks_and_rules_and_show_params() {
        let hooks = json!({"metadata": {"name": "w"}, "webhooks": [{"name": "a"}, {"name": "b"}]});
        assert_eq!(webhook_configuration(&hooks, &test_clock())[1], 2);
        let vap = json!({"metadata": {"name": "p"}, "spec": {"validations": [{"expression": "true"}], "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}}});
        assert_eq!(admission_policy(&vap, &test_clock())[1..3], [json!(1), json!("v1/ConfigMap")]);
        assert_eq!(
            admission_policy(&json!({"metadata": {"name": "p"}}), &test_clock())[1..3],
            [json!(0), json!("<unset>")]
        );
        let binding = |param: Value| {
            admission_policy_binding(
                &json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "paramRef": param}}),
                &test_clock(),
            )[1..3]
                .to_vec()
        };
        assert_eq!(
            binding(json!({"name": "cfg", "namespace": "default"})),
            [json!("p"), json!("default/cfg")]
        );
        assert_eq!(binding(json!({"name": "cfg"}))[1], "*/cfg");
        assert_eq!(binding(json!(null))[1], "<unset>");
        assert_eq!(
            binding(json!({"selector": {"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [{"key": "k", "operator": "In", "values": ["x", "y"]}]}}))[1],
            "&LabelSelector{MatchLabels:map[string]string{a: 1,b: 2,},MatchExpressions:[]LabelSelectorRequirement{LabelSelectorRequirement{Key:k,Operator:In,Values:[x y],},},}"
        );
    }

    #[test]
    fn flow_schemas_list_by_precedence_then_name() {
        let fs = |name: &str, precedence: i64| {
            json!({"metadata": {"name": name}, "spec": {"matchingPrecedence": precedence, "priorityLevelConfiguration": {"name": "workload-low"},
                   "distinguisherMethod": {"type": "ByUser"}}, "status": {"conditions": [{"type": "Dangling", "status": "False"}]}})
        };
        let reg = Registry::builtin();
        let info = reg.by_kind("flowcontrol.apiserver.k8s.io", "FlowSchema").map(|r| r.as_ref().clone());
        let info = info.unwrap_or_else(|| panic!("flowschemas served"));
        let t = super::super::table(
            &info,
            &[fs("global-default", 9900), fs("b", 500), fs("a", 500)],
            &super::super::Include::None,
            "v1",
            None,
        );
        let names: Vec<&Value> = t["rows"].as_array().into_iter().flatten().map(|r| &r["cells"][0]).collect();
        assert_eq!(names, [&json!("a"), &json!("b"), &json!("global-default")]);
        assert_eq!(t["rows"][0]["cells"], json!(["a", "workload-low", 500, "ByUser", "<unknown>", "False"]));
        assert!(printer(&info).order.is_some());
        let bare = json!({"metadata": {"name": "x"}, "spec": {}});
        assert_eq!(flow_schema(&bare, &test_clock())[3], "<none>");
        assert_eq!(flow_schema(&bare, &test_clock())[5], "?");
    }

    #[test]
    fn priority_levels_show_queuing_or_none() {
        let limited = json!({"metadata": {"name": "workload-low"}, "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 100,
            "limitResponse": {"type": "Queue", "queuing": {"queues": 128, "handSize": 6, "queueLengthLimit": 50}}}}});
        assert_eq!(
            priority_level_configuration(&limited, &test_clock())[1..6],
            [json!("Limited"), json!(100), json!(128), json!(6), json!(50)]
        );
        let rejecting = json!({"metadata": {"name": "r"}, "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 5, "limitResponse": {"type": "Reject"}}}});
        assert_eq!(
            priority_level_configuration(&rejecting, &test_clock())[2..4],
            [json!(5), json!("<none>")]
        );
        let exempt = json!({"metadata": {"name": "exempt"}, "spec": {"type": "Exempt", "exempt": {}}});
        assert_eq!(
            priority_level_configuration(&exempt, &test_clock())[1..6],
            [json!("Exempt"), json!("<none>"), json!("<none>"), json!("<none>"), json!("<none>")]
        );
    }

    #[test]
    fn api_services_show_backing_service_and_availability() {
        let local = json!({"metadata": {"name": "v1.apps"}, "spec": {}, "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}});
        assert_eq!(api_service(&local, &test_clock())[1..3], [json!("Local"), json!("True")]);
        let broken = json!({"metadata": {"name": "v1beta1.metrics.k8s.io"}, "spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
            "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints"}]}});
        assert_eq!(
            api_service(&broken, &test_clock())[1..3],
            [json!("kube-system/metrics-server"), json!("False (MissingEndpoints)")]
        );
        let unknown = json!({"metadata": {"name": "v1.x"}});
        assert_eq!(api_service(&unknown, &test_clock())[2], "Unknown");
    }
}
