//! Webhooks.

use async_trait::async_trait;
use tracing::instrument;

use super::SqliteStore;
use super::rewindow::{rewindow, subscriptions};
use super::rows::{WEBHOOK_COLUMNS, fetch_webhook, ms, webhook};
use crate::domain::{Event, Granularity, Media, WebhookId, WorkspaceId};
use crate::store::{DEFAULT_NOTE_MAX_CHARS, NewWebhook, StoreResult, Webhook, WebhookPatch, WebhookStore};

#[async_trait]
impl WebhookStore for SqliteStore {
    #[instrument(skip_all, fields(workspace_id = %new.workspace_id))]
    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<Webhook> {
        let clock = self.writer.clock();
        let id = WebhookId::generate();
        self.write(move |conn| {
            Box::pin(async move {
                let now = ms(clock.now());
                // A new webhook starts with the messages that arrive from now on.
                sqlx::query(
                    "INSERT INTO webhooks (id, workspace_id, url, granularity, enabled, secret,
                        sub_messages, sub_session_status, timeout_ms, created_at, updated_at,
                        bundled_before, granularity_changed_at, note_max_chars, media)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(id.as_str())
                .bind(new.workspace_id.as_str())
                .bind(&new.url)
                .bind(new.granularity.map(Granularity::as_str))
                .bind(new.enabled)
                .bind(&new.secret)
                .bind(new.events.contains(&Event::Messages))
                .bind(new.events.contains(&Event::SessionStatus))
                .bind(new.timeout.map(|t| t.as_millis() as i64))
                .bind(now)
                .bind(now)
                // Messages committed in this same transaction (received at `now`) are not its.
                .bind(now + 1)
                .bind(now + 1)
                .bind(i64::from(new.note_max_chars.unwrap_or(DEFAULT_NOTE_MAX_CHARS)))
                .bind(new.media.as_str())
                .execute(&mut *conn)
                .await?;
                Ok(fetch_webhook(conn, &id).await?.expect("just inserted"))
            })
        })
        .await
    }

    async fn list_webhooks(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<Webhook>> {
        let sql =
            format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE workspace_id = ? ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id.as_str())
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(webhook).collect()
    }

    async fn get_webhook(&self, id: &WebhookId) -> StoreResult<Option<Webhook>> {
        if !id.is_well_formed() {
            return Ok(None);
        }
        let mut conn = self.readers.acquire().await?;
        fetch_webhook(&mut conn, id).await
    }

    #[instrument(skip_all, fields(webhook_id = %id))]
    async fn update_webhook(&self, id: &WebhookId, patch: WebhookPatch) -> StoreResult<Option<Webhook>> {
        let id = id.clone();
        let clock = self.writer.clock();
        self.write(move |conn| {
            Box::pin(async move {
                let now = ms(clock.now());
                let workspace: Option<String> =
                    sqlx::query_scalar("SELECT workspace_id FROM webhooks WHERE id = ?")
                        .bind(id.as_str())
                        .fetch_optional(&mut *conn)
                        .await?;
                let Some(workspace) = workspace.map(WorkspaceId::from) else {
                    return Ok(None);
                };
                let before = subscriptions(conn, &workspace).await?;
                let events = patch.events.clone();
                sqlx::query(
                    "UPDATE webhooks SET
                        url = COALESCE(?, url),
                        granularity = CASE WHEN ? THEN ? ELSE granularity END,
                        enabled = COALESCE(?, enabled),
                        secret = CASE WHEN ? THEN ? ELSE secret END,
                        sub_messages = COALESCE(?, sub_messages),
                        sub_session_status = COALESCE(?, sub_session_status),
                        timeout_ms = CASE WHEN ? THEN ? ELSE timeout_ms END,
                        note_max_chars = COALESCE(?, note_max_chars),
                        media = COALESCE(?, media),
                        -- turning a webhook on again starts its failure count afresh
                        consecutive_failures = CASE WHEN ? THEN 0 ELSE consecutive_failures END,
                        disabled_reason = CASE WHEN ? THEN NULL
                            WHEN ? AND enabled = 1 THEN 'switched off through the admin API'
                            ELSE disabled_reason END,
                        updated_at = ?
                     WHERE id = ?",
                )
                .bind(&patch.url)
                .bind(patch.granularity.is_some())
                .bind(patch.granularity.flatten().map(Granularity::as_str))
                .bind(patch.enabled)
                .bind(patch.secret.is_some())
                .bind(patch.secret.clone().flatten())
                .bind(events.as_ref().map(|e| e.contains(&Event::Messages)))
                .bind(events.as_ref().map(|e| e.contains(&Event::SessionStatus)))
                .bind(patch.timeout.is_some())
                .bind(patch.timeout.flatten().map(|t| t.as_millis() as i64))
                .bind(patch.note_max_chars.map(i64::from))
                .bind(patch.media.map(Media::as_str))
                .bind(patch.enabled == Some(true))
                .bind(patch.enabled == Some(true))
                .bind(patch.enabled == Some(false))
                .bind(now)
                .bind(id.as_str())
                .execute(&mut *conn)
                .await?;
                let after = subscriptions(conn, &workspace).await?;
                rewindow(conn, &before, &after, now).await?;
                fetch_webhook(conn, &id).await
            })
        })
        .await
    }

    #[instrument(skip_all, fields(webhook_id = %id))]
    async fn delete_webhook(&self, id: &WebhookId) -> StoreResult<bool> {
        let id = id.clone();
        self.write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM webhooks WHERE id = ?")
                    .bind(id.as_str())
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }
}
