//! A webhook's activity as both front ends give it: the full log as a streamed download (JSON
//! lines or CSV), and a test send.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::deliver::Target;
use crate::domain::{DeliveryId, Event, Granularity, Media, NoteMaxChars, WebhookId};
use crate::render::{self, bundle};
use crate::service::{AppState, Failure};
use crate::store::{ActivityCursor, ActivityRow, SharedStore, StoredMessage, Webhook, Workspace};
use crate::window;

/// One row of a webhook's activity log, as the API and the JSON-lines export show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ActivityRow)]
pub struct ActivityView {
    at: DateTime<Utc>,
    /// `attempt`, `test`, `failed`, `resent`, `disabled`, `enabled`, `config_changed`, `skipped`,
    /// `email_failed`, or what someone did in the workspace: `created`, `webhook_deleted`,
    /// `workspace_changed`, `source_created`, `source_changed`, `source_deleted`, `source_rotated`,
    /// `flushed`, `transcript_rotated`, `chat_owner_set`, `token_created`, `token_revoked`.
    kind: String,
    delivery_id: Option<DeliveryId>,
    status: Option<u16>,
    duration_ms: Option<u64>,
    error: Option<String>,
    response_excerpt: Option<String>,
    request_headers: Option<Value>,
    /// The request body as sent.
    request_body: Option<String>,
    /// What an event says.
    detail: Option<Value>,
    /// Who did it: `operator` (the admin token, or the web page signed in with it) or
    /// `token:<name>`; null for what the daemon did by itself, and for attempts.
    actor: Option<String>,
}

impl From<&ActivityRow> for ActivityView {
    fn from(row: &ActivityRow) -> Self {
        ActivityView {
            at: row.at,
            kind: row.kind.clone(),
            delivery_id: row.delivery_id.clone(),
            status: row.status,
            duration_ms: row.duration_ms,
            error: row.error.clone(),
            response_excerpt: row.response_excerpt.clone(),
            request_headers: row.request_headers.clone(),
            request_body: row.request_body.clone(),
            detail: row.detail.clone(),
            actor: row.actor.clone(),
        }
    }
}

/// Notes in a workspace's activity log (for one webhook, or for all) what `actor` did. A change
/// stands even when noting it fails: that is logged.
pub async fn note(
    state: &AppState,
    workspace: &crate::domain::WorkspaceId,
    webhook: Option<&WebhookId>,
    (kind, actor): (&str, &str),
    detail: Value,
) {
    if let Err(e) = state.store.record_event(workspace, webhook, (kind, Some(actor)), detail).await {
        tracing::warn!(error = %e, kind, "noting a change in the activity log failed");
    }
}

/// Rows read per page while streaming the log.
const PAGE: u32 = 500;

/// The formats of a log download.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

/// A webhook's whole log as a file: what it is, what to call it, and its bytes as they are read.
pub struct LogFile {
    pub content_type: &'static str,
    pub filename: String,
    pub chunks: futures::stream::BoxStream<'static, Result<Vec<u8>, std::io::Error>>,
}

/// A webhook's whole log as a streamed file (the API's and the web page's download).
pub fn download(store: SharedStore, id: WebhookId, format: Format) -> LogFile {
    let (content_type, extension) = match format {
        Format::Jsonl => ("application/x-ndjson", "jsonl"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let filename = format!("{id}-log.{extension}");
    LogFile { content_type, filename, chunks: Box::pin(pages(store, id, format)) }
}

/// The log as a stream of byte chunks, one per page.
fn pages(
    store: SharedStore,
    webhook_id: WebhookId,
    format: Format,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    // (position, first page?) — `None` position once the log is exhausted.
    futures::stream::unfold((Some(None::<ActivityCursor>), true), move |(cursor, first)| {
        let (store, webhook_id) = (store.clone(), webhook_id.clone());
        async move {
            let after = cursor?;
            let rows = match store.activity(&webhook_id, after, PAGE).await {
                Ok(rows) => rows,
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), (None, false))),
            };
            if rows.is_empty() && !first {
                return None;
            }
            let next = (rows.len() == PAGE as usize).then(|| rows.last().map(|r| r.cursor));
            let chunk = match format {
                Format::Jsonl => jsonl(&rows),
                Format::Csv => csv(&rows, first),
            };
            Some((chunk, (next.flatten().map(Some), false)))
        }
    })
}

