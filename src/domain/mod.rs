//! The vocabulary shared by every stage: granularities, directions, parties, and the newtypes that
//! turn untrusted strings into values that are known to be valid.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

mod access;
mod chat;
pub mod conversation;
pub mod credentials;
mod delivery;
mod input;
mod media;
pub mod password;
pub mod reply;
pub mod schedule;
pub mod session;
mod switch;

pub use access::{Need, Principal, Refusal, Role};
pub use chat::{Chat, ChatInfo, FirstMessages, MessageEdit, NewMessage, StoredMessage, named_sender};
pub use conversation::{ClosedBy, ConversationMax, ConversationSilence};
pub use delivery::{AttemptFailure, SwitchedOff};
pub use input::{
    DeliveryTimeout, EmailAddress, Invalid, MediaLinkTtl, MessageRetention, Name, NoteMaxChars,
    TranscriptLinkTtl,
};
pub use media::{Attachment, AttachmentKind, LinkKey, LinkRefusal, Media, linkable, links_media};
pub use switch::{Backlog, OffMode, Switch};

/// How a webhook receives messages: one call per message, one bundle per chat per window, or one
/// bundle per chat per conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Granularity {
    /// "Don't aggregate": every message is delivered at once.
    #[serde(rename = "none")]
    None,
    #[serde(rename = "1h")]
    Hours1,
    #[serde(rename = "6h")]
    Hours6,
    #[serde(rename = "12h")]
    Hours12,
    #[serde(rename = "24h")]
    Hours24,
    /// One bundle per chat when its conversation ends ([`conversation`]).
    #[serde(rename = "conversation")]
    Conversation,
}

impl Granularity {
    pub const ALL: [Granularity; 6] = [
        Granularity::None,
        Granularity::Hours1,
        Granularity::Hours6,
        Granularity::Hours12,
        Granularity::Hours24,
        Granularity::Conversation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::None => "none",
            Granularity::Hours1 => "1h",
            Granularity::Hours6 => "6h",
            Granularity::Hours12 => "12h",
            Granularity::Hours24 => "24h",
            Granularity::Conversation => "conversation",
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Granularity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Granularity::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| format!("must be one of none, 1h, 6h, 12h, 24h, conversation (got {s:?})"))
    }
}

/// Whether the business received the message from the customer or sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Received,
    Sent,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Received => "received",
            Direction::Sent => "sent",
        }
    }
}

impl FromStr for Direction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "received" => Ok(Direction::Received),
            "sent" => Ok(Direction::Sent),
            other => Err(format!("must be \"received\" or \"sent\" (got {other:?})")),
        }
    }
}

/// A sender or recipient of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub full_name: Option<String>,
    pub phone: Option<String>,
}

impl Party {
    /// What a note or a page calls them: their name, else their number (`None`: neither).
    pub fn shown_as(&self) -> Option<&str> {
        [&self.full_name, &self.phone]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .find(|s| !s.trim().is_empty())
    }
}

/// The business account a message belongs to (the payload's `whatsapp_account`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// What a webhook subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Chat messages, immediately or bundled according to the granularity.
    Messages,
    /// Session status changes, always immediately.
    SessionStatus,
}

impl Event {
    pub const ALL: [Event; 2] = [Event::Messages, Event::SessionStatus];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Messages => "messages",
            Event::SessionStatus => "session_status",
        }
    }
}

impl FromStr for Event {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        Event::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| Invalid(format!("must be messages or session_status (got {s:?})")))
    }
}

/// The source key of the JSON API's chats (every other chat's is its source's id).
pub const API_SOURCE_KEY: &str = "api";

/// The kind of a connected inbound channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// WhatsApp through Twilio.
    Twilio,
    /// WhatsApp through Meta's Cloud API.
    Whatsapp,
    /// A WeChat Official Account.
    Wechat,
    /// Chatwoot, or a MessageHub built on it.
    Chatwoot,
    /// Zoho Desk's instant messaging.
    ZohoDesk,
}

