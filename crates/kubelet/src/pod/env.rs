//! A container's environment as upstream builds it: service links, `envFrom` (with prefixes),
//! then `env` (values, `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef`), each
//! `$(VAR)` expanded against what came before.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::api::{Api, ListParams};

use crate::node::Resources;
use crate::{Error, Result};
use corten_schema::quantity;

/// Expands `$(VAR)` in `input` with `lookup`; `$$` is a literal `$`, unknown references stay.
pub(crate) fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Variables in order; a later set of the same name replaces the value in place.
#[derive(Debug, Default)]
pub(crate) struct Vars {
    order: Vec<String>,
    values: HashMap<String, String>,
}

impl Vars {
    pub(crate) fn set(&mut self, k: String, v: String) {
        if self.values.insert(k.clone(), v).is_none() {
            self.order.push(k);
        }
    }

    pub(crate) fn get(&self, k: &str) -> Option<String> {
        self.values.get(k).cloned()
    }

    pub(crate) fn into_pairs(self) -> Vec<(String, String)> {
        let Vars { order, mut values } = self;
        order.into_iter().filter_map(|k| values.remove(&k).map(|v| (k, v))).collect()
    }
}

/// Fetches configmaps and secrets of one namespace once per container start.
struct Sources {
    client: kube::Client,
    namespace: String,
    configmaps: HashMap<String, Option<BTreeMap<String, String>>>,
    secrets: HashMap<String, Option<BTreeMap<String, String>>>,
}

impl Sources {
    async fn configmap(&mut self, name: &str) -> Result<Option<&BTreeMap<String, String>>> {
        if !self.configmaps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let data = api.get_opt(name).await?.map(|cm| {
                let mut data = cm.data.unwrap_or_default();
                for (k, v) in cm.binary_data.unwrap_or_default() {
                    data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
                }
                data
            });
            self.configmaps.insert(name.to_string(), data);
        }
        Ok(self.configmaps.get(name).and_then(Option::as_ref))
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&BTreeMap<String, String>>> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let data = api.get_opt(name).await?.map(|s| {
                let mut data: BTreeMap<String, String> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                data.extend(s.string_data.unwrap_or_default());
                data
            });
            self.secrets.insert(name.to_string(), data);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

/// The value of a downward-API field path (`metadata.name`, `metadata.labels['app']`, ...).
pub(crate) fn field_value(pod: &Pod, path: &str, host_ip: &str, pod_ips: &[String]) -> Result<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let in_map = |map: &Option<BTreeMap<String, String>>, prefix: &str| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let render = |map: &Option<BTreeMap<String, String>>| -> String {
        map.iter().flatten().map(|(k, v)| format!("{k}={v:?}\n")).collect()
    };
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => render(&m.labels),
        "metadata.annotations" => render(&m.annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        "status.podIP" => pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => pod_ips.join(","),
        _ => {
            if let Some(v) = in_map(&m.labels, "metadata.labels['") {
                v
            } else if let Some(v) = in_map(&m.annotations, "metadata.annotations['") {
                v
            } else {
                return Err(Error::Config(format!("unsupported fieldPath {path:?}")));
            }
        }
    })
}

/// The value of a `resourceFieldRef` of `container` (limits default to the node's allocatable).
pub(crate) fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    allocatable: &Resources,
) -> Result<String> {
    let res = container.resources.clone().unwrap_or_default();
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| Error::Config(format!("unsupported resource {resource:?}")))?;
    let from = match kind {
        "limits" => res.limits.as_ref().and_then(|l| l.get(name)).or_else(|| allocatable.get(name)),
        "requests" => res.requests.as_ref().and_then(|l| l.get(name)),
        _ => None,
    };
    let bad = || Error::Config(format!("invalid quantity for {resource}"));
    let value = match from {
        Some(q) => q.0.clone(),
        None if kind == "requests" => "0".to_string(),
        None => return Err(Error::Config(format!("unsupported resource {resource:?}"))),
    };
    let divisor = divisor.unwrap_or("1");
    let n = if name == "cpu" {
        let (v, d) =
            (quantity::milli(&value).ok_or_else(bad)?, quantity::milli(divisor).ok_or_else(bad)?.max(1));
        (v + d - 1) / d
    } else {
        let (v, d) =
            (quantity::units(&value).ok_or_else(bad)?, quantity::units(divisor).ok_or_else(bad)?.max(1));
        (v + d - 1) / d
    };
    Ok(n.to_string())
}

fn service_env(vars: &mut Vars, svc: &Service) {
    let Some(spec) = &svc.spec else { return };
    let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None") else { return };
    let name = svc.metadata.name.clone().unwrap_or_default().to_uppercase().replace('-', "_");
    let ports = spec.ports.clone().unwrap_or_default();
    let Some(first) = ports.first() else { return };
    vars.set(format!("{name}_SERVICE_HOST"), ip.to_string());
    vars.set(format!("{name}_SERVICE_PORT"), first.port.to_string());
    for p in &ports {
        if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
            vars.set(
                format!("{name}_SERVICE_PORT_{}", pn.to_uppercase().replace('-', "_")),
                p.port.to_string(),
            );
        }
    }
    let proto =
        |p: &k8s_openapi::api::core::v1::ServicePort| p.protocol.clone().unwrap_or_else(|| "TCP".into());
    vars.set(format!("{name}_PORT"), format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port));
    for p in &ports {
        let prefix = format!("{name}_PORT_{}_{}", p.port, proto(p).to_uppercase());
        vars.set(prefix.clone(), format!("{}://{ip}:{}", proto(p).to_lowercase(), p.port));
        vars.set(format!("{prefix}_PROTO"), proto(p).to_lowercase());
        vars.set(format!("{prefix}_PORT"), p.port.to_string());
        vars.set(format!("{prefix}_ADDR"), ip.to_string());
    }
}

