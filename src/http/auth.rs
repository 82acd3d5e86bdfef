//! Bearer tokens (the admin token opens everything, a workspace's ingest key opens its ingest)
//! and the signed cookie of the web page's sessions.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::server::Client;
use super::throttle::Guessed;
use super::{ApiError, ErrorCode, HttpState};
use crate::domain::{Principal, WorkspaceId};

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

/// Answers a wrong credential from `client`: `429` while it is shut out of guessing `what`, else
/// `401` saying `detail`, the guess counted. Only ever called once a credential was found wrong,
/// so the throttle never stands between a valid credential and its route.
pub fn wrong(state: &HttpState, client: Client, what: Guessed, detail: &str) -> ApiError {
    match state.throttle.refuse(client.net(), what) {
        Some(wait) => ApiError::throttled(wait),
        None => ApiError::unauthorized(detail.to_string()),
    }
}

/// Who a request comes from, by its bearer token.
pub enum Caller {
    Admin,
    /// Someone holding a bearer token that is not the admin token: maybe an ingest key. The
    /// handler checks it, and answers a wrong one with [`Caller::wrong_key`].
    Key(String, Client),
}

impl Caller {
    /// The answer to a key that is not `workspace`'s ingest key (nor the admin token).
    pub fn wrong_key(&self, state: &HttpState, workspace: &WorkspaceId) -> ApiError {
        const DETAIL: &str = "the bearer token is neither this workspace's ingest key nor the admin token";
        match self {
            Caller::Key(_, client) => wrong(state, *client, Guessed::IngestKey(workspace.clone()), DETAIL),
            Caller::Admin => ApiError::unauthorized(DETAIL),
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
        let token = bearer(parts)?;
        if same_secret(token, &state.admin_token) {
            Ok(Caller::Admin)
        } else {
            Ok(Caller::Key(token.to_string(), Client::of(parts, &state.http.trusted_proxies)))
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
            // A workspace's API token is a credential, but not for what only the operator does.
            Caller::Key(key, _) if api_token(&HttpState::from_ref(state), &key).await?.is_some() => {
                Err(ApiError::new(ErrorCode::Forbidden, "only the operator (the admin token) may do this"))
            }
            Caller::Key(_, client) => Err(wrong(
                &HttpState::from_ref(state),
                client,
                Guessed::AdminToken,
                "the bearer token is not the admin token",
            )),
        }
    }
}

/// The caller of a route a workspace's API token may use as well as the operator: who it is,
/// for the handler to check against the workspace of what it touches
/// ([`crate::domain::Principal::may`]).
pub struct Access(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Access
where
    HttpState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = &HttpState::from_ref(state);
        let token = bearer(parts)?;
        if same_secret(token, &state.admin_token) {
            return Ok(Access(Principal::Operator));
        }
        if let Some(principal) = api_token(state, token).await? {
            return Ok(Access(principal));
        }
        let client = Client::of(parts, &state.http.trusted_proxies);
        Err(wrong(
            state,
            client,
            Guessed::AdminToken,
            "the bearer token is neither the admin token nor an API token",
        ))
    }
}

/// Scoped API tokens begin so, which tells them from the admin token and ingest keys.
pub const API_TOKEN_PREFIX: &str = "cbt_";

/// What the store keeps of an API token: its SHA-256, hex (the token is 40 random characters,
/// so a fast hash is enough; it is compared by lookup, never by a loop over tokens).
pub fn api_token_hash(token: &str) -> String {
    use sha2::Digest;
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The principal of an API token that exists (its use noted), or `None`.
async fn api_token(state: &HttpState, token: &str) -> Result<Option<Principal>, ApiError> {
    if !token.starts_with(API_TOKEN_PREFIX) || token.len() > 64 {
        return Ok(None);
    }
    let Some(found) = state.store.api_token_by_hash(&api_token_hash(token)).await? else { return Ok(None) };
    let now = state.clock.now();
    // Written at most once a minute (the store checks too): no write on every request.
    if found.last_used_at.is_none_or(|at| now - at >= chrono::Duration::seconds(60)) {
        state.store.note_api_token_use(&found.id, now).await?;
    }
    Ok(Some(Principal::Token {
        id: found.id,
        name: found.name.into_string(),
        workspace: found.workspace_id,
        role: found.role,
    }))
}

/// The name of the web page's session cookie.
pub const SESSION_COOKIE: &str = "chatbundle_session";

/// HMAC-SHA256 of `parts` (each ended by a NUL) under `key`, in hex.
pub fn mac(key: &str, parts: &[&str]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    for part in parts {
        mac.update(part.as_bytes());
        mac.update(b"\0");
    }
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The session cookie's value for session `id`: the id, signed with the admin token (so
/// changing the token signs everyone out).
pub fn session_cookie(admin_token: &str, id: &str) -> String {
    format!("{id}.{}", mac(admin_token, &["session", id]))
}

/// The session cookie a request carries, as `(session id, cookie value)`, when its signature
/// checks out. Whether that session is still alive is the store's to say.
pub fn signed_session(parts: &Parts, admin_token: &str) -> Option<(String, String)> {
    let value = parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (name, value) = c.trim().split_once('=')?;
            (name == SESSION_COOKIE).then(|| value.to_string())
        })?;
    let (id, _) = value.split_once('.')?;
    same_secret(&value, &session_cookie(admin_token, id)).then(|| (id.to_string(), value.clone()))
}
