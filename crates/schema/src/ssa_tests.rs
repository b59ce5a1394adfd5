//! Server-side apply and update tracking, modelled on what kubectl and controllers send.

use serde_json::{json, Value};

use super::*;
use crate::Schema;

const T0: &str = "2025-01-01T00:00:00Z";
const T1: &str = "2025-01-01T00:01:00Z";

fn ty(group: &str, version: &str, kind: &str) -> TypeRef<'static> {
    match Schema::builtin().for_kind(group, version, kind) {
        Some(t) => t,
        None => panic!("no schema for {group}/{version}/{kind}"),
    }
}

fn deploy_manager(manager: &str, time: &'static str) -> FieldManager<'static> {
    FieldManager {
        ty: Some(ty("apps", "v1", "Deployment")),
        manager: Box::leak(manager.to_owned().into_boxed_str()),
        subresource: None,
        api_version: "apps/v1",
        time,
        ignored: field_set_of(&[&["status"]]),
    }
}

fn apply(
    fm: &FieldManager<'_>,
    live: &Value,
    config: Value,
    managed: ManagedFields,
) -> (Value, ManagedFields) {
    match fm.apply(live, &config, managed, false) {
        Ok(r) => r,
        Err(e) => panic!("apply failed: {e}"),
    }
}

fn apply_err(fm: &FieldManager<'_>, live: &Value, config: Value, managed: ManagedFields) -> ApplyError {
    match fm.apply(live, &config, managed, false) {
        Ok((obj, _)) => panic!("apply unexpectedly succeeded: {obj}"),
        Err(e) => e,
    }
}

fn fields_of(m: &ManagedFields, manager: &str, op: Operation) -> Value {
    match m.entries().iter().find(|e| e.manager == manager && e.operation == op) {
        Some(e) => e.fields.to_fields_v1(),
        None => panic!("no {op:?} entry for {manager}: {}", m.to_json()),
    }
}

fn owns(m: &ManagedFields, manager: &str, path: &[&str]) -> bool {
    m.entries().iter().any(|e| e.manager == manager && e.fields.contains(&FieldPath::fields(path).0))
}

fn managers(m: &ManagedFields) -> Vec<(String, Operation)> {
    let mut v: Vec<_> = m.entries().iter().map(|e| (e.manager.clone(), e.operation)).collect();
    v.sort();
    v
}

/// What `kubectl apply --server-side -f web.yaml` sends.
fn web(labels: Value, replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "nginx",
                    "image": image,
                    "args": ["-g", "daemon off;"],
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "MODE", "value": "prod"}]
                }]}
            }
        }
    })
}

fn container_named<'v>(obj: &'v Value, name: &str) -> Option<&'v Value> {
    obj.pointer("/spec/template/spec/containers")?.as_array()?.iter().find(|c| c["name"] == name)
}

#[test]
fn the_field_set_of_a_deployment_is_what_kube_apiserver_records() {
    let set =
        match field_set(Some(ty("apps", "v1", "Deployment")), &web(json!({"app": "web"}), 2, "nginx:1.25")) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
    let container = json!({
        ".": {},
        "f:args": {},
        "f:env": {"k:{\"name\":\"MODE\"}": {".": {}, "f:name": {}, "f:value": {}}},
        "f:image": {},
        "f:name": {},
        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
    });
    assert_eq!(
        set.to_fields_v1(),
        json!({
            "f:apiVersion": {},
            "f:kind": {},
            "f:metadata": {"f:labels": {"f:app": {}}, "f:name": {}, "f:namespace": {}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": container}}
                }
            }
        })
    );
}

