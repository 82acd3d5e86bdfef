//! The delivery queue: what the worker claims and records, and what an admin lists and resends.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

use super::StoreResult;
use super::outbox::FailurePolicy;
use crate::domain::{
    AttemptFailure, ChatId, DeliveryId, DeliveryKind, DeliveryStatus, SwitchedOff, WebhookId, WebhookUrl,
    WorkspaceId,
};

/// A delivery handed to the worker, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// Queue position; deliveries of one webhook and chat go out in this order.
    pub seq: i64,
    /// The claim's fencing token: only an attempt carrying it may record a result.
    pub lease_token: i64,
    /// The `webhook-id` header: the same on every retry, so receivers can de-duplicate.
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub url: WebhookUrl,
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
    pub workspace_id: WorkspaceId,
    /// Its lane's chat; `None` for a delivery of no chat.
    pub chat_id: Option<ChatId>,
    /// The W3C `traceparent` of what queued it (the ingest request of an immediate delivery),
    /// when traces are exported then.
    pub trace_parent: Option<String>,
    /// A bundle's: the traces its messages came in ([`crate::store::IngestStore::ingest`] keeps
    /// them), at most [`TRACE_LINKS`].
    pub trace_links: Vec<String>,
}

/// How long a claim holds each delivery: its webhook's timeout (or `default_timeout`) plus
/// `margin`. A daemon that dies mid-send holds nothing longer than that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub default_timeout: Duration,
    pub margin: Duration,
}

impl Lease {
    /// The lease of a delivery to a webhook with `timeout`, in milliseconds.
    pub fn millis(&self, timeout: Option<Duration>) -> i64 {
        (timeout.unwrap_or(self.default_timeout) + self.margin).as_millis() as i64
    }
}

/// One HTTP try, as it is written to the activity log.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_seq: i64,
    /// The token of the claim this attempt was made under (0 for test sends).
    pub lease_token: i64,
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub attempted_at: DateTime<Utc>,
    pub duration: Duration,
    pub status: Option<u16>,
    /// At most the first 2 KiB of the response body.
    pub response_excerpt: Option<String>,
    pub error: Option<AttemptFailure>,
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
    /// The claim's lease had been taken over: the attempt was logged, the delivery left alone.
    pub stale: bool,
    /// Why this attempt switched the webhook off, when it did.
    pub disabled: Option<SwitchedOff>,
    /// An e-mail to the owner was put in the outbox.
    pub emailed: bool,
    /// A delivered attempt's: another delivery of its webhook and chat was pending when it was
    /// recorded (or it has no chat), so a claim now finds that lane's next. False tells the
    /// worker it need not claim for this lane, unless it was told otherwise
    /// ([`Handoff::finished`]; see [`DeliveryQueue::hand_off_to`]).
    pub next_waiting: bool,
}

/// Where ingest hands the deliveries it leases itself ([`DeliveryQueue::hand_off_to`]): the
/// delivery worker's free slots, its inbox, the lease it takes them under, and the lanes this
/// daemon has a send in flight on, so that a delivery left waiting behind one is claimed as soon
/// as that send's result is recorded.
#[derive(Clone)]
pub struct Handoff {
    slots: Arc<Semaphore>,
    inbox: mpsc::UnboundedSender<Handed>,
    lease: Lease,
    lanes: Arc<Mutex<HashMap<Lane, InFlight>>>,
    /// The worker's wake-up, for a delivery left behind a lane no send of this daemon holds.
    wake: Arc<Notify>,
}

/// A (webhook, chat) lane.
type Lane = (WebhookId, ChatId);

/// A lane's sends in flight in this daemon, and whether a delivery waits behind them.
#[derive(Default)]
struct InFlight {
    sends: u32,
    waiting: bool,
}

/// A delivery an ingest commit leased for the worker, with the worker's slot taken for it.
pub struct Handed {
    pub delivery: ClaimedDelivery,
    pub slot: OwnedSemaphorePermit,
}

