//! `GET /c/{token}`: a chat's transcript, read-only and without sign-in, behind the chat's
//! unguessable token. Only that chat's name and messages are shown; a rotated token answers 404.
//! A bundle's note links to `?at=N&from=A&to=B#mN`: the page holding message N, the bundle's
//! messages (positions A to B) marked.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderName;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, REFERRER_POLICY, RETRY_AFTER};
use axum::response::{Html, IntoResponse, Response};
use chrono_tz::Tz;
use serde::Deserialize;

use tracing::instrument;

use crate::domain::{Direction, named_sender};
use crate::service::AppState;
use crate::store::StoreError;
use crate::words::{PageWords, page_words};

/// Messages per page.
const PAGE: u32 = 50;
/// The most of a message's text a page shows (characters); a longer one is shortened, with a link
/// to a page of its own. With names and captions bounded too, a page stays within some hundreds
/// of kilobytes however long the messages (a message may hold 64 KiB).
const SHOWN_CHARS: usize = 2_000;

struct Line {
    /// The message's position, its anchor (`#m{seq}`).
    seq: i64,
    /// Whether it is one of the bundle the link came from.
    marked: bool,
    direction: &'static str,
    sender: String,
    time: String,
    /// Whether the channel edited it after it was sent (`text` is the edited words).
    edited: bool,
    text: String,
    /// Whether `text` was shortened: the line links to the message whole.
    shortened: bool,
    /// Its media: each one's placeholder ("[image]"), linked where the channel gave a URL.
    media: Vec<(String, Option<String>)>,
}

struct Day {
    date: String,
    messages: Vec<Line>,
}

#[derive(Template)]
#[template(path = "web/transcript.html")]
struct TranscriptPage {
    /// The chat's workspace's language.
    w: &'static PageWords,
    name: String,
    zone: String,
    days: Vec<Day>,
    newer: Option<u32>,
    older: Option<u32>,
    /// `&from=A&to=B`, kept on the page links while a bundle is marked.
    marking: String,
    /// A page of one message shown whole: the link back to its place in the conversation.
    back: Option<i64>,
    /// How long the workspace keeps messages, when not for good: how far back this goes.
    retention: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    page: Option<u32>,
    /// Open the page holding the message at this position.
    at: Option<i64>,
    /// Mark the messages at these positions and between (a bundle).
    from: Option<i64>,
    to: Option<i64>,
    /// Show the message at this position alone, whole.
    message: Option<i64>,
}

/// A message's text as a page of many shows it: at most [`SHOWN_CHARS`] characters.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Not found</title><h1>Not found</h1>\
             <p>This conversation link does not exist (any more). Ask for a new one.</p></html>",
        ),
    )
        .into_response()
}

/// An expired link: 410, saying why, in the workspace's language.
fn expired(w: &PageWords, lasts: &str) -> Response {
    let why = format!("{}{lasts}{}", w.transcript_expired_before, w.transcript_expired_after);
    super::PageError::gone(&why).into_response()
}

fn unavailable(error: StoreError) -> Response {
    tracing::error!(%error, "a transcript could not be read");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(RETRY_AFTER, crate::http::error::RETRY_AFTER_SECONDS.to_string())],
        Html(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Try again shortly</title><h1>Try again shortly</h1>\
             <p>This conversation cannot be shown right now. The link is fine: reload in a moment.</p></html>",
        ),
    )
        .into_response()
}

