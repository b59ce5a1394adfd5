//! Backoff of pods that could not be scheduled: 1 s doubling to 10 s per failed attempt,
//! cut short when the cluster changes in a way that may let them fit.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Entry {
    attempts: u32,
    not_before: Instant,
}

/// The backoff state of unschedulable pods, by pod key (`namespace/name`); a pod without an
/// entry may be tried at once.
#[derive(Debug)]
pub struct Backoff {
    entries: HashMap<String, Entry>,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// Backoff starting at `initial` and doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { entries: HashMap::new(), initial, max }
    }

    /// Whether the pod `key` may be tried at `now`.
    pub fn is_ready(&self, key: &str, now: Instant) -> bool {
        self.entries.get(key).is_none_or(|e| e.not_before <= now)
    }

    /// Records a failed attempt at `now` and returns how long the pod waits before the next.
    pub fn failed(&mut self, key: &str, now: Instant) -> Duration {
        let e = self.entries.entry(key.to_string()).or_insert(Entry { attempts: 0, not_before: now });
        let exp = e.attempts.min(16);
        e.attempts = e.attempts.saturating_add(1);
        let delay = self.initial.saturating_mul(1 << exp).min(self.max);
        e.not_before = now + delay;
        delay
    }

    /// The cluster changed: every waiting pod may be tried again now (its next failure still
    /// backs off longer).
    pub fn flush(&mut self, now: Instant) {
        for e in self.entries.values_mut() {
            e.not_before = e.not_before.min(now);
        }
    }

    /// Forgets the pod `key` (scheduled or gone).
    pub fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Keeps only the pods `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.entries.retain(|k, _| keep(k));
    }

    /// When the next waiting pod becomes ready.
    pub fn next_ready(&self, now: Instant) -> Option<Instant> {
        self.entries.values().map(|e| e.not_before).filter(|t| *t > now).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_from_one_second_up_to_ten() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let now = Instant::now();
        let delays: Vec<u64> = (0..6).map(|_| b.failed("ns/p", now).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 10, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backed_off_pod_is_ready_when_its_delay_passes() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let start = Instant::now();
        assert!(b.is_ready("ns/p", start));
        b.failed("ns/p", start);
        assert!(!b.is_ready("ns/p", start));
        assert_eq!(b.next_ready(start), Some(start + Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.is_ready("ns/p", Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cluster_change_makes_waiting_pods_ready_at_once() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let now = Instant::now();
        for _ in 0..4 {
            b.failed("ns/p", now);
        }
        b.flush(now);
        assert!(b.is_ready("ns/p", now));
        assert_eq!(b.failed("ns/p", now), Duration::from_secs(10), "the attempt count is kept");
        b.forget("ns/p");
        assert_eq!(b.failed("ns/p", now), Duration::from_secs(1));
    }
}