impl Handoff {
    /// A handoff into the worker's `slots` (the semaphore of its sends in flight), waking it with
    /// `wake`; the worker reads what it is handed from the receiver.
    pub fn new(
        slots: Arc<Semaphore>,
        lease: Lease,
        wake: Arc<Notify>,
    ) -> (Handoff, mpsc::UnboundedReceiver<Handed>) {
        let (inbox, handed) = mpsc::unbounded_channel();
        (Handoff { slots, inbox, lease, lanes: Arc::default(), wake }, handed)
    }

    /// `n` of the worker's slots, when that many are free and it still takes deliveries.
    pub(super) fn reserve(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        if n == 0 || self.inbox.is_closed() {
            return None;
        }
        self.slots.clone().try_acquire_many_owned(u32::try_from(n).ok()?).ok()
    }

    pub fn lease(&self) -> Lease {
        self.lease
    }

    /// The worker starts sending a claimed delivery (a handed one is counted when handed over).
    pub fn started(&self, delivery: &ClaimedDelivery) {
        if let Some(chat) = delivery.chat_id {
            let mut lanes = self.lanes.lock().expect("lanes lock");
            lanes.entry((delivery.webhook_id.clone(), chat)).or_default().sends += 1;
        }
    }

    /// The worker has recorded a send's result: whether a delivery was left waiting behind it
    /// meanwhile (claim now: the store has both commits by then).
    pub fn finished(&self, delivery: &ClaimedDelivery) -> bool {
        let Some(chat) = delivery.chat_id else { return false };
        let mut lanes = self.lanes.lock().expect("lanes lock");
        let lane = (delivery.webhook_id.clone(), chat);
        let Some(flight) = lanes.get_mut(&lane) else { return false };
        let waiting = std::mem::take(&mut flight.waiting);
        flight.sends = flight.sends.saturating_sub(1);
        if flight.sends == 0 {
            lanes.remove(&lane);
        }
        waiting
    }
}

/// Where a store keeps the handoff it was given, for the transactions that need it.
pub(super) type HandoffSlot = Arc<OnceLock<Handoff>>;

/// Deliveries a transaction leased for the worker, and the lanes where it left deliveries
/// waiting, to hand over once it has committed. Dropped instead (the transaction failed: nothing
/// was leased), the slots go back.
pub(super) struct HandOver {
    handoff: Handoff,
    slots: OwnedSemaphorePermit,
    deliveries: Vec<ClaimedDelivery>,
    waiting: Vec<Lane>,
}

impl HandOver {
    pub fn new(
        handoff: &Handoff,
        slots: OwnedSemaphorePermit,
        deliveries: Vec<ClaimedDelivery>,
        waiting: Vec<Lane>,
    ) -> HandOver {
        HandOver { handoff: handoff.clone(), slots, deliveries, waiting }
    }

    /// Hands each delivery to the worker with a slot (the slots left over go back), and for each
    /// lane where one was left waiting: a send of this daemon in flight on it claims after its
    /// result is recorded ([`Handoff::finished`]); with none, the worker claims now. Either way
    /// the claim comes after this commit and after that of the lane's head: on one daemon,
    /// nothing waits behind a finished lane. (A head sent by another daemon has its record say
    /// [`Recorded::next_waiting`] there, unless the two commits crossed; then the claim comes
    /// with the worker's next look at the queue.)
    pub fn send(mut self) {
        let mut claim_now = false;
        {
            let mut lanes = self.handoff.lanes.lock().expect("lanes lock");
            for delivery in self.deliveries {
                let Some(slot) = self.slots.split(1) else { break };
                if let Some(chat) = delivery.chat_id {
                    lanes.entry((delivery.webhook_id.clone(), chat)).or_default().sends += 1;
                }
                // A worker that stopped meanwhile leaves the lease to run out: sent later, once.
                let _ = self.handoff.inbox.send(Handed { delivery, slot });
            }
            for lane in self.waiting {
                match lanes.get_mut(&lane) {
                    Some(flight) => flight.waiting = true,
                    None => claim_now = true,
                }
            }
        }
        if claim_now {
            self.handoff.wake.notify_one();
        }
    }
}

