//! Time, injected: everything that schedules (retries, leases, windows) asks a [`Clock`], so tests
//! can move time forward instead of waiting for it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::watch;

/// A source of the current time that can also wait until a moment has passed.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once `now()` has reached `deadline`.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

/// The shared handle every component holds.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let wait = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to; sleepers wake when it is advanced past their deadline.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock { now: Arc::new(watch::Sender::new(start)) }
    }

    /// Moves time forward and wakes every sleeper whose deadline has passed.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).expect("duration in range");
        self.now.send_modify(|now| *now += by);
    }

    /// Jumps to a moment (which may be earlier, to test clock steps).
    pub fn set(&self, to: DateTime<Utc>) {
        self.now.send_replace(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // An error means the clock was dropped: nothing will ever advance it again.
            let _ = rx.wait_for(|now| *now >= deadline).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleepers_wake_only_once_time_passes_their_deadline() {
        let start = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().to_utc();
        let clock = ManualClock::new(start);
        let mut sleeper = tokio::spawn(clock.sleep_until(start + chrono::Duration::seconds(10)));
        clock.advance(Duration::from_secs(5));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut sleeper).await.is_err(),
            "woke before its deadline"
        );
        clock.advance(Duration::from_secs(5));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woke after its deadline")
            .unwrap();
        assert_eq!(clock.now(), start + chrono::Duration::seconds(10));
    }
}
