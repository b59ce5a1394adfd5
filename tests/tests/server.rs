//! `corten server` as a process: readiness, clean stop on SIGTERM, restart on the same data dir,
//! and clear failures on bad usage.

use corten_tests::{free_loopback_addr, http_get, run_corten, Server};
use nix::sys::signal::Signal;

#[tokio::test]
async fn server_becomes_ready_stops_on_sigterm_and_restarts_on_the_same_data_dir() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;

    let mut server = Server::start(data.path())?;
    server.wait_ready().await?;
    assert_eq!(http_get(server.health_addr(), "/healthz").await?, (200, "ok".to_string()));
    let (code, body) = http_get(server.health_addr(), "/readyz?verbose").await?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("[+]store ok"), "{body}");

    server.signal(Signal::SIGTERM)?;
    let (status, logs) = server.wait_exit().await?;
    assert!(status.success(), "exit status {status}; logs:\n{logs}");
    assert!(logs.contains("shutting down"), "logs:\n{logs}");
    assert!(logs.contains("stopped"), "logs:\n{logs}");
    assert!(std::fs::read_dir(data.path())?.next().is_some(), "the store wrote nothing to its data dir");

    let mut again = Server::start(data.path())?;
    again.wait_ready().await?;
    again.signal(Signal::SIGINT)?;
    let (status, logs) = again.wait_exit().await?;
    assert!(status.success(), "exit status {status} after restart; logs:\n{logs}");
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
    let health = free_loopback_addr()?.to_string();

    let (status, stderr) = run_corten(&["server", "--data-dir", data_dir, "--health-addr", &health]).await?;
    assert!(!status.success(), "stderr:\n{stderr}");
    assert!(stderr.contains(data_dir), "the error must name {data_dir}; stderr:\n{stderr}");
    assert!(stderr.contains("--data-dir"), "the error must say what to do; stderr:\n{stderr}");
    Ok(())
}

#[tokio::test]
async fn a_health_port_in_use_exits_non_zero_naming_the_address() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let data_dir = data.path().to_str().expect("temp paths are utf-8");

    let (status, stderr) = run_corten(&["server", "--data-dir", data_dir, "--health-addr", &addr]).await?;
    assert!(!status.success(), "stderr:\n{stderr}");
    assert!(stderr.contains(&addr), "the error must name {addr}; stderr:\n{stderr}");
    Ok(())
}

#[tokio::test]
async fn an_unknown_subcommand_exits_non_zero_with_usage() -> anyhow::Result<()> {
    let (status, stderr) = run_corten(&["frobnicate"]).await?;
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("Usage"), "stderr:\n{stderr}");
    Ok(())
}
