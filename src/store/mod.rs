//! The store seam: every byte of SQL lives behind [`Store`]. Handlers and workers speak in the
//! records below; [`sqlite::SqliteStore`] is the embedded implementation, and any other database
//! slots in by implementing the same trait.

pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Account, Direction, Event, Granularity, Party, SessionStatus, SourceKind};

/// Why the store could not do what was asked. Callers answer 503 for these: the request may be
/// retried, and nothing of it was committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] Arc<sqlx::Error>),
    #[error("migration failed: {0}")]
    Migrate(Arc<sqlx::migrate::MigrateError>),
    #[error("the store is shutting down")]
    Closed,
    #[error("database {0} is in use by another chatbundle process")]
    Locked(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(Arc::new(e))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A workspace: the owner of sources, chats and webhooks.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub owner_email: String,
    pub timezone: String,
    pub granularity: Granularity,
    /// The business account used when a message names none.
    pub account: Account,
    /// The bearer key that authorises ingest into this workspace alone.
    pub ingest_key: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewWorkspace {
    pub name: String,
    pub owner_email: String,
    pub timezone: String,
    pub granularity: Granularity,
    pub account: Account,
}

/// Fields to change on a workspace; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WorkspacePatch {
    pub name: Option<String>,
    pub owner_email: Option<String>,
    pub timezone: Option<String>,
    pub granularity: Option<Granularity>,
    pub account: Option<Account>,
}

/// An outbound endpoint of a workspace.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub workspace_id: String,
    pub url: String,
    /// `None` follows the workspace's default granularity.
    pub granularity: Option<Granularity>,
    pub enabled: bool,
    pub secret: Option<String>,
    pub events: Vec<Event>,
    /// `None` uses the configured delivery timeout.
    pub timeout: Option<Duration>,
    pub consecutive_failures: u32,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub workspace_id: String,
    pub url: String,
    pub granularity: Option<Granularity>,
    pub enabled: bool,
    pub secret: Option<String>,
    pub events: Vec<Event>,
    pub timeout: Option<Duration>,
}

/// Fields to change on a webhook; the outer `None` leaves a field as it is, an inner `None`
/// clears it (back to the workspace default, no secret, the configured timeout).
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub granularity: Option<Option<Granularity>>,
    pub enabled: Option<bool>,
    pub secret: Option<Option<String>>,
    pub events: Option<Vec<Event>>,
    pub timeout: Option<Option<Duration>>,
}

/// The chat as the sender describes it in a message.
#[derive(Debug, Clone, Default)]
pub struct ChatInfo {
    pub external_id: String,
    pub full_name: Option<String>,
    pub phone: Option<String>,
    pub is_group: Option<bool>,
    pub responsible_name: Option<String>,
    pub responsible_email: Option<String>,
}

/// A stored chat, after this message's details were merged in.
#[derive(Debug, Clone)]
pub struct Chat {
    pub id: i64,
    pub external_id: String,
    pub full_name: Option<String>,
    pub phone: Option<String>,
    pub is_group: bool,
    pub responsible_name: Option<String>,
    pub responsible_email: Option<String>,
    /// The unguessable part of the transcript link `{public_url}/c/{token}`.
    pub token: String,
    pub first_seen_at: DateTime<Utc>,
    pub session_status: Option<SessionStatus>,
    /// When the channel stops allowing free-form replies (WhatsApp 24 h, WeChat 48 h after the
    /// customer's last message); `None` where the channel sets no window.
    pub reply_window_expires_at: Option<DateTime<Utc>>,
}

/// A validated text message, ready to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message_id: String,
    pub direction: Direction,
    pub timestamp: DateTime<Utc>,
    pub chat: ChatInfo,
    pub sender: Party,
    pub recipient: Party,
    pub text: String,
    pub account: Option<Account>,
    pub channel: String,
}

/// What an immediate (granularity `none`) webhook is sent for one message, given the workspace's
/// account, the chat, the message and whether it is the chat's first. Rendering lives outside the
/// store; the store calls this inside the ingest transaction, once the chat row is known, so the
/// payload is frozen in the same commit as the message.
pub type RenderImmediate = Arc<dyn Fn(&Account, &Chat, &NewMessage, bool) -> Vec<u8> + Send + Sync>;

