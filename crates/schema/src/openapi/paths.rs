//! The `paths` of the OpenAPI documents: minimal but valid operations for each served resource,
//! carrying the extensions kubectl reads (`x-kubernetes-action`,
//! `x-kubernetes-group-version-kind`, the `fieldValidation` parameter of PATCH, the patch
//! content types).

use serde_json::{json, Map, Value};

use super::convert::Flavor;
use super::ServedResource;

pub(crate) const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

const JSON_YAML_PROTOBUF: &[&str] =
    &["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"];
const WATCH_STREAMS: &[&str] =
    &["application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch"];

/// A query or path parameter.
struct Param {
    name: &'static str,
    location: &'static str,
    ty: &'static str,
    description: &'static str,
}

const fn query(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param { name, location: "query", ty, description }
}

const PRETTY: Param = query("pretty", "string", "If 'true', then the output is pretty printed.");
const NAME: Param = Param { name: "name", location: "path", ty: "string", description: "name of the object" };
const NAMESPACE: Param = Param {
    name: "namespace",
    location: "path",
    ty: "string",
    description: "object name and auth scope, such as for teams and projects",
};
const LIST_PARAMS: &[Param] = &[
    query("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
    query("continue", "string", "The continue option should be set when retrieving more results from the server."),
    query("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields."),
    query("labelSelector", "string", "A selector to restrict the list of returned objects by their labels."),
    query("limit", "integer", "limit is a maximum number of responses to return for a list call."),
    query("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
    query("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
    query("sendInitialEvents", "boolean", "sendInitialEvents=true may be set together with watch=true to begin the watch stream with the current state."),
    query("timeoutSeconds", "integer", "Timeout for the list/watch call."),
    query("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
];
const DRY_RUN: Param =
    query("dryRun", "string", "When present, indicates that modifications should not be persisted.");
const FIELD_MANAGER: Param = query(
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes.",
);
const FIELD_VALIDATION: Param = query("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn (the default) and Strict.");
const FORCE: Param = query(
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests. It must be unset for non-apply patch requests.",
);
const DELETE_PARAMS: &[Param] = &[
    DRY_RUN,
    query("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
    query("ignoreStoreReadErrorWithClusterBreakingPotential", "boolean", "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error."),
    query("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy."),
    query("propagationPolicy", "string", "Whether and how garbage collection will be performed: Orphan, Background or Foreground."),
];

/// Names and tags derived from a group/version, as upstream spells them.
pub(crate) struct GroupVersion<'a> {
    pub(crate) group: &'a str,
    pub(crate) version: &'a str,
}

impl GroupVersion<'_> {
    /// `/api/v1` or `/apis/<group>/<version>`.
    pub(crate) fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    fn group_parts(&self) -> impl Iterator<Item = &str> {
        let g = self.group.strip_suffix(".k8s.io").unwrap_or(self.group);
        g.split('.').filter(|p| !p.is_empty())
    }

    /// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`: the middle of an operation id.
    fn camel(&self) -> String {
        let group: String = if self.group.is_empty() {
            "Core".to_owned()
        } else {
            self.group_parts().map(capitalize).collect()
        };
        format!("{group}{}", capitalize(self.version))
    }

    /// `core_v1`, `apps_v1`, `rbacAuthorization_v1`.
    pub(crate) fn tag(&self) -> String {
        let group: String = if self.group.is_empty() {
            "core".to_owned()
        } else {
            self.group_parts()
                .enumerate()
                .map(|(i, p)| if i == 0 { p.to_owned() } else { capitalize(p) })
                .collect()
        };
        format!("{group}_{}", self.version)
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// One operation to write.
struct Op<'a> {
    verb: &'static str,
    id: String,
    description: String,
    action: &'static str,
    gvk: (&'a str, &'a str, &'a str),
    params: Vec<&'a Param>,
    body: Option<Body>,
    responses: Vec<(&'static str, &'static str, Option<Response>)>,
    produces: Vec<&'static str>,
}

enum Body {
    /// One schema accepted as `*/*`; `required` says whether a body must be sent.
    Any { schema: String, required: bool },
    /// A patch body in the listed content types.
    Patch { content_types: Vec<&'static str> },
}

#[derive(Clone)]
enum Response {
    Definition(String),
    Text,
}

/// Writes the operations of `resource` into `paths`.
pub(crate) fn resource_paths(
    res: &ServedResource,
    kind_def: &str,
    list_def: Option<&str>,
    flavor: Flavor,
    paths: &mut Map<String, Value>,
) {
    let gv = GroupVersion { group: &res.group, version: &res.version };
    let tag = gv.tag();
    let camel = gv.camel();
    let prefix = gv.prefix();
    let gvk = (res.group.as_str(), res.version.as_str(), res.kind.as_str());
    let kind = res.kind.as_str();
    let scope = if res.namespaced { "Namespaced" } else { "" };
    let (collection, item) = if res.namespaced {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", res.plural),
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", res.plural),
        )
    } else {
        (format!("{prefix}/{}", res.plural), format!("{prefix}/{}/{{name}}", res.plural))
    };
    let has = |verb: &str| res.verbs.iter().any(|v| v == verb);
    let list_response = list_def.map(|d| Response::Definition(d.to_owned()));
    let obj = || Some(Response::Definition(kind_def.to_owned()));
    let status = || Some(Response::Definition(format!("{META}.Status")));
    let writes = |extra: Option<&'static Param>| {
        let mut p = vec![&DRY_RUN, &FIELD_MANAGER, &FIELD_VALIDATION];
        p.extend(extra);
        p
    };

    // kubectl explain looks the kind up on the GET of the cluster-wide collection.
    if res.namespaced && has("list") {
        let op = Op {
            verb: "get",
            id: format!("list{camel}{kind}ForAllNamespaces"),
            description: format!("list or watch objects of kind {kind}"),
            action: "list",
            gvk,
            params: LIST_PARAMS.iter().collect(),
            body: None,
            responses: vec![("200", "OK", list_response.clone())],
            produces: [JSON_YAML_PROTOBUF, WATCH_STREAMS].concat(),
        };
        add_ops(paths, &format!("{prefix}/{}", res.plural), &[], vec![op], &tag, flavor);
    }

    let mut ops = Vec::new();
    if has("list") {
        ops.push(Op {
            verb: "get",
            id: format!("list{camel}{scope}{kind}"),
            description: format!("list or watch objects of kind {kind}"),
            action: "list",
            gvk,
            params: LIST_PARAMS.iter().collect(),
            body: None,
            responses: vec![("200", "OK", list_response.clone())],
            produces: [JSON_YAML_PROTOBUF, WATCH_STREAMS].concat(),
        });
    }
    if has("create") {
        ops.push(Op {
            verb: "post",
            id: format!("create{camel}{scope}{kind}"),
            description: format!("create a {kind}"),
            action: "post",
            gvk,
            params: writes(None),
            body: Some(Body::Any { schema: kind_def.to_owned(), required: true }),
            responses: vec![("200", "OK", obj()), ("201", "Created", obj()), ("202", "Accepted", obj())],
            produces: JSON_YAML_PROTOBUF.to_vec(),
        });
    }
    if has("deletecollection") {
        let mut params: Vec<&Param> = DELETE_PARAMS.iter().collect();
        params.extend(LIST_PARAMS.iter().filter(|p| p.name != "watch" && p.name != "allowWatchBookmarks"));
        ops.push(Op {
            verb: "delete",
            id: format!("delete{camel}Collection{scope}{kind}"),
            description: format!("delete collection of {kind}"),
            action: "deletecollection",
            gvk,
            params,
            body: Some(Body::Any { schema: format!("{META}.DeleteOptions"), required: false }),
            responses: vec![("200", "OK", status())],
            produces: JSON_YAML_PROTOBUF.to_vec(),
        });
    }
    let ns_params: &[&Param] = if res.namespaced { &[&NAMESPACE, &PRETTY] } else { &[&PRETTY] };
    add_ops(paths, &collection, ns_params, ops, &tag, flavor);

    let mut ops = item_ops(res, kind_def, &camel, scope, gvk, "", &writes);
    if has("delete") {
        ops.push(Op {
            verb: "delete",
            id: format!("delete{camel}{scope}{kind}"),
            description: format!("delete a {kind}"),
            action: "delete",
            gvk,
            params: DELETE_PARAMS.iter().collect(),
            body: Some(Body::Any { schema: format!("{META}.DeleteOptions"), required: false }),
            responses: vec![("200", "OK", status()), ("202", "Accepted", status())],
            produces: JSON_YAML_PROTOBUF.to_vec(),
        });
    }
    let item_params: &[&Param] =
        if res.namespaced { &[&NAME, &NAMESPACE, &PRETTY] } else { &[&NAME, &PRETTY] };
    add_ops(paths, &item, item_params, ops, &tag, flavor);

    for sub in &res.subresources {
        let ops = subresource_ops(res, sub, kind_def, &camel, scope, gvk, &writes);
        if !ops.is_empty() {
            add_ops(paths, &format!("{item}/{sub}"), item_params, ops, &tag, flavor);
        }
    }
}

/// GET/PUT/PATCH of an object or of a subresource that reads and writes the same kind.
#[allow(clippy::too_many_arguments)]
fn item_ops<'a>(
    res: &'a ServedResource,
    def: &str,
    camel: &str,
    scope: &str,
    gvk: (&'a str, &'a str, &'a str),
    suffix: &str,
    writes: &dyn Fn(Option<&'static Param>) -> Vec<&'a Param>,
) -> Vec<Op<'a>> {
    let parent = res.kind.as_str();
    let has = |verb: &str| res.verbs.iter().any(|v| v == verb);
    let what = if suffix.is_empty() {
        format!("the specified {parent}")
    } else {
        format!("{} of the specified {parent}", suffix.to_lowercase())
    };
    let obj = || Some(Response::Definition(def.to_owned()));
    let mut ops = Vec::new();
    if has("get") {
        ops.push(Op {
            verb: "get",
            id: format!("read{camel}{scope}{parent}{suffix}"),
            description: format!("read {what}"),
            action: "get",
            gvk,
            params: Vec::new(),
            body: None,
            responses: vec![("200", "OK", obj())],
            produces: JSON_YAML_PROTOBUF.to_vec(),
        });
    }
    if has("update") {
        ops.push(Op {
            verb: "put",
            id: format!("replace{camel}{scope}{parent}{suffix}"),
            description: format!("replace {what}"),
            action: "put",
            gvk,
            params: writes(None),
            body: Some(Body::Any { schema: def.to_owned(), required: true }),
            responses: vec![("200", "OK", obj()), ("201", "Created", obj())],
            produces: JSON_YAML_PROTOBUF.to_vec(),
        });
    }
    if has("patch") {
        let mut content_types = vec![
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json",
        ];
        if res.strategic_merge_patch {
            content_types.push("application/strategic-merge-patch+json");
        }
        ops.push(Op {
            verb: "patch",
            id: format!("patch{camel}{scope}{parent}{suffix}"),
            description: format!("partially update {what}"),
            action: "patch",
            gvk,
            params: writes(Some(&FORCE)),
            body: Some(Body::Patch { content_types }),
            responses: vec![("200", "OK", obj()), ("201", "Created", obj())],
            produces: JSON_YAML_PROTOBUF.to_vec(),
        });
    }
    ops
}

/// Operations of a subresource; unknown subresources get none.
#[allow(clippy::too_many_arguments)]
fn subresource_ops<'a>(
    res: &'a ServedResource,
    sub: &str,
    kind_def: &str,
    camel: &str,
    scope: &str,
    gvk: (&'a str, &'a str, &'a str),
    writes: &dyn Fn(Option<&'static Param>) -> Vec<&'a Param>,
) -> Vec<Op<'a>> {
    let parent = res.kind.as_str();
    let suffix = capitalize(sub);
    let create = |kind: &'a str, group: &'a str, version: &'a str, def: String| {
        vec![Op {
            verb: "post",
            id: format!("create{camel}{scope}{parent}{suffix}"),
            description: format!("create {sub} of a {parent}"),
            action: "post",
            gvk: (group, version, kind),
            params: writes(None),
            body: Some(Body::Any { schema: def.clone(), required: true }),
            responses: vec![
                ("200", "OK", Some(Response::Definition(def.clone()))),
                ("201", "Created", Some(Response::Definition(def.clone()))),
                ("202", "Accepted", Some(Response::Definition(def))),
            ],
            produces: JSON_YAML_PROTOBUF.to_vec(),
        }]
    };
    match sub {
        "status" | "ephemeralcontainers" | "resize" | "approval" => {
            item_ops(res, kind_def, camel, scope, gvk, &suffix, writes)
        }
        "scale" => item_ops(
            res,
            "io.k8s.api.autoscaling.v1.Scale",
            camel,
            scope,
            ("autoscaling", "v1", "Scale"),
            &suffix,
            writes,
        ),
        "binding" => create("Binding", "", "v1", "io.k8s.api.core.v1.Binding".into()),
        "eviction" => create("Eviction", "policy", "v1", "io.k8s.api.policy.v1.Eviction".into()),
        "token" => create(
            "TokenRequest",
            "authentication.k8s.io",
            "v1",
            "io.k8s.api.authentication.v1.TokenRequest".into(),
        ),
        "log" => vec![Op {
            verb: "get",
            id: format!("read{camel}{scope}{parent}Log"),
            description: format!("read log of the specified {parent}"),
            action: "get",
            gvk,
            params: vec![],
            body: None,
            responses: vec![("200", "OK", Some(Response::Text))],
            produces: vec!["text/plain", "application/json", "application/yaml"],
        }],
        "exec" | "attach" | "portforward" | "proxy" => ["get", "post"]
            .into_iter()
            .map(|verb| Op {
                verb,
                id: format!("connect{camel}{}{scope}{parent}{suffix}", capitalize(verb)),
                description: format!("connect {} requests to {sub} of {parent}", verb.to_uppercase()),
                action: "connect",
                gvk,
                params: vec![],
                body: None,
                responses: vec![("200", "OK", Some(Response::Text))],
                produces: vec!["*/*"],
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Adds operations under `path` (merging with operations already there).
fn add_ops(
    paths: &mut Map<String, Value>,
    path: &str,
    path_params: &[&Param],
    ops: Vec<Op<'_>>,
    tag: &str,
    flavor: Flavor,
) {
    if ops.is_empty() {
        return;
    }
    let entry = paths.entry(path.to_owned()).or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(item) = entry else { return };
    if !path_params.is_empty() {
        let params: Vec<Value> = path_params.iter().map(|p| param(p, flavor)).collect();
        item.insert("parameters".into(), Value::Array(params));
    }
    for op in ops {
        item.insert(op.verb.into(), operation(&op, tag, flavor));
    }
}

fn param(p: &Param, flavor: Flavor) -> Value {
    let mut v = json!({
        "description": p.description,
        "in": p.location,
        "name": p.name,
    });
    if p.location == "path" {
        v["required"] = Value::Bool(true);
    }
    match flavor {
        Flavor::V2 => {
            v["type"] = Value::from(p.ty);
            v["uniqueItems"] = Value::Bool(true);
        }
        Flavor::V3 => v["schema"] = json!({"type": p.ty, "uniqueItems": true}),
    }
    v
}

fn schema_ref(flavor: Flavor, def: &str) -> Value {
    json!({"$ref": flavor.ref_to(def)})
}

fn operation(op: &Op<'_>, tag: &str, flavor: Flavor) -> Value {
    let mut o = Map::new();
    o.insert("description".into(), Value::from(op.description.as_str()));
    o.insert("operationId".into(), Value::from(op.id.as_str()));
    o.insert("tags".into(), json!([tag]));
    o.insert("x-kubernetes-action".into(), Value::from(op.action));
    o.insert(
        "x-kubernetes-group-version-kind".into(),
        json!({"group": op.gvk.0, "kind": op.gvk.2, "version": op.gvk.1}),
    );
    let mut params: Vec<Value> = Vec::new();
    let patch_schema = format!("{META}.Patch");
    match flavor {
        Flavor::V2 => {
            match &op.body {
                Some(Body::Any { schema, required }) => params.push(json!({
                    "in": "body", "name": "body", "required": required,
                    "schema": schema_ref(flavor, schema),
                })),
                Some(Body::Patch { content_types }) => {
                    params.push(json!({
                        "in": "body", "name": "body", "required": true,
                        "schema": schema_ref(flavor, &patch_schema),
                    }));
                    o.insert("consumes".into(), json!(content_types));
                }
                None => {}
            }
            if matches!(op.body, Some(Body::Any { .. })) {
                o.insert("consumes".into(), json!(["*/*"]));
            }
            o.insert("produces".into(), json!(op.produces));
            o.insert("schemes".into(), json!(["https"]));
            let mut responses = Map::new();
            for (code, text, resp) in &op.responses {
                let mut r = json!({"description": text});
                match resp {
                    Some(Response::Definition(d)) => r["schema"] = schema_ref(flavor, d),
                    Some(Response::Text) => r["schema"] = json!({"type": "string"}),
                    None => {}
                }
                responses.insert((*code).into(), r);
            }
            responses.insert("401".into(), json!({"description": "Unauthorized"}));
            o.insert("responses".into(), Value::Object(responses));
        }
        Flavor::V3 => {
            match &op.body {
                Some(Body::Any { schema, required }) => {
                    o.insert(
                        "requestBody".into(),
                        json!({"content": {"*/*": {"schema": schema_ref(flavor, schema)}}, "required": required}),
                    );
                }
                Some(Body::Patch { content_types }) => {
                    let content: Map<String, Value> = content_types
                        .iter()
                        .map(|ct| ((*ct).to_owned(), json!({"schema": schema_ref(flavor, &patch_schema)})))
                        .collect();
                    o.insert("requestBody".into(), json!({"content": content, "required": true}));
                }
                None => {}
            }
            let mut responses = Map::new();
            for (code, text, resp) in &op.responses {
                let mut r = json!({"description": text});
                let schema = match resp {
                    Some(Response::Definition(d)) => Some(schema_ref(flavor, d)),
                    Some(Response::Text) => Some(json!({"type": "string"})),
                    None => None,
                };
                if let Some(schema) = schema {
                    let content: Map<String, Value> =
                        op.produces.iter().map(|ct| ((*ct).to_owned(), json!({"schema": schema}))).collect();
                    r["content"] = Value::Object(content);
                }
                responses.insert((*code).into(), r);
            }
            responses.insert("401".into(), json!({"description": "Unauthorized"}));
            o.insert("responses".into(), Value::Object(responses));
        }
    }
    params.extend(op.params.iter().map(|p| param(p, flavor)));
    if !params.is_empty() {
        o.insert("parameters".into(), Value::Array(params));
    }
    Value::Object(o)
}

/// `GET /api/v1/` or `/apis/<group>/<version>/`: the API resource list.
pub(crate) fn discovery_path(gv: &GroupVersion<'_>, flavor: Flavor, paths: &mut Map<String, Value>) {
    let op = Op {
        verb: "get",
        id: format!("get{}APIResources", gv.camel()),
        description: "get available resources".to_owned(),
        action: "",
        gvk: ("", "", ""),
        params: vec![],
        body: None,
        responses: vec![("200", "OK", Some(Response::Definition(format!("{META}.APIResourceList"))))],
        produces: JSON_YAML_PROTOBUF.to_vec(),
    };
    let mut value = operation(&op, &gv.tag(), flavor);
    if let Value::Object(o) = &mut value {
        o.remove("x-kubernetes-action");
        o.remove("x-kubernetes-group-version-kind");
    }
    paths.insert(format!("{}/", gv.prefix()), json!({"get": value}));
}

/// Definition names the operations of a resource refer to (besides its kind and list).
pub(crate) fn referenced_definitions(res: &ServedResource) -> Vec<String> {
    let mut names = vec![
        format!("{META}.Status"),
        format!("{META}.DeleteOptions"),
        format!("{META}.Patch"),
        format!("{META}.APIResourceList"),
    ];
    for sub in &res.subresources {
        let def = match sub.as_str() {
            "scale" => "io.k8s.api.autoscaling.v1.Scale",
            "binding" => "io.k8s.api.core.v1.Binding",
            "eviction" => "io.k8s.api.policy.v1.Eviction",
            "token" => "io.k8s.api.authentication.v1.TokenRequest",
            _ => continue,
        };
        names.push(def.to_owned());
    }
    names
}