fn jsonl(rows: &[ActivityRow]) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut out, &ActivityView::from(row)).map_err(std::io::Error::other)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// A CSV row; the header comes from these field names.
#[derive(Serialize)]
struct CsvRow<'a> {
    at: String,
    kind: &'a str,
    delivery_id: Option<std::borrow::Cow<'a, str>>,
    status: Option<u16>,
    duration_ms: Option<u64>,
    error: Option<std::borrow::Cow<'a, str>>,
    response_excerpt: Option<std::borrow::Cow<'a, str>>,
    request_headers: Option<std::borrow::Cow<'a, str>>,
    request_body: Option<std::borrow::Cow<'a, str>>,
    detail: Option<std::borrow::Cow<'a, str>>,
    actor: Option<std::borrow::Cow<'a, str>>,
}

fn csv(rows: &[ActivityRow], header: bool) -> Result<Vec<u8>, std::io::Error> {
    let mut writer = csv::WriterBuilder::new().has_headers(header).from_writer(Vec::new());
    for row in rows {
        let headers = row.request_headers.as_ref().map(Value::to_string);
        let detail = row.detail.as_ref().map(Value::to_string);
        writer
            .serialize(CsvRow {
                at: row.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                kind: &row.kind,
                delivery_id: row.delivery_id.as_ref().map(|d| cell(d.as_str())),
                status: row.status,
                duration_ms: row.duration_ms,
                error: row.error.as_deref().map(cell),
                response_excerpt: row.response_excerpt.as_deref().map(cell),
                request_headers: headers.as_deref().map(cell),
                request_body: row.request_body.as_deref().map(cell),
                detail: detail.as_deref().map(cell),
                actor: row.actor.as_deref().map(cell),
            })
            .map_err(std::io::Error::other)?;
    }
    writer.into_inner().map_err(|e| std::io::Error::other(e.to_string()))
}

/// What a cell must not start with: OWASP's characters for CSV injection (`=`, `+`, `-`, `@`, tab,
/// carriage return), a line feed, and a space (spreadsheets trim it and then run the formula),
/// and the full-width forms that Japanese spreadsheets read as the same operators.
const FORMULA_STARTS: [char; 12] = ['=', '+', '-', '@', '\t', '\r', '\n', ' ', '＝', '＋', '－', '＠'];

/// A CSV cell that a spreadsheet will not run as a formula: text beginning with one of
/// [`FORMULA_STARTS`] gets a leading `'`. Much of what the log holds comes from outside (a
/// receiver's answer, a payload's text).
fn cell(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(FORMULA_STARTS) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// What a test send did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TestResult {
    pub ok: bool,
    pub status: Option<u16>,
    pub duration_ms: u64,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    /// Whether a made-up sample went out (the workspace has no chat yet).
    pub sample: bool,
    /// The `webhook-id` the test went out under; it starts with `test_`.
    pub webhook_id_header: DeliveryId,
}

