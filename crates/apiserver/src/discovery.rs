//! Discovery: `/api`, `/apis`, `/apis/<group>`, the per group-version `APIResourceList`s, and
//! aggregated discovery (`apidiscovery.k8s.io/v2` and `v2beta1`), which kubectl 1.30+ asks for
//! first. Everything is derived from the registry.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::codec::{self, Format};
use crate::error::{ApiError, Result};
use crate::registry::{Registry, ResourceInfo};

/// The kind and verbs a subresource answers with.
fn subresource_shape(info: &ResourceInfo, sub: &str) -> (Value, &'static [&'static str]) {
    let same = json!({"group": info.group, "version": info.version, "kind": info.kind});
    match sub {
        "scale" => {
            (json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}), &["get", "patch", "update"])
        }
        "binding" => (json!({"group": "", "version": "v1", "kind": "Binding"}), &["create"]),
        "eviction" => (json!({"group": "policy", "version": "v1", "kind": "Eviction"}), &["create"]),
        "finalize" => (same, &["update"]),
        "token" => {
            (json!({"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}), &["create"])
        }
        "log" => (same, &["get"]),
        "exec" | "attach" | "portforward" => {
            let kind = match sub {
                "exec" => "PodExecOptions",
                "attach" => "PodAttachOptions",
                _ => "PodPortForwardOptions",
            };
            (json!({"group": "", "version": "v1", "kind": kind}), &["create", "get"])
        }
        "proxy" => {
            let kind = if info.kind == "Node" { "NodeProxyOptions" } else { "PodProxyOptions" };
            (
                json!({"group": "", "version": "v1", "kind": kind}),
                &["create", "delete", "get", "patch", "update"],
            )
        }
        _ => (same, &["get", "patch", "update"]),
    }
}

/// The `APIResourceList` of one group-version.
fn resource_list(reg: &Registry, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in reg.resources().filter(|r| r.group == group && r.version == version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            let (kind, verbs) = subresource_shape(r, sub);
            let mut e = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind["kind"],
                "verbs": verbs,
            });
            if kind["group"] != json!(r.group) {
                e["group"] = kind["group"].clone();
                e["version"] = kind["version"].clone();
            }
            resources.push(e);
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

fn group_entry(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

/// The aggregated discovery entry of one group.
fn aggregated_group(reg: &Registry, group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = reg
                .resources()
                .filter(|r| r.group == group && r.version == *v)
                .map(|r| {
                    let mut e = json!({
                        "resource": r.plural,
                        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular,
                        "verbs": r.verbs,
                    });
                    if !r.short_names.is_empty() {
                        e["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        e["categories"] = json!(r.categories);
                    }
                    if !r.subresources.is_empty() {
                        let subs: Vec<Value> = r
                            .subresources
                            .iter()
                            .map(|s| {
                                let (kind, verbs) = subresource_shape(r, s);
                                json!({"subresource": s, "responseKind": kind, "verbs": verbs})
                            })
                            .collect();
                        e["subresources"] = json!(subs);
                    }
                    e
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({"metadata": metadata, "versions": versions})
}

/// The aggregated discovery version the client accepts, if any (`v2` or `v2beta1`).
fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for entry in accept.split(',') {
        let params: Vec<&str> = entry.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
    }
    None
}

fn format_of(headers: &HeaderMap) -> Format {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.starts_with("application/yaml") {
        Format::Yaml
    } else {
        Format::Json
    }
}

/// `/api` (core) or `/apis`.
pub fn root(reg: &Registry, core: bool, headers: &HeaderMap) -> Response {
    let groups: Vec<(&str, Vec<&str>)> =
        reg.groups().into_iter().filter(|(g, _)| g.is_empty() == core).collect();
    if let Some(v) = aggregated_version(headers) {
        let items: Vec<Value> = groups.iter().map(|(g, vs)| aggregated_group(reg, g, vs)).collect();
        let body = json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": format!("apidiscovery.k8s.io/{v}"),
            "metadata": {},
            "items": items,
        });
        let mut resp = (StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default()).into_response();
        let ctype = format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList");
        if let Ok(ct) = HeaderValue::from_str(&ctype) {
            resp.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        resp.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
        return resp;
    }
    let body = if core {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        })
    } else {
        let list: Vec<Value> = groups.iter().map(|(g, vs)| group_entry(g, vs)).collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list})
    };
    codec::respond(StatusCode::OK, &body, format_of(headers))
}

/// `/apis/<group>`.
pub fn group(reg: &Registry, group: &str, headers: &HeaderMap) -> Result<Response> {
    let (_, versions) = reg.groups().into_iter().find(|(g, _)| *g == group).ok_or(ApiError::UnknownPath)?;
    let mut body = group_entry(group, &versions);
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Ok(codec::respond(StatusCode::OK, &body, format_of(headers)))
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn group_version(reg: &Registry, group: &str, version: &str, headers: &HeaderMap) -> Result<Response> {
    if !reg.serves(group, version) {
        return Err(ApiError::UnknownPath);
    }
    Ok(codec::respond(StatusCode::OK, &resource_list(reg, group, version), format_of(headers)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lists_include_subresources_with_their_kinds() {
        let reg = Registry::builtin();
        let list = resource_list(&reg, "apps", "v1");
        let scale =
            list["resources"].as_array().and_then(|a| a.iter().find(|r| r["name"] == "deployments/scale"));
        assert_eq!(scale.map(|s| s["kind"].clone()), Some(json!("Scale")));
        assert_eq!(list["groupVersion"], "apps/v1");
    }

    #[test]
    fn aggregated_discovery_is_chosen_by_accept_parameters() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
            ),
        );
        assert_eq!(aggregated_version(&h), Some("v2"));
        let core = aggregated_group(&Registry::builtin(), "", &["v1"]);
        let pods = core["versions"][0]["resources"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["resource"] == "pods"))
            .cloned();
        assert_eq!(pods.map(|p| p["scope"].clone()), Some(json!("Namespaced")));
        assert!(core["metadata"].get("name").is_none());
    }
}
