//! The OpenAPI document of the admin and ingest API, generated from the handlers' annotations and
//! served at `/api/v1/openapi.json`. The API routes are registered through `utoipa-axum`, so a
//! route and its documentation come from the same annotation.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::admin::activity::ActivityView;
use crate::admin::sources::SourceView;
use crate::admin::webhooks::WebhookView;
use crate::domain::{Account, Direction};

pub const PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chatbundle",
        description = "Takes chat messages in, buffers them per chat, and delivers each one at once or \
                       one bundle per chat per window to webhooks. Admin routes take the admin token as \
                       a bearer token; a workspace's ingest route also takes its ingest key.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&Security),
    components(schemas(ErrorBody, ErrorDetail, LogFormat)),
    tags(
        (name = "workspaces", description = "Workspaces, their statistics and flushing"),
        (name = "webhooks", description = "Outbound webhooks, their activity log and test sends"),
        (name = "sources", description = "Connected inbound channels and their inbound URLs"),
        (name = "chats", description = "Chats and their transcript links"),
        (name = "ingest", description = "Taking messages in"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build(),
            )
        };
        components.add_security_scheme("admin_token", bearer("The daemon's admin token."));
        components.add_security_scheme(
            "ingest_key",
            bearer("The workspace's ingest key (the admin token is accepted too)."),
        );
    }
}

/// The error answer of every route.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable, e.g. `invalid_field`, `not_found`, `unauthorized`.
    pub code: String,
    /// A sentence for the human reading it.
    pub detail: String,
    /// The input at fault, as a path like `[2].chat.id`, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

#[derive(Serialize, ToSchema)]
pub struct SourceList {
    pub sources: Vec<SourceView>,
}

#[derive(Serialize, ToSchema)]
pub struct ActivityList {
    /// The latest 10 rows, newest first.
    pub activity: Vec<ActivityView>,
}

#[derive(Serialize, ToSchema)]
pub struct Flushed {
    /// How many deliveries the flush queued.
    pub deliveries: u64,
}

/// One message for `POST /api/v1/workspaces/{id}/messages` (documentation of the hand-written
/// parser in `ingest::canonical`, which names the field at fault in its errors).
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[schema(as = Message)]
pub struct MessageDoc {
    /// Unique per workspace and chat; a repeat is counted as a duplicate and stored once.
    #[schema(min_length = 1, max_length = 256)]
    message_id: String,
    direction: Direction,
    /// RFC 3339; the time of receipt when absent.
    timestamp: Option<String>,
    chat: ChatDoc,
    sender: Option<PartyDoc>,
    recipient: Option<PartyDoc>,
    /// Plain text, at most 64 KiB; required for text messages.
    text: Option<String>,
    /// `text` (the default); other types are counted as skipped.
    #[serde(rename = "type")]
    kind: Option<String>,
    account: Option<Account>,
    /// The channel name carried into payloads (`api` by default).
    channel: Option<String>,
}

#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[schema(as = MessageChat)]
pub struct ChatDoc {
    #[schema(min_length = 1, max_length = 256)]
    id: String,
    full_name: Option<String>,
    phone: Option<String>,
    is_group: Option<bool>,
    responsible_name: Option<String>,
    responsible_email: Option<String>,
}

#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[schema(as = Party)]
pub struct PartyDoc {
    full_name: Option<String>,
    phone: Option<String>,
}

/// A message, or an array of up to 1,000 of them (stored all or nothing).
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = Messages)]
pub enum MessagesDoc {
    One(Box<MessageDoc>),
    Many(Vec<MessageDoc>),
}

/// The formats of a webhook's log download.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Jsonl,
    Csv,
}

/// The document, built once, with what the derive cannot say: the time zone names accepted.
pub fn document(api: utoipa::openapi::OpenApi) -> Arc<String> {
    let mut doc = serde_json::to_value(&api).expect("the OpenAPI document serialises");
    // Both take `null` for "leave it" (update) or "UTC" (create).
    let mut zones: Vec<Value> = chrono_tz::TZ_VARIANTS.iter().map(|tz| Value::from(tz.name())).collect();
    zones.push(Value::Null);
    for schema in ["CreateWorkspace", "UpdateWorkspace"] {
        if let Some(property) = doc.pointer_mut(&format!("/components/schemas/{schema}/properties/timezone"))
        {
            property["enum"] = Value::Array(zones.clone());
        }
    }
    if let Some(many) = doc.pointer_mut("/components/schemas/Messages/oneOf/1") {
        many["minItems"] = 1.into();
        many["maxItems"] = crate::ingest::json::MAX_MESSAGES_PER_REQUEST.into();
    }
    Arc::new(doc.to_string())
}

/// `GET /api/v1/openapi.json`.
pub async fn serve(State(doc): State<Arc<String>>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned())
}

/// The error answers every API route may give, in the [`ErrorBody`] shape.
#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
pub enum Errors {
    /// The request is malformed or a field is invalid; `field` names it.
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// No bearer token, or not the right one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// No such workspace, webhook, source or chat.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The body is over 1 MiB (or an array over 1,000 messages, or a text over 64 KiB).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Storage is unavailable; nothing was stored. Try again.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}
