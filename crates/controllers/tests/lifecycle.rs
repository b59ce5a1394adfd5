//! Object lifecycle controllers against the in-process API server: namespace deletion, the
//! garbage collector (background, foreground, orphan), the default service account and root CA
//! publishers, and leader election.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::{eventually, Harness, DEADLINE};
use corten_apiserver::testing::TestCluster;
use corten_controllers::leader::LeaderElector;
use corten_controllers::{Clock, Config};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CA: &str = "-----BEGIN CERTIFICATE-----\ntest-ca\n-----END CERTIFICATE-----\n";

/// A harness running `names` with the test root CA.
async fn harness(names: &'static [&'static str]) -> Result<Harness> {
    let config = Config { root_ca_pem: CA.into(), ..Config::default() };
    Harness::start_with(names, config, Clock::system()).await
}

/// Waits until `name` no longer exists in `api`.
async fn gone<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Clone + DeserializeOwned + std::fmt::Debug + Resource,
{
    eventually(&format!("{name} to be deleted"), || async {
        Ok(match api.get_opt(name).await? {
            None => Ok(()),
            Some(o) => Err(format!(
                "it still exists (deletionTimestamp {:?}, finalizers {:?})",
                o.meta().deletion_timestamp,
                o.meta().finalizers
            )),
        })
    })
    .await
}

fn from_json<T: DeserializeOwned>(v: serde_json::Value) -> Result<T> {
    Ok(serde_json::from_value(v)?)
}

async fn namespace(client: &Client, name: &str) -> Result<Namespace> {
    let ns = from_json(json!({"metadata": {"name": name}}))?;
    Ok(Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?)
}

fn configmap(name: &str, owners: &[OwnerReference], finalizers: &[&str]) -> Result<ConfigMap> {
    from_json(json!({
        "metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers},
        "data": {"k": "v"}
    }))
}

fn pod(name: &str, owners: &[OwnerReference], finalizers: &[&str]) -> Result<Pod> {
    from_json(json!({
        "metadata": {"name": name, "labels": {"app": "web"}, "ownerReferences": owners, "finalizers": finalizers},
        "spec": {"containers": [{"name": "main", "image": "nginx"}]}
    }))
}

fn deployment(name: &str) -> Result<Deployment> {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": "nginx"}]}
            }
        }
    }))
}

fn replicaset(name: &str, owners: &[OwnerReference]) -> Result<ReplicaSet> {
    from_json(json!({
        "metadata": {"name": name, "ownerReferences": owners},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": "nginx"}]}
            }
        }
    }))
}

/// A controller owner reference to `owner` with `blockOwnerDeletion: true`, as the workload
/// controllers set them.
fn owned_by<K: Resource<DynamicType = ()>>(owner: &K) -> Result<OwnerReference> {
    let r = owner.controller_owner_ref(&()).context("the owner has a name and a uid")?;
    Ok(OwnerReference { block_owner_deletion: Some(true), ..r })
}

fn remove_finalizers() -> Patch<serde_json::Value> {
    Patch::Merge(json!({"metadata": {"finalizers": null}}))
}

// ---------------------------------------------------------------------------------------------
// namespace lifecycle

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_removes_its_configmaps_secrets_pods_and_deployments() -> Result<()> {
    let h = harness(&["namespace"]).await?;
    namespace(&h.client(), "doomed").await?;
    let pp = PostParams::default();
    h.api::<ConfigMap>("doomed").create(&pp, &configmap("settings", &[], &[])?).await?;
    h.api::<Secret>("doomed").create(&pp, &from_json(json!({"metadata": {"name": "token"}}))?).await?;
    h.api::<Pod>("doomed").create(&pp, &pod("web", &[], &[])?).await?;
    h.api::<Deployment>("doomed").create(&pp, &deployment("web")?).await?;

    let namespaces: Api<Namespace> = Api::all(h.client());
    namespaces.delete("doomed", &DeleteParams::default()).await?;
    gone(&namespaces, "doomed").await?;

    let lp = Default::default();
    let maps = h.api::<ConfigMap>("doomed").list(&lp).await?;
    assert!(maps.items.is_empty(), "configmaps remain: {:?}", names(&maps.items));
    let secrets = h.api::<Secret>("doomed").list(&lp).await?;
    assert!(secrets.items.is_empty(), "secrets remain: {:?}", names(&secrets.items));
    let pods = h.api::<Pod>("doomed").list(&lp).await?;
    assert!(pods.items.is_empty(), "pods remain: {:?}", names(&pods.items));
    let deployments = h.api::<Deployment>("doomed").list(&Default::default()).await?;
    assert!(deployments.items.is_empty(), "deployments remain: {:?}", names(&deployments.items));
    Ok(())
}

