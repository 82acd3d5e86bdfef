//! Replays of signed WeChat pushes. WeChat's plaintext-mode signature covers the token, the
//! timestamp and the nonce, but not the body: whoever captured one signed URL could post any body
//! with it. So a push is refused when its timestamp is more than five minutes from now, and, within
//! those five minutes, a (timestamp, nonce) pair may come back only with the body it first came
//! with (WeChat's own redeliveries do; the message id then makes them duplicates). The memory is
//! per process: behind several daemons the five-minute window still holds, and message ids keep
//! stored messages unique.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// How far a signed push's timestamp may be from the time of receipt, either way.
pub const WINDOW_SECONDS: i64 = 300;
/// Pairs remembered before expired ones are swept out.
const SWEEP_AT: usize = 50_000;

/// A signed push: (source, timestamp, nonce).
type Signed = (String, String, String);

/// What a signed push first came with: its body's digest, and when.
type Seen = ([u8; 32], DateTime<Utc>);

/// Signed pushes seen lately.
#[derive(Default)]
pub struct ReplayMemory {
    seen: Mutex<HashMap<Signed, Seen>>,
}

impl ReplayMemory {
    /// Whether this (timestamp, nonce) may carry `body`: it is new, or came with this same body.
    pub fn admit(&self, source: &str, timestamp: &str, nonce: &str, body: &[u8], now: DateTime<Utc>) -> bool {
        let digest: [u8; 32] = Sha256::digest(body).into();
        let mut seen = self.seen.lock().expect("replay memory");
        if seen.len() >= SWEEP_AT {
            let window = chrono::Duration::seconds(2 * WINDOW_SECONDS);
            seen.retain(|_, (_, at)| now - *at < window);
        }
        let key = (source.to_string(), timestamp.to_string(), nonce.to_string());
        match seen.get(&key) {
            Some((first, _)) => *first == digest,
            None => {
                seen.insert(key, (digest, now));
                true
            }
        }
    }
}

/// Whether a push's timestamp (Unix seconds) is within the window around `now`.
pub fn fresh(timestamp: &str, now: DateTime<Utc>) -> bool {
    timestamp.trim().parse::<i64>().is_ok_and(|sent| (now.timestamp() - sent).abs() <= WINDOW_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_pair_may_come_back_only_with_its_own_body() {
        let memory = ReplayMemory::default();
        let now = Utc::now();
        assert!(memory.admit("src_1", "1700000000", "n1", b"<xml>a</xml>", now));
        assert!(memory.admit("src_1", "1700000000", "n1", b"<xml>a</xml>", now), "a redelivery");
        assert!(!memory.admit("src_1", "1700000000", "n1", b"<xml>evil</xml>", now), "another body");
        assert!(memory.admit("src_2", "1700000000", "n1", b"<xml>evil</xml>", now), "another source");
    }

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
