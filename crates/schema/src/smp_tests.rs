//! Strategic merge patch cases modelled on what kubectl sends.

use serde_json::{json, Value};

use super::strategic_merge_patch;
use crate::{Schema, TypeRef};

fn kind(group: &str, version: &str, kind: &str) -> TypeRef<'static> {
    match Schema::builtin().for_kind(group, version, kind) {
        Some(t) => t,
        None => panic!("no schema for {group}/{version}/{kind}"),
    }
}

fn pod() -> TypeRef<'static> {
    kind("", "v1", "Pod")
}

fn deployment() -> TypeRef<'static> {
    kind("apps", "v1", "Deployment")
}

fn apply(ty: TypeRef<'static>, doc: Value, patch: Value) -> Value {
    match strategic_merge_patch(doc, patch, ty) {
        Ok(v) => v,
        Err(e) => panic!("patch failed: {e}"),
    }
}

fn apply_err(ty: TypeRef<'static>, doc: Value, patch: Value) -> crate::Error {
    match strategic_merge_patch(doc, patch, ty) {
        Ok(v) => panic!("patch unexpectedly succeeded: {v}"),
        Err(e) => e,
    }
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect()
}

fn two_container_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [
            {"name": "nginx", "image": "nginx:1.0", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]}
        ]}
    })
}

#[test]
fn containers_merge_by_name() {
    let patch = json!({"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}});
    let out = apply(pod(), two_container_pod(), patch);
    let containers = &out["spec"]["containers"];
    assert_eq!(names(containers), ["nginx", "sidecar"]);
    assert_eq!(containers[0]["image"], "nginx:1.25");
    assert_eq!(containers[0]["ports"], json!([{"containerPort": 80}]));
    assert_eq!(containers[1]["args"], json!(["sleep", "1d"]));
}

#[test]
fn new_list_element_without_set_element_order_goes_before_live_elements() {
    let patch = json!({"spec": {"containers": [{"name": "logger", "image": "fluentd"}]}});
    let out = apply(pod(), two_container_pod(), patch);
    assert_eq!(names(&out["spec"]["containers"]), ["logger", "nginx", "sidecar"]);
}

#[test]
fn set_element_order_places_a_new_container_as_kubectl_apply_asks() {
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}, {"name": "logger"}],
        "containers": [{"name": "logger", "image": "fluentd"}]
    }});
    let out = apply(pod(), two_container_pod(), patch);
    assert_eq!(names(&out["spec"]["containers"]), ["nginx", "sidecar", "logger"]);
}

#[test]
fn set_element_order_reorders_existing_containers() {
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}]
    }});
    let out = apply(pod(), two_container_pod(), patch);
    assert_eq!(names(&out["spec"]["containers"]), ["sidecar", "nginx"]);
    assert_eq!(out["spec"]["containers"][1]["image"], "nginx:1.0");
}

#[test]
fn set_element_order_that_contradicts_the_patch_list_is_rejected() {
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
        "containers": [{"name": "sidecar", "image": "b"}, {"name": "nginx", "image": "a"}]
    }});
    let err = apply_err(pod(), two_container_pod(), patch);
    assert!(err.to_string().contains("doesn't match $setElementOrder list"), "{err}");
}

#[test]
fn env_merges_by_name_inside_a_merged_container() {
    let doc = json!({"spec": {"containers": [{"name": "app", "image": "app", "env": [
        {"name": "A", "value": "1"}, {"name": "B", "value": "2"}
    ]}]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{
            "name": "app",
            "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
            "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]
        }]
    }});
    let out = apply(pod(), doc, patch);
    assert_eq!(
        out["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}])
    );
}

#[test]
fn container_ports_merge_by_container_port() {
    let doc = json!({"spec": {"containers": [{"name": "app", "ports": [
        {"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"}
    ]}]}});
    let patch = json!({"spec": {"containers": [{"name": "app", "ports": [
        {"containerPort": 443, "protocol": "TCP"}
    ]}]}});
    let out = apply(pod(), doc, patch);
    let ports = &out["spec"]["containers"][0]["ports"];
    assert_eq!(ports.as_array().map(Vec::len), Some(2));
    let https = ports.as_array().into_iter().flatten().find(|p| p["containerPort"] == 443);
    assert_eq!(https, Some(&json!({"containerPort": 443, "name": "https", "protocol": "TCP"})));
}