async fn service_links(client: &kube::Client, pod: &Pod, vars: &mut Vars) -> Result<()> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    if links && ns != "default" {
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        for svc in services.list(&ListParams::default()).await? {
            service_env(vars, &svc);
        }
    }
    let default: Api<Service> = Api::namespaced(client.clone(), "default");
    for svc in default.list(&ListParams::default()).await? {
        if links || svc.metadata.name.as_deref() == Some("kubernetes") {
            service_env(vars, &svc);
        }
    }
    Ok(())
}

/// The environment of `container` in `pod`; a missing (non-optional) source is a
/// [`Error::Config`] with upstream's message.
pub(crate) async fn container_env(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    host_ip: IpAddr,
    pod_ips: &[String],
    allocatable: &Resources,
) -> Result<Vars> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut sources =
        Sources { client: client.clone(), namespace, configmaps: HashMap::new(), secrets: HashMap::new() };
    let mut services = Vars::default();
    service_links(client, pod, &mut services).await?;
    let mut vars = Vars::default();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &from.config_map_ref {
            match sources.configmap(&r.name).await? {
                Some(d) => d.clone(),
                None if r.optional.unwrap_or(false) => continue,
                None => return Err(Error::Config(format!("configmap {:?} not found", r.name))),
            }
        } else if let Some(r) = &from.secret_ref {
            match sources.secret(&r.name).await? {
                Some(d) => d.clone(),
                None if r.optional.unwrap_or(false) => continue,
                None => return Err(Error::Config(format!("secret {:?} not found", r.name))),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            vars.set(format!("{prefix}{k}"), v);
        }
    }
    let host = host_ip.to_string();
    for e in container.env.iter().flatten() {
        let value = match &e.value_from {
            None => {
                let lookup = |n: &str| vars.get(n).or_else(|| services.get(n));
                expand(e.value.as_deref().unwrap_or(""), &lookup)
            }
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    field_value(pod, &f.field_path, &host, pod_ips)?
                } else if let Some(r) = &from.resource_field_ref {
                    let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                        Some(n) => pod
                            .spec
                            .iter()
                            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
                            .find(|c| c.name == n)
                            .ok_or_else(|| Error::Config(format!("container {n:?} not found")))?,
                        None => container,
                    };
                    resource_value(
                        target,
                        &r.resource,
                        r.divisor.as_ref().map(|d| d.0.as_str()),
                        allocatable,
                    )?
                } else if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    match sources.configmap(&r.name).await?.map(|d| d.get(&r.key).cloned()) {
                        Some(Some(v)) => v,
                        None if optional => continue,
                        Some(None) if optional => continue,
                        None => return Err(Error::Config(format!("configmap {:?} not found", r.name))),
                        Some(None) => {
                            return Err(Error::Config(format!(
                                "couldn't find key {} in ConfigMap {}/{}",
                                r.key,
                                pod.metadata.namespace.as_deref().unwrap_or(""),
                                r.name
                            )))
                        }
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    match sources.secret(&r.name).await?.map(|d| d.get(&r.key).cloned()) {
                        Some(Some(v)) => v,
                        None if optional => continue,
                        Some(None) if optional => continue,
                        None => return Err(Error::Config(format!("secret {:?} not found", r.name))),
                        Some(None) => {
                            return Err(Error::Config(format!(
                                "couldn't find key {} in Secret {}/{}",
                                r.key,
                                pod.metadata.namespace.as_deref().unwrap_or(""),
                                r.name
                            )))
                        }
                    }
                } else {
                    String::new()
                }
            }
        };
        vars.set(e.name.clone(), value);
    }
    for (k, v) in services.into_pairs() {
        if vars.get(&k).is_none() {
            vars.set(k, v);
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_replaces_known_variables_and_keeps_the_rest() {
        let lookup = |n: &str| match n {
            "A" => Some("1".to_string()),
            "B" => Some("two".to_string()),
            _ => None,
        };
        assert_eq!(expand("$(A)-$(B)", &lookup), "1-two");
        assert_eq!(expand("$(MISSING) $$(A) $A $", &lookup), "$(MISSING) $(A) $A $");
        assert_eq!(expand("x$(A", &lookup), "x$(A");
    }

    #[test]
    fn resource_fields_use_the_divisor_and_default_limits_to_allocatable() {
        let c: Container = serde_json::from_value(serde_json::json!({"name": "a",
            "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}}))
        .unwrap_or_default();
        let alloc: Resources =
            [("cpu".to_string(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("4".into()))].into();
        let v = |r: &str, d: Option<&str>| resource_value(&c, r, d, &alloc).ok();
        assert_eq!(v("requests.cpu", None).as_deref(), Some("1"));
        assert_eq!(v("requests.cpu", Some("1m")).as_deref(), Some("250"));
        assert_eq!(v("limits.memory", Some("1Mi")).as_deref(), Some("128"));
        assert_eq!(v("limits.cpu", None).as_deref(), Some("4"));
    }
}
