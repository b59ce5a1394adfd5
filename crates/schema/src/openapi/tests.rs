//! Shapes of the OpenAPI documents that kubectl and clients rely on.

use serde_json::{json, Value};

use super::*;

fn resources() -> Vec<ServedResource> {
    vec![
        ServedResource::new("", "v1", "Pod", "pods", true).with_subresources(&[
            "status",
            "log",
            "exec",
            "binding",
            "eviction",
            "ephemeralcontainers",
        ]),
        ServedResource::new("", "v1", "Namespace", "namespaces", false).with_subresources(&["status"]),
        ServedResource::new("", "v1", "ConfigMap", "configmaps", true),
        ServedResource::new("apps", "v1", "Deployment", "deployments", true)
            .with_subresources(&["status", "scale"]),
        ServedResource::new("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false),
        ServedResource::new(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
        )
        .with_verbs(&["create"]),
    ]
}

fn builtin() -> &'static Schema {
    Schema::builtin()
}

/// Every `$ref` in `v` points at a key of `defs`.
fn assert_refs_resolve(v: &Value, prefix: &str, defs: &serde_json::Map<String, Value>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                let name = r.strip_prefix(prefix).unwrap_or_else(|| panic!("bad ref {r}"));
                assert!(defs.contains_key(name), "dangling ref {r}");
            }
            m.values().for_each(|c| assert_refs_resolve(c, prefix, defs));
        }
        Value::Array(l) => l.iter().for_each(|c| assert_refs_resolve(c, prefix, defs)),
        _ => {}
    }
}

/// Keywords of JSON Schema (or OpenAPI v3) that must not appear in a swagger 2.0 schema.
fn assert_swagger_schema(v: &Value, at: &str) {
    if let Value::Object(m) = v {
        for bad in ["oneOf", "anyOf", "nullable", "$defs", "const"] {
            assert!(!m.contains_key(bad), "{bad} in {at}");
        }
        if let Some(t) = m.get("type") {
            assert!(t.is_string(), "non-string type at {at}: {t}");
        }
        if let Some(Value::Object(props)) = m.get("properties") {
            for (k, p) in props {
                assert_swagger_schema(p, &format!("{at}.{k}"));
            }
        }
        for k in ["items", "additionalProperties"] {
            if let Some(c) = m.get(k) {
                assert_swagger_schema(c, &format!("{at}/{k}"));
            }
        }
    }
}

#[test]
fn v2_document_has_swagger_header_and_kubernetes_info() {
    let doc = openapi_v2(builtin(), &resources());
    assert_eq!(doc["swagger"], "2.0");
    assert_eq!(doc["info"], json!({"title": "Kubernetes", "version": "v1.33.0"}));
    assert!(doc["securityDefinitions"]["BearerToken"].is_object());
}

