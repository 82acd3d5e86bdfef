//! Conversations: the granularity that bundles a chat's messages until the conversation ends
//! rather than until the clock says. A chat's conversation (per webhook) opens with a message and
//! closes at the first of: the channel ending the session, `silence` without a message in the
//! chat (either direction), `max` after its first message, or a flush. The next message opens
//! the next one.
//!
//! The rule is written here once; the stores keep each open conversation's deadline in a column
//! computed by [`deadline`] (the same formula, in SQL, at every message), so finding what is due
//! is one index range, whatever the number of open conversations.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::Invalid;

/// Why a conversation's bundle closed: the payload's `closed_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClosedBy {
    /// The channel ended the session (Zoho Desk `ENDED`, Chatwoot `resolved`).
    SessionEnd,
    /// `conversation_silence` passed without a message.
    Silence,
    /// `conversation_max` passed since its first message.
    Max,
    /// A flush, or a change of the webhook's settings that ended it.
    Flush,
}

impl ClosedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ClosedBy::SessionEnd => "session_end",
            ClosedBy::Silence => "silence",
            ClosedBy::Max => "max",
            ClosedBy::Flush => "flush",
        }
    }

    /// What a store wrote with [`ClosedBy::as_str`], read back.
    pub fn parse(s: &str) -> Option<ClosedBy> {
        [ClosedBy::SessionEnd, ClosedBy::Silence, ClosedBy::Max, ClosedBy::Flush]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ClosedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An open conversation as its deadline is decided: times in milliseconds of the store's clock
/// (times of receipt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    /// When its first message was received.
    pub first_at: i64,
    /// When its latest message was received.
    pub last_at: i64,
    pub silence_ms: i64,
    pub max_ms: i64,
    /// Something ended it before its deadline (the session, a flush), and what.
    pub ended: Option<ClosedBy>,
}

/// When an open conversation closes unless another message comes: `silence` after the latest
/// message, but never later than `max` after the first. (The stores write the same formula in
/// SQL, `MIN(first_at + max_ms, last_at + silence_ms)`, so that it is a column they can index.)
pub fn deadline(first_at: i64, last_at: i64, silence_ms: i64, max_ms: i64) -> i64 {
    (last_at.saturating_add(silence_ms)).min(first_at.saturating_add(max_ms))
}

/// Why a conversation closing now closes: what ended it, or else whichever of its two limits
/// came first (`max` when both fall at the same instant).
pub fn closed_by(open: &Open) -> ClosedBy {
    if let Some(ended) = open.ended {
        return ended;
    }
    let max_at = open.first_at.saturating_add(open.max_ms);
    if max_at <= open.last_at.saturating_add(open.silence_ms) { ClosedBy::Max } else { ClosedBy::Silence }
}

/// A duration setting within bounds, written like `30m` or `24h`.
fn bounded(value: &str, (min, max): (Duration, Duration), range: &str) -> Result<Duration, Invalid> {
    let value = value.trim();
    let d = humantime::parse_duration(value)
        .map_err(|e| Invalid(format!("{value:?} is not a duration like \"30m\": {e}")))?;
    if !(min..=max).contains(&d) {
        return Err(Invalid(format!("must be between {range}")));
    }
    Ok(d)
}

/// A duration as it was likely written: `30m`, `2h`, `1day`.
fn show(f: &mut fmt::Formatter<'_>, d: Duration) -> fmt::Result {
    match d.as_secs() {
        s if s % 86_400 == 0 && s > 0 => write!(f, "{}day{}", s / 86_400, if s == 86_400 { "" } else { "s" }),
        s if s % 3_600 == 0 && s > 0 => write!(f, "{}h", s / 3_600),
        s if s % 60 == 0 && s > 0 => write!(f, "{}m", s / 60),
        _ => write!(f, "{}", humantime::format_duration(d)),
    }
}

