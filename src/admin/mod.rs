//! The admin API under `/api/v1`, behind the admin token: workspaces, webhooks, sources, chats.

pub mod activity;
pub mod chats;
pub mod deliveries;
pub mod sources;
pub mod webhooks;
pub mod workspaces;

use axum::extract::FromRequest;
use axum::extract::Request;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{ApiError, AppState};

/// The admin routes, each registered with its OpenAPI annotation.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(workspaces::create, workspaces::list))
        .routes(routes!(workspaces::show, workspaces::update))
        .routes(routes!(workspaces::stats))
        .routes(routes!(workspaces::flush))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(sources::create, sources::list))
        .routes(routes!(sources::show, sources::update, sources::delete))
        .routes(routes!(activity::latest))
        .routes(routes!(activity::log))
        .routes(routes!(activity::test))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::resend))
        .routes(routes!(webhooks::show, webhooks::update, webhooks::delete))
        .routes(routes!(chats::list))
        .routes(routes!(chats::show))
        .routes(routes!(chats::rotate_token))
}

/// A JSON request body whose errors answer in the API's error shape, naming the field.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Body(value))
    }
}

/// Tells an absent key (`None`) from an explicit `null` (`Some(None)`), for PATCH bodies.
pub fn nullable<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Trims a required text field and checks its length.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(ApiError::field(field, format!("must be at most {max} characters")));
    }
    Ok(value.to_string())
}

/// A plausible e-mail address: something, an `@`, a domain with a dot.
pub fn email(field: &str, value: &str) -> Result<String, ApiError> {
    let value = required_text(field, value, 320)?;
    let plausible = value
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !domain.contains('@'))
        && !value.contains(char::is_whitespace);
    if !plausible {
        return Err(ApiError::field(field, format!("{value:?} is not an e-mail address")));
    }
    Ok(value)
}
