//! Reading and applying [`crate::store::rewindow`] in SQLite.

use sqlx::sqlite::SqliteConnection;

use super::rows::subscription;
use crate::domain::WorkspaceId;
use crate::store::StoreResult;
use crate::store::rewindow::{Rewindow, Subscription, changes};

/// The windowing of every webhook of a workspace.
pub(super) async fn subscriptions(
    conn: &mut SqliteConnection,
    workspace: &WorkspaceId,
) -> StoreResult<Vec<Subscription>> {
    let rows = sqlx::query(
        "SELECT w.id, COALESCE(w.granularity, s.granularity) AS granularity, w.sub_messages, s.timezone
         FROM webhooks w JOIN workspaces s ON s.id = w.workspace_id WHERE w.workspace_id = ?",
    )
    .bind(workspace.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter().map(subscription).collect()
}

/// Applies what changed between `before` and `after` (see [`changes`]).
pub(super) async fn rewindow(
    conn: &mut SqliteConnection,
    before: &[Subscription],
    after: &[Subscription],
    now: i64,
) -> StoreResult<()> {
    for change in changes(before, after, now) {
        match change {
            // Buffered messages still waiting to go out one by one (a switch to `none` that the
            // closer has not carried out yet) keep their place: sent twice beats not sent.
            Rewindow::Restart { webhook, at } => {
                sqlx::query(
                    "UPDATE webhooks SET granularity_changed_at = ?1,
                        bundled_before = CASE WHEN bundled_before < granularity_changed_at
                                              THEN bundled_before ELSE ?1 END
                     WHERE id = ?2",
                )
                .bind(at)
                .bind(webhook)
                .execute(&mut *conn)
                .await?;
            }
            Rewindow::Move { webhook, at } => {
                sqlx::query("UPDATE webhooks SET granularity_changed_at = ? WHERE id = ?")
                    .bind(at)
                    .bind(webhook)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}