#[test]
fn numeric_merge_keys_match_across_integer_and_float_spelling() {
    let doc = json!({"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}});
    let patch: Value = serde_json::from_str(
        r#"{"spec":{"containers":[{"name":"app","ports":[{"containerPort":80.0,"name":"http"}]}]}}"#,
    )
    .unwrap_or_default();
    let out = apply(pod(), doc, patch);
    assert_eq!(out["spec"]["containers"][0]["ports"].as_array().map(Vec::len), Some(1));
    assert_eq!(out["spec"]["containers"][0]["ports"][0]["name"], "http");
}

#[test]
fn volumes_merge_by_name_and_retain_keys_switches_the_source() {
    let doc = json!({"spec": {"volumes": [
        {"name": "data", "emptyDir": {}},
        {"name": "creds", "secret": {"secretName": "s"}}
    ]}});
    let patch = json!({"spec": {
        "$setElementOrder/volumes": [{"name": "data"}, {"name": "creds"}],
        "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}, "name": "data"}]
    }});
    let out = apply(pod(), doc, patch);
    assert_eq!(
        out["spec"]["volumes"],
        json!([
            {"name": "data", "configMap": {"name": "cm"}},
            {"name": "creds", "secret": {"secretName": "s"}}
        ])
    );
}

#[test]
fn tolerations_without_a_patch_strategy_are_replaced() {
    let doc = json!({"spec": {"tolerations": [
        {"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}
    ]}});
    let patch = json!({"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}});
    let out = apply(pod(), doc, patch);
    assert_eq!(out["spec"]["tolerations"], json!([{"key": "c", "operator": "Exists"}]));
}

#[test]
fn finalizers_merge_as_a_set_of_strings() {
    let doc = json!({"metadata": {"name": "x", "finalizers": ["a", "b"]}});
    let patch = json!({"metadata": {"finalizers": ["b", "c"]}});
    let out = apply(pod(), doc.clone(), patch);
    // "a" precedes "b" in the live list, so it stays first; "c" follows the patch order.
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    // Elements only in the patch come before the live-only ones.
    let out = apply(pod(), doc, json!({"metadata": {"finalizers": ["c"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
}

#[test]
fn finalizers_with_set_element_order_keep_the_requested_order() {
    let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
    let patch = json!({"metadata": {
        "$setElementOrder/finalizers": ["a", "b", "c"],
        "finalizers": ["c"]
    }});
    let out = apply(pod(), doc, patch);
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
}

#[test]
fn delete_from_primitive_list_removes_finalizers() {
    let doc = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "c"]}});
    let out = apply(pod(), doc, patch);
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
}

#[test]
fn an_empty_merge_list_changes_nothing_but_null_clears_it() {
    let doc = json!({"metadata": {"finalizers": ["a"]}});
    let out = apply(pod(), doc.clone(), json!({"metadata": {"finalizers": []}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["a"]));
    let out = apply(pod(), doc, json!({"metadata": {"finalizers": null}}));
    assert_eq!(out["metadata"], json!({}));
}

#[test]
fn labels_merge_and_null_deletes_a_label() {
    let doc = json!({"metadata": {"labels": {"app": "web", "tier": "front", "old": "x"}}});
    let patch = json!({"metadata": {"labels": {"tier": "back", "old": null, "env": "prod"}}});
    let out = apply(pod(), doc, patch);
    assert_eq!(out["metadata"]["labels"], json!({"app": "web", "tier": "back", "env": "prod"}));
}

#[test]
fn kubectl_annotate_removal_deletes_only_that_key() {
    let doc = json!({"metadata": {"annotations": {"a": "1", "b": "2"}}});
    let out = apply(pod(), doc, json!({"metadata": {"annotations": {"a": null}}}));
    assert_eq!(out["metadata"]["annotations"], json!({"b": "2"}));
}

#[test]
fn kubectl_scale_sets_replicas() {
    let doc = json!({"spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}}});
    let out = apply(deployment(), doc, json!({"spec": {"replicas": 3}}));
    assert_eq!(out["spec"], json!({"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}));
}

#[test]
fn node_selector_merges_key_by_key() {
    let doc = json!({"spec": {"nodeSelector": {"disk": "ssd"}}});
    let out = apply(pod(), doc, json!({"spec": {"nodeSelector": {"zone": "a"}}}));
    assert_eq!(out["spec"]["nodeSelector"], json!({"disk": "ssd", "zone": "a"}));
}

#[test]
fn patch_delete_directive_removes_a_container() {
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}],
        "containers": [{"$patch": "delete", "name": "sidecar"}]
    }});
    let out = apply(pod(), two_container_pod(), patch);
    assert_eq!(names(&out["spec"]["containers"]), ["nginx"]);
}

#[test]
fn patch_replace_directive_replaces_a_list() {
    let patch = json!({"spec": {"containers": [
        {"$patch": "replace"},
        {"name": "only", "image": "x"}
    ]}});
    let out = apply(pod(), two_container_pod(), patch);
    assert_eq!(out["spec"]["containers"], json!([{"name": "only", "image": "x"}]));
}

#[test]
fn patch_replace_directive_replaces_a_map() {
    let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
    let patch = json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}});
    let out = apply(pod(), doc, patch);
    assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
}

#[test]
fn patch_delete_directive_in_a_map_empties_it() {
    let doc = json!({"metadata": {"labels": {"a": "1"}}});
    let out = apply(pod(), doc, json!({"metadata": {"labels": {"$patch": "delete"}}}));
    assert_eq!(out["metadata"]["labels"], json!({}));
}

#[test]
fn patch_replace_at_the_top_replaces_the_object() {
    let out = apply(pod(), two_container_pod(), json!({"$patch": "replace", "metadata": {"name": "n"}}));
    assert_eq!(out, json!({"metadata": {"name": "n"}}));
}

#[test]
fn patch_merge_directive_is_rejected_in_lists_and_maps() {
    let list = json!({"spec": {"containers": [{"$patch": "merge"}, {"name": "nginx"}]}});
    let err = apply_err(pod(), two_container_pod(), list);
    assert_eq!(err.to_string(), "merging lists cannot yet be specified in the patch");
    let map = json!({"metadata": {"labels": {"$patch": "merge", "a": "b"}}});
    let err = apply_err(pod(), two_container_pod(), map);
    assert!(err.to_string().starts_with("unknown patch type: merge in map"), "{err}");
}

#[test]
fn retain_keys_switches_a_deployment_from_rolling_update_to_recreate() {
    let doc = json!({"spec": {"replicas": 2, "strategy": {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
    }}});
    let patch = json!({"spec": {"strategy": {
        "$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"
    }}});
    let out = apply(deployment(), doc, patch);
    assert_eq!(out["spec"], json!({"replicas": 2, "strategy": {"type": "Recreate"}}));
}

#[test]
fn retain_keys_alone_clears_unlisted_fields() {
    let doc = json!({"spec": {"strategy": {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}
    }}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let out = apply(deployment(), doc, patch);
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn retain_keys_missing_a_patched_field_is_a_bad_request() {
    let doc = json!({"spec": {"strategy": {"type": "RollingUpdate"}}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}});
    let err = apply_err(deployment(), doc, patch);
    assert_eq!(err.http_status(), 400);
    assert_eq!(err.to_string(), "invalid patch format of retainKeys");
}

#[test]
fn replace_strategy_replaces_a_pod_disruption_budget_selector() {
    let pdb = kind("policy", "v1", "PodDisruptionBudget");
    let doc = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "minAvailable": 1}});
    let out = apply(pdb, doc, json!({"spec": {"selector": {"matchLabels": {"c": "d"}}}}));
    assert_eq!(out["spec"], json!({"selector": {"matchLabels": {"c": "d"}}, "minAvailable": 1}));
}

#[test]
fn service_ports_merge_by_port() {
    let svc = kind("", "v1", "Service");
    let doc = json!({"spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
    ]}});
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
    let out = apply(svc, doc, patch);
    assert_eq!(
        out["spec"]["ports"],
        json!([
            {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
            {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
        ])
    );
}

#[test]
fn owner_references_merge_by_uid() {
    let doc = json!({"metadata": {"ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1"}
    ]}});
    let patch = json!({"metadata": {"ownerReferences": [
        {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "u2"}
    ]}});
    let out = apply(pod(), doc, patch);
    let uids: Vec<&str> = out["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["uid"].as_str())
        .collect();
    assert_eq!(uids, ["u2", "u1"]);
}

#[test]
fn pod_status_conditions_merge_by_type() {
    let doc = json!({"status": {"phase": "Pending", "conditions": [
        {"type": "Ready", "status": "False"},
        {"type": "PodScheduled", "status": "True"}
    ]}});
    let patch = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    let out = apply(pod(), doc, patch);
    assert_eq!(
        out["status"],
        json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "PodScheduled", "status": "True"}
        ]})
    );
}