#[test]
fn create_via_apply_gives_one_apply_entry_without_identity_fields() {
    let fm = deploy_manager("kubectl", T0);
    let (obj, managed) =
        apply(&fm, &json!({}), web(json!({"app": "web"}), 2, "nginx:1.25"), ManagedFields::new());
    assert_eq!(obj["spec"]["replicas"], 2);
    assert_eq!(obj["metadata"]["name"], "web");
    assert_eq!(managed.entries().len(), 1);
    let e = &managed.entries()[0];
    assert_eq!(
        (e.operation, e.api_version.as_str(), e.time.as_deref()),
        (Operation::Apply, "apps/v1", Some(T0))
    );
    assert!(!owns(&managed, "kubectl", &["metadata", "name"]));
    assert!(!owns(&managed, "kubectl", &["apiVersion"]));
    assert!(owns(&managed, "kubectl", &["spec", "replicas"]));
    let json = managed.to_json();
    assert_eq!(json[0]["fieldsType"], "FieldsV1");
    assert_eq!(json[0]["operation"], "Apply");
    assert_eq!(json[0]["fieldsV1"]["f:metadata"], json!({"f:labels": {"f:app": {}}}));
    assert!(json[0].get("subresource").is_none());
}

#[test]
fn reapplying_without_a_label_removes_it() {
    let fm = deploy_manager("kubectl", T0);
    let (live, managed) = apply(
        &fm,
        &json!({}),
        web(json!({"app": "web", "tier": "front"}), 2, "nginx:1.25"),
        ManagedFields::new(),
    );
    assert_eq!(live["metadata"]["labels"]["tier"], "front");
    let (after, managed) = apply(&fm, &live, web(json!({"app": "web"}), 2, "nginx:1.25"), managed);
    assert_eq!(after["metadata"]["labels"], json!({"app": "web"}));
    assert!(!owns(&managed, "kubectl", &["metadata", "labels", "tier"]));
    assert_eq!(after["metadata"]["name"], "web");
}

#[test]
fn reapplying_without_any_label_removes_the_labels_field() {
    let fm = deploy_manager("kubectl", T0);
    let (live, managed) =
        apply(&fm, &json!({}), web(json!({"app": "web"}), 2, "nginx"), ManagedFields::new());
    let mut config = web(json!({}), 2, "nginx");
    if let Some(m) = config["metadata"].as_object_mut() {
        m.remove("labels");
    }
    let (after, _) = apply(&fm, &live, config, managed);
    assert!(after["metadata"].get("labels").is_none(), "{after}");
    assert_eq!(after["metadata"]["name"], "web");
    assert_eq!(after["metadata"]["namespace"], "default");
}

#[test]
fn a_field_dropped_from_the_config_stays_when_another_manager_owns_it() {
    let a = deploy_manager("a", T0);
    let b = deploy_manager("b", T0);
    let (live, managed) =
        apply(&a, &json!({}), web(json!({"app": "web", "shared": "x"}), 2, "nginx"), ManagedFields::new());
    let b_config = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"shared": "x"}}
    });
    let (live, managed) = apply(&b, &live, b_config, managed);
    assert!(owns(&managed, "a", &["metadata", "labels", "shared"]));
    assert!(owns(&managed, "b", &["metadata", "labels", "shared"]));
    let (after, managed) = apply(&a, &live, web(json!({"app": "web"}), 2, "nginx"), managed);
    assert_eq!(after["metadata"]["labels"]["shared"], "x");
    assert!(!owns(&managed, "a", &["metadata", "labels", "shared"]));
}

#[test]
fn fields_nobody_applied_are_left_alone() {
    // Defaults and fields written by others without ownership stay where they are.
    let fm = deploy_manager("kubectl", T0);
    let (mut live, managed) =
        apply(&fm, &json!({}), web(json!({"app": "web"}), 2, "nginx"), ManagedFields::new());
    live["spec"]["revisionHistoryLimit"] = json!(10);
    live["metadata"]["uid"] = json!("1234");
    let (after, _) = apply(&fm, &live, web(json!({"app": "web"}), 3, "nginx"), managed);
    assert_eq!(after["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(after["metadata"]["uid"], "1234");
    assert_eq!(after["spec"]["replicas"], 3);
}

fn sidecar_config(manager_image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": manager_image}]}}}
    })
}

