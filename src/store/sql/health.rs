//! Readiness and the gauges of `/metrics` ([`crate::store::Health`]), for both engines.

/// See the module's documentation, and [`super`] for what the engine provides.
macro_rules! health {
    ($store:ident, $conn:ty) => {
        mod health {
            use async_trait::async_trait;
            use sqlx::Row;

            use super::rows::from_ms;
            use crate::store::{Gauges, Health, StoreResult};

            #[async_trait]
            impl Health for super::$store {
                async fn probe_write(&self) -> StoreResult<()> {
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            // A real change, so the commit is written like any other: on a full
                            // disk this fails as ingest would.
                            sqlx::query("UPDATE health SET probed_at = $1 WHERE id = 1").bind(now).execute(conn).await?;
                            Ok(())
                        })
                    })
                    .await
                }

                async fn gauges(&self) -> StoreResult<Gauges> {
                    let row = sqlx::query(concat!(
                        "SELECT (SELECT COUNT(*) FROM deliveries WHERE status = ",
                        crate::store::sql::pending!(),
                        ") AS pending,
                                (SELECT created_at FROM deliveries WHERE status = ",
                        crate::store::sql::pending!(),
                        " ORDER BY seq LIMIT 1) AS oldest,
                                (SELECT COUNT(*) FROM webhooks WHERE NOT enabled) AS disabled,
                                (SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL) AS emails"
                    ))
                    .fetch_one(self.reads())
                    .await?;
                    Ok(Gauges {
                        deliveries_pending: row.try_get::<i64, _>("pending")? as u64,
                        oldest_pending: row.try_get::<Option<i64>, _>("oldest")?.map(from_ms),
                        webhooks_disabled: row.try_get::<i64, _>("disabled")? as u64,
                        emails_pending: row.try_get::<i64, _>("emails")? as u64,
                    })
                }
            }
        }
    };
}

pub(in crate::store) use health;
