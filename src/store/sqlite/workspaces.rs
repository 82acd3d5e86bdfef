//! Workspaces.

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;
use tracing::instrument;

use super::SqliteStore;
use super::rewindow::{rewindow, subscriptions};
use super::rows::{WORKSPACE_COLUMNS, ms, pending, workspace, workspace_stats};
use crate::domain::{Granularity, Locale, WorkspaceId, random_token};
use crate::store::{NewWorkspace, StoreResult, Workspace, WorkspacePatch, WorkspaceStats, WorkspaceStore};

pub(super) async fn fetch_workspace(
    conn: &mut SqliteConnection,
    id: &WorkspaceId,
) -> StoreResult<Option<Workspace>> {
    let sql = format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(conn).await?;
    row.as_ref().map(workspace).transpose()
}

#[async_trait]
impl WorkspaceStore for SqliteStore {
    #[instrument(skip_all)]
    async fn create_workspace(&self, new: NewWorkspace) -> StoreResult<Workspace> {
        let clock = self.writer.clock();
        let id = WorkspaceId::generate();
        self.write(move |conn| {
            Box::pin(async move {
                let now = ms(clock.now());
                sqlx::query(
                    "INSERT INTO workspaces (id, name, owner_email, timezone, granularity,
                        account_full_name, account_email, account_phone, ingest_key, created_at,
                        updated_at, locale)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                .bind(now)
                .bind(new.locale.as_str())
                .execute(&mut *conn)
                .await?;
                Ok(fetch_workspace(conn, &id).await?.expect("just inserted"))
            })
        })
        .await
    }

    async fn list_workspaces(&self) -> StoreResult<Vec<Workspace>> {
        let sql = format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.readers).await?;
        rows.iter().map(workspace).collect()
    }

    async fn get_workspace(&self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
        if !id.is_well_formed() {
            return Ok(None);
        }
        let mut conn = self.readers.acquire().await?;
        fetch_workspace(&mut conn, id).await
    }

    #[instrument(skip_all, fields(workspace_id = %id))]
    async fn update_workspace(
        &self,
        id: &WorkspaceId,
        patch: WorkspacePatch,
    ) -> StoreResult<Option<Workspace>> {
        let id = id.clone();
        let clock = self.writer.clock();
        self.write(move |conn| {
            Box::pin(async move {
                let now = ms(clock.now());
                let before = subscriptions(conn, &id).await?;
                let account = patch.account.clone();
                let changed = sqlx::query(
                    "UPDATE workspaces SET
                        name = COALESCE(?, name),
                        owner_email = COALESCE(?, owner_email),
                        timezone = COALESCE(?, timezone),
                        granularity = COALESCE(?, granularity),
                        account_full_name = CASE WHEN ? THEN ? ELSE account_full_name END,
                        account_email = CASE WHEN ? THEN ? ELSE account_email END,
                        account_phone = CASE WHEN ? THEN ? ELSE account_phone END,
                        locale = COALESCE(?, locale),
                        updated_at = ?
                     WHERE id = ?",
                )
                .bind(&patch.name)
                .bind(&patch.owner_email)
                .bind(&patch.timezone)
                .bind(patch.granularity.map(Granularity::as_str))
                .bind(account.is_some())
                .bind(account.as_ref().and_then(|a| a.full_name.clone()))
                .bind(account.is_some())
                .bind(account.as_ref().and_then(|a| a.email.clone()))
                .bind(account.is_some())
                .bind(account.as_ref().and_then(|a| a.phone.clone()))
                .bind(patch.locale.map(Locale::as_str))
                .bind(now)
                .bind(id.as_str())
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if changed == 0 {
                    return Ok(None);
                }
                let after = subscriptions(conn, &id).await?;
                rewindow(conn, &before, &after, now).await?;
                fetch_workspace(conn, &id).await
            })
        })
        .await
    }

    async fn workspace_stats(&self, id: &WorkspaceId) -> StoreResult<WorkspaceStats> {
        let row = sqlx::query(concat!(
            "SELECT
               (SELECT COUNT(*) FROM chats WHERE workspace_id = ?1) AS chats,
               (SELECT COUNT(*) FROM messages WHERE workspace_id = ?1) AS messages,
               (SELECT COUNT(*) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                 WHERE w.workspace_id = ?1 AND d.status = ",
            pending!(),
            ") AS pending,
               (SELECT COUNT(*) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                 WHERE w.workspace_id = ?1 AND d.status = ?2) AS delivered,
               (SELECT COUNT(*) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                 WHERE w.workspace_id = ?1 AND d.status = ?3) AS expired,
               (SELECT COUNT(*) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                 WHERE w.workspace_id = ?1 AND d.status = ?4) AS failed"
        ))
        .bind(id.as_str())
        .bind(crate::domain::DeliveryStatus::Delivered.as_str())
        .bind(crate::domain::DeliveryStatus::Expired.as_str())
        .bind(crate::domain::DeliveryStatus::Failed.as_str())
        .fetch_one(&self.readers)
        .await?;
        workspace_stats(&row)
    }
}
