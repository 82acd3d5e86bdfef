//! Signing in with the configured OpenID Connect provider ([`crate::sso`]): `GET /login/sso`
//! sends the browser there, `GET /login/sso/callback` brings it back. The address the provider
//! vouches for signs in the user who has it, if they are someone (a workspace's member or an
//! operator); nothing is made for an address nobody invited.

use axum::extract::{Query, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use tracing::instrument;

use super::PageError;
use super::session::sign_in;
use crate::http::auth::same_secret;
use crate::service::AppState;
use crate::sso::{Pending, SsoError};

/// The cookie that carries a sign-in's [`Pending`] to the provider and back.
const COOKIE_NAME: &str = "chatbundle_sso";

/// How long a sign-in at the provider may take.
const PENDING_SECONDS: u32 = 600;

#[derive(Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

/// The `Set-Cookie` header that keeps `pending` (or, with `None`, forgets it).
fn pending_cookie(state: &AppState, pending: Option<&Pending>) -> HeaderValue {
    let secure = if state.public_url.starts_with("https://") { "; Secure" } else { "" };
    let (value, age) = match pending {
        Some(p) => (URL_SAFE_NO_PAD.encode(serde_json::to_vec(p).expect("plain fields")), PENDING_SECONDS),
        None => (String::new(), 0),
    };
    // Lax, so that it comes back on the provider's top-level redirect to the callback.
    let text =
        format!("{COOKIE_NAME}={value}; Path=/login/sso; HttpOnly; SameSite=Lax; Max-Age={age}{secure}");
    HeaderValue::from_str(&text).expect("cookie text is ASCII")
}

/// The [`Pending`] the browser kept, if it sent one that reads.
fn kept_pending(headers: &HeaderMap) -> Option<Pending> {
    let cookies = headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok());
    let value = cookies
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)?
        .1;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(value).ok()?).ok()
}

/// `GET /login/sso`: off to the provider, with a fresh state, nonce and PKCE verifier kept in a
/// cookie of ten minutes.
#[instrument(skip_all)]
pub async fn start(
    State(state): State<AppState>,
    Query(query): Query<StartQuery>,
) -> Result<Response, PageError> {
    let Some(sso) = &state.sso else { return Err(PageError::not_found("single sign-on")) };
    let next = query.next.unwrap_or_else(|| "/ui".into());
    let (url, pending) = sso.start(&next).await.map_err(refused)?;
    let location = HeaderValue::from_str(&url)
        .map_err(|_| refused(SsoError::Provider("a bad authorization URL".into())))?;
    Ok((StatusCode::SEE_OTHER, [(SET_COOKIE, pending_cookie(&state, Some(&pending))), (LOCATION, location)])
        .into_response())
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /login/sso/callback`: the provider's answer. The state must be the one this browser set
/// out with; the code is exchanged and the ID token verified; the verified address signs in its
/// user, who must be someone here already.
#[instrument(skip_all)]
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, PageError> {
    let Some(sso) = &state.sso else { return Err(PageError::not_found("single sign-on")) };
    let forget = [(SET_COOKIE, pending_cookie(&state, None))];
    let outcome = async {
        if let Some(error) = &query.error {
            return Err(PageError::bad_request(&format!("{} did not sign you in ({error}).", sso.name)));
        }
        let pending = kept_pending(&headers).ok_or_else(|| {
            PageError::bad_request("This sign-in took too long, or began in another browser: start it again.")
        })?;
        let (Some(code), Some(returned)) = (&query.code, &query.state) else {
            return Err(PageError::bad_request("The provider's answer has no code."));
        };
        if !same_secret(returned, &pending.state) {
            return Err(PageError::bad_request("This sign-in began in another browser: start it again."));
        }
        let next = pending.next.clone();
        let vouched = sso.finish(pending, code).await.map_err(refused)?;
        let user = state.store.user_by_email(&vouched.email).await?;
        let someone = match &user {
            Some(user) => user.operator || !state.store.memberships(&user.id).await?.is_empty(),
            None => false,
        };
        let Some(user) = user.filter(|_| someone) else {
            tracing::info!("single sign-on refused: the address is no one's here");
            return Err(PageError::forbidden(&format!(
                "No one has invited {} to chatbundle: ask a workspace's admin to invite you.",
                vouched.email
            )));
        };
        // Their invitation links (if still in a mailbox) no longer set a password.
        state.store.spend_invitations(&user.id, state.clock.now()).await?;
        tracing::info!(user_id = %user.id, "signed in with single sign-on");
        sign_in(&state, &next, Some(&user.id)).await
    }
    .await;
    let mut response = outcome.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().append(SET_COOKIE, forget[0].1.clone());
    Ok(response)
}

/// A failed sign-in with the provider, as the page says it (the detail goes to the log).
fn refused(e: SsoError) -> PageError {
    tracing::warn!(error = %e, "single sign-on failed");
    match e {
        SsoError::Provider(_) => PageError::unavailable(
            "The sign-in provider cannot be reached now: try again, or sign in with your password.",
        ),
        SsoError::Unverified(_) => {
            PageError::bad_request("The sign-in could not be verified: start it again.")
        }
        SsoError::NoVerifiedEmail => PageError::forbidden(
            "The provider did not vouch for your e-mail address (it sent none, or not as verified).",
        ),
    }
}
