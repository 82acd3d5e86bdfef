//! The owner e-mail outbox: e-mails queued in the transaction that decided them, claimed under a
//! lease by whichever daemon gets to them first.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::PgStore;
use super::activity::insert_event;
use super::rows::ms;
use crate::domain::{WebhookId, WorkspaceId};
use crate::store::{Email, EmailOutcome, Outbox, OutboxEmail, StoreResult};

/// Puts an e-mail in the outbox, due at once.
pub(super) async fn queue_email(
    conn: &mut PgConnection,
    email: &Email,
    workspace_id: &WorkspaceId,
    webhook_id: Option<&WebhookId>,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox (recipient, subject, body, created_at, next_attempt_at, workspace_id, webhook_id)
         VALUES ($1, $2, $3, $4, 0, $5, $6)",
    )
    .bind(&email.recipient)
    .bind(&email.subject)
    .bind(&email.body)
    .bind(now)
    .bind(workspace_id.as_str())
    .bind(webhook_id.map(WebhookId::as_str))
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Outbox for PgStore {
    async fn claim_email(&self, lease: std::time::Duration) -> StoreResult<Option<OutboxEmail>> {
        let (mut tx, now) = self.begin().await?;
        let row = sqlx::query(
            "UPDATE outbox SET next_attempt_at = $1
             WHERE id = (SELECT id FROM outbox
                         WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $2
                         ORDER BY next_attempt_at, id LIMIT 1
                         FOR UPDATE SKIP LOCKED)
             RETURNING id, recipient, subject, body, attempts",
        )
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(|row| {
            Ok(OutboxEmail {
                id: row.try_get("id")?,
                email: Email {
                    recipient: row.try_get("recipient")?,
                    subject: row.try_get("subject")?,
                    body: row.try_get("body")?,
                },
                attempts: row.try_get::<i64, _>("attempts")? as u32,
            })
        })
        .transpose()
    }

    async fn email_result(&self, id: i64, outcome: EmailOutcome) -> StoreResult<()> {
        let (mut tx, now) = self.begin().await?;
        match outcome {
            EmailOutcome::Sent => {
                sqlx::query("UPDATE outbox SET sent_at = $1, attempts = attempts + 1, last_error = NULL WHERE id = $2")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            EmailOutcome::Retry { error, at } => {
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 WHERE id = $3",
                )
                .bind(error)
                .bind(ms(at))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            EmailOutcome::GaveUp { error } => {
                let row = sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $1, failed_at = $2 WHERE id = $3
                     RETURNING recipient, subject, workspace_id,
                               (SELECT w.id FROM webhooks w WHERE w.id = outbox.webhook_id) AS webhook_id",
                )
                .bind(&error)
                .bind(now)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = row
                    && let Some(workspace_id) = row.try_get::<Option<String>, _>("workspace_id")?
                {
                    let detail = serde_json::json!({
                        "recipient": row.try_get::<String, _>("recipient")?,
                        "subject": row.try_get::<String, _>("subject")?,
                        "error": error,
                    });
                    // The webhook it was about, if it still exists.
                    let webhook = row.try_get::<Option<String>, _>("webhook_id")?.map(WebhookId::from);
                    let workspace = WorkspaceId::from(workspace_id);
                    insert_event(&mut tx, &workspace, webhook.as_ref(), now, "email_failed", &detail).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
