//! Signing in and out: a session kept in the store, its cookie the session's id signed with the
//! admin token, and the CSRF token every form carries, derived from the session.

use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::instrument;

use super::{PageError, page, see_other};
use crate::domain::{Need, Principal, Refusal, UserId, WorkspaceId};
use crate::http::auth::{SESSION_COOKIE, mac, same_secret, session_cookie, signed_session};
use crate::http::server::Client;
use crate::http::throttle::Guessed;
use crate::service::AppState;
use crate::words::{PageWords, default_page_words as default_words};

/// How long a sign-in lasts.
const SESSION_HOURS: i64 = 12;

/// Someone signed in (the operator, with the admin token, or a member, with their password),
/// with the CSRF token their forms must carry.
pub struct Session {
    /// The session's id in the store.
    pub(super) id: String,
    pub csrf: String,
    /// Who it is, with their workspaces as of this request.
    pub principal: Principal,
}

impl Session {
    /// Who the activity log says did what this session does.
    pub fn actor(&self) -> String {
        self.principal.actor()
    }

    /// Whether this session may do `need` in `workspace`: the 404 page naming `what` when it may
    /// not see it, the 403 page when it may see but not change it.
    pub fn may(&self, workspace: &WorkspaceId, need: Need, what: &str) -> Result<(), PageError> {
        match self.principal.may(workspace, need) {
            Ok(()) => Ok(()),
            Err(Refusal::Hidden) => Err(PageError::not_found(what)),
            Err(Refusal::Forbidden) => Err(PageError::forbidden(
                "You may read this workspace, not change it: ask one of its admins.",
            )),
        }
    }

    /// Whether this session may change things in `workspace` (its pages show their forms).
    pub fn can_change(&self, workspace: &WorkspaceId) -> bool {
        self.principal.may(workspace, Need::Change).is_ok()
    }

    /// Whether a submitted form carries this session's CSRF token.
    pub fn check(&self, submitted: &str) -> Result<(), PageError> {
        if same_secret(submitted, &self.csrf) { Ok(()) } else { Err(PageError::expired_form()) }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let to_login = || {
            let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/ui");
            let target = format!("/login?next={}", urlencode(next));
            (StatusCode::SEE_OTHER, [(LOCATION, target)]).into_response()
        };
        let Some((id, value)) = signed_session(parts, &state.admin_token) else { return Err(to_login()) };
        // Signed by us, but perhaps signed out or expired since.
        let owner = match state.store.web_session_alive(&id, state.clock.now()).await {
            Ok(Some(owner)) => owner,
            Ok(None) => return Err(to_login()),
            Err(e) => return Err(PageError::from(e).into_response()),
        };
        let principal = match owner {
            None => Principal::Operator,
            Some(user) => match member(state, &user).await {
                Ok(Some(principal)) => principal,
                Ok(None) => return Err(to_login()),
                Err(e) => return Err(PageError::from(e).into_response()),
            },
        };
        let csrf = mac(&state.admin_token, &["csrf", &value]);
        Ok(Session { id, csrf, principal })
    }
}

/// A signed-in user as a principal, with their workspaces read now (so a member removed is out of
/// that workspace at their next request); `None` for a user that is gone.
async fn member(state: &AppState, user: &UserId) -> Result<Option<Principal>, crate::store::StoreError> {
    let Some(found) = state.store.user(user).await? else { return Ok(None) };
    let workspaces = state.store.memberships(user).await?;
    Ok(Some(Principal::Person { id: found.id, email: found.email, operator: found.operator, workspaces }))
}