/// What a `session_status` webhook is sent for one change (rendered outside the store).
pub type RenderSession = Arc<dyn Fn(&SessionEvent) -> Vec<u8> + Send + Sync>;

/// One inbound request: its messages, the session changes it reports and the non-text messages
/// it skipped. All of it is stored in one transaction, or none of it.
pub struct IngestBatch {
    pub workspace_id: String,
    /// `api` for the JSON API, the source id for channel adapters.
    pub source_key: String,
    pub messages: Vec<NewMessage>,
    /// Session news from the channel, applied after the messages.
    pub sessions: Vec<SessionChange>,
    /// Non-text messages (by id where they have one): noted in the workspace's activity log.
    pub skipped: Vec<Option<String>>,
    pub render_immediate: RenderImmediate,
    /// For the session events the request causes (a new chat is CREATED, a status changes).
    pub render_session: RenderSession,
}

/// A change of a chat's session, as a channel reports it.
#[derive(Debug, Clone)]
pub struct SessionChange {
    pub workspace_id: String,
    pub source_key: String,
    pub chat: ChatInfo,
    /// The channel's own id for the conversation.
    pub session_id: Option<String>,
    pub status: Option<SessionStatus>,
    /// `AGENT` or `BOT`, when the channel says.
    pub assignee_type: Option<String>,
    pub channel: Option<String>,
}

/// A session event, as `session_status` webhooks receive it.
#[derive(Debug, Clone)]
pub struct SessionEvent {
    pub workspace_id: String,
    pub chat: Chat,
    /// The source (channel) the chat belongs to: `api` or a source id.
    pub source_key: String,
    pub session_id: Option<String>,
    pub status: Option<SessionStatus>,
    pub old_status: Option<SessionStatus>,
    /// `ACCEPTED`, `SESSION_EXPIRED`, `SESSION_ENDED`, `SESSION_BLOCKED`, …
    pub reply_status: String,
    pub assignee_type: Option<String>,
    pub messages_count: u64,
    pub at: DateTime<Utc>,
}

/// A connected inbound channel.
#[derive(Debug, Clone)]
pub struct Source {
    pub id: String,
    pub workspace_id: String,
    pub kind: SourceKind,
    pub name: String,
    /// The business account it speaks for (the payloads' `whatsapp_account`).
    pub account: Account,
    /// Secrets; never shown by the API.
    pub credentials: serde_json::Value,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewSource {
    pub workspace_id: String,
    pub kind: SourceKind,
    pub name: String,
    pub account: Account,
    pub credentials: serde_json::Value,
    pub enabled: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SourcePatch {
    pub name: Option<String>,
    pub account: Option<Account>,
    pub credentials: Option<serde_json::Value>,
    pub enabled: Option<bool>,
}

/// What became of an ingest request's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IngestOutcome {
    pub accepted: u32,
    pub duplicates: u32,
    /// Filled in by the caller: skipped messages never reach the store.
    pub skipped: u32,
}

/// A delivery handed to the worker, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// Queue position; deliveries of one webhook and chat go out in this order.
    pub seq: i64,
    /// The claim's fencing token: only an attempt carrying it may record a result.
    pub lease_token: i64,
    /// The `webhook-id` header: the same on every retry, so receivers can de-duplicate.
    pub id: String,
    pub webhook_id: String,
    pub url: String,
    pub secret: Option<String>,
    pub timeout: Option<Duration>,
    /// The frozen request body.
    pub payload: Vec<u8>,
    /// Attempts made before this one.
    pub attempts: u32,
    /// Attempts before this one that the endpoint rejected (see [`AttemptRecord::rejected`]).
    pub rejections: u32,
    /// When retrying started: creation, or the last manual resend. Retention counts from here.
    pub retry_since: DateTime<Utc>,
}

