//! Sources ([`crate::store::SourceStore`]), for both engines.

/// The SQL of [`crate::store::SourceStore`] for one engine: `$store` implements it over
/// connections of type `$conn`.
macro_rules! sources {
    ($store:ident, $conn:ty) => {
        mod sources {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};

            use super::rows::{SOURCES, of_workspace, one_of};
            use crate::domain::{InboundKey, SourceId, WorkspaceId};
            use crate::store::sql::{account_set, bind_account};
            use sqlx::Row;

            use super::rows::{from_ms, ms};
            use crate::store::{
                NewSource, REPLAY_MEMORY, Source, SourceHealth, SourcePatch, SourceRefusal, SourceStore, SourceTraffic,
                StoreResult,
            };

            async fn fetch(conn: &mut $conn, column: &str, value: &str) -> StoreResult<Option<Source>> {
                one_of(conn, SOURCES, column, value).await
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
                            .bind(new.name.as_str())
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
                    of_workspace(&mut *self.reads().acquire().await?, SOURCES, workspace_id).await
                }

                async fn get_source(&self, id: &SourceId) -> StoreResult<Option<Source>> {
                    fetch(&mut *self.reads().acquire().await?, "id", id.as_str()).await
                }

                async fn update_source(&self, id: &SourceId, patch: SourcePatch) -> StoreResult<Option<Source>> {
                    let id = id.clone();
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            let sql = format!(
                                "UPDATE sources SET
                                    name = COALESCE($1, name),
                                    credentials = COALESCE($2, credentials),
                                    enabled = COALESCE($3, enabled),
                                    inbound_key = COALESCE($4, inbound_key),
                                    updated_at = $5,
                                    {}
                                 WHERE id = $10",
                                account_set(6)
                            );
                            let query = sqlx::query(sqlx::AssertSqlSafe(sql))
                                .bind(patch.name.as_ref().map(crate::domain::Name::as_str))
                                .bind(patch.credentials.as_ref().map(|c| c.to_string()))
                                .bind(patch.enabled)
                                .bind(patch.new_inbound_key.then(|| InboundKey::generate().as_str().to_string()))
                                .bind(now);
                            let changed = bind_account!(query, &patch.account)
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
                            sqlx::query("DELETE FROM source_traffic WHERE source_id = $1")
                                .bind(id.as_str())
                                .execute(&mut *conn)
                                .await?;
                            let done = sqlx::query("DELETE FROM sources WHERE id = $1")
                                .bind(id.as_str())
                                .execute(conn)
                                .await?;
                            Ok(done.rows_affected() > 0)
                        })
                    })
                    .await
                }

                async fn note_traffic(&self, traffic: Vec<SourceTraffic>) -> StoreResult<()> {
                    if traffic.is_empty() {
                        return Ok(());
                    }
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            for seen in &traffic {
                                let source = seen.source.as_str();
                                let known = sqlx::query(
                                    "UPDATE sources SET last_request_at = $1
                                     WHERE id = $2 AND (last_request_at IS NULL OR last_request_at < $1)",
                                )
                                .bind(ms(seen.last_request_at))
                                .bind(source)
                                .execute(&mut *conn)
                                .await?;
                                let exists = known.rows_affected() > 0
                                    || sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM sources WHERE id = $1)")
                                        .bind(source)
                                        .fetch_one(&mut *conn)
                                        .await?;
                                if !exists {
                                    continue;
                                }
                                for (bucket, requests) in &seen.buckets {
                                    sqlx::query(
                                        "INSERT INTO source_traffic (source_id, bucket, requests) VALUES ($1, $2, $3)
                                         ON CONFLICT (source_id, bucket)
                                         DO UPDATE SET requests = source_traffic.requests + excluded.requests",
                                    )
                                    .bind(source)
                                    .bind(*bucket)
                                    .bind(*requests as i64)
                                    .execute(&mut *conn)
                                    .await?;
                                }
                                if let Some(refusal) = &seen.last_refusal {
                                    sqlx::query(
                                        "UPDATE sources SET last_refusal_at = $1, last_refusal_status = $2, last_refusal_reason = $3
                                         WHERE id = $4 AND (last_refusal_at IS NULL OR last_refusal_at <= $1)",
                                    )
                                    .bind(ms(refusal.at))
                                    .bind(i64::from(refusal.status))
                                    .bind(&refusal.reason)
                                    .bind(source)
                                    .execute(&mut *conn)
                                    .await?;
                                }
                            }
                            let forget_before = now.div_euclid(SourceTraffic::BUCKET_MS) - 2 * 144;
                            sqlx::query("DELETE FROM source_traffic WHERE bucket < $1")
                                .bind(forget_before)
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .await
                }

                async fn source_health(&self, id: &SourceId, now: DateTime<Utc>) -> StoreResult<SourceHealth> {
                    let row = sqlx::query(
                        "SELECT last_request_at, last_refusal_at, last_refusal_status, last_refusal_reason,
                                (SELECT CAST(COALESCE(SUM(requests), 0) AS BIGINT) FROM source_traffic
                                 WHERE source_id = $1 AND bucket >= $2) AS requests_24h
                         FROM sources WHERE id = $1",
                    )
                    .bind(id.as_str())
                    .bind(SourceTraffic::bucket_of(now - chrono::Duration::hours(24)))
                    .fetch_optional(self.reads())
                    .await?;
                    let Some(row) = row else { return Ok(SourceHealth::default()) };
                    let refusal = match row.try_get::<Option<i64>, _>("last_refusal_at")? {
                        Some(at) => Some(SourceRefusal {
                            at: from_ms(at),
                            status: row.try_get::<Option<i64>, _>("last_refusal_status")?.unwrap_or(0) as u16,
                            reason: row.try_get::<Option<String>, _>("last_refusal_reason")?.unwrap_or_default(),
                        }),
                        None => None,
                    };
                    Ok(SourceHealth {
                        last_request_at: row.try_get::<Option<i64>, _>("last_request_at")?.map(from_ms),
                        requests_24h: row.try_get::<i64, _>("requests_24h")? as u64,
                        last_refusal: refusal,
                    })
                }

                async fn source_by_inbound_key(&self, key: &InboundKey) -> StoreResult<Option<Source>> {
                    let mut conn = self.reads().acquire().await?;
                    fetch(&mut conn, "inbound_key", key.as_str()).await
                }

                async fn rotate_inbound_key(&self, id: &SourceId) -> StoreResult<Option<Source>> {
                    self.update_source(id, SourcePatch { new_inbound_key: true, ..SourcePatch::default() }).await
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
