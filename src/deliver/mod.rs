//! The delivery worker: claims due deliveries from the store's durable queue, signs and sends
//! them, records every attempt, and schedules the next one when an attempt fails.
//!
//! Nothing here must survive a restart: the queue, the next attempt time and the attempt log are
//! all in the store. A crash mid-send leaves a lease that expires (or, on SQLite, is released at
//! start), and the delivery goes out again with the same `webhook-id`.

pub mod guard;
pub mod signature;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info_span, warn};

use crate::clock::SharedClock;
use crate::domain::new_id;
pub use crate::domain::schedule::RetrySchedule;
use crate::domain::{AttemptFailure, DeliveryId, WebhookId, WebhookUrl};
use crate::store::{
    AttemptOutcome, AttemptRecord, ClaimedDelivery, DeliveryQueue, FailurePolicy, Handed, Handoff, Lease,
};
use crate::supervise::Fatal;
use crate::telemetry::metric;
pub use guard::AddressPolicy;
use guard::GuardedResolver;
pub use signature::SigningSecret;

/// How much of a response body the activity log keeps.
pub const RESPONSE_EXCERPT_BYTES: usize = 2048;

/// How often the worker looks for due retries when nothing wakes it.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How long a claim holds a delivery beyond its timeout before another claim (of this daemon
/// or another) may take it.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// The `User-Agent` of every delivery.
pub fn user_agent() -> String {
    format!("chatbundle/{}", env!("CARGO_PKG_VERSION"))
}

/// An HTTP client for deliveries: no redirects followed (a 3xx is a failure), our User-Agent,
/// names resolved through the SSRF guard, and never a proxy from the environment: a proxy would
/// resolve the host itself, and the address the guard checked must be the one connected to.
pub fn http_client(policy: Arc<AddressPolicy>) -> reqwest::Client {
    crate::tls::use_ring();
    reqwest::Client::builder()
        .user_agent(user_agent())
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .expect("the HTTP client builds with static settings")
}

/// Where one request goes.
pub struct Target<'a> {
    pub webhook_id: &'a WebhookId,
    pub url: &'a WebhookUrl,
    pub secret: Option<&'a str>,
    /// `None` for the configured default.
    pub timeout: Option<Duration>,
}

/// Settings of the worker, from the `[delivery]` configuration.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub default_timeout: Duration,
    pub concurrency: usize,
    /// Requests per second to one webhook; `None` for no limit.
    pub rate_per_webhook: Option<NonZeroU32>,
    pub schedule: RetrySchedule,
    /// A delivery is retried until this long after it was created, then marked expired.
    pub retention: Duration,
    /// Rejections (a 4xx other than 408, 409, 425, 429) after which a delivery is given up.
    pub reject_after: u32,
    /// When a failing webhook is switched off, and what its owner is told.
    pub failure: FailurePolicy,
    /// Wakes the mailer when a disable queued an e-mail.
    pub mail_waiting: Arc<Notify>,
    /// Which addresses deliveries may reach.
    pub addresses: Arc<AddressPolicy>,
}

/// The delivery worker and what it shares with its in-flight sends.
pub struct Deliverer {
    queue: Arc<dyn DeliveryQueue>,
    clock: SharedClock,
    client: reqwest::Client,
    settings: DeliverySettings,
    /// Woken by ingest when it queued work it did not hand over, and by a finished send that
    /// may have left work to claim.
    wake: Arc<Notify>,
    /// Told when a send task fails in a way the worker cannot recover from (a panic).
    fatal: Fatal,
    /// Set while due work may be waiting for a free slot (a claim took all there were, or there
    /// were none): every finished send is then a reason to claim.
    saturated: AtomicBool,
    /// The slots of `delivery.concurrency`, shared with ingest through `handoff`.
    slots: Arc<Semaphore>,
    handoff: Handoff,
    /// What ingest hands over; taken by [`Deliverer::run`].
    handed: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Handed>>>,
}

impl Deliverer {
    pub fn new(
        queue: Arc<dyn DeliveryQueue>,
        clock: SharedClock,
        settings: DeliverySettings,
        wake: Arc<Notify>,
        fatal: Fatal,
    ) -> Self {
        let client = http_client(settings.addresses.clone());
        let slots = Arc::new(Semaphore::new(settings.concurrency));
        let lease = Lease { default_timeout: settings.default_timeout, margin: LEASE_MARGIN };
        let (handoff, handed) = Handoff::new(slots.clone(), lease, wake.clone());
        Deliverer {
            queue,
            clock,
            client,
            settings,
            wake,
            fatal,
            saturated: AtomicBool::new(false),
            slots,
            handoff,
            handed: std::sync::Mutex::new(Some(handed)),
        }
    }

    fn lease(&self) -> Lease {
        self.handoff.lease()
    }

