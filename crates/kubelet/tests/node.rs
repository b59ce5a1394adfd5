//! Node registration, status and Lease.

mod common;

use anyhow::{Context as _, Result};
use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

#[tokio::test]
async fn the_node_registers_with_machine_capacity_and_turns_ready() -> Result<()> {
    let f = Fixture::started().await?;
    let nodes: Api<Node> = Api::all(f.cluster.client.clone());
    let node = eventually("node-1 Ready", || async {
        Ok(match nodes.get_opt(NODE).await? {
            Some(n) => {
                let ready = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True").cloned());
                match ready {
                    Some(_) => Ok(n),
                    None => Err(serde_json::to_string(&n.status)?),
                }
            }
            None => Err("no node".into()),
        })
    })
    .await?;
    let status = node.status.clone().unwrap_or_default();
    let capacity = status.capacity.clone().unwrap_or_default();
    assert_eq!(capacity.get("pods").map(|q| q.0.as_str()), Some("110"));
    for r in ["cpu", "memory", "ephemeral-storage"] {
        assert!(capacity.get(r).is_some_and(|q| q.0 != "0"), "capacity {r} missing: {capacity:?}");
    }
    assert!(status.allocatable.is_some_and(|a| a.contains_key("cpu")));
    let addresses = status.addresses.unwrap_or_default();
    assert!(addresses.iter().any(|a| a.type_ == "InternalIP" && a.address == "10.0.0.5"), "{addresses:?}");
    assert!(addresses.iter().any(|a| a.type_ == "Hostname" && a.address == NODE));
    let info = status.node_info.unwrap_or_default();
    assert!(info.kubelet_version.starts_with("v1.33."), "{}", info.kubelet_version);
    assert_eq!(info.container_runtime_version, "fake://1.0.0");
    assert_eq!((info.operating_system.as_str(), info.architecture.is_empty()), ("linux", false));
    let conditions = status.conditions.unwrap_or_default();
    let by = |t: &str| conditions.iter().find(|c| c.type_ == t).map(|c| (c.status.clone(), c.reason.clone()));
    assert_eq!(by("Ready"), Some(("True".into(), Some("KubeletReady".into()))));
    assert_eq!(by("MemoryPressure"), Some(("False".into(), Some("KubeletHasSufficientMemory".into()))));
    assert_eq!(by("DiskPressure"), Some(("False".into(), Some("KubeletHasNoDiskPressure".into()))));
    assert_eq!(by("PIDPressure"), Some(("False".into(), Some("KubeletHasSufficientPID".into()))));
    assert_eq!(by("NetworkUnavailable").map(|c| c.0), Some("False".into()));
    let spec = node.spec.unwrap_or_default();
    assert_eq!(spec.pod_cidr.as_deref(), Some("10.42.0.0/24"));
    let labels = node.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("kubernetes.io/hostname").map(String::as_str), Some(NODE));
    assert_eq!(labels.get("kubernetes.io/os").map(String::as_str), Some("linux"));

    let leases: Api<Lease> = Api::namespaced(f.cluster.client.clone(), "kube-node-lease");
    let lease = eventually("the node lease", || async {
        Ok(leases.get_opt(NODE).await?.ok_or_else(|| "no lease".to_string()))
    })
    .await?;
    let spec = lease.spec.unwrap_or_default();
    assert_eq!(spec.holder_identity.as_deref(), Some(NODE));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let first = spec.renew_time.context("renewTime")?;
    eventually("the lease renewed", || async {
        let t = leases.get(NODE).await?.spec.and_then(|s| s.renew_time);
        Ok(if t.as_ref().is_some_and(|t| t.0 > first.0) { Ok(()) } else { Err(format!("{t:?}")) })
    })
    .await
}

#[tokio::test]
async fn the_node_is_not_ready_with_a_message_while_the_runtime_network_is_not_ready() -> Result<()> {
    let mut f = Fixture::new().await?;
    f.runtime.set_conditions(true, false);
    f.start_kubelet();
    let nodes: Api<Node> = Api::all(f.cluster.client.clone());
    let ready = |want: &'static str| {
        let nodes = nodes.clone();
        move || {
            let nodes = nodes.clone();
            async move {
                let n = nodes.get_opt(NODE).await?;
                let c = n
                    .and_then(|n| n.status)
                    .and_then(|s| s.conditions)
                    .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"));
                Ok(match c {
                    Some(c) if c.status == want => Ok(c),
                    other => Err(format!("{other:?}")),
                })
            }
        }
    };
    let not_ready = eventually("Ready=False", ready("False")).await?;
    assert_eq!(not_ready.reason.as_deref(), Some("KubeletNotReady"));
    let message = not_ready.message.unwrap_or_default();
    assert!(message.contains("container runtime network not ready: NetworkReady=false"), "{message}");
    f.runtime.set_conditions(true, true);
    let ready = eventually("Ready=True after the network came up", ready("True")).await?;
    assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
    Ok(())
}

#[tokio::test]
async fn a_deleted_node_object_is_registered_again() -> Result<()> {
    let f = Fixture::started().await?;
    let nodes: Api<Node> = Api::all(f.cluster.client.clone());
    let first = eventually("node-1 registered", || async {
        Ok(nodes.get_opt(NODE).await?.ok_or_else(|| "no node".to_string()))
    })
    .await?;
    nodes.delete(NODE, &Default::default()).await?;
    let old_uid = first.metadata.uid.clone();
    eventually("node-1 registered again", || async {
        Ok(match nodes.get_opt(NODE).await? {
            Some(n)
                if n.metadata.uid != old_uid && n.status.as_ref().is_some_and(|s| s.conditions.is_some()) =>
            {
                Ok(())
            }
            other => Err(format!("{:?}", other.map(|n| n.metadata.uid))),
        })
    })
    .await
}
