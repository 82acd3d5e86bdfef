//! Switching a webhook off and on: what it does meanwhile, and what becomes of what waited.

use serde::{Deserialize, Serialize};

use super::Invalid;

/// What a webhook does while it is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OffMode {
    /// Keeps collecting: everything waits, and goes out when it is on again (unless its owner
    /// discards it then). What an automatic switch-off does.
    #[default]
    Pause,
    /// Takes nothing until it is on again.
    Stop,
}

/// What becomes of a paused webhook's waiting deliveries when it is switched on again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backlog {
    /// They go out (on Zapier, each is a task).
    #[default]
    Send,
    /// They are marked `discarded` and never sent.
    Discard,
}

/// A switch asked for: on (with what to do with the backlog) or off (in which mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    On(Backlog),
    Off(OffMode),
}

impl Switch {
    /// The switch `enabled` asks for, with its `mode` (only when switching off) and `backlog`
    /// (only when switching on); the field that does not belong is refused, named.
    pub fn asked(
        enabled: Option<bool>,
        mode: Option<OffMode>,
        backlog: Option<Backlog>,
    ) -> Result<Option<Switch>, (&'static str, Invalid)> {
        match (enabled, mode, backlog) {
            (Some(true), None, backlog) => Ok(Some(Switch::On(backlog.unwrap_or_default()))),
            (Some(false), mode, None) => Ok(Some(Switch::Off(mode.unwrap_or_default()))),
            (None, None, None) => Ok(None),
            (Some(false) | None, _, Some(_)) => {
                Err(("backlog", Invalid("goes with \"enabled\": true (what to do with what waited)".into())))
            }
            (Some(true) | None, Some(_), _) => {
                Err(("mode", Invalid("goes with \"enabled\": false (pause or stop)".into())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mode_goes_with_switching_off_and_a_backlog_with_switching_on() {
        assert_eq!(Switch::asked(Some(false), None, None), Ok(Some(Switch::Off(OffMode::Pause))));
        assert_eq!(
            Switch::asked(Some(false), Some(OffMode::Stop), None),
            Ok(Some(Switch::Off(OffMode::Stop)))
        );
        assert_eq!(Switch::asked(Some(true), None, None), Ok(Some(Switch::On(Backlog::Send))));
        assert_eq!(
            Switch::asked(Some(true), None, Some(Backlog::Discard)),
            Ok(Some(Switch::On(Backlog::Discard)))
        );
        assert_eq!(Switch::asked(None, None, None), Ok(None));
        assert_eq!(Switch::asked(Some(true), Some(OffMode::Stop), None).unwrap_err().0, "mode");
        assert_eq!(Switch::asked(None, Some(OffMode::Pause), None).unwrap_err().0, "mode");
        assert_eq!(Switch::asked(Some(false), None, Some(Backlog::Send)).unwrap_err().0, "backlog");
        assert_eq!(Switch::asked(None, None, Some(Backlog::Discard)).unwrap_err().0, "backlog");
    }
}