#[test]
fn null_removes_a_field_of_a_merged_container() {
    let doc = json!({"spec": {"containers": [
        {"name": "app", "image": "a", "resources": {"limits": {"cpu": "1"}}}
    ]}});
    let patch = json!({"spec": {"containers": [{"name": "app", "resources": null}]}});
    let out = apply(pod(), doc, patch);
    assert_eq!(out["spec"]["containers"], json!([{"name": "app", "image": "a"}]));
}

#[test]
fn nulls_inside_a_new_field_are_dropped() {
    let doc = json!({"metadata": {"name": "x"}});
    let patch = json!({"metadata": {"labels": {"a": "1", "b": null}}});
    let out = apply(pod(), doc, patch);
    assert_eq!(out["metadata"]["labels"], json!({"a": "1"}));
}

#[test]
fn directives_inside_a_new_field_are_dropped() {
    let doc = json!({"spec": {}});
    let patch = json!({"spec": {"affinity": {"nodeAffinity": {"$patch": "delete"}, "podAffinity": {}}}});
    let out = apply(pod(), doc, patch);
    assert_eq!(out["spec"]["affinity"], json!({"podAffinity": {}}));
}

#[test]
fn unknown_fields_merge_like_a_json_merge_patch() {
    let doc = json!({"spec": {"foo": {"a": 1, "b": 2}, "bar": [1, 2]}});
    let patch = json!({"spec": {"foo": {"b": null, "c": 3}, "bar": [3]}});
    let out = apply(pod(), doc, patch);
    assert_eq!(out["spec"], json!({"foo": {"a": 1, "c": 3}, "bar": [3]}));
}