/// The delivery worker's queue.
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Leases up to `limit` due deliveries of enabled webhooks, under a fresh fencing token, each
    /// for as long as [`Lease`] gives it; due and leased are judged by the store's clock (the
    /// database's, where several daemons share it).
    ///
    /// - **Per-chat order**: within one (webhook, chat), deliveries are handed out in the order
    ///   they were queued (acknowledgement order), and a later one is not handed out while an
    ///   earlier one is pending, leased or not. Different chats go in parallel.
    /// - **One holder**: a delivery is leased to one claim at a time, also when claims race; a
    ///   lease that has run out (by the store's clock, `now`) may be taken by the next claim.
    /// - **Rate**: with `rate`, each webhook's claims take tokens from its bucket (`rate` a
    ///   second, bursts of `rate`), shared by every claimer, so nothing waits after a claim.
    async fn claim_deliveries(
        &self,
        lease: Lease,
        limit: usize,
        rate: Option<NonZeroU32>,
    ) -> StoreResult<Vec<ClaimedDelivery>>;

    /// Records an attempt and moves its delivery on (delivered, retry at a time, given up or
    /// expired), keeps the webhook's consecutive-failure count (a success resets it, every
    /// failure counts), and switches the webhook off (with an event and an e-mail in the outbox,
    /// in the same transaction) when `policy` says so.
    ///
    /// - **Fencing**: only the holder of the delivery's current lease moves it on. An attempt
    ///   carrying a stale token (its lease ran out and another claim took the delivery, or its
    ///   result was already recorded) is logged and changes nothing else: [`Recorded::stale`].
    ///   A delivered delivery is never turned back into a pending one.
    async fn record_attempt(
        &self,
        attempt: AttemptRecord,
        outcome: AttemptOutcome,
        policy: &FailurePolicy,
    ) -> StoreResult<Recorded>;

    /// Records a test send: an attempt outside the queue that never counts towards a disable.
    async fn record_test(&self, attempt: AttemptRecord) -> StoreResult<()>;

    /// From now on, ingest leases the deliveries it queues itself, where a claim would find
    /// them first, and hands them to `handoff` once its transaction has committed: a delivery
    /// needs no claim of its own when it arrives at an empty lane. Without a handoff (and for
    /// rate-limited webhooks, whose daemons install none) every delivery waits for a claim.
    ///
    /// - **Only what a claim would hand out**: a delivery is handed over only if its webhook is
    ///   enabled and no earlier delivery of its (webhook, chat) lane is pending, leased or not;
    ///   of several queued for one lane by one transaction, only the first. It is leased as a
    ///   claim leases it ([`Lease`], a fresh fencing token), so claims pass it by, and its
    ///   result is recorded like a claimed one's.
    /// - **Room first**: the worker's slots for all of a transaction's deliveries are taken
    ///   before any is leased; when they are not free, none is handed over and the outcome says
    ///   `queued` (the worker claims them). Slots not used go back at once.
    /// - **After the commit**: nothing is handed over before the transaction is durable, nor at
    ///   all when it fails.
    /// - **Nothing left behind**: a delivery that waits in its lane (behind an earlier one, or
    ///   for a switched-off webhook) is not `queued`; its lane goes to the worker
    ///   with what was handed over: the worker claims once this daemon's send on that lane has its result
    ///   recorded ([`Handoff::finished`]), or at once when no send of this daemon holds the lane.
    ///   A lane's head sent by another daemon (PostgreSQL) has its record say
    ///   [`Recorded::next_waiting`] there when the record sees the waiting delivery; when the
    ///   two commits cross (the record's statement began before the ingest committed, and the
    ///   ingest saw the head still pending), the delivery waits for a worker's next look at the
    ///   queue (each looks at least once a second).
    fn hand_off_to(&self, handoff: Handoff);
}

/// A delivery as a webhook's deliveries list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryInfo {
    pub id: DeliveryId,
    pub kind: DeliveryKind,
    pub chat_id: Option<ChatId>,
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

