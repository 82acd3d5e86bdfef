//! The reply worker: claims queued replies ([`crate::store::ReplyStore`]) and sends each through
//! its chat's channel ([`crate::vendors::reply`]), then records what the channel said: sent with
//! its id, refused with its code and message (not retried), or failed for now and tried again on
//! [`crate::domain::reply::retry_after`]'s schedule until it is given up.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::clock::SharedClock;
use crate::domain::reply::{LOOK_BACK, REPLY_LEASE, SendResult, VendorError, business_number, retry_after};
use crate::domain::{API_SOURCE_KEY, SourceId};
use crate::store::{ClaimedReply, ReplyOutcome, SharedStore};
use crate::supervise::Fatal;
use crate::vendors::Vendors;
use crate::vendors::reply::{Outgoing, ReplyHook};

/// How many replies are sent at once.
const CONCURRENCY: u32 = 16;

/// How long the worker waits with nothing due before it looks again (another daemon may have
/// queued a reply).
const IDLE_POLL: Duration = Duration::from_secs(5);

/// The reply worker.
pub struct Replier {
    store: SharedStore,
    vendors: Arc<Vendors>,
    clock: SharedClock,
    /// Links in a JSON API reply's `chat` object start here.
    public_url: Arc<str>,
    /// Woken when a reply is queued, and by each finished send.
    wake: Arc<Notify>,
    /// Told when a send task panics.
    fatal: Fatal,
}

impl Replier {
    pub fn new(
        store: SharedStore,
        vendors: Arc<Vendors>,
        clock: SharedClock,
        public_url: Arc<str>,
        wake: Arc<Notify>,
        fatal: Fatal,
    ) -> Replier {
        Replier { store, vendors, clock, public_url, wake, fatal }
    }

    /// Claims and sends until `cancel` fires; sends run on `tracker`, so shutdown waits for them.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken, tracker: TaskTracker) {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY as usize));
        while !cancel.is_cancelled() {
            let now = self.clock.now();
            let free = in_flight.available_permits() as u32;
            let claimed = if free > 0 {
                match self.store.claim_replies(REPLY_LEASE, free).await {
                    Ok(claimed) => claimed,
                    Err(e) => {
                        error!(error = %e, "claiming replies failed; will try again");
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            let full = !claimed.is_empty() && claimed.len() as u32 == free;
            for reply in claimed {
                let permit =
                    in_flight.clone().try_acquire_owned().expect("claimed no more than the free slots");
                let this = self.clone();
                let span =
                    info_span!("reply", chat_id = reply.reply.chat.0, message_id = %reply.reply.message_id);
                tracker.spawn(
                    async move {
                        let sent = std::panic::AssertUnwindSafe(this.send(reply)).catch_unwind().await;
                        if let Err(panic) = sent {
                            this.fatal.report(format!(
                                "a reply task panicked: {}",
                                crate::supervise::panic_message(&panic)
                            ));
                        }
                        drop(permit);
                        this.wake.notify_one();
                    }
                    .instrument(span),
                );
            }
            if full {
                continue;
            }
            let due = match self.store.next_reply_due().await {
                Ok(Some(due)) if due > now => due.min(now + IDLE_POLL),
                // Due now but not claimable (behind an earlier reply of its chat, or leased):
                // a finished send wakes the worker.
                _ => now + IDLE_POLL,
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = self.clock.sleep_until(due) => {}
            }
        }
        debug!("reply worker stopped claiming");
    }

    /// One attempt: send, then record.
    async fn send(&self, claimed: ClaimedReply) {
        let result = match self.attempt(&claimed).await {
            Ok(result) => result,
            Err(e) => {
                // The store could not be read: try again shortly, as after a vendor's 5xx.
                error!(error = %e, "reading what a reply needs failed");
                SendResult::Transient(VendorError {
                    code: "store".into(),
                    message: "the store was unavailable".into(),
                })
            }
        };
        let attempts = claimed.reply.attempts;
        let outcome = match result {
            SendResult::Sent(vendor_id) => {
                info!(vendor_id = vendor_id.as_deref().unwrap_or(""), "reply sent");
                ReplyOutcome::Sent { vendor_id }
            }
            SendResult::Refused(error) => {
                warn!(code = %error.code, message = %error.message, "the channel refused a reply");
                ReplyOutcome::Failed { error }
            }
            SendResult::Transient(error) => match retry_after(attempts) {
                Some(delay) => {
                    let at = self.clock.now() + chrono::Duration::from_std(delay).expect("hours fit");
                    warn!(code = %error.code, %at, "a reply did not go through; it will be tried again");
                    ReplyOutcome::RetryAt { at, error }
                }
                None => {
                    warn!(code = %error.code, attempts, "a reply did not go through; given up");
                    let message = format!("given up after {attempts} attempts: {}", error.message);
                    ReplyOutcome::Failed { error: VendorError { message, ..error } }
                }
            },
        };
        let (id, chat, token) = (&claimed.reply.message_id, claimed.reply.chat, claimed.lease_token);
        match self.store.record_reply(id, chat, token, outcome).await {
            Ok(true) => {}
            Ok(false) => warn!("the reply's lease had been taken over; its result was not recorded"),
            Err(e) => {
                error!(error = %e, "recording a reply's result failed; it is sent again after its lease")
            }
        }
    }

    /// Sends the reply through the chat's channel, or its workspace's `reply_url`.
    async fn attempt(&self, claimed: &ClaimedReply) -> crate::store::StoreResult<SendResult> {
        let gone = |code: &str, message: &str| {
            Ok(SendResult::Refused(VendorError { code: code.into(), message: message.into() }))
        };
        let Some((workspace_id, chat)) = self.store.get_chat(claimed.reply.chat).await? else {
            return gone("chat_gone", "the chat was erased");
        };
        if claimed.source_key == API_SOURCE_KEY {
            let workspace = self.store.get_workspace(&workspace_id).await?;
            let Some(url) = workspace.as_ref().and_then(|w| w.reply_url.clone()) else {
                return gone("reply_url_removed", "the workspace's reply_url was removed");
            };
            let secret = workspace.and_then(|w| w.reply_secret);
            let payload = crate::render::reply_request(
                &self.public_url,
                &chat,
                &claimed.reply.message_id,
                &claimed.body,
                &claimed.actor,
                claimed.reply.created_at,
            );
            let hook = ReplyHook {
                url: &url,
                secret: secret.as_deref(),
                id: &claimed.reply.message_id,
                payload: &payload,
            };
            return Ok(self.vendors.send_reply_hook(&hook).await);
        }
        let Some(source) = self.store.get_source(&SourceId::stored(&claimed.source_key)).await? else {
            return gone("source_deleted", "the source this chat came through was deleted");
        };
        let latest = self.store.chat_messages(chat.id, LOOK_BACK, 0).await?;
        let from = business_number(&latest);
        let out = Outgoing { source: &source, chat: &chat, from: from.as_deref(), body: &claimed.body };
        Ok(self.vendors.send_reply(&out).await)
    }
}
