//! The ResourceQuota admission plugin: a write that adds usage in a namespace (a new object;
//! for Services and PersistentVolumeClaims also an update that adds node ports, load balancers
//! or storage) is checked against every matching quota of the namespace and charged to their
//! `status.used` in the same store transaction as the write itself, each quota compared on its
//! `mod_revision`. Two concurrent writes can thus never both spend the last unit: the loser's
//! transaction fails and the write is admitted again on the new usage.
//!
//! What an object uses and which quotas apply to it is `corten_schema::resources` (shared with
//! the ResourceQuota controller).

use std::collections::BTreeSet;

use corten_schema::quantity::Quantity;
use corten_schema::resources::{self, compute_usage, quota_matches, usage, QuotaResource, ResourceList};
use corten_store::{Compare, KeyRange, Op, RangeRequest, Revision, Store, Txn};
use serde_json::Value;

use crate::error::{ApiError, Result};
use crate::limits::forbidden;
use crate::registry::ResourceInfo;
use crate::{meta, objects, Shared};

/// The resources whose quotas force every container to state them (upstream's
/// "BACKWARD COMPATIBILITY REQUIREMENT" of the pod evaluator).
const EXPLICIT: &[&str] =
    &["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];

/// What a write charges: the quotas to rewrite with their new usage, each guarded by the
/// revision it was read at.
#[derive(Debug, Default)]
pub(crate) struct Charge {
    quotas: Vec<(String, Revision, Vec<u8>)>,
}

impl Charge {
    /// Adds the quota updates to the write's transaction.
    pub(crate) fn add_to(self, txn: Txn) -> Txn {
        self.quotas.into_iter().fold(txn, |txn, (key, rev, value)| {
            txn.when(Compare::mod_revision(key.clone().into_bytes(), rev))
                .success(Op::put(key.into_bytes(), value))
        })
    }
}

/// `a=1,b=2` in resource-name order, like upstream's `prettyPrint`.
fn pretty(list: &ResourceList) -> String {
    list.iter().map(|(k, q)| format!("{k}={q}")).collect::<Vec<_>>().join(",")
}

/// Why a pod does not satisfy a quota that tracks cpu or memory: every container must state
/// what the quota limits (`must specify limits.cpu for: app; requests.memory for: app`).
fn constraints(pod: &Value, restricted: &BTreeSet<String>) -> Option<String> {
    let required: BTreeSet<&str> = EXPLICIT.iter().copied().filter(|r| restricted.contains(*r)).collect();
    if required.is_empty() {
        return None;
    }
    let mut missing: std::collections::BTreeMap<&str, BTreeSet<String>> = Default::default();
    for field in ["containers", "initContainers"] {
        for c in pod.pointer(&format!("/spec/{field}")).and_then(Value::as_array).into_iter().flatten() {
            let have = compute_usage(
                &resources::container_list(c, "requests"),
                &resources::container_list(c, "limits"),
            );
            let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            for r in required.iter().filter(|r| !have.contains_key(**r)) {
                missing.entry(r).or_default().insert(name.clone());
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| format!("{r} for: {}", names.iter().cloned().collect::<Vec<_>>().join(",")))
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

/// Whether quota admission looks at this write: creates of every namespaced resource, and
/// updates of Services and PersistentVolumeClaims (their usage can grow).
fn handles(info: &ResourceInfo, update: bool) -> bool {
    info.namespaced
        && (!update || (info.group.is_empty() && matches!(info.kind, "Service" | "PersistentVolumeClaim")))
}

/// Checks `new` (replacing `old` on an update) against the quotas of its namespace and returns
/// what to charge them; a write over a quota, not meeting its constraints, or hitting a quota
/// whose usage is not computed yet is forbidden as upstream words it.
pub(crate) async fn charge<S: Store>(
    shared: &Shared<S>,
    info: &ResourceInfo,
    new: &Value,
    old: Option<&Value>,
) -> Result<Charge> {
    if !handles(info, old.is_some()) {
        return Ok(Charge::default());
    }
    let res = QuotaResource { group: info.group, kind: info.kind, plural: info.plural };
    let mut delta = usage(&res, new);
    if let Some(old) = old {
        let before = usage(&res, old);
        for (k, q) in delta.iter_mut() {
            if let Some(b) = before.get(k) {
                *q = q.saturating_sub(b).max(Quantity::ZERO);
            }
        }
    }
    delta.retain(|_, q| !q.is_zero());
    let namespace = meta::meta_str(new, "namespace").unwrap_or("");
    let qinfo = shared
        .registry
        .get("", "v1", "resourcequotas")
        .ok_or_else(|| ApiError::Internal("resourcequotas are not served".into()))?;
    let prefix = qinfo.list_prefix(Some(namespace));
    let resp = shared.store.range(RangeRequest::new(KeyRange::Prefix(prefix.into_bytes()))).await?;
    if resp.kvs.is_empty() {
        return Ok(Charge::default());
    }
    let pod = info.group.is_empty() && info.kind == "Pod";
    let mut interesting = Vec::new();
    for kv in &resp.kvs {
        let quota = objects::decode(qinfo, kv)?;
        if !quota_matches(&quota, &res, new) {
            continue;
        }
        let name = meta::name_of(&quota).to_string();
        let hard = resources::list(quota.pointer("/status/hard"));
        let restricted: BTreeSet<String> =
            hard.keys().filter(|k| resources::tracks(&res, k)).cloned().collect();
        if pod {
            if let Some(why) = constraints(new, &restricted) {
                return Err(forbidden(info, new, &format!("failed quota: {name}: {why}")));
            }
        }
        let used = resources::list(quota.pointer("/status/used"));
        if restricted.iter().any(|r| !used.contains_key(r)) {
            let names = restricted.iter().cloned().collect::<Vec<_>>().join(",");
            return Err(forbidden(
                info,
                new,
                &format!("status unknown for quota: {name}, resources: {names}"),
            ));
        }
        interesting.push((kv.key.clone(), kv.mod_revision, quota, hard, used));
    }
    let mut out = Charge::default();
    if delta.is_empty() {
        return Ok(out);
    }
    for (key, rev, mut quota, hard, used) in interesting {
        let requested: ResourceList =
            delta.iter().filter(|(k, _)| hard.contains_key(*k)).map(|(k, q)| (k.clone(), *q)).collect();
        if requested.is_empty() {
            continue;
        }
        let mut new_used = used.clone();
        resources::add_into(&mut new_used, &requested);
        let exceeded: BTreeSet<&String> = requested
            .keys()
            .filter(|k| new_used.get(*k).zip(hard.get(*k)).is_some_and(|(u, h)| u > h))
            .collect();
        if !exceeded.is_empty() {
            let mask = |l: &ResourceList| -> ResourceList {
                l.iter().filter(|(k, _)| exceeded.contains(k)).map(|(k, q)| (k.clone(), *q)).collect()
            };
            return Err(forbidden(
                info,
                new,
                &format!(
                    "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                    meta::name_of(&quota),
                    pretty(&mask(&requested)),
                    pretty(&mask(&used)),
                    pretty(&mask(&hard))
                ),
            ));
        }
        quota["status"]["used"] = resources::to_json(&new_used);
        let key =
            String::from_utf8(key).map_err(|_| ApiError::Internal("a quota key is not UTF-8".into()))?;
        out.quotas.push((key, rev, objects::encode(qinfo, &quota)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quotas_on_cpu_or_memory_need_every_container_to_state_them() {
        let pod = json!({"spec": {"containers": [
            {"name": "app", "resources": {"requests": {"cpu": "1"}}},
            {"name": "side", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"memory": "1Gi"}}},
        ]}});
        let restricted = ["limits.cpu", "requests.memory", "pods"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            constraints(&pod, &restricted).as_deref(),
            Some("must specify limits.cpu for: app; requests.memory for: app")
        );
    }

    #[test]
    fn usage_prints_sorted_like_upstream() {
        let list: ResourceList = [("pods", "1"), ("cpu", "500m")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.parse::<Quantity>().map_err(|e| e.to_string())))
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        assert_eq!(pretty(&list), "cpu=500m,pods=1");
    }
}