/// A webhook's deliveries, for the admin API and page.
#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// A webhook's deliveries, newest first, optionally of one status.
    async fn list_deliveries(
        &self,
        webhook: &WebhookId,
        status: Option<DeliveryStatus>,
        limit: u32,
        offset: u32,
    ) -> StoreResult<Vec<DeliveryInfo>>;
    /// How many of a webhook's deliveries wait to be sent.
    async fn pending_count(&self, webhook: &WebhookId) -> StoreResult<u64>;
    /// Drops what a webhook has waiting, as its owner chose when switching it on again: every
    /// pending delivery becomes `discarded` (finished, never sent; kept, and listed as such),
    /// and an activity row `backlog_discarded` naming `actor` and the count is written by the
    /// same commit. Returns how many.
    async fn discard_pending(&self, webhook: &WebhookId, actor: &str) -> StoreResult<u64>;
    /// Queues a failed or expired delivery again, due at once, with the same id and bytes; its
    /// retention starts afresh at `now`. The log says `actor` asked for it.
    async fn resend_delivery(
        &self,
        webhook: &WebhookId,
        delivery: &DeliveryId,
        now: DateTime<Utc>,
        actor: &str,
    ) -> StoreResult<Resend>;
}

/// A delivery to put in the queue, as the SQL stores write it.
pub(super) struct Enqueue {
    /// The `webhook-id` header.
    pub id: DeliveryId,
    pub kind: DeliveryKind,
    pub webhook: WebhookId,
    /// Its lane within the webhook: deliveries of one chat go out in the order queued.
    pub chat: Option<ChatId>,
    pub payload: Vec<u8>,
    /// For a bundle part: the window's end (ms) and the part's number. (webhook, chat, window
    /// end, part) is unique, so a repeated close finds its bundles already there.
    pub bundle: Option<(i64, u32)>,
    /// The replay it belongs to: its lane is the replay's own (webhook, chat, replay), which the
    /// queue serves only when no live delivery is waiting.
    pub replay: Option<String>,
    /// The W3C `traceparent` of what queued it, when traces are exported: its attempts continue
    /// that trace.
    pub trace_parent: Option<String>,
    /// A bundle's: the traces of its messages (at most [`TRACE_LINKS`]), which its attempts link to.
    pub trace_links: Vec<String>,
}

/// The most traces of its messages a bundle's delivery links to.
pub const TRACE_LINKS: usize = 32;

/// The distinct traces `messages` were brought in, in their order, at most [`TRACE_LINKS`].
pub fn trace_links(messages: &[crate::domain::StoredMessage]) -> Vec<String> {
    let mut links: Vec<String> = Vec::new();
    for parent in messages.iter().filter_map(|m| m.trace_parent.as_ref()) {
        if links.len() == TRACE_LINKS {
            break;
        }
        if !links.contains(parent) {
            links.push(parent.clone());
        }
    }
    links
}

/// Whole tokens in a webhook's rate bucket at `now` (ms), from what was stored at `at`: it refills
/// at `rate` a second up to bursts of `rate`; a bucket never used is full.
pub(super) fn tokens_at(stored: Option<f64>, at: Option<i64>, now: i64, rate: f64) -> f64 {
    match (stored, at) {
        (Some(tokens), Some(at)) => (tokens + (now - at).max(0) as f64 * rate / 1000.0).min(rate),
        _ => rate,
    }
}

/// What an attempt does to its delivery, the same in every store: its new status, when it is
/// tried next (ms), when it finished (ms), and the error the log keeps for it.
pub(super) struct AttemptEffect {
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub failure: Option<String>,
}

impl AttemptEffect {
    pub fn of(attempt: &AttemptRecord, outcome: AttemptOutcome) -> AttemptEffect {
        let at = attempt.attempted_at.timestamp_millis();
        let (status, next_attempt_at, finished_at) = match outcome {
            AttemptOutcome::Delivered => (DeliveryStatus::Delivered, None, Some(at)),
            AttemptOutcome::RetryAt(t) => (DeliveryStatus::Pending, Some(t.timestamp_millis()), None),
            AttemptOutcome::GivenUp => (DeliveryStatus::Failed, None, Some(at)),
            AttemptOutcome::Expired => (DeliveryStatus::Expired, None, Some(at)),
        };
        let failure = (outcome != AttemptOutcome::Delivered).then(|| {
            attempt
                .error
                .as_ref()
                .map(AttemptFailure::to_string)
                .or_else(|| attempt.status.map(|s| format!("HTTP {s}")))
                .unwrap_or_else(|| "failed".into())
        });
        AttemptEffect { status, next_attempt_at, finished_at, failure }
    }
}

