//! Replays, pure: how one chat's messages of a past range group into what a webhook would have
//! been sent, by the same rules the closer follows live: one call per message (`none`), one
//! bundle per clock window the messages were received in (`1h` … `24h`), or one bundle per
//! conversation, a new one after `silence` without a message or `max` after its first
//! (`conversation`).

use std::ops::Range;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::bounds;
use super::bundling::{Shape, bundle_parts};
use crate::domain::conversation::{self, Open};
use crate::domain::{ClosedBy, DeliveryId, Granularity};
use crate::render;
use crate::store::{BundlingWebhook, PlanReplay, PlannedDelivery, ReplayCounts, StoredMessage};

/// What a webhook would have been sent for some of a chat's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    /// One message on its own (granularity `none`): its index.
    Single(usize),
    /// A bundle: the messages' indexes, the clock window they fell in (none for a
    /// conversation), and why a conversation's bundle closed.
    Bundle { messages: Range<usize>, window: Option<bounds::Window>, closed_by: Option<ClosedBy> },
}

/// How a conversation webhook's conversations end.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub silence_ms: i64,
    pub max_ms: i64,
}

/// Groups a chat's messages, given their times of receipt in the order received.
pub fn groups(received: &[DateTime<Utc>], granularity: Granularity, tz: Tz, limits: Limits) -> Vec<Group> {
    match granularity {
        Granularity::None => (0..received.len()).map(Group::Single).collect(),
        Granularity::Conversation => conversations(received, limits),
        clock => {
            let mut groups = Vec::new();
            let mut start = 0;
            while start < received.len() {
                let window = bounds::containing(received[start], clock, tz);
                let end = start + received[start..].iter().take_while(|t| **t < window.end).count();
                groups.push(Group::Bundle { messages: start..end, window: Some(window), closed_by: None });
                start = end;
            }
            groups
        }
    }
}

/// A conversation per run of messages without `silence` between two of them and within `max`
/// of its first.
fn conversations(received: &[DateTime<Utc>], limits: Limits) -> Vec<Group> {
    let ms = |t: &DateTime<Utc>| t.timestamp_millis();
    let mut groups = Vec::new();
    let mut start = 0;
    while start < received.len() {
        let first = ms(&received[start]);
        let mut end = start + 1;
        while end < received.len() {
            let (previous, next) = (ms(&received[end - 1]), ms(&received[end]));
            if next >= conversation::deadline(first, previous, limits.silence_ms, limits.max_ms) {
                break;
            }
            end += 1;
        }
        let open = Open {
            first_at: first,
            last_at: ms(&received[end - 1]),
            silence_ms: limits.silence_ms,
            max_ms: limits.max_ms,
            ended: None,
        };
        let closed_by = Some(conversation::closed_by(&open));
        groups.push(Group::Bundle { messages: start..end, window: None, closed_by });
        start = end;
    }
    groups
}

/// How a replay turns one chat's messages of its range into what `webhook` would have been
/// sent, each payload marked `"replay": true` and under a delivery id of its own.
pub fn plan(webhook: &BundlingWebhook, public_url: Arc<str>) -> PlanReplay {
    let webhook = webhook.clone();
    Arc::new(move |chat, firsts, messages| {
        let taken: Vec<StoredMessage> =
            messages.iter().filter_map(|m| m.seen_with(webhook.media)).map(|m| m.into_owned()).collect();
        let first_seq = firsts.seen_with(webhook.media);
        let received: Vec<DateTime<Utc>> = taken.iter().map(|m| m.received_at).collect();
        let limits = Limits { silence_ms: webhook.conversation.0, max_ms: webhook.conversation.1 };
        let mut counts = ReplayCounts {
            chats: u64::from(!taken.is_empty()),
            messages: taken.len() as u64,
            ..ReplayCounts::default()
        };
        let mut out = Vec::new();
        for group in groups(&received, webhook.granularity, webhook.timezone.tz(), limits) {
            match group {
                Group::Single(i) => {
                    let m = &taken[i];
                    let payload = render::single_stored_message(
                        &public_url,
                        &webhook.account,
                        webhook.locale,
                        chat,
                        m,
                        first_seq == Some(m.seq),
                        None,
                    );
                    out.push(PlannedDelivery {
                        id: DeliveryId::generate(),
                        payload: render::marked_as_replay(&payload),
                        bundle: None,
                    });
                }
                Group::Bundle { messages, window, closed_by } => {
                    let mut list = taken[messages].to_vec();
                    list.sort_by(|a, b| (a.timestamp, &a.message_id).cmp(&(b.timestamp, &b.message_id)));
                    let (Some(first), Some(last)) = (list.first(), list.last()) else { continue };
                    let window =
                        window.unwrap_or(bounds::Window { start: first.timestamp, end: last.timestamp });
                    let shape = Shape { window, key_end: window.end, closed_by };
                    counts.bundles += 1;
                    for mut part in bundle_parts(&webhook, &public_url, chat, first_seq, shape, &list, None) {
                        part.payload = render::marked_as_replay(&part.payload);
                        out.push(part);
                    }
                }
            }
        }
        counts.calls = out.len() as u64;
        (out, counts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    const LIMITS: Limits = Limits { silence_ms: 30 * 60_000, max_ms: 3_600_000 };

    #[test]
    fn messages_group_as_the_granularity_would_have_sent_them() {
        let times = [
            at("2024-03-01T12:00:00Z"),
            at("2024-03-01T12:20:00Z"),
            at("2024-03-01T12:55:00Z"),
            at("2024-03-01T13:10:00Z"),
            at("2024-03-01T13:39:00Z"),
        ];
        assert_eq!(groups(&times, Granularity::None, chrono_tz::UTC, LIMITS).len(), 5);
        let hourly = groups(&times, Granularity::Hours1, chrono_tz::UTC, LIMITS);
        let ranges: Vec<_> = hourly
            .iter()
            .map(|g| match g {
                Group::Bundle { messages, window, .. } => (messages.clone(), window.unwrap().start),
                Group::Single(_) => unreachable!(),
            })
            .collect();
        assert_eq!(ranges, [(0..3, at("2024-03-01T12:00:00Z")), (3..5, at("2024-03-01T13:00:00Z"))]);
        // 12:20 → 12:55 is 35 minutes of silence: a new conversation, which no silence ends
        // (13:10 → 13:39 is 29 minutes); its hour's maximum, 13:55, would have closed it.
        let talks = groups(&times, Granularity::Conversation, chrono_tz::UTC, LIMITS);
        assert_eq!(
            talks,
            [
                Group::Bundle { messages: 0..2, window: None, closed_by: Some(ClosedBy::Silence) },
                Group::Bundle { messages: 2..5, window: None, closed_by: Some(ClosedBy::Max) },
            ]
        );
        // A chat that never falls quiet is cut at its maximum.
        let steady: Vec<_> =
            (0..7).map(|i| at("2024-03-01T12:00:00Z") + chrono::Duration::minutes(20 * i)).collect();
        let cut = groups(&steady, Granularity::Conversation, chrono_tz::UTC, LIMITS);
        assert_eq!(
            cut[0],
            Group::Bundle { messages: 0..3, window: None, closed_by: Some(ClosedBy::Max) },
            "12:00, 12:20, 12:40; 13:00 is the hour's end"
        );
        assert_eq!(cut.len(), 3);
    }
}