#[instrument(skip_all)]
pub async fn page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    // Tokens are 32 alphanumeric characters; anything else cannot be one.
    if token.len() != 32 || !token.chars().all(|c| c.is_ascii_alphanumeric()) {
        return not_found();
    }
    // Only an unknown token is "not found"; a store that cannot answer says so.
    let (workspace_id, chat) = match state.store.chat_by_token(&token).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(e),
    };
    let (zone, locale, account, ttl, retention): (Tz, _, _, _, _) =
        match state.store.get_workspace(&workspace_id).await {
            Ok(Some(ws))
                if ws
                    .transcript_link_ttl
                    .expires(chat.token_issued_at)
                    .is_some_and(|end| end <= state.clock.now()) =>
            {
                return expired(page_words(ws.locale), &ws.transcript_link_ttl.to_string());
            }
            Ok(Some(ws)) => (
                ws.timezone.tz(),
                ws.locale,
                ws.account,
                ws.media_link_ttl,
                ws.message_retention.duration().map(|_| ws.message_retention.to_string()),
            ),
            Ok(None) => return not_found(),
            Err(e) => return unavailable(e),
        };
    let (w, note_words) = (page_words(locale), crate::words::note_words(locale));
    // A link from a note opens the page that holds the bundle's first message.
    let rank = match query.at {
        Some(seq) if query.page.is_none() => match state.store.message_rank(chat.id, seq).await {
            Ok(rank) => rank,
            Err(e) => return unavailable(e),
        },
        _ => None,
    };
    let page = rank.map(|r| r / PAGE).or(query.page).unwrap_or(0).min(100_000);
    let marked = match (query.from, query.to) {
        (Some(from), Some(to)) if from <= to => Some(from..=to),
        _ => None,
    };
    let (messages, more) = match query.message {
        // One message, whole: found by its position in the chat, and only in this chat.
        Some(seq) => match state.store.message_rank(chat.id, seq).await {
            Ok(Some(rank)) => match state.store.chat_messages(chat.id, 1, rank).await {
                Ok(found) if found.first().is_some_and(|m| m.seq == seq) => (found, false),
                Ok(_) => return not_found(),
                Err(e) => return unavailable(e),
            },
            Ok(None) => return not_found(),
            Err(e) => return unavailable(e),
        },
        None => match state.store.chat_messages(chat.id, PAGE + 1, page * PAGE).await {
            Ok(messages) => {
                let more = messages.len() > PAGE as usize;
                (messages, more)
            }
            Err(e) => return unavailable(e),
        },
    };
    let whole = query.message.is_some();
    // Files of the chat's channel open through media links where its source can fetch them
    // (the token of this page is what lets a visitor have them); other media keep the address
    // the channel or the client gave.
    let source =
        match state.store.get_source(&crate::domain::SourceId::stored(chat.source_key.as_str())).await {
            Ok(source) => source,
            Err(e) => return unavailable(e),
        };
    let plan = source.map(|s| crate::render::media::LinkPlan {
        key: state.link_key.clone(),
        expires: state.clock.now() + ttl.duration(),
        sources: [(s.id.to_string(), (s.kind, s.credentials))].into(),
    });
    let links = plan.as_ref().and_then(|p| p.for_source(&state.public_url, &chat.source_key));
    let mut days: Vec<Day> = Vec::new();
    for m in messages.iter().take(PAGE as usize) {
        let local = m.timestamp.with_timezone(&zone);
        let date = local.format(w.transcript_day).to_string();
        let line = Line {
            seq: m.seq,
            marked: marked.as_ref().is_some_and(|range| range.contains(&m.seq)),
            direction: if m.direction == Direction::Sent { "sent" } else { "received" },
            sender: {
                let sender = named_sender(m.direction, &m.sender, m.account.as_ref(), &account);
                sender.shown_as().unwrap_or(w.transcript_unknown_sender).to_string()
            },
            time: local.format("%H:%M").to_string(),
            edited: m.edited_at.is_some(),
            shortened: !whole && m.text.chars().count() > SHOWN_CHARS,
            text: if whole { m.text.clone() } else { shortened(&m.text) },
            media: m
                .attachments
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let link = links.as_ref().and_then(|l| l.url(m.seq, i, a)).or_else(|| a.url.clone());
                    (crate::render::media::placeholder(a, note_words), link)
                })
                .collect(),
        };
        match days.last_mut() {
            Some(day) if day.date == date => day.messages.push(line),
            _ => days.push(Day { date, messages: vec![line] }),
        }
    }
    let content = TranscriptPage {
        w,
        name: chat.full_name.clone().or(chat.phone.clone()).unwrap_or_else(|| chat.external_id.clone()),
        zone: zone.name().to_string(),
        days,
        newer: page.checked_sub(1).filter(|_| !whole),
        older: more.then_some(page + 1),
        back: query.message,
        retention,
        marking: marked.map(|r| format!("&from={}&to={}", r.start(), r.end())).unwrap_or_default(),
    };
    match content.render() {
        // The token is in the URL: keep it out of referrers, caches and search engines.
        Ok(html) => (
            [
                (REFERRER_POLICY, "no-referrer"),
                (HeaderName::from_static("x-robots-tag"), "noindex"),
                (CACHE_CONTROL, "private, no-store"),
            ],
            Html(html),
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "This page could not be rendered.").into_response(),
    }
}
