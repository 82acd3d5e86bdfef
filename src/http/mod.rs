//! What every HTTP route stands on: the shared state, the error answer, authentication (admin
//! token, ingest keys, session cookies, throttling of wrong guesses, the freshness of signed
//! timestamps), bounded request bodies, the connection server and health. It knows no route: [`crate::routes`] composes them.

pub mod auth;
pub mod body;
pub mod error;
pub mod extract;
pub mod health;
pub mod replay;
pub mod server;
pub mod throttle;
pub mod traffic;
pub mod workspaces;

use std::sync::Arc;

use tokio::sync::Notify;

pub use error::{ApiError, ErrorBody, ErrorCode, Errors};
pub use extract::{Body, Ids, nullable};

use crate::clock::SharedClock;
use crate::store::SharedStore;

/// What the HTTP infrastructure needs (authentication, throttling, health), and what every
/// handler reaches through the front ends' [`crate::service::AppState`], which adds the workers.
#[derive(Clone)]
pub struct HttpState {
    pub store: SharedStore,
    pub clock: SharedClock,
    /// Base of transcript links and inbound URLs, without a trailing slash.
    pub public_url: Arc<str>,
    pub admin_token: Arc<str>,
    /// Wakes the delivery worker when new deliveries were committed.
    pub deliveries_waiting: Arc<Notify>,
    /// The default timeout of a webhook without its own.
    pub default_timeout: std::time::Duration,
    /// Workspaces as ingest authenticates them.
    pub workspaces: Arc<workspaces::WorkspaceCache>,
    /// Which background workers are running, for `/readyz`.
    pub workers: Arc<crate::supervise::Workers>,
    /// The bounds on connections and requests, and which proxies to believe.
    pub http: Arc<crate::config::HttpConfig>,
    /// Wrong credentials cost a client time.
    pub throttle: Arc<throttle::Throttle>,
    /// Request bodies held at once, across all connections (`http.max_buffered_mib`).
    pub bodies: Arc<body::BodyBudget>,
    /// Requests to each source's inbound URL, counted until the next hand-over to the store.
    pub traffic: Arc<traffic::Traffic>,
}

/// Headers every answer carries: no content sniffing, no framing by other sites.
pub async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::HeaderValue;
    use axum::http::header::{X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.entry(X_FRAME_OPTIONS).or_insert(HeaderValue::from_static("DENY"));
    response
}

/// Each request (but the health checks and metrics, which probes call all day) in a span of its
/// own: the server span of its trace, named by its method and route template (`POST
/// /hooks/twilio/{source_id}`: never the path, where a source id is the secret of an inbound
/// URL). Exported only with `[telemetry] otlp_endpoint`; otherwise the span is disabled and costs
/// nothing.
pub async fn traced(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    // A shared string: nothing is copied per request, traced or not.
    let matched = request.extensions().get::<axum::extract::MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", |p| p.as_str());
    if matches!(route, "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let span = tracing::info_span!(
        target: crate::telemetry::TRACED,
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}