impl SourceKind {
    pub const ALL: [SourceKind; 5] = [
        SourceKind::Twilio,
        SourceKind::Whatsapp,
        SourceKind::Wechat,
        SourceKind::Chatwoot,
        SourceKind::ZohoDesk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Twilio => "twilio",
            SourceKind::Whatsapp => "whatsapp",
            SourceKind::Wechat => "wechat",
            SourceKind::Chatwoot => "chatwoot",
            SourceKind::ZohoDesk => "zoho_desk",
        }
    }

    /// The channel its messages carry, where one kind of source has one channel (Chatwoot and
    /// Zoho Desk say per conversation).
    pub fn channel(self) -> Option<&'static str> {
        match self {
            SourceKind::Twilio | SourceKind::Whatsapp => Some("whatsapp"),
            SourceKind::Wechat => Some("wechat"),
            SourceKind::Chatwoot | SourceKind::ZohoDesk => None,
        }
    }

    /// The path segment of its inbound URL, `/hooks/{segment}/{source_id}`.
    pub fn path(self) -> &'static str {
        match self {
            SourceKind::ZohoDesk => "zoho-desk",
            other => other.as_str(),
        }
    }

    pub fn from_path(segment: &str) -> Option<SourceKind> {
        SourceKind::ALL.into_iter().find(|k| k.path() == segment)
    }
}

impl FromStr for SourceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SourceKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!("must be one of twilio, whatsapp, wechat, chatwoot, zoho_desk (got {s:?})")
        })
    }
}

/// Where a chat's session stands, in Zoho Desk's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionStatus {
    /// The customer started the conversation.
    Created,
    /// Waiting for an agent or bot.
    Open,
    /// An agent or bot is handling it.
    OnProgress,
    /// Picked up, no reply sent yet.
    OnHold,
    Ended,
    /// No messages can be exchanged.
    Blocked,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Created => "CREATED",
            SessionStatus::Open => "OPEN",
            SessionStatus::OnProgress => "ON_PROGRESS",
            SessionStatus::OnHold => "ON_HOLD",
            SessionStatus::Ended => "ENDED",
            SessionStatus::Blocked => "BLOCKED",
        }
    }

    pub fn parse(s: &str) -> Option<SessionStatus> {
        [
            SessionStatus::Created,
            SessionStatus::Open,
            SessionStatus::OnProgress,
            SessionStatus::OnHold,
            SessionStatus::Ended,
            SessionStatus::Blocked,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Where a message moves a session: a customer's message after the session ENDED starts a
    /// new one (CREATED); the business's message moves an open session (CREATED, OPEN, ON_HOLD)
    /// to ON_PROGRESS. Anything else leaves it where it is (a BLOCKED chat stays blocked).
    pub fn after(self, direction: Direction) -> Option<SessionStatus> {
        match (self, direction) {
            (SessionStatus::Ended, Direction::Received) => Some(SessionStatus::Created),
            (SessionStatus::Created | SessionStatus::Open | SessionStatus::OnHold, Direction::Sent) => {
                Some(SessionStatus::OnProgress)
            }
            _ => None,
        }
    }
}

/// How long a channel lets a business reply freely after the customer's last message: WhatsApp
/// 24 hours, WeChat 48 hours; other channels set no such window.
pub fn reply_window(channel: &str) -> Option<std::time::Duration> {
    match channel {
        "whatsapp" => Some(std::time::Duration::from_secs(24 * 3600)),
        "wechat" => Some(std::time::Duration::from_secs(48 * 3600)),
        _ => None,
    }
}

/// A WeChat official account's type, which decides what it may still send a follower once the
/// 48-hour reply window has lapsed (Zoho Desk's WeChat guide): a service account up to 4
/// messages a month, a subscription account one a day. An enterprise account, followed only by
/// its organisation's approved members, is given no limit of its own there, so the general one
/// applies: 4 a month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    Subscription,
    Service,
    Enterprise,
}

/// How often a reply allowance renews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Daily,
    Monthly,
}

