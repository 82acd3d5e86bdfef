//! `/healthz` (the process answers), `/readyz` (database reachable, migrations applied, workers
//! running) and `/metrics` (Prometheus text).

use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;
use crate::telemetry::{metric, prometheus};

/// Which background workers are running; each sets its flag while its loop runs.
#[derive(Debug, Default)]
pub struct Workers {
    pub delivery: AtomicBool,
    pub closer: AtomicBool,
}

impl Workers {
    /// Runs `task` with `flag` raised for as long as it runs.
    pub async fn running<F: std::future::Future<Output = ()>>(flag: &AtomicBool, task: F) {
        flag.store(true, Ordering::SeqCst);
        task.await;
        flag.store(false, Ordering::SeqCst);
    }
}

#[utoipa::path(get, operation_id = "healthz", path = "/healthz", tag = "operations", responses((status = 200, description = "The process is alive", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, operation_id = "readyz", path = "/readyz", tag = "operations", responses((status = 200, description = "Storage answers and the workers run"), (status = 503, description = "Not ready")))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    // Migrations run before the store opens, so a store that answers has them applied.
    let database = state.store.ping().await.is_ok();
    let delivery = state.workers.delivery.load(Ordering::SeqCst);
    let closer = state.workers.closer.load(Ordering::SeqCst);
    let ready = database && delivery && closer;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "ready": ready,
        "database": if database { "ok" } else { "unreachable" },
        "migrations": if database { "applied" } else { "unknown" },
        "workers": {"delivery": delivery, "closer": closer},
    });
    (status, axum::Json(body))
}

#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let handle = prometheus();
    match state.store.gauges().await {
        Ok(g) => {
            metrics::gauge!(metric::QUEUE_DEPTH).set(g.deliveries_pending as f64);
            let age = g
                .oldest_pending
                .map(|t| (state.clock.now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics::gauge!(metric::OLDEST_PENDING_SECONDS).set(age);
            metrics::gauge!(metric::WEBHOOKS_DISABLED).set(g.webhooks_disabled as f64);
            metrics::gauge!(metric::EMAILS_PENDING).set(g.emails_pending as f64);
        }
        Err(e) => tracing::warn!(error = %e, "reading gauges for /metrics failed"),
    }
    handle.run_upkeep();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render())
}
