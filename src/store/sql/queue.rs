//! The delivery queue ([`crate::store::DeliveryQueue`], [`crate::store::DeliveryLog`]), for both
//! engines: the one place deliveries are written ([`enqueue`]), claims under a fencing token and a
//! per-webhook token bucket, the result of each attempt (delivered, retry, given up, expired, and
//! the switch-off a run of failures causes), the deliveries list and resends.
//!
//! What the engines do their own way: which due deliveries head their lanes
//! (`super::lane_heads`: SQLite's planned with a literal limit, PostgreSQL's locked with `SKIP
//! LOCKED` and planned afresh), and recording delivered attempts, the bulk of the writes, merged
//! with others in flight (`self.record_delivered`: SQLite's writer merges them into a few
//! statements, PostgreSQL's combiner into one transaction).

/// See the module's documentation. Besides `transact` and `reads`, the engine names
/// `super::lane_heads`, `self.record_delivered`, `super::lock_row!()` (how a read locks a
/// webhook's row) and `super::for_update!()`.
macro_rules! queue {
    ($store:ident, $conn:ty) => {
        mod queue {
            use std::collections::{HashMap, HashSet};
            use std::num::NonZeroU32;

            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use sqlx::Row;
            use tracing::instrument;

            use super::log::{insert_attempt, insert_event, queue_email};
            use super::rows::{delivery, from_ms, ms};
            use crate::domain::{DeliveryId, DeliveryStatus, WebhookId, WorkspaceId};
            use crate::store::queue::{
                AttemptConsequences, AttemptEffect, Enqueue, HandOver, WebhookState, chat_label, tokens_at,
            };
            use crate::store::{
                AttemptOutcome, AttemptRecord, ClaimedDelivery, DeliveryInfo, DeliveryLog, DeliveryQueue,
                DisableNotice, FailurePolicy, GaveUpNotice, Handoff, Lease, Recorded, Resend, StoreResult,
            };

            type DbRow = <<$conn as sqlx::Connection>::Database as sqlx::Database>::Row;

            /// `next_attempt_at` of a delivery never tried: due whatever any clock says. (A
            /// transaction's time can run a little ahead of the clock the delivery worker reads.)
            const DUE_AT_ONCE: i64 = 0;

            use crate::store::sql::ROWS_PER_STATEMENT;

            /// The one place that writes deliveries: pending, due at once, queued at `now` in the
            /// lanes of their (webhook, chat), in the order given. The caller holds what orders the
            /// lanes it adds to (the writer on SQLite; on PostgreSQL the chat's row, or its
            /// workspace's exclusive lock), so `seq` follows commit order in a lane. Payloads are
            /// kept packed ([`crate::store::payload`]); a claim unpacks them.
            pub(in super::super) async fn enqueue(
                conn: &mut $conn,
                deliveries: &[Enqueue],
                now: i64,
            ) -> StoreResult<()> {
                insert_deliveries(conn, deliveries, now, None).await?;
                Ok(())
            }

            /// Who may lead their lanes at once ([`enqueue_handing_off`]): per delivery whether it
            /// is the first of its lane in what is queued, the lease, and the claim's token.
            type Leading<'a> = (&'a [bool], Lease, i64);

            /// Inserts the deliveries (see [`enqueue`]); with `leading`, those marked that find
            /// their webhook enabled and no delivery of their live lane pending are leased in the
            /// same statement, and every row comes back ([`LEASED`] and its token).
            async fn insert_deliveries(
                conn: &mut $conn,
                deliveries: &[Enqueue],
                now: i64,
                leading: Option<Leading<'_>>,
            ) -> StoreResult<Vec<DbRow>> {
                let mut returned = Vec::new();
                for (n, chunk) in deliveries.chunks(ROWS_PER_STATEMENT).enumerate() {
                    const COLUMNS: &str = "id, kind, webhook_id, chat_id, payload, status, next_attempt_at, created_at,
                                           retry_since, window_end, part, replay_id, trace_parent, trace_links";
                    let sql = match leading {
                        None => format!(
                            "INSERT INTO deliveries ({COLUMNS}) VALUES {} ON CONFLICT DO NOTHING",
                            super::PLACEHOLDERS.rows(chunk.len(), 14)
                        ),
                        // A lane's head is read per row from `deliveries_lane` (a scalar subquery:
                        // written as `NOT EXISTS`, PostgreSQL's cached plan joined the whole queue).
                        // The row being inserted is not yet there to find.
                        Some(_) => format!(
                            "INSERT INTO deliveries ({COLUMNS}, lease_until, lease_token)
                             SELECT column1, column2, column3, column4, column5, column6, column7, column8,
                                    column9, column10, column11, column12, column13, column14,
                                    CASE WHEN lead THEN {}
                                         + COALESCE((SELECT timeout_ms FROM webhooks WHERE id = column3), {}) END,
                                    CASE WHEN lead THEN {} END
                             FROM (SELECT v.*,
                                          (v.column15 AND (SELECT w.enabled FROM webhooks w WHERE w.id = v.column3)
                                           AND (SELECT e.seq FROM deliveries e
                                                WHERE e.webhook_id = v.column3 AND e.chat_id = v.column4
                                                  AND e.status = {} AND e.replay_id IS NULL
                                                LIMIT 1) IS NULL) AS lead
                                   FROM (VALUES {}) AS v) AS c
                             WHERE TRUE
                             ON CONFLICT DO NOTHING
                             RETURNING {LEASED}, lease_token",
                            super::PLACEHOLDERS.one(1),
                            super::PLACEHOLDERS.one(2),
                            super::PLACEHOLDERS.one(3),
                            crate::store::sql::pending!(),
                            super::PLACEHOLDERS.rows_from(4, chunk.len(), 15),
                        ),
                    };
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    if let Some((_, lease, token)) = leading {
                        query = query
                            .bind(now + lease.margin.as_millis() as i64)
                            .bind(lease.default_timeout.as_millis() as i64)
                            .bind(token);
                    }
                    for (i, d) in chunk.iter().enumerate() {
                        query = query
                            .bind(d.id.as_str().to_string())
                            .bind(d.kind.as_str())
                            .bind(d.webhook.as_str().to_string())
                            .bind(d.chat.map(|c| c.0))
                            .bind(crate::store::payload::pack(&d.payload))
                            .bind(DeliveryStatus::Pending.as_str())
                            .bind(DUE_AT_ONCE)
                            .bind(now)
                            .bind(now)
                            .bind(d.bundle.map(|(end, _)| end))
                            .bind(d.bundle.map(|(_, part)| i64::from(part)))
                            .bind(d.replay.clone())
                            .bind(d.trace_parent.clone())
                            .bind((!d.trace_links.is_empty()).then(|| d.trace_links.join(" ")));
                        if let Some((leads, _, _)) = leading {
                            query = query.bind(leads[n * ROWS_PER_STATEMENT + i]);
                        }
                    }
                    if leading.is_some() {
                        returned.extend(query.fetch_all(&mut *conn).await?);
                    } else {
                        query.execute(&mut *conn).await?;
                    }
                }
                Ok(returned)
            }

            /// Rounds of claiming per call: a round that found only webhooks out of tokens looks
            /// again without them, so one throttled webhook cannot starve the others.
            const CLAIM_ROUNDS: usize = 3;

            /// See [`DeliveryQueue::claim_deliveries`].
            async fn claim(
                conn: &mut $conn,
                now: i64,
                lease: Lease,
                limit: usize,
                rate: Option<NonZeroU32>,
                token: i64,
            ) -> StoreResult<Vec<ClaimedDelivery>> {
                let mut chosen: Vec<i64> = Vec::new();
                // Per webhook: tokens left after this claim, and how many it took.
                let mut buckets: HashMap<String, (f64, u32)> = HashMap::new();
                let mut exhausted: HashSet<String> = HashSet::new();
                for _ in 0..CLAIM_ROUNDS {
                    let wanted = limit - chosen.len();
                    // With a rate, look further than the free slots: some may be out of tokens.
                    let look = if rate.is_some() { wanted * 4 } else { wanted };
                    // Live lanes first; replays' lanes only with room to spare, and never more than
                    // a quarter of the free slots, so a live delivery due a moment later finds one.
                    let mut found = super::lane_heads(&mut *conn, now, look, &exhausted, false).await?;
                    let replay_room = (look - found.len()).min(look.div_ceil(4));
                    if replay_room > 0 {
                        found.extend(super::lane_heads(&mut *conn, now, replay_room, &exhausted, true).await?);
                    }
                    let complete = found.len() < look;
                    if let Some(rate) = rate {
                        // The bucket is the webhook's, shared by every claimer: its row stays
                        // locked until this claim commits. Locked in id order, so two claims
                        // never wait on each other.
                        let mut unknown: Vec<&str> = found
                            .iter()
                            .map(|(_, webhook)| webhook.as_str())
                            .filter(|id| !buckets.contains_key(*id))
                            .collect::<HashSet<_>>()
                            .into_iter()
                            .collect();
                        unknown.sort_unstable();
                        if !unknown.is_empty() {
                            let sql = format!(
                                "SELECT id, rate_tokens, rate_at FROM webhooks WHERE id IN ({}) ORDER BY id{}",
                                super::PLACEHOLDERS.list(1, unknown.len()),
                                super::lock_row!(),
                            );
                            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                            for id in &unknown {
                                query = query.bind(*id);
                            }
                            for row in query.fetch_all(&mut *conn).await? {
                                let tokens = tokens_at(
                                    row.try_get("rate_tokens")?,
                                    row.try_get("rate_at")?,
                                    now,
                                    f64::from(rate.get()),
                                );
                                buckets.insert(row.try_get("id")?, (tokens, 0));
                            }
                        }
                    }
                    for (seq, webhook) in found {
                        if chosen.len() == limit {
                            break;
                        }
                        if let Some(bucket) = buckets.get_mut(&webhook) {
                            if bucket.0 < 1.0 {
                                exhausted.insert(webhook);
                                continue;
                            }
                            bucket.0 -= 1.0;
                            bucket.1 += 1;
                        }
                        chosen.push(seq);
                    }
                    if chosen.len() == limit || complete || rate.is_none() {
                        break;
                    }
                }
                for (id, (tokens, taken)) in &buckets {
                    if *taken > 0 {
                        sqlx::query("UPDATE webhooks SET rate_tokens = $1, rate_at = $2 WHERE id = $3")
                            .bind(tokens)
                            .bind(now)
                            .bind(id)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                if chosen.is_empty() {
                    return Ok(Vec::new());
                }

                // Each delivery is held for its webhook's timeout and the margin. The list is padded
                // to a power of two with its last value (which changes nothing): a statement's
                // shape per length, prepared and planned for each, would otherwise come in as many
                // shapes as claims have sizes.
                let chosen = padded(chosen);
                let sql = format!(
                    "UPDATE deliveries SET lease_until = $1
                        + COALESCE((SELECT timeout_ms FROM webhooks WHERE id = deliveries.webhook_id), $2),
                        lease_token = $3
                     WHERE seq IN ({})
                     RETURNING {LEASED}",
                    crate::store::sql::params(4, chosen.len())
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now + lease.margin.as_millis() as i64)
                    .bind(lease.default_timeout.as_millis() as i64)
                    .bind(token);
                for seq in &chosen {
                    query = query.bind(*seq);
                }
                let rows = query.fetch_all(&mut *conn).await?;
                handed_out(conn, rows, token).await
            }

            /// The columns of a leased delivery that [`handed_out`] reads.
            const LEASED: &str = "seq, id, webhook_id, chat_id, payload, attempts, rejections,
                                  COALESCE(retry_since, created_at) AS retry_since, trace_parent, trace_links";

            /// [`enqueue`] for ingest's deliveries (`fresh`, in queue order), leasing for the worker
            /// in the same statement those whose webhook is enabled and whose live lane holds no
            /// pending delivery, of each lane the first in `fresh` only (see
            /// [`DeliveryQueue::hand_off_to`]). `None` when the worker has no room for all of
            /// them: then they are queued alone, for a claim.
            pub(in super::super) async fn enqueue_handing_off(
                conn: &mut $conn,
                fresh: &[Enqueue],
                now: i64,
                handoff: &Handoff,
            ) -> StoreResult<Option<HandOver>> {
                let Some(slots) = handoff.reserve(fresh.len()) else {
                    enqueue(conn, fresh, now).await?;
                    return Ok(None);
                };
                let token = rand::random::<i64>() & i64::MAX;
                let mut firsts = HashSet::new();
                let leads: Vec<bool> = fresh
                    .iter()
                    .map(|d| d.chat.is_some() && d.replay.is_none() && firsts.insert((d.webhook.as_str(), d.chat)))
                    .collect();
                let mut rows = Vec::new();
                for row in insert_deliveries(conn, fresh, now, Some((&leads, handoff.lease(), token))).await? {
                    if row.try_get::<Option<i64>, _>("lease_token")? == Some(token) {
                        rows.push(row);
                    }
                }
                let handed = if rows.is_empty() { Vec::new() } else { handed_out(conn, rows, token).await? };
                // The others wait in their lanes (or for their webhook to be switched on again).
                let leased: HashSet<&str> = handed.iter().map(|d| d.id.as_str()).collect();
                let mut waiting: Vec<(WebhookId, crate::domain::ChatId)> = fresh
                    .iter()
                    .filter(|d| !leased.contains(d.id.as_str()))
                    .filter_map(|d| d.chat.map(|chat| (d.webhook.clone(), chat)))
                    .collect();
                waiting.sort_unstable();
                waiting.dedup();
                Ok(Some(HandOver::new(handoff, slots, handed, waiting)))
            }

            /// Leased deliveries (rows of [`LEASED`]) with where each goes, oldest first.
            async fn handed_out(
                conn: &mut $conn,
                rows: Vec<DbRow>,
                token: i64,
            ) -> StoreResult<Vec<ClaimedDelivery>> {
                // Where each goes: one read for all their webhooks.
                let webhooks: Vec<String> = padded(
                    rows.iter()
                        .map(|r| r.try_get::<String, _>("webhook_id"))
                        .collect::<Result<HashSet<_>, _>>()?
                        .into_iter()
                        .collect(),
                );
                let sql = format!(
                    "SELECT id, workspace_id, url, secret, timeout_ms FROM webhooks WHERE id IN ({})",
                    super::PLACEHOLDERS.list(1, webhooks.len())
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for id in &webhooks {
                    query = query.bind(id);
                }
                let mut targets = HashMap::new();
                for row in query.fetch_all(&mut *conn).await? {
                    let timeout = row
                        .try_get::<Option<i64>, _>("timeout_ms")?
                        .map(|v| std::time::Duration::from_millis(v as u64));
                    let target = (
                        super::rows::webhook_url(&row)?,
                        row.try_get::<Option<String>, _>("secret")?,
                        timeout,
                        WorkspaceId::stored(row.try_get::<String, _>("workspace_id")?),
                    );
                    targets.insert(row.try_get::<String, _>("id")?, target);
                }
                let mut claimed = Vec::with_capacity(rows.len());
                for row in rows {
                    let webhook_id: String = row.try_get("webhook_id")?;
                    let Some((url, secret, timeout, workspace_id)) = targets.get(&webhook_id) else { continue };
                    claimed.push(ClaimedDelivery {
                        seq: row.try_get("seq")?,
                        lease_token: token,
                        id: DeliveryId::stored(row.try_get::<String, _>("id")?),
                        webhook_id: WebhookId::stored(webhook_id),
                        url: url.clone(),
                        secret: secret.clone(),
                        timeout: *timeout,
                        payload: crate::store::payload::unpack(row.try_get("payload")?)?,
                        attempts: row.try_get::<i64, _>("attempts")? as u32,
                        rejections: row.try_get::<i64, _>("rejections")? as u32,
                        retry_since: from_ms(row.try_get("retry_since")?),
                        workspace_id: workspace_id.clone(),
                        chat_id: row.try_get::<Option<i64>, _>("chat_id")?.map(crate::domain::ChatId),
                        trace_parent: row.try_get("trace_parent")?,
                        trace_links: row
                            .try_get::<Option<String>, _>("trace_links")?
                            .map(|links| links.split(' ').map(String::from).collect())
                            .unwrap_or_default(),
                    });
                }
                // RETURNING gives no order guarantee; hand them out oldest first.
                claimed.sort_by_key(|d| d.seq);
                Ok(claimed)
            }

            /// `values`, its last repeated up to a power of two in length: for an `IN` list, where a
            /// repeat changes nothing, so that lists of a few lengths share a shape.
            fn padded<T: Clone>(mut values: Vec<T>) -> Vec<T> {
                if let Some(last) = values.last().cloned() {
                    values.resize(values.len().next_power_of_two(), last);
                }
                values
            }

            /// See [`DeliveryQueue::record_attempt`]: an attempt that did not deliver (a delivered
            /// one takes the engine's `record_delivered`).
            async fn record_attempt(
                conn: &mut $conn,
                now: i64,
                attempt: AttemptRecord,
                outcome: AttemptOutcome,
                policy: FailurePolicy,
            ) -> StoreResult<Recorded> {
                let delivered = outcome == AttemptOutcome::Delivered;
                let AttemptEffect { status, next_attempt_at: next, finished_at: finished, failure } =
                    AttemptEffect::of(&attempt, outcome);
                // Fencing: only the claim that holds the lease moves the delivery on.
                let updated = sqlx::query(concat!(
                    "UPDATE deliveries SET status = $1, attempts = attempts + 1, lease_until = NULL,
                        lease_token = NULL, next_attempt_at = COALESCE($2, next_attempt_at), last_error = $3,
                        last_status = $4, rejections = rejections + $5, finished_at = $6
                     WHERE seq = $7 AND lease_token = $8 AND status = ",
                    crate::store::sql::pending!(),
                    " RETURNING chat_id, rejections"
                ))
                .bind(status.as_str())
                .bind(next)
                .bind(&failure)
                .bind(attempt.status.map(i64::from))
                .bind(i64::from(attempt.rejected()))
                .bind(finished)
                .bind(attempt.delivery_seq)
                .bind(attempt.lease_token)
                .fetch_optional(&mut *conn)
                .await?;
                let Some(updated) = updated else {
                    // Deleted with its webhook, or its lease ran out and another claim took it
                    // over. The request was sent all the same, so the log says so.
                    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = $1)")
                        .bind(attempt.webhook_id.as_str())
                        .fetch_one(&mut *conn)
                        .await?;
                    if exists {
                        insert_attempt(conn, &attempt, false).await?;
                    }
                    return Ok(Recorded { stale: true, ..Recorded::default() });
                };
                let chat_id: Option<i64> = updated.try_get("chat_id")?;
                let rejections = updated.try_get::<i64, _>("rejections")? as u32;
                // The webhook's row is locked from here on: two transactions cannot both decide
                // to switch it off or to e-mail its owner.
                let row = sqlx::query(
                    "UPDATE webhooks SET consecutive_failures = CASE WHEN $1 THEN 0 ELSE consecutive_failures + 1 END
                     WHERE id = $2
                     RETURNING enabled, consecutive_failures, url, workspace_id, gave_up_notice_at",
                )
                .bind(delivered)
                .bind(attempt.webhook_id.as_str())
                .fetch_one(&mut *conn)
                .await?;
                let webhook = WebhookState {
                    enabled: row.try_get("enabled")?,
                    failures: row.try_get("consecutive_failures")?,
                    gave_up_notice_at: row.try_get("gave_up_notice_at")?,
                };
                let url: String = row.try_get("url")?;
                let workspace_id = WorkspaceId::stored(row.try_get::<String, _>("workspace_id")?);
                insert_attempt(conn, &attempt, false).await?;
                // What the attempt causes is logged after it.
                let now = now.max(ms(attempt.attempted_at) + 1);
                let decided = AttemptConsequences::of(outcome, attempt.status, webhook, policy.disable_after, now);
                let mut recorded = Recorded::default();

                if decided.given_up {
                    let detail = serde_json::json!({
                        "delivery_id": attempt.delivery_id.as_str(), "chat_id": chat_id, "status": attempt.status,
                        "response_excerpt": attempt.response_excerpt, "error": attempt.error.as_ref().map(ToString::to_string), "rejections": rejections,
                    });
                    insert_event(conn, &workspace_id, Some(&attempt.webhook_id), now, ("failed", None), &detail).await?;
                }
                if decided.tell_owner {
                    let (name, owner, locale) = owner(conn, &workspace_id).await?;
                    let chat = match chat_id {
                        Some(id) => sqlx::query("SELECT external_id, full_name FROM chats WHERE id = $1")
                            .bind(id)
                            .fetch_optional(&mut *conn)
                            .await?
                            .map(|r| -> StoreResult<String> {
                                Ok(chat_label(r.try_get("external_id")?, r.try_get("full_name")?))
                            })
                            .transpose()?,
                        None => None,
                    };
                    let notice = GaveUpNotice {
                        workspace_id: workspace_id.clone(),
                        workspace_name: name,
                        owner_email: owner,
                        locale,
                        webhook_id: attempt.webhook_id.clone(),
                        webhook_url: url.clone(),
                        delivery_id: attempt.delivery_id.clone(),
                        chat,
                        status: attempt.status,
                        response_excerpt: attempt.response_excerpt.clone(),
                        rejections,
                        at: from_ms(now),
                    };
                    let email = (policy.gave_up)(&notice);
                    queue_email(conn, &email, &workspace_id, Some(&attempt.webhook_id), now).await?;
                    sqlx::query("UPDATE webhooks SET gave_up_notice_at = $1 WHERE id = $2")
                        .bind(now)
                        .bind(attempt.webhook_id.as_str())
                        .execute(&mut *conn)
                        .await?;
                    recorded.emailed = true;
                }
                let Some(switched_off) = decided.disable else {
                    return Ok(recorded);
                };
                let reason = switched_off.to_string();
                sqlx::query("UPDATE webhooks SET enabled = FALSE, disabled_reason = $1, updated_at = $2 WHERE id = $3")
                    .bind(&reason)
                    .bind(now)
                    .bind(attempt.webhook_id.as_str())
                    .execute(&mut *conn)
                    .await?;
                let detail = serde_json::json!({"reason": reason, "last_error": failure, "automatic": true});
                insert_event(conn, &workspace_id, Some(&attempt.webhook_id), now, ("disabled", None), &detail).await?;
                let (name, owner, locale) = owner(conn, &workspace_id).await?;
                let notice = DisableNotice {
                    workspace_id: workspace_id.clone(),
                    workspace_name: name,
                    owner_email: owner,
                    locale,
                    webhook_id: attempt.webhook_id.clone(),
                    webhook_url: url,
                    reason: reason.clone(),
                    last_error: failure,
                    at: from_ms(now),
                };
                let email = (policy.disabled)(&notice);
                queue_email(conn, &email, &workspace_id, Some(&attempt.webhook_id), now).await?;
                recorded.disabled = Some(switched_off);
                recorded.emailed = true;
                Ok(recorded)
            }

            /// The workspace's name, owner and language, for the owner's e-mails.
            async fn owner(
                conn: &mut $conn,
                workspace_id: &WorkspaceId,
            ) -> StoreResult<(String, String, crate::domain::Locale)> {
                let row = sqlx::query("SELECT name, owner_email, locale FROM workspaces WHERE id = $1")
                    .bind(workspace_id.as_str())
                    .fetch_one(&mut *conn)
                    .await?;
                let locale = row.try_get::<String, _>("locale")?.parse().unwrap_or_default();
                Ok((row.try_get("name")?, row.try_get("owner_email")?, locale))
            }

            #[async_trait]
            impl DeliveryQueue for super::$store {
                async fn claim_deliveries(
                    &self,
                    lease: Lease,
                    limit: usize,
                    rate: Option<NonZeroU32>,
                ) -> StoreResult<Vec<ClaimedDelivery>> {
                    // Tokens are random: a claim can never guess another's.
                    let token = rand::random::<i64>() & i64::MAX;
                    self.transact(move |conn, now| Box::pin(claim(conn, now, lease, limit, rate, token))).await
                }

                #[instrument(skip_all, fields(delivery_id = %attempt.delivery_id, webhook_id = %attempt.webhook_id))]
                async fn record_attempt(
                    &self,
                    attempt: AttemptRecord,
                    outcome: AttemptOutcome,
                    policy: &FailurePolicy,
                ) -> StoreResult<Recorded> {
                    if outcome == AttemptOutcome::Delivered {
                        return self.record_delivered(attempt).await;
                    }
                    let policy = policy.clone();
                    self.transact(move |conn, now| Box::pin(record_attempt(conn, now, attempt, outcome, policy)))
                        .await
                }

                async fn record_test(&self, attempt: AttemptRecord) -> StoreResult<()> {
                    self.transact(move |conn, _| Box::pin(async move { insert_attempt(conn, &attempt, true).await }))
                        .await
                }

                fn hand_off_to(&self, handoff: Handoff) {
                    if self.handoff.set(handoff).is_err() {
                        tracing::warn!("a second delivery worker's handoff was ignored");
                    }
                }
            }

            #[async_trait]
            impl DeliveryLog for super::$store {
                async fn list_deliveries(
                    &self,
                    webhook: &WebhookId,
                    status: Option<DeliveryStatus>,
                    limit: u32,
                    offset: u32,
                ) -> StoreResult<Vec<DeliveryInfo>> {
                    let rows = sqlx::query(
                        "SELECT id, kind, chat_id, status, attempts, last_status, last_error, created_at, finished_at
                         FROM deliveries WHERE webhook_id = $1 AND (CAST($2 AS TEXT) IS NULL OR status = $2)
                         ORDER BY seq DESC LIMIT $3 OFFSET $4",
                    )
                    .bind(webhook.as_str())
                    .bind(status.map(DeliveryStatus::as_str))
                    .bind(i64::from(limit))
                    .bind(i64::from(offset))
                    .fetch_all(self.reads())
                    .await?;
                    rows.iter().map(delivery).collect()
                }

                #[instrument(skip_all, fields(webhook_id = %webhook, delivery_id = %id))]
                async fn resend_delivery(
                    &self,
                    webhook: &WebhookId,
                    id: &DeliveryId,
                    now: DateTime<Utc>,
                    actor: &str,
                ) -> StoreResult<Resend> {
                    let (webhook, id, now, actor) = (webhook.clone(), id.clone(), ms(now), actor.to_string());
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            let status: Option<String> = sqlx::query_scalar(concat!(
                                "SELECT status FROM deliveries WHERE webhook_id = $1 AND id = $2",
                                super::for_update!()
                            ))
                            .bind(webhook.as_str())
                            .bind(id.as_str())
                            .fetch_optional(&mut *conn)
                            .await?;
                            let Some(status) = status else { return Ok(Resend::NotFound) };
                            let status = DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending);
                            if !matches!(status, DeliveryStatus::Failed | DeliveryStatus::Expired) {
                                return Ok(Resend::NotFinished(status));
                            }
                            sqlx::query(
                                "UPDATE deliveries SET status = $1, next_attempt_at = $2, rejections = 0,
                                    retry_since = $3, finished_at = NULL, lease_until = NULL, lease_token = NULL
                                 WHERE webhook_id = $4 AND id = $5",
                            )
                            .bind(DeliveryStatus::Pending.as_str())
                            .bind(DUE_AT_ONCE)
                            .bind(now)
                            .bind(webhook.as_str())
                            .bind(id.as_str())
                            .execute(&mut *conn)
                            .await?;
                            let workspace_id: String =
                                sqlx::query_scalar("SELECT workspace_id FROM webhooks WHERE id = $1")
                                    .bind(webhook.as_str())
                                    .fetch_one(&mut *conn)
                                    .await?;
                            let detail = serde_json::json!({"delivery_id": id.as_str(), "was": status.as_str()});
                            let workspace = WorkspaceId::stored(workspace_id);
                            insert_event(conn, &workspace, Some(&webhook), now, ("resent", Some(&actor)), &detail).await?;
                            Ok(Resend::Queued)
                        })
                    })
                    .await
                }

                async fn pending_count(&self, webhook: &WebhookId) -> StoreResult<u64> {
                    let sql = format!("SELECT COUNT(*) FROM deliveries WHERE webhook_id = $1 AND status = {}", crate::store::sql::pending!());
                    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                        .bind(webhook.as_str())
                        .fetch_one(self.reads())
                        .await?;
                    Ok(n as u64)
                }

                async fn discard_pending(&self, webhook: &WebhookId, actor: &str) -> StoreResult<u64> {
                    let (webhook, actor) = (webhook.clone(), actor.to_string());
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            let sql = format!(
                                "UPDATE deliveries SET status = $1, finished_at = $2, lease_until = NULL, lease_token = NULL
                                 WHERE webhook_id = $3 AND status = {}",
                                crate::store::sql::pending!()
                            );
                            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                                .bind(DeliveryStatus::Discarded.as_str())
                                .bind(now)
                                .bind(webhook.as_str())
                                .execute(&mut *conn)
                                .await?;
                            let workspace: Option<String> =
                                sqlx::query_scalar("SELECT workspace_id FROM webhooks WHERE id = $1")
                                    .bind(webhook.as_str())
                                    .fetch_optional(&mut *conn)
                                    .await?;
                            if let Some(workspace) = workspace {
                                let detail = serde_json::json!({"deliveries": done.rows_affected()});
                                let workspace = WorkspaceId::stored(workspace);
                                insert_event(conn, &workspace, Some(&webhook), now, ("backlog_discarded", Some(&actor)), &detail)
                                    .await?;
                            }
                            Ok(done.rows_affected())
                        })
                    })
                    .await
                }
            }
        }
    };
}

pub(in crate::store) use queue;
