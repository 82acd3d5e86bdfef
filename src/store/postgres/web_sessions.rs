//! The web page's sessions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PgStore;
use super::rows::ms;
use crate::store::{StoreResult, WebSessions};

#[async_trait]
impl WebSessions for PgStore {
    async fn start_web_session(&self, id: &str, expires_at: DateTime<Utc>) -> StoreResult<()> {
        let (mut tx, now) = self.begin().await?;
        sqlx::query("INSERT INTO web_sessions (id, created_at, expires_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(now)
            .bind(ms(expires_at))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn web_session_alive(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM web_sessions WHERE id = $1 AND expires_at > $2")
                .bind(id)
                .bind(ms(now))
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn end_web_session(&self, id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM web_sessions WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }
}
