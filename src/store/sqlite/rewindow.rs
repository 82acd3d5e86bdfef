//! The rule that moves a webhook's windowing when its settings (or its workspace's) change.

use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

use crate::domain::WorkspaceId;
use crate::store::StoreResult;

/// What decides how a webhook's messages are windowed.
pub(super) struct Subscription {
    id: String,
    /// The granularity in effect.
    granularity: String,
    /// Whether it takes messages.
    subscribed: bool,
    timezone: String,
}

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
    rows.iter()
        .map(|r| {
            Ok(Subscription {
                id: r.try_get("id")?,
                granularity: r.try_get("granularity")?,
                subscribed: r.try_get("sub_messages")?,
                timezone: r.try_get("timezone")?,
            })
        })
        .collect()
}

/// After a change to webhooks or their workspace, moves the windowing state of each webhook whose
/// windows changed. Taking messages again starts from now. Otherwise what is buffered stays
/// buffered, and belongs to the window open now (under the new granularity and time zone), or
/// goes out at once when the new granularity is `none`; nothing buffered is dropped.
///
/// The change takes effect just after `now`, the transaction's time: messages committed in this
/// transaction (received at `now`) were handled under the old settings, and every later
/// transaction's time is past `now`.
pub(super) async fn rewindow(
    conn: &mut SqliteConnection,
    before: &[Subscription],
    after: &[Subscription],
    now: i64,
) -> StoreResult<()> {
    let now = now + 1;
    for new in after {
        let Some(old) = before.iter().find(|b| b.id == new.id) else {
            continue;
        };
        let fresh = new.subscribed && (!old.subscribed || old.granularity == "none");
        let moved =
            old.granularity != new.granularity || (old.timezone != new.timezone && new.granularity != "none");
        if fresh && new.granularity != "none" {
            // Buffered messages still waiting to go out one by one (a switch to `none` that the
            // closer has not carried out yet) keep their place: sent twice beats not sent.
            sqlx::query(
                "UPDATE webhooks SET granularity_changed_at = ?1,
                    bundled_before = CASE WHEN bundled_before < granularity_changed_at
                                          THEN bundled_before ELSE ?1 END
                 WHERE id = ?2",
            )
            .bind(now)
            .bind(&new.id)
            .execute(&mut *conn)
            .await?;
        } else if new.subscribed && moved {
            sqlx::query("UPDATE webhooks SET granularity_changed_at = ? WHERE id = ?")
                .bind(now)
                .bind(&new.id)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}
