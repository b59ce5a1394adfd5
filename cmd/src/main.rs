//! `corten`: Kubernetes as one Rust binary.
//!
//! Parses the command line, sets up logging to stderr and turns SIGTERM/SIGINT into one root
//! shutdown token, then hands over to the library crates. No logic lives here.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// Kubernetes as one Rust binary.
#[derive(Debug, Parser)]
#[command(name = "corten", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a control-plane node: the replicated store and the Kubernetes API server.
    Server(ServerArgs),
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Directory for the store, the certificates and admin.kubeconfig; created when missing.
    #[arg(long, env = "CORTEN_DATA_DIR", default_value = "/var/lib/corten")]
    data_dir: PathBuf,
    /// Address the Kubernetes API listens on (0.0.0.0: every interface).
    #[arg(long, env = "CORTEN_BIND_ADDRESS", default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port of the Kubernetes API.
    #[arg(long, env = "CORTEN_HTTPS_PORT", default_value_t = 6443)]
    https_port: u16,
    /// Extra host name or IP for the API serving certificate (repeat or separate with commas).
    #[arg(long = "tls-san", value_delimiter = ',')]
    tls_sans: Vec<String>,
    /// IPv4 range Service ClusterIPs are allocated from.
    #[arg(long, env = "CORTEN_SERVICE_CIDR", default_value = "10.43.0.0/16")]
    service_cidr: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging()?;
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone())?;
    match cli.command {
        Command::Server(args) => {
            let cfg = corten_server::ServerConfig {
                data_dir: args.data_dir,
                bind_address: args.bind_address,
                https_port: args.https_port,
                tls_sans: args.tls_sans,
                service_cidr: args.service_cidr,
            };
            corten_server::run(cfg, shutdown).await.context("corten server failed")
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging() -> anyhow::Result<()> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .context("invalid RUST_LOG filter")?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
    Ok(())
}

/// The first SIGTERM or SIGINT cancels `shutdown`; a second one exits at once.
fn cancel_on_signals(shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(signal = first, "shutdown requested");
        shutdown.cancel();
        let second = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        warn!(signal = second, "second signal during shutdown; exiting now");
        std::process::exit(130);
    });
    Ok(())
}