#[test]
fn v2_deployment_definition_carries_its_group_version_kind() {
    let doc = openapi_v2(builtin(), &resources());
    let d = &doc["definitions"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(d["type"], "object");
    assert_eq!(
        d["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert_eq!(d["properties"]["apiVersion"]["type"], "string");
    assert!(d["properties"]["apiVersion"].get("enum").is_none());
    assert!(d["properties"]["kind"].get("enum").is_none());
    assert_eq!(d["properties"]["spec"]["$ref"], "#/definitions/io.k8s.api.apps.v1.DeploymentSpec");
    assert!(d["description"].as_str().is_some_and(|s| s.starts_with("Deployment enables")));
}

#[test]
fn v2_pod_spec_containers_have_patch_metadata() {
    let doc = openapi_v2(builtin(), &resources());
    let c = &doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(c["type"], "array");
    assert_eq!(c["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(c["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(c["x-kubernetes-list-type"], "map");
    assert_eq!(c["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(c["items"], json!({"$ref": "#/definitions/io.k8s.api.core.v1.Container"}));
    let strategy = &doc["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    assert_eq!(strategy["$ref"], "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy");
}

#[test]
fn v2_int_or_string_and_quantity_are_strings() {
    let doc = openapi_v2(builtin(), &resources());
    let ios = &doc["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(ios["type"], "string");
    assert_eq!(ios["format"], "int-or-string");
    assert!(ios["description"].as_str().is_some_and(|s| s.starts_with("IntOrString")));
    let q = &doc["definitions"]["io.k8s.apimachinery.pkg.api.resource.Quantity"];
    assert_eq!(q["type"], "string");
    assert!(q.get("format").is_none());
    assert!(q["description"].as_str().is_some_and(|s| s.starts_with("Quantity")));
    let time = &doc["definitions"]["io.k8s.apimachinery.pkg.apis.meta.v1.Time"];
    assert_eq!(
        time,
        &json!({
            "description": time["description"],
            "format": "date-time",
            "type": "string"
        })
    );
}

#[test]
fn v2_definitions_are_swagger_schemas_whose_refs_resolve() {
    let doc = openapi_v2(builtin(), &resources());
    let Some(defs) = doc["definitions"].as_object() else {
        panic!("no definitions");
    };
    assert!(defs.len() > 100, "{}", defs.len());
    for (name, d) in defs {
        assert_swagger_schema(d, name);
    }
    assert_refs_resolve(&doc, "#/definitions/", defs);
    // Only what the served resources reach.
    assert!(!defs.contains_key("io.k8s.api.batch.v1.Job"));
    assert!(defs.contains_key("io.k8s.api.autoscaling.v1.Scale"));
    assert!(defs.contains_key("io.k8s.api.policy.v1.Eviction"));
}

#[test]
fn v2_patch_operation_advertises_field_validation_and_patch_types() {
    let doc = openapi_v2(builtin(), &resources());
    let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(op["x-kubernetes-action"], "patch");
    assert_eq!(
        op["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    assert_eq!(op["operationId"], "patchAppsV1NamespacedDeployment");
    assert_eq!(op["tags"], json!(["apps_v1"]));
    let params: Vec<&str> =
        op["parameters"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
    assert!(params.contains(&"fieldValidation"), "{params:?}");
    assert!(params.contains(&"body"), "{params:?}");
    let consumes = op["consumes"].as_array().cloned().unwrap_or_default();
    assert!(consumes.contains(&json!("application/strategic-merge-patch+json")));
    assert!(consumes.contains(&json!("application/apply-patch+yaml")));
    assert_eq!(op["responses"]["200"]["schema"]["$ref"], "#/definitions/io.k8s.api.apps.v1.Deployment");
}

#[test]
fn v2_paths_cover_collections_items_and_subresources() {
    let doc = openapi_v2(builtin(), &resources());
    let paths = &doc["paths"];
    assert_eq!(paths["/api/v1/pods"]["get"]["operationId"], "listCoreV1PodForAllNamespaces");
    assert_eq!(paths["/api/v1/namespaces/{namespace}/pods"]["post"]["x-kubernetes-action"], "post");
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/pods"]["delete"]["x-kubernetes-action"],
        "deletecollection"
    );
    assert_eq!(paths["/api/v1/namespaces/{name}"]["get"]["operationId"], "readCoreV1Namespace");
    assert_eq!(
        paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
            ["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"]["operationId"],
        "createCoreV1NamespacedPodEviction"
    );
    assert_eq!(
        paths["/apis/rbac.authorization.k8s.io/v1/clusterroles"]["get"]["operationId"],
        "listRbacAuthorizationV1ClusterRole"
    );
    assert_eq!(
        paths["/apis/rbac.authorization.k8s.io/v1/clusterroles"]["get"]["tags"],
        json!(["rbacAuthorization_v1"])
    );
    let ssar = &paths["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"];
    assert!(ssar["post"].is_object());
    assert!(ssar.get("get").is_none());
    assert_eq!(paths["/api/v1/"]["get"]["operationId"], "getCoreV1APIResources");
}

#[test]
fn v2_bytes_equal_the_serialized_value() {
    let value = openapi_v2(builtin(), &resources());
    let bytes = openapi_v2_bytes(builtin(), &resources());
    assert_eq!(serde_json::to_vec(&value).unwrap_or_default(), bytes);
}

#[test]
fn v3_document_holds_only_its_group_version_and_what_it_reaches() {
    let Some(doc) = openapi_v3(builtin(), "apps", "v1", &resources()) else {
        panic!("no apps/v1 document");
    };
    assert_eq!(doc["openapi"], "3.0.0");
    let Some(schemas) = doc["components"]["schemas"].as_object() else {
        panic!("no schemas");
    };
    assert!(schemas.contains_key("io.k8s.api.apps.v1.Deployment"));
    assert!(schemas.contains_key("io.k8s.api.apps.v1.DeploymentList"));
    assert!(schemas.contains_key("io.k8s.api.core.v1.PodSpec"));
    assert!(schemas.contains_key("io.k8s.api.autoscaling.v1.Scale"));
    assert!(!schemas.contains_key("io.k8s.api.core.v1.Namespace"));
    assert!(doc["paths"].get("/api/v1/pods").is_none());
    assert_refs_resolve(&doc, "#/components/schemas/", schemas);
}

#[test]
fn v3_wraps_refs_with_siblings_in_all_of() {
    let Some(doc) = openapi_v3(builtin(), "apps", "v1", &resources()) else {
        panic!("no apps/v1 document");
    };
    let schemas = &doc["components"]["schemas"];
    let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
    assert_eq!(
        strategy["allOf"],
        json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}])
    );
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    assert!(strategy.get("$ref").is_none());
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["items"], json!({"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}));
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
}

#[test]
fn v3_int_or_string_and_quantity_use_one_of() {
    let Some(doc) = openapi_v3(builtin(), "apps", "v1", &resources()) else {
        panic!("no apps/v1 document");
    };
    let schemas = &doc["components"]["schemas"];
    let ios = &schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(ios["format"], "int-or-string");
    assert_eq!(ios["oneOf"], json!([{"type": "integer"}, {"type": "string"}]));
    assert!(ios.get("type").is_none());
    let q = &schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"];
    assert_eq!(q["oneOf"], json!([{"type": "string"}, {"type": "number"}]));
}

#[test]
fn v3_patch_operation_lists_strategic_merge_patch_and_field_validation() {
    let Some(doc) = openapi_v3(builtin(), "apps", "v1", &resources()) else {
        panic!("no apps/v1 document");
    };
    let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert!(op["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object());
    assert_eq!(
        op["requestBody"]["content"]["application/merge-patch+json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    );
    assert!(op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["name"] == "fieldValidation" && p["schema"]["type"] == "string"));
    assert_eq!(
        op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.Deployment"
    );
    // kubectl explain finds the kind on the GET of the cluster-wide collection.
    assert_eq!(
        doc["paths"]["/apis/apps/v1/deployments"]["get"]["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
}

#[test]
fn v3_patch_of_a_custom_resource_offers_no_strategic_merge_patch() {
    let mut res = ServedResource::new("", "v1", "ConfigMap", "configmaps", true);
    res.strategic_merge_patch = false;
    let Some(doc) = openapi_v3(builtin(), "", "v1", &[res]) else {
        panic!("no core document");
    };
    let content =
        &doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]["requestBody"]["content"];
    assert!(content.get("application/strategic-merge-patch+json").is_none());
    assert!(content["application/merge-patch+json"].is_object());
}

#[test]
fn v3_of_an_unserved_group_version_is_none() {
    assert!(openapi_v3(builtin(), "batch", "v1", &resources()).is_none());
    assert!(openapi_v3_bytes(builtin(), "batch", "v1", &resources()).is_none());
}

#[test]
fn v3_index_links_every_group_version_with_the_hash_of_its_bytes() {
    let res = resources();
    let index = openapi_v3_index(builtin(), &res);
    let Some(paths) = index["paths"].as_object() else {
        panic!("no paths");
    };
    let keys: Vec<&str> = paths.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["api/v1", "apis/apps/v1", "apis/authorization.k8s.io/v1", "apis/rbac.authorization.k8s.io/v1"]
    );
    let Some(bytes) = openapi_v3_bytes(builtin(), "apps", "v1", &res) else {
        panic!("no bytes");
    };
    let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap_or_default();
    assert_eq!(url, format!("/openapi/v3/apis/apps/v1?hash={}", content_hash(&bytes)));
    assert_eq!(content_hash(&bytes).len(), 32);
    // Deterministic across calls.
    assert_eq!(openapi_v3_index(builtin(), &res), index);
}

#[test]
fn v3_bytes_equal_the_serialized_value() {
    let res = resources();
    let value = openapi_v3(builtin(), "", "v1", &res);
    let bytes = openapi_v3_bytes(builtin(), "", "v1", &res);
    assert_eq!(value.map(|v| serde_json::to_vec(&v).unwrap_or_default()), bytes);
}

#[test]
fn the_hash_changes_when_the_served_resources_change() {
    let res = resources();
    let before = openapi_v3_index(builtin(), &res);
    let fewer: Vec<ServedResource> = res.into_iter().filter(|r| r.kind != "ConfigMap").collect();
    let after = openapi_v3_index(builtin(), &fewer);
    assert_ne!(before["paths"]["api/v1"], after["paths"]["api/v1"]);
    assert_eq!(before["paths"]["apis/apps/v1"], after["paths"]["apis/apps/v1"]);
}

#[test]
fn resources_without_a_schema_are_left_out() {
    let res = [ServedResource::new("example.com", "v1", "Widget", "widgets", true)];
    let doc = openapi_v2(builtin(), &res);
    assert_eq!(doc["paths"], json!({}));
    assert_eq!(doc["definitions"], json!({}));
}

#[test]
fn custom_resource_schemas_are_published_with_their_validation() {
    let mut schema = builtin().clone();
    let defs = json!({"com.example.v1.Widget": {
        "type": "object",
        "x-kubernetes-group-version-kind": [{"group": "example.com", "kind": "Widget", "version": "v1"}],
        "properties": {
            "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer", "minimum": 1, "nullable": true},
                "port": {"x-kubernetes-int-or-string": true,
                         "anyOf": [{"type": "integer"}, {"type": "string"}]}
            }}
        }
    }});
    if let Err(e) = schema.add_definitions(&defs.as_object().cloned().unwrap_or_default()) {
        panic!("{e}");
    }
    let mut res = ServedResource::new("example.com", "v1", "Widget", "widgets", true);
    res.strategic_merge_patch = false;
    let Some(v3) = openapi_v3(&schema, "example.com", "v1", std::slice::from_ref(&res)) else {
        panic!("no document");
    };
    let spec = &v3["components"]["schemas"]["com.example.v1.Widget"]["properties"]["spec"];
    assert_eq!(spec["properties"]["size"], json!({"type": "integer", "minimum": 1, "nullable": true}));
    assert_eq!(
        spec["properties"]["port"],
        json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]})
    );
    assert!(v3["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
    let v2 = openapi_v2(&schema, &[res]);
    let spec2 = &v2["definitions"]["com.example.v1.Widget"]["properties"]["spec"];
    assert_eq!(spec2["properties"]["size"], json!({"type": "integer", "minimum": 1}));
    assert_eq!(spec2["properties"]["port"], json!({"type": "string", "format": "int-or-string"}));
}
