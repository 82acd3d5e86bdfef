//! Scoped API tokens ([`crate::store::AccessStore`]), for both engines.

/// The SQL of [`crate::store::AccessStore`] for one engine.
macro_rules! access {
    ($store:ident, $conn:ty) => {
        mod access {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};

            use super::rows::{API_TOKENS as TOKENS, ms, of_workspace, one_of};
            use crate::domain::{TokenId, WorkspaceId};
            use crate::store::{AccessStore, ApiToken, NewApiToken, StoreResult};

            #[async_trait]
            impl AccessStore for super::$store {
                async fn create_api_token(&self, new: NewApiToken) -> StoreResult<ApiToken> {
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            let id = TokenId::generate();
                            sqlx::query(
                                "INSERT INTO api_tokens (id, workspace_id, name, role, token_hash, created_by, created_at)
                                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                            )
                            .bind(id.as_str())
                            .bind(new.workspace_id.as_str())
                            .bind(new.name.as_str())
                            .bind(new.role.as_str())
                            .bind(&new.token_hash)
                            .bind(&new.created_by)
                            .bind(now)
                            .execute(&mut *conn)
                            .await?;
                            Ok(one_of(conn, TOKENS, "id", id.as_str()).await?.expect("just inserted"))
                        })
                    })
                    .await
                }

                async fn list_api_tokens(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<ApiToken>> {
                    of_workspace(&mut *self.reads().acquire().await?, TOKENS, workspace_id).await
                }

                async fn revoke_api_token(&self, workspace_id: &WorkspaceId, id: &TokenId) -> StoreResult<bool> {
                    let (workspace_id, id) = (workspace_id.clone(), id.clone());
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND workspace_id = $2")
                                .bind(id.as_str())
                                .bind(workspace_id.as_str())
                                .execute(conn)
                                .await?;
                            Ok(done.rows_affected() > 0)
                        })
                    })
                    .await
                }

                async fn api_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiToken>> {
                    one_of(&mut *self.reads().acquire().await?, TOKENS, "token_hash", token_hash).await
                }

                async fn note_api_token_use(&self, id: &TokenId, at: DateTime<Utc>) -> StoreResult<()> {
                    let (id, at) = (id.clone(), ms(at));
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            sqlx::query(
                                "UPDATE api_tokens SET last_used_at = $1
                                 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at <= $1 - 60000)",
                            )
                            .bind(at)
                            .bind(id.as_str())
                            .execute(conn)
                            .await?;
                            Ok(())
                        })
                    })
                    .await
                }
            }
        }
    };
}

pub(in crate::store) use access;
