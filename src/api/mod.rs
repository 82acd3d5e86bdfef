//! The HTTP surface: shared state, the router, errors and authentication.

pub mod auth;
pub mod error;
pub mod health;
pub mod openapi;
pub mod server;
pub mod throttle;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::sync::Notify;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;

use crate::clock::SharedClock;
use crate::store::SharedStore;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
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
    pub workspaces: Arc<crate::ingest::workspaces::WorkspaceCache>,
    /// The window closer: flushes, and news of granularity changes.
    pub closer: crate::window::closer::CloserHandle,
    /// The delivery worker, for test sends.
    pub deliverer: Arc<crate::deliver::Deliverer>,
    /// The SSRF guard's view of which addresses webhooks may point at.
    pub addresses: Arc<crate::deliver::AddressPolicy>,
    /// Which background workers are running, for `/readyz`.
    pub workers: Arc<crate::supervise::Workers>,
    /// The bounds on connections and requests, and which proxies to believe.
    pub http: Arc<crate::config::HttpConfig>,
    /// Wrong credentials cost a client time.
    pub throttle: Arc<throttle::Throttle>,
    /// Signed WeChat pushes seen lately, so a captured signature cannot carry another body.
    pub replays: Arc<crate::ingest::replay::ReplayMemory>,
}

/// The routes the OpenAPI document describes, with it.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .merge(crate::admin::routes())
        .merge(crate::ingest::routes())
}

/// Every route of the daemon. Bodies are read whole within `http.body_timeout` before a route
/// sees them.
pub fn router(state: AppState) -> Router {
    let (api, document) = api_routes().split_for_parts();
    let document = openapi::document(document);
    let body_timeout = state.http.body_timeout.0;
    Router::new()
        .merge(api)
        .route(openapi::PATH, get(openapi::serve).with_state(document))
        .merge(crate::web::routes())
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::no_method)
        .layer(axum::middleware::from_fn_with_state(body_timeout, server::buffer_body))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers every answer carries: no content sniffing, no framing by other sites.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::HeaderValue;
    use axum::http::header::{X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.entry(X_FRAME_OPTIONS).or_insert(HeaderValue::from_static("DENY"));
    response
}