/// One HTTP try, as it is written to the activity log.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_seq: i64,
    /// The token of the claim this attempt was made under (0 for test sends).
    pub lease_token: i64,
    pub delivery_id: String,
    pub webhook_id: String,
    pub attempted_at: DateTime<Utc>,
    pub duration: Duration,
    pub status: Option<u16>,
    /// At most the first 2 KiB of the response body.
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    /// The request headers sent, as a JSON object.
    pub request_headers: String,
    pub request_body: Vec<u8>,
}

impl AttemptRecord {
    /// Whether the endpoint refused this request for good: a 4xx other than 408 Request Timeout,
    /// 409 Conflict, 425 Too Early and 429 Too Many Requests, which say "try again later".
    pub fn rejected(&self) -> bool {
        self.status.is_some_and(|s| (400..500).contains(&s) && !matches!(s, 408 | 409 | 425 | 429))
    }
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt(DateTime<Utc>),
    /// Retried until the retention period ended.
    Expired,
    /// Rejected by the endpoint `delivery.reject_after` times: given up, so its chat moves on.
    GivenUp,
}

/// What recording an attempt did besides recording it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The claim's lease had been taken over: the result was logged, the delivery left alone.
    pub stale: bool,
    /// Why this attempt switched the webhook off, when it did.
    pub disabled: Option<String>,
    /// An e-mail to the owner was put in the outbox.
    pub emailed: bool,
}

/// An attempt as read back from the activity log.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub id: i64,
    pub delivery_id: String,
    pub webhook_id: String,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub status: Option<u16>,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    pub request_headers: serde_json::Value,
    pub request_body: String,
}

/// A message as stored, read back for a bundle.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Position in the message table; `is_new_chat` compares it with the chat's first message.
    pub seq: i64,
    pub message_id: String,
    pub direction: Direction,
    pub timestamp: DateTime<Utc>,
    /// When the daemon received it: this decides its window.
    pub received_at: DateTime<Utc>,
    pub sender: Party,
    pub recipient: Party,
    pub text: String,
    pub account: Option<Account>,
    pub channel: String,
}

/// A delivery made by closing a window: one bundle part, or (when a webhook stopped aggregating)
/// one buffered message on its own.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The `webhook-id` header.
    pub id: String,
    pub kind: DeliveryKind,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    Message,
    /// A bundle part; (webhook, chat, window end, part) is unique.
    Bundle {
        window_end: DateTime<Utc>,
        part: u32,
    },
}

/// Turns one chat's messages of a closing range into deliveries. Called by the store inside the
/// closing transaction; given the chat, the sequence number of its first message ever (for
/// `is_new_chat`), and its messages in range ordered by (timestamp, message id).
pub type PlanDeliveries = Arc<dyn Fn(&Chat, Option<i64>, &[StoredMessage]) -> Vec<NewDelivery> + Send + Sync>;

/// A webhook as the window closer sees it.
#[derive(Debug, Clone)]
pub struct BundlingWebhook {
    pub id: String,
    pub workspace_id: String,
    /// The granularity in effect (the webhook's, or the workspace's).
    pub granularity: Granularity,
    pub timezone: String,
    /// The workspace's account, for messages that name none.
    pub account: Account,
    /// Every message received before this has been bundled or delivered.
    pub bundled_before: DateTime<Utc>,
    /// Messages still buffered at this moment belong to the window open then.
    pub granularity_changed_at: DateTime<Utc>,
    /// A close that was started and not finished: its boundary.
    pub closing_boundary: Option<DateTime<Utc>>,
    /// The last flush, which cut its window short.
    pub flushed_at: DateTime<Utc>,
    /// Whether the close in progress is a flush.
    pub closing_flush: bool,
}

/// One transaction's worth of closing: up to `chats` chats of the range
/// `[bundled_before, boundary)` of a webhook.
pub struct CloseStep {
    pub webhook_id: String,
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
    /// The store's clock has not reached the boundary yet.
    NotYet,
}

/// A delivery given up after its endpoint rejected it, for the owner's e-mail.
#[derive(Debug, Clone, Serialize)]
pub struct GaveUpNotice {
    pub workspace_id: String,
    pub workspace_name: String,
    pub owner_email: String,
    pub webhook_id: String,
    pub webhook_url: String,
    /// The `webhook-id` of the delivery.
    pub delivery_id: String,
    /// The chat's own id and name, where the delivery belongs to a chat.
    pub chat: Option<String>,
    pub status: Option<u16>,
    pub response_excerpt: Option<String>,
    pub rejections: u32,
    pub at: DateTime<Utc>,
}

