//! The composition root of the HTTP side: the one place that knows every route (admin, ingest,
//! web pages, health) and builds the OpenAPI document from their annotations.

pub mod openapi;

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use std::sync::Arc;

use crate::http::{error, health, security_headers};
use crate::service::AppState;

/// The routes the OpenAPI document describes, with it.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .merge(crate::admin::routes())
        .merge(crate::ingest::routes())
}

/// Every route of the daemon. Each group holds its request bodies to its own limit
/// ([`crate::http::body`]), which finds the daemon's state in the request's extensions.
pub fn router(state: AppState) -> Router {
    let (api, document) = api_routes().split_for_parts();
    let document = openapi::document(document);
    let http_state = Arc::new(state.base.clone());
    Router::new()
        .merge(api)
        .route(openapi::PATH, get(openapi::serve).with_state(document))
        .merge(crate::web::routes())
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::no_method)
        .layer(axum::Extension(http_state))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn(crate::http::traced))
        .with_state(state)
}
