//! Workspaces.

use async_trait::async_trait;
use sqlx::postgres::PgConnection;
use tracing::instrument;

use super::rewindow::{rewindow, subscriptions};
use super::rows::{WORKSPACE_COLUMNS, workspace, workspace_stats};
use super::{PgStore, lock_workspace, raise_closed_through};
use crate::domain::{DeliveryStatus, Granularity, Locale, WorkspaceId, random_token};
use crate::store::{NewWorkspace, StoreResult, Workspace, WorkspacePatch, WorkspaceStats, WorkspaceStore};

pub(super) async fn fetch_workspace(
    conn: &mut PgConnection,
    id: &WorkspaceId,
) -> StoreResult<Option<Workspace>> {
    let sql = format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(conn).await?;
    row.as_ref().map(workspace).transpose()
}

#[async_trait]
impl WorkspaceStore for PgStore {
    #[instrument(skip_all)]
    async fn create_workspace(&self, new: NewWorkspace) -> StoreResult<Workspace> {
        let id = WorkspaceId::generate();
        let (mut tx, now) = self.begin().await?;
        sqlx::query(
            "INSERT INTO workspaces (id, name, owner_email, timezone, granularity, account_full_name,
                account_email, account_phone, ingest_key, created_at, updated_at, locale)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)",
        )
        .bind(id.as_str())
        .bind(&new.name)
        .bind(&new.owner_email)
        .bind(&new.timezone)
        .bind(new.granularity.as_str())
        .bind(&new.account.full_name)
        .bind(&new.account.email)
        .bind(&new.account.phone)
        .bind(format!("ik_{}", random_token(32)))
        .bind(now)
        .bind(new.locale.as_str())
        .execute(&mut *tx)
        .await?;
        let created = fetch_workspace(&mut tx, &id).await?.expect("just inserted");
        tx.commit().await?;
        Ok(created)
    }

    async fn list_workspaces(&self) -> StoreResult<Vec<Workspace>> {
        let sql = format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(workspace).collect()
    }

    async fn get_workspace(&self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
        if !id.is_well_formed() {
            return Ok(None);
        }
        let mut conn = self.pool.acquire().await?;
        fetch_workspace(&mut conn, id).await
    }

    #[instrument(skip_all, fields(workspace_id = %id))]
    async fn update_workspace(
        &self,
        id: &WorkspaceId,
        patch: WorkspacePatch,
    ) -> StoreResult<Option<Workspace>> {
        let mut tx = self.pool.begin().await?;
        // A change of windowing takes effect at one instant for every daemon: no message of the
        // workspace commits while it does (see the module's notes).
        lock_workspace(&mut tx, id, true).await?;
        let now = self.now_exclusive(&mut tx, id).await?;
        let before = subscriptions(&mut tx, id).await?;
        let account = patch.account.clone();
        let changed = sqlx::query(
            "UPDATE workspaces SET
                name = COALESCE($1, name),
                owner_email = COALESCE($2, owner_email),
                timezone = COALESCE($3, timezone),
                granularity = COALESCE($4, granularity),
                account_full_name = CASE WHEN $5 THEN $6 ELSE account_full_name END,
                account_email = CASE WHEN $5 THEN $7 ELSE account_email END,
                account_phone = CASE WHEN $5 THEN $8 ELSE account_phone END,
                updated_at = $9,
                locale = COALESCE($11, locale)
             WHERE id = $10",
        )
        .bind(&patch.name)
        .bind(&patch.owner_email)
        .bind(&patch.timezone)
        .bind(patch.granularity.map(Granularity::as_str))
        .bind(account.is_some())
        .bind(account.as_ref().and_then(|a| a.full_name.clone()))
        .bind(account.as_ref().and_then(|a| a.email.clone()))
        .bind(account.as_ref().and_then(|a| a.phone.clone()))
        .bind(now)
        .bind(id.as_str())
        .bind(patch.locale.map(Locale::as_str))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        let after = subscriptions(&mut tx, id).await?;
        rewindow(&mut tx, &before, &after, now).await?;
        raise_closed_through(&mut tx, id, now + 1).await?;
        let updated = fetch_workspace(&mut tx, id).await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn workspace_stats(&self, id: &WorkspaceId) -> StoreResult<WorkspaceStats> {
        let row = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM chats WHERE workspace_id = $1) AS chats,
               (SELECT COUNT(*) FROM messages WHERE workspace_id = $1) AS messages,
               (SELECT COUNT(*) FILTER (WHERE d.status = $2) FROM deliveries d
                  JOIN webhooks w ON w.id = d.webhook_id WHERE w.workspace_id = $1) AS pending,
               (SELECT COUNT(*) FILTER (WHERE d.status = $3) FROM deliveries d
                  JOIN webhooks w ON w.id = d.webhook_id WHERE w.workspace_id = $1) AS delivered,
               (SELECT COUNT(*) FILTER (WHERE d.status = $4) FROM deliveries d
                  JOIN webhooks w ON w.id = d.webhook_id WHERE w.workspace_id = $1) AS expired,
               (SELECT COUNT(*) FILTER (WHERE d.status = $5) FROM deliveries d
                  JOIN webhooks w ON w.id = d.webhook_id WHERE w.workspace_id = $1) AS failed",
        )
        .bind(id.as_str())
        .bind(DeliveryStatus::Pending.as_str())
        .bind(DeliveryStatus::Delivered.as_str())
        .bind(DeliveryStatus::Expired.as_str())
        .bind(DeliveryStatus::Failed.as_str())
        .fetch_one(&self.pool)
        .await?;
        workspace_stats(&row)
    }
}