#[test]
fn two_managers_own_different_containers() {
    let a = deploy_manager("a", T0);
    let b = deploy_manager("b", T0);
    let (live, managed) = apply(&a, &json!({}), web(json!({"app": "web"}), 2, "nginx"), ManagedFields::new());
    let (live, managed) = apply(&b, &live, sidecar_config("envoy:1"), managed);
    assert!(container_named(&live, "nginx").is_some());
    assert_eq!(container_named(&live, "sidecar").map(|c| c["image"].clone()), Some(json!("envoy:1")));
    let b_fields = fields_of(&managed, "b", Operation::Apply);
    assert_eq!(
        b_fields,
        json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"sidecar\"}": {".": {}, "f:image": {}, "f:name": {}}
        }}}}})
    );
    // `a` updates its container: no conflict, `b`'s container untouched.
    let (live, managed) = apply(&a, &live, web(json!({"app": "web"}), 2, "nginx:2"), managed);
    assert_eq!(container_named(&live, "sidecar").map(|c| c["image"].clone()), Some(json!("envoy:1")));
    assert_eq!(container_named(&live, "nginx").map(|c| c["image"].clone()), Some(json!("nginx:2")));
    // `b` stops applying its container: it goes; `a`'s stays.
    let empty = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
    let (live, managed) = apply(&b, &live, empty, managed);
    assert!(container_named(&live, "sidecar").is_none(), "{live}");
    assert!(container_named(&live, "nginx").is_some());
    assert_eq!(managers(&managed), [("a".to_owned(), Operation::Apply)]);
}

/// A Deployment created by `kubectl apply` (client side): an Update entry owning everything.
fn client_side_created() -> (Value, ManagedFields) {
    let fm = FieldManager { manager: "kubectl-client-side-apply", ..deploy_manager("x", T0) };
    let obj = web(json!({"app": "web"}), 2, "nginx:1.25");
    let managed = fm.update(&json!({}), &obj, ManagedFields::new());
    (obj, managed)
}

#[test]
fn conflict_on_replicas_between_an_update_manager_and_an_applier() {
    let (live, managed) = client_side_created();
    assert_eq!(managers(&managed), [("kubectl-client-side-apply".to_owned(), Operation::Update)]);
    let fm = deploy_manager("mgr", T1);
    let config = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 3}
    });
    let err = apply_err(&fm, &live, config, managed);
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    let ApplyError::Conflicts(c) = err else { panic!("not a conflict") };
    assert_eq!(c.0[0].cause_message(), "conflict with \"kubectl-client-side-apply\" using apps/v1");
    assert_eq!(c.0[0].field(), ".spec.replicas");
}

#[test]
fn applying_the_same_value_shares_ownership_without_conflict() {
    let (live, managed) = client_side_created();
    let fm = deploy_manager("mgr", T1);
    let config = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}
    });
    let (obj, managed) = apply(&fm, &live, config, managed);
    assert_eq!(obj, live);
    assert!(owns(&managed, "mgr", &["spec", "replicas"]));
    assert!(owns(&managed, "kubectl-client-side-apply", &["spec", "replicas"]));
}

#[test]
fn force_takes_ownership_of_conflicting_fields() {
    let (live, managed) = client_side_created();
    let fm = deploy_manager("mgr", T1);
    let config = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}
    });
    let (obj, managed) = match fm.apply(&live, &config, managed, true) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(obj["spec"]["replicas"], 3);
    assert!(owns(&managed, "mgr", &["spec", "replicas"]));
    assert!(!owns(&managed, "kubectl-client-side-apply", &["spec", "replicas"]));
    assert!(owns(&managed, "kubectl-client-side-apply", &["spec", "template", "metadata", "labels", "app"]));
}

