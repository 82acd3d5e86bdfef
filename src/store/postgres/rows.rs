//! Row mapping for PostgreSQL (see [`crate::store::rows`]).

use sqlx::postgres::{PgConnection, PgRow};

use crate::domain::WebhookId;

crate::store::rows::row_mapping!(PgRow);

pub(super) async fn fetch_webhook(conn: &mut PgConnection, id: &WebhookId) -> StoreResult<Option<Webhook>> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(conn).await?;
    row.as_ref().map(webhook).transpose()
}
