//! The web page's sessions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use super::rows::ms;
use crate::store::{StoreResult, WebSessions};

#[async_trait]
impl WebSessions for SqliteStore {
    async fn start_web_session(&self, id: &str, expires_at: DateTime<Utc>) -> StoreResult<()> {
        let (id, expires_at, clock) = (id.to_string(), ms(expires_at), self.writer.clock());
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query("INSERT INTO web_sessions (id, created_at, expires_at) VALUES (?, ?, ?)")
                    .bind(&id)
                    .bind(ms(clock.now()))
                    .bind(expires_at)
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn web_session_alive(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM web_sessions WHERE id = ? AND expires_at > ?")
                .bind(id)
                .bind(ms(now))
                .fetch_optional(&self.readers)
                .await?;
        Ok(found.is_some())
    }

    async fn end_web_session(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM web_sessions WHERE id = ?").bind(&id).execute(conn).await?;
                Ok(())
            })
        })
        .await
    }
}
