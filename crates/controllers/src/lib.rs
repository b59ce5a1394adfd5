//! The controllers of `corten server`, each a kube-runtime client of the Kubernetes API
//! (ARCHITECTURE rule 2): they see the cluster only through a [`kube::Client`] and never import
//! the API server or the store, so they run unchanged against any conformant API server.
//!
//! [`run`] starts every controller and keeps them running until the shutdown token fires; a
//! controller that fails is logged and restarted with backoff, the others carry on. Leader
//! election ([`leader`]) decides which server runs them when there are several.

mod clock;
mod error;
pub mod leader;

mod clusterroleaggregation;
mod cronjob;
mod daemonset;
mod deployment;
mod discovery;
mod disruption;
mod endpoints;
mod gc;
mod history;
mod job;
mod namespace;
mod nodelifecycle;
mod podgc;
mod pods;
mod replicaset;
mod resourcequota;
mod serviceaccount;
mod statefulset;

pub use clock::Clock;
pub use error::{Error, Result};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Settings the controllers need beyond the API.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The cluster CA certificate (PEM), published as `kube-root-ca.crt` in every namespace.
    pub root_ca_pem: String,
    /// How many terminated pods the pod garbage collector keeps (`--terminated-pod-gc-threshold`);
    /// `None` is the upstream default, 12500; `Some(0)` keeps them all.
    pub terminated_pod_gc_threshold: Option<usize>,
}

/// What every controller gets: the API client, the settings and the shutdown token.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub client: Client,
    pub config: Arc<Config>,
    pub shutdown: CancellationToken,
    /// The time source of the clock-driven controllers (cronjob, job).
    pub clock: Clock,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `kube::Client` has no `Debug`.
        f.debug_struct("Ctx")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// The longest pause before a failed controller is started again.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// The names of the controllers, in start order.
pub const CONTROLLERS: &[&str] = &[
    "namespace",
    "garbage-collector",
    "serviceaccount",
    "replicaset",
    "replicationcontroller",
    "deployment",
    "endpoints",
    "job",
    "cronjob",
    "daemonset",
    "statefulset",
    "nodelifecycle",
    "podgc",
    "clusterrole-aggregation",
    "disruption",
    "resourcequota",
];

/// Runs every controller until `shutdown` fires.
pub async fn run(client: Client, config: Config, shutdown: CancellationToken) -> Result<()> {
    run_only(client, config, CONTROLLERS, shutdown).await
}

/// Runs the controllers named in `names` (see [`CONTROLLERS`]) until `shutdown` fires; tests
/// use it to watch one controller at work.
pub async fn run_only(
    client: Client,
    config: Config,
    names: &[&str],
    shutdown: CancellationToken,
) -> Result<()> {
    run_only_with_clock(client, config, names, Clock::system(), shutdown).await
}

/// Like [`run_only`], reading the time from `clock`: tests drive CronJob schedules, Job
/// deadlines and TTLs with a [`Clock::manual`] clock.
pub async fn run_only_with_clock(
    client: Client,
    config: Config,
    names: &[&str],
    clock: Clock,
    shutdown: CancellationToken,
) -> Result<()> {
    let ctx = Ctx { client, config: Arc::new(config), shutdown: shutdown.clone(), clock };
    let mut set = JoinSet::new();
    for &name in names {
        match name {
            "namespace" => supervise(&mut set, &ctx, "namespace", namespace::run),
            "garbage-collector" => supervise(&mut set, &ctx, "garbage-collector", gc::run),
            "serviceaccount" => supervise(&mut set, &ctx, "serviceaccount", serviceaccount::run),
            "replicaset" => supervise(&mut set, &ctx, "replicaset", replicaset::run),
            "replicationcontroller" => {
                supervise(&mut set, &ctx, "replicationcontroller", replicaset::run_replication_controllers)
            }
            "deployment" => supervise(&mut set, &ctx, "deployment", deployment::run),
            "endpoints" => supervise(&mut set, &ctx, "endpoints", endpoints::run),
            "job" => supervise(&mut set, &ctx, "job", job::run),
            "cronjob" => supervise(&mut set, &ctx, "cronjob", cronjob::run),
            "daemonset" => supervise(&mut set, &ctx, "daemonset", daemonset::run),
            "statefulset" => supervise(&mut set, &ctx, "statefulset", statefulset::run),
            "nodelifecycle" => supervise(&mut set, &ctx, "nodelifecycle", nodelifecycle::run),
            "podgc" => supervise(&mut set, &ctx, "podgc", podgc::run),
            "clusterrole-aggregation" => {
                supervise(&mut set, &ctx, "clusterrole-aggregation", clusterroleaggregation::run)
            }
            "disruption" => supervise(&mut set, &ctx, "disruption", disruption::run),
            "resourcequota" => supervise(&mut set, &ctx, "resourcequota", resourcequota::run),
            other => return Err(Error::Invalid(format!("no controller named {other:?}"))),
        }
    }
    info!(controllers = set.len(), "controllers started");
    while set.join_next().await.is_some() {}
    Ok(())
}

/// Runs `controller` in `set` until shutdown, restarting it with backoff when it fails.
fn supervise<F, Fut>(set: &mut JoinSet<()>, ctx: &Ctx, name: &'static str, controller: F)
where
    F: Fn(Ctx) -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let ctx = ctx.clone();
    set.spawn(async move {
        let mut delay = Duration::from_secs(1);
        loop {
            let shutdown = ctx.shutdown.clone();
            let outcome = tokio::select! {
                () = shutdown.cancelled() => return,
                outcome = controller(ctx.clone()) => outcome,
            };
            match outcome {
                Ok(()) if shutdown.is_cancelled() => return,
                Ok(()) => warn!(controller = name, "controller stopped on its own; restarting"),
                Err(e) => warn!(controller = name, error = %e, ?delay, "controller failed; restarting"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(MAX_RESTART_DELAY);
        }
    });
}
