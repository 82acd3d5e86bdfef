//! Webhooks.

use async_trait::async_trait;
use tracing::instrument;

use super::rewindow::{rewindow, subscriptions};
use super::rows::{WEBHOOK_COLUMNS, fetch_webhook, webhook};
use super::{PgStore, lock_workspace, raise_closed_through};
use crate::domain::{Event, Granularity, Media, WebhookId, WorkspaceId};
use crate::store::{DEFAULT_NOTE_MAX_CHARS, NewWebhook, StoreResult, Webhook, WebhookPatch, WebhookStore};

#[async_trait]
impl WebhookStore for PgStore {
    #[instrument(skip_all, fields(workspace_id = %new.workspace_id))]
    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<Webhook> {
        let id = WebhookId::generate();
        let mut tx = self.pool.begin().await?;
        // It takes the messages committed after this one, on every daemon.
        lock_workspace(&mut tx, &new.workspace_id, true).await?;
        let now = self.now_exclusive(&mut tx, &new.workspace_id).await?;
        sqlx::query(
            "INSERT INTO webhooks (id, workspace_id, url, granularity, enabled, secret, sub_messages,
                sub_session_status, timeout_ms, created_at, updated_at, bundled_before,
                granularity_changed_at, note_max_chars, media)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $11, $12, $13)",
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
        .bind(now + 1)
        .bind(i64::from(new.note_max_chars.unwrap_or(DEFAULT_NOTE_MAX_CHARS)))
        .bind(new.media.as_str())
        .execute(&mut *tx)
        .await?;
        raise_closed_through(&mut tx, &new.workspace_id, now + 1).await?;
        let created = fetch_webhook(&mut tx, &id).await?.expect("just inserted");
        tx.commit().await?;
        Ok(created)
    }

    async fn list_webhooks(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<Webhook>> {
        let sql =
            format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE workspace_id = $1 ORDER BY created_at, id");
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(workspace_id.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(webhook).collect()
    }

    async fn get_webhook(&self, id: &WebhookId) -> StoreResult<Option<Webhook>> {
        if !id.is_well_formed() {
            return Ok(None);
        }
        let mut conn = self.pool.acquire().await?;
        fetch_webhook(&mut conn, id).await
    }

    #[instrument(skip_all, fields(webhook_id = %id))]
    async fn update_webhook(&self, id: &WebhookId, patch: WebhookPatch) -> StoreResult<Option<Webhook>> {
        let mut tx = self.pool.begin().await?;
        let workspace: Option<String> = sqlx::query_scalar("SELECT workspace_id FROM webhooks WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(workspace) = workspace.map(WorkspaceId::from) else {
            return Ok(None);
        };
        lock_workspace(&mut tx, &workspace, true).await?;
        let now = self.now_exclusive(&mut tx, &workspace).await?;
        let before = subscriptions(&mut tx, &workspace).await?;
        let events = patch.events.clone();
        let changed = sqlx::query(
            "UPDATE webhooks SET
                url = COALESCE($1, url),
                granularity = CASE WHEN $2 THEN $3 ELSE granularity END,
                enabled = COALESCE($4, enabled),
                secret = CASE WHEN $5 THEN $6 ELSE secret END,
                sub_messages = COALESCE($7, sub_messages),
                sub_session_status = COALESCE($8, sub_session_status),
                timeout_ms = CASE WHEN $9 THEN $10 ELSE timeout_ms END,
                -- turning a webhook on again starts its failure count afresh
                consecutive_failures = CASE WHEN $11 THEN 0 ELSE consecutive_failures END,
                disabled_reason = CASE WHEN $11 THEN NULL
                    WHEN $12 AND enabled THEN 'switched off through the admin API'
                    ELSE disabled_reason END,
                updated_at = $13,
                note_max_chars = COALESCE($15, note_max_chars),
                media = COALESCE($16, media)
             WHERE id = $14",
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
        .bind(patch.enabled == Some(true))
        .bind(patch.enabled == Some(false))
        .bind(now)
        .bind(id.as_str())
        .bind(patch.note_max_chars.map(i64::from))
        .bind(patch.media.map(Media::as_str))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        let after = subscriptions(&mut tx, &workspace).await?;
        rewindow(&mut tx, &before, &after, now).await?;
        raise_closed_through(&mut tx, &workspace, now + 1).await?;
        let updated = fetch_webhook(&mut tx, id).await?;
        tx.commit().await?;
        Ok(updated)
    }

    #[instrument(skip_all, fields(webhook_id = %id))]
    async fn delete_webhook(&self, id: &WebhookId) -> StoreResult<bool> {
        let done =
            sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id.as_str()).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }
}