/// The `Set-Cookie` header that signs in (or, with `None`, out).
fn set_cookie(state: &AppState, value: Option<&str>) -> HeaderValue {
    let secure = if state.public_url.starts_with("https://") { "; Secure" } else { "" };
    let text = match value {
        Some(value) => format!(
            "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            SESSION_HOURS * 3600
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).expect("cookie text is ASCII")
}

/// Signs in (`user`: a member; `None`: the operator): starts a session in the store, and
/// redirects with its cookie.
pub(super) async fn sign_in(
    state: &AppState,
    next: &str,
    user: Option<&UserId>,
) -> Result<Response, PageError> {
    let id = crate::domain::random_token(32);
    let expires = state.clock.now() + chrono::Duration::hours(SESSION_HOURS);
    state.store.start_web_session(&id, expires, user).await?;
    if let Some(user) = user {
        state.store.note_sign_in(user, state.clock.now()).await?;
    }
    let value = session_cookie(&state.admin_token, &id);
    let target = if next.starts_with("/ui") || next.starts_with("/c/") { next } else { "/ui" };
    Ok((
        StatusCode::SEE_OTHER,
        [
            (SET_COOKIE, set_cookie(state, Some(&value))),
            (LOCATION, HeaderValue::from_str(target).unwrap_or(HeaderValue::from_static("/ui"))),
        ],
    )
        .into_response())
}

/// Signs out: ends the session in the store, so a copy of its cookie opens nothing either.
async fn sign_out(state: &AppState, session: &Session) -> Result<Response, PageError> {
    state.store.end_web_session(&session.id).await?;
    Ok((
        StatusCode::SEE_OTHER,
        [(SET_COOKIE, set_cookie(state, None)), (LOCATION, HeaderValue::from_static("/login"))],
    )
        .into_response())
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[derive(Template)]
#[template(path = "web/login.html")]
struct LoginPage {
    w: &'static PageWords,
    next: String,
    /// What went wrong with the admin token.
    error: Option<String>,
    /// What went wrong with an e-mail and password, and the address typed.
    member_error: Option<String>,
    email: String,
    /// The single sign-on provider's name, when one is configured.
    sso: Option<String>,
}

impl LoginPage {
    fn new(state: &AppState, next: String) -> LoginPage {
        LoginPage {
            w: default_words(),
            next,
            error: None,
            member_error: None,
            email: String::new(),
            sso: state.sso.as_ref().map(|sso| sso.name.clone()),
        }
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[instrument(skip_all)]
pub async fn root() -> Response {
    see_other("/ui")
}

#[instrument(skip_all)]
pub async fn login_page(State(state): State<AppState>, Query(query): Query<NextQuery>) -> Response {
    let next = query.next.unwrap_or_else(|| "/ui".into());
    page(LoginPage::new(&state, next))
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    /// A member signs in with these instead of the token.
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

#[instrument(skip_all)]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let next = form.next.unwrap_or_else(|| "/ui".into());
    if !form.email.trim().is_empty() {
        return member_sign_in(&state, client, &form.email, &form.password, next).await;
    }
    // The right token always signs in; only wrong ones are counted, and shut out.
    if same_secret(form.token.trim(), &state.admin_token) {
        return sign_in(&state, &next, None).await;
    }
    if let Some(wait) = state.throttle.refuse(client.net(), Guessed::AdminToken) {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let error = format!("Too many wrong tokens from this address. Try again in {seconds} s.");
        let mut response = page(LoginPage { error: Some(error), ..LoginPage::new(&state, next) });
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        return Ok(response);
    }
    let error = Some("That is not the admin token.".into());
    let mut response = page(LoginPage { error, ..LoginPage::new(&state, next) });
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    Ok(response)
}

/// A member's sign-in: their address and password, checked against the kept argon2id hash (also,
/// at the same cost, for an address nobody has, so the answer's time does not tell). Wrong ones
/// count towards the guessing throttle, per client and address.
async fn member_sign_in(
    state: &AppState,
    client: Client,
    email: &str,
    password: &str,
    next: String,
) -> Result<Response, PageError> {
    let address = email.trim().to_lowercase();
    let user = state.store.user_by_email(&address).await?;
    let wrong = "That e-mail address and password do not match.";
    let (status, error) =
        match guarded_password(state, client, &address, user.as_ref(), password, wrong).await {
            Ok(()) => match &user {
                Some(user) => return sign_in(state, &next, Some(&user.id)).await,
                None => (StatusCode::UNAUTHORIZED, wrong.to_string()),
            },
            Err(refused) => refused,
        };
    let mut response =
        page(LoginPage { member_error: Some(error), email: address, ..LoginPage::new(state, next) });
    *response.status_mut() = status;
    Ok(response)
}

/// A password typed for `address`, checked behind the guessing throttle (per client and
/// address): `Ok` when it is `user`'s; otherwise the status and sentence to show (`wrong` for a
/// plain mismatch, counted towards the throttle). While the client is shut out of the address,
/// not even the right password is tried: the throttle stops guessing, not only slows it.
pub(super) async fn guarded_password(
    state: &AppState,
    client: Client,
    address: &str,
    user: Option<&crate::store::User>,
    given: &str,
    wrong: &str,
) -> Result<(), (StatusCode, String)> {
    let guessed = Guessed::Password(address.to_string());
    let wait = state.throttle.wait(client.net(), &guessed);
    if wait.is_none() && user.is_some() && password_matches(user, given).await {
        return Ok(());
    }
    if wait.is_none() && user.is_none() {
        // The same work as a real check, so that the answer's time does not tell.
        password_matches(None, given).await;
    }
    Err(match wait.or_else(|| state.throttle.refuse(client.net(), guessed)) {
        Some(wait) => {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            (StatusCode::TOO_MANY_REQUESTS, format!("Too many wrong passwords. Try again in {seconds} s."))
        }
        None => (StatusCode::UNAUTHORIZED, wrong.to_string()),
    })
}

/// Whether `given` is `user`'s password, checked off the async threads; for a user with no
/// password (or none at all) the same work is done against a hash nobody has, so that the answer
/// takes as long.
pub(super) async fn password_matches(user: Option<&crate::store::User>, given: &str) -> bool {
    let kept = user.and_then(|u| u.password_hash.clone());
    let given = given.to_string();
    tokio::task::spawn_blocking(move || match kept {
        Some(kept) => crate::domain::password::verify(&given, &kept),
        None => {
            let _ = crate::domain::password::verify(&given, &DUMMY_HASH);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// An argon2id hash of nothing anyone has, made with the same parameters as every kept one and
/// checked when an address is unknown, so that both answers take as long.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::domain::password::hash(&crate::domain::random_token(24)));

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

#[instrument(skip_all)]
pub async fn logout(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    sign_out(&state, &session).await
}

#[derive(Template)]
#[template(path = "web/invite.html")]
struct InvitePage<'a> {
    w: &'static PageWords,
    email: &'a str,
    token: &'a str,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    password: String,
}

/// A password chosen on the invitation or the reset form: `Ok(hash)` (argon2id, made off the
/// async threads) when the domain's rules take it for `email`, `Ok(Err(sentence))` to show on the
/// form otherwise.
pub(super) async fn chosen_password(
    password: String,
    email: &str,
) -> Result<Result<String, String>, PageError> {
    if let Err(why) = crate::domain::password::check(&password, email) {
        return Ok(Err(format!("The password {why}.")));
    }
    let kept = tokio::task::spawn_blocking(move || crate::domain::password::hash(&password)).await.map_err(
        |_| PageError::from(crate::http::ApiError::new(crate::http::ErrorCode::Internal, "hashing failed")),
    )?;
    Ok(Ok(kept))
}

/// The SHA-256 of a link's token, if it has the link's prefix and could be one (no store is asked
/// about anything else).
fn link_hash(token: &str, prefix: &str) -> Option<String> {
    (token.starts_with(prefix) && token.len() <= 64).then(|| crate::http::auth::api_token_hash(token))
}

/// The address an invitation link is for, if it is still good; the 404 page otherwise.
async fn invitation(state: &AppState, token: &str) -> Result<(String, WorkspaceId), PageError> {
    let found = match link_hash(token, "inv_") {
        Some(hash) => state.store.open_invitation(&hash, state.clock.now()).await?,
        None => None,
    };
    found.ok_or_else(|| PageError::not_found("invitation (it may have been used, or expired)"))
}

/// `GET /invite/{token}`: the form where an invited person chooses their password.
#[instrument(skip_all)]
pub async fn invite_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    let (email, _) = invitation(&state, &token).await?;
    Ok(page(InvitePage { w: default_words(), email: &email, token: &token, error: None }))
}

/// `POST /invite/{token}`: sets their password (argon2id) if it is acceptable, spends the
/// invitation (single-use), and signs them in on their workspace.
#[instrument(skip_all)]
pub async fn accept_invite(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<InviteForm>,
) -> Result<Response, PageError> {
    let (email, _) = invitation(&state, &token).await?;
    let kept = match chosen_password(form.password, &email).await? {
        Ok(kept) => kept,
        Err(error) => {
            let mut response =
                page(InvitePage { w: default_words(), email: &email, token: &token, error: Some(error) });
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(response);
        }
    };
    let hash = crate::http::auth::api_token_hash(&token);
    let Some((user, workspace)) = state.store.accept_invitation(&hash, &kept, state.clock.now()).await?
    else {
        return Err(PageError::not_found("invitation (it may have been used, or expired)"));
    };
    tracing::info!(user_id = %user.id, "invitation accepted");
    sign_in(&state, &format!("/ui/workspaces/{workspace}"), Some(&user.id)).await
}

#[derive(Template)]
#[template(path = "web/forgot.html")]
struct ForgotPage {
    w: &'static PageWords,
    /// Whether a request was just taken (the same answer whether the address has an account).
    sent: bool,
    /// Whether e-mail can be sent at all (an SMTP server is configured).
    mail: bool,
}

#[derive(Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    email: String,
}

/// `GET /forgot`: asks for the address to send a reset link to.
pub async fn forgot_page(State(state): State<AppState>) -> Response {
    page(ForgotPage { w: default_words(), sent: false, mail: state.mail.is_some() })
}

/// How long a reset link works.
const RESET_MINUTES: i64 = 15;

/// `POST /forgot`: e-mails a single-use reset link (15 minutes) to an address that has a
/// password, at most one good link at a time. The answer is the same whether it has one, so the
/// page tells nobody which addresses have accounts.
#[instrument(skip_all)]
pub async fn forgot(
    State(state): State<AppState>,
    Form(form): Form<ForgotForm>,
) -> Result<Response, PageError> {
    if let Some(mail) = &state.mail
        && let Some(user) = state.store.user_by_email(&form.email).await?
        && user.password_hash.is_some()
    {
        let token = format!("rst_{}", crate::domain::random_token(40));
        let now = state.clock.now();
        let hash = crate::http::auth::api_token_hash(&token);
        let expires = now + chrono::Duration::minutes(RESET_MINUTES);
        if state.store.start_password_reset(&user.id, &hash, now, expires).await? {
            let workspace = match state.store.memberships(&user.id).await?.first() {
                Some((id, _)) => state.store.get_workspace(id).await?,
                None => None,
            };
            let locale = workspace.as_ref().map(|w| w.locale).unwrap_or_default();
            let link = format!("{}/reset/{token}", state.public_url);
            let email = crate::notify::reset_email(locale, &user.email, &link);
            if let Some(workspace) = workspace {
                state.store.queue_email(&email, &workspace.id).await?;
                mail.notify_one();
            }
        }
    }
    Ok(page(ForgotPage { w: default_words(), sent: true, mail: state.mail.is_some() }))
}

#[derive(Template)]
#[template(path = "web/reset.html")]
struct ResetPage<'a> {
    w: &'static PageWords,
    email: &'a str,
    token: &'a str,
    error: Option<String>,
}

/// The address a reset link is for, if it is still good; the 404 page otherwise.
async fn reset_link(state: &AppState, token: &str) -> Result<String, PageError> {
    let found = match link_hash(token, "rst_") {
        Some(hash) => state.store.open_password_reset(&hash, state.clock.now()).await?,
        None => None,
    };
    found.ok_or_else(|| PageError::not_found("reset link (it may have been used, or expired)"))
}

/// `GET /reset/{token}`: the form for a new password.
#[instrument(skip_all)]
pub async fn reset_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    let email = reset_link(&state, &token).await?;
    Ok(page(ResetPage { w: default_words(), email: &email, token: &token, error: None }))
}

/// `POST /reset/{token}`: sets the new password (the same rules as a first one), spends the link,
/// ends every other session of the user, and signs in.
#[instrument(skip_all)]
pub async fn reset(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<InviteForm>,
) -> Result<Response, PageError> {
    let email = reset_link(&state, &token).await?;
    let kept = match chosen_password(form.password, &email).await? {
        Ok(kept) => kept,
        Err(error) => {
            let mut response =
                page(ResetPage { w: default_words(), email: &email, token: &token, error: Some(error) });
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(response);
        }
    };
    let hash = crate::http::auth::api_token_hash(&token);
    let Some(user) = state.store.reset_password(&hash, &kept, state.clock.now()).await? else {
        return Err(PageError::not_found("reset link (it may have been used, or expired)"));
    };
    tracing::info!(user_id = %user.id, "password reset; the user's other sessions ended");
    sign_in(&state, "/ui", Some(&user.id)).await
}
