//! `kubectl drain`, `cordon` and `uncordon` against the real binary: evictions go through the
//! `pods/eviction` subresource and honour PodDisruptionBudgets whose status the disruption
//! controller computes. The server runs without its agent, so the node is an API object and
//! the test plays the kubelet by marking pods Running and Ready through the status subresource.

use anyhow::{ensure, Context};
use corten_tests::{until_some, Kubectl, Server};

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: worker-1
"#;

/// Two replicas bound to `worker-1` that tolerate its taints (no kubelet keeps it Ready).
const REPLICA_SET: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      nodeName: worker-1
      tolerations:
      - {operator: Exists, effect: NoExecute}
      containers:
      - name: main
        image: busybox:1.36
"#;

const BUDGET: &str = r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 2
  selector:
    matchLabels: {app: web}
"#;

/// Waits until the budget's status reads `want` (`observedGeneration currentHealthy
/// disruptionsAllowed`).
async fn budget_reads(kubectl: &Kubectl, want: &str) -> anyhow::Result<()> {
    let fields = "{.status.observedGeneration} {.status.currentHealthy} {.status.disruptionsAllowed}";
    until_some(&format!("the budget status {want:?}"), || async {
        let got = kubectl.ok(&["get", "pdb", "web", "-o", &format!("jsonpath={fields}")]).await?;
        Ok((got.trim() == want).then_some(()))
    })
    .await
}

async fn unschedulable(kubectl: &Kubectl) -> anyhow::Result<String> {
    kubectl.ok(&["get", "node", "worker-1", "-o", "jsonpath={.spec.unschedulable}"]).await
}

#[tokio::test]
async fn drain_is_held_back_by_a_disruption_budget_and_proceeds_once_it_allows() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut server = Server::start(data.path())?;
    server.wait_ready().await?;
    let kubectl = server.kubectl("")?;

    kubectl.ok_stdin(&["create", "-f", "-"], NODE).await?;
    kubectl.ok_stdin(&["create", "-f", "-"], REPLICA_SET).await?;
    let pods = until_some("two web pods", || async {
        let out =
            kubectl.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"]).await?;
        let names: Vec<String> = out.split_whitespace().map(String::from).collect();
        Ok((names.len() == 2).then_some(names))
    })
    .await?;
    let running = r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#;
    for pod in &pods {
        kubectl.ok(&["patch", "pod", pod, "--subresource=status", "--type=merge", "-p", running]).await?;
    }
    kubectl.ok_stdin(&["create", "-f", "-"], BUDGET).await?;
    budget_reads(&kubectl, "1 2 0").await?;

    // Both pods are needed: the drain cordons the node, then every eviction is refused.
    let drain = ["drain", "worker-1", "--ignore-daemonsets", "--grace-period=0", "--timeout=6s"];
    let out = kubectl.run(&drain).await?;
    let printed = format!("{}{}", out.stdout, out.stderr);
    ensure!(!out.ok(), "the drain succeeded despite the budget:\n{printed}");
    ensure!(printed.contains("node/worker-1 cordoned"), "no cordon reported:\n{printed}");
    ensure!(
        printed.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "the budget's refusal is not shown:\n{printed}"
    );
    ensure!(unschedulable(&kubectl).await?.trim() == "true", "the node is not cordoned");
    for pod in &pods {
        kubectl.ok(&["get", "pod", pod]).await.with_context(|| format!("{pod} was evicted"))?;
    }

    // With no pod required the drain evicts both.
    kubectl.ok(&["patch", "pdb", "web", "--type=merge", "-p", r#"{"spec":{"minAvailable":0}}"#]).await?;
    budget_reads(&kubectl, "2 2 2").await?;
    let out = kubectl.run(&drain).await?;
    let printed = format!("{}{}", out.stdout, out.stderr);
    ensure!(out.ok(), "the drain failed:\n{printed}");
    for pod in &pods {
        ensure!(printed.contains(&format!("pod/{pod} evicted")), "{pod} not reported evicted:\n{printed}");
        let gone = kubectl.run(&["get", "pod", pod]).await?;
        ensure!(gone.stderr.contains("NotFound"), "{pod} still exists: {}{}", gone.stdout, gone.stderr);
    }
    ensure!(printed.contains("node/worker-1 drained"), "no drained report:\n{printed}");

    // cordon and uncordon only flip spec.unschedulable.
    let out = kubectl.ok(&["uncordon", "worker-1"]).await?;
    ensure!(out.contains("node/worker-1 uncordoned"), "uncordon printed {out}");
    ensure!(unschedulable(&kubectl).await?.trim().is_empty(), "the node is still unschedulable");
    let out = kubectl.ok(&["cordon", "worker-1"]).await?;
    ensure!(out.contains("node/worker-1 cordoned"), "cordon printed {out}");
    ensure!(unschedulable(&kubectl).await?.trim() == "true", "the node is not unschedulable");
    Ok(())
}