    /// Claims and sends until `cancel` fires; sends are spawned on `tracker`, so the caller can
    /// wait for in-flight ones to finish.
    ///
    /// Deliveries come two ways: claimed from the queue (woken by ingest, by a finished send
    /// whose lane has more, or once a second), and handed over by ingest, which leases those
    /// arriving at an empty lane itself ([`DeliveryQueue::hand_off_to`]) and so spares them a
    /// claim. Both take a slot of `delivery.concurrency` first. With a rate per webhook nothing is
    /// handed over: each send takes a token of its webhook's rate at claim time.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken, tracker: TaskTracker) {
        let Some(mut handed) = self.handed.lock().expect("handed lock").take() else {
            error!("the delivery worker was started twice");
            return;
        };
        if self.settings.rate_per_webhook.is_none() {
            self.queue.hand_off_to(self.handoff.clone());
        }
        let slots = self.slots.clone();
        let (mut look, mut poll) = (true, self.clock.now());
        while !cancel.is_cancelled() {
            if look {
                // One reading of the clock for the claim and the wait after it: had the wait read
                // the clock anew, time that passed during the claim would be slept through unseen.
                let now = self.clock.now();
                poll = now + IDLE_POLL;
                // A full claim may have left due work behind: go round again (the slots are now
                // taken, so the next round waits for a send to finish). Otherwise wait for news.
                if self.claim_into(&slots, &tracker).await {
                    continue;
                }
            }
            // Deliveries handed over do not put off the next look at the queue.
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(first) = handed.recv() => {
                    crate::fault::Fault::Delivery.trip();
                    self.spawn_send(first.delivery, first.slot, &tracker);
                    while let Ok(next) = handed.try_recv() {
                        self.spawn_send(next.delivery, next.slot, &tracker);
                    }
                    look = false;
                }
                _ = self.wake.notified() => look = true,
                _ = self.clock.sleep_until(poll) => look = true,
            }
        }
        debug!("delivery worker stopped claiming");
    }

    /// Claims as many deliveries as there are free slots and sends them; whether it filled them
    /// all (more may be due).
    async fn claim_into(self: &Arc<Self>, slots: &Arc<Semaphore>, tracker: &TaskTracker) -> bool {
        // The free slots are taken before claiming: ingest may take some meanwhile.
        let (mut taken, free) = loop {
            let free = slots.available_permits();
            if free == 0 {
                self.saturated.store(true, Ordering::SeqCst);
                return false;
            }
            if let Ok(taken) = slots.clone().try_acquire_many_owned(free as u32) {
                break (taken, free);
            }
        };
        let claimed = self.claim(free).await;
        let full = claimed.len() == free;
        self.saturated.store(full, Ordering::SeqCst);
        if !claimed.is_empty() {
            crate::fault::Fault::Delivery.trip();
        }
        for delivery in claimed {
            let slot = taken.split(1).expect("claimed no more than the slots taken");
            self.handoff.started(&delivery);
            self.spawn_send(delivery, slot, tracker);
        }
        full
    }

    /// Sends a delivery on a task of its own, holding its slot until its result is recorded.
    fn spawn_send(
        self: &Arc<Self>,
        delivery: ClaimedDelivery,
        slot: OwnedSemaphorePermit,
        tracker: &TaskTracker,
    ) {
        let this = self.clone();
        let span = info_span!("deliver", delivery_id = %delivery.id, webhook_id = %delivery.webhook_id);
        tracker.spawn(
            async move {
                // A send that panics would otherwise vanish into its task: report it, so
                // the daemon exits rather than silently losing a delivery slot.
                let sent = std::panic::AssertUnwindSafe(this.deliver(&delivery)).catch_unwind().await;
                // Ingest left a delivery behind this one meanwhile: its commit and this result's
                // are both in, so a claim finds it.
                let left_behind = this.handoff.finished(&delivery);
                let look_again = match sent {
                    Ok(look_again) => look_again,
                    Err(panic) => {
                        this.fatal.report(format!(
                            "a delivery task panicked: {}",
                            crate::supervise::panic_message(&panic)
                        ));
                        true
                    }
                };
                drop(slot);
                if look_again || left_behind || this.saturated.load(Ordering::SeqCst) {
                    this.wake.notify_one();
                }
            }
            .instrument(span),
        );
    }

    async fn claim(&self, limit: usize) -> Vec<ClaimedDelivery> {
        match self.queue.claim_deliveries(self.lease(), limit, self.settings.rate_per_webhook).await {
            Ok(claimed) => claimed,
            Err(e) => {
                error!(error = %e, "claiming deliveries failed; will try again");
                Vec::new()
            }
        }
    }

    /// One attempt: send, then record the attempt and what happens next. The claim already took
    /// a token of the webhook's rate, so the lease is spent on sending alone. Whether the worker
    /// should look for work now: the lane has more, or the delivery is still pending.
    async fn deliver(&self, delivery: &ClaimedDelivery) -> bool {
        let target = Target {
            webhook_id: &delivery.webhook_id,
            url: &delivery.url,
            secret: delivery.secret.as_deref(),
            timeout: delivery.timeout,
        };
        // Exported as a client span: an immediate delivery's goes on with the trace of the request
        // that brought its message; its request carries the span's `traceparent`.
        let span = info_span!(
            target: crate::telemetry::TRACED,
            parent: None,
            "delivery attempt",
            otel.kind = "client",
            workspace.id = %delivery.workspace_id,
            webhook.id = %delivery.webhook_id,
            delivery.id = %delivery.id,
            chat.id = delivery.chat_id.map(|c| c.0),
            attempt = delivery.attempts + 1,
            http.response.status_code = tracing::field::Empty,
        );
        crate::telemetry::continue_trace(&span, delivery.trace_parent.as_deref());
        // A bundle's trace is its own, linked to those its messages came in.
        crate::telemetry::link(&span, &delivery.trace_links);
        let (mut record, retry_after) =
            self.attempt(&target, &delivery.id, &delivery.payload).instrument(span.clone()).await;
        if let Some(status) = record.status {
            span.record("http.response.status_code", status);
        }
        record.delivery_seq = delivery.seq;
        record.lease_token = delivery.lease_token;
        let delivered = record.status.is_some_and(|s| (200..300).contains(&s));
        let outcome = if delivered {
            AttemptOutcome::Delivered
        } else if record.rejected() && delivery.rejections + 1 >= self.settings.reject_after {
            AttemptOutcome::GivenUp
        } else {
            self.next_step(delivery, retry_after)
        };
        match &outcome {
            AttemptOutcome::Delivered => debug!(status = record.status, "delivered"),
            AttemptOutcome::RetryAt(at) => warn!(
                status = record.status,
                error = record.error.as_ref().map(tracing::field::display),
                retry_at = %at,
                "delivery attempt failed"
            ),
            AttemptOutcome::Expired => warn!(
                status = record.status,
                error = record.error.as_ref().map(tracing::field::display),
                "delivery expired after its retention period"
            ),
            AttemptOutcome::GivenUp => warn!(
                status = record.status,
                rejections = delivery.rejections + 1,
                "the endpoint keeps rejecting this delivery; given up, its chat moves on"
            ),
        }
        let label = match outcome {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::RetryAt(_) => "retry",
            AttemptOutcome::Expired => "expired",
            AttemptOutcome::GivenUp => "failed",
        };
        metrics::counter!(metric::DELIVERIES, "outcome" => label).increment(1);
        metrics::histogram!(metric::DELIVERY_SECONDS).record(record.duration.as_secs_f64());
        let delivered = outcome == AttemptOutcome::Delivered;
        match self.queue.record_attempt(record, outcome, &self.settings.failure).await {
            Ok(recorded) => {
                if recorded.stale {
                    warn!("the lease ran out before this attempt was recorded; another claim owns it now");
                }
                if let Some(reason) = recorded.disabled {
                    metrics::counter!(metric::WEBHOOKS_AUTO_DISABLED).increment(1);
                    warn!(%reason, "webhook disabled; its owner is told by e-mail");
                }
                if recorded.emailed {
                    self.settings.mail_waiting.notify_one();
                }
                // A delivered one's lane moves on; a claim finds its next, if it has one.
                !delivered || recorded.stale || recorded.next_waiting
            }
            // The lease runs out and the delivery is tried again: at least once, never lost.
            Err(e) => {
                error!(error = %e, "recording the attempt failed");
                true
            }
        }
    }

    /// Sends `payload` to `target` once, as `webhook-id: id`; what happened, and the delay a
    /// receiver asked for with `Retry-After` on a 429 or 503.
    async fn attempt(
        &self,
        target: &Target<'_>,
        id: &DeliveryId,
        payload: &[u8],
    ) -> (AttemptRecord, Option<Duration>) {
        let attempted_at = self.clock.now();
        let mut headers = signed_headers(id.as_str(), target.secret, payload, attempted_at.timestamp());
        // A receiver that traces joins the attempt's trace (W3C Trace Context).
        if let Some(traceparent) = crate::telemetry::traceparent() {
            headers.insert("traceparent", header_value(&traceparent));
        }
        let timeout = target.timeout.unwrap_or(self.settings.default_timeout);
        let started = Instant::now();
        // Names are checked by the resolver; an address written into the URL never reaches it.
        let literal = match target.url.url().host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(refusal) = literal.and_then(|ip| self.settings.addresses.refusal(ip)) {
            let record = AttemptRecord {
                delivery_seq: 0,
                lease_token: 0,
                delivery_id: id.clone(),
                webhook_id: target.webhook_id.clone(),
                attempted_at,
                duration: Duration::ZERO,
                status: None,
                response_excerpt: None,
                error: Some(AttemptFailure::Refused(refusal.to_string())),
                request_headers: headers_json(&headers),
                request_body: payload.to_vec(),
            };
            return (record, None);
        }
        let response = self
            .client
            .post(target.url.url().clone())
            .headers(headers.clone())
            .body(payload.to_vec())
            .timeout(timeout)
            .send()
            .await;
        let mut record = AttemptRecord {
            delivery_seq: 0,
            lease_token: 0,
            delivery_id: id.clone(),
            webhook_id: target.webhook_id.clone(),
            attempted_at,
            duration: Duration::ZERO,
            status: None,
            response_excerpt: None,
            error: None,
            request_headers: headers_json(&headers),
            request_body: payload.to_vec(),
        };
        let mut retry_after = None;
        match response {
            Ok(mut response) => {
                let status = response.status();
                record.status = Some(status.as_u16());
                if matches!(status.as_u16(), 429 | 503) {
                    retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| crate::domain::schedule::parse_retry_after(v, attempted_at));
                }
                match read_excerpt(&mut response).await {
                    Ok(excerpt) => record.response_excerpt = Some(excerpt),
                    Err(e) if !status.is_success() => record.error = Some(describe(&e)),
                    // The receiver said 2xx; a body cut short afterwards does not undo that.
                    Err(_) => {}
                }
            }
            Err(e) => record.error = Some(describe(&e)),
        }
        record.duration = started.elapsed();
        (record, retry_after)
    }

    /// Sends a webhook a payload outside the queue ("Save and test"): recorded in its activity
    /// log as a test, never counted towards a disable.
    pub async fn send_test(&self, target: &Target<'_>, payload: &[u8]) -> AttemptRecord {
        let id = DeliveryId::stored(new_id("test"));
        let (record, _) = self.attempt(target, &id, payload).await;
        if let Err(e) = self.queue.record_test(record.clone()).await {
            error!(error = %e, "recording a test send failed");
        }
        record
    }

    fn next_step(&self, delivery: &ClaimedDelivery, retry_after: Option<Duration>) -> AttemptOutcome {
        let failures = delivery.attempts + 1;
        let delay = self.settings.schedule.delay(failures, retry_after, &mut rand::rng());
        let next = self.clock.now() + chrono::Duration::from_std(delay).expect("delays are at most a day");
        let give_up_at = delivery.retry_since
            + chrono::Duration::from_std(self.settings.retention).expect("retention fits");
        if next > give_up_at { AttemptOutcome::Expired } else { AttemptOutcome::RetryAt(next) }
    }
}

