//! The HTTP surface: shared state, the router, errors and authentication.

pub mod auth;
pub mod error;
pub mod health;
pub mod openapi;

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

/// Every route of the daemon.
pub fn router(state: AppState) -> Router {
    let (api, document) = api_routes().split_for_parts();
    let document = openapi::document(document);
    Router::new()
        .merge(api)
        .route(openapi::PATH, get(openapi::serve).with_state(document))
        .merge(crate::web::routes())
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::no_method)
        .with_state(state)
}