#[test]
fn a_value_of_another_type_replaces_the_field() {
    let doc = json!({"spec": {"replicas": 1, "template": {"metadata": {"labels": {"a": "b"}}}}});
    let out = apply(deployment(), doc, json!({"spec": {"replicas": "two"}}));
    assert_eq!(out["spec"]["replicas"], "two");
}

#[test]
fn a_merge_list_element_without_its_merge_key_fails() {
    let patch = json!({"spec": {"containers": [{"image": "x"}]}});
    let err = apply_err(pod(), two_container_pod(), patch);
    assert!(err.to_string().contains("does not contain declared merge key: name"), "{err}");
    assert_eq!(err.http_status(), 500);
}

#[test]
fn lists_of_lists_are_unprocessable() {
    let doc = json!({"metadata": {"finalizers": [["a"]]}});
    let err = apply_err(pod(), doc, json!({"metadata": {"finalizers": [["b"]]}}));
    assert_eq!(err.http_status(), 422);
    assert_eq!(err.to_string(), "lists of lists are not supported");
}

#[test]
fn a_patch_that_is_not_an_object_is_a_bad_request() {
    let err = apply_err(pod(), json!({}), json!(["a"]));
    assert_eq!(err.http_status(), 400);
}

#[test]
fn kubectl_edit_style_patch_changes_image_and_drops_a_container() {
    let patch = json!({
        "metadata": {"labels": {"edited": "true"}},
        "spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [
                {"name": "nginx", "image": "nginx:1.27"},
                {"$patch": "delete", "name": "sidecar"}
            ]
        }
    });
    let out = apply(pod(), two_container_pod(), patch);
    assert_eq!(out["metadata"]["labels"], json!({"app": "web", "edited": "true"}));
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}])
    );
}

#[test]
fn deployment_template_containers_merge_through_the_pod_template() {
    let doc = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]}
    ]}}}});
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "B", "value": "2"}]}
    ]}}}});
    let out = apply(deployment(), doc, patch);
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "app", "image": "app:1", "env": [
            {"name": "B", "value": "2"}, {"name": "A", "value": "1"}
        ]}])
    );
}
