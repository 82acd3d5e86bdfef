//! How SQLite takes ingest requests in (the storing itself is [`crate::store::sql::ingest`]):
//! every request waiting for a commit goes into the writer's next one, received at its time, and
//! the merged statements are what let one writer keep up with many connections (each statement
//! costs a round trip to SQLite's worker thread).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row, Sqlite};
use tracing::instrument;

use super::SqliteStore;
use super::rows::ms;
use crate::domain::{Account, ChatId, WebhookId, WorkspaceId};
use crate::store::merge::WorkspaceInfo;
use crate::store::queue::HandOver;
use crate::store::{FirstMessages, Handoff, IngestBatch, IngestOutcome, IngestStore, StoreResult};

#[async_trait]
impl IngestStore for SqliteStore {
    #[instrument(skip_all, fields(workspace_id = %batch.workspace_id, messages = batch.messages.len()))]
    async fn ingest(&self, batch: IngestBatch) -> StoreResult<IngestOutcome> {
        self.writer.ingest(batch).await
    }
}

use crate::store::sql::ROWS_PER_STATEMENT;

/// Stores the requests as received at `now` (the transaction's time); with a `handoff`, also
/// what was leased for the worker, to hand over after the commit.
pub(super) async fn ingest_many(
    conn: &mut SqliteConnection,
    batches: &[IngestBatch],
    now: DateTime<Utc>,
    handoff: Option<&Handoff>,
) -> StoreResult<(Vec<IngestOutcome>, Option<HandOver>)> {
    let mut workspaces: HashMap<&str, WorkspaceInfo> = HashMap::new();
    for batch in batches {
        if !workspaces.contains_key(batch.workspace_id.as_str()) {
            let info = workspace_info(conn, &batch.workspace_id).await?;
            workspaces.insert(batch.workspace_id.as_str(), info);
        }
    }
    super::ingest::store_merged(conn, batches, &workspaces, ms(now), handoff).await
}

async fn workspace_info(
    conn: &mut SqliteConnection,
    workspace_id: &WorkspaceId,
) -> StoreResult<WorkspaceInfo> {
    // One statement: the account, and the webhooks that get each message at once as a JSON list
    // of [id, media].
    let row = sqlx::query(
        "SELECT s.account_full_name, s.account_email, s.account_phone, s.locale,
                (SELECT json_group_array(json_array(id, media_choice)) FROM (
                    SELECT w.id, w.media_choice FROM webhooks w
                    WHERE w.workspace_id = s.id AND w.sub_messages AND NOT w.stopped
                      AND COALESCE(w.granularity, s.granularity) = 'none'
                    ORDER BY w.created_at, w.id)) AS immediate,
                EXISTS (SELECT 1 FROM webhooks w
                        WHERE w.workspace_id = s.id AND w.sub_messages AND NOT w.stopped
                          AND COALESCE(w.granularity, s.granularity) = 'conversation') AS conversations
         FROM workspaces s WHERE s.id = ?",
    )
    .bind(workspace_id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let account = Account {
        full_name: row.try_get("account_full_name")?,
        email: row.try_get("account_email")?,
        phone: row.try_get("account_phone")?,
    };
    let immediate: String = row.try_get("immediate")?;
    let immediate: Vec<(String, String)> = serde_json::from_str(&immediate).unwrap_or_default();
    let immediate = immediate
        .into_iter()
        .map(|(id, media)| (WebhookId::stored(id), media.parse().unwrap_or_default()))
        .collect();
    let locale = row.try_get::<String, _>("locale")?.parse().unwrap_or_default();
    let conversations = row.try_get("conversations")?;
    Ok(WorkspaceInfo { account, locale, immediate, conversations })
}

/// Records the first messages (ever, with words) of chats that had none, which decide
/// `is_new_chat` later.
pub(super) async fn mark_first_messages(
    conn: &mut SqliteConnection,
    firsts: &HashMap<ChatId, FirstMessages>,
) -> StoreResult<()> {
    let rows: Vec<(i64, FirstMessages)> = firsts.iter().map(|(c, f)| (c.0, *f)).collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new("WITH firsts (chat_id, any_seq, text_seq) AS (");
        query.push_values(chunk, |mut row, (chat, first)| {
            row.push_bind(*chat).push_bind(first.any).push_bind(first.text);
        });
        query.push(
            ") UPDATE chats SET
                 first_message_seq = COALESCE(first_message_seq,
                     (SELECT any_seq FROM firsts WHERE chat_id = chats.id)),
                 first_text_seq = COALESCE(first_text_seq,
                     (SELECT text_seq FROM firsts WHERE chat_id = chats.id))
               WHERE id IN (SELECT chat_id FROM firsts)",
        );
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}
