//! The admin API under `/api/v1`, behind the admin token: workspaces and their webhooks.

pub mod activity;
pub mod sources;
pub mod webhooks;
pub mod workspaces;

use axum::Router;
use axum::extract::FromRequest;
use axum::extract::Request;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::api::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workspaces", post(workspaces::create).get(workspaces::list))
        .route("/api/v1/workspaces/{id}", get(workspaces::show).patch(workspaces::update))
        .route("/api/v1/workspaces/{id}/stats", get(workspaces::stats))
        .route("/api/v1/workspaces/{id}/flush", post(workspaces::flush))
        .route("/api/v1/workspaces/{id}/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/api/v1/workspaces/{id}/sources", post(sources::create).get(sources::list))
        .route(
            "/api/v1/workspaces/{id}/sources/{source_id}",
            get(sources::show).patch(sources::update).delete(sources::delete),
        )
        .route("/api/v1/webhooks/{id}/activity", get(activity::latest))
        .route("/api/v1/webhooks/{id}/log", get(activity::log))
        .route("/api/v1/webhooks/{id}/test", post(activity::test))
        .route("/api/v1/webhooks/{id}", get(webhooks::show).patch(webhooks::update).delete(webhooks::delete))
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
    if value.len() > max {
        return Err(ApiError::field(field, format!("must be at most {max} bytes")));
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
