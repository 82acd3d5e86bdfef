//! Inbound: every route that brings messages in. Each channel has its own file that turns the
//! vendor's request into canonical messages; all of them end in [`accept`], which stores them
//! and wakes the delivery worker.

pub mod canonical;
pub mod chatwoot;
pub mod error;
pub mod hooks;
pub mod inbound;
pub mod json;
pub mod twilio;
pub mod wechat;
pub mod whatsapp;
pub mod zoho_desk;

use std::sync::Arc;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::Media;
use crate::http::ApiError;
use crate::render;
use crate::render::media::LinkPlan;
use crate::service::AppState;
use crate::store::{IngestBatch, NewMessage, SessionChange, Source, Workspace};

/// What became of an inbound request's messages: the JSON API's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = IngestOutcome)]
pub struct Accepted {
    /// Stored now.
    pub accepted: u32,
    /// Stored before (the same message id): not stored again.
    pub duplicates: u32,
    /// Neither words nor media (a reaction, a receipt): counted and noted in the activity
    /// log, not stored.
    pub skipped: u32,
}
use crate::telemetry::metric;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(json::post_messages))
        .routes(routes!(hooks::get, hooks::post))
        .route_layer(axum::middleware::from_fn(crate::http::body::inbound_bodies))
}

/// Stores what one inbound request brought for a workspace and source (`None`: the JSON API's
/// own chats): its messages (text or media), the session news it reported and the receipts,
/// reactions and system events it skipped (by id, where they have one: counted, and noted in the
/// activity log of the workspace's webhooks, which names the source by its name). All of it
/// commits in one transaction, or nothing does; this returns once it is durable.
pub async fn accept(
    state: &AppState,
    workspace: &Workspace,
    source: Option<&Source>,
    mut messages: Vec<NewMessage>,
    mut sessions: Vec<SessionChange>,
    skipped: Vec<Option<String>>,
) -> Result<Accepted, ApiError> {
    messages.iter_mut().for_each(canonical::tidy_names);
    sessions.iter_mut().for_each(|s| canonical::tidy_chat_names(&mut s.chat));
    let skipped_count = skipped.len() as u32;
    let changes = sessions.len();
    let public_url = state.public_url.clone();
    // A webhook whose media are `link` gets links to this source's files.
    let links = source.map(|s| LinkPlan {
        key: state.link_key.clone(),
        expires: state.clock.now() + workspace.media_link_ttl.duration(),
        sources: [(s.id.to_string(), (s.kind, s.credentials.clone()))].into(),
    });
    let batch = IngestBatch {
        workspace_id: workspace.id.clone(),
        source_key: source.map_or(json::SOURCE_KEY, |s| s.id.as_str()).to_string(),
        source_name: source.map_or(json::SOURCE_KEY, |s| s.name.as_str()).to_string(),
        messages,
        sessions,
        skipped,
        render_immediate: Arc::new(move |account, locale, chat, message, media, is_new_chat| {
            let links = match (&links, media) {
                (Some(plan), Media::Link) => plan.for_source(&public_url, &chat.source_key),
                _ => None,
            };
            render::single_message(&public_url, account, locale, chat, message, is_new_chat, links.as_ref())
        }),
        render_session: session_renderer(state),
    };
    let outcome = state.store.ingest(batch).await?;
    metrics::counter!(metric::MESSAGES_RECEIVED).increment(u64::from(outcome.accepted));
    metrics::counter!(metric::MESSAGES_DUPLICATE).increment(u64::from(outcome.duplicates));
    metrics::counter!(metric::MESSAGES_SKIPPED).increment(u64::from(skipped_count));
    if outcome.queued || changes > 0 {
        state.deliveries_waiting.notify_one();
    }
    Ok(Accepted { accepted: outcome.accepted, duplicates: outcome.duplicates, skipped: skipped_count })
}

/// How `session_status` payloads are rendered for this daemon.
pub fn session_renderer(state: &AppState) -> crate::store::RenderSession {
    let public_url = state.public_url.clone();
    Arc::new(move |event| render::session_event(&public_url, event))
}

/// Messages of a source: those that name no business account speak for the source's, and a
/// WeChat source's chats take its account type.
pub fn as_source(source: &crate::store::Source, messages: Vec<NewMessage>) -> Vec<NewMessage> {
    let speaks_for = source.account != crate::domain::Account::default();
    let account_type = (source.kind == crate::domain::SourceKind::Wechat)
        .then(|| crate::domain::credentials::wechat::account_type(&source.credentials));
    messages
        .into_iter()
        .map(|mut m| {
            if m.account.is_none() && speaks_for {
                m.account = Some(source.account.clone());
            }
            m.chat.account_type = account_type;
            m
        })
        .collect()
}
