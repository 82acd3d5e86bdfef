//! Logging through `tracing`: plain lines for a terminal or journald, or JSON for log shippers.
//! `RUST_LOG` overrides the default level (`info`). With `[telemetry] otlp_endpoint`, the spans
//! of [`TRACED`] are also exported as OpenTelemetry traces (OTLP over HTTP, protobuf).

use std::collections::HashMap;
use std::io::Write;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

/// The target of the spans exported as traces: each inbound request, its ingest commit, each
/// window close, each delivery attempt and each e-mail. Every other span, and every event, stays
/// in the log alone.
pub const TRACED: &str = "chatbundle::trace";

/// Exports finished spans while it lives; dropping it sends what is still buffered.
#[must_use = "dropping it stops exporting traces"]
pub struct Tracing(Option<SdkTracerProvider>);

impl Drop for Tracing {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("chatbundle: exporting the last traces failed: {e}");
        }
    }
}

/// Installs the global subscriber; a second call (as in tests) leaves the first in place.
/// Every line goes through [`Escaped`], so no value (a workspace name, a receiver's answer) can
/// break a line in two or send the terminal a control sequence; for the same reason there are
/// no colour codes. Traces are exported only when `telemetry` names an endpoint: otherwise
/// nothing is traced and [`traceparent`] is always `None`.
pub fn init(format: LogFormat, telemetry: &TelemetryConfig) -> Tracing {
    // The traced spans are for the exporter alone: log lines stay as they were, and without an
    // exporter those spans are disabled altogether.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(format!("{TRACED}=off").parse().expect("a valid directive"));
    let provider = telemetry.traces_url().and_then(|url| match exporter(&url, &telemetry.service_name) {
        Ok(provider) => Some(provider),
        Err(e) => {
            // The error may quote the address, which may hold a password.
            let e = e.replace(&url, &crate::domain::masked_url(&url));
            eprintln!("chatbundle: traces will not be exported: {e}");
            None
        }
    });
    let installed = match &provider {
        // Without traces, the filter is the whole subscriber's, as it always was: a callsite it
        // turns off (a debug line, a traced span) is never built at all.
        None => tracing_subscriber::registry().with(filter).with(lines(format)).try_init().is_ok(),
        Some(provider) => {
            let traces = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("chatbundle"))
                .with_filter(Targets::new().with_target(TRACED, tracing::Level::INFO));
            tracing_subscriber::registry()
                .with(lines(format).with_filter(filter))
                .with(traces)
                .try_init()
                .is_ok()
        }
    };
    // Already installed (a test's second daemon): this one exports nothing of its own.
    Tracing(provider.filter(|_| installed))
}

/// The log lines, plain or JSON, each through [`Escaped`].
fn lines<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let lines = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(false)
        .with_writer(|| Escaped(std::io::stdout()));
    match format {
        LogFormat::Plain => lines.boxed(),
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
    }
}

/// Spans batched and posted to `url` as OTLP/HTTP protobuf, from a thread of their own.
fn exporter(url: &str, service_name: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    crate::tls::use_ring();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name.to_string()).build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// The W3C `traceparent` of the innermost traced span being run, when traces are exported
/// (`None` otherwise): what a webhook request carries, and what a delivery keeps of the request
/// that queued it. (Spans that are only logged sit between; entering a traced span makes its
/// context the current one until it is left.)
pub fn traceparent() -> Option<String> {
    let context = opentelemetry::Context::current();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Links `span` to the traces `traceparents` name (a bundle's delivery to its messages' traces).
pub fn link(span: &tracing::Span, traceparents: &[String]) {
    use opentelemetry::trace::TraceContextExt;
    for traceparent in traceparents {
        let carrier = HashMap::from([("traceparent".to_string(), traceparent.clone())]);
        let context = TraceContextPropagator::new().extract(&carrier);
        let linked = context.span().span_context().clone();
        if linked.is_valid() {
            span.add_link(linked);
        }
    }
}

/// Makes `span` go on with the trace `traceparent` names (a stored one, from another task): its
/// child. Nothing without one, or when traces are not exported.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else { return };
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(context);
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
