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
use tracing_subscriber::filter::EnvFilter;

/// Kubernetes as one Rust binary.
#[derive(Debug, Parser)]
#[command(name = "corten", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a control-plane node: the replicated store, the Kubernetes API server, the controllers
    /// and the scheduler, and (unless --disable-agent) the kubelet of this machine.
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
    /// Run only the control plane: no kubelet, no containers on this machine.
    #[arg(long, env = "CORTEN_DISABLE_AGENT")]
    disable_agent: bool,
    #[command(flatten)]
    node: NodeArgs,
}

/// How this machine runs pods.
#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// The Node's name (default: the host name).
    #[arg(long, env = "CORTEN_NODE_NAME")]
    node_name: Option<String>,
    /// A CRI socket to use (e.g. unix:///run/containerd/containerd.sock) instead of starting
    /// corten's own containerd.
    #[arg(long, env = "CORTEN_CONTAINER_RUNTIME_ENDPOINT")]
    container_runtime_endpoint: Option<String>,
    /// The IPv4 range of this node's pods.
    #[arg(long, env = "CORTEN_POD_CIDR", default_value = "10.42.0.0/24")]
    pod_cidr: String,
    /// The port of the kubelet's HTTPS API (logs, exec, attach, port-forward).
    #[arg(long, env = "CORTEN_KUBELET_PORT", default_value_t = 10250)]
    kubelet_port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging()?;
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone())?;
    match cli.command {
        Command::Server(args) => {
            let node_name = match args.node.node_name.clone() {
                Some(name) => name,
                None => host_name()?,
            };
            let cfg = corten_server::ServerConfig {
                data_dir: args.data_dir.clone(),
                bind_address: args.bind_address,
                https_port: args.https_port,
                tls_sans: args.tls_sans,
                service_cidr: args.service_cidr,
                agent_node_name: (!args.disable_agent).then(|| node_name.clone()),
            };
            let server = corten_server::run(cfg, shutdown.clone());
            if args.disable_agent {
                return server.await.context("corten server failed");
            }
            let agent = corten_agent::AgentConfig {
                kubeconfig: args.data_dir.join(corten_server::AGENT_KUBECONFIG),
                data_dir: args.data_dir,
                node_name,
                container_runtime_endpoint: args.node.container_runtime_endpoint,
                pod_cidr: args.node.pod_cidr,
                kubelet_port: args.node.kubelet_port,
            };
            // Either failing stops both; the server is the one whose error is reported first.
            let (served, ran) = tokio::join!(
                async {
                    let served = server.await;
                    shutdown.cancel();
                    served
                },
                async {
                    let ran = corten_agent::run(agent, shutdown.clone()).await;
                    if ran.is_err() {
                        shutdown.cancel();
                    }
                    ran
                }
            );
            served.context("corten server failed")?;
            ran.context("the embedded agent failed")
        }
    }
}

/// The machine's host name, the default node name.
fn host_name() -> anyhow::Result<String> {
    let name = nix::unistd::gethostname().context("reading the host name; pass --node-name")?;
    let name =
        name.into_string().map_err(|_| anyhow::anyhow!("the host name is not UTF-8; pass --node-name"))?;
    Ok(name.to_lowercase())
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`, with openraft's chatty per-election
/// lines at `warn`).
fn init_logging() -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => EnvFilter::try_new(&directives)
            .with_context(|| format!("invalid RUST_LOG filter {directives:?}"))?,
        Err(_) => EnvFilter::new("info,openraft=warn"),
    };
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