/// Sends a webhook a fresh test payload now: what the workspace's most recently active chat would
/// give this webhook at this moment, rendered now and marked `"test": true` (a made-up sample
/// when there is no chat yet). Nothing buffered, queued or delivered changes. Logged as a test;
/// never counted towards a disable.
pub async fn send_test(state: &AppState, webhook: &Webhook) -> Result<TestResult, Failure> {
    let workspace =
        state.store.get_workspace(&webhook.workspace_id).await?.ok_or(Failure::NotFound("workspace"))?;
    let (payload, sample) = test_send_payload(state, &workspace, &Subscription::from(webhook)).await?;
    let target = Target {
        webhook_id: &webhook.id,
        url: &webhook.url,
        secret: webhook.secret.as_deref(),
        timeout: webhook.timeout,
    };
    let record = state.deliverer.send_test(&target, &payload).await;
    Ok(TestResult {
        ok: record.status.is_some_and(|s| (200..300).contains(&s)),
        status: record.status,
        duration_ms: record.duration.as_millis() as u64,
        response_excerpt: record.response_excerpt,
        error: record.error.map(|e| e.to_string()),
        sample,
        webhook_id_header: record.delivery_id,
    })
}

/// What a test payload depends on of a webhook: what it subscribes to, how it bundles and what it
/// does with media; and its id when it exists, for what it holds buffered. A webhook that does not
/// exist yet (an integration asking what it would receive before it subscribes) has none.
#[derive(Debug, Clone)]
pub struct Subscription<'a> {
    pub id: Option<&'a WebhookId>,
    pub events: &'a [Event],
    /// `None` follows the workspace's.
    pub granularity: Option<Granularity>,
    pub media: Media,
    pub note_max_chars: NoteMaxChars,
}

impl<'a> From<&'a Webhook> for Subscription<'a> {
    fn from(webhook: &'a Webhook) -> Self {
        Subscription {
            id: Some(&webhook.id),
            events: &webhook.events,
            granularity: webhook.granularity,
            media: webhook.media,
            note_max_chars: webhook.note_max_chars,
        }
    }
}

/// What a test send would carry now, marked `"test": true`: what the workspace's most recently
/// active chat would give `webhook` at this moment, or a made-up sample (the `true`) when the
/// workspace has no chat yet. Sends and changes nothing.
pub async fn test_send_payload(
    state: &AppState,
    workspace: &Workspace,
    webhook: &Subscription<'_>,
) -> Result<(Vec<u8>, bool), Failure> {
    let now = state.clock.now();
    let (payload, sample) = match test_payload(state, workspace, webhook, now).await? {
        Some(payload) => (payload, false),
        None => (render::sample(&state.public_url, shape(workspace, webhook), now), true),
    };
    Ok((render::marked_as_test(&payload), sample))
}

/// The shape of what a webhook receives.
fn shape(workspace: &Workspace, webhook: &Subscription<'_>) -> render::Shape {
    if !webhook.events.contains(&Event::Messages) {
        render::Shape::Session
    } else if webhook.granularity.unwrap_or(workspace.granularity) == Granularity::None {
        render::Shape::Message
    } else {
        render::Shape::Bundle
    }
}

