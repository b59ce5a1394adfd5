//! The `pods/eviction` subresource as kube-apiserver serves it: disruption budgets are checked
//! and charged for pods that could be healthy, everything else is deleted at once. No
//! controller runs here; budget statuses are written by the test the way the disruption
//! controller would.

use anyhow::{bail, Context, Result};
use corten_apiserver::testing::TestCluster;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::Client;
use serde_json::{json, Value};

/// The answer of an eviction: the body of a 2xx, or the Status of an error.
type Answer = std::result::Result<Value, Box<Status>>;

async fn evict_with(client: &Client, name: &str, body: Value, query: &str) -> Result<Answer> {
    let req = http::Request::post(format!("/api/v1/namespaces/default/pods/{name}/eviction{query}"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body)?)?;
    match client.request_text(req).await {
        Ok(text) => Ok(Ok(serde_json::from_str(&text).context("the eviction answer is JSON")?)),
        Err(kube::Error::Api(s)) => Ok(Err(s)),
        Err(e) => Err(e.into()),
    }
}

async fn evict(client: &Client, name: &str) -> Result<Answer> {
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}});
    evict_with(client, name, body, "").await
}

fn expect_success(answer: Answer) -> Result<()> {
    match answer {
        Ok(s) if s["status"] == "Success" && s["code"] == 201 && s["kind"] == "Status" => Ok(()),
        other => bail!("expected a 201 Success Status, got {other:?}"),
    }
}

