//! The ClusterRole aggregation controller: aggregated roles collect the rules of the roles their
//! selectors match and follow them as they change.

mod common;

use anyhow::Result;
use common::Harness;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn has_rule(role: &ClusterRole, resource: &str, verb: &str) -> bool {
    role.rules.iter().flatten().any(|r: &PolicyRule| {
        r.resources.iter().flatten().any(|x| x == resource) && r.verbs.iter().any(|v| v == verb)
    })
}

/// Polls until the role `name` satisfies `check`.
async fn wait_role(
    api: &Api<ClusterRole>,
    name: &str,
    what: &str,
    check: impl Fn(&ClusterRole) -> bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    loop {
        if let Some(role) = api.get_opt(name).await? {
            if check(&role) {
                return Ok(());
            }
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{name}: {what} did not happen");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn aggregated_cluster_roles_follow_the_roles_they_select() -> Result<()> {
    let h = Harness::start(&["clusterrole-aggregation"]).await?;
    let api: Api<ClusterRole> = Api::all(h.client());
    let aggregate: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "monitoring"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"example.com/aggregate-to-monitoring": "true"}}]},
    }))?;
    api.create(&PostParams::default(), &aggregate).await?;
    let source = |name: &str, resource: &str| -> Result<ClusterRole> {
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"example.com/aggregate-to-monitoring": "true"}},
            "rules": [{"apiGroups": [""], "resources": [resource], "verbs": ["get", "list"]}],
        }))?)
    };
    api.create(&PostParams::default(), &source("b-pods", "pods")?).await?;
    api.create(&PostParams::default(), &source("a-nodes", "nodes")?).await?;
    wait_role(&api, "monitoring", "both rules", |r| {
        has_rule(r, "pods", "list") && has_rule(r, "nodes", "get")
    })
    .await?;
    let role = api.get("monitoring").await?;
    let first = role.rules.iter().flatten().next().and_then(|r| r.resources.clone()).unwrap_or_default();
    assert_eq!(first, ["nodes"], "rules follow the names of their roles");

    // A changed source changes the aggregate; a removed label or role takes its rules away.
    let patch = json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["watch"]}]});
    api.patch("b-pods", &PatchParams::default(), &Patch::Merge(&patch)).await?;
    wait_role(&api, "monitoring", "the new pod rule", |r| {
        has_rule(r, "pods", "watch") && !has_rule(r, "pods", "list")
    })
    .await?;
    let unlabel = json!({"metadata": {"labels": {"example.com/aggregate-to-monitoring": null}}});
    api.patch("b-pods", &PatchParams::default(), &Patch::Merge(&unlabel)).await?;
    api.delete("a-nodes", &DeleteParams::default()).await?;
    wait_role(&api, "monitoring", "no rules", |r| r.rules.as_ref().is_none_or(Vec::is_empty)).await?;

    // The bootstrap view/edit/admin chain stays complete.
    let admin = api.get("admin").await?;
    assert!(
        has_rule(&admin, "pods", "create")
            && has_rule(&admin, "pods", "list")
            && has_rule(&admin, "roles", "create")
    );
    Ok(())
}
