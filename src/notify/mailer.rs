//! The mailer: sends the durable outbox through SMTP (`lettre`), one e-mail at a time, retrying
//! with backoff. An SMTP outage delays an e-mail; it never loses one. Without `[smtp] url` the
//! outbox keeps filling, and is sent once a server is configured.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use crate::clock::SharedClock;
use crate::domain::schedule::RetrySchedule;
use crate::store::{EmailOutcome, Outbox, OutboxEmail};

/// How long a claimed e-mail is held before another try may take it.
const LEASE: Duration = Duration::from_secs(300);
/// How often the mailer looks for e-mails due for another try.
const POLL: Duration = Duration::from_secs(30);

/// Why the SMTP settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("smtp.url: {0}")]
    Url(String),
    #[error("smtp.from: {0}")]
    From(String),
}

pub struct Mailer {
    outbox: Arc<dyn Outbox>,
    clock: SharedClock,
    /// `None` without an SMTP server configured.
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    schedule: RetrySchedule,
    /// Woken when an e-mail is queued.
    wake: Arc<Notify>,
}

impl Mailer {
    pub fn new(
        outbox: Arc<dyn Outbox>,
        clock: SharedClock,
        url: Option<&str>,
        from: &str,
        wake: Arc<Notify>,
    ) -> Result<Mailer, MailerError> {
        let transport = url
            .map(|url| {
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map(|b| b.timeout(Some(Duration::from_secs(30))).build())
                    .map_err(|e| MailerError::Url(e.to_string()))
            })
            .transpose()?;
        let from = from.parse::<Mailbox>().map_err(|e| MailerError::From(e.to_string()))?;
        let schedule =
            RetrySchedule::new([30, 120, 600, 1800, 3600].iter().map(|s| Duration::from_secs(*s)).collect());
        Ok(Mailer { outbox, clock, transport, from, schedule, wake })
    }

    pub async fn run(self, cancel: CancellationToken) {
        let Some(transport) = &self.transport else {
            warn!("no [smtp] url configured: owner e-mails stay in the outbox until one is");
            // Nothing to do, but still running: a mailer that returned would look like one that
            // died.
            cancel.cancelled().await;
            return;
        };
        while !cancel.is_cancelled() {
            let now = self.clock.now();
            match self.outbox.claim_email(LEASE).await {
                Ok(Some(email)) => {
                    self.send(transport, email).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => error!(error = %e, "reading the outbox failed"),
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = self.clock.sleep_until(now + POLL) => {}
            }
        }
    }

    async fn send(&self, transport: &AsyncSmtpTransport<Tokio1Executor>, outbox: OutboxEmail) {
        let span = tracing::info_span!(
            target: crate::telemetry::TRACED,
            parent: None,
            "e-mail",
            otel.kind = "client",
            email.id = outbox.id,
            attempt = outbox.attempts + 1,
            outcome = tracing::field::Empty,
        );
        let tried = self.attempt(transport, &outbox).instrument(span.clone()).await;
        span.record("outcome", if tried.is_ok() { "sent" } else { "failed" });
        let outcome = match tried {
            Ok(()) => {
                info!(to = %outbox.email.recipient, subject = %outbox.email.subject, "e-mail sent");
                EmailOutcome::Sent
            }
            Err(Failure::Permanent(error)) => {
                warn!(to = %outbox.email.recipient, %error, "the e-mail cannot be sent; given up");
                EmailOutcome::GaveUp { error }
            }
            Err(Failure::Transient(error)) => {
                let delay = self.schedule.delay(outbox.attempts + 1, None, &mut rand::rng());
                let at = self.clock.now() + chrono::Duration::from_std(delay).expect("small");
                warn!(to = %outbox.email.recipient, %error, retry_at = %at, "sending an e-mail failed");
                EmailOutcome::Retry { error, at }
            }
        };
        let recorded = self.outbox.email_result(outbox.id, outcome).await;
        if let Err(e) = recorded {
            error!(error = %e, "recording an e-mail's fate failed; its lease runs out and it is tried again");
        }
    }

    /// One try. An address that cannot be parsed and an SMTP 5xx are permanent: trying again
    /// would only be refused again. Everything else (4xx, connection, TLS, timeouts) is transient.
    async fn attempt(
        &self,
        transport: &AsyncSmtpTransport<Tokio1Executor>,
        outbox: &OutboxEmail,
    ) -> Result<(), Failure> {
        let to = outbox.email.recipient.parse::<Mailbox>().map_err(|e| {
            Failure::Permanent(format!("the recipient {:?} is not an address: {e}", outbox.email.recipient))
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&outbox.email.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(outbox.email.body.clone())
            .map_err(|e| Failure::Permanent(format!("building the message: {e}")))?;
        match transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(Failure::Permanent(e.to_string())),
            Err(e) => Err(Failure::Transient(e.to_string())),
        }
    }
}

/// Why an e-mail did not go out.
enum Failure {
    Permanent(String),
    Transient(String),
}