/// The payload the workspace's most recently active chat would give `webhook` now; `None` when
/// the workspace has no chat.
async fn test_payload(
    state: &AppState,
    workspace: &Workspace,
    webhook: &Subscription<'_>,
    now: DateTime<Utc>,
) -> Result<Option<Vec<u8>>, Failure> {
    let Some(latest) = state.store.list_chats(&workspace.id, 1, 0).await?.pop() else { return Ok(None) };
    let Some((_, chat)) = state.store.get_chat(latest.id).await? else { return Ok(None) };
    let public_url = &state.public_url;
    // What this webhook sees of messages, and the first one it sees of the chat.
    let media = webhook.media;
    let seen = |messages: Vec<StoredMessage>| -> Vec<StoredMessage> {
        messages.iter().filter_map(|m| m.seen_with(media)).map(|m| m.into_owned()).collect()
    };
    let first_seq = state.store.first_messages(chat.id).await?.seen_with(media);
    match shape(workspace, webhook) {
        render::Shape::Session => {
            let Some(event) = state.store.session_snapshot(chat.id, now).await? else { return Ok(None) };
            Ok(Some(render::session_event(public_url, &event)))
        }
        render::Shape::Message => {
            // The latest message this webhook would take.
            let messages = seen(state.store.chat_messages(chat.id, 50, 0).await?);
            let Some(message) = messages.first() else { return Ok(None) };
            let is_new = first_seq == Some(message.seq);
            let (account, locale) = (&workspace.account, workspace.locale);
            Ok(Some(render::single_stored_message(public_url, account, locale, &chat, message, is_new, None)))
        }
        render::Shape::Bundle => {
            let granularity = webhook.granularity.unwrap_or(workspace.granularity);
            let tz = workspace.timezone.tz();
            // What this webhook holds buffered for the chat: everything since its last close.
            let since = match webhook.id {
                Some(id) => {
                    let closing = state.store.bundling_webhooks(Some(&workspace.id)).await?;
                    closing.iter().find(|w| w.id == *id).map(|w| (w.bundled_before, w.flushed_at))
                }
                None => None,
            };
            // A conversation webhook holds the chat's open conversation.
            let since = match (granularity, webhook.id) {
                (Granularity::Conversation, Some(id)) => {
                    let opened = state.store.conversation_since(id, chat.id).await?;
                    opened.map(|at| (at, at))
                }
                _ => since,
            };
            let mut messages = match since {
                Some((bundled_before, _)) => {
                    seen(state.store.messages_since(chat.id, bundled_before, 500).await?)
                }
                None => Vec::new(),
            };
            if messages.is_empty() {
                messages = seen(state.store.chat_messages(chat.id, 50, 0).await?);
            }
            let Some(first) = messages.iter().map(|m| m.received_at).min() else { return Ok(None) };
            messages.sort_by(|a, b| (a.timestamp, &a.message_id).cmp(&(b.timestamp, &b.message_id)));
            let flushed_at = since.map(|(_, f)| f).unwrap_or(first);
            if granularity == Granularity::Conversation {
                // As if the chat's conversation were flushed now.
                let (Some(start), Some(end)) = (messages.first(), messages.last()) else { return Ok(None) };
                let input = bundle::BundleInput {
                    public_url,
                    timezone: tz,
                    locale: workspace.locale,
                    account: &workspace.account,
                    chat: &chat,
                    first_message_seq: first_seq,
                    window_start: start.timestamp,
                    window_end: end.timestamp,
                    messages: &messages,
                    links: None,
                    closed_by: Some(crate::domain::ClosedBy::Flush),
                };
                let limits = bundle::Limits {
                    max_note_chars: webhook.note_max_chars.get() as usize,
                    ..bundle::Limits::default()
                };
                return Ok(bundle::render(&input, limits).into_iter().next().map(|part| part.payload));
            }
            let open = window::bounds::containing(now, granularity, tz).start.max(flushed_at);
            let input = bundle::BundleInput {
                public_url,
                timezone: tz,
                locale: workspace.locale,
                account: &workspace.account,
                chat: &chat,
                first_message_seq: first_seq,
                window_start: open.min(first),
                window_end: now,
                messages: &messages,
                links: None,
                closed_by: None,
            };
            let limits = bundle::Limits {
                max_note_chars: webhook.note_max_chars.get() as usize,
                ..bundle::Limits::default()
            };
            Ok(bundle::render(&input, limits).into_iter().next().map(|part| part.payload))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cells_that_a_spreadsheet_would_run_are_neutralised() {
        for hostile in [
            "=HYPERLINK(\"http://x\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "\n=1+1",
            " =1+1",
            "＝HYPERLINK(\"http://x\")",
            "＋1",
            "－1",
            "＠SUM(A1)",
        ] {
            assert_eq!(cell(hostile), format!("'{hostile}"), "{hostile:?}");
        }
        for plain in ["ok", "HTTP 500", "x =not first", "", "{\"a\":1}", "日本語"] {
            assert_eq!(cell(plain), plain);
        }
    }
}
