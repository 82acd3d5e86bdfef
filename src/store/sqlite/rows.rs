//! Row mapping for SQLite (see [`crate::store::rows`]), and the queue's one SQL literal.

use sqlx::sqlite::{SqliteConnection, SqliteRow};

use crate::domain::WebhookId;

crate::store::rows::row_mapping!(SqliteRow);

/// `status = 'pending'` as SQL text: the queue's partial indexes are declared with this literal,
/// and SQLite uses a partial index only when the query says the same literal (a bound parameter
/// would not do). Tied to [`DeliveryStatus::Pending`] by a test.
macro_rules! pending {
    () => {
        "'pending'"
    };
}
pub(super) use pending;

pub(super) async fn fetch_webhook(
    conn: &mut SqliteConnection,
    id: &WebhookId,
) -> StoreResult<Option<Webhook>> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(conn).await?;
    row.as_ref().map(webhook).transpose()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pending_literal_is_the_pending_status() {
        assert_eq!(pending!(), format!("'{}'", crate::domain::DeliveryStatus::Pending.as_str()));
    }
}
