//! Inbound: every route that brings messages in. Each channel has its own file that turns the
//! vendor's request into canonical messages; all of them end in [`accept`], which stores them
//! and wakes the delivery worker.

pub mod canonical;
pub mod chatwoot;
pub mod hooks;
pub mod json;
pub mod twilio;
pub mod wechat;
pub mod whatsapp;
pub mod workspaces;
pub mod zoho_desk;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{ApiError, AppState};
use crate::render;
use crate::store::{IngestBatch, IngestOutcome, NewMessage, Workspace};
use crate::telemetry::metric;

/// The largest request body any inbound route reads.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(json::post_messages))
        .routes(routes!(hooks::get, hooks::post))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Stores parsed messages for a workspace and source, all or nothing, and returns once they are
/// durable. `skipped` lists the request's non-text messages (by id, where they have one): they are
/// counted, and noted in the activity log of the workspace's webhooks.
pub async fn accept(
    state: &AppState,
    workspace: &Workspace,
    source_key: &str,
    messages: Vec<NewMessage>,
    skipped: Vec<Option<String>>,
) -> Result<IngestOutcome, ApiError> {
    if !skipped.is_empty() {
        let detail =
            serde_json::json!({"count": skipped.len(), "source": source_key, "message_ids": skipped});
        // Only a log line: losing it to a storage error must not fail the messages themselves.
        if let Err(e) = state.store.record_event(&workspace.id, None, "skipped", detail).await {
            tracing::warn!(error = %e, "recording skipped messages failed");
        }
    }
    let skipped = skipped.len() as u32;
    if messages.is_empty() {
        metrics::counter!(metric::MESSAGES_SKIPPED).increment(u64::from(skipped));
        return Ok(IngestOutcome { skipped, ..IngestOutcome::default() });
    }
    let public_url = state.public_url.clone();
    let batch = IngestBatch {
        workspace_id: workspace.id.clone(),
        source_key: source_key.to_string(),
        messages,
        render_immediate: Arc::new(move |account, chat, message, is_new_chat| {
            render::single_message(&public_url, account, chat, message, is_new_chat)
        }),
        render_session: session_renderer(state),
    };
    let mut outcome = state.store.ingest(batch).await?;
    outcome.skipped = skipped;
    metrics::counter!(metric::MESSAGES_RECEIVED).increment(u64::from(outcome.accepted));
    metrics::counter!(metric::MESSAGES_DUPLICATE).increment(u64::from(outcome.duplicates));
    metrics::counter!(metric::MESSAGES_SKIPPED).increment(u64::from(skipped));
    if outcome.accepted > 0 {
        state.deliveries_waiting.notify_one();
    }
    Ok(outcome)
}

/// How `session_status` payloads are rendered for this daemon.
pub fn session_renderer(state: &AppState) -> crate::store::RenderSession {
    let public_url = state.public_url.clone();
    Arc::new(move |event| render::session_event(&public_url, event))
}
