//! One chat's bundle for a webhook, in parts: what the closer makes when a window or a
//! conversation closes, and what a replay makes of history.

use chrono::{DateTime, Utc};

use super::bounds;
use crate::domain::{ClosedBy, DeliveryId};
use crate::render::bundle;
use crate::store::{BundlingWebhook, PlannedDelivery};

/// What a bundle says of where it stands: the window its payload names, the instant that names
/// it among the webhook's bundles of the chat (the window's end, for a clock window), and why it
/// closed (a conversation's).
pub(super) struct Shape {
    pub window: bounds::Window,
    pub key_end: DateTime<Utc>,
    pub closed_by: Option<ClosedBy>,
}

/// One chat's bundle for `webhook`, in as many parts as its limits need; `messages` ordered by
/// (timestamp, message id).
pub(super) fn bundle_parts(
    webhook: &BundlingWebhook,
    public_url: &str,
    chat: &crate::store::Chat,
    first_message_seq: Option<i64>,
    shape: Shape,
    messages: &[crate::store::StoredMessage],
    links: Option<crate::render::media::MediaLinks<'_>>,
) -> Vec<PlannedDelivery> {
    let input = bundle::BundleInput {
        public_url,
        timezone: webhook.timezone.tz(),
        locale: webhook.locale,
        account: &webhook.account,
        chat,
        first_message_seq,
        window_start: shape.window.start,
        window_end: shape.window.end,
        messages,
        links,
        closed_by: shape.closed_by,
    };
    let limits =
        bundle::Limits { max_note_chars: webhook.note_max_chars.get() as usize, ..bundle::Limits::default() };
    bundle::render(&input, limits)
        .into_iter()
        .map(|part| PlannedDelivery {
            id: DeliveryId::stored(if part.parts == 1 {
                part.bundle_id.clone()
            } else {
                format!("{}-{}", part.bundle_id, part.part)
            }),
            bundle: Some((shape.key_end, part.part)),
            payload: part.payload,
        })
        .collect()
}
