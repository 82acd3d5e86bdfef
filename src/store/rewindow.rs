//! The rule that moves a webhook's windowing when its settings (or its workspace's) change,
//! shared by the SQL stores: they read each webhook's [`Subscription`] before and after a change
//! in the same transaction, and apply what [`changes`] says.

/// What decides how a webhook's messages are windowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub id: String,
    /// The granularity in effect (`none`, `1h`, …).
    pub granularity: String,
    /// Whether it takes messages.
    pub subscribed: bool,
    pub timezone: String,
}

/// What a change does to one webhook's windowing, effective at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rewindow {
    /// It takes messages again (or stops sending them one by one): its windows start at `at`,
    /// keeping the place of messages still waiting to go out one by one.
    Restart { webhook: String, at: i64 },
    /// Its windows moved (granularity or time zone): what is buffered belongs to the window open
    /// at `at`.
    Move { webhook: String, at: i64 },
    /// It stopped bundling by conversation: its open conversations end at `at` (and go out at
    /// once), and its windows, if it has any now, start there. Comes before the change's other
    /// moves.
    EndConversations { webhook: String, at: i64 },
    /// It started bundling by conversation: what it held buffered (its open window, or, coming
    /// from `none`, what still waits to go out one by one) becomes one ended conversation per chat,
    /// sent at once; its windows are done with at `at`. Comes before the change's other moves.
    StartConversations { webhook: String, at: i64, from_none: bool },
}

/// After a change to webhooks or their workspace at `now` (the transaction's time), what moves.
/// Taking messages again starts from just after now. Otherwise what is buffered stays buffered,
/// and belongs to the window open now (under the new granularity and time zone), or goes out at
/// once when the new granularity is `none`; nothing buffered is dropped.
///
/// The change takes effect just after `now`: messages committed in the same transaction
/// (received at `now`) were handled under the old settings, and every later one is past `now`.
///
/// Conversations have no clock windows: a time zone moves nothing of a webhook that bundles by
/// conversation, and one that stops doing so ends its open conversations at the change (what
/// they hold goes out at once, none of it bundled again by its windows).
pub(crate) fn changes(before: &[Subscription], after: &[Subscription], now: i64) -> Vec<Rewindow> {
    let at = now + 1;
    let by_conversation = |s: &Subscription| s.subscribed && s.granularity == "conversation";
    let mut moves = Vec::new();
    for new in after {
        let Some(old) = before.iter().find(|b| b.id == new.id) else { continue };
        if by_conversation(old) && !by_conversation(new) {
            moves.push(Rewindow::EndConversations { webhook: new.id.clone(), at });
        }
        if old.subscribed && !by_conversation(old) && by_conversation(new) {
            let from_none = old.granularity == "none";
            moves.push(Rewindow::StartConversations { webhook: new.id.clone(), at, from_none });
        }
        let fresh = new.subscribed && (!old.subscribed || old.granularity == "none");
        let clock = |g: &str| g != "none" && g != "conversation";
        let moved = old.granularity != new.granularity
            || (old.timezone != new.timezone && clock(&new.granularity) && clock(&old.granularity));
        if fresh && new.granularity != "none" {
            moves.push(Rewindow::Restart { webhook: new.id.clone(), at });
        } else if new.subscribed && moved {
            moves.push(Rewindow::Move { webhook: new.id.clone(), at });
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(granularity: &str, subscribed: bool, timezone: &str) -> Subscription {
        Subscription {
            id: "wh".into(),
            granularity: granularity.into(),
            subscribed,
            timezone: timezone.into(),
        }
    }

    #[test]
    fn what_moves_when_settings_change() {
        let at = |r: Vec<Rewindow>| r;
        assert_eq!(
            at(changes(&[sub("none", true, "UTC")], &[sub("1h", true, "UTC")], 10)),
            [Rewindow::Restart { webhook: "wh".into(), at: 11 }]
        );
        assert_eq!(
            changes(&[sub("1h", true, "UTC")], &[sub("6h", true, "UTC")], 10),
            [Rewindow::Move { webhook: "wh".into(), at: 11 }]
        );
        assert_eq!(changes(&[sub("1h", true, "UTC")], &[sub("1h", true, "Asia/Tokyo")], 10).len(), 1);
        assert!(changes(&[sub("none", true, "UTC")], &[sub("none", true, "Asia/Tokyo")], 10).is_empty());
        assert!(changes(&[sub("1h", true, "UTC")], &[sub("1h", true, "UTC")], 10).is_empty());
        // Into conversations: what is buffered becomes conversations, sent at once.
        assert_eq!(
            changes(&[sub("6h", true, "UTC")], &[sub("conversation", true, "UTC")], 10),
            [
                Rewindow::StartConversations { webhook: "wh".into(), at: 11, from_none: false },
                Rewindow::Move { webhook: "wh".into(), at: 11 }
            ]
        );
        assert_eq!(
            changes(&[sub("conversation", false, "UTC")], &[sub("conversation", true, "UTC")], 10),
            [Rewindow::Restart { webhook: "wh".into(), at: 11 }],
            "taking messages again: nothing was buffered"
        );
        // Out of them: the open ones end, and the windows start, at the change.
        assert_eq!(
            changes(&[sub("conversation", true, "UTC")], &[sub("1h", true, "UTC")], 10),
            [
                Rewindow::EndConversations { webhook: "wh".into(), at: 11 },
                Rewindow::Move { webhook: "wh".into(), at: 11 }
            ]
        );
        assert_eq!(
            changes(&[sub("conversation", true, "UTC")], &[sub("conversation", false, "UTC")], 10),
            [Rewindow::EndConversations { webhook: "wh".into(), at: 11 }],
            "stopped: it takes nothing more, and what it held goes out"
        );
        assert!(
            changes(&[sub("conversation", true, "UTC")], &[sub("conversation", true, "Asia/Tokyo")], 10)
                .is_empty(),
            "a time zone moves no conversation"
        );
        assert!(changes(&[sub("1h", true, "UTC")], &[sub("6h", false, "UTC")], 10).is_empty());
    }
}