impl AccountType {
    pub const ALL: [AccountType; 3] =
        [AccountType::Subscription, AccountType::Service, AccountType::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Subscription => "subscription",
            AccountType::Service => "service",
            AccountType::Enterprise => "enterprise",
        }
    }

    pub fn parse(s: &str) -> Option<AccountType> {
        AccountType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// How many messages the account may send a follower after the reply window, per period.
    pub fn allowance(self) -> (u32, Renewal) {
        match self {
            AccountType::Subscription => (1, Renewal::Daily),
            AccountType::Service | AccountType::Enterprise => (4, Renewal::Monthly),
        }
    }

    /// The start (ms) of the allowance period `t` falls in, by WeChat's own clock (China
    /// Standard Time): the day or the calendar month.
    pub fn period_of(self, t: chrono::DateTime<chrono::Utc>) -> i64 {
        use chrono::{Datelike, TimeZone};
        let local = t.with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
        let first = match self.allowance().1 {
            Renewal::Daily => local,
            Renewal::Monthly => local.with_day(1).expect("every month has a first day"),
        };
        let midnight = first.and_hms_opt(0, 0, 0).expect("midnight exists");
        // China has kept one offset without daylight saving since 1991: midnight is unambiguous.
        chrono_tz::Asia::Shanghai
            .from_local_datetime(&midnight)
            .earliest()
            .map_or(0, |m| m.timestamp_millis())
    }
}

/// The language chatbundle writes a workspace's notes, e-mails and pages in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    #[default]
    En,
    Ja,
}

impl Locale {
    pub const ALL: [Locale; 2] = [Locale::En, Locale::Ja];

    pub fn as_str(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Ja => "ja",
        }
    }
}

impl FromStr for Locale {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        Locale::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| Invalid(format!("must be one of en, ja (got {s:?})")))
    }
}

/// An IANA time zone name that `chrono-tz` knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timezone(chrono_tz::Tz);

