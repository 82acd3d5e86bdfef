//! What the admin API and the web page both do, written once: the steps that follow a change to a
//! workspace or a webhook, the webhook URL check, test sends, log downloads, resends and inbound
//! URLs. Each front end reads its input, calls these, and answers in its own form.

pub mod activity;
pub mod deliveries;
pub mod intake;
pub mod members;
pub mod preview;
pub mod replay;
pub mod replies;
pub mod sources;
pub mod users;
pub mod webhooks;
pub mod workspaces;

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;

use crate::deliver::{AddressPolicy, Deliverer};
use crate::domain::DeliveryStatus;
use crate::http::{ApiError, ErrorCode, HttpState};
use crate::store::StoreError;
use crate::window::closer::CloserHandle;

/// Why a service could not do what it was asked: a result each front end answers in its own form
/// (the API as an error body, the page as an error page, the CLI as a message).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The thing named (`"chat"`, `"delivery"`, …) is not there, or not where it was looked for.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The delivery cannot be sent again: it has not failed or expired.
    #[error("the delivery is {}: only failed and expired deliveries can be sent again", .0.as_str())]
    NotFinished(DeliveryStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the API and the page answer a failure (the page shows the same status and sentence).
impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::NotFound(what) => ApiError::not_found(what),
            Failure::NotFinished(_) => ApiError::new(ErrorCode::Conflict, failure.to_string()),
            Failure::Store(e) => e.into(),
        }
    }
}

/// What every handler of the front ends can reach: the HTTP infrastructure's state, and the
/// workers the services drive.
#[derive(Clone)]
pub struct AppState {
    pub base: HttpState,
    /// The window closer: flushes, and news of granularity changes.
    pub closer: CloserHandle,
    /// The delivery worker, for test sends.
    pub deliverer: Arc<Deliverer>,
    /// The SSRF guard's view of which addresses webhooks may point at.
    pub addresses: Arc<AddressPolicy>,
    /// The channels' own APIs, for media links.
    pub vendors: Arc<crate::vendors::Vendors>,
    /// Wakes the reply worker when a reply is queued.
    pub replies_waiting: Arc<tokio::sync::Notify>,
    /// How media links are signed.
    pub link_key: crate::domain::LinkKey,
    /// Wakes the mailer when an e-mail is queued; `None` without an SMTP server configured (no
    /// e-mail is queued for people then: invitation links are shown instead).
    pub mail: Option<Arc<tokio::sync::Notify>>,
    /// The OpenID Connect provider people may sign in with, if one is configured.
    pub sso: Option<Arc<crate::sso::Sso>>,
}

impl Deref for AppState {
    type Target = HttpState;

    fn deref(&self) -> &HttpState {
        &self.base
    }
}

impl FromRef<AppState> for HttpState {
    fn from_ref(state: &AppState) -> HttpState {
        state.base.clone()
    }
}
