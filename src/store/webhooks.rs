//! Webhooks: the outbound endpoints of a workspace.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{
    ConversationMax, ConversationSilence, Event, Granularity, Media, NoteMaxChars, WebhookId, WebhookUrl,
    WorkspaceId,
};

/// A webhook as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: WebhookId,
    pub workspace_id: WorkspaceId,
    pub url: WebhookUrl,
    /// `None` follows the workspace's default granularity.
    pub granularity: Option<Granularity>,
    pub enabled: bool,
    pub secret: Option<String>,
    pub events: Vec<Event>,
    /// `None` uses the configured delivery timeout.
    pub timeout: Option<Duration>,
    /// Characters of note a bundle part may hold: where bundles are cut into parts.
    pub note_max_chars: NoteMaxChars,
    /// Whether it takes messages that carry media.
    pub media: Media,
    /// Its own conversation silence and maximum; `None` follows the workspace's.
    pub conversation_silence: Option<ConversationSilence>,
    pub conversation_max: Option<ConversationMax>,
    pub consecutive_failures: u32,
    pub disabled_reason: Option<String>,
    /// Switched off in "stop" mode: it takes nothing (no message, bundle or session event is
    /// kept for it) until it is switched on again. Switched off otherwise ("pause", and every
    /// automatic switch-off), it keeps collecting, and what it collected goes out when it is on.
    pub stopped: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub workspace_id: WorkspaceId,
    pub url: WebhookUrl,
    pub granularity: Option<Granularity>,
    pub enabled: bool,
    pub secret: Option<String>,
    pub events: Vec<Event>,
    pub timeout: Option<Duration>,
    /// `None`: [`NoteMaxChars::DEFAULT`].
    pub note_max_chars: Option<NoteMaxChars>,
    pub media: Media,
    pub conversation_silence: Option<ConversationSilence>,
    pub conversation_max: Option<ConversationMax>,
}

/// Fields to change on a webhook; the outer `None` leaves a field as it is, an inner `None`
/// clears it (back to the workspace default, no secret, the configured timeout).
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: Option<WebhookUrl>,
    pub granularity: Option<Option<Granularity>>,
    pub enabled: Option<bool>,
    pub secret: Option<Option<String>>,
    pub events: Option<Vec<Event>>,
    pub timeout: Option<Option<Duration>>,
    pub note_max_chars: Option<NoteMaxChars>,
    pub media: Option<Media>,
    /// `Some(None)`: back to the workspace's.
    pub conversation_silence: Option<Option<ConversationSilence>>,
    pub conversation_max: Option<Option<ConversationMax>>,
    /// With `enabled: Some(false)`: stop (take nothing meanwhile) rather than pause.
    pub stop: bool,
}

/// Webhooks, for the admin API and page.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Creates a webhook. It takes the messages acknowledged after this call returns, never
    /// one acknowledged before.
    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<Webhook>;
    /// A workspace's webhooks, oldest first.
    async fn list_webhooks(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<Webhook>>;
    /// `None` when there is none.
    async fn get_webhook(&self, id: &WebhookId) -> StoreResult<Option<Webhook>>;
    /// Changes a webhook. A change of what it takes or how it windows takes effect at a single
    /// instant: messages acknowledged before it were handled under the old settings, those after
    /// under the new. What is buffered stays buffered and belongs to the window open now under
    /// the new settings, or goes out at once, message by message, when the new granularity is
    /// `none`; nothing buffered is lost or bundled twice. A webhook that stops bundling by
    /// conversation (a new granularity, or it takes no messages) ends its open conversations at
    /// the change (they go out at once, `closed_by: flush`); one that starts takes what is
    /// buffered as one bundle per chat at once, and conversations from then on. A new silence or
    /// maximum moves the deadlines of its open conversations at the change. Where bundles are cut and whether they
    /// take media apply to every bundle made after the change, of buffered messages too. Switching it on again resets its
    /// failure count; switching it off keeps what it has queued. Switched off to stop, it takes
    /// nothing from then on (to its windowing it takes no messages: what is buffered is not
    /// bundled), and switched on again it takes what is acknowledged after that, as a new webhook
    /// does; what was already queued stays queued ([`super::DeliveryLog::discard_pending`]).
    async fn update_webhook(&self, id: &WebhookId, patch: WebhookPatch) -> StoreResult<Option<Webhook>>;
    /// Deletes a webhook with its queue and attempts; `false` when there was none.
    async fn delete_webhook(&self, id: &WebhookId) -> StoreResult<bool>;
}
