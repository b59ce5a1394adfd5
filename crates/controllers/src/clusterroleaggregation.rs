//! The ClusterRole aggregation controller of kube-controller-manager: a ClusterRole with an
//! `aggregationRule` gets the rules of every other ClusterRole its selectors match (in name
//! order, each rule once), kept current as those roles change. `admin`, `edit` and `view` are
//! built this way from the roles labelled `rbac.authorization.k8s.io/aggregate-to-<role>`.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;
use tracing::{debug, warn};

use crate::error::api;
use crate::{Ctx, Error, Result};

/// How often every aggregated role is checked even without changes (a failed write retried).
const RESYNC: Duration = Duration::from_secs(30);

pub(crate) async fn run(ctx: Ctx) -> Result<()> {
    let roles: Api<ClusterRole> = Api::all(ctx.client.clone());
    let (reader, writer) = reflector::store();
    let mut events =
        watcher(roles.clone(), watcher::Config::default()).default_backoff().reflect(writer).boxed();
    let mut synced = false;
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return Ok(()),
            _ = resync.tick() => {}
            event = events.next() => match event {
                None => return Ok(()),
                Some(Err(e)) => return Err(Error::Watch { resource: "clusterroles", source: e }),
                Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                Some(Ok(watcher::Event::InitDone)) => synced = true,
                Some(Ok(_)) => {}
            },
        }
        if synced {
            aggregate_all(&roles, &reader).await;
        }
    }
}

/// The rules an aggregated `role` should have: those of the roles its selectors match.
pub(crate) fn aggregated_rules(
    role: &ClusterRole,
    all: &[std::sync::Arc<ClusterRole>],
) -> Option<Vec<PolicyRule>> {
    let rule = role.aggregation_rule.as_ref()?;
    let selectors: Vec<Selector> = rule
        .cluster_role_selectors
        .iter()
        .flatten()
        .filter_map(|s| Selector::try_from(s.clone()).ok())
        .collect();
    let mut sources: Vec<&ClusterRole> = all
        .iter()
        .map(AsRef::as_ref)
        .filter(|r| r.name_any() != role.name_any() && selectors.iter().any(|s| s.matches(r.labels())))
        .collect();
    sources.sort_by_key(|r| r.name_any());
    let mut rules: Vec<PolicyRule> = Vec::new();
    for r in sources.iter().flat_map(|s| s.rules.iter().flatten()) {
        if !rules.contains(r) {
            rules.push(r.clone());
        }
    }
    Some(rules)
}

async fn aggregate_all(roles: &Api<ClusterRole>, reader: &Store<ClusterRole>) {
    let all = reader.state();
    for role in &all {
        let Some(rules) = aggregated_rules(role, &all) else { continue };
        if role.rules.clone().unwrap_or_default() == rules {
            continue;
        }
        let name = role.name_any();
        let patch = Patch::Merge(json!({"rules": rules}));
        match roles
            .patch(&name, &PatchParams::default(), &patch)
            .await
            .map_err(api(format!("aggregating clusterrole {name}")))
        {
            Ok(_) => debug!(clusterrole = %name, rules = rules.len(), "aggregated rules updated"),
            Err(e) => warn!(clusterrole = %name, error = %e, "updating aggregated rules failed"),
        }
    }
}
