//! The time source of the controllers that act on the clock (CronJob schedules, Job deadlines,
//! backoff and TTL). Production uses the system clock; tests use a [`Clock::manual`] clock they
//! move forward, and every move wakes the controllers that read it.

use std::fmt;
use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

/// Where the controllers read the current time.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<watch::Sender<Timestamp>>>,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::System"),
            Some(t) => write!(f, "Clock::Manual({})", *t.borrow()),
        }
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that shows `now` until it is [`set`](Clock::set) or [`advance`](Clock::advance)d.
    pub fn manual(now: Timestamp) -> Clock {
        Clock { manual: Some(Arc::new(watch::channel(now).0)) }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match &self.manual {
            None => Timestamp::now(),
            Some(t) => *t.borrow(),
        }
    }

    /// Sets a manual clock to `now` (the system clock ignores it).
    pub fn set(&self, now: Timestamp) {
        if let Some(t) = &self.manual {
            t.send_replace(now);
        }
    }

    /// Moves a manual clock forward by `by` (the system clock ignores it).
    pub fn advance(&self, by: SignedDuration) {
        if let Some(t) = &self.manual {
            t.send_modify(|now| *now = now.saturating_add(by).unwrap_or(*now));
        }
    }

    /// Yields each time a manual clock moves; never for the system clock, whose passing time
    /// the controllers follow with timed requeues.
    pub(crate) fn ticks(&self) -> BoxStream<'static, ()> {
        match &self.manual {
            None => stream::pending().boxed(),
            Some(t) => {
                let rx = t.subscribe();
                stream::unfold(rx, |mut rx| async move {
                    rx.changed().await.ok()?;
                    Some(((), rx))
                })
                .boxed()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_moves_only_when_told_and_ticks_each_move() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = Clock::manual(start);
        let mut ticks = clock.ticks();
        assert_eq!(clock.now(), start);
        clock.advance(SignedDuration::from_secs(90));
        assert_eq!(clock.now(), start + SignedDuration::from_secs(90));
        assert_eq!(ticks.next().await, Some(()));
    }
}
