//! Sources ([`crate::store::SourceStore`]), for both engines.

/// The SQL of [`crate::store::SourceStore`] for one engine: `$store` implements it over
/// connections of type `$conn`.
macro_rules! sources {
    ($store:ident, $conn:ty) => {
        mod sources {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};

            use super::rows::{SOURCE_COLUMNS, source};
            use crate::domain::{InboundKey, SourceId, WorkspaceId};
            use crate::store::{NewSource, REPLAY_MEMORY, Source, SourcePatch, SourceStore, StoreResult};

            async fn fetch(conn: &mut $conn, column: &str, value: &str) -> StoreResult<Option<Source>> {
                let sql = format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE {column} = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).fetch_optional(conn).await?;
                row.as_ref().map(source).transpose()
            }

            #[async_trait]
            impl SourceStore for super::$store {
                async fn create_source(&self, new: NewSource) -> StoreResult<Source> {
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            let id = SourceId::unguessable();
                            sqlx::query(
                                "INSERT INTO sources (id, inbound_key, workspace_id, kind, name, account_full_name,
                                    account_email, account_phone, credentials, enabled, created_at, updated_at)
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
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
                            .execute(&mut *conn)
                            .await?;
                            Ok(fetch(conn, "id", id.as_str()).await?.expect("just inserted"))
                        })
                    })
                    .await
                }

                async fn list_sources(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<Source>> {
                    let sql = format!(
                        "SELECT {SOURCE_COLUMNS} FROM sources WHERE workspace_id = $1 ORDER BY created_at, id"
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(workspace_id.as_str())
                        .fetch_all(self.reads())
                        .await?;
                    rows.iter().map(source).collect()
                }

                async fn get_source(&self, id: &SourceId) -> StoreResult<Option<Source>> {
                    if !id.is_well_formed() {
                        return Ok(None);
                    }
                    let mut conn = self.reads().acquire().await?;
                    fetch(&mut conn, "id", id.as_str()).await
                }

                async fn update_source(&self, id: &SourceId, patch: SourcePatch) -> StoreResult<Option<Source>> {
                    let id = id.clone();
                    self.transact(move |conn, now| {
                        Box::pin(async move {
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
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                            if changed == 0 {
                                return Ok(None);
                            }
                            fetch(conn, "id", id.as_str()).await
                        })
                    })
                    .await
                }

                async fn delete_source(&self, id: &SourceId) -> StoreResult<bool> {
                    let id = id.clone();
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            let done = sqlx::query("DELETE FROM sources WHERE id = $1")
                                .bind(id.as_str())
                                .execute(conn)
                                .await?;
                            Ok(done.rows_affected() > 0)
                        })
                    })
                    .await
                }

                async fn source_by_inbound_key(&self, key: &InboundKey) -> StoreResult<Option<Source>> {
                    let mut conn = self.reads().acquire().await?;
                    fetch(&mut conn, "inbound_key", key.as_str()).await
                }

                async fn rotate_inbound_key(&self, id: &SourceId) -> StoreResult<Option<Source>> {
                    let id = id.clone();
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            let changed =
                                sqlx::query("UPDATE sources SET inbound_key = $1, updated_at = $2 WHERE id = $3")
                                    .bind(InboundKey::generate().as_str())
                                    .bind(now)
                                    .bind(id.as_str())
                                    .execute(&mut *conn)
                                    .await?
                                    .rows_affected();
                            if changed == 0 {
                                return Ok(None);
                            }
                            fetch(conn, "id", id.as_str()).await
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
                    let (source, signed, now) = (source.clone(), signed.to_string(), now.timestamp_millis());
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            sqlx::query("DELETE FROM replays WHERE seen_at < $1")
                                .bind(now - REPLAY_MEMORY.as_millis() as i64)
                                .execute(&mut *conn)
                                .await?;
                            // Two daemons that see the same pair at once: one inserts, the other
                            // finds its digest.
                            let new = sqlx::query(
                                "INSERT INTO replays (source_id, signed, digest, seen_at) VALUES ($1, $2, $3, $4)
                                 ON CONFLICT (source_id, signed) DO NOTHING",
                            )
                            .bind(source.as_str())
                            .bind(&signed)
                            .bind(&digest[..])
                            .bind(now)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected()
                                == 1;
                            if new {
                                return Ok(true);
                            }
                            let first: Vec<u8> =
                                sqlx::query_scalar("SELECT digest FROM replays WHERE source_id = $1 AND signed = $2")
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
        }
    };
}

pub(in crate::store) use sources;