fn names<K: Resource>(items: &[K]) -> Vec<String> {
    items.iter().map(|o| o.meta().name.clone().unwrap_or_default()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_waits_for_finalizers_and_says_what_remains() -> Result<()> {
    let h = harness(&["namespace"]).await?;
    namespace(&h.client(), "held").await?;
    let maps = h.api::<ConfigMap>("held");
    maps.create(&PostParams::default(), &configmap("kept", &[], &["example.com/hold"])?).await?;
    maps.create(&PostParams::default(), &configmap("plain", &[], &[])?).await?;
    let namespaces: Api<Namespace> = Api::all(h.client());
    namespaces.delete("held", &DeleteParams::default()).await?;

    let condition = |ns: &Namespace, kind: &str| {
        ns.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
            .cloned()
    };
    let ns = eventually("the NamespaceContentRemaining condition", || async {
        let ns = namespaces.get("held").await?;
        Ok(match condition(&ns, "NamespaceContentRemaining") {
            Some(c) if c.status == "True" => Ok(ns),
            other => Err(format!("{other:?}")),
        })
    })
    .await?;
    let remaining = condition(&ns, "NamespaceContentRemaining").context("content remaining")?;
    assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
    assert_eq!(
        remaining.message.as_deref(),
        Some("Some resources are remaining: configmaps. has 1 resource instances")
    );
    let finalizers = condition(&ns, "NamespaceFinalizersRemaining").context("finalizers remaining")?;
    assert_eq!(
        (finalizers.status.as_str(), finalizers.reason.as_deref()),
        ("True", Some("SomeFinalizersRemain"))
    );
    assert_eq!(
        finalizers.message.as_deref(),
        Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
    );
    let discovery = condition(&ns, "NamespaceDeletionDiscoveryFailure").context("discovery condition")?;
    assert_eq!(
        (discovery.status.as_str(), discovery.reason.as_deref()),
        ("False", Some("ResourcesDiscovered"))
    );
    assert_eq!(ns.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Terminating"));
    assert_eq!(ns.spec.as_ref().and_then(|s| s.finalizers.clone()), Some(vec!["kubernetes".to_string()]));
    assert!(maps.get_opt("plain").await?.is_none(), "configmaps without finalizers are deleted at once");

    maps.patch("kept", &PatchParams::default(), &remove_finalizers()).await?;
    gone(&namespaces, "held").await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// garbage collector

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletion_deletes_dependents_after_the_owner() -> Result<()> {
    let h = harness(&["garbage-collector"]).await?;
    let (deploys, sets, pods) =
        (h.api::<Deployment>("default"), h.api::<ReplicaSet>("default"), h.api::<Pod>("default"));
    let pp = PostParams::default();
    let owner = deploys.create(&pp, &deployment("web")?).await?;
    let rs = sets.create(&pp, &replicaset("web-1", &[owned_by(&owner)?])?).await?;
    pods.create(&pp, &pod("web-1-a", &[owned_by(&rs)?], &[])?).await?;

    deploys.delete("web", &DeleteParams::background()).await?;
    assert!(deploys.get_opt("web").await?.is_none(), "a background delete removes the owner at once");
    gone(&sets, "web-1").await?;
    gone(&pods, "web-1-a").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_keeps_living_owners_and_loses_only_the_reference_to_a_deleted_one() -> Result<()> {
    let h = harness(&["garbage-collector"]).await?;
    let maps = h.api::<ConfigMap>("default");
    let pp = PostParams::default();
    let first = maps.create(&pp, &configmap("first", &[], &[])?).await?;
    let second = maps.create(&pp, &configmap("second", &[], &[])?).await?;
    let refs = [owned_by(&first)?, OwnerReference { controller: None, ..owned_by(&second)? }];
    maps.create(&pp, &configmap("shared", &refs, &[])?).await?;

    maps.delete("first", &DeleteParams::background()).await?;
    let shared = eventually("shared to reference only its remaining owner", || async {
        let shared = maps.get("shared").await?;
        let uids: Vec<String> = shared.owner_references().iter().map(|r| r.uid.clone()).collect();
        Ok(if uids == [second.uid().unwrap_or_default()] {
            Ok(shared)
        } else {
            Err(format!("owner uids {uids:?}"))
        })
    })
    .await?;
    assert!(shared.metadata.deletion_timestamp.is_none(), "an object with a living owner is not deleted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_whose_owner_never_existed_is_collected() -> Result<()> {
    let h = harness(&["garbage-collector"]).await?;
    let maps = h.api::<ConfigMap>("default");
    let phantom = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "phantom".into(),
        uid: "00000000-0000-0000-0000-000000000001".into(),
        ..OwnerReference::default()
    };
    maps.create(&PostParams::default(), &configmap("orphaned", &[phantom], &[])?).await?;
    gone(&maps, "orphaned").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_with_the_same_name_but_another_uid_does_not_keep_a_dependent() -> Result<()> {
    let h = harness(&["garbage-collector"]).await?;
    let maps = h.api::<ConfigMap>("default");
    let pp = PostParams::default();
    let old = maps.create(&pp, &configmap("owner", &[], &[])?).await?;
    let stale_ref = owned_by(&old)?;
    maps.delete("owner", &DeleteParams::default()).await?;
    maps.create(&pp, &configmap("owner", &[], &[])?).await?;
    maps.create(&pp, &configmap("dependent", &[stale_ref], &[])?).await?;
    gone(&maps, "dependent").await?;
    assert!(maps.get_opt("owner").await?.is_some(), "the new owner is not touched");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespaced_dependent_of_a_cluster_scoped_owner_goes_with_it() -> Result<()> {
    let h = harness(&["garbage-collector"]).await?;
    let roles: Api<ClusterRole> = Api::all(h.client());
    let role =
        roles.create(&PostParams::default(), &from_json(json!({"metadata": {"name": "viewer"}}))?).await?;
    let maps = h.api::<ConfigMap>("default");
    maps.create(&PostParams::default(), &configmap("viewer-config", &[owned_by(&role)?], &[])?).await?;
    roles.delete("viewer", &DeleteParams::background()).await?;
    gone(&maps, "viewer-config").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_deletes_dependents_before_the_owner() -> Result<()> {
    let h = harness(&["garbage-collector"]).await?;
    let (deploys, sets, pods) =
        (h.api::<Deployment>("default"), h.api::<ReplicaSet>("default"), h.api::<Pod>("default"));
    let pp = PostParams::default();
    let owner = deploys.create(&pp, &deployment("web")?).await?;
    let rs = sets.create(&pp, &replicaset("web-1", &[owned_by(&owner)?])?).await?;
    // The pod holds the chain until its finalizer is removed, so the order can be seen.
    pods.create(&pp, &pod("web-1-a", &[owned_by(&rs)?], &["example.com/hold"])?).await?;

    deploys.delete("web", &DeleteParams::foreground()).await?;
    eventually("the pod to be marked for deletion", || async {
        let pod = pods.get("web-1-a").await?;
        Ok(if pod.metadata.deletion_timestamp.is_some() {
            Ok(())
        } else {
            Err("no deletionTimestamp".into())
        })
    })
    .await?;
    let rs = sets.get("web-1").await?;
    assert!(rs.metadata.deletion_timestamp.is_some(), "the replicaset is being deleted");
    assert!(rs.finalizers().iter().any(|f| f == "foregroundDeletion"), "the replicaset waits for its pods");
    let owner = deploys.get("web").await?;
    assert!(
        owner.finalizers().iter().any(|f| f == "foregroundDeletion"),
        "the owner waits for its dependents"
    );

    pods.patch("web-1-a", &PatchParams::default(), &remove_finalizers()).await?;
    gone(&pods, "web-1-a").await?;
    gone(&sets, "web-1").await?;
    gone(&deploys, "web").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_keeps_dependents_and_removes_their_owner_references() -> Result<()> {
    let h = harness(&["garbage-collector"]).await?;
    let (deploys, sets, maps) =
        (h.api::<Deployment>("default"), h.api::<ReplicaSet>("default"), h.api::<ConfigMap>("default"));
    let pp = PostParams::default();
    let owner = deploys.create(&pp, &deployment("web")?).await?;
    let other = maps.create(&pp, &configmap("other-owner", &[], &[])?).await?;
    sets.create(&pp, &replicaset("web-1", &[owned_by(&owner)?])?).await?;
    let both = [owned_by(&owner)?, OwnerReference { controller: None, ..owned_by(&other)? }];
    maps.create(&pp, &configmap("web-config", &both, &[])?).await?;

    deploys.delete("web", &DeleteParams::orphan()).await?;
    gone(&deploys, "web").await?;
    let rs = sets.get("web-1").await?;
    assert!(rs.metadata.deletion_timestamp.is_none(), "the orphaned replicaset lives on");
    assert!(rs.owner_references().is_empty(), "the replicaset lost its owner: {:?}", rs.owner_references());
    let cm = maps.get("web-config").await?;
    let uids: Vec<&str> = cm.owner_references().iter().map(|r| r.uid.as_str()).collect();
    assert_eq!(
        uids,
        [other.uid().unwrap_or_default().as_str()],
        "only the reference to the deleted owner goes"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// service accounts and the root CA

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_a_default_service_account_that_comes_back_after_deletion() -> Result<()> {
    let h = harness(&["serviceaccount"]).await?;
    namespace(&h.client(), "fresh").await?;
    for ns in ["fresh", "default", "kube-system"] {
        let accounts = h.api::<ServiceAccount>(ns);
        eventually(&format!("the default service account in {ns}"), || async {
            Ok(accounts.get_opt("default").await?.map(drop).ok_or_else(|| "none".to_string()))
        })
        .await?;
    }
    let accounts = h.api::<ServiceAccount>("fresh");
    let first = accounts.get("default").await?.uid();
    accounts.delete("default", &DeleteParams::default()).await?;
    eventually("a new default service account", || async {
        Ok(match accounts.get_opt("default").await? {
            Some(sa) if sa.uid() != first => Ok(()),
            other => Err(format!("{:?}", other.map(|sa| sa.uid()))),
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_ca_configmap_is_published_and_restored_when_deleted_or_changed() -> Result<()> {
    let h = harness(&["serviceaccount"]).await?;
    namespace(&h.client(), "fresh").await?;
    let maps = h.api::<ConfigMap>("fresh");
    let published = || async {
        Ok(match maps.get_opt("kube-root-ca.crt").await? {
            Some(cm) if cm.data.as_ref().and_then(|d| d.get("ca.crt")).map(String::as_str) == Some(CA) => {
                if cm.data.as_ref().is_some_and(|d| d.len() == 1) {
                    Ok(cm)
                } else {
                    Err(format!("extra keys: {:?}", cm.data))
                }
            }
            other => Err(format!("{:?}", other.map(|cm| cm.data))),
        })
    };
    let first = eventually("kube-root-ca.crt with the cluster CA", published).await?;
    assert!(first.annotations().contains_key("kubernetes.io/description"));

    maps.delete("kube-root-ca.crt", &DeleteParams::default()).await?;
    eventually("kube-root-ca.crt to be recreated", || async {
        let cm = published().await?;
        Ok(match cm {
            Ok(cm) if cm.uid() != first.uid() => Ok(()),
            Ok(_) => Err("the old configmap".into()),
            Err(seen) => Err(seen),
        })
    })
    .await?;

    let tamper = Patch::Merge(json!({"data": {"ca.crt": "forged", "extra": "x"}}));
    maps.patch("kube-root-ca.crt", &PatchParams::default(), &tamper).await?;
    eventually("kube-root-ca.crt to be reset", published).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// leader election

/// Records which candidates run their work, and the most that ever ran at once.
#[derive(Default)]
struct Terms {
    running: Mutex<Vec<String>>,
    max_at_once: AtomicUsize,
    started: AtomicUsize,
}

impl Terms {
    fn leaders(&self) -> Vec<String> {
        self.running.lock().clone()
    }
}

/// Removes a candidate from the running list when its work ends or is dropped.
struct Running(Arc<Terms>, String);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.lock().retain(|n| *n != self.1);
    }
}

fn candidate(
    client: &Client,
    identity: &str,
    terms: &Arc<Terms>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let elector = LeaderElector::new(client.clone(), "corten-test", identity).timings(
        Duration::from_secs(2),
        Duration::from_secs(1),
        Duration::from_millis(100),
    );
    let (terms, identity) = (terms.clone(), identity.to_string());
    tokio::spawn(async move {
        let work = |token: CancellationToken| {
            let (terms, identity) = (terms.clone(), identity.clone());
            async move {
                let now = {
                    let mut running = terms.running.lock();
                    running.push(identity.clone());
                    running.len()
                };
                let _running = Running(terms.clone(), identity);
                terms.max_at_once.fetch_max(now, Ordering::SeqCst);
                terms.started.fetch_add(1, Ordering::SeqCst);
                token.cancelled().await;
            }
        };
        if let Err(e) = elector.run(shutdown, work).await {
            panic!("leader election failed: {e}");
        }
    })
}

async fn one_leader(terms: &Terms, not: Option<&str>) -> Result<String> {
    eventually("exactly one leader", || async {
        let leaders = terms.leaders();
        Ok(match leaders.as_slice() {
            [one] if Some(one.as_str()) != not => Ok(one.clone()),
            other => Err(format!("{other:?}")),
        })
    })
    .await
}

async fn lease(client: &Client) -> Result<Lease> {
    Ok(Api::<Lease>::namespaced(client.clone(), "kube-system").get("corten-test").await?)
}

/// Waits for the lease holder to renew it `n` times.
async fn renewals(client: &Client, n: usize) -> Result<()> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    while seen.len() <= n {
        let renew = lease(client).await?.spec.and_then(|s| s.renew_time).map(|t| t.0);
        if seen.last() != Some(&renew) {
            seen.push(renew);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("expected {n} renewals of the lease within {DEADLINE:?}; saw renew times {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_candidates_one_leads_and_the_other_takes_over_when_it_stops() -> Result<()> {
    let cluster = TestCluster::start().await?;
    let terms = Arc::new(Terms::default());
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let a = candidate(&cluster.client, "a", &terms, stop_a.clone());
    let b = candidate(&cluster.client, "b", &terms, stop_b.clone());

    let first = one_leader(&terms, None).await?;
    let held = lease(&cluster.client).await?.spec.context("lease spec")?;
    assert_eq!(held.holder_identity.as_deref(), Some(first.as_str()));
    assert_eq!(held.lease_duration_seconds, Some(2));
    assert!(held.acquire_time.is_some());
    // The other candidate keeps trying while the leader renews; it must not get in.
    renewals(&cluster.client, 3).await?;
    assert_eq!(terms.leaders(), [first.as_str()]);

    let (stop_first, first_task) = if first == "a" { (stop_a, a) } else { (stop_b, b) };
    stop_first.cancel();
    first_task.await?;
    let second = one_leader(&terms, Some(&first)).await?;
    let held = lease(&cluster.client).await?.spec.context("lease spec")?;
    assert_eq!(held.holder_identity.as_deref(), Some(second.as_str()));
    assert_eq!(held.lease_transitions, Some(1), "released by the first leader, taken by the second");
    assert_eq!(terms.max_at_once.load(Ordering::SeqCst), 1, "never two leaders at once");
    assert_eq!(terms.started.load(Ordering::SeqCst), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_vanishes_without_releasing_is_replaced_after_the_lease_expires() -> Result<()> {
    let cluster = TestCluster::start().await?;
    let terms = Arc::new(Terms::default());
    let first = candidate(&cluster.client, "a", &terms, CancellationToken::new());
    assert_eq!(one_leader(&terms, None).await?, "a");
    let b = CancellationToken::new();
    let _second = candidate(&cluster.client, "b", &terms, b.clone());
    renewals(&cluster.client, 2).await?;
    assert_eq!(terms.leaders(), ["a".to_string()]);

    // A crash: no release, the lease just stops being renewed.
    first.abort();
    assert!(first.await.is_err_and(|e| e.is_cancelled()));
    assert_eq!(one_leader(&terms, Some("a")).await?, "b");
    let held = lease(&cluster.client).await?.spec.context("lease spec")?;
    assert_eq!(held.holder_identity.as_deref(), Some("b"));
    assert_eq!(held.lease_transitions, Some(1));
    b.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stops_its_work_and_competes_again() -> Result<()> {
    let cluster = TestCluster::start().await?;
    let terms = Arc::new(Terms::default());
    let stop = CancellationToken::new();
    let _a = candidate(&cluster.client, "a", &terms, stop.clone());
    assert_eq!(one_leader(&terms, None).await?, "a");

    // Another process takes the lease (as after a partition): a must notice on its next renewal.
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "kube-system");
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now());
    let take = json!({"spec": {"holderIdentity": "intruder", "renewTime": now, "leaseDurationSeconds": 2}});
    leases.patch("corten-test", &PatchParams::default(), &Patch::Merge(take)).await?;
    eventually("a to stop working", || async {
        Ok(if terms.leaders().is_empty() { Ok(()) } else { Err(format!("{:?}", terms.leaders())) })
    })
    .await?;

    // The intruder never renews: once its lease expires, a leads again.
    assert_eq!(one_leader(&terms, None).await?, "a");
    assert_eq!(terms.started.load(Ordering::SeqCst), 2);
    let held = lease(&cluster.client).await?.spec.context("lease spec")?;
    assert_eq!(held.holder_identity.as_deref(), Some("a"));
    stop.cancel();
    Ok(())
}
