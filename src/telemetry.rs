//! Logging through `tracing`: plain lines for a terminal or journald, or JSON for log shippers.
//! `RUST_LOG` overrides the default level (`info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; a second call (as in tests) leaves the first in place.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a terminal: journald and files get clean text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal());
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
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
}
