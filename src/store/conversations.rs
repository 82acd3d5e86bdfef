//! Conversations: the open conversations of webhooks whose granularity is `conversation`, each
//! with its stored deadline, and closing them into deliveries ([`crate::domain::conversation`]).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{BundlingWebhook, Chat, FirstMessages, PlannedDelivery, StoreResult, StoredMessage};
use crate::domain::{ClosedBy, WebhookId, WorkspaceId};

/// Turns one conversation's messages into deliveries for its webhook: given the webhook, why it
/// closed, the chat, where its first messages are (for `is_new_chat`) and the messages ordered by
/// (timestamp, message id). Called by the store inside the closing transaction.
pub type PlanConversation = Arc<
    dyn Fn(&WebhookId, ClosedBy, &Chat, FirstMessages, &[StoredMessage]) -> Vec<PlannedDelivery>
        + Send
        + Sync,
>;

/// One transaction's worth of closing conversations of one workspace.
pub struct ConversationClose {
    pub workspace_id: WorkspaceId,
    /// Only conversations of these webhooks (those `plan` knows).
    pub webhooks: Vec<WebhookId>,
    /// `false`: those due by the store's time. `true`: every open one of `webhooks` (a flush).
    pub flush: bool,
    /// At most this many conversations.
    pub limit: usize,
    pub plan: PlanConversation,
}

/// What a close did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConversationsClosed {
    pub conversations: u64,
    pub deliveries: u64,
    /// Whether `limit` stopped it: more may be waiting.
    pub more: bool,
}

/// Open conversations, for the closer. Messages join them at ingest ([`super::IngestStore`]),
/// a session's end is marked at ingest too, and a settings change ends them
/// ([`super::WebhookStore::update_webhook`]).
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// The workspace of the conversation due first by `now`, if any is due: one index lookup,
    /// whatever the number of open conversations.
    async fn due_conversations(&self, now: DateTime<Utc>) -> StoreResult<Option<WorkspaceId>>;

    /// Every webhook of a workspace, stopped or not and whatever its granularity, as closing
    /// renders for it: a conversation a settings change ended is closed for its webhook still.
    async fn closing_webhooks(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<BundlingWebhook>>;

    /// When the open conversation of `webhook` in `chat` received its first message, if one is
    /// open: what it holds so far are the chat's messages received since.
    async fn conversation_since(
        &self,
        webhook: &WebhookId,
        chat: crate::domain::ChatId,
    ) -> StoreResult<Option<DateTime<Utc>>>;

    /// When the next open conversation is due (it may be in the past), if there is one.
    async fn next_conversation_due(&self) -> StoreResult<Option<DateTime<Utc>>>;

    /// Closes conversations of one workspace in one transaction: each gets the deliveries `plan`
    /// makes of it, and is gone in the same commit.
    ///
    /// - **Every acknowledged message in exactly one bundle per conversation webhook**: a
    ///   conversation holds the chat's messages received from its first on, up to the moment
    ///   it closes (the transaction's time, under the same rule as a window close: no message
    ///   can be acknowledged later with an earlier time of receipt), or up to the instant a
    ///   settings change ended it. A message acknowledged after the close opens the next one; one
    ///   acknowledged after the conversation fell due but before a closer closed it joins it (the
    ///   only cut of a conversation is its close, made where no later message can land behind
    ///   it). A conversation holds every message of its chat from the earliest one that joined it,
    ///   also one whose commit came after a later one's.
    /// - **Once, whoever closes it**: the conversation is deleted in the transaction that queues
    ///   its deliveries, so closers racing (in one daemon or several) make one bundle; a crash
    ///   before the commit leaves it open and due, and the next close makes it once.
    /// - **Deadlines are stored**: what fell due while no daemon ran is due when one starts.
    /// - **Why it closed** is handed to `plan`: what ended it (the session, a flush or a
    ///   settings change, both `flush`), or whichever of `max` and `silence` came first
    ///   ([`crate::domain::conversation::closed_by`]).
    async fn close_conversations(&self, close: ConversationClose) -> StoreResult<ConversationsClosed>;
}
