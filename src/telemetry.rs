//! Logging through `tracing`: plain lines for a terminal or journald, or JSON for log shippers.
//! `RUST_LOG` overrides the default level (`info`).

use std::io::Write;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; a second call (as in tests) leaves the first in place.
/// Every line goes through [`Escaped`], so no value (a workspace name, a receiver's answer) can
/// break a line in two or send the terminal a control sequence; for the same reason there are
/// no colour codes.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_writer(|| Escaped(std::io::stdout()));
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// A log line's writer that escapes control characters: `\r`, `\n` (but the one that ends
/// the line), and any other as `\x1b`. Each event reaches it as one whole line.
pub struct Escaped<W>(pub W);

impl<W: Write> Write for Escaped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.split_last() {
            Some((b'\n', body)) => (body, &b"\n"[..]),
            _ => (buf, &b""[..]),
        };
        let mut line = Vec::with_capacity(buf.len());
        for &byte in body {
            match byte {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                b'\t' => line.push(b'\t'),
                0..=0x1f | 0x7f => line.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
                _ => line.push(byte),
            }
        }
        line.extend_from_slice(end);
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A credential-like id shown in logs: its kind prefix and first few characters, enough to tell
/// sources apart and useless to call their inbound URL with.
pub fn redact(id: &str) -> String {
    let shown: String = id.chars().take(8).collect();
    if id.chars().count() > 8 { format!("{shown}…") } else { shown }
}

/// Prometheus metrics. Counters are bumped where things happen; gauges that describe stored
/// state (queue depth, disabled webhooks, e-mails waiting) are read from the store at scrape time
/// and written by the `/metrics` handler itself.
pub mod metric {
    pub const MESSAGES_RECEIVED: &str = "chatbundle_messages_received_total";
    pub const MESSAGES_DUPLICATE: &str = "chatbundle_messages_duplicate_total";
    pub const MESSAGES_SKIPPED: &str = "chatbundle_messages_skipped_total";
    pub const BUNDLES_CREATED: &str = "chatbundle_bundles_created_total";
    /// Labelled `outcome`: `delivered`, `retry`, `failed` (given up) or `expired`.
    pub const DELIVERIES: &str = "chatbundle_deliveries_total";
    pub const DELIVERY_SECONDS: &str = "chatbundle_delivery_seconds";
    pub const WEBHOOKS_AUTO_DISABLED: &str = "chatbundle_webhooks_auto_disabled_total";
    pub const QUEUE_DEPTH: &str = "chatbundle_queue_depth";
    pub const OLDEST_PENDING_SECONDS: &str = "chatbundle_queue_oldest_pending_seconds";
    pub const WEBHOOKS_DISABLED: &str = "chatbundle_webhooks_disabled";
    pub const EMAILS_PENDING: &str = "chatbundle_emails_pending";
    /// Connections closed at once because a client (or everyone) had too many open.
    pub const CONNECTIONS_REFUSED: &str = "chatbundle_connections_refused_total";
    /// Requests refused because their client guessed credentials too often.
    pub const AUTH_THROTTLED: &str = "chatbundle_auth_throttled_total";
    /// Connections ended because the client did not read its answer (`http.write_timeout`).
    pub const WRITE_TIMEOUTS: &str = "chatbundle_http_write_timeouts_total";
    /// Requests answered 503 before their body was read: bodies held were at
    /// `http.max_buffered_mib`.
    pub const BODIES_REFUSED: &str = "chatbundle_http_bodies_refused_total";
}

/// The process's Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Several apps in one test process share the first recorder; that is fine for them.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

/// How often the recorder folds the values histograms recorded into their summaries. Until it
/// does, it keeps every value (about 8 bytes per delivery attempt), so a daemon that nobody
/// scraped grew by megabytes a minute under load; a scrape of `/metrics` folds them too.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps the recorder's memory bounded whether or not anyone scrapes it, until `cancel`.
pub async fn metrics_upkeep(cancel: tokio_util::sync::CancellationToken) {
    let handle = prometheus();
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => handle.run_upkeep(),
        }
    }
}

fn describe() {
    use metric::*;
    metrics::describe_counter!(MESSAGES_RECEIVED, "Text messages stored");
    metrics::describe_counter!(
        MESSAGES_DUPLICATE,
        "Messages posted again (same message id), not stored twice"
    );
    metrics::describe_counter!(MESSAGES_SKIPPED, "Non-text messages counted and not stored");
    metrics::describe_counter!(BUNDLES_CREATED, "Bundle parts queued when windows closed");
    metrics::describe_counter!(DELIVERIES, "Delivery attempts by outcome");
    metrics::describe_histogram!(DELIVERY_SECONDS, "Duration of delivery attempts");
    metrics::describe_counter!(WEBHOOKS_AUTO_DISABLED, "Webhooks switched off after failing");
    metrics::describe_counter!(CONNECTIONS_REFUSED, "Connections closed at once: too many open");
    metrics::describe_counter!(AUTH_THROTTLED, "Requests refused after too many wrong credentials");
    metrics::describe_counter!(WRITE_TIMEOUTS, "Connections ended: the client did not read its answer");
    metrics::describe_counter!(BODIES_REFUSED, "Requests refused: too many request bodies held at once");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_cannot_be_broken_or_carry_control_sequences() {
        let mut out = Escaped(Vec::new());
        out.write_all(b"name=Acme\r\nINFO forged \x1b[31mred\x00\ttab\n").unwrap();
        assert_eq!(String::from_utf8(out.0).unwrap(), "name=Acme\\r\\nINFO forged \\x1b[31mred\\x00\ttab\n");
    }

    #[test]
    fn redacted_ids_keep_their_prefix_only() {
        assert_eq!(redact("src_AbCdEfGhIjKlMnOpQrSt"), "src_AbCd…");
        assert_eq!(redact("api"), "api");
    }
}