macro_rules! setting {
    ($name:ident, $doc:literal, $min:expr, $max:expr, $default:expr, $range:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(Duration);

        impl $name {
            pub const MIN: Duration = $min;
            pub const MAX: Duration = $max;
            pub const DEFAULT: $name = $name($default);

            /// A value the store wrote after it was checked (milliseconds), read back; one
            /// outside the bounds (a row edited by hand) is brought within them.
            pub fn stored(ms: i64) -> $name {
                let (min, max) = (Self::MIN.as_millis() as i64, Self::MAX.as_millis() as i64);
                $name(Duration::from_millis(ms.clamp(min, max) as u64))
            }

            pub fn duration(self) -> Duration {
                self.0
            }

            pub fn millis(self) -> i64 {
                self.0.as_millis() as i64
            }
        }

        impl FromStr for $name {
            type Err = Invalid;

            fn from_str(value: &str) -> Result<Self, Invalid> {
                bounded(value, (Self::MIN, Self::MAX), $range).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                show(f, self.0)
            }
        }
    };
}

setting!(
    ConversationSilence,
    "How long a chat may stay silent before its conversation closes: 1m to 24h, 30m unless set.",
    Duration::from_secs(60),
    Duration::from_secs(24 * 3600),
    Duration::from_secs(30 * 60),
    "1m and 24h"
);

setting!(
    ConversationMax,
    "How long a conversation may run before it closes anyway (its bundle goes out and the next \
     message opens the next one): 1h to 7days, 24h unless set.",
    Duration::from_secs(3600),
    Duration::from_secs(7 * 24 * 3600),
    Duration::from_secs(24 * 3600),
    "1h and 7days"
);

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn open(first_at: i64, last_at: i64) -> Open {
        Open { first_at, last_at, silence_ms: 30 * MIN, max_ms: 24 * 60 * MIN, ended: None }
    }

    #[test]
    fn a_conversation_closes_after_its_silence_but_never_after_its_maximum() {
        assert_eq!(deadline(0, 0, 30 * MIN, 1440 * MIN), 30 * MIN);
        assert_eq!(deadline(0, 10 * MIN, 30 * MIN, 1440 * MIN), 40 * MIN, "each message moves it");
        assert_eq!(deadline(0, 1430 * MIN, 30 * MIN, 1440 * MIN), 1440 * MIN, "capped at the maximum");
        assert_eq!(deadline(0, i64::MAX - 1, 30 * MIN, 1440 * MIN), 1440 * MIN, "no overflow");
    }

    #[test]
    fn what_closed_it_is_what_came_first() {
        assert_eq!(closed_by(&open(0, 10 * MIN)), ClosedBy::Silence);
        assert_eq!(closed_by(&open(0, 1430 * MIN)), ClosedBy::Max);
        assert_eq!(closed_by(&open(0, 1410 * MIN)), ClosedBy::Max, "both at once: the maximum");
        let ended = Open { ended: Some(ClosedBy::SessionEnd), ..open(0, 0) };
        assert_eq!(closed_by(&ended), ClosedBy::SessionEnd, "an ending says so whatever the times");
        for c in [ClosedBy::SessionEnd, ClosedBy::Silence, ClosedBy::Max, ClosedBy::Flush] {
            assert_eq!(ClosedBy::parse(c.as_str()), Some(c));
        }
    }

    #[test]
    fn the_settings_take_durations_within_their_bounds() {
        assert_eq!("30m".parse::<ConversationSilence>().unwrap(), ConversationSilence::DEFAULT);
        assert_eq!(ConversationSilence::DEFAULT.to_string(), "30m");
        assert_eq!(ConversationMax::DEFAULT.to_string(), "1day");
        assert_eq!("2h".parse::<ConversationMax>().unwrap().to_string(), "2h");
        assert_eq!("3days".parse::<ConversationMax>().unwrap().to_string(), "3days");
        let refused = "30s".parse::<ConversationSilence>().unwrap_err();
        assert!(refused.0.contains("between 1m and 24h"), "{}", refused.0);
        assert!("25h".parse::<ConversationSilence>().is_err());
        assert!("soon".parse::<ConversationSilence>().unwrap_err().0.contains("\"30m\""));
        assert!("30m".parse::<ConversationMax>().is_err());
        assert!("8days".parse::<ConversationMax>().is_err());
        assert_eq!(ConversationSilence::stored(1), "1m".parse().unwrap(), "a stored value is kept in bounds");
    }
}
