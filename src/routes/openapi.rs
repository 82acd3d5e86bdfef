//! The OpenAPI document of the admin and ingest API, generated from the handlers' annotations and
//! served at `/api/v1/openapi.json`. The API routes are registered through `utoipa-axum`, so a
//! route and its documentation come from the same annotation.

use std::sync::Arc;

use axum::extract::State;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use tracing::instrument;

use crate::admin::activity::LogFormat;
use crate::http::error::{ErrorBody, ErrorCode, ErrorDetail};

pub const PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chatbundle",
        description = "Takes chat messages in, buffers them per chat, and delivers each one at once or \
                       one bundle per chat per window to webhooks. Admin routes take the admin token as \
                       a bearer token; a workspace's ingest route also takes its ingest key.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&Security),
    components(schemas(ErrorBody, ErrorCode, ErrorDetail, LogFormat)),
    tags(
        (name = "workspaces", description = "Workspaces, their statistics and flushing"),
        (name = "webhooks", description = "Outbound webhooks, their activity log and test sends"),
        (name = "sources", description = "Connected inbound channels and their inbound URLs"),
        (name = "chats", description = "Chats and their transcript links"),
        (name = "ingest", description = "Taking messages in"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build(),
            )
        };
        components.add_security_scheme("admin_token", bearer("The daemon's admin token."));
        components.add_security_scheme(
            "ingest_key",
            bearer("The workspace's ingest key (the admin token is accepted too)."),
        );
    }
}

/// The document, built once, with what the derive cannot say: the time zone names accepted.
pub fn document(api: utoipa::openapi::OpenApi) -> Arc<String> {
    let mut doc = serde_json::to_value(&api).expect("the OpenAPI document serialises");
    // Both take `null` for "leave it" (update) or "UTC" (create).
    let mut zones: Vec<Value> = chrono_tz::TZ_VARIANTS.iter().map(|tz| Value::from(tz.name())).collect();
    zones.push(Value::Null);
    for schema in ["CreateWorkspace", "UpdateWorkspace"] {
        if let Some(property) = doc.pointer_mut(&format!("/components/schemas/{schema}/properties/timezone"))
        {
            property["enum"] = Value::Array(zones.clone());
        }
    }
    if let Some(many) = doc.pointer_mut("/components/schemas/Messages/oneOf/1") {
        many["minItems"] = 1.into();
        many["maxItems"] = crate::ingest::json::MAX_MESSAGES_PER_REQUEST.into();
    }
    Arc::new(doc.to_string())
}

/// `GET /api/v1/openapi.json`.
#[instrument(skip_all, level = "debug")]
pub async fn serve(State(doc): State<Arc<String>>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned())
}
