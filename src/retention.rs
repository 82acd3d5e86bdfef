//! The activity log's upkeep: a retention job that deletes what is older than `retention`, a few
//! hundred rows per transaction, so that it never holds up ingest.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use crate::clock::SharedClock;
use std::sync::Arc;

use crate::store::ActivityLog;

/// Rows of each kind per pruning transaction.
const BATCH: u32 = 500;
/// How often the job runs.
const EVERY: Duration = Duration::from_secs(3600);

/// Prunes once at start and then every hour, until `cancel` fires.
pub async fn retention_job(
    log: Arc<dyn ActivityLog>,
    clock: SharedClock,
    retention: Duration,
    cancel: CancellationToken,
) {
    loop {
        let now = clock.now();
        let before = now - chrono::Duration::from_std(retention).expect("retention fits");
        let mut total = 0;
        loop {
            if cancel.is_cancelled() {
                return;
            }
            match log.prune(before, BATCH).await {
                Ok(pruned) => {
                    total += pruned.rows;
                    if pruned.rows == 0 {
                        break;
                    }
                    // Let waiting writes go first between batches.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    error!(error = %e, "pruning the activity log failed; will try again");
                    break;
                }
            }
        }
        if total > 0 {
            info!(rows = total, before = %before, "pruned the activity log");
        } else {
            debug!("nothing to prune");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = clock.sleep_until(now + EVERY) => {}
        }
    }
}
