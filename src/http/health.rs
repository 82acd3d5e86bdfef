//! `/healthz` (the process answers), `/readyz` (the store can commit now, and the delivery
//! worker, the window closer and the mailer run) and `/metrics` (Prometheus text).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::json;

use tracing::instrument;

use super::HttpState;
use crate::store::SharedStore;
use crate::supervise::Workers;
use crate::telemetry::{metric, prometheus};

/// How long the write probe may take before the store counts as unable to commit.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the daemon can do its work now: the store commits, and every background part runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Why the store cannot commit, if it cannot.
    pub store: Option<String>,
    /// Background parts that are not running.
    pub down: Vec<&'static str>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.store.is_none() && self.down.is_empty()
    }

    /// Probes the store through its write path and reads the workers' flags.
    pub async fn check(store: &SharedStore, workers: &Workers) -> Readiness {
        let store = match tokio::time::timeout(PROBE_TIMEOUT, store.probe_write()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("cannot commit: {e}")),
            Err(_) => Some(format!("no commit within {} s", PROBE_TIMEOUT.as_secs())),
        };
        Readiness { store, down: workers.down() }
    }
}

#[utoipa::path(
    get,
    operation_id = "healthz",
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The process is alive", body = String, content_type = "text/plain")
    )
)]
#[instrument(skip_all, level = "debug")]
pub async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(
    get,
    operation_id = "readyz",
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The store commits and the workers run"),
        (status = 503, description = "Not ready: the body names the store's error or the workers that stopped")
    )
)]
#[instrument(skip_all, level = "debug")]
pub async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let readiness = Readiness::check(&state.store, &state.workers).await;
    let ready = readiness.ready();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let alive = |name: &str| !readiness.down.contains(&name);
    let body = json!({
        "ready": ready,
        "store": readiness.store.as_deref().unwrap_or("ok"),
        "workers": {"delivery": alive("delivery"), "closer": alive("closer"), "mailer": alive("mailer")},
    });
    (status, axum::Json(body))
}

#[utoipa::path(
    get,
    operation_id = "metrics",
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")
    )
)]
#[instrument(skip_all, level = "debug")]
pub async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let handle = prometheus();
    handle.run_upkeep();
    let mut text = handle.render();
    // The gauges describe this daemon's store as of this scrape, so they are written here rather
    // than kept in the process-wide recorder, where a concurrent scrape could overwrite them.
    match state.store.gauges().await {
        Ok(g) => {
            let age = g
                .oldest_pending
                .map(|t| (state.clock.now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            for (name, help, value) in [
                (metric::QUEUE_DEPTH, "Deliveries waiting to be sent", g.deliveries_pending as f64),
                (metric::OLDEST_PENDING_SECONDS, "Age of the oldest delivery waiting", age),
                (metric::WEBHOOKS_DISABLED, "Webhooks currently switched off", g.webhooks_disabled as f64),
                (metric::EMAILS_PENDING, "E-mails waiting in the outbox", g.emails_pending as f64),
            ] {
                text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"));
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading gauges for /metrics failed"),
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
