//! How a delivery attempt fails, and why a webhook is switched off: typed, so that the worker,
//! the store and a test send decide on them by kind; the activity log, the owner's e-mail and the
//! page show them as the sentences their `Display` writes.

use std::fmt;

/// Why an attempt got no HTTP answer: refused before it was sent, or the transport failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The URL names an address the SSRF guard refuses (the guard's reason).
    Refused(String),
    /// No answer within the webhook's timeout.
    TimedOut { causes: String },
    /// No connection (refused, unreachable, a name that does not resolve, TLS).
    ConnectFailed { causes: String },
    /// The answer began but could not be read.
    ReadFailed { causes: String },
    /// Anything else the HTTP client reports.
    RequestFailed { causes: String },
}

impl fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, causes) = match self {
            AttemptFailure::Refused(why) => return write!(f, "refused by the SSRF guard: {why}"),
            AttemptFailure::TimedOut { causes } => ("timed out", causes),
            AttemptFailure::ConnectFailed { causes } => ("connection failed", causes),
            AttemptFailure::ReadFailed { causes } => ("reading the response failed", causes),
            AttemptFailure::RequestFailed { causes } => ("request failed", causes),
        };
        f.write_str(kind)?;
        if !causes.is_empty() {
            write!(f, ": {causes}")?;
        }
        Ok(())
    }
}

/// Why a failed attempt switched its webhook off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchedOff {
    /// The endpoint answered 410 Gone: it says it is gone for good.
    Gone,
    /// This many failed attempts in a row, reaching `delivery.disable_after`.
    Failures(i64),
}

impl SwitchedOff {
    /// Whether an attempt's result switches an enabled webhook off: a 410 at once, or a run of
    /// `failures` (this one counted) that reaches `disable_after`.
    pub fn by(status: Option<u16>, failures: i64, disable_after: u32) -> Option<SwitchedOff> {
        match status {
            Some(410) => Some(SwitchedOff::Gone),
            _ if failures >= i64::from(disable_after) => Some(SwitchedOff::Failures(failures)),
            _ => None,
        }
    }
}

impl fmt::Display for SwitchedOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchedOff::Gone => f.write_str("the endpoint answered 410 Gone"),
            SwitchedOff::Failures(n) => write!(f, "{n} consecutive failed attempts"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_reads_as_its_kind_then_its_causes() {
        let failure = AttemptFailure::ConnectFailed { causes: "tcp connect error: refused".into() };
        assert_eq!(failure.to_string(), "connection failed: tcp connect error: refused");
        assert_eq!(AttemptFailure::TimedOut { causes: String::new() }.to_string(), "timed out");
        let refused = AttemptFailure::Refused("127.0.0.1 is a loopback address".into());
        assert_eq!(refused.to_string(), "refused by the SSRF guard: 127.0.0.1 is a loopback address");
    }

    #[test]
    fn a_webhook_is_switched_off_by_a_410_or_a_run_of_failures() {
        assert_eq!(SwitchedOff::by(Some(410), 1, 5), Some(SwitchedOff::Gone));
        assert_eq!(SwitchedOff::by(Some(500), 4, 5), None);
        assert_eq!(SwitchedOff::by(None, 5, 5), Some(SwitchedOff::Failures(5)));
        assert_eq!(SwitchedOff::Failures(5).to_string(), "5 consecutive failed attempts");
    }
}