#[test]
fn several_conflicts_are_listed_per_manager() {
    let (live, managed) = client_side_created();
    let fm = deploy_manager("mgr", T1);
    let config = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:2"}]}}}
    });
    let err = apply_err(&fm, &live, config, managed);
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
    );
}

#[test]
fn conflicts_with_another_applier_name_it_without_a_version() {
    let a = deploy_manager("a", T0);
    let b = deploy_manager("b", T1);
    let (live, managed) = apply(&a, &json!({}), web(json!({"app": "web"}), 2, "nginx"), ManagedFields::new());
    let err = apply_err(&b, &live, web(json!({"app": "web"}), 5, "nginx"), managed);
    assert_eq!(err.to_string(), "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas");
}

#[test]
fn list_maps_merge_by_name_and_keep_the_live_order() {
    let (live, managed) = client_side_created();
    let mut live = live;
    live["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "init", "image": "busybox"},
        {"name": "nginx", "image": "nginx:1.25", "env": [{"name": "MODE", "value": "prod"}]}
    ]);
    let fm = deploy_manager("mgr", T1);
    let config = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "env": [{"name": "DEBUG", "value": "1"}]},
            {"name": "extra", "image": "extra:1"}
        ]}}}
    });
    let (obj, managed) = apply(&fm, &live, config, managed);
    let names: Vec<&str> = obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["init", "nginx", "extra"]);
    let nginx = container_named(&obj, "nginx").cloned().unwrap_or_default();
    assert_eq!(nginx["image"], "nginx:1.25");
    assert_eq!(nginx["env"], json!([{"name": "MODE", "value": "prod"}, {"name": "DEBUG", "value": "1"}]));
    let mgr = fields_of(&managed, "mgr", Operation::Apply);
    assert!(mgr.pointer("/f:spec/f:template/f:spec/f:containers/k:{\"name\":\"nginx\"}/f:env").is_some());
}

fn finalizer_config(finalizers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "finalizers": finalizers}
    })
}

#[test]
fn set_lists_like_finalizers_are_unions_owned_item_by_item() {
    let a = deploy_manager("a", T0);
    let b = deploy_manager("b", T0);
    let (live, managed) =
        apply(&a, &json!({}), finalizer_config(json!(["a.example.com/x"])), ManagedFields::new());
    let (live, managed) = apply(&b, &live, finalizer_config(json!(["b.example.com/y"])), managed);
    assert_eq!(live["metadata"]["finalizers"], json!(["a.example.com/x", "b.example.com/y"]));
    assert_eq!(
        fields_of(&managed, "b", Operation::Apply),
        json!({"f:metadata": {"f:finalizers": {"v:\"b.example.com/y\"": {}}}})
    );
    let (live, _) = apply(&a, &live, finalizer_config(json!([])), managed);
    assert_eq!(live["metadata"]["finalizers"], json!(["b.example.com/y"]));
}

fn args_config(args: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "nginx", "args": args}]}}}
    })
}

#[test]
fn atomic_lists_like_container_args_are_replaced_and_owned_whole() {
    let a = deploy_manager("a", T0);
    let b = deploy_manager("b", T1);
    let (live, managed) = apply(&a, &json!({}), args_config(json!(["--a", "--b"])), ManagedFields::new());
    let err = apply_err(&b, &live, args_config(json!(["--c"])), managed.clone());
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"a\": .spec.template.spec.containers[name=\"nginx\"].args"
    );
    let (live, managed) = match b.apply(&live, &args_config(json!(["--c"])), managed, true) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(container_named(&live, "nginx").map(|c| c["args"].clone()), Some(json!(["--c"])));
    let args = ["spec", "template", "spec", "containers"];
    assert!(!owns(&managed, "a", &args[..3]));
    let a_fields = fields_of(&managed, "a", Operation::Apply).to_string();
    assert!(!a_fields.contains("f:args"), "{a_fields}");
    assert!(fields_of(&managed, "b", Operation::Apply).to_string().contains("f:args"));
}