/// Why and when a webhook was switched off automatically, for the owner's e-mail.
#[derive(Debug, Clone, Serialize)]
pub struct DisableNotice {
    pub workspace_id: String,
    pub workspace_name: String,
    pub owner_email: String,
    pub webhook_id: String,
    pub webhook_url: String,
    pub reason: String,
    pub last_error: Option<String>,
    pub at: DateTime<Utc>,
}

/// When a failing webhook is switched off, and what its owner is told then and when a delivery
/// is given up.
#[derive(Clone)]
pub struct FailurePolicy {
    /// Consecutive failed attempts that disable a webhook (a 410 Gone disables at once).
    pub disable_after: u32,
    pub disabled: Arc<dyn Fn(&DisableNotice) -> Email + Send + Sync>,
    pub gave_up: Arc<dyn Fn(&GaveUpNotice) -> Email + Send + Sync>,
}

impl std::fmt::Debug for FailurePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailurePolicy").field("disable_after", &self.disable_after).finish_non_exhaustive()
    }
}

/// An e-mail in the outbox, with what it is about (for its activity row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

/// An e-mail claimed from the outbox for sending.
#[derive(Debug, Clone)]
pub struct OutboxEmail {
    pub id: i64,
    pub email: Email,
    pub attempts: u32,
}

/// What became of an attempt to send an e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailOutcome {
    Sent,
    /// A transient failure: try again at the given time.
    Retry {
        error: String,
        at: DateTime<Utc>,
    },
    /// The server refused it for good (a 5xx, an address it cannot take): given up, with an
    /// activity row in the log of the webhook it was about.
    GaveUp {
        error: String,
    },
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first or next attempt.
    Pending,
    Delivered,
    /// Given up after the endpoint rejected it `delivery.reject_after` times.
    Failed,
    /// Retried until the retention period ended.
    Expired,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Failed, DeliveryStatus::Expired]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// A delivery as a webhook's deliveries list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryInfo {
    /// The `webhook-id` header.
    pub id: String,
    /// `message`, `bundle` or `session_status`.
    pub kind: String,
    /// The chat's id in the admin API.
    pub chat_id: Option<i64>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a resend did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Queued again, due at once, with the same id and bytes.
    Queued,
    NotFound,
    /// Only failed and expired deliveries can be sent again.
    NotFinished(DeliveryStatus),
}

/// One row of a webhook's activity log: a delivery attempt, or an event.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActivityRow {
    pub at: DateTime<Utc>,
    /// `attempt`, `test`, `disabled`, `enabled`, `config_changed` or `skipped`.
    pub kind: String,
    pub delivery_id: Option<String>,
    pub status: Option<u16>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    pub request_headers: Option<serde_json::Value>,
    /// The request body as sent.
    pub request_body: Option<String>,
    /// What an event says (JSON).
    pub detail: Option<serde_json::Value>,
    /// Where to continue reading older rows.
    #[serde(skip)]
    #[schema(ignore)]
    pub cursor: ActivityCursor,
}

/// A position in the activity log, newest first: (time, events before attempts, id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActivityCursor {
    pub at: i64,
    pub source: i64,
    pub id: i64,
}

/// What the retention job removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub rows: u64,
}

/// A chat in a workspace's list.
#[derive(Debug, Clone, Serialize)]
pub struct ChatSummary {
    pub id: i64,
    pub source_key: String,
    pub chat: ChatInfoView,
    pub messages: u64,
    pub last_received_at: DateTime<Utc>,
}

/// The parts of a chat a list shows.
#[derive(Debug, Clone, Serialize)]
pub struct ChatInfoView {
    pub external_id: String,
    pub full_name: Option<String>,
    pub phone: Option<String>,
    pub session_status: Option<String>,
}

/// Stored state the metrics report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    pub deliveries_pending: u64,
    /// When the oldest waiting delivery was created.
    pub oldest_pending: Option<DateTime<Utc>>,
    pub webhooks_disabled: u64,
    pub emails_pending: u64,
}

