//! Exponential back-off per key, as upstream's `flowcontrol.Backoff`: the first retry is
//! immediate, then each retry waits `base`, `2*base`, ... up to `max`; an entry untouched for
//! `2*max` starts over.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    last_update: Instant,
}

/// Back-off delays by key (a container name, an image).
#[derive(Debug)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { base, max, entries: HashMap::new() }
    }

    fn expired(&self, e: &Entry, event: Instant) -> bool {
        event.saturating_duration_since(e.last_update) > self.max * 2
    }

    /// The current delay when `key` must still wait after an event (a crash) at `event`.
    pub(crate) fn in_backoff_since(&self, key: &str, event: Instant, now: Instant) -> Option<Duration> {
        let e = self.entries.get(key)?;
        if self.expired(e, event) {
            return None;
        }
        (now.saturating_duration_since(event) < e.delay).then_some(e.delay)
    }

    /// Records a retry of `key` after an event at `event`: the next wait doubles.
    pub(crate) fn next(&mut self, key: &str, event: Instant) {
        let delay = match self.entries.get(key) {
            Some(e) if !self.expired(e, event) => (e.delay * 2).min(self.max),
            _ => self.base,
        };
        self.entries.insert(key.to_string(), Entry { delay, last_update: event });
    }

    /// Forgets `key` (a successful pull).
    pub(crate) fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delays_double_from_ten_seconds_to_five_minutes_and_reset_after_ten() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let crash = Instant::now();
        assert_eq!(b.in_backoff_since("app", crash, Instant::now()), None, "the first restart is immediate");
        b.next("app", crash);
        let mut seen = Vec::new();
        for _ in 0..7 {
            let crash = Instant::now();
            let delay = b.in_backoff_since("app", crash, Instant::now());
            seen.push(delay.map(|d| d.as_secs()));
            if let Some(d) = delay {
                tokio::time::advance(d - Duration::from_millis(1)).await;
                assert!(
                    b.in_backoff_since("app", crash, Instant::now()).is_some(),
                    "still waiting just before"
                );
                tokio::time::advance(Duration::from_millis(1)).await;
            }
            assert_eq!(b.in_backoff_since("app", crash, Instant::now()), None);
            b.next("app", crash);
        }
        assert_eq!(seen, [Some(10), Some(20), Some(40), Some(80), Some(160), Some(300), Some(300)]);
        tokio::time::advance(Duration::from_secs(601)).await;
        let crash = Instant::now();
        assert_eq!(b.in_backoff_since("app", crash, crash), None, "ten quiet minutes reset the back-off");
        b.next("app", crash);
        assert_eq!(b.in_backoff_since("app", Instant::now(), Instant::now()), Some(Duration::from_secs(10)));
    }
}
