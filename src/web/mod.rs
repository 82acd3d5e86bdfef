//! The web page for workspace admins, and the public chat transcripts.
//!
//! Pages are rendered on the server with askama and work without JavaScript (a little script only
//! adds "copy" buttons). Signing in with the admin token sets a session cookie derived from that
//! token (so changing the token signs everyone out), `HttpOnly`, `SameSite=Lax`, and `Secure`
//! when `public_url` is https; every form carries a CSRF token derived from the session.

pub mod pages;
pub mod transcript;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::api::AppState;
use crate::api::auth::same_secret;

/// How long a sign-in lasts.
const SESSION_HOURS: i64 = 12;
const COOKIE_NAME: &str = "chatbundle_session";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::root))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/ui", get(pages::home))
        .route("/ui/workspaces", post(pages::create_workspace))
        .route("/ui/workspaces/{id}", get(pages::workspace).post(pages::save_workspace))
        .route("/ui/workspaces/{id}/flush", post(pages::flush))
        .route("/ui/workspaces/{id}/webhooks", post(pages::create_webhook))
        .route("/ui/webhooks/{id}", post(pages::save_webhook))
        .route("/ui/webhooks/{id}/secret", post(pages::new_secret))
        .route("/ui/webhooks/{id}/log", get(pages::download_log))
        .route("/ui/webhooks/{id}/deliveries/{delivery_id}/resend", post(pages::resend))
        .route("/ui/chats/{id}", get(pages::chat))
        .route("/ui/chats/{id}/rotate", post(pages::rotate_token))
        .route("/c/{token}", get(transcript::page))
}

fn mac(key: &str, parts: &[&str]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    for part in parts {
        mac.update(part.as_bytes());
        mac.update(b"\0");
    }
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// A signed-in admin, with the CSRF token their forms must carry.
pub struct Session {
    pub csrf: String,
}

impl Session {
    /// The refusal for a submitted form whose CSRF token is not this session's, if it is not.
    pub fn refusal(&self, submitted: &str) -> Option<Response> {
        (!same_secret(submitted, &self.csrf)).then(|| {
            (
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this page. Go back, reload, try again.",
            )
                .into_response()
        })
    }
}

/// The cookie value for a session ending at `expires` (Unix seconds).
fn session_value(admin_token: &str, expires: i64) -> String {
    format!("{expires}.{}", mac(admin_token, &["session", &expires.to_string()]))
}

fn cookie_from(parts: &Parts) -> Option<String> {
    parts.headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(
        |c| {
            let (name, value) = c.trim().split_once('=')?;
            (name == COOKIE_NAME).then(|| value.to_string())
        },
    )
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let to_login = || {
            let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/ui");
            let target = format!("/login?next={}", urlencode(next));
            (StatusCode::SEE_OTHER, [(LOCATION, target)]).into_response()
        };
        let Some(value) = cookie_from(parts) else { return Err(to_login()) };
        let Some((expires, _)) = value.split_once('.') else { return Err(to_login()) };
        let Ok(expires) = expires.parse::<i64>() else { return Err(to_login()) };
        let valid = same_secret(&value, &session_value(&state.admin_token, expires));
        if !valid || expires < state.clock.now().timestamp() {
            return Err(to_login());
        }
        Ok(Session { csrf: mac(&state.admin_token, &["csrf", &value]) })
    }
}

/// The `Set-Cookie` header that signs in (or, with `None`, out).
fn set_cookie(state: &AppState, value: Option<&str>) -> HeaderValue {
    let secure = if state.public_url.starts_with("https://") { "; Secure" } else { "" };
    let text = match value {
        Some(value) => format!(
            "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            SESSION_HOURS * 3600
        ),
        None => format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).expect("cookie text is ASCII")
}

/// Signs in: a redirect that sets the session cookie.
fn sign_in(state: &AppState, next: &str) -> Response {
    let expires = state.clock.now().timestamp() + SESSION_HOURS * 3600;
    let value = session_value(&state.admin_token, expires);
    let target = if next.starts_with("/ui") || next.starts_with("/c/") { next } else { "/ui" };
    (
        StatusCode::SEE_OTHER,
        [
            (SET_COOKIE, set_cookie(state, Some(&value))),
            (LOCATION, HeaderValue::from_str(target).unwrap_or(HeaderValue::from_static("/ui"))),
        ],
    )
        .into_response()
}

fn sign_out(state: &AppState) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(SET_COOKIE, set_cookie(state, None)), (LOCATION, HeaderValue::from_static("/login"))],
    )
        .into_response()
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A redirect after a successful POST, so a reload does not submit again.
pub fn see_other(target: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, HeaderValue::from_str(target).unwrap_or(HeaderValue::from_static("/ui")))],
    )
        .into_response()
}
