//! Sources.

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;

use super::SqliteStore;
use super::rows::{SOURCE_COLUMNS, ms, source};
use chrono::{DateTime, Utc};

use crate::domain::{InboundKey, SourceId, WorkspaceId};
use crate::store::{NewSource, REPLAY_MEMORY, Source, SourcePatch, SourceStore, StoreResult};

async fn fetch_source(conn: &mut SqliteConnection, id: &SourceId) -> StoreResult<Option<Source>> {
    let sql = format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(conn).await?;
    row.as_ref().map(source).transpose()
}

#[async_trait]
impl SourceStore for SqliteStore {
    async fn create_source(&self, new: NewSource) -> StoreResult<Source> {
        let clock = self.writer.clock();
        self.write(move |conn| {
            Box::pin(async move {
                let id = SourceId::unguessable();
                let now = ms(clock.now());
                sqlx::query(
                    "INSERT INTO sources (id, inbound_key, workspace_id, kind, name, account_full_name, account_email,
                        account_phone, credentials, enabled, created_at, updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(id.as_str())
                .bind(InboundKey::generate().as_str())
                .bind(new.workspace_id.as_str())
                .bind(new.kind.as_str())
                .bind(&new.name)
                .bind(&new.account.full_name)
                .bind(&new.account.email)
                .bind(&new.account.phone)
                .bind(new.credentials.to_string())
                .bind(new.enabled)
                .bind(now)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(fetch_source(conn, &id).await?.expect("just inserted"))
            })
        })
        .await
    }

    async fn list_sources(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<Source>> {
        let sql =
            format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE workspace_id = ? ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id.as_str())
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(source).collect()
    }

    async fn get_source(&self, id: &SourceId) -> StoreResult<Option<Source>> {
        if !id.is_well_formed() {
            return Ok(None);
        }
        let mut conn = self.readers.acquire().await?;
        fetch_source(&mut conn, id).await
    }

    async fn update_source(&self, id: &SourceId, patch: SourcePatch) -> StoreResult<Option<Source>> {
        let (id, clock) = (id.clone(), self.writer.clock());
        self.write(move |conn| {
            Box::pin(async move {
                let account = patch.account.clone();
                let changed = sqlx::query(
                    "UPDATE sources SET
                        name = COALESCE(?, name),
                        account_full_name = CASE WHEN ? THEN ? ELSE account_full_name END,
                        account_email = CASE WHEN ? THEN ? ELSE account_email END,
                        account_phone = CASE WHEN ? THEN ? ELSE account_phone END,
                        credentials = COALESCE(?, credentials),
                        enabled = COALESCE(?, enabled),
                        updated_at = ?
                     WHERE id = ?",
                )
                .bind(&patch.name)
                .bind(account.is_some())
                .bind(account.as_ref().and_then(|a| a.full_name.clone()))
                .bind(account.is_some())
                .bind(account.as_ref().and_then(|a| a.email.clone()))
                .bind(account.is_some())
                .bind(account.as_ref().and_then(|a| a.phone.clone()))
                .bind(patch.credentials.as_ref().map(|c| c.to_string()))
                .bind(patch.enabled)
                .bind(ms(clock.now()))
                .bind(id.as_str())
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if changed == 0 {
                    return Ok(None);
                }
                fetch_source(conn, &id).await
            })
        })
        .await
    }

    async fn delete_source(&self, id: &SourceId) -> StoreResult<bool> {
        let id = id.clone();
        self.write(move |conn| {
            Box::pin(async move {
                let done =
                    sqlx::query("DELETE FROM sources WHERE id = ?").bind(id.as_str()).execute(conn).await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    async fn source_by_inbound_key(&self, key: &InboundKey) -> StoreResult<Option<Source>> {
        let sql = format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE inbound_key = ?");
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(key.as_str()).fetch_optional(&self.readers).await?;
        row.as_ref().map(source).transpose()
    }

    async fn rotate_inbound_key(&self, id: &SourceId) -> StoreResult<Option<Source>> {
        let (id, clock) = (id.clone(), self.writer.clock());
        self.write(move |conn| {
            Box::pin(async move {
                let changed = sqlx::query("UPDATE sources SET inbound_key = ?, updated_at = ? WHERE id = ?")
                    .bind(InboundKey::generate().as_str())
                    .bind(ms(clock.now()))
                    .bind(id.as_str())
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                if changed == 0 {
                    return Ok(None);
                }
                fetch_source(conn, &id).await
            })
        })
        .await
    }

    async fn admit_signed(
        &self,
        source: &SourceId,
        signed: &str,
        digest: [u8; 32],
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (source, signed) = (source.clone(), signed.to_string());
        let forget_before = ms(now) - REPLAY_MEMORY.as_millis() as i64;
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM replays WHERE seen_at < ?")
                    .bind(forget_before)
                    .execute(&mut *conn)
                    .await?;
                let new = sqlx::query(
                    "INSERT INTO replays (source_id, signed, digest, seen_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (source_id, signed) DO NOTHING",
                )
                .bind(source.as_str())
                .bind(&signed)
                .bind(&digest[..])
                .bind(ms(now))
                .execute(&mut *conn)
                .await?
                .rows_affected()
                    == 1;
                if new {
                    return Ok(true);
                }
                let first: Vec<u8> =
                    sqlx::query_scalar("SELECT digest FROM replays WHERE source_id = ? AND signed = ?")
                        .bind(source.as_str())
                        .bind(&signed)
                        .fetch_one(&mut *conn)
                        .await?;
                Ok(first == digest)
            })
        })
        .await
    }
}
