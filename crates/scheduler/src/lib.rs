//! The scheduler of `corten server`: kube-scheduler's default profile as a client of the
//! Kubernetes API. Reflectors of nodes and pods feed a [`snapshot::Snapshot`]; pure filter and
//! score plugins ([`filters`], [`scores`], [`interpod`], [`topology`]) pick a node for each
//! pending pod ([`cycle`]), [`preemption`] makes room for important pods, and the choice is
//! written as a `pods/binding`.
//!
//! It sees the cluster only through a [`kube::Client`] (ARCHITECTURE rule 2) and must not depend
//! on the API server or the store crates.

mod api;
pub mod cycle;
mod error;
pub mod filters;
pub mod interpod;
pub mod preemption;
mod queue;
pub mod resources;
mod scheduler;
pub mod scores;
pub mod selectors;
pub mod snapshot;
#[cfg(test)]
mod testutil;
pub mod topology;

use std::time::Duration;

pub use error::{Error, Result};
use tokio_util::sync::CancellationToken;

/// The scheduler's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `spec.schedulerName` of the pods this scheduler places.
    pub scheduler_name: String,
    /// The wait after a pod's first failed attempt; it doubles with each failure.
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            scheduler_name: "default-scheduler".into(),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Schedules pending pods until `shutdown` fires: watches nodes, pods, namespaces, priority
/// classes and PodDisruptionBudgets, and binds each pod of `config.scheduler_name` that has no
/// node to the best node that fits it, or marks it unschedulable and retries with backoff.
/// Failed requests are logged and retried; it returns when `shutdown` fires.
pub async fn run(client: kube::Client, config: Config, shutdown: CancellationToken) -> Result<()> {
    scheduler::Scheduler::new(client, config).run(shutdown).await
}
