//! Pods for real: `corten server` with its embedded kubelet and its own containerd runs what
//! kubectl asks for — the scheduler binds, the controllers roll out, runc runs busybox, the CNI
//! bridge gives pods addresses the host can reach. Needs root and Debian's containerd, runc and
//! CNI plugins, and the images of `make images`; `make test` provides them.

use std::time::Duration;

use anyhow::{ensure, Context};
use corten_tests::{ctr_containers, eventually, Kubectl, Server};

/// How long pods may take to start (containerd's first sandbox includes image unpacking).
const POD_DEADLINE: Duration = Duration::from_secs(120);

/// Pods of `selector` as `name phase podIP ready` lines.
async fn pods(k: &Kubectl, selector: &str) -> anyhow::Result<Vec<(String, String, String, String)>> {
    let out = k
        .ok(&[
            "get",
            "pods",
            "-l",
            selector,
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.podIP} {.status.containerStatuses[0].ready}{"\n"}{end}"#,
        ])
        .await?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ').map(str::to_string);
            Some((f.next()?, f.next()?, f.next().unwrap_or_default(), f.next().unwrap_or_default()))
        })
        .collect())
}

#[tokio::test]
async fn a_deployment_runs_real_pods_that_the_host_can_reach_and_deleting_it_leaves_no_containers(
) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut server = Server::start_node(data.path(), "corten-e2e", "10.42.0.0/24")?;
    server.wait_ready().await?;
    let k = server.kubectl("")?;

    let node = eventually("node corten-e2e Ready", POD_DEADLINE, || async {
        let out = k
            .run(&[
                "get",
                "node",
                "corten-e2e",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])
            .await?;
        Ok(if out.stdout.trim() == "True" { Ok(()) } else { Err(format!("{}{}", out.stdout, out.stderr)) })
    })
    .await;
    node.with_context(|| format!("server logs:\n{}", server.logs()))?;

    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=2",
        "--",
        "httpd",
        "-f",
        "-p",
        "8080",
    ])
    .await?;
    let running = eventually("2 web pods Running and ready", POD_DEADLINE, || async {
        let pods = pods(&k, "app=web").await?;
        let ready: Vec<_> = pods.iter().filter(|p| p.1 == "Running" && p.3 == "true").cloned().collect();
        Ok(if ready.len() == 2 { Ok(ready) } else { Err(format!("{pods:?}")) })
    })
    .await
    .with_context(|| format!("server logs:\n{}", server.logs()))?;
    for (name, _, ip, _) in &running {
        ensure!(
            ip.starts_with("10.42.0."),
            "pod {name} has IP {ip:?}, not one of the node's pod CIDR 10.42.0.0/24"
        );
        // busybox httpd answers (404 for a missing index is an answer): node-to-pod traffic works.
        // Ready (no probe) means started, not listening yet, so the first tries may be refused.
        eventually(&format!("pod {name} at {ip}:8080 to answer HTTP"), Duration::from_secs(30), || async {
            let out = tokio::process::Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"])
                .arg(format!("http://{ip}:8080/"))
                .output()
                .await
                .context("running curl")?;
            let code = String::from_utf8_lossy(&out.stdout).to_string();
            Ok(if code.len() == 3 && code != "000" { Ok(()) } else { Err(format!("curl: {code:?}")) })
        })
        .await?;
    }
    let rollout = k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]).await?;
    ensure!(rollout.contains("successfully rolled out"), "{rollout}");

    k.ok(&["delete", "deployment", "web"]).await?;
    eventually("the web pods gone", POD_DEADLINE, || async {
        let pods = pods(&k, "app=web").await?;
        Ok(if pods.is_empty() { Ok(()) } else { Err(format!("{pods:?}")) })
    })
    .await?;
    let socket = server.containerd_socket();
    eventually("no containers left in containerd", POD_DEADLINE, || async {
        let left = ctr_containers(&socket).await?;
        Ok(if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) })
    })
    .await?;
    // A clean stop also stops the server's containerd (a killed server would leave it running).
    server.signal(nix::sys::signal::Signal::SIGTERM)?;
    let (status, logs) = server.wait_exit().await?;
    ensure!(status.success(), "corten server exited with {status}; logs:\n{logs}");
    Ok(())
}
