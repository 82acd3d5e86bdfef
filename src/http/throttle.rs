//! Guessing costs time. A client network (an IPv4 address, an IPv6 /64) may get a few guesses of
//! one credential wrong (the admin token and the sign-in form, one workspace's ingest key, one
//! source's signature); after that every further wrong one shuts that guessing out for twice as
//! long as the last (1 s, 2 s, 4 s, … up to 5 minutes), answered `429`, and it is forgiven 15
//! minutes after its last mistake.
//!
//! What is shut out is the guessing, never a holder of the credential: the throttle is asked
//! only once a credential has been found wrong, so a request carrying a valid one always goes
//! through. Behind the shared address of a proxy or of Zapier, a neighbour's wrong admin token
//! therefore costs nobody's ingest key anything. The credentials themselves are long random
//! strings (the admin token at least 128 bits): what the throttle buys is that a scan is slow
//! and loud, not that it is the only thing standing in the way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::warn;

use super::server::ClientNet;
use crate::clock::SharedClock;
use crate::domain::{SourceId, WorkspaceId};

/// Wrong credentials a client may send before it has to wait.
const FREE: u32 = 5;
/// The longest a client is shut out for one more mistake.
const LONGEST: Duration = Duration::from_secs(300);
/// How long after its last mistake a client's record is forgotten.
const FORGET: Duration = Duration::from_secs(15 * 60);
/// Records kept before stale ones are swept out.
const SWEEP_AT: usize = 10_000;

/// What a wrong credential was a guess at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Guessed {
    /// The admin token, by bearer header or on the sign-in page.
    AdminToken,
    /// One workspace's ingest key.
    IngestKey(WorkspaceId),
    /// One source's signing secret (a signature that does not match).
    Source(SourceId),
    /// One member's password (the address, lower-case, whether or not anyone has it).
    Password(String),
}

impl Guessed {
    /// For the log.
    fn describe(&self) -> &'static str {
        match self {
            Guessed::AdminToken => "admin token",
            Guessed::IngestKey(_) => "ingest key",
            Guessed::Source(_) => "source signature",
            Guessed::Password(_) => "password",
        }
    }
}

struct Record {
    failures: u32,
    last: DateTime<Utc>,
    blocked_until: Option<DateTime<Utc>>,
}

/// Per (client network, credential) memory of wrong guesses.
pub struct Throttle {
    clock: SharedClock,
    records: Mutex<HashMap<(ClientNet, Guessed), Record>>,
}

impl Throttle {
    pub fn new(clock: SharedClock) -> Throttle {
        Throttle { clock, records: Mutex::new(HashMap::new()) }
    }

    /// How long `client` must still wait before another guess at `what` is answered, if at all.
    pub fn wait(&self, client: ClientNet, what: &Guessed) -> Option<Duration> {
        let now = self.clock.now();
        let records = self.records.lock().expect("throttle");
        let until = records.get(&(client, what.clone()))?.blocked_until?;
        (until - now).to_std().ok().filter(|d| !d.is_zero())
    }

    /// Answers a wrong credential: `Some(wait)` when `client` is shut out of guessing `what`
    /// (the guess is not counted again), else `None`, with the mistake counted and logged
    /// (the client and what was guessed; never the value).
    pub fn refuse(&self, client: ClientNet, what: Guessed) -> Option<Duration> {
        if let Some(wait) = self.wait(client, &what) {
            metrics::counter!(crate::telemetry::metric::AUTH_THROTTLED).increment(1);
            return Some(wait);
        }
        self.failed(client, what);
        None
    }

    /// Notes a wrong guess at `what` from `client`.
    fn failed(&self, client: ClientNet, what: Guessed) {
        let now = self.clock.now();
        let forget = chrono::Duration::from_std(FORGET).expect("small");
        let mut records = self.records.lock().expect("throttle");
        if records.len() >= SWEEP_AT {
            records.retain(|_, r| now - r.last < forget);
        }
        let described = what.describe();
        let record =
            records.entry((client, what)).or_insert(Record { failures: 0, last: now, blocked_until: None });
        if now - record.last >= forget {
            record.failures = 0;
        }
        record.failures += 1;
        record.last = now;
        let block = (record.failures > FREE).then(|| {
            let doublings = (record.failures - FREE - 1).min(16);
            Duration::from_secs(1u64 << doublings).min(LONGEST)
        });
        record.blocked_until = block.map(|b| now + chrono::Duration::from_std(b).expect("small"));
        warn!(%client, what = described, failures = record.failures, shut_out_for = ?block, "wrong credentials");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use std::sync::Arc;

    fn net(s: &str) -> ClientNet {
        ClientNet::of(s.parse().unwrap())
    }

    #[test]
    fn mistakes_after_the_first_few_cost_doubling_waits_per_client_and_credential() {
        let clock = ManualClock::new(Utc::now());
        let throttle = Throttle::new(Arc::new(clock.clone()));
        let (a, b) = (net("192.0.2.1"), net("192.0.2.2"));
        let admin = Guessed::AdminToken;
        for _ in 0..FREE {
            assert_eq!(throttle.refuse(a, admin.clone()), None);
            assert_eq!(throttle.wait(a, &admin), None);
        }
        let mut expected = 1;
        for _ in 0..4 {
            assert_eq!(throttle.refuse(a, admin.clone()), None, "counted, then shut out");
            assert_eq!(throttle.wait(a, &admin), Some(Duration::from_secs(expected)));
            assert_eq!(throttle.refuse(a, admin.clone()), Some(Duration::from_secs(expected)), "shut out");
            clock.advance(Duration::from_secs(expected));
            assert_eq!(throttle.wait(a, &admin), None, "free to try again once the wait is over");
            expected *= 2;
        }
        assert_eq!(throttle.wait(b, &admin), None, "another client is not held up");
        let ingest = Guessed::IngestKey(WorkspaceId::stored("ws_1"));
        assert_eq!(throttle.wait(a, &ingest), None, "nor is another credential of the same client");
        for _ in 0..20 {
            if let Some(wait) = throttle.wait(a, &admin) {
                clock.advance(wait);
            }
            let _ = throttle.refuse(a, admin.clone());
        }
        assert_eq!(throttle.wait(a, &admin), Some(LONGEST));
        clock.advance(FORGET + LONGEST);
        assert_eq!(throttle.refuse(a, admin.clone()), None);
        assert_eq!(throttle.wait(a, &admin), None, "forgiven after a quiet quarter of an hour");
        let _ = clock.now();
    }

    #[test]
    fn an_ipv6_client_is_its_64_network() {
        let clock = ManualClock::new(Utc::now());
        let throttle = Throttle::new(Arc::new(clock));
        for i in 0..=FREE {
            // A new address of the same /64 for every guess.
            let _ = throttle.refuse(net(&format!("2001:db8:1:2::{i:x}")), Guessed::AdminToken);
        }
        assert!(throttle.wait(net("2001:db8:1:2:ffff::1"), &Guessed::AdminToken).is_some());
        assert_eq!(throttle.wait(net("2001:db8:1:3::1"), &Guessed::AdminToken), None, "the next /64");
    }
}
