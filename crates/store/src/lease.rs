//! Lease expiry: the in-memory clock beside the replicated lease table.
//!
//! Which leases exist and their TTLs are replicated state; *when* each expires is local time. A
//! lease's countdown restarts when it is granted, kept alive, or when the node that enforces
//! expiry (the raft leader, or the only node) takes over, like etcd's lessor.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::mvcc::LeaseChange;
use crate::{Lease, LeaseId};

/// Deadlines of live leases.
#[derive(Debug, Default)]
pub struct LeaseClock {
    deadlines: HashMap<LeaseId, Instant>,
}

impl LeaseClock {
    /// Follows a change made by an applied command.
    pub fn apply(&mut self, change: LeaseChange) {
        match change {
            LeaseChange::Refreshed(lease) => {
                self.deadlines.insert(lease.id, deadline(lease));
            }
            LeaseChange::Revoked(id) => {
                self.deadlines.remove(&id);
            }
        }
    }

    /// Restarts every countdown (at start-up or when this node starts enforcing expiry).
    pub fn reset(&mut self, leases: &[Lease]) {
        self.deadlines = leases.iter().map(|l| (l.id, deadline(*l))).collect();
    }

    /// The leases whose deadline has passed, oldest first.
    pub fn expired(&self) -> Vec<LeaseId> {
        let now = Instant::now();
        let mut due: Vec<(Instant, LeaseId)> =
            self.deadlines.iter().filter(|(_, d)| **d <= now).map(|(id, d)| (*d, *id)).collect();
        due.sort();
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// The earliest deadline, if any lease is live.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }
}

fn deadline(lease: Lease) -> Instant {
    Instant::now() + Duration::from_secs(lease.ttl_seconds.max(1) as u64)
}

/// A fresh random lease id (positive, never 0).
pub fn new_lease_id() -> LeaseId {
    rand::random_range(1..i64::MAX)
}
