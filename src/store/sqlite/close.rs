//! Closing a range of a webhook's messages into deliveries, one batch of chats per transaction.
//! Progress (`closing_boundary`, `closing_cursor`) commits with each batch's deliveries, so a close
//! interrupted by a crash resumes where it stopped, and never makes a bundle twice.

use std::collections::HashMap;

use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::ingest::DUE_AT_ONCE;
use super::writer::BatchClock;
use super::{CHAT_COLUMNS, chat_from_row, from_ms, ms};
use crate::domain::{Account, Direction, Party};
use crate::store::{CloseProgress, CloseStep, DeliveryKind, StoreResult, StoredMessage};

pub(super) async fn step(
    conn: &mut SqliteConnection,
    clock: BatchClock,
    step: CloseStep,
) -> StoreResult<CloseProgress> {
    let boundary = ms(step.boundary);
    // Messages committed from now on carry this time or later; the boundary must not be ahead of
    // it, or a message could still arrive behind a closed boundary.
    if ms(clock.now()) < boundary {
        return Ok(CloseProgress::NotYet);
    }
    let row = sqlx::query(
        "SELECT workspace_id, bundled_before, closing_boundary, closing_cursor FROM webhooks WHERE id = ?",
    )
    .bind(&step.webhook_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(CloseProgress::Superseded);
    };
    let workspace_id: String = row.try_get("workspace_id")?;
    let bundled_before: i64 = row.try_get("bundled_before")?;
    let closing: Option<i64> = row.try_get("closing_boundary")?;
    if bundled_before != ms(step.bundled_before) || closing.is_some_and(|b| b != boundary) {
        return Ok(CloseProgress::Superseded);
    }
    let cursor: i64 = row.try_get::<Option<i64>, _>("closing_cursor")?.unwrap_or(0);

    let sql = format!(
        "SELECT {CHAT_COLUMNS} FROM chats
         WHERE workspace_id = ? AND last_received_at >= ? AND id > ?
         ORDER BY id LIMIT ?"
    );
    let chat_rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&workspace_id)
        .bind(bundled_before)
        .bind(cursor)
        .bind(step.chats as i64)
        .fetch_all(&mut *conn)
        .await?;
    let chats = chat_rows.iter().map(chat_from_row).collect::<StoreResult<Vec<_>>>()?;

    let mut messages: HashMap<i64, Vec<StoredMessage>> = HashMap::new();
    if !chats.is_empty() {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT chat_id, seq, message_id, direction, ts, received_at, sender_name, sender_phone,
                    recipient_name, recipient_phone, text, account, channel
             FROM messages WHERE received_at >= ",
        );
        query.push_bind(bundled_before).push(" AND received_at < ").push_bind(boundary);
        query.push(" AND chat_id IN (");
        let mut ids = query.separated(", ");
        for (chat, _) in &chats {
            ids.push_bind(chat.id);
        }
        query.push(") ORDER BY chat_id, ts, message_id");
        for row in query.build().fetch_all(&mut *conn).await? {
            messages.entry(row.try_get("chat_id")?).or_default().push(stored_message(&row)?);
        }
    }

    let mut deliveries = Vec::new();
    for (chat, first_message_seq) in &chats {
        if let Some(list) = messages.get(&chat.id) {
            for delivery in (step.plan)(chat, *first_message_seq, list) {
                deliveries.push((chat.id, delivery));
            }
        }
    }
    let now = ms(clock.now());
    for chunk in deliveries.chunks(400) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO deliveries (id, kind, webhook_id, chat_id, payload, status, next_attempt_at,
                                     created_at, window_end, part) ",
        );
        query.push_values(chunk, |mut row, (chat_id, d)| {
            let (kind, window_end, part) = match d.kind {
                DeliveryKind::Message => ("message", None, None),
                DeliveryKind::Bundle { window_end, part } => {
                    ("bundle", Some(ms(window_end)), Some(i64::from(part)))
                }
            };
            row.push_bind(d.id.clone())
                .push_bind(kind)
                .push_bind(step.webhook_id.clone())
                .push_bind(*chat_id)
                .push_bind(d.payload.clone())
                .push_bind("pending")
                .push_bind(DUE_AT_ONCE)
                .push_bind(now)
                .push_bind(window_end)
                .push_bind(part);
        });
        // A repeated close finds its bundles already there.
        query.push(" ON CONFLICT DO NOTHING");
        query.build().execute(&mut *conn).await?;
    }

    let count = deliveries.len() as u64;
    if chats.len() < step.chats {
        sqlx::query(
            "UPDATE webhooks SET bundled_before = ?1, closing_boundary = NULL, closing_cursor = NULL,
                closing_flush = 0, flushed_at = CASE WHEN ?2 THEN ?1 ELSE flushed_at END
             WHERE id = ?3",
        )
        .bind(boundary)
        .bind(step.flush)
        .bind(&step.webhook_id)
        .execute(&mut *conn)
        .await?;
        Ok(CloseProgress::Done { deliveries: count })
    } else {
        let last = chats.last().map(|(c, _)| c.id).unwrap_or(cursor);
        // A flush cut off here resumes as a flush, with the labels it would have had.
        sqlx::query(
            "UPDATE webhooks SET closing_boundary = ?, closing_cursor = ?, closing_flush = ? WHERE id = ?",
        )
        .bind(boundary)
        .bind(last)
        .bind(step.flush)
        .bind(&step.webhook_id)
        .execute(&mut *conn)
        .await?;
        Ok(CloseProgress::More { deliveries: count })
    }
}

/// A message row (the columns of the queries above) as a [`StoredMessage`].
pub(super) fn stored_message(row: &sqlx::sqlite::SqliteRow) -> StoreResult<StoredMessage> {
    let direction: String = row.try_get("direction")?;
    let account: Option<String> = row.try_get("account")?;
    Ok(StoredMessage {
        seq: row.try_get("seq")?,
        message_id: row.try_get("message_id")?,
        direction: if direction == "sent" { Direction::Sent } else { Direction::Received },
        timestamp: from_ms(row.try_get("ts")?),
        received_at: from_ms(row.try_get("received_at")?),
        sender: Party { full_name: row.try_get("sender_name")?, phone: row.try_get("sender_phone")? },
        recipient: Party {
            full_name: row.try_get("recipient_name")?,
            phone: row.try_get("recipient_phone")?,
        },
        text: row.try_get("text")?,
        account: account.and_then(|a| serde_json::from_str::<Account>(&a).ok()),
        channel: row.try_get("channel")?,
    })
}
