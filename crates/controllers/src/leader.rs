//! Leader election on a `coordination.k8s.io/v1` Lease in `kube-system`, as client-go's
//! `leaderelection` package does it: the holder renews `renewTime` every retry period; a
//! candidate takes the lease when it is free (no holder: released) or when the record has not
//! changed for `leaseDurationSeconds` as measured on the candidate's own clock (so clock skew
//! between servers does not matter). Every write carries the `resourceVersion` it read, so of
//! several candidates exactly one wins.
//!
//! [`run_as_leader`] runs some work while this process leads and stops it when leadership is
//! lost; the controllers and the scheduler both run behind it.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::{api, Result};

/// The namespace of the leader election leases.
pub const LEASE_NAMESPACE: &str = "kube-system";

/// Runs `work` whenever this process holds the Lease `lease_name` in `kube-system` as
/// `identity`, with the default timings of kube-controller-manager (lease 15 s, renew deadline
/// 10 s, retry every 2 s). See [`LeaderElector::run`].
pub async fn run_as_leader<F, Fut>(
    client: Client,
    lease_name: &str,
    identity: &str,
    shutdown: CancellationToken,
    work: F,
) -> Result<()>
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    LeaderElector::new(client, lease_name, identity).run(shutdown, work).await
}

/// A candidate for the leadership held in one Lease.
#[derive(Debug, Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
}

/// The part of a Lease that says who holds it; a change of it restarts the expiry countdown.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    transitions: Option<i32>,
}

/// The last record seen and when (on the local clock) it was first seen.
#[derive(Debug)]
struct Observed {
    record: Record,
    at: Instant,
    duration: Duration,
}

impl LeaderElector {
    /// A candidate named `identity` for the Lease `name` in `kube-system`, with the default
    /// timings (lease 15 s, renew deadline 10 s, retry period 2 s).
    pub fn new(client: Client, name: &str, identity: &str) -> Self {
        LeaderElector {
            api: Api::namespaced(client, LEASE_NAMESPACE),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Sets how long a lease that is not renewed stays valid (`leaseDurationSeconds`, whole
    /// seconds, at least one), how long the leader keeps leading when renewals fail, and how
    /// often it renews and candidates retry. The renew deadline must be shorter than the lease.
    pub fn timings(
        mut self,
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Self {
        self.lease_duration = lease_duration.max(Duration::from_secs(1));
        self.renew_deadline = renew_deadline.min(self.lease_duration);
        self.retry_period = retry_period;
        self
    }

    /// Runs until `shutdown` fires: acquires the lease (retrying every retry period), then runs
    /// `work(token)` and renews the lease while it runs. When a renewal is refused (someone else
    /// holds the lease) or renewals fail for longer than the renew deadline, `token` is
    /// cancelled, `work` is awaited to its end, and the candidate competes again. On shutdown
    /// `token` is cancelled, `work` is awaited and the lease is released so another candidate
    /// takes over at once. If `work` returns on its own, the lease is released and this returns.
    pub async fn run<F, Fut>(&self, shutdown: CancellationToken, mut work: F) -> Result<()>
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut observed = None;
        loop {
            // Candidate: retry until the lease is ours.
            loop {
                match self.try_acquire_or_renew(&mut observed).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        warn!(lease = %self.name, error = %e, "leader election: reading the lease failed")
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(self.retry_period) => {}
                }
            }
            info!(lease = %self.name, identity = %self.identity, "became leader");
            let token = shutdown.child_token();
            let work_done = work(token.clone());
            tokio::pin!(work_done);
            let mut last_renew = Instant::now();
            let ended_by = loop {
                // The work keeps running while the lease is renewed.
                let renewal = async {
                    tokio::time::sleep(self.retry_period).await;
                    self.try_acquire_or_renew(&mut observed).await
                };
                let renewed = tokio::select! {
                    () = &mut work_done => break End::WorkReturned,
                    () = shutdown.cancelled() => break End::Shutdown,
                    renewed = renewal => renewed,
                };
                match renewed {
                    Ok(true) => last_renew = Instant::now(),
                    Ok(false) => break End::Lost,
                    Err(e) if last_renew.elapsed() >= self.renew_deadline => {
                        warn!(lease = %self.name, error = %e, "leader election: renew deadline passed");
                        break End::Lost;
                    }
                    Err(e) => {
                        warn!(lease = %self.name, error = %e, "leader election: renewing the lease failed")
                    }
                }
            };
            token.cancel();
            if ended_by != End::WorkReturned {
                work_done.await;
            }
            match ended_by {
                End::Lost => warn!(lease = %self.name, identity = %self.identity, "leadership lost"),
                End::Shutdown | End::WorkReturned => {
                    self.release().await;
                    return Ok(());
                }
            }
        }
    }

    /// One attempt: takes or renews the lease if it is ours to take. `Ok(false)` when another
    /// candidate holds a valid lease or won the race for it.
    async fn try_acquire_or_renew(&self, observed: &mut Option<Observed>) -> Result<bool> {
        let now = MicroTime(jiff::Timestamp::now());
        let seconds = i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(current) =
            self.api.get_opt(&self.name).await.map_err(api(format!("reading lease {}", self.name)))?
        else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(api(format!("creating lease {}", self.name))(e)),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let record = Record {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.clone(),
            transitions: spec.lease_transitions,
        };
        let duration =
            Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(seconds)).unwrap_or(0));
        match observed {
            Some(o) if o.record == record => {}
            _ => *observed = Some(Observed { record: record.clone(), at: Instant::now(), duration }),
        }
        let ours = record.holder.as_deref() == Some(self.identity.as_str());
        let valid = observed.as_ref().is_some_and(|o| o.at.elapsed() < o.duration);
        if !ours && record.holder.is_some() && valid {
            return Ok(false);
        }
        let mut new = spec;
        if !ours {
            new.acquire_time = Some(now.clone());
            new.lease_transitions = Some(new.lease_transitions.unwrap_or(0) + 1);
            new.holder_identity = Some(self.identity.clone());
        }
        new.lease_duration_seconds = Some(seconds);
        new.renew_time = Some(now);
        let mut lease = current;
        lease.spec = Some(new);
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                debug!(lease = %self.name, "leader election: lost a write race");
                Ok(false)
            }
            Err(e) => Err(api(format!("updating lease {}", self.name))(e)),
        }
    }

    /// Gives the lease up if it is still ours: no holder, so the next candidate takes it at once.
    async fn release(&self) {
        let current = match self.api.get_opt(&self.name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(e) => {
                warn!(lease = %self.name, error = %e, "leader election: reading the lease to release it failed");
                return;
            }
        };
        let mut spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let now = MicroTime(jiff::Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        let mut lease = current;
        lease.spec = Some(spec);
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => info!(lease = %self.name, identity = %self.identity, "released leadership"),
            Err(e) => warn!(lease = %self.name, error = %e, "leader election: releasing the lease failed"),
        }
    }
}

/// Why a term of leadership ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Lost,
    Shutdown,
    WorkReturned,
}
