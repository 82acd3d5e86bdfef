//! The web page for workspace admins, and the public chat transcripts.
//!
//! Pages are rendered on the server with askama and work without JavaScript (a little script only
//! adds "copy" buttons). Signing in with the admin token starts a session kept in the store; its
//! cookie is the session's id signed with the admin token (so changing the token signs everyone
//! out, and signing out ends that session for good), `HttpOnly`, `SameSite=Lax`, and `Secure`
//! when `public_url` is https; every form carries a CSRF token derived from the session.
//!
//! Every page defends itself: a Content-Security-Policy that allows only this site's own script
//! and style sheet and no framing, `nosniff`, a referrer policy, and `no-store` on everything
//! behind the sign-in (the ingest key and secrets are shown there).

pub mod pages;
pub mod transcript;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
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
        .route("/static/chatbundle.css", get(stylesheet))
        .route("/static/chatbundle.js", get(script))
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
        .layer(axum::middleware::map_response(page_headers))
}

/// What the pages may load: their own style sheet and script, nothing inline, no frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

async fn page_headers(mut response: Response) -> Response {
    use axum::http::header::{CONTENT_SECURITY_POLICY as CONTENT_SECURITY_POLICY_HEADER, REFERRER_POLICY};
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY_HEADER, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.entry(REFERRER_POLICY).or_insert(HeaderValue::from_static("same-origin"));
    headers.entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("../../templates/web/static/chatbundle.css"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("../../templates/web/static/chatbundle.js"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "public, max-age=3600")], body).into_response()
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
    /// The session's id in the store.
    id: String,
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

/// The cookie value for session `id`: the id, signed with the admin token.
fn session_value(admin_token: &str, id: &str) -> String {
    format!("{id}.{}", mac(admin_token, &["session", id]))
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
        let Some((id, _)) = value.split_once('.') else { return Err(to_login()) };
        if !same_secret(&value, &session_value(&state.admin_token, id)) {
            return Err(to_login());
        }
        // Signed by us, but perhaps signed out or expired since.
        match state.store.web_session_alive(id, state.clock.now()).await {
            Ok(true) => {}
            Ok(false) => return Err(to_login()),
            Err(e) => {
                tracing::error!(error = %e, "checking a web session failed");
                return Err(pages::unavailable());
            }
        }
        Ok(Session { id: id.to_string(), csrf: mac(&state.admin_token, &["csrf", &value]) })
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

/// Signs in: starts a session in the store, and redirects with its cookie.
async fn sign_in(state: &AppState, next: &str) -> Response {
    let id = crate::domain::random_token(32);
    let expires = state.clock.now() + chrono::Duration::hours(SESSION_HOURS);
    if let Err(e) = state.store.start_web_session(&id, expires).await {
        tracing::error!(error = %e, "starting a web session failed");
        return pages::unavailable();
    }
    let value = session_value(&state.admin_token, &id);
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

/// Signs out: ends the session in the store, so a copy of its cookie opens nothing either.
async fn sign_out(state: &AppState, session: &Session) -> Response {
    if let Err(e) = state.store.end_web_session(&session.id).await {
        tracing::error!(error = %e, "ending a web session failed");
        return pages::unavailable();
    }
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
