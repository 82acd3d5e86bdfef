//! Whether a channel's vendor is reaching us: each daemon counts the requests that come to each
//! source's inbound URL, and remembers the last one refused with why, in memory; a worker hands
//! the tallies to the store every few seconds ([`crate::store::SourceStore::note_traffic`]), so a
//! request costs no write of its own and several daemons add up.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::domain::SourceId;
use crate::store::{SourceRefusal, SourceTraffic};

/// Requests seen per source since the last hand-over.
#[derive(Default)]
pub struct Traffic {
    seen: Mutex<HashMap<SourceId, SourceTraffic>>,
}

impl Traffic {
    /// A request to `source`'s inbound URL at `at`, and, when it was refused, its status and why.
    pub fn saw(&self, source: &SourceId, at: DateTime<Utc>, refused: Option<(u16, String)>) {
        let mut seen = self.seen.lock().expect("traffic");
        let entry = seen.entry(source.clone()).or_insert_with(|| SourceTraffic {
            source: source.clone(),
            buckets: Vec::new(),
            last_request_at: at,
            last_refusal: None,
        });
        let bucket = SourceTraffic::bucket_of(at);
        match entry.buckets.iter_mut().find(|(b, _)| *b == bucket) {
            Some((_, n)) => *n += 1,
            None => entry.buckets.push((bucket, 1)),
        }
        entry.last_request_at = entry.last_request_at.max(at);
        if let Some((status, reason)) = refused {
            entry.last_refusal =
                Some(SourceRefusal { at, status, reason: reason.chars().take(300).collect() });
        }
    }

    /// Everything seen since the last call.
    pub fn take(&self) -> Vec<SourceTraffic> {
        self.seen.lock().expect("traffic").drain().map(|(_, t)| t).collect()
    }
}

/// How often the tallies go to the store.
const EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Hands the tallies to the store every two seconds, and once more when `cancel` fires. A failed
/// hand-over is logged; its counts are lost, which loses no message.
pub async fn hand_over(
    store: std::sync::Arc<dyn crate::store::SourceStore>,
    traffic: std::sync::Arc<Traffic>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(EVERY) => false,
            _ = cancel.cancelled() => true,
        };
        if let Err(e) = store.note_traffic(traffic.take()).await {
            tracing::warn!(error = %e, "counting the sources' requests failed");
        }
        if stopping {
            return;
        }
    }
}
