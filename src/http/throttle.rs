//! Guessing costs time. Each client address may get a few credentials wrong (the admin token, an
//! ingest key, the sign-in form); after that every further wrong one shuts it out for twice as
//! long as the last (1 s, 2 s, 4 s, … up to 5 minutes), and while it is shut out nothing it sends
//! is checked at all, right or wrong. A client is forgiven 15 minutes after its last mistake.
//! Successes do not wipe the slate: an integrator with a valid ingest key cannot use it to reset
//! its count while guessing the admin token.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::warn;

use crate::clock::SharedClock;

/// Wrong credentials a client may send before it has to wait.
const FREE: u32 = 5;
/// The longest a client is shut out for one more mistake.
const LONGEST: Duration = Duration::from_secs(300);
/// How long after its last mistake a client's record is forgotten.
const FORGET: Duration = Duration::from_secs(15 * 60);
/// Records kept before stale ones are swept out.
const SWEEP_AT: usize = 10_000;

struct Record {
    failures: u32,
    last: DateTime<Utc>,
    blocked_until: Option<DateTime<Utc>>,
}

/// Per-client memory of wrong credentials.
pub struct Throttle {
    clock: SharedClock,
    records: Mutex<HashMap<IpAddr, Record>>,
}

impl Throttle {
    pub fn new(clock: SharedClock) -> Throttle {
        Throttle { clock, records: Mutex::new(HashMap::new()) }
    }

    /// How long `client` must still wait before its credentials are looked at, if at all.
    pub fn wait(&self, client: IpAddr) -> Option<Duration> {
        let now = self.clock.now();
        let records = self.records.lock().expect("throttle");
        let until = records.get(&client)?.blocked_until?;
        (until - now).to_std().ok().filter(|d| !d.is_zero())
    }

    /// Notes a wrong credential (`what`, for the log; never its value) from `client`.
    pub fn failed(&self, client: IpAddr, what: &str) {
        let now = self.clock.now();
        let mut records = self.records.lock().expect("throttle");
        if records.len() >= SWEEP_AT {
            let forget = chrono::Duration::from_std(FORGET).expect("small");
            records.retain(|_, r| now - r.last < forget);
        }
        let record = records.entry(client).or_insert(Record { failures: 0, last: now, blocked_until: None });
        if now - record.last >= chrono::Duration::from_std(FORGET).expect("small") {
            record.failures = 0;
        }
        record.failures += 1;
        record.last = now;
        let block = (record.failures > FREE).then(|| {
            let doublings = (record.failures - FREE - 1).min(16);
            Duration::from_secs(1u64 << doublings).min(LONGEST)
        });
        record.blocked_until = block.map(|b| now + chrono::Duration::from_std(b).expect("small"));
        warn!(%client, what, failures = record.failures, shut_out_for = ?block, "wrong credentials");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use std::sync::Arc;

    #[test]
    fn mistakes_after_the_first_few_cost_doubling_waits_per_client() {
        let clock = ManualClock::new(Utc::now());
        let throttle = Throttle::new(Arc::new(clock.clone()));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..FREE {
            throttle.failed(a, "admin token");
            assert_eq!(throttle.wait(a), None);
        }
        let mut expected = 1;
        for _ in 0..4 {
            throttle.failed(a, "admin token");
            assert_eq!(throttle.wait(a), Some(Duration::from_secs(expected)));
            clock.advance(Duration::from_secs(expected));
            assert_eq!(throttle.wait(a), None, "free to try again once the wait is over");
            expected *= 2;
        }
        assert_eq!(throttle.wait(b), None, "another client is not held up");
        for _ in 0..40 {
            throttle.failed(a, "admin token");
        }
        assert_eq!(throttle.wait(a), Some(LONGEST));
        clock.advance(FORGET + LONGEST);
        throttle.failed(a, "admin token");
        assert_eq!(throttle.wait(a), None, "forgiven after a quiet quarter of an hour");
        let _ = clock.now();
    }
}