impl Timezone {
    pub fn tz(&self) -> chrono_tz::Tz {
        self.0
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

impl Default for Timezone {
    fn default() -> Self {
        Timezone(chrono_tz::UTC)
    }
}

impl fmt::Display for Timezone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Timezone {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<chrono_tz::Tz>().map(Timezone).map_err(|_| Invalid(format!("unknown IANA time zone {s:?}")))
    }
}

/// An outbound endpoint: an absolute `http` or `https` URL with a host. It may hold a password
/// (`https://user:secret@host/…`), so it is shown only [`masked`](WebhookUrl::masked), also by
/// `Debug`; `as_str` is for sending.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(reqwest::Url);

impl WebhookUrl {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The URL as it may be shown: its password, if any, as [`MASK`].
    pub fn masked(&self) -> String {
        masked_url(self.as_str())
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.0
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WebhookUrl").field(&self.masked()).finish()
    }
}

impl FromStr for WebhookUrl {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = reqwest::Url::parse(s).map_err(|e| Invalid(format!("not a valid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Invalid(format!("scheme must be http or https (got {:?})", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Invalid("must have a host".into()));
        }
        if url.fragment().is_some() {
            return Err(Invalid("must not have a #fragment".into()));
        }
        Ok(WebhookUrl(url))
    }
}

/// Ids that cross the store's seam, each its own type, so one can never be passed where another
/// belongs. They serialise as plain strings (or a number, for chats): the API's JSON is unchanged.
///
/// An id from outside (a URL, a request body) is parsed with `FromStr` or `Deserialize`, which
/// accept only what chatbundle could have made: one of the kind's prefixes, `_`, then letters,
/// digits and `-`, 64 characters at most (so no NUL, which PostgreSQL refuses outright, ever
/// reaches a store). An id the store hands back, or one made from parts chatbundle made, is taken
/// as it is with `stored`.
macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal $(, $other:literal)*) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String)]
        pub struct $name(String);

        impl $name {
            /// A fresh random id with this kind's prefix.
            pub fn generate() -> Self {
                $name(new_id($prefix))
            }

            /// An id as chatbundle keeps it (read from the store, or built from parts it made):
            /// not checked again.
            pub fn stored(id: impl Into<String>) -> Self {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Invalid;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if [$prefix $(, $other)*].iter().any(|prefix| well_formed_id(s, prefix)) {
                    Ok($name(s.to_string()))
                } else {
                    Err(Invalid(concat!("is not an id chatbundle made (", $prefix, "_…)").into()))
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = Invalid;

            fn try_from(id: String) -> Result<Self, Self::Error> {
                id.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// Whether `id` could be one chatbundle made with `prefix` (see [`text_id`]).
fn well_formed_id(id: &str, prefix: &str) -> bool {
    id.len() <= 64
        && id.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('_')).is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

text_id!(
    /// A workspace's id, `ws_…`.
    WorkspaceId,
    "ws"
);
text_id!(
    /// A webhook's id, `wh_…`.
    WebhookId,
    "wh"
);
text_id!(
    /// A source's id, `src_…`: how the admin API and the page name it. Sources made before
    /// inbound keys existed have their id as their [`InboundKey`] too, until it is rotated.
    SourceId,
    "src"
);

impl SourceId {
    /// A fresh id for a new source, all random like its inbound key (24 base-62 characters):
    /// logs show ids shortened ([`crate::telemetry`]), and a random id is told apart by its first
    /// characters where a time-ordered one is not.
    pub fn unguessable() -> Self {
        SourceId(format!("src_{}", random_token(24)))
    }
}

/// The secret part of a source's inbound URL, `/hooks/{kind}/{key}`. For a channel that signs
/// nothing (Zoho Desk, Chatwoot without a secret) it is all that keeps others from posting
/// messages there, so it goes nowhere but into the inbound URL shown to the source's admins: not
/// into payloads, notes, e-mails, the activity log or the logs. Rotating it gives the URL a new
/// key; the old one answers 404.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InboundKey(String);

impl InboundKey {
    /// A fresh key: `in_` and 32 random base-62 characters (about 190 bits).
    pub fn generate() -> Self {
        InboundKey(format!("in_{}", random_token(32)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key as a URL gives it, if it could be one: `in_…`, or the `src_…` of a source made
    /// before keys existed; letters and digits after the prefix, 64 characters at most. Anything
    /// else finds nothing before a store is asked.
    pub fn parse(segment: &str) -> Option<InboundKey> {
        let rest = segment.strip_prefix("in_").or_else(|| segment.strip_prefix("src_"))?;
        (segment.len() <= 64 && !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| InboundKey(segment.to_string()))
    }

    /// The key as stored (the store's rows hold only keys it made).
    pub fn stored(key: String) -> Self {
        InboundKey(key)
    }
}

text_id!(
    /// A person's id, `usr_…`: a workspace's member, known by an e-mail address.
    UserId,
    "usr"
);

text_id!(
    /// A workspace's API token's id, `tok_…` (not the token itself, which is shown once).
    TokenId,
    "tok"
);

text_id!(
    /// A delivery's id: the `webhook-id` header it is sent under (`msg_…`, `b_…`, `ses_…`).
    DeliveryId,
    "msg",
    "b",
    "ses",
    "test"
);

/// A chat's id in the store (the admin API's `/api/v1/chats/{id}`); the channel's own id for the
/// chat is [`crate::store::ChatInfo::external_id`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct ChatId(pub i64);

impl fmt::Display for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first or next attempt.
    Pending,
    Delivered,
    /// Given up after the endpoint rejected it `delivery.reject_after` times.
    Failed,
    /// Retried until the retention period ended.
    Expired,
    /// Dropped unsent: its webhook's owner chose not to send what waited while it was off.
    Discarded,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 5] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
        DeliveryStatus::Expired,
        DeliveryStatus::Discarded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Expired => "expired",
            DeliveryStatus::Discarded => "discarded",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// What a delivery carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// One message, to a webhook that does not aggregate.
    Message,
    /// One part of a chat's bundle for one window.
    Bundle,
    /// A session-status event.
    SessionStatus,
}

impl DeliveryKind {
    pub const ALL: [DeliveryKind; 3] =
        [DeliveryKind::Message, DeliveryKind::Bundle, DeliveryKind::SessionStatus];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Message => "message",
            DeliveryKind::Bundle => "bundle",
            DeliveryKind::SessionStatus => "session_status",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryKind> {
        DeliveryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What a password in a URL is shown as.
pub const MASK: &str = "****";

/// A URL as it may be shown again: a password in it (`https://user:secret@host/…`) becomes
/// `****`. Webhook URLs are set once and shown many times, in the API, on the page and in logs.
pub fn masked_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some(MASK));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// The URL a form or PATCH means, given the stored one. A password sent back masked (`****`, as
/// every URL is shown) stands for the stored password, also when the path or query changed; but
/// only for the same user at the same place (scheme, host and port): the stored password must not
/// follow the URL to another user or another server, so there it has to be typed again.
pub fn unmasked_url(submitted: &str, stored: &str) -> Result<String, Invalid> {
    let submitted = submitted.trim();
    if submitted == masked_url(stored) {
        return Ok(stored.to_string());
    }
    let Ok(mut given) = reqwest::Url::parse(submitted) else { return Ok(submitted.to_string()) };
    if given.password() != Some(MASK) {
        return Ok(submitted.to_string());
    }
    let kept = reqwest::Url::parse(stored).ok().filter(|old| {
        old.password().is_some()
            && old.username() == given.username()
            && old.scheme() == given.scheme()
            && old.host_str() == given.host_str()
            && old.port_or_known_default() == given.port_or_known_default()
    });
    match kept {
        Some(old) => {
            given.set_password(old.password()).map_err(|()| Invalid("cannot carry a password".into()))?;
            Ok(given.to_string())
        }
        None => Err(Invalid(format!(
            "its password is shown as {MASK}: type the password again for another user or host"
        ))),
    }
}

/// A new id with a kind prefix, e.g. `msg_0ujsszwN8NRY24YaXiTI`: eight characters of the
/// creation time (milliseconds, base 62 in ASCII order), then twelve random ones. Ids made later
/// sort later, so a new row's id lands at the end of its unique index (the same page for a whole
/// commit, where a random id dirties a page of its own); to clients they are as opaque as before.
pub fn new_id(prefix: &str) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    id_at(prefix, millis)
}

/// An id made at `millis` since the epoch (see [`new_id`]).
fn id_at(prefix: &str, mut millis: u64) -> String {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    // 62^8 milliseconds is about 6,900 years.
    let mut time = [b'0'; 8];
    for digit in time.iter_mut().rev() {
        *digit = DIGITS[(millis % 62) as usize];
        millis /= 62;
    }
    let time = std::str::from_utf8(&time).expect("ASCII digits");
    format!("{prefix}_{time}{}", random_token(12))
}

/// A random alphanumeric string, used for ids, ingest keys and transcript tokens.
pub fn random_token(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_keys_are_long_random_and_only_well_formed_ones_are_looked_up() {
        let key = InboundKey::generate();
        let random = key.as_str().strip_prefix("in_").expect("the prefix");
        assert_eq!(random.len(), 32);
        assert!(random.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(key, InboundKey::generate());
        assert_eq!(InboundKey::parse(key.as_str()), Some(key));
        assert!(InboundKey::parse("src_0123456789abcdefghijklmn").is_some(), "an older source's id");
        for bad in ["", "in_", "src_", "ws_abc", "in_a%00b", "in_a/b", &format!("in_{}", "a".repeat(62))] {
            assert_eq!(InboundKey::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_id_parses_only_as_chatbundle_makes_them() {
        let made = WorkspaceId::generate();
        assert_eq!(made.as_str().parse::<WorkspaceId>(), Ok(made.clone()));
        assert_eq!(serde_json::from_value::<WorkspaceId>(serde_json::json!(made.as_str())).unwrap(), made);
        let long = format!("ws_{}", "a".repeat(62));
        for bad in ["ws_\u{0}", "ws_a b", "ws_", "", "wh_x", "ws", "ws_a/b", "WS_a", long.as_str()] {
            assert!(bad.parse::<WorkspaceId>().is_err(), "{bad:?}");
            assert!(serde_json::from_value::<WorkspaceId>(serde_json::json!(bad)).is_err(), "{bad:?}");
        }
        assert!("wh_x".parse::<WebhookId>().is_ok() && "src_F\u{0}\u{1c}".parse::<SourceId>().is_err());
        for delivery in ["msg_1", "b_1-2", "ses_1"] {
            assert!(delivery.parse::<DeliveryId>().is_ok(), "{delivery}");
        }
        let refusal = "x".parse::<WebhookId>().unwrap_err().to_string();
        assert_eq!(refusal, "is not an id chatbundle made (wh_…)");
    }

    #[test]
    fn a_source_id_is_all_random_and_long() {
        let id = SourceId::unguessable();
        let random = id.as_str().strip_prefix("src_").expect("the prefix");
        assert_eq!(random.len(), 24);
        assert!(random.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(id, SourceId::unguessable());
    }

    #[test]
    fn a_customer_reopens_an_ended_session_and_the_business_answers_an_open_one() {
        use Direction::{Received, Sent};
        use SessionStatus::*;
        let moves: Vec<(SessionStatus, Direction, Option<SessionStatus>)> =
            [Created, Open, OnProgress, OnHold, Ended, Blocked]
                .into_iter()
                .flat_map(|s| [(s, Received, s.after(Received)), (s, Sent, s.after(Sent))])
                .filter(|(_, _, to)| to.is_some())
                .collect();
        assert_eq!(
            moves,
            [
                (Created, Sent, Some(OnProgress)),
                (Open, Sent, Some(OnProgress)),
                (OnHold, Sent, Some(OnProgress)),
                (Ended, Received, Some(Created)),
            ]
        );
    }

    #[test]
    fn ids_made_later_sort_later_and_keep_their_shape() {
        // Across a digit's carry, a long way apart, and at today's clock.
        let times = [0, 61, 62, 3_843, 3_844, 1_700_000_000_000, 1_700_000_000_001, 4_102_444_800_000];
        let ids: Vec<String> = times.iter().map(|t| id_at("msg", *t)).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
        for id in ids.iter().chain([&new_id("msg")]) {
            assert_eq!(id.len(), "msg_".len() + 20, "{id}");
            assert!(id["msg_".len()..].chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
        }
        let (a, b) = (id_at("msg", 5), id_at("msg", 5));
        assert_ne!(a, b, "ids made in the same millisecond differ by their random part");
    }

    #[test]
    fn granularity_round_trips_through_its_wire_name() {
        for g in Granularity::ALL {
            assert_eq!(g.as_str().parse::<Granularity>().unwrap(), g);
            assert_eq!(serde_json::to_value(g).unwrap(), g.as_str());
        }
        assert!("2h".parse::<Granularity>().is_err());
    }

    #[test]
    fn webhook_url_refuses_other_schemes_and_missing_hosts() {
        assert!("https://hooks.zapier.com/x".parse::<WebhookUrl>().is_ok());
        assert!("ftp://example.com".parse::<WebhookUrl>().is_err());
        assert!("http://".parse::<WebhookUrl>().is_err());
        assert!("not a url".parse::<WebhookUrl>().is_err());
    }

    #[test]
    fn passwords_in_urls_are_never_shown_again() {
        let stored = "https://zap:s3cr%40t@hooks.example.com/catch/1?x=1";
        let shown = masked_url(stored);
        assert_eq!(shown, "https://zap:****@hooks.example.com/catch/1?x=1");
        assert_eq!(unmasked_url(&shown, stored).unwrap(), stored, "sent back as shown: unchanged");
        assert_eq!(
            unmasked_url("https://other.example.com/x", stored).unwrap(),
            "https://other.example.com/x"
        );
        assert_eq!(masked_url("https://hooks.example.com/x"), "https://hooks.example.com/x");
        assert_eq!(
            unmasked_url("https://hooks.example.com/x", "https://hooks.example.com/x").unwrap(),
            "https://hooks.example.com/x"
        );
    }

    #[test]
    fn a_masked_password_follows_a_new_path_but_not_a_new_user_or_host() {
        let stored = "https://zap:s3cr%40t@hooks.example.com/catch/1?x=1";
        assert_eq!(
            unmasked_url("https://zap:****@hooks.example.com/catch/2", stored).unwrap(),
            "https://zap:s3cr%40t@hooks.example.com/catch/2",
            "a new path keeps the stored password, not the mask"
        );
        for elsewhere in [
            "https://other:****@hooks.example.com/catch/1",
            "https://zap:****@evil.example.com/catch/1",
            "http://zap:****@hooks.example.com/catch/1",
            "https://zap:****@hooks.example.com:8443/catch/1",
        ] {
            assert!(unmasked_url(elsewhere, stored).is_err(), "{elsewhere}");
        }
        assert!(unmasked_url("https://zap:****@hooks.example.com/x", "https://hooks.example.com/x").is_err());
        assert_eq!(
            unmasked_url("https://other:typed@hooks.example.com/x", stored).unwrap(),
            "https://other:typed@hooks.example.com/x",
            "a password typed again is taken as typed"
        );
    }

    #[test]
    fn timezone_accepts_iana_names_only() {
        assert_eq!("Asia/Kathmandu".parse::<Timezone>().unwrap().name(), "Asia/Kathmandu");
        assert!("Mars/Olympus".parse::<Timezone>().is_err());
    }

    #[test]
    fn ids_carry_their_prefix_and_differ() {
        let a = new_id("ws");
        assert!(a.starts_with("ws_") && a.len() == 23);
        assert_ne!(a, new_id("ws"));
    }
}
