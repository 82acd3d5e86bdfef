//! The outbox of e-mails to workspace owners.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

use super::SqliteStore;
use super::activity::insert_event;
use super::rows::ms;
use crate::domain::{WebhookId, WorkspaceId};
use crate::store::{Email, EmailOutcome, Outbox, OutboxEmail, StoreResult};

/// Puts an e-mail in the outbox, due at once, noting the workspace and webhook it is about.
pub(super) async fn queue_email(
    conn: &mut SqliteConnection,
    email: &Email,
    workspace_id: &WorkspaceId,
    webhook_id: Option<&WebhookId>,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox (recipient, subject, body, created_at, next_attempt_at, workspace_id, webhook_id)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&email.recipient)
    .bind(&email.subject)
    .bind(&email.body)
    .bind(now)
    // Due whatever any clock says.
    .bind(0_i64)
    .bind(workspace_id.as_str())
    .bind(webhook_id.map(WebhookId::as_str))
    .execute(conn)
    .await?;
    Ok(())
}

/// See [`crate::store::Store::email_result`].
async fn email_result(
    conn: &mut SqliteConnection,
    id: i64,
    outcome: EmailOutcome,
    now: i64,
) -> StoreResult<()> {
    match outcome {
        EmailOutcome::Sent => {
            sqlx::query(
                "UPDATE outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        EmailOutcome::Retry { error, at } => {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?",
            )
            .bind(error)
            .bind(ms(at))
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        EmailOutcome::GaveUp { error } => {
            let row = sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, failed_at = ? WHERE id = ?
                 RETURNING recipient, subject, workspace_id, webhook_id",
            )
            .bind(&error)
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = row
                && let Some(workspace_id) = row.try_get::<Option<String>, _>("workspace_id")?
            {
                let webhook_id: Option<String> = row.try_get("webhook_id")?;
                let detail = serde_json::json!({
                    "recipient": row.try_get::<String, _>("recipient")?,
                    "subject": row.try_get::<String, _>("subject")?,
                    "error": error,
                });
                // The webhook may be gone by now; then the row belongs to the workspace.
                let exists: Option<i64> = match &webhook_id {
                    Some(w) => {
                        sqlx::query_scalar("SELECT 1 FROM webhooks WHERE id = ?")
                            .bind(w)
                            .fetch_optional(&mut *conn)
                            .await?
                    }
                    None => None,
                };
                let webhook = webhook_id.filter(|_| exists.is_some()).map(WebhookId::from);
                let workspace = WorkspaceId::from(workspace_id);
                insert_event(conn, &workspace, webhook.as_ref(), now, "email_failed", &detail).await?;
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn claim_email(&self, lease: std::time::Duration) -> StoreResult<Option<OutboxEmail>> {
        let clock = self.writer.clock();
        self.write(move |conn| {
            Box::pin(async move {
                let now = ms(clock.now());
                let lease_until = now + lease.as_millis() as i64;
                let row = sqlx::query(
                    "UPDATE outbox SET next_attempt_at = ?1
                     WHERE id = (SELECT id FROM outbox
                                 WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?2
                                 ORDER BY next_attempt_at, id LIMIT 1)
                     RETURNING id, recipient, subject, body, attempts",
                )
                .bind(lease_until)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
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
            })
        })
        .await
    }

    async fn email_result(&self, id: i64, outcome: EmailOutcome) -> StoreResult<()> {
        let clock = self.writer.clock();
        self.write(move |conn| Box::pin(email_result(conn, id, outcome, ms(clock.now())))).await
    }
}
