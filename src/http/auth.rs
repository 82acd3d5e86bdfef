//! Bearer tokens: the admin token opens everything, a workspace's ingest key opens its ingest.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use super::server::Client;
use super::{ApiError, HttpState};

/// The bearer token of a request, if it carries one.
pub fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer header"))?;
    let value =
        value.to_str().map_err(|_| ApiError::unauthorized("Authorization header is not readable text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("Authorization header must be \"Bearer <token>\""))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized("Authorization header must be \"Bearer <token>\""));
    }
    Ok(token.trim())
}

/// Compares secrets without leaking, through timing, how much of a guess was right.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Refuses a client that is still shut out for guessing, before anything it sent is looked at.
fn not_shut_out(parts: &Parts, state: &HttpState) -> Result<Client, ApiError> {
    let client = Client::of(parts, &state.http.trusted_proxies);
    match state.throttle.wait(client.0) {
        Some(wait) => {
            metrics::counter!(crate::telemetry::metric::AUTH_THROTTLED).increment(1);
            Err(ApiError::throttled(wait))
        }
        None => Ok(client),
    }
}

/// Who a request comes from, by its bearer token.
pub enum Caller {
    Admin,
    /// Someone holding a bearer token that is not the admin token: maybe an ingest key. The
    /// handler checks it, and reports a wrong one to the throttle with [`Caller::wrong_key`].
    Key(String, Client),
}

impl Caller {
    /// Notes that the key this caller sent opens nothing.
    pub fn wrong_key(&self, state: &HttpState) {
        if let Caller::Key(_, client) = self {
            state.throttle.failed(client.0, "ingest key");
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    HttpState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = &HttpState::from_ref(state);
        let client = not_shut_out(parts, state)?;
        let token = bearer(parts)?;
        if same_secret(token, &state.admin_token) {
            Ok(Caller::Admin)
        } else {
            Ok(Caller::Key(token.to_string(), client))
        }
    }
}

/// Proof that the request carries the admin token.
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin
where
    HttpState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Admin => Ok(Admin),
            Caller::Key(_, client) => {
                HttpState::from_ref(state).throttle.failed(client.0, "admin token");
                Err(ApiError::unauthorized("the bearer token is not the admin token"))
            }
        }
    }
}
