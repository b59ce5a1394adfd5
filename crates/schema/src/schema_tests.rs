//! The built-in schema and walking it.

use serde_json::json;

use super::*;

fn builtin() -> &'static Schema {
    Schema::builtin()
}

fn kind(group: &str, version: &str, kind: &str) -> TypeRef<'static> {
    match builtin().for_kind(group, version, kind) {
        Some(t) => t,
        None => panic!("no schema for {group}/{version}/{kind}"),
    }
}

fn at<'a>(ty: TypeRef<'a>, path: &[&str]) -> TypeRef<'a> {
    let mut cur = ty;
    for p in path {
        cur = match *p {
            "[]" => cur.items(),
            "{}" => cur.additional_properties(),
            name => cur.property(name),
        }
        .unwrap_or_else(|| panic!("no {p} in {path:?}"));
    }
    cur
}

#[test]
fn builtin_schema_holds_all_707_definitions() {
    assert_eq!(builtin().len(), 707);
    assert!(builtin().definition("io.k8s.api.core.v1.Pod").is_some());
    assert!(builtin().definition("io.k8s.api.core.v1.Nope").is_none());
}

#[test]
fn kinds_are_found_by_group_version_kind_with_core_as_empty_group() {
    assert_eq!(kind("", "v1", "Pod").definition_name(), Some("io.k8s.api.core.v1.Pod"));
    assert_eq!(kind("apps", "v1", "Deployment").definition_name(), Some("io.k8s.api.apps.v1.Deployment"));
    assert_eq!(
        builtin().definition_name_for_kind("batch", "v1", "CronJob"),
        Some("io.k8s.api.batch.v1.CronJob")
    );
    assert!(builtin().for_kind("apps", "v1", "Pod").is_none());
}

#[test]
fn walking_reaches_container_fields_through_references() {
    let pod = kind("", "v1", "Pod");
    let containers = at(pod, &["spec", "containers"]);
    assert!(containers.is_array());
    assert_eq!(containers.patch_merge_key(), Some("name"));
    assert!(containers.patch_strategy().is_merge());
    assert_eq!(containers.list_type(), Some(ListType::Map));
    assert_eq!(containers.list_map_keys().collect::<Vec<_>>(), ["name"]);
    let image = at(containers, &["[]", "image"]);
    assert_eq!(image.kind(), Kind::Scalar(ScalarType::String));
    assert!(image.is_primitive());
    assert!(image.description().is_some_and(|d| d.contains("Container image name")));
    let port = at(containers, &["[]", "ports", "[]", "containerPort"]);
    assert_eq!(port.format(), Some("int32"));
}

#[test]
fn field_descriptions_win_over_definition_descriptions() {
    let spec = at(kind("", "v1", "Pod"), &["spec"]);
    assert!(spec
        .description()
        .is_some_and(|d| d.starts_with("Specification of the desired behavior of the pod")));
    assert!(builtin()
        .definition("io.k8s.api.core.v1.PodSpec")
        .and_then(|d| d.description())
        .is_some_and(|d| d.starts_with("PodSpec is a description of a pod")));
}

#[test]
fn maps_and_map_types_are_exposed() {
    let labels = at(kind("", "v1", "Pod"), &["metadata", "labels"]);
    assert!(labels.is_map());
    assert_eq!(labels.child("anything").map(|t| t.kind()), Some(Kind::Scalar(ScalarType::String)));
    let selector = at(kind("apps", "v1", "Deployment"), &["spec", "selector"]);
    assert_eq!(selector.map_type(), Some(MapType::Atomic));
    let node_selector = at(kind("", "v1", "Pod"), &["spec", "nodeSelector"]);
    assert_eq!(node_selector.map_type(), Some(MapType::Atomic));
}

#[test]
fn patch_strategies_are_split_into_parts() {
    let volumes = at(kind("", "v1", "Pod"), &["spec", "volumes"]);
    let s = volumes.patch_strategy();
    assert_eq!(s.as_str(), Some("merge,retainKeys"));
    assert!(s.is_merge() && s.retains_keys() && !s.is_replace());
    let strategy = at(kind("apps", "v1", "Deployment"), &["spec", "strategy"]);
    assert!(strategy.patch_strategy().retains_keys());
    assert!(!strategy.patch_strategy().is_merge());
    let finalizers = at(kind("", "v1", "Pod"), &["metadata", "finalizers"]);
    assert!(finalizers.patch_strategy().is_merge());
    assert_eq!(finalizers.patch_merge_key(), None);
    assert_eq!(finalizers.list_type(), Some(ListType::Set));
    let tolerations = at(kind("", "v1", "Pod"), &["spec", "tolerations"]);
    assert_eq!(tolerations.patch_strategy().as_str(), None);
    assert_eq!(tolerations.list_type(), Some(ListType::Atomic));
}

