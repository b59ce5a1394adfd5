//! Service address allocation: ClusterIPs from the service CIDR and NodePorts from
//! 30000-32767. Every allocation is a store key (`/registry/ranges/...`) written in the same
//! transaction as the Service, guarded by an absent-compare, so two Services can never hold the
//! same address, and deleted with it, so addresses are released exactly when the Service goes.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use corten_store::{RangeRequest, Store};
use serde_json::{json, Value};

use crate::error::{ApiError, Cause, Result};
use crate::meta;
use crate::registry::ResourceInfo;
use crate::Shared;

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";
/// The NodePort range (kube-apiserver's default `--service-node-port-range`).
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// An IPv4 service CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    base: u32,
    prefix: u8,
}

impl ServiceCidr {
    /// Parses `10.43.0.0/16`.
    pub fn parse(s: &str) -> Option<Self> {
        let (ip, len) = s.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let prefix: u8 = len.parse().ok().filter(|p| (8..=30).contains(p))?;
        let mask = u32::MAX << (32 - prefix);
        Some(ServiceCidr { base: u32::from(ip) & mask, prefix })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// The first usable address (`10.43.0.1`): the `kubernetes` Service's.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip > self.base && ip < self.base + self.size() - 1
    }
}

impl std::fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

fn is_service(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Service"
}

/// A random number (allocation start points are random so that restarts do not collide).
fn random_u32() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

async fn used<S: Store>(shared: &Shared<S>, prefix: &str) -> Result<HashSet<String>> {
    let resp = shared.store.range(RangeRequest::prefix(prefix.as_bytes().to_vec()).keys_only()).await?;
    Ok(resp.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned()).collect())
}

/// Allocates the addresses of a new Service; returns it with `clusterIP(s)` and node ports
/// filled in, and the allocation keys to write with it.
pub async fn on_create<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    mut obj: Value,
) -> Result<(Value, Vec<(String, Vec<u8>)>)> {
    if !is_service(info) {
        return Ok((obj, Vec::new()));
    }
    let owner =
        format!("{}/{}", meta::meta_str(&obj, "namespace").unwrap_or(""), meta::name_of(&obj)).into_bytes();
    let name = meta::name_of(&obj).to_string();
    let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    let mut keys = Vec::new();
    if ty == "ExternalName" {
        return Ok((obj, keys));
    }
    let cidr = shared.config.service_cidr;
    let requested = obj.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
    let ip = match requested.as_str() {
        "None" => None,
        "" => {
            let taken = used(shared, IP_PREFIX).await?;
            let n = cidr.size() - 2;
            let start = random_u32() % n;
            // Skip the first address: it belongs to the `kubernetes` Service.
            let free = (0..n)
                .map(|i| Ipv4Addr::from(cidr.base + 1 + (start + i) % n))
                .find(|ip| *ip != cidr.first() && !taken.contains(&ip.to_string()));
            Some(free.ok_or_else(|| {
                ApiError::Internal(format!("failed to allocate a serviceIP: range {cidr} is full"))
            })?)
        }
        s => {
            let invalid = |why: String| {
                ApiError::invalid(info, &name, vec![Cause::invalid("spec.clusterIPs", &json!([s]), why)])
            };
            let ip: Ipv4Addr = s.parse().map_err(|_| invalid("must be a valid IP address".into()))?;
            if !cidr.contains(ip) {
                return Err(invalid(format!(
                    "failed to allocate IP {s}: the provided IP ({s}) is not in the valid range. The range of valid IPs is {cidr}"
                )));
            }
            if used(shared, IP_PREFIX).await?.contains(s) {
                return Err(invalid(format!("failed to allocate IP {s}: provided IP is already allocated")));
            }
            Some(ip)
        }
    };
    if let Some(ip) = ip {
        obj["spec"]["clusterIP"] = json!(ip.to_string());
        obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
        keys.push((format!("{IP_PREFIX}{ip}"), owner.clone()));
    } else {
        obj["spec"]["clusterIPs"] = json!(["None"]);
    }
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        let taken = used(shared, PORT_PREFIX).await?;
        let span = u32::from(NODE_PORTS.end() - NODE_PORTS.start()) + 1;
        let mut start = random_u32() % span;
        let mut mine = HashSet::new();
        for (i, port) in obj["spec"]["ports"].as_array_mut().into_iter().flatten().enumerate() {
            let chosen = match port.get("nodePort").and_then(Value::as_u64) {
                Some(p) => {
                    let p16 = u16::try_from(p).ok().filter(|p| NODE_PORTS.contains(p));
                    let field = format!("spec.ports[{i}].nodePort");
                    let Some(p16) = p16 else {
                        return Err(ApiError::invalid(info, &name, vec![Cause::invalid(field, &json!(p), "provided port is not in the valid range. The range of valid ports is 30000-32767")]));
                    };
                    if taken.contains(&p16.to_string()) || mine.contains(&p16) {
                        return Err(ApiError::invalid(
                            info,
                            &name,
                            vec![Cause::invalid(field, &json!(p), "provided port is already allocated")],
                        ));
                    }
                    p16
                }
                None => {
                    let free = (0..span)
                        .map(|j| NODE_PORTS.start() + ((start + j) % span) as u16)
                        .find(|p| !taken.contains(&p.to_string()) && !mine.contains(p));
                    let p = free.ok_or_else(|| {
                        ApiError::Internal("failed to allocate a nodePort: range is full".into())
                    })?;
                    start = u32::from(p - NODE_PORTS.start()) + 1;
                    p
                }
            };
            mine.insert(chosen);
            port["nodePort"] = json!(chosen);
            keys.push((format!("{PORT_PREFIX}{chosen}"), owner.clone()));
        }
    }
    Ok((obj, keys))
}

/// The allocation keys a Service holds, to delete with it.
pub fn on_delete(info: &ResourceInfo, obj: &Value) -> Vec<String> {
    if !is_service(info) {
        return Vec::new();
    }
    let mut keys: Vec<String> = obj
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|ip| *ip != "None" && !ip.is_empty())
        .map(|ip| format!("{IP_PREFIX}{ip}"))
        .collect();
    for port in obj.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
        if let Some(p) = port.get("nodePort").and_then(Value::as_u64) {
            keys.push(format!("{PORT_PREFIX}{p}"));
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_cidr_parses_and_knows_its_first_address() {
        let c = ServiceCidr::parse("10.43.0.0/16").unwrap_or_else(|| panic!("valid cidr"));
        assert_eq!(c.first(), Ipv4Addr::new(10, 43, 0, 1));
        assert!(c.contains(Ipv4Addr::new(10, 43, 255, 254)));
        assert!(!c.contains(Ipv4Addr::new(10, 43, 255, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 44, 0, 1)));
        assert_eq!(c.to_string(), "10.43.0.0/16");
        assert!(ServiceCidr::parse("10.43.0.0").is_none());
    }
}
