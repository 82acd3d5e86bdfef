//! Ingest: what one inbound request brought, stored whole.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Chat, NewMessage, SessionChange, SessionEvent, StoreResult};
use crate::domain::{Account, Locale, Media, WorkspaceId};

/// What a webhook that does not aggregate is sent for one message, given the workspace's
/// account and language, the chat, the message with where it was stored, the webhook's media
/// choice, and whether it is the chat's first. Rendering lives outside the
/// store; the store calls this inside the ingest transaction, once the chat is known, so the
/// payload is frozen in the same commit as the message.
pub type RenderImmediate =
    Arc<dyn Fn(&Account, Locale, &Chat, (&NewMessage, i64), Media, bool) -> Vec<u8> + Send + Sync>;

/// What a `session_status` webhook is sent for one session event (rendered outside the store).
pub type RenderSession = Arc<dyn Fn(&SessionEvent) -> Vec<u8> + Send + Sync>;

/// One inbound request: its messages, the session changes it reports and what it skipped
/// (neither words nor media: receipts, reactions, system events).
pub struct IngestBatch {
    pub workspace_id: WorkspaceId,
    /// `api` for the JSON API, the source id for channel adapters.
    pub source_key: String,
    /// How the activity log names the source: its name, or `api`. Never its id: an older
    /// source's id is also the secret of its inbound URL.
    pub source_name: String,
    pub messages: Vec<NewMessage>,
    /// Session news from the channel, applied after the messages.
    pub sessions: Vec<SessionChange>,
    /// Skipped elements (by id where they have one): noted in the workspace's activity log.
    pub skipped: Vec<Option<String>>,
    pub render_immediate: RenderImmediate,
    /// For the session events the request causes (a new chat is CREATED, a status changes).
    pub render_session: RenderSession,
    /// A reply to send through the chat's channel: its message is one of `messages` (a `sent`
    /// one), and it is queued in the same commit, only if that message is new.
    pub reply: Option<super::NewReply>,
    /// The W3C `traceparent` of the request, when traces are exported: its immediate deliveries
    /// continue its trace.
    pub trace_parent: Option<String>,
}

/// What became of an ingest request's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    pub accepted: u32,
    pub duplicates: u32,
    /// Whether storing the request's messages queued deliveries for the worker to claim (for
    /// webhooks that get each message at once, or the session event of a chat started in its
    /// workspace in the same commit): the delivery worker need only be woken then. Deliveries
    /// handed to the worker by the commit, and those that wait behind an earlier one of their
    /// lane, need no claim now ([`super::DeliveryQueue::hand_off_to`]).
    pub queued: bool,
    /// Whether it opened a conversation (whose deadline may come before any the closer knows
    /// of) or ended a session with one open (due now): the closer need only look again then.
    pub conversations: bool,
}

/// Ingest.
#[async_trait]
pub trait IngestStore: Send + Sync {
    /// Stores an inbound request: its messages, the deliveries they cause for webhooks that do
    /// not aggregate (one per message and webhook, queued in the chat's lane in message order),
    /// the session events they cause, its session changes and its skipped-message note.
    ///
    /// - **Atomic and durable**: when this returns `Ok`, all of it survives a crash; when it
    ///   returns `Err`, none of it was stored (a retry stores it once).
    /// - **Idempotent by message id**: a `message_id` already stored for the same workspace and
    ///   source key is a duplicate, counted and not stored again, also when several requests
    ///   carry it at the same moment: exactly one of them stores it.
    /// - **Received at commit**: a message's time of receipt (which decides its window) is the
    ///   moment it commits. A window close that starts after a message is acknowledged takes it;
    ///   one that began before never misses it: see [`super::WindowStore::close_step`].
    /// - **Media kept whole**: a message's attachments are stored as given and read back with
    ///   it. A webhook that skips media gets a media message's words alone (`render_immediate`
    ///   is handed it without attachments) and no delivery for one without words (`queued`
    ///   stays false when nothing else was queued).
    /// - **First messages**: `is_new_chat` is handed to `render_immediate` as true for exactly
    ///   one message of each chat per webhook: the first ever stored, or, for a webhook that
    ///   skips media, the first with words; both are recorded ([`super::ChatStore::first_messages`]).
    /// - **Each request for itself**: requests arriving at the same moment may share a
    ///   transaction (both stores merge them: one commit, a few statements), but each gets its
    ///   own outcome, counted as if the requests had been stored one after another.
    /// - **Traces go on**: each immediate delivery the request queues keeps its `trace_parent`,
    ///   and a claim of it hands it back ([`super::ClaimedDelivery::trace_parent`]), each
    ///   request's its own when requests share a commit.
    /// - **Says whether it queued**: `queued` is true whenever the request's messages queued a
    ///   delivery (an immediate webhook, a new chat's session event) that a claim should look
    ///   for now, so a caller that wakes the delivery worker on it never leaves one waiting; it
    ///   is false when nothing was queued for the request's workspace in its commit, and when a
    ///   handoff took its immediate deliveries or left them behind their lanes' heads
    ///   ([`super::DeliveryQueue::hand_off_to`]).
    /// - **Session news once**: a session change queues a `session_status` event when the status
    ///   moves (one the store does not know compared as sent), when the chat's owner changes, or
    ///   when the source reports a reply status other than `ACCEPTED`; the same report again
    ///   (a retry, or two daemons) queues none. What the source said itself (`reported`) reaches
    ///   the event unchanged.
    /// - **Sessions move with messages**: a customer's message after ENDED starts a new session
    ///   (CREATED), the business's message moves an open one to ON_PROGRESS; each move is
    ///   recorded in the chat's history and announced once ([`super::SessionStore::session_history`]).
    /// - **Replies with their message**: a request's `reply` is queued by the commit that stores
    ///   its message, and not at all when the message is a duplicate (the same idempotency key
    ///   again). A `sent` message whose id is the channel's id of a reply sent from here (the
    ///   channel's echo of it) is a duplicate: the reply's message already stands for it.
    /// - **Conversations kept**: for each webhook whose granularity is `conversation`, every new
    ///   message joins its chat's open conversation (moving its deadline) or opens one; a
    ///   session the channel ends makes the chat's open conversations due at once
    ///   ([`super::ConversationStore`]). `conversations` says when either happened.
    /// - **Allowance counted**: for a chat whose account has an allowance after the reply window
    ///   (WeChat), the business's messages sent after the window count in their period; the
    ///   message that uses the allowance up queues one `OUTGOING_LIMIT_REACHED` event.
    async fn ingest(&self, batch: IngestBatch) -> StoreResult<IngestOutcome>;
}
