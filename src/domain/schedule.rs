//! When to try again: the retry schedule with jitter, and what a receiver's `Retry-After` asks.
//! Deliveries and the owner's e-mails both follow one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

/// The longest a receiver may push a retry back with `Retry-After`.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(24 * 3600);

/// Each retry lands within ±20 % of its nominal delay, so receivers that failed together are not
/// hit together again.
const JITTER: f64 = 0.2;

/// Delays before each retry; the last one repeats for as long as retrying goes on.
#[derive(Debug, Clone)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl RetrySchedule {
    /// `delays` must not be empty (the configuration refuses an empty schedule).
    pub fn new(delays: Vec<Duration>) -> Self {
        assert!(!delays.is_empty(), "a retry schedule needs at least one delay");
        RetrySchedule { delays }
    }

    /// The nominal delay after the `failures`-th consecutive failed attempt (1 for the first).
    pub fn nominal(&self, failures: u32) -> Duration {
        let index = (failures.max(1) as usize - 1).min(self.delays.len() - 1);
        self.delays[index]
    }

    /// The delay to wait after the `failures`-th failure: the jittered schedule, or what the
    /// receiver asked for with `Retry-After` when that is longer (capped at 24 h).
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let scheduled = jitter(self.nominal(failures), rng);
        match retry_after {
            Some(asked) => scheduled.max(asked.min(RETRY_AFTER_CAP)),
            None => scheduled,
        }
    }
}

/// A duration picked uniformly within ±20 % of `nominal`.
pub fn jitter(nominal: Duration, rng: &mut impl Rng) -> Duration {
    let factor = rng.random_range((1.0 - JITTER)..=(1.0 + JITTER));
    nominal.mul_f64(factor)
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date. `None` when it is neither, or
/// names a moment already past.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // HTTP dates are RFC 1123 (`Sun, 06 Nov 1994 08:49:37 GMT`), a form RFC 2822 parsing accepts.
    let at = DateTime::parse_from_rfc2822(value).ok()?.to_utc();
    (at - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn default_schedule() -> RetrySchedule {
        let secs = [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800];
        RetrySchedule::new(secs.iter().map(|s| Duration::from_secs(*s)).collect())
    }

    #[test]
    fn nominal_delays_follow_the_schedule_and_the_last_repeats() {
        let s = default_schedule();
        assert_eq!(s.nominal(1), Duration::from_secs(5));
        assert_eq!(s.nominal(2), Duration::from_secs(30));
        assert_eq!(s.nominal(9), Duration::from_secs(28800));
        assert_eq!(s.nominal(10), Duration::from_secs(28800));
        assert_eq!(s.nominal(1000), Duration::from_secs(28800));
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_actually_varies() {
        let mut rng = StdRng::seed_from_u64(7);
        let nominal = Duration::from_secs(100);
        let samples: Vec<Duration> = (0..10_000).map(|_| jitter(nominal, &mut rng)).collect();
        let min = samples.iter().min().unwrap();
        let max = samples.iter().max().unwrap();
        assert!(*min >= Duration::from_secs(80), "{min:?}");
        assert!(*max <= Duration::from_secs(120), "{max:?}");
        // Spread over most of the band, not stuck at the nominal value.
        assert!(*min < Duration::from_secs(82), "{min:?}");
        assert!(*max > Duration::from_secs(118), "{max:?}");
    }

    #[test]
    fn retry_after_pushes_later_but_never_sooner_and_is_capped() {
        let s = default_schedule();
        let mut rng = StdRng::seed_from_u64(1);
        // Asked for 2 minutes after the first failure: wait 2 minutes, not 5 s.
        let d = s.delay(1, Some(Duration::from_secs(120)), &mut rng);
        assert_eq!(d, Duration::from_secs(120));
        // Asked for 1 s after the fourth failure: the schedule's ~10 minutes still hold.
        let d = s.delay(4, Some(Duration::from_secs(1)), &mut rng);
        assert!(d >= Duration::from_secs(480), "{d:?}");
        // Asked for a week: capped at a day.
        let d = s.delay(1, Some(Duration::from_secs(7 * 86400)), &mut rng);
        assert_eq!(d, RETRY_AFTER_CAP);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Fri, 01 Mar 2024 12:05:00 GMT", now), Some(Duration::from_secs(300)));
        assert_eq!(parse_retry_after("Fri, 01 Mar 2024 11:00:00 GMT", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
