//! The data's upkeep: a job that deletes the activity log older than `retention`, and each
//! workspace's messages older than its `message_retention` (those no open window needs), a few
//! hundred rows per transaction, so that it never holds up ingest.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use crate::clock::SharedClock;

use crate::store::SharedStore;

/// Rows of each kind per pruning transaction.
const BATCH: u32 = 500;
/// How often the job runs.
const EVERY: Duration = Duration::from_secs(3600);

/// Prunes once at start and then every hour, until `cancel` fires.
pub async fn retention_job(
    log: SharedStore,
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
        forget_old_messages(&log, now, &cancel).await;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = clock.sleep_until(now + EVERY) => {}
        }
    }
}

/// Deletes, in each workspace that keeps its messages for a while, those older than that at `now`
/// which no open window needs, a batch at a time. How many went.
pub async fn forget_old_messages(
    store: &SharedStore,
    now: chrono::DateTime<chrono::Utc>,
    cancel: &CancellationToken,
) -> u64 {
    let workspaces = match store.list_workspaces().await {
        Ok(workspaces) => workspaces,
        Err(e) => {
            error!(error = %e, "listing workspaces for message retention failed; will try again");
            return 0;
        }
    };
    let mut total = 0;
    for workspace in workspaces {
        let Some(keep) = workspace.message_retention.duration() else { continue };
        let before = now - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
        loop {
            if cancel.is_cancelled() {
                return total;
            }
            match store.forget_messages(&workspace.id, before, BATCH).await {
                Ok(0) => break,
                Ok(n) => {
                    total += n;
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    error!(error = %e, workspace_id = %workspace.id, "deleting old messages failed; will try again");
                    break;
                }
            }
        }
    }
    if total > 0 {
        info!(messages = total, "deleted messages older than their workspace keeps them");
    }
    total
}