#[test]
fn updates_move_changed_fields_to_their_manager() {
    let (live, managed) = client_side_created();
    let edit = FieldManager { manager: "kubectl-edit", ..deploy_manager("x", T1) };
    let mut new = live.clone();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    let managed = edit.update(&live, &new, managed);
    assert_eq!(
        fields_of(&managed, "kubectl-edit", Operation::Update),
        json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {"f:image": {}}}}}}})
    );
    let csa = managed.entries().iter().find(|e| e.manager == "kubectl-client-side-apply");
    assert_eq!(csa.and_then(|e| e.time.as_deref()), Some(T0));
    assert!(!fields_of(&managed, "kubectl-client-side-apply", Operation::Update)
        .to_string()
        .contains("f:image"));
    let edit_entry = managed.find("kubectl-edit", Operation::Update, None, "apps/v1");
    assert_eq!(edit_entry.and_then(|e| e.time.as_deref()), Some(T1));
}

#[test]
fn an_update_that_changes_nothing_changes_no_entry() {
    let (live, managed) = client_side_created();
    let edit = FieldManager { manager: "kubectl-edit", ..deploy_manager("x", T1) };
    let mut same = live.clone();
    same["metadata"]["resourceVersion"] = json!("42");
    assert_eq!(edit.update(&live, &same, managed.clone()), managed);
}

#[test]
fn managers_left_without_fields_are_dropped() {
    let fm = deploy_manager("labeler", T0);
    let (live, managed) = apply(&fm, &json!({}), finalizer_config(json!(["x/y"])), ManagedFields::new());
    let remover = FieldManager { manager: "kubectl-patch", ..deploy_manager("x", T1) };
    let mut new = live.clone();
    if let Some(m) = new["metadata"].as_object_mut() {
        m.remove("finalizers");
    }
    let managed = remover.update(&live, &new, managed);
    assert!(managed.is_empty(), "{}", managed.to_json());
}

#[test]
fn added_list_items_and_empty_structs_are_owned_by_the_updater() {
    let fm = FieldManager { manager: "kubectl-create", ..deploy_manager("x", T0) };
    let obj = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i", "resources": {}}]}}}
    });
    let managed = fm.update(&json!({}), &obj, ManagedFields::new());
    assert_eq!(
        fields_of(&managed, "kubectl-create", Operation::Update),
        json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
            ".": {}, "f:image": {}, "f:name": {}, "f:resources": {}
        }}}}}})
    );
}

#[test]
fn status_writes_are_recorded_with_their_subresource() {
    let (live, managed) = client_side_created();
    let fm = FieldManager {
        manager: "kube-controller-manager",
        subresource: Some("status"),
        ignored: FieldSet::new(),
        ..deploy_manager("x", T1)
    };
    let mut new = live.clone();
    new["status"] = json!({"replicas": 2, "readyReplicas": 1});
    let managed = fm.update(&live, &new, managed);
    let e = managed.find("kube-controller-manager", Operation::Update, Some("status"), "apps/v1");
    assert!(e.is_some());
    let json = managed.to_json();
    let status_entry =
        json.as_array().into_iter().flatten().find(|e| e["manager"] == "kube-controller-manager");
    assert_eq!(status_entry.map(|e| e["subresource"].clone()), Some(json!("status")));
    assert_eq!(
        status_entry.map(|e| e["fieldsV1"].clone()),
        Some(json!({"f:status": {"f:readyReplicas": {}, "f:replicas": {}}}))
    );
}

#[test]
fn status_in_an_applied_configuration_of_the_main_resource_is_not_owned() {
    let fm = deploy_manager("kubectl", T0);
    let mut config = web(json!({"app": "web"}), 1, "nginx");
    config["status"] = json!({"replicas": 5});
    let (_, managed) = apply(&fm, &json!({}), config, ManagedFields::new());
    assert!(!fields_of(&managed, "kubectl", Operation::Apply).to_string().contains("f:status"));
}