/// A delivery's headers (`webhook-id`, `webhook-timestamp`, and `webhook-signature` when there is
/// a secret, as Standard Webhooks has them): also what a JSON API chat's reply is posted with.
pub fn signed_headers(id: &str, secret: Option<&str>, payload: &[u8], timestamp: i64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    headers.insert("webhook-id", header_value(id));
    headers.insert("webhook-timestamp", header_value(&timestamp.to_string()));
    if let Some(secret) = secret {
        match SigningSecret::parse(secret) {
            Ok(secret) => {
                let signature = secret.sign(id, timestamp, payload);
                headers.insert("webhook-signature", header_value(&signature));
            }
            // Secrets are checked when they are set, so this is a corrupted row.
            Err(e) => error!(error = %e, "the webhook's signing secret is unusable; sending unsigned"),
        }
    }
    headers
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("ids, timestamps and signatures are visible ASCII")
}

/// The request headers as a JSON object for the activity log, User-Agent included.
fn headers_json(headers: &HeaderMap) -> String {
    let mut map = serde_json::Map::new();
    map.insert("user-agent".into(), user_agent().into());
    for (name, value) in headers {
        map.insert(name.as_str().into(), value.to_str().unwrap_or_default().into());
    }
    serde_json::Value::Object(map).to_string()
}

/// Reads at most the first 2 KiB of a response body, never the rest.
async fn read_excerpt(response: &mut reqwest::Response) -> Result<String, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < RESPONSE_EXCERPT_BYTES {
        match response.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk),
            None => break,
        }
    }
    body.truncate(RESPONSE_EXCERPT_BYTES);
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A transport error as a failure of its kind, with its causes: what an operator needs in the log.
fn describe(error: &reqwest::Error) -> AttemptFailure {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let causes = causes.join(": ");
    if error.is_timeout() {
        AttemptFailure::TimedOut { causes }
    } else if error.is_connect() {
        AttemptFailure::ConnectFailed { causes }
    } else if error.is_body() || error.is_decode() {
        AttemptFailure::ReadFailed { causes }
    } else {
        AttemptFailure::RequestFailed { causes }
    }
}