#[test]
fn special_types_have_their_own_kinds() {
    let max_surge = at(kind("apps", "v1", "Deployment"), &["spec", "strategy", "rollingUpdate", "maxSurge"]);
    assert!(max_surge.is_int_or_string());
    assert_eq!(max_surge.format(), Some("int-or-string"));
    let cpu = at(kind("", "v1", "Pod"), &["spec", "containers", "[]", "resources", "limits", "{}"]);
    assert_eq!(cpu.kind(), Kind::StringOrNumber);
    let data = at(kind("apps", "v1", "ControllerRevision"), &["data"]);
    assert_eq!(data.kind(), Kind::FreeObject);
    assert!(data.preserves_unknown_fields());
    let json_default = at(
        kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        &["spec", "versions", "[]", "schema", "openAPIV3Schema", "default"],
    );
    assert_eq!(json_default.kind(), Kind::Any);
    let empty_struct = at(
        kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        &["spec", "versions", "[]", "subresources", "status"],
    );
    assert_eq!(empty_struct.kind(), Kind::Object);
    assert!(!empty_struct.preserves_unknown_fields());
}

#[test]
fn required_fields_and_group_version_kinds_are_listed() {
    let port = at(kind("", "v1", "Pod"), &["spec", "containers", "[]", "ports", "[]"]);
    assert_eq!(port.required().collect::<Vec<_>>(), ["containerPort"]);
    let gvks = kind("apps", "v1", "Deployment").group_version_kinds();
    assert_eq!(gvks.len(), 1);
    assert_eq!((&*gvks[0].group, &*gvks[0].version, &*gvks[0].kind), ("apps", "v1", "Deployment"));
}

#[test]
fn custom_resource_definitions_can_be_added_replaced_and_removed() {
    let mut schema = builtin().clone();
    let v1 = json!({"com.example.v1.Widget": {
        "type": "object",
        "x-kubernetes-group-version-kind": [{"group": "example.com", "version": "v1", "kind": "Widget"}],
        "properties": {
            "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "spec": {"$ref": "#/components/schemas/com.example.v1.WidgetSpec"}
        }
    }, "com.example.v1.WidgetSpec": {
        "type": "object",
        "properties": {"size": {"type": "integer", "nullable": true}}
    }});
    if let Err(e) = schema.add_definitions(&v1.as_object().cloned().unwrap_or_default()) {
        panic!("{e}");
    }
    let Some(widget) = schema.for_kind("example.com", "v1", "Widget") else {
        panic!("widget not found");
    };
    assert!(at(widget, &["metadata", "labels"]).is_map());
    assert_eq!(at(widget, &["spec", "size"]).kind(), Kind::Scalar(ScalarType::Integer));
    // The builtin schema is untouched.
    assert!(builtin().for_kind("example.com", "v1", "Widget").is_none());

    let v2 = json!({"com.example.v1.WidgetSpec": {
        "type": "object", "properties": {"colour": {"type": "string"}}
    }});
    if let Err(e) = schema.add_definitions(&v2.as_object().cloned().unwrap_or_default()) {
        panic!("{e}");
    }
    let Some(widget) = schema.for_kind("example.com", "v1", "Widget") else {
        panic!("widget not found");
    };
    assert!(at(widget, &["spec"]).property("size").is_none());
    assert!(at(widget, &["spec"]).property("colour").is_some());

    assert!(schema.remove_definition("com.example.v1.WidgetSpec"));
    let Some(widget) = schema.for_kind("example.com", "v1", "Widget") else {
        panic!("widget not found");
    };
    assert_eq!(at(widget, &["spec"]).kind(), Kind::Any);
    assert!(schema.remove_definition("com.example.v1.Widget"));
    assert!(schema.for_kind("example.com", "v1", "Widget").is_none());
}

#[test]
fn a_reference_to_an_unknown_definition_is_an_error_and_adds_nothing() {
    let mut schema = Schema::new();
    let defs = json!({"a.B": {"type": "object", "properties": {"c": {"$ref": "#/definitions/nope"}}}});
    let err = schema.add_definitions(&defs.as_object().cloned().unwrap_or_default());
    assert_eq!(err, Err(crate::Error::UnresolvedRef { from: "a.B".into(), to: "nope".into() }));
    assert!(schema.is_empty());
}

#[test]
fn parsed_builtin_schema_stays_small() {
    let fresh = match crate::data::load() {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let bytes = fresh.approximate_heap_bytes();
    println!("parsed builtin schema: ~{} KiB of heap", bytes / 1024);
    assert!(bytes < 4 << 20, "{bytes}");
}