#[test]
fn a_null_in_the_configuration_removes_the_field() {
    let fm = deploy_manager("kubectl", T0);
    let (live, managed) =
        apply(&fm, &json!({}), web(json!({"app": "web", "old": "1"}), 1, "nginx"), ManagedFields::new());
    let (after, _) = apply(&fm, &live, web(json!({"app": "web", "old": null}), 1, "nginx"), managed);
    assert_eq!(after["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn configurations_with_items_missing_keys_or_managed_fields_are_rejected() {
    let fm = deploy_manager("kubectl", T0);
    let missing = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"image": "nginx"}]}}}
    });
    let err = apply_err(&fm, &json!({}), missing, ManagedFields::new());
    assert!(err.to_string().contains(".spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\""), "{err}");
    let dup = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}
    });
    let err = apply_err(&fm, &json!({}), dup, ManagedFields::new());
    assert!(err.to_string().contains("duplicate entries for key [name=\"a\"]"), "{err}");
    let with_mf = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "managedFields": []}});
    assert_eq!(apply_err(&fm, &json!({}), with_mf, ManagedFields::new()), ApplyError::ManagedFieldsInConfig);
}

#[test]
fn an_appliers_own_update_entry_is_another_manager() {
    let updater = FieldManager { manager: "mgr", ..deploy_manager("x", T0) };
    let obj = web(json!({"app": "web"}), 2, "nginx");
    let managed = updater.update(&json!({}), &obj, ManagedFields::new());
    let err = apply_err(&deploy_manager("mgr", T1), &obj, web(json!({"app": "web"}), 4, "nginx"), managed);
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"mgr\" using apps/v1: .spec.replicas"
    );
}

#[test]
fn unknown_kinds_are_merged_by_deduced_shape() {
    let fm = FieldManager {
        ty: None,
        manager: "m",
        subresource: None,
        api_version: "example.com/v1",
        time: T0,
        ignored: FieldSet::new(),
    };
    let config = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 3, "tags": ["a", "b"], "nested": {"x": 1}}});
    let (live, managed) = apply(&fm, &json!({}), config, ManagedFields::new());
    assert_eq!(
        fields_of(&managed, "m", Operation::Apply),
        json!({"f:spec": {".": {}, "f:nested": {".": {}, "f:x": {}}, "f:size": {}, "f:tags": {}}})
    );
    let config = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 4, "tags": ["c"]}});
    let (after, _) = apply(&fm, &live, config, managed);
    assert_eq!(after["spec"], json!({"size": 4, "tags": ["c"]}));
}

#[test]
fn managed_fields_round_trip_in_kube_order() {
    let (live, managed) = client_side_created();
    let fm = deploy_manager("mgr", T1);
    let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "annotations": {"a": "b"}}});
    let (mut obj, managed) = apply(&fm, &live, config, managed);
    managed.write_to(&mut obj);
    let list = &obj["metadata"]["managedFields"];
    assert_eq!(list[0]["operation"], "Apply");
    assert_eq!(list[1]["operation"], "Update");
    assert_eq!(list[1]["time"], T0);
    let back = ManagedFields::from_object(&obj);
    assert_eq!(back.as_ref().ok(), Some(&managed));
    ManagedFields::new().write_to(&mut obj);
    assert!(obj["metadata"].get("managedFields").is_none());
}

