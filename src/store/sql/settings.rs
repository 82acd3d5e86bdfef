//! Workspaces and webhooks ([`crate::store::WorkspaceStore`], [`crate::store::WebhookStore`]), and
//! what a change of their settings does to windows ([`crate::store::rewindow`]), for both engines.
//! Every change that can move windows runs as the engine's windowing transaction
//! (`transact_windowing`), so it takes effect at one instant for every daemon.

/// The SQL of workspaces and webhooks for one engine (see [`super`]).
macro_rules! settings {
    ($store:ident, $conn:ty) => {
        mod settings {
            use async_trait::async_trait;
            use tracing::instrument;

            use super::rows::{
                WEBHOOKS, WORKSPACE_COLUMNS, fetch_webhook, fetch_workspace, of_workspace, subscription, workspace,
                workspace_stats,
            };
            use crate::domain::{
                ConversationMax, ConversationSilence, DeliveryStatus, EmailAddress, Event, Name, NoteMaxChars, Granularity, Locale, Media, MediaLinkTtl, Timezone, WebhookId, WorkspaceId,
                random_token,
            };
            use crate::store::rewindow::{Rewindow, Subscription, changes};
            use crate::store::sql::{Windowing, account_set, bind_account};
            use crate::store::{
                NewWebhook, NewWorkspace, StoreResult, Webhook, WebhookPatch, WebhookStore,
                Workspace, WorkspacePatch, WorkspaceStats, WorkspaceStore,
            };

            /// The windowing of every webhook of a workspace.
            async fn subscriptions(conn: &mut $conn, workspace: &WorkspaceId) -> StoreResult<Vec<Subscription>> {
                let rows = sqlx::query(
                    // A stopped webhook takes nothing: to the windowing it is not subscribed.
                    "SELECT w.id, COALESCE(w.granularity, s.granularity) AS granularity,
                            (w.sub_messages AND NOT w.stopped) AS sub_messages, s.timezone
                     FROM webhooks w JOIN workspaces s ON s.id = w.workspace_id WHERE w.workspace_id = $1",
                )
                .bind(workspace.as_str())
                .fetch_all(conn)
                .await?;
                rows.iter().map(subscription).collect()
            }

            /// Applies what changed between `before` and `after` (see [`changes`]).
            async fn rewindow(
                conn: &mut $conn,
                before: &[Subscription],
                after: &[Subscription],
                now: i64,
            ) -> StoreResult<()> {
                for change in changes(before, after, now) {
                    match change {
                        Rewindow::EndConversations { webhook, at } => {
                            super::conversations::end_for_settings(conn, &webhook, at).await?;
                        }
                        Rewindow::StartConversations { webhook, at, from_none } => {
                            super::conversations::start_for_settings(conn, &webhook, at, from_none).await?;
                        }
                        // Buffered messages still waiting to go out one by one (a switch to `none`
                        // that the closer has not carried out yet) keep their place: sent twice
                        // beats not sent.
                        Rewindow::Restart { webhook, at } => {
                            sqlx::query(
                                "UPDATE webhooks SET granularity_changed_at = $1,
                                    bundled_before = CASE WHEN bundled_before < granularity_changed_at
                                                          THEN bundled_before ELSE $1 END
                                 WHERE id = $2",
                            )
                            .bind(at)
                            .bind(webhook)
                            .execute(&mut *conn)
                            .await?;
                        }
                        Rewindow::Move { webhook, at } => {
                            sqlx::query("UPDATE webhooks SET granularity_changed_at = $1 WHERE id = $2")
                                .bind(at)
                                .bind(webhook)
                                .execute(&mut *conn)
                                .await?;
                        }
                    }
                }
                Ok(())
            }

            #[async_trait]
            impl WorkspaceStore for super::$store {
                #[instrument(skip_all)]
                async fn create_workspace(&self, new: NewWorkspace) -> StoreResult<Workspace> {
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            let id = WorkspaceId::generate();
                            sqlx::query(
                                "INSERT INTO workspaces (id, name, owner_email, timezone, granularity,
                                    account_full_name, account_email, account_phone, ingest_key, created_at,
                                    updated_at, locale, media_link_ttl_ms, message_retention_ms, transcript_link_ttl_ms,
                                    conversation_silence_ms, conversation_max_ms)
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14, $15, $16)",
                            )
                            .bind(id.as_str())
                            .bind(new.name.as_str())
                            .bind(new.owner_email.as_str())
                            .bind(new.timezone.name())
                            .bind(new.granularity.as_str())
                            .bind(&new.account.full_name)
                            .bind(&new.account.email)
                            .bind(&new.account.phone)
                            .bind(format!("ik_{}", random_token(32)))
                            .bind(now)
                            .bind(new.locale.as_str())
                            .bind(new.media_link_ttl.millis())
                            .bind(new.message_retention.millis())
                            .bind(new.transcript_link_ttl.millis())
                            .bind(new.conversation_silence.millis())
                            .bind(new.conversation_max.millis())
                            .execute(&mut *conn)
                            .await?;
                            Ok(fetch_workspace(conn, &id).await?.expect("just inserted"))
                        })
                    })
                    .await
                }

                async fn workspaces_health(&self, now: chrono::DateTime<chrono::Utc>) -> StoreResult<Vec<crate::store::WorkspaceHealth>> {
                    use sqlx::Row;
                    let sql = format!(
                        "SELECT s.id,
                            (SELECT COUNT(*) FROM webhooks w WHERE w.workspace_id = s.id AND NOT w.enabled) AS webhooks_off,
                            (SELECT COUNT(*) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                             WHERE w.workspace_id = s.id AND d.status = {pending}) AS waiting,
                            (SELECT MIN(d.created_at) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                             WHERE w.workspace_id = s.id AND d.status = {pending}) AS oldest,
                            (SELECT COUNT(*) FROM sources x WHERE x.workspace_id = s.id AND x.enabled
                               AND (x.last_request_at IS NULL OR x.last_request_at < $1)) AS silent
                         FROM workspaces s ORDER BY s.created_at, s.id",
                        pending = crate::store::sql::pending!()
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(super::rows::ms(now - chrono::Duration::hours(24)))
                        .fetch_all(self.reads())
                        .await?;
                    rows.iter()
                        .map(|r| {
                            Ok(crate::store::WorkspaceHealth {
                                id: WorkspaceId::stored(r.try_get::<String, _>("id")?),
                                webhooks_off: r.try_get::<i64, _>("webhooks_off")? as u64,
                                waiting: r.try_get::<i64, _>("waiting")? as u64,
                                oldest_waiting_since: r.try_get::<Option<i64>, _>("oldest")?.map(super::rows::from_ms),
                                silent_sources: r.try_get::<i64, _>("silent")? as u64,
                            })
                        })
                        .collect()
                }

                async fn list_workspaces(&self) -> StoreResult<Vec<Workspace>> {
                    let sql = format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces ORDER BY created_at, id");
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.reads()).await?;
                    rows.iter().map(workspace).collect()
                }

                async fn get_workspace(&self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
                    fetch_workspace(&mut *self.reads().acquire().await?, id).await
                }

                #[instrument(skip_all, fields(workspace_id = %id))]
                async fn update_workspace(
                    &self,
                    id: &WorkspaceId,
                    patch: WorkspacePatch,
                ) -> StoreResult<Option<Workspace>> {
                    let changed = self.transact_windowing(Windowing::Workspace(id.clone()), move |conn, id, now| {
                        Box::pin(async move {
                            let before = subscriptions(conn, &id).await?;
                            let sql = format!(
                                "UPDATE workspaces SET
                                    name = COALESCE($1, name),
                                    owner_email = COALESCE($2, owner_email),
                                    timezone = COALESCE($3, timezone),
                                    granularity = COALESCE($4, granularity),
                                    locale = COALESCE($5, locale),
                                    updated_at = $6,
                                    {},
                                    media_link_ttl_ms = COALESCE($12, media_link_ttl_ms),
                                    message_retention_ms = CASE WHEN $13 THEN $14 ELSE message_retention_ms END,
                                    transcript_link_ttl_ms = CASE WHEN $15 THEN $16 ELSE transcript_link_ttl_ms END,
                                    reply_url = CASE WHEN $17 THEN $18 ELSE reply_url END,
                                    reply_secret = CASE WHEN $19 THEN $20 ELSE reply_secret END,
                                    conversation_silence_ms = COALESCE($21, conversation_silence_ms),
                                    conversation_max_ms = COALESCE($22, conversation_max_ms)
                                 WHERE id = $11",
                                account_set(7)
                            );
                            let query = sqlx::query(sqlx::AssertSqlSafe(sql))
                                .bind(patch.name.as_ref().map(Name::as_str))
                                .bind(patch.owner_email.as_ref().map(EmailAddress::as_str))
                                .bind(patch.timezone.as_ref().map(Timezone::name))
                                .bind(patch.granularity.map(Granularity::as_str))
                                .bind(patch.locale.map(Locale::as_str))
                                .bind(now);
                            let changed = bind_account!(query, &patch.account)
                            .bind(id.as_str())
                            .bind(patch.media_link_ttl.map(MediaLinkTtl::millis))
                            .bind(patch.message_retention.is_some())
                            .bind(patch.message_retention.and_then(crate::domain::MessageRetention::millis))
                            .bind(patch.transcript_link_ttl.is_some())
                            .bind(patch.transcript_link_ttl.and_then(crate::domain::TranscriptLinkTtl::millis))
                            .bind(patch.reply_url.is_some())
                            .bind(patch.reply_url.clone().flatten())
                            .bind(patch.reply_secret.is_some())
                            .bind(patch.reply_secret.clone().flatten())
                            .bind(patch.conversation_silence.map(ConversationSilence::millis))
                            .bind(patch.conversation_max.map(ConversationMax::millis))
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                            if changed == 0 {
                                return Ok(None);
                            }
                            let after = subscriptions(conn, &id).await?;
                            rewindow(conn, &before, &after, now).await?;
                            if patch.conversation_silence.is_some() || patch.conversation_max.is_some() {
                                super::conversations::retime(conn, id.as_str()).await?;
                            }
                            fetch_workspace(conn, &id).await
                        })
                    })
                    .await?;
                    Ok(changed.flatten())
                }

                async fn workspace_stats(&self, id: &WorkspaceId) -> StoreResult<WorkspaceStats> {
                    let row = sqlx::query(concat!(
                        "SELECT
                           (SELECT COUNT(*) FROM chats WHERE workspace_id = $1) AS chats,
                           (SELECT COUNT(*) FROM messages WHERE workspace_id = $1) AS messages,
                           (SELECT COUNT(*) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                             WHERE w.workspace_id = $1 AND d.status = ",
                        crate::store::sql::pending!(),
                        ") AS pending,
                           (SELECT COUNT(*) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                             WHERE w.workspace_id = $1 AND d.status = $2) AS delivered,
                           (SELECT COUNT(*) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                             WHERE w.workspace_id = $1 AND d.status = $3) AS expired,
                           (SELECT COUNT(*) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                             WHERE w.workspace_id = $1 AND d.status = $4) AS failed"
                    ))
                    .bind(id.as_str())
                    .bind(DeliveryStatus::Delivered.as_str())
                    .bind(DeliveryStatus::Expired.as_str())
                    .bind(DeliveryStatus::Failed.as_str())
                    .fetch_one(self.reads())
                    .await?;
                    workspace_stats(&row)
                }
            }

            #[async_trait]
            impl WebhookStore for super::$store {
                #[instrument(skip_all, fields(workspace_id = %new.workspace_id))]
                async fn create_webhook(&self, new: NewWebhook) -> StoreResult<Webhook> {
                    let workspace = Windowing::Workspace(new.workspace_id.clone());
                    let created = self.transact_windowing(workspace, move |conn, _, now| {
                        Box::pin(async move {
                            let id = WebhookId::generate();
                            // It takes the messages committed after this transaction: those
                            // received at `now`, in it, are not its.
                            sqlx::query(
                                "INSERT INTO webhooks (id, workspace_id, url, granularity, enabled, secret,
                                    sub_messages, sub_session_status, timeout_ms, created_at, updated_at,
                                    bundled_before, granularity_changed_at, note_max_chars, media_choice,
                                    conversation_silence_ms, conversation_max_ms)
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $11, $12, $13, $14, $15)",
                            )
                            .bind(id.as_str())
                            .bind(new.workspace_id.as_str())
                            .bind(new.url.as_str())
                            .bind(new.granularity.map(Granularity::as_str))
                            .bind(new.enabled)
                            .bind(&new.secret)
                            .bind(new.events.contains(&Event::Messages))
                            .bind(new.events.contains(&Event::SessionStatus))
                            .bind(new.timeout.map(|t| t.as_millis() as i64))
                            .bind(now)
                            .bind(now + 1)
                            .bind(i64::from(new.note_max_chars.unwrap_or(NoteMaxChars::DEFAULT).get()))
                            .bind(new.media.as_str())
                            .bind(new.conversation_silence.map(ConversationSilence::millis))
                            .bind(new.conversation_max.map(ConversationMax::millis))
                            .execute(&mut *conn)
                            .await?;
                            Ok(fetch_webhook(conn, &id).await?.expect("just inserted"))
                        })
                    })
                    .await?;
                    Ok(created.expect("a workspace's windowing transaction always runs"))
                }

                async fn list_webhooks(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<Webhook>> {
                    of_workspace(&mut *self.reads().acquire().await?, WEBHOOKS, workspace_id).await
                }

                async fn get_webhook(&self, id: &WebhookId) -> StoreResult<Option<Webhook>> {
                    fetch_webhook(&mut *self.reads().acquire().await?, id).await
                }

                #[instrument(skip_all, fields(webhook_id = %id))]
                async fn update_webhook(&self, id: &WebhookId, patch: WebhookPatch) -> StoreResult<Option<Webhook>> {
                    let webhook = id.clone();
                    let updated = self.transact_windowing(Windowing::OfWebhook(id.clone()), move |conn, workspace, now| {
                        Box::pin(async move {
                            let before = subscriptions(conn, &workspace).await?;
                            let events = patch.events.clone();
                            sqlx::query(
                                "UPDATE webhooks SET
                                    url = COALESCE($1, url),
                                    granularity = CASE WHEN $2 THEN $3 ELSE granularity END,
                                    enabled = COALESCE($4, enabled),
                                    secret = CASE WHEN $5 THEN $6 ELSE secret END,
                                    sub_messages = COALESCE($7, sub_messages),
                                    sub_session_status = COALESCE($8, sub_session_status),
                                    timeout_ms = CASE WHEN $9 THEN $10 ELSE timeout_ms END,
                                    note_max_chars = COALESCE($11, note_max_chars),
                                    media_choice = COALESCE($12, media_choice),
                                    -- turning a webhook on again starts its failure count afresh
                                    consecutive_failures = CASE WHEN $13 THEN 0 ELSE consecutive_failures END,
                                    -- on again: taking everything again; off: stopped, or paused
                                    stopped = CASE WHEN $13 THEN FALSE WHEN $14 THEN $17 ELSE stopped END,
                                    disabled_reason = CASE WHEN $13 THEN NULL
                                        WHEN $14 AND enabled THEN 'switched off through the admin API'
                                        ELSE disabled_reason END,
                                    updated_at = $15,
                                    conversation_silence_ms = CASE WHEN $18 THEN $19 ELSE conversation_silence_ms END,
                                    conversation_max_ms = CASE WHEN $20 THEN $21 ELSE conversation_max_ms END
                                 WHERE id = $16",
                            )
                            .bind(patch.url.as_ref().map(crate::domain::WebhookUrl::as_str))
                            .bind(patch.granularity.is_some())
                            .bind(patch.granularity.flatten().map(Granularity::as_str))
                            .bind(patch.enabled)
                            .bind(patch.secret.is_some())
                            .bind(patch.secret.clone().flatten())
                            .bind(events.as_ref().map(|e| e.contains(&Event::Messages)))
                            .bind(events.as_ref().map(|e| e.contains(&Event::SessionStatus)))
                            .bind(patch.timeout.is_some())
                            .bind(patch.timeout.flatten().map(|t| t.as_millis() as i64))
                            .bind(patch.note_max_chars.map(|n| i64::from(n.get())))
                            .bind(patch.media.map(Media::as_str))
                            .bind(patch.enabled == Some(true))
                            .bind(patch.enabled == Some(false))
                            .bind(now)
                            .bind(webhook.as_str())
                            .bind(patch.stop)
                            .bind(patch.conversation_silence.is_some())
                            .bind(patch.conversation_silence.flatten().map(ConversationSilence::millis))
                            .bind(patch.conversation_max.is_some())
                            .bind(patch.conversation_max.flatten().map(ConversationMax::millis))
                            .execute(&mut *conn)
                            .await?;
                            let after = subscriptions(conn, &workspace).await?;
                            rewindow(conn, &before, &after, now).await?;
                            if patch.conversation_silence.is_some() || patch.conversation_max.is_some() {
                                super::conversations::retime(conn, workspace.as_str()).await?;
                            }
                            fetch_webhook(conn, &webhook).await
                        })
                    })
                    .await?;
                    Ok(updated.flatten())
                }

                #[instrument(skip_all, fields(webhook_id = %id))]
                async fn delete_webhook(&self, id: &WebhookId) -> StoreResult<bool> {
                    let id = id.clone();
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            let done =
                                sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id.as_str()).execute(conn).await?;
                            Ok(done.rows_affected() > 0)
                        })
                    })
                    .await
                }
            }
        }
    };
}

pub(in crate::store) use settings;
