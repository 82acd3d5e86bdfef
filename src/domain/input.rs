//! Input as the admin API, the web page and the CLI accept it, checked in one place. A parse gives
//! the value or an [`Invalid`] saying what is wrong with it; the front end that read the value
//! knows which field it came from and says so in its own form (a JSON error naming the field, a
//! message next to the form's input).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::Account;

/// Why a value is refused: a sentence that reads after the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// The first control character in `value`, as the refusal says it.
fn control_character(value: &str) -> Option<Invalid> {
    value
        .chars()
        .find(|c| c.is_control())
        .map(|c| Invalid(format!("contains the control character U+{:04X}", c as u32)))
}

/// A name someone gives a thing (a workspace, a source): trimmed, not empty, at most a given
/// number of characters, and without control characters (line breaks included), since names end
/// up in log lines, e-mail subjects and pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// The longest name of a workspace, a source or a chat's owner, in characters.
    pub const MAX_CHARS: usize = 200;

    /// A name of at most [`Name::MAX_CHARS`].
    pub fn parse(value: &str) -> Result<Name, Invalid> {
        Name::parse_within(value, Name::MAX_CHARS)
    }

    /// A name of at most `max_chars` (for what is not a name proper, such as an address's text).
    pub fn parse_within(value: &str, max_chars: usize) -> Result<Name, Invalid> {
        let value = value.trim();
        if value.is_empty() {
            return Err(Invalid("must not be empty".into()));
        }
        if value.chars().count() > max_chars {
            return Err(Invalid(format!("must be at most {max_chars} characters")));
        }
        if let Some(refusal) = control_character(value) {
            return Err(refusal);
        }
        Ok(Name(value.to_string()))
    }

    pub fn into_string(self) -> String {
        self.0
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name the store wrote after it was checked, read back as it is (a row edited by hand is
    /// shown as it was written: every page and e-mail escapes what it shows).
    pub fn stored(value: String) -> Name {
        Name(value)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An e-mail address the mailer can send to: parsed by the mail library (`lettre`), with a plain
/// local part (no quoted string) and a domain name with a dot (no IP literal, no bare host), so
/// that what is accepted here is what an SMTP server will take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn into_string(self) -> String {
        self.0
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An address the store wrote after it was checked, read back. One that no longer passes
    /// the check (a row edited by hand, an older, laxer check) is kept as it was, and logged: the
    /// mail server is the judge of it then, and its refusal reaches the outbox's log.
    pub fn stored(value: String) -> EmailAddress {
        value.parse().unwrap_or_else(|e: Invalid| {
            tracing::error!(error = %e, "a stored e-mail address does not pass the check; kept as it is");
            EmailAddress(value)
        })
    }
}

impl FromStr for EmailAddress {
    type Err = Invalid;

    fn from_str(value: &str) -> Result<Self, Invalid> {
        let value = Name::parse_within(value, 320)?.into_string();
        let refuse = |why: &str| Invalid(format!("{value:?} is not an e-mail address: {why}"));
        let address = value.parse::<lettre::Address>().map_err(|e| refuse(&e.to_string()))?;
        if address.user().starts_with('"') {
            return Err(refuse("a quoted local part is not accepted"));
        }
        if address.domain().starts_with('[') {
            return Err(refuse("the domain must be a name, not an address"));
        }
        if !address.domain().contains('.') {
            return Err(refuse("the domain must be a full name, such as example.com"));
        }
        Ok(EmailAddress(address.to_string()))
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Account {
    /// The account's details as given, each at most 512 bytes and without control characters;
    /// a refusal names the detail at fault (`full_name`, `email` or `phone`).
    pub fn checked(self) -> Result<Account, (&'static str, Invalid)> {
        for (key, value) in [("full_name", &self.full_name), ("email", &self.email), ("phone", &self.phone)] {
            if let Some(value) = value {
                if value.len() > 512 {
                    return Err((key, Invalid("must be at most 512 bytes".into())));
                }
                if let Some(refusal) = control_character(value) {
                    return Err((key, refusal));
                }
            }
        }
        Ok(self)
    }
}

/// How long a delivery may take, written like `10s` or `2m`: between 1 second and 2 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryTimeout(Duration);

impl DeliveryTimeout {
    pub const MIN: Duration = Duration::from_secs(1);
    pub const MAX: Duration = Duration::from_secs(120);

    pub fn duration(self) -> Duration {
        self.0
    }
}

impl FromStr for DeliveryTimeout {
    type Err = Invalid;

    fn from_str(value: &str) -> Result<Self, Invalid> {
        let t = humantime::parse_duration(value.trim())
            .map_err(|e| Invalid(format!("{value:?} is not a duration like \"10s\": {e}")))?;
        if !(Self::MIN..=Self::MAX).contains(&t) {
            return Err(Invalid("must be between 1s and 2m".into()));
        }
        Ok(DeliveryTimeout(t))
    }
}

/// How long a media link (`download_url`) works after its payload is made: a workspace's
/// setting, from five minutes to thirty days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLinkTtl(Duration);

impl MediaLinkTtl {
    pub const MIN: Duration = Duration::from_secs(5 * 60);
    pub const MAX: Duration = Duration::from_secs(30 * 24 * 3600);
    pub const DEFAULT: MediaLinkTtl = MediaLinkTtl(Duration::from_secs(24 * 3600));

    /// A value the store wrote after it was checked, read back (milliseconds); one outside the
    /// bounds (a row edited by hand) is brought within them, and logged.
    pub fn stored(ms: i64) -> MediaLinkTtl {
        let (min, max) = (Self::MIN.as_millis() as i64, Self::MAX.as_millis() as i64);
        let within = ms.clamp(min, max);
        if within != ms {
            tracing::error!(
                media_link_ttl_ms = ms,
                used = within,
                "a stored media link lifetime is out of bounds"
            );
        }
        MediaLinkTtl(Duration::from_millis(within as u64))
    }

    pub fn duration(self) -> Duration {
        self.0
    }

    pub fn millis(self) -> i64 {
        self.0.as_millis() as i64
    }
}

impl FromStr for MediaLinkTtl {
    type Err = Invalid;

    fn from_str(value: &str) -> Result<Self, Invalid> {
        let t = humantime::parse_duration(value.trim())
            .map_err(|e| Invalid(format!("{value:?} is not a duration like \"24h\": {e}")))?;
        if !(Self::MIN..=Self::MAX).contains(&t) {
            return Err(Invalid("must be between 5m and 30days".into()));
        }
        Ok(MediaLinkTtl(t))
    }
}

impl fmt::Display for MediaLinkTtl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// How long a workspace keeps its messages: for good (`keep`, the default), or a duration of at
/// least a day (`90days`), after which a message no open window needs is deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageRetention(Option<Duration>);

impl MessageRetention {
    pub const KEEP: MessageRetention = MessageRetention(None);
    pub const MIN: Duration = Duration::from_secs(24 * 3600);
    pub const MAX: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

    /// A value the store wrote after it was checked (milliseconds, `None`: keep).
    pub fn stored(ms: Option<i64>) -> MessageRetention {
        MessageRetention(ms.map(|ms| Duration::from_millis(ms.max(0) as u64)))
    }

    pub fn duration(self) -> Option<Duration> {
        self.0
    }

    pub fn millis(self) -> Option<i64> {
        self.0.map(|d| d.as_millis() as i64)
    }
}

impl FromStr for MessageRetention {
    type Err = Invalid;

    fn from_str(value: &str) -> Result<Self, Invalid> {
        lifetime(value, "keep", (Self::MIN, Self::MAX), "1day and 10years").map(MessageRetention)
    }
}

impl fmt::Display for MessageRetention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_lifetime(f, self.0, "keep")
    }
}

/// How long a chat's transcript link works after it was made or last rotated: for good (`never`,
/// the default) or a duration from an hour to ten years; after that it answers 410 Gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranscriptLinkTtl(Option<Duration>);

impl TranscriptLinkTtl {
    pub const NEVER: TranscriptLinkTtl = TranscriptLinkTtl(None);
    pub const MIN: Duration = Duration::from_secs(3600);
    pub const MAX: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

    /// A value the store wrote after it was checked (milliseconds, `None`: never).
    pub fn stored(ms: Option<i64>) -> TranscriptLinkTtl {
        TranscriptLinkTtl(ms.map(|ms| Duration::from_millis(ms.max(0) as u64)))
    }

    pub fn duration(self) -> Option<Duration> {
        self.0
    }

    pub fn millis(self) -> Option<i64> {
        self.0.map(|d| d.as_millis() as i64)
    }

    /// When a link made at `issued_at` stops working, if it does.
    pub fn expires(self, issued_at: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0.map(|d| issued_at + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
    }
}

impl FromStr for TranscriptLinkTtl {
    type Err = Invalid;

    fn from_str(value: &str) -> Result<Self, Invalid> {
        lifetime(value, "never", (Self::MIN, Self::MAX), "1h and 10years").map(TranscriptLinkTtl)
    }
}

impl fmt::Display for TranscriptLinkTtl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_lifetime(f, self.0, "never")
    }
}

/// A lifetime as a setting takes it: the word for "for good", or a duration within `bounds`.
fn lifetime(
    value: &str,
    forever: &str,
    bounds: (Duration, Duration),
    range: &str,
) -> Result<Option<Duration>, Invalid> {
    let value = value.trim();
    if value == forever {
        return Ok(None);
    }
    let d = humantime::parse_duration(value).map_err(|e| {
        Invalid(format!("{value:?} is neither {forever:?} nor a duration like \"90days\": {e}"))
    })?;
    if !(bounds.0..=bounds.1).contains(&d) {
        return Err(Invalid(format!("must be {forever:?}, or between {range}")));
    }
    Ok(Some(d))
}

/// A lifetime as it was likely written: whole days as `90days` (humantime would say
/// `2months 29days 2h 52m 48s`, its month being 30.44 days), whole hours as `36h`.
fn show_lifetime(f: &mut fmt::Formatter<'_>, d: Option<Duration>, forever: &str) -> fmt::Result {
    match d.map(|d| d.as_secs()) {
        None => f.write_str(forever),
        Some(86_400) => f.write_str("1day"),
        Some(s) if s % 86_400 == 0 => write!(f, "{}days", s / 86_400),
        Some(s) if s % 3_600 == 0 => write!(f, "{}h", s / 3_600),
        Some(_) => write!(f, "{}", humantime::format_duration(d.unwrap_or_default())),
    }
}

/// How many characters of note one bundle part may hold: at least 500 (room for a message and
/// the link), at most 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteMaxChars(u32);

impl NoteMaxChars {
    pub const MIN: u64 = 500;
    pub const MAX: u64 = 1_000_000;
    /// Where bundles are cut unless a webhook says otherwise: HubSpot notes take 65,536 characters.
    pub const DEFAULT: NoteMaxChars = NoteMaxChars(60_000);

    /// A value the store wrote after it was checked, read back; one outside the bounds (a row
    /// edited by hand) is brought within them, and logged.
    pub fn stored(value: i64) -> NoteMaxChars {
        let within = value.clamp(Self::MIN as i64, Self::MAX as i64);
        if within != value {
            tracing::error!(note_max_chars = value, used = within, "a stored note length is out of bounds");
        }
        NoteMaxChars(within as u32)
    }

    pub fn checked(value: u64) -> Result<NoteMaxChars, Invalid> {
        if !(Self::MIN..=Self::MAX).contains(&value) {
            return Err(Invalid(format!("must be between {} and {} (got {value})", Self::MIN, Self::MAX)));
        }
        Ok(NoteMaxChars(value as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl FromStr for NoteMaxChars {
    type Err = Invalid;

    fn from_str(value: &str) -> Result<Self, Invalid> {
        let n =
            value.trim().parse::<u64>().map_err(|_| Invalid(format!("{value:?} is not a whole number")))?;
        NoteMaxChars::checked(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_for_good_or_within_their_bounds() {
        assert_eq!("keep".parse::<MessageRetention>(), Ok(MessageRetention::KEEP));
        assert_eq!("90days".parse::<MessageRetention>().unwrap().to_string(), "90days");
        assert_eq!("24h".parse::<MessageRetention>().unwrap().to_string(), "1day");
        assert_eq!("36h".parse::<MessageRetention>().unwrap().to_string(), "36h");
        assert!("2h".parse::<MessageRetention>().is_err(), "under a day");
        assert!("never".parse::<MessageRetention>().is_err(), "not its word");
        assert_eq!("never".parse::<TranscriptLinkTtl>(), Ok(TranscriptLinkTtl::NEVER));
        assert!("5m".parse::<TranscriptLinkTtl>().is_err());
        let week = "7days".parse::<TranscriptLinkTtl>().unwrap();
        let issued = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(week.expires(issued), Some(issued + chrono::Duration::days(7)));
        assert_eq!(TranscriptLinkTtl::NEVER.expires(issued), None);
        assert_eq!(TranscriptLinkTtl::stored(week.millis()), week);
    }

    #[test]
    fn a_media_link_lasts_from_five_minutes_to_thirty_days() {
        assert_eq!("24h".parse::<MediaLinkTtl>(), Ok(MediaLinkTtl::DEFAULT));
        assert_eq!("2h".parse::<MediaLinkTtl>().map(MediaLinkTtl::millis), Ok(7_200_000));
        for bad in ["4m", "31days", "soon", ""] {
            assert!(bad.parse::<MediaLinkTtl>().is_err(), "{bad}");
        }
        assert_eq!(MediaLinkTtl::stored(1), MediaLinkTtl(MediaLinkTtl::MIN));
        assert_eq!(MediaLinkTtl::DEFAULT.to_string(), "1day");
    }

    #[test]
    fn a_note_limit_leaves_room_for_a_message() {
        assert_eq!("500".parse::<NoteMaxChars>().map(NoteMaxChars::get), Ok(500));
        assert_eq!(NoteMaxChars::checked(32_000).map(NoteMaxChars::get), Ok(32_000));
        for bad in ["499", "0", "-1", "1000001", "60k", ""] {
            assert!(bad.parse::<NoteMaxChars>().is_err(), "{bad}");
        }
    }

    #[test]
    fn owner_addresses_are_parsed_not_pattern_matched() {
        for bad in [
            "\">‹svg onload=x>\"@x.com",
            "a@[127.0.0.1]",
            "a@localhost.",
            "a@localhost",
            "a b@x.com",
            "a@x..com",
            "<svg>@x.com",
            "a@x.com\r\nBcc: b@y.com",
        ] {
            assert!(bad.parse::<EmailAddress>().is_err(), "{bad}");
        }
        for good in ["owner@acme.example", "first.last+tag@mail.example.co.jp", "ünï@例え.jp"] {
            assert_eq!(good.parse::<EmailAddress>().unwrap().into_string(), good);
        }
    }

    #[test]
    fn names_with_line_breaks_are_refused() {
        assert!(Name::parse("Acme\r\nINFO forged").is_err());
        assert!(Name::parse("Acme\u{0}").is_err());
        assert_eq!(Name::parse("  Acme GmbH ").unwrap().into_string(), "Acme GmbH");
        assert_eq!(Name::parse_within("ab", 1), Err(Invalid("must be at most 1 characters".into())));
    }

    #[test]
    fn accounts_name_the_detail_at_fault() {
        let account = Account { phone: Some("+1\n2".into()), ..Account::default() };
        assert_eq!(account.checked().unwrap_err().0, "phone");
        let long = Account { full_name: Some("x".repeat(513)), ..Account::default() };
        assert_eq!(long.checked().unwrap_err().0, "full_name");
    }

    #[test]
    fn timeouts_stay_between_a_second_and_two_minutes() {
        assert_eq!("10s".parse::<DeliveryTimeout>().unwrap().duration(), Duration::from_secs(10));
        assert!("0s".parse::<DeliveryTimeout>().is_err());
        assert!("3m".parse::<DeliveryTimeout>().is_err());
        assert!("soon".parse::<DeliveryTimeout>().is_err());
    }
}