#[test]
fn updates_start_from_the_sent_managed_fields_and_empty_entries_reset_them() {
    let (mut live, managed) = client_side_created();
    managed.write_to(&mut live);
    let mut sent = live.clone();
    sent["metadata"]["managedFields"] = json!([{}]);
    assert!(ManagedFields::for_update(&live, &sent, false).is_empty());
    let mut absent = live.clone();
    if let Some(m) = absent["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    assert_eq!(ManagedFields::for_update(&live, &absent, false), managed);
    sent["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Bogus"}]);
    assert_eq!(ManagedFields::for_update(&live, &sent, false), managed);
    let other = json!([{"manager": "y", "operation": "Update", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:paused": {}}}}]);
    sent["metadata"]["managedFields"] = other.clone();
    assert_eq!(ManagedFields::for_update(&live, &sent, false).entries()[0].manager, "y");
    assert_eq!(ManagedFields::for_update(&live, &sent, true), managed);
}

#[test]
fn invalid_entries_are_rejected_when_decoding() {
    for bad in [
        json!([{"operation": "Apply", "fieldsType": "FieldsV1"}]),
        json!([{"operation": "Apply", "apiVersion": "v1"}]),
        json!([{"operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV2"}]),
        json!([{"operation": "Delete", "apiVersion": "v1", "fieldsType": "FieldsV1"}]),
        json!({}),
    ] {
        assert!(ManagedFields::from_json(&bad).is_err(), "{bad}");
    }
}

#[test]
fn at_most_ten_update_managers_are_kept() {
    let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
    let mut managed = ManagedFields::new();
    let times: Vec<String> = (0..12).map(|i| format!("2025-01-01T00:{i:02}:00Z")).collect();
    for (i, time) in times.iter().enumerate() {
        let manager = format!("m{i:02}");
        let fm = FieldManager {
            ty: Some(ty("", "v1", "ConfigMap")),
            manager: &manager,
            subresource: None,
            api_version: "v1",
            time,
            ignored: FieldSet::new(),
        };
        let mut new = obj.clone();
        new["data"][format!("k{i}")] = json!("v");
        managed = fm.update(&obj, &new, managed);
        obj = new;
    }
    assert_eq!(managed.entries().len(), 10);
    let ancient = managed.find(ANCIENT_CHANGES, Operation::Update, None, "v1");
    let ancient_fields = ancient.map(|e| e.fields.to_fields_v1());
    assert_eq!(ancient_fields, Some(json!({"f:data": {"f:k0": {}, "f:k1": {}, "f:k2": {}}})));
    assert!(managed.find("m03", Operation::Update, None, "v1").is_some());
}

#[test]
fn created_maps_lists_and_items_are_owned_with_a_dot_but_nested_structs_are_not() {
    let fm = FieldManager { manager: "kubectl-create", ..deploy_manager("x", T0) };
    let obj = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "strategy": {},
            "template": {"spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}]}]}}
        }
    });
    let managed = fm.update(&json!({}), &obj, ManagedFields::new());
    assert_eq!(
        fields_of(&managed, "kubectl-create", Operation::Update),
        json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
                ".": {}, "f:env": {".": {}, "k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}},
                "f:image": {}, "f:name": {}
            }}}}}
        })
    );
}

#[test]
fn the_first_apply_to_an_untracked_object_conflicts_with_before_first_apply() {
    let live = web(json!({"app": "web"}), 2, "nginx:1.25");
    let fm = deploy_manager("mgr", T1);
    let config = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}
    });
    let err = apply_err(&fm, &live, config.clone(), ManagedFields::new());
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
    let (_, managed) = match fm.apply(&live, &config, ManagedFields::new(), true) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        managers(&managed),
        [("before-first-apply".to_owned(), Operation::Update), ("mgr".to_owned(), Operation::Apply)]
    );
    assert!(!owns(&managed, "before-first-apply", &["spec", "replicas"]));
}

#[test]
fn dropping_all_metadata_from_the_configuration_keeps_the_identity_fields() {
    let fm = deploy_manager("kubectl", T0);
    let (live, managed) =
        apply(&fm, &json!({}), web(json!({"app": "web"}), 2, "nginx"), ManagedFields::new());
    let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 2}});
    let (after, _) = apply(&fm, &live, config, managed);
    assert_eq!(after["metadata"], json!({"name": "web", "namespace": "default"}));
    assert_eq!(after["apiVersion"], "apps/v1");
}