/// Counts that show where a workspace's messages are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WorkspaceStats {
    pub chats: u64,
    pub messages: u64,
    pub deliveries_pending: u64,
    pub deliveries_delivered: u64,
    pub deliveries_expired: u64,
    pub deliveries_failed: u64,
}

/// Every persistent operation chatbundle performs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_workspace(&self, new: NewWorkspace) -> StoreResult<Workspace>;
    async fn list_workspaces(&self) -> StoreResult<Vec<Workspace>>;
    async fn get_workspace(&self, id: &str) -> StoreResult<Option<Workspace>>;
    async fn update_workspace(&self, id: &str, patch: WorkspacePatch) -> StoreResult<Option<Workspace>>;
    async fn workspace_stats(&self, id: &str) -> StoreResult<WorkspaceStats>;

    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<Webhook>;
    async fn list_webhooks(&self, workspace_id: &str) -> StoreResult<Vec<Webhook>>;
    async fn get_webhook(&self, id: &str) -> StoreResult<Option<Webhook>>;
    async fn update_webhook(&self, id: &str, patch: WebhookPatch) -> StoreResult<Option<Webhook>>;
    /// Deletes a webhook with its queue and attempts; `false` when there was none.
    async fn delete_webhook(&self, id: &str) -> StoreResult<bool>;

    /// Stores an inbound request (its messages, the immediate deliveries and session events they
    /// cause, its session changes and skipped-message records) in one transaction, durably: when
    /// this returns `Ok`, all of it survives a crash; when it returns `Err`, none of it was stored.
    async fn ingest(&self, batch: IngestBatch) -> StoreResult<IngestOutcome>;

    /// Leases up to `limit` due deliveries until `lease_until` under a fresh fencing token: at
    /// most one per webhook and chat, and only the oldest unfinished one of each, so a chat's
    /// deliveries go out in order. With a `rate`, each webhook's claims also take tokens from its
    /// bucket (`rate` a second, bursts of `rate`), so nothing waits for the limiter after a claim.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
        rate: Option<std::num::NonZeroU32>,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records an attempt and moves its delivery on (delivered, retry later, given up or
    /// expired), keeps the webhook's consecutive-failure count, and disables the webhook (with an
    /// event and an e-mail in the outbox, in the same transaction) when `policy` says so. Only
    /// the holder of the delivery's current lease moves it on: a stale token's attempt is logged
    /// and changes nothing else.
    async fn record_attempt(
        &self,
        attempt: AttemptRecord,
        outcome: AttemptOutcome,
        policy: &FailurePolicy,
    ) -> StoreResult<Recorded>;
    /// Records a test send: an attempt outside the queue that never counts towards a disable.
    async fn record_test(&self, attempt: AttemptRecord) -> StoreResult<()>;
    /// A webhook's deliveries, newest first, optionally of one status.
    async fn list_deliveries(
        &self,
        webhook_id: &str,
        status: Option<DeliveryStatus>,
        limit: u32,
        offset: u32,
    ) -> StoreResult<Vec<DeliveryInfo>>;
    /// Queues a failed or expired delivery again, due at once, with the same id and bytes; its
    /// retention starts afresh at `now`.
    async fn resend_delivery(
        &self,
        webhook_id: &str,
        delivery_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Resend>;
    /// Called once at start: makes deliveries that were in flight when the process last stopped
    /// claimable again, where the store can know that safely. Returns how many.
    async fn recover_after_restart(&self) -> StoreResult<u64>;
    async fn list_attempts(&self, webhook_id: &str, limit: u32) -> StoreResult<Vec<Attempt>>;
    /// A webhook's activity log, newest first, starting after `after` (or at the newest).
    async fn activity(
        &self,
        webhook_id: &str,
        after: Option<ActivityCursor>,
        limit: u32,
    ) -> StoreResult<Vec<ActivityRow>>;
    /// Records an event in a workspace's log (for one webhook, or for all when `webhook_id` is None).
    async fn record_event(
        &self,
        workspace_id: &str,
        webhook_id: Option<&str>,
        kind: &str,
        detail: serde_json::Value,
    ) -> StoreResult<()>;
    /// Deletes up to `limit` log rows, finished deliveries, sent or given-up e-mails and web
    /// sessions older than `before`.
    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<Pruned>;

    /// Claims the next e-mail due at `now`, leasing it until `lease_until`.
    async fn claim_email(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Option<OutboxEmail>>;
    /// Marks an e-mail sent, schedules another try, or gives it up.
    async fn email_result(&self, id: i64, outcome: EmailOutcome) -> StoreResult<()>;

    /// Webhooks that take messages (of one workspace, or all), with their closing state.
    async fn bundling_webhooks(&self, workspace_id: Option<&str>) -> StoreResult<Vec<BundlingWebhook>>;
    /// Closes part of a range in one transaction; see [`CloseStep`]. Repeating a step after a crash
    /// is harmless: a bundle part is created once.
    async fn close_step(&self, step: CloseStep) -> StoreResult<CloseProgress>;

    /// A workspace's chats, most recently active first.
    async fn list_chats(&self, workspace_id: &str, limit: u32, offset: u32) -> StoreResult<Vec<ChatSummary>>;
    /// A chat by its id, with its workspace's id.
    async fn get_chat(&self, id: i64) -> StoreResult<Option<(String, Chat)>>;
    /// A chat by its transcript token, with its workspace's id.
    async fn chat_by_token(&self, token: &str) -> StoreResult<Option<(String, Chat)>>;
    /// A chat's messages, newest first: `limit` of them after skipping `offset`.
    async fn chat_messages(&self, chat_id: i64, limit: u32, offset: u32) -> StoreResult<Vec<StoredMessage>>;
    /// A chat's messages received at or after `since`, oldest received first, at most `limit`:
    /// what a webhook that has bundled everything before `since` holds buffered for it.
    async fn messages_since(
        &self,
        chat_id: i64,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// The session event a `session_status` webhook would get for a chat now, if the chat exists.
    async fn session_snapshot(&self, chat_id: i64, now: DateTime<Utc>) -> StoreResult<Option<SessionEvent>>;
    /// Gives a chat a new transcript token (the old link stops working); returns it.
    async fn rotate_chat_token(&self, chat_id: i64) -> StoreResult<Option<String>>;

    /// The stored state behind the gauges of `/metrics`.
    async fn gauges(&self) -> StoreResult<Gauges>;

    async fn create_source(&self, new: NewSource) -> StoreResult<Source>;
    async fn list_sources(&self, workspace_id: &str) -> StoreResult<Vec<Source>>;
    async fn get_source(&self, id: &str) -> StoreResult<Option<Source>>;
    async fn update_source(&self, id: &str, patch: SourcePatch) -> StoreResult<Option<Source>>;
    /// Deletes a source; its chats and messages stay.
    async fn delete_source(&self, id: &str) -> StoreResult<bool>;

    /// Queues a SESSION_EXPIRED event for chats whose reply window lapsed by `now` (up to `limit`);
    /// returns how many.
    async fn announce_expiries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        render: RenderSession,
    ) -> StoreResult<u64>;
    /// When the next reply window lapses, if any is pending.
    async fn next_expiry(&self) -> StoreResult<Option<DateTime<Utc>>>;

    /// Records a signed-in web session until `expires_at`.
    async fn start_web_session(&self, id: &str, expires_at: DateTime<Utc>) -> StoreResult<()>;
    /// Whether a web session exists and has not expired by `now`.
    async fn web_session_alive(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Ends a web session (sign-out); its cookie opens nothing from then on.
    async fn end_web_session(&self, id: &str) -> StoreResult<()>;

    /// Checks the store can commit now: a small write through the same path as every other.
    async fn probe_write(&self) -> StoreResult<()>;
    /// Resolves, with the cause, if the store stops being able to work at all (its writer died):
    /// the daemon must then exit so that its supervisor restarts it. Never resolves otherwise.
    fn died(&self) -> futures::future::BoxFuture<'static, String>;
    /// Finishes pending writes and closes connections.
    async fn close(&self);
}

/// The handle every component holds.
pub type SharedStore = Arc<dyn Store>;
