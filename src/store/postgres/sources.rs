//! Sources.

use async_trait::async_trait;
use sqlx::postgres::PgConnection;

use super::PgStore;
use super::rows::{SOURCE_COLUMNS, source};
use crate::domain::{SourceId, WorkspaceId};
use crate::store::{NewSource, Source, SourcePatch, SourceStore, StoreResult};

async fn fetch_source(conn: &mut PgConnection, id: &SourceId) -> StoreResult<Option<Source>> {
    let sql = format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(conn).await?;
    row.as_ref().map(source).transpose()
}

#[async_trait]
impl SourceStore for PgStore {
    async fn create_source(&self, new: NewSource) -> StoreResult<Source> {
        let id = SourceId::unguessable();
        let (mut tx, now) = self.begin().await?;
        sqlx::query(
            "INSERT INTO sources (id, workspace_id, kind, name, account_full_name, account_email, account_phone,
                credentials, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(id.as_str())
        .bind(new.workspace_id.as_str())
        .bind(new.kind.as_str())
        .bind(&new.name)
        .bind(&new.account.full_name)
        .bind(&new.account.email)
        .bind(&new.account.phone)
        .bind(new.credentials.to_string())
        .bind(new.enabled)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let created = fetch_source(&mut tx, &id).await?.expect("just inserted");
        tx.commit().await?;
        Ok(created)
    }

    async fn list_sources(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<Source>> {
        let sql =
            format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE workspace_id = $1 ORDER BY created_at, id");
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(workspace_id.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(source).collect()
    }

    async fn get_source(&self, id: &SourceId) -> StoreResult<Option<Source>> {
        if !id.is_well_formed() {
            return Ok(None);
        }
        let mut conn = self.pool.acquire().await?;
        fetch_source(&mut conn, id).await
    }

    async fn update_source(&self, id: &SourceId, patch: SourcePatch) -> StoreResult<Option<Source>> {
        let (mut tx, now) = self.begin().await?;
        let account = patch.account.clone();
        let changed = sqlx::query(
            "UPDATE sources SET
                name = COALESCE($1, name),
                account_full_name = CASE WHEN $2 THEN $3 ELSE account_full_name END,
                account_email = CASE WHEN $2 THEN $4 ELSE account_email END,
                account_phone = CASE WHEN $2 THEN $5 ELSE account_phone END,
                credentials = COALESCE($6, credentials),
                enabled = COALESCE($7, enabled),
                updated_at = $8
             WHERE id = $9",
        )
        .bind(&patch.name)
        .bind(account.is_some())
        .bind(account.as_ref().and_then(|a| a.full_name.clone()))
        .bind(account.as_ref().and_then(|a| a.email.clone()))
        .bind(account.as_ref().and_then(|a| a.phone.clone()))
        .bind(patch.credentials.as_ref().map(|c| c.to_string()))
        .bind(patch.enabled)
        .bind(now)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        let updated = fetch_source(&mut tx, id).await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn delete_source(&self, id: &SourceId) -> StoreResult<bool> {
        let done =
            sqlx::query("DELETE FROM sources WHERE id = $1").bind(id.as_str()).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }
}
