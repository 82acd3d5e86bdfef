//! What follows a change to a workspace, from either front end.

use crate::domain::WorkspaceId;
use crate::service::AppState;

/// What follows every change to a workspace, from the API or the web page.
pub fn changed(state: &AppState, id: &WorkspaceId) {
    state.workspaces.forget(id);
    // A new default granularity or time zone moves the windows of the webhooks that follow it.
    state.closer.kick();
    // Webhooks that follow the workspace's granularity may have changed what is due.
    state.deliveries_waiting.notify_one();
}
