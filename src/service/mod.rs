//! What the admin API and the web page both do, written once: the steps that follow a change to a
//! workspace or a webhook, the webhook URL check, test sends, log downloads, resends and inbound
//! URLs. Each front end reads its input, calls these, and answers in its own form.

pub mod activity;
pub mod deliveries;
pub mod preview;
pub mod sources;
pub mod webhooks;
pub mod workspaces;

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;

use crate::deliver::{AddressPolicy, Deliverer};
use crate::http::HttpState;
use crate::window::closer::CloserHandle;

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
