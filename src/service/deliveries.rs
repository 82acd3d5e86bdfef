//! Sending a failed or expired delivery again.

use tracing::info;

use crate::domain::{DeliveryId, WebhookId};
use crate::http::{ApiError, ErrorCode};
use crate::service::AppState;
use crate::store::Resend;

/// Queues a failed or expired delivery again and wakes the worker (the API's and the web page's).
pub async fn resend(
    state: &AppState,
    webhook_id: &WebhookId,
    delivery_id: &DeliveryId,
) -> Result<(), ApiError> {
    // Ids chatbundle makes are letters, digits, `_` and `-`: anything else names nothing.
    let plausible = |id: &str| id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !webhook_id.is_well_formed() || !plausible(delivery_id.as_str()) {
        return Err(ApiError::not_found("delivery"));
    }
    match state.store.resend_delivery(webhook_id, delivery_id, state.clock.now()).await? {
        Resend::Queued => {
            info!("delivery queued again");
            state.deliveries_waiting.notify_one();
            Ok(())
        }
        Resend::NotFound => Err(ApiError::not_found("delivery")),
        Resend::NotFinished(status) => Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "the delivery is {}: only failed and expired deliveries can be sent again",
                status.as_str()
            ),
        )),
    }
}
