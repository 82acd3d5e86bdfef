//! Replays of signed requests whose signature covers no body (WeChat's plaintext pushes and URL
//! checks): whoever captured one signed URL could post any body with it. So a request is refused
//! when its signed timestamp is more than five minutes from now, and, within that time, a
//! (timestamp, nonce) pair may come back only with the body it first came with (WeChat's own
//! redeliveries do; the message id then makes them duplicates). That memory is the store's
//! ([`crate::store::SourceStore::admit_signed`]), so a replay to another daemon is refused too.

use chrono::{DateTime, Utc};

/// How far a signed request's timestamp may be from the time of receipt, either way.
pub const WINDOW_SECONDS: i64 = 300;

/// Whether a request's signed timestamp (Unix seconds) is within the window around `now`.
pub fn fresh(timestamp: &str, now: DateTime<Utc>) -> bool {
    timestamp.trim().parse::<i64>().is_ok_and(|sent| (now.timestamp() - sent).abs() <= WINDOW_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_must_be_within_five_minutes() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert!(fresh("1700000000", now));
        assert!(fresh("1699999700", now));
        assert!(fresh("1700000300", now));
        assert!(!fresh("1699999699", now));
        assert!(!fresh("1000000000", now), "2001");
        assert!(!fresh("soon", now));
    }
}