/// A pod labelled `app=web` (on `node`, if given) in `phase`, Ready or not.
async fn pod(c: &TestCluster, name: &str, node: Option<&str>, phase: &str, ready: bool) -> Result<()> {
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let mut spec = json!({"containers": [{"name": "main", "image": "nginx:1"}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    let p: Pod =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec}))?;
    pods.create(&PostParams::default(), &p).await?;
    let ready = if ready { "True" } else { "False" };
    let status = json!({"status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await?;
    Ok(())
}

/// A budget selecting `app=web` whose status says what the controller would have computed.
async fn budget(c: &TestCluster, name: &str, spec: Value, status: Value) -> Result<()> {
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(c.client.clone());
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": "web"}});
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?;
    pdbs.create(&PostParams::default(), &pdb).await?;
    pdbs.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    Ok(())
}

fn counts(allowed: i32, healthy: i32, desired: i32) -> Value {
    json!({"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": healthy,
           "desiredHealthy": desired, "expectedPods": healthy})
}

async fn exists(c: &TestCluster, name: &str) -> Result<Option<Pod>> {
    Ok(Api::<Pod>::default_namespaced(c.client.clone()).get_opt(name).await?)
}

async fn pdb(c: &TestCluster, name: &str) -> Result<PodDisruptionBudget> {
    Ok(Api::<PodDisruptionBudget>::default_namespaced(c.client.clone()).get(name).await?)
}

#[tokio::test]
async fn a_pod_without_a_budget_is_evicted() -> Result<()> {
    let c = TestCluster::start().await?;
    pod(&c, "web-1", None, "Running", true).await?;
    expect_success(evict(&c.client, "web-1").await?)?;
    assert!(exists(&c, "web-1").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_budget_without_disruptions_left_refuses_with_429_and_its_counts() -> Result<()> {
    let c = TestCluster::start().await?;
    pod(&c, "web-1", None, "Running", true).await?;
    budget(&c, "web", json!({"minAvailable": 2}), counts(0, 2, 2)).await?;
    let Err(s) = evict(&c.client, "web-1").await? else { bail!("the eviction was allowed") };
    assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(s.message, "Cannot evict pod as it would violate the pod's disruption budget.");
    let causes = s.details.map(|d| d.causes).unwrap_or_default();
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].reason, "DisruptionBudget");
    assert_eq!(causes[0].message, "The disruption budget web needs 2 healthy pods and has 2 currently");
    assert!(exists(&c, "web-1").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn an_allowed_eviction_takes_a_disruption_records_the_pod_and_deletes_it() -> Result<()> {
    let c = TestCluster::start().await?;
    pod(&c, "web-1", None, "Running", true).await?;
    pod(&c, "web-2", None, "Running", true).await?;
    budget(&c, "web", json!({"minAvailable": 1}), counts(1, 2, 1)).await?;
    expect_success(evict(&c.client, "web-1").await?)?;
    assert!(exists(&c, "web-1").await?.is_none());
    let status = pdb(&c, "web").await?.status.unwrap_or_default();
    assert_eq!(status.disruptions_allowed, 0);
    let disrupted: Vec<String> = status.disrupted_pods.unwrap_or_default().into_keys().collect();
    assert_eq!(disrupted, ["web-1"]);
    let condition = status.conditions.iter().flatten().find(|c| c.type_ == "DisruptionAllowed").cloned();
    assert_eq!(condition.map(|c| (c.status, c.reason)), Some(("False".into(), "InsufficientPods".into())));

    // The budget is used up now: the next one is refused.
    let Err(s) = evict(&c.client, "web-2").await? else { bail!("a second eviction was allowed") };
    assert_eq!(s.code, 429);
    Ok(())
}

#[tokio::test]
async fn a_budget_whose_status_is_behind_its_spec_asks_to_come_back_later() -> Result<()> {
    let c = TestCluster::start().await?;
    pod(&c, "web-1", None, "Running", true).await?;
    budget(&c, "web", json!({"minAvailable": 1}), json!({"observedGeneration": 0, "disruptionsAllowed": 5}))
        .await?;
    let Err(s) = evict(&c.client, "web-1").await? else { bail!("the eviction was allowed") };
    assert_eq!(s.code, 429);
    let details = s.details.context("the Status has details")?;
    assert_eq!(details.retry_after_seconds, 10);
    assert_eq!(
        details.causes[0].message,
        "The disruption budget web is still being processed by the server."
    );
    Ok(())
}

#[tokio::test]
async fn a_pod_with_two_budgets_is_not_evicted() -> Result<()> {
    let c = TestCluster::start().await?;
    pod(&c, "web-1", None, "Running", true).await?;
    budget(&c, "a", json!({"minAvailable": 1}), counts(5, 5, 0)).await?;
    budget(&c, "b", json!({"maxUnavailable": 1}), counts(5, 5, 0)).await?;
    // kube-apiserver answers with a Status whose code is 500 (client-go turns it into an error).
    let answer = evict(&c.client, "web-1").await?;
    let body = match answer {
        Ok(body) => body,
        Err(s) => bail!("expected the Status as the result, got the error {s:?}"),
    };
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["code"], 500);
    assert_eq!(
        body["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
    assert!(exists(&c, "web-1").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn a_dry_run_eviction_deletes_nothing_and_charges_nothing() -> Result<()> {
    let c = TestCluster::start().await?;
    pod(&c, "web-1", None, "Running", true).await?;
    budget(&c, "web", json!({"minAvailable": 1}), counts(1, 2, 1)).await?;
    expect_success(
        evict_with(&c.client, "web-1", json!({"metadata": {"name": "web-1"}}), "?dryRun=All").await?,
    )?;
    let body = json!({"metadata": {"name": "web-1"}, "deleteOptions": {"dryRun": ["All"]}});
    expect_success(evict_with(&c.client, "web-1", body, "").await?)?;
    assert!(exists(&c, "web-1").await?.is_some());
    let status = pdb(&c, "web").await?.status.unwrap_or_default();
    assert_eq!(status.disruptions_allowed, 1);
    assert_eq!(status.disrupted_pods, None);
    Ok(())
}

#[tokio::test]
async fn pending_and_finished_pods_are_evicted_whatever_the_budget_says() -> Result<()> {
    let c = TestCluster::start().await?;
    pod(&c, "pending", None, "Pending", false).await?;
    pod(&c, "done", None, "Succeeded", false).await?;
    budget(&c, "web", json!({"minAvailable": 5}), counts(0, 0, 5)).await?;
    expect_success(evict(&c.client, "pending").await?)?;
    expect_success(evict(&c.client, "done").await?)?;
    assert!(exists(&c, "pending").await?.is_none());
    assert!(exists(&c, "done").await?.is_none());
    assert_eq!(pdb(&c, "web").await?.status.unwrap_or_default().disrupted_pods, None);
    Ok(())
}

#[tokio::test]
async fn unready_pods_go_when_the_budget_is_healthy_or_always_allows_it() -> Result<()> {
    let c = TestCluster::start().await?;
    pod(&c, "sick-1", None, "Running", false).await?;
    pod(&c, "sick-2", None, "Running", false).await?;
    // IfHealthyBudget (the default): the application has its 2 healthy pods, the unready one
    // may go without using up the budget.
    budget(&c, "web", json!({"minAvailable": 2}), counts(0, 2, 2)).await?;
    expect_success(evict(&c.client, "sick-1").await?)?;
    assert!(exists(&c, "sick-1").await?.is_none());
    assert_eq!(pdb(&c, "web").await?.status.unwrap_or_default().disruptions_allowed, 0);

    // Not healthy enough: refused, unless the budget always allows unready pods to go.
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(c.client.clone());
    pdbs.patch_status("web", &PatchParams::default(), &Patch::Merge(json!({"status": counts(0, 1, 2)})))
        .await?;
    let Err(s) = evict(&c.client, "sick-2").await? else { bail!("the eviction was allowed") };
    assert_eq!(s.code, 429);
    let always = json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}});
    pdbs.patch("web", &PatchParams::default(), &Patch::Merge(always)).await?;
    // The spec change is a new generation the (absent) controller would observe.
    let observed = json!({"status": {"observedGeneration": 2}});
    pdbs.patch_status("web", &PatchParams::default(), &Patch::Merge(observed)).await?;
    expect_success(evict(&c.client, "sick-2").await?)?;
    assert!(exists(&c, "sick-2").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn an_evicted_pod_on_a_node_is_marked_as_a_disruption_target_and_terminates_gracefully() -> Result<()> {
    let c = TestCluster::start().await?;
    pod(&c, "web-1", Some("node-1"), "Running", true).await?;
    let body = json!({"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "web-1"},
                      "deleteOptions": {"gracePeriodSeconds": 7}});
    expect_success(evict_with(&c.client, "web-1", body, "").await?)?;
    let p = exists(&c, "web-1").await?.context("a bound pod terminates gracefully")?;
    assert!(p.metadata.deletion_timestamp.is_some());
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(7));
    let conditions = p.status.and_then(|s| s.conditions).unwrap_or_default();
    let target =
        conditions.iter().find(|c| c.type_ == "DisruptionTarget").context("DisruptionTarget condition")?;
    assert_eq!(target.status, "True");
    assert_eq!(target.reason.as_deref(), Some("EvictionByEvictionAPI"));
    assert_eq!(target.message.as_deref(), Some("Eviction API: evicting"));
    Ok(())
}

#[tokio::test]
async fn evictions_of_missing_pods_and_mismatched_names_fail_like_upstream() -> Result<()> {
    let c = TestCluster::start().await?;
    let Err(s) = evict(&c.client, "nope").await? else { bail!("evicted a missing pod") };
    assert_eq!((s.code, s.message.as_str()), (404, "pods \"nope\" not found"));
    pod(&c, "web-1", None, "Running", true).await?;
    let Err(s) = evict_with(&c.client, "web-1", json!({"metadata": {"name": "other"}}), "").await? else {
        bail!("evicted with a mismatched name")
    };
    assert_eq!((s.code, s.message.as_str()), (400, "name in URL does not match name in Eviction object"));
    let Err(s) = evict_with(&c.client, "web-1", json!({"apiVersion": "v1", "kind": "Eviction"}), "").await?
    else {
        bail!("accepted a core/v1 Eviction")
    };
    assert_eq!(s.code, 400);
    Ok(())
}

#[tokio::test]
async fn kube_rs_evict_works_and_discovery_names_the_policy_v1_eviction() -> Result<()> {
    let c = TestCluster::start().await?;
    pod(&c, "web-1", None, "Running", true).await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let status = pods.evict("web-1", &Default::default()).await?;
    assert_eq!(status.code, 201);
    assert!(exists(&c, "web-1").await?.is_none());

    // `kubectl drain` looks for `pods/eviction` of kind Eviction with a group and version.
    let core = c.client.list_core_api_resources("v1").await?;
    let eviction =
        core.resources.iter().find(|r| r.name == "pods/eviction").context("pods/eviction listed")?;
    assert_eq!(eviction.kind, "Eviction");
    assert_eq!((eviction.group.as_deref(), eviction.version.as_deref()), (Some("policy"), Some("v1")));
    assert_eq!(eviction.verbs, ["create"]);
    Ok(())
}