/// How often at most a webhook's owner hears of deliveries given up.
const GAVE_UP_NOTICE_EVERY_MS: i64 = 24 * 3600 * 1000;

/// A webhook as the result of an attempt finds it (its row, locked by the statement that counted
/// the attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WebhookState {
    pub enabled: bool,
    /// Its run of failed attempts, this one counted (0 after a success).
    pub failures: i64,
    /// When its owner last heard of a delivery given up (ms).
    pub gave_up_notice_at: Option<i64>,
}

/// What the result of an attempt does besides moving its delivery ([`AttemptEffect`]), decided
/// before anything is written; the engines only carry it out, in the attempt's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AttemptConsequences {
    /// The delivery was given up: a `failed` row in the log.
    pub given_up: bool,
    /// The owner is e-mailed about it (the first one, then at most once a day per webhook).
    pub tell_owner: bool,
    /// The webhook is switched off, for this reason (an event and an e-mail to the owner).
    pub disable: Option<SwitchedOff>,
}

impl AttemptConsequences {
    /// For an attempt with `outcome` and HTTP `status`, finding its webhook as `webhook` at `now`
    /// (ms), under `disable_after` (consecutive failures that switch a webhook off).
    pub fn of(
        outcome: AttemptOutcome,
        status: Option<u16>,
        webhook: WebhookState,
        disable_after: u32,
        now: i64,
    ) -> AttemptConsequences {
        let given_up = outcome == AttemptOutcome::GivenUp;
        let tell_owner =
            given_up && webhook.gave_up_notice_at.is_none_or(|t| now - t >= GAVE_UP_NOTICE_EVERY_MS);
        let failed = outcome != AttemptOutcome::Delivered;
        let disable = (failed && webhook.enabled)
            .then(|| SwitchedOff::by(status, webhook.failures, disable_after))
            .flatten();
        AttemptConsequences { given_up, tell_owner, disable }
    }
}

/// How an owner's e-mail names a chat.
pub(super) fn chat_label(external_id: String, full_name: Option<String>) -> String {
    match full_name {
        Some(name) => format!("{name} ({external_id})"),
        None => external_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = GAVE_UP_NOTICE_EVERY_MS;

    fn webhook(failures: i64) -> WebhookState {
        WebhookState { enabled: true, failures, gave_up_notice_at: None }
    }

    #[test]
    fn a_run_of_failures_or_a_410_switches_a_webhook_off_once() {
        let retry = AttemptOutcome::RetryAt(chrono::DateTime::UNIX_EPOCH);
        let of = |outcome, status, state| AttemptConsequences::of(outcome, status, state, 10, 0);
        assert_eq!(of(retry, Some(500), webhook(9)).disable, None);
        assert_eq!(of(retry, Some(500), webhook(10)).disable, Some(SwitchedOff::Failures(10)));
        assert_eq!(of(retry, Some(410), webhook(1)).disable, Some(SwitchedOff::Gone));
        let off = WebhookState { enabled: false, ..webhook(12) };
        assert_eq!(of(retry, Some(500), off).disable, None, "already off: not switched off again");
        assert_eq!(of(AttemptOutcome::Delivered, Some(410), webhook(0)).disable, None, "a success never");
        assert!(of(AttemptOutcome::Expired, None, webhook(10)).disable.is_some(), "expiring is failing");
    }

    #[test]
    fn the_owner_hears_of_the_first_delivery_given_up_then_once_a_day() {
        let of = |notice_at, now| {
            let state = WebhookState { gave_up_notice_at: notice_at, ..webhook(1) };
            AttemptConsequences::of(AttemptOutcome::GivenUp, Some(422), state, 10, now)
        };
        let first = of(None, 5);
        assert!(first.given_up && first.tell_owner && first.disable.is_none());
        assert!(!of(Some(5), 5 + DAY - 1).tell_owner, "not again within a day");
        assert!(of(Some(5), 5 + DAY).tell_owner, "again after a day");
        let retry = AttemptOutcome::RetryAt(chrono::DateTime::UNIX_EPOCH);
        let not_given_up = AttemptConsequences::of(retry, Some(422), webhook(1), 10, 0);
        assert!(!not_given_up.given_up && !not_given_up.tell_owner);
    }
}
