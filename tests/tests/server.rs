//! `corten server` as a process: readiness over HTTPS, clean stop on SIGTERM, restart on the same
//! data dir with the data and certificates kept, and clear failures on bad usage.

use corten_tests::{free_loopback_addr, run_corten, Server};
use nix::sys::signal::Signal;

#[tokio::test]
async fn server_becomes_ready_stops_on_sigterm_and_restarts_with_its_data() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let addr = free_loopback_addr()?;

    let mut server = Server::start_with(data.path(), addr, &["--disable-agent"])?;
    server.wait_ready().await?;
    let kubectl = server.kubectl("")?;
    let verbose = kubectl.ok(&["get", "--raw", "/readyz?verbose"]).await?;
    assert!(verbose.contains("[+]etcd ok") && verbose.contains("readyz check passed"), "{verbose}");
    kubectl.ok(&["create", "configmap", "kept", "--from-literal=k=v"]).await?;
    let ca_before = std::fs::read(data.path().join("tls/ca.crt"))?;
    assert!(server.logs().contains("export KUBECONFIG="), "the server says how to use kubectl");

    server.signal(Signal::SIGTERM)?;
    let (status, logs) = server.wait_exit().await?;
    assert!(status.success(), "exit status {status}; logs:\n{logs}");
    assert!(logs.contains("shutting down") && logs.contains("stopped"), "logs:\n{logs}");

    let mut again = Server::start_with(data.path(), addr, &["--disable-agent"])?;
    again.wait_ready().await?;
    let value = again.kubectl("")?.ok(&["get", "configmap", "kept", "-o", "jsonpath={.data.k}"]).await?;
    assert_eq!(value, "v", "data survives a restart");
    assert_eq!(std::fs::read(data.path().join("tls/ca.crt"))?, ca_before, "the CA is reused");
    again.signal(Signal::SIGINT)?;
    let (status, logs) = again.wait_exit().await?;
    assert!(status.success(), "exit status {status} after restart; logs:\n{logs}");
    Ok(())
}

/// An anonymous HTTPS GET with curl (no client certificate, no token): status code and body.
async fn anonymous_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let out = tokio::process::Command::new("curl")
        .args(["-sk", "-w", "\n%{http_code}", &format!("https://{addr}{path}")])
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("running curl (install Debian's curl): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) =
        text.rsplit_once('\n').ok_or_else(|| anyhow::anyhow!("no status from curl: {text}"))?;
    Ok((code.trim().parse()?, body.to_string()))
}

#[tokio::test]
async fn anonymous_requests_get_401_except_health_and_version() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut server = Server::start(data.path())?;
    server.wait_ready().await?;
    for path in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(anonymous_get(server.addr(), path).await?, (200, "ok".to_string()), "{path}");
    }
    let (code, version) = anonymous_get(server.addr(), "/version").await?;
    assert_eq!(code, 200);
    assert!(version.contains("\"minor\":\"33\""), "{version}");
    for path in ["/api/v1/namespaces", "/apis", "/openapi/v2", "/metrics"] {
        let (code, body) = anonymous_get(server.addr(), path).await?;
        assert_eq!(code, 401, "{path}: {body}");
        assert!(body.contains("\"reason\":\"Unauthorized\""), "{path}: {body}");
    }
    Ok(())
}

#[tokio::test]
async fn an_unusable_data_dir_exits_non_zero_naming_the_path() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"")?;
    // A directory below a regular file cannot be created, even by root.
    let data_dir = file.join("data");
    let data_dir = data_dir.to_str().expect("temp paths are utf-8");
    let port = free_loopback_addr()?.port().to_string();

    let (status, stderr) =
        run_corten(&["server", "--data-dir", data_dir, "--bind-address", "127.0.0.1", "--https-port", &port])
            .await?;
    assert!(!status.success(), "stderr:\n{stderr}");
    assert!(stderr.contains(data_dir), "the error must name {data_dir}; stderr:\n{stderr}");
    assert!(stderr.contains("--data-dir"), "the error must say what to do; stderr:\n{stderr}");
    Ok(())
}

#[tokio::test]
async fn an_api_port_in_use_exits_non_zero_naming_the_address() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?;
    let data_dir = data.path().to_str().expect("temp paths are utf-8");
    let port = addr.port().to_string();

    let (status, stderr) =
        run_corten(&["server", "--data-dir", data_dir, "--bind-address", "127.0.0.1", "--https-port", &port])
            .await?;
    assert!(!status.success(), "stderr:\n{stderr}");
    assert!(stderr.contains(&addr.to_string()), "the error must name {addr}; stderr:\n{stderr}");
    assert!(stderr.contains("--https-port"), "the error must say what to do; stderr:\n{stderr}");
    Ok(())
}

#[tokio::test]
async fn an_unknown_subcommand_exits_non_zero_with_usage() -> anyhow::Result<()> {
    let (status, stderr) = run_corten(&["frobnicate"]).await?;
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("Usage"), "stderr:\n{stderr}");
    Ok(())
}
