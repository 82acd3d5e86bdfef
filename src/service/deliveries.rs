//! Sending a failed or expired delivery again.

use tracing::info;

use crate::domain::{DeliveryId, WebhookId};
use crate::service::{AppState, Failure};
use crate::store::Resend;

/// Queues a failed or expired delivery again and wakes the worker (the API's and the web page's).
pub async fn resend(
    state: &AppState,
    webhook_id: &WebhookId,
    delivery_id: &DeliveryId,
    actor: &str,
) -> Result<(), Failure> {
    match state.store.resend_delivery(webhook_id, delivery_id, state.clock.now(), actor).await? {
        Resend::Queued => {
            info!("delivery queued again");
            state.deliveries_waiting.notify_one();
            Ok(())
        }
        Resend::NotFound => Err(Failure::NotFound("delivery")),
        Resend::NotFinished(status) => Err(Failure::NotFinished(status)),
    }
}
