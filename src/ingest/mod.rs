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

use tracing::Instrument;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::ApiError;
use crate::service::AppState;
pub use crate::service::intake::{as_source, batch, session_renderer};
use crate::store::{NewMessage, SessionChange, Source, Workspace};

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
    let batch = batch(state, workspace, source, messages, sessions, skipped);
    let span = tracing::info_span!(
        target: crate::telemetry::TRACED,
        "ingest commit",
        workspace.id = %workspace.id,
        messages = batch.messages.len(),
        accepted = tracing::field::Empty,
    );
    let outcome = state.store.ingest(batch).instrument(span.clone()).await?;
    span.record("accepted", outcome.accepted);
    metrics::counter!(metric::MESSAGES_RECEIVED).increment(u64::from(outcome.accepted));
    metrics::counter!(metric::MESSAGES_DUPLICATE).increment(u64::from(outcome.duplicates));
    metrics::counter!(metric::MESSAGES_SKIPPED).increment(u64::from(skipped_count));
    if outcome.queued || changes > 0 {
        state.deliveries_waiting.notify_one();
    }
    if outcome.conversations {
        state.closer.conversations_moved();
    }
    Ok(Accepted { accepted: outcome.accepted, duplicates: outcome.duplicates, skipped: skipped_count })
}
