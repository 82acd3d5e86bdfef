//! Windows: which webhooks bundle, and closing a range of their messages into deliveries.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Chat, FirstMessages, StoreResult, StoredMessage};
use crate::domain::{Account, DeliveryId, Granularity, Timezone, WebhookId, WorkspaceId};

/// A webhook as the window closer sees it.
#[derive(Debug, Clone)]
pub struct BundlingWebhook {
    pub id: WebhookId,
    pub workspace_id: WorkspaceId,
    /// The granularity in effect (the webhook's, or the workspace's).
    pub granularity: Granularity,
    pub timezone: Timezone,
    /// The workspace's account, for messages that name none.
    pub account: Account,
    /// Every message received before this has been bundled (or delivered one by one).
    pub bundled_before: DateTime<Utc>,
    /// Messages still buffered at this moment belong to the window open then.
    pub granularity_changed_at: DateTime<Utc>,
    /// A close that was started and not finished: its boundary.
    pub closing_boundary: Option<DateTime<Utc>>,
    /// Whether that close is a flush.
    pub closing_flush: bool,
    /// The last flush, which cut its window short.
    pub flushed_at: DateTime<Utc>,
    /// Characters of note a bundle part may hold.
    pub note_max_chars: crate::domain::NoteMaxChars,
    /// The workspace's language, for the notes.
    pub locale: crate::domain::Locale,
    /// Whether its bundles take messages that carry media.
    pub media: crate::domain::Media,
    /// How long its media links work (the workspace's setting).
    pub media_link_ttl: crate::domain::MediaLinkTtl,
    /// Its conversations' silence and maximum in effect (ms): its own, or its workspace's.
    pub conversation: (i64, i64),
}

/// A delivery made by closing a window: one bundle part, or (when a webhook stopped
/// aggregating) one buffered message on its own.
#[derive(Debug, Clone)]
pub struct PlannedDelivery {
    /// The `webhook-id` header.
    pub id: DeliveryId,
    pub payload: Vec<u8>,
    /// `Some` for a bundle part: the window's end and the part's number.
    pub bundle: Option<(DateTime<Utc>, u32)>,
}

/// Turns one chat's messages of a closing range into deliveries. Called by the store inside the
/// closing transaction; given the chat, where its first messages are (for `is_new_chat`), and
/// its messages in range ordered by (timestamp, message id).
pub type PlanDeliveries =
    Arc<dyn Fn(&Chat, FirstMessages, &[StoredMessage]) -> Vec<PlannedDelivery> + Send + Sync>;

/// One transaction's worth of closing: up to `chats` chats of the range
/// `[bundled_before, boundary)` of a webhook.
pub struct CloseStep {
    pub webhook_id: WebhookId,
    /// What the caller read; the step does nothing if another close moved it on since.
    pub bundled_before: DateTime<Utc>,
    pub boundary: DateTime<Utc>,
    pub chats: usize,
    pub plan: PlanDeliveries,
    /// A flush: the boundary cuts a window short.
    pub flush: bool,
}

/// What a close step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseProgress {
    /// Chats remain; call again.
    More { deliveries: u64 },
    /// The range is closed: `bundled_before` is now the boundary.
    Done { deliveries: u64 },
    /// Someone else closed (or is closing) this range; nothing was done.
    Superseded,
    /// The store has not yet reached the boundary: a message could still be received before it.
    NotYet,
}

/// Windows, for the closer.
#[async_trait]
pub trait WindowStore: Send + Sync {
    /// Webhooks that take messages (of one workspace, or all), with their closing state.
    async fn bundling_webhooks(
        &self,
        workspace_id: Option<&WorkspaceId>,
    ) -> StoreResult<Vec<BundlingWebhook>>;

    /// Closes part of the range `[bundled_before, boundary)` of a webhook in one transaction:
    /// the next `chats` chats (in a fixed order) with messages received in it get the deliveries
    /// `plan` makes of them, and the progress is recorded with them.
    ///
    /// - **Every acknowledged message in exactly one bundle per bundling webhook**: a message
    ///   belongs to the range its time of receipt falls in. Once a step has returned for
    ///   `boundary`, no message can be acknowledged with a time of receipt before it (the store
    ///   answers [`CloseProgress::NotYet`] while one still could), so a message committed while
    ///   another task closes its window lands in this range or a later one, never in a range
    ///   already closed. Closing steps never overlap: each covers `[bundled_before, boundary)` and
    ///   the next starts at the last boundary.
    /// - **Exactly one bundle per (webhook, chat, window) and part**, whoever closes it and
    ///   however often: a step whose `bundled_before` is no longer the stored one, or that
    ///   disagrees with a close in progress, does nothing ([`CloseProgress::Superseded`]); a
    ///   repeated step finds its bundles already there.
    /// - **A close survives a crash and resumes once**: its boundary, how far it got and whether
    ///   it is a flush commit with each step, and [`Self::bundling_webhooks`] reports them, so a
    ///   restarted daemon finishes it (as a flush, if it was one) without making a bundle twice.
    /// - **Bundles link to their messages' traces**: each bundle delivery keeps the distinct
    ///   `trace_parent`s its messages came in with, in order, at most [`super::TRACE_LINKS`]
    ///   ([`super::ClaimedDelivery::trace_links`]); a bundle's own trace starts at its delivery.
    async fn close_step(&self, step: CloseStep) -> StoreResult<CloseProgress>;
}
