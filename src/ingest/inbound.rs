//! What a channel's adapter reads and says: the request as it sees it, what it found (messages,
//! skipped events, sessions), the answer the channel expects, and its two refusals. Adapters and the
//! inbound routes ([`super::hooks`]) share it; adapters know nothing else of the routes.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use tracing::warn;

use super::error::IngestError;
use crate::domain::{SessionStatus, SourceKind};
use crate::store::{ChatInfo, NewMessage, ReportedSession};

/// An inbound request, as adapters see it.
pub struct HookRequest<'a> {
    pub headers: &'a HeaderMap,
    /// The public URL the channel called (`public_url` + path + query): what signatures cover.
    pub url: String,
    pub query: Vec<(String, String)>,
    pub body: &'a [u8],
    pub received_at: DateTime<Utc>,
}

impl HookRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What an adapter found in a request.
#[derive(Debug, Default)]
pub struct Inbound {
    pub messages: Vec<NewMessage>,
    /// Receipts, reactions and system events, by id where they have one: counted, not stored.
    pub skipped: Vec<Option<String>>,
    pub sessions: Vec<SessionUpdate>,
    /// Edits of messages the channel sent before ([`crate::store::ChatStore::edit_message`]).
    pub edits: Vec<crate::domain::MessageEdit>,
}

/// A chat's session as a channel reports it.
#[derive(Debug, Clone)]
pub struct SessionUpdate {
    pub chat: ChatInfo,
    pub session_id: Option<String>,
    pub status: Option<SessionStatus>,
    pub assignee_type: Option<String>,
    pub channel: Option<String>,
    /// What the channel said in its own words, passed through to the session event.
    pub reported: ReportedSession,
}

/// The answer the channel expects, sent once what it brought is stored.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    pub fn text(body: impl Into<String>) -> Answer {
        Answer { status: StatusCode::OK, content_type: "text/plain; charset=utf-8", body: body.into() }
    }

    pub fn json(value: serde_json::Value) -> Answer {
        Answer { status: StatusCode::OK, content_type: "application/json", body: value.to_string() }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (self.status, [(axum::http::header::CONTENT_TYPE, self.content_type)], self.body).into_response()
    }
}

/// A body the adapter cannot read.
pub fn malformed(detail: impl Into<String>) -> IngestError {
    IngestError::malformed(detail)
}

/// Logs and refuses a request whose signature does not match.
pub fn refuse(kind: SourceKind, why: &str) -> IngestError {
    warn!(kind = kind.as_str(), why, "refused an inbound request");
    IngestError::forged(why)
}
