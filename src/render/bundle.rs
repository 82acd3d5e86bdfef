//! Bundles: one chat's messages of one window as a single payload, with a note to paste into a
//! CRM. A bundle over 500 messages or the webhook's `note_max_chars` characters of note (60,000
//! unless set: HubSpot notes hold 65,536, Salesforce's 32,000) is cut into parts, each a
//! complete payload whose note starts "(1/3)". Characters are counted as CRMs count them
//! (`char`s, not bytes), and a cut falls between messages, never inside a character or a tag.

use askama::Template;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{ChatObject, MessageObject, chat_url, media, timestamp};
use crate::domain::{Account, Locale, named_sender, new_id};
use crate::domain::{Chat, StoredMessage};
use crate::words::{NoteWords as Words, note_words as words};

/// Where a bundle is cut into parts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_messages: usize,
    /// Characters of the HTML note (`aggregation`), link included.
    pub max_note_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_messages: 500, max_note_chars: 60_000 }
    }
}

/// One chat's messages of one window, ready to render.
pub struct BundleInput<'a> {
    pub public_url: &'a str,
    pub timezone: Tz,
    /// The workspace's language: the note's words and date format.
    pub locale: Locale,
    /// The workspace's account, used when the messages name none.
    pub account: &'a Account,
    pub chat: &'a Chat,
    /// The chat's first message ever, to tell whether this bundle holds it.
    pub first_message_seq: Option<i64>,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// Ordered by (timestamp, message id).
    pub messages: &'a [StoredMessage],
    /// For a webhook whose `media` is `link`: how its media links are made.
    pub links: Option<super::media::MediaLinks<'a>>,
    /// For a conversation's bundle: why it closed (the payload's `closed_by`).
    pub closed_by: Option<crate::domain::ClosedBy>,
}

/// One rendered part.
#[derive(Debug, Clone)]
pub struct Part {
    /// Shared by every part of the bundle.
    pub bundle_id: String,
    pub part: u32,
    pub parts: u32,
    pub payload: Vec<u8>,
}

#[derive(Template)]
#[template(path = "note_line.html")]
struct NoteLine<'a> {
    w: &'a Words,
    sender: &'a str,
    at: &'a str,
    pieces: Vec<&'a str>,
}

#[derive(Template)]
#[template(path = "note.html")]
struct Note<'a> {
    w: &'a Words,
    /// "(1/3)" when the bundle has parts.
    marker: Option<String>,
    lines: &'a [String],
    chat_url: &'a str,
}

struct TextLine<'a> {
    sender: String,
    at: String,
    text: std::borrow::Cow<'a, str>,
}

#[derive(Template)]
#[template(path = "note.txt")]
struct NoteText<'a> {
    w: &'a Words,
    marker: Option<String>,
    lines: Vec<TextLine<'a>>,
    chat_url: &'a str,
}

/// Room kept in each line for a part's marker, "(99999/99999)<br/>".
const MARKER_ROOM: usize = 18;

/// Where a part ends: before the line that would take it over either limit, with `fixed`
/// characters (the link, the marker) in every part.
fn cut(lines: &[String], fixed: usize, limits: Limits) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut chars) = (0, fixed);
    for (i, line) in lines.iter().enumerate() {
        let add = line.chars().count() + if i > start { 5 } else { 0 };
        if i > start && (i - start == limits.max_messages || chars + add > limits.max_note_chars) {
            ranges.push(start..i);
            start = i;
            chars = fixed + line.chars().count();
        } else {
            chars += add;
        }
    }
    if start < lines.len() {
        ranges.push(start..lines.len());
    }
    ranges
}

/// The link a bundle's note ends with: the transcript, opened at `at` (the part's first
/// message), with the bundle's messages (`from` to `to`, by position) marked.
pub fn bundle_link(public_url: &str, token: &str, at: i64, from: i64, to: i64) -> String {
    format!("{}?at={at}&from={from}&to={to}#m{at}", chat_url(public_url, token))
}

#[derive(Serialize)]
struct BundlePayload<'a> {
    bundle_id: &'a str,
    part: u32,
    parts: u32,
    channel: &'a str,
    window_start: String,
    window_end: String,
    /// A conversation's bundle: `session_end`, `silence`, `max` or `flush`.
    #[serde(skip_serializing_if = "Option::is_none")]
    closed_by: Option<&'static str>,
    whatsapp_account: &'a Account,
    /// The chat's transcript opened at this part, its messages marked: the note's link.
    /// (`chat.chat_url` is the chat's own link, the same in every payload of the chat.)
    bundle_url: &'a str,
    chat: ChatObject<'a>,
    messages: Vec<MessageObject<'a>>,
    first_message_timestamp: String,
    last_message_timestamp: String,
    message_count: usize,
    aggregation: String,
    aggregation_text: String,
}

/// Who a note line says a message is from: [`named_sender`]'s name, else number.
fn sender_name(message: &StoredMessage, account: &Account, w: &Words) -> String {
    let sender = named_sender(message.direction, &message.sender, message.account.as_ref(), account);
    sender.shown_as().unwrap_or(w.unknown_sender).to_string()
}

/// The longest a sender's name is shown in a note line that does not fit whole.
const SHORT_NAME_CHARS: usize = 64;

/// `text`'s first `keep` characters and an ellipsis, or `text` itself when it is no longer.
fn shortened(text: &str, keep: usize) -> std::borrow::Cow<'_, str> {
    if text.chars().count() <= keep {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(format!("{}…", text.chars().take(keep).collect::<String>()))
    }
}

/// Renders one note line within `max_chars`, never cutting the markup: a name too long for the
/// line is shortened first (to [`SHORT_NAME_CHARS`]), then the text, then the name further. A
/// sender's name may be 512 bytes, each `&` of it five characters once escaped: the limit holds
/// whatever the name.
fn note_line(w: &Words, account: &Account, message: &StoredMessage, at: &str, max_chars: usize) -> String {
    let render = |sender: &str, text: &str| {
        NoteLine { w, sender, at, pieces: text.lines().collect() }.render().expect("note lines render")
    };
    let fits = |line: &String| line.chars().count() <= max_chars;
    let name = &sender_name(message, account, w);
    let text = media::note_text(&message.text, &message.attachments, w);
    let line = render(name, &text);
    if fits(&line) {
        return line;
    }
    let mut sender = shortened(name, SHORT_NAME_CHARS);
    let mut line = render(&sender, &text);
    let (mut keep, mut shown) = (text.chars().count(), text.clone());
    while !fits(&line) && keep > 0 {
        keep = keep * 9 / 10;
        shown = shortened(&text, keep).into_owned().into();
        line = render(&sender, &shown);
    }
    let mut keep_name = sender.chars().count().min(SHORT_NAME_CHARS);
    while !fits(&line) && keep_name > 1 {
        keep_name = (keep_name * 9 / 10).min(keep_name - 1);
        sender = shortened(name, keep_name);
        line = render(&sender, &shown);
    }
    line
}

/// Renders a bundle as one or more complete parts.
pub fn render(input: &BundleInput, limits: Limits) -> Vec<Part> {
    let from = input.messages.iter().map(|m| m.seq).min().unwrap_or_default();
    let to = input.messages.iter().map(|m| m.seq).max().unwrap_or_default();
    let link = |at: i64| bundle_link(input.public_url, &input.chat.token, at, from, to);
    let w = words(input.locale);
    // The longest link any part can end with.
    let longest = Note { w, marker: None, lines: &[], chat_url: &link(to) }.render().expect("notes render");
    let footer_chars = longest.chars().count();
    let room = limits.max_note_chars.saturating_sub(footer_chars + MARKER_ROOM + 5).max(1);
    let local = |t: DateTime<Utc>| t.with_timezone(&input.timezone).format(w.note_time).to_string();
    let stamps: Vec<String> = input.messages.iter().map(|m| local(m.timestamp)).collect();
    let lines: Vec<String> =
        input.messages.iter().zip(&stamps).map(|(m, at)| note_line(w, input.account, m, at, room)).collect();

    // Cut into parts; once there are parts, each carries its marker too.
    let mut marker_chars = 0;
    let ranges = loop {
        let ranges = cut(&lines, footer_chars + marker_chars, limits);
        let needed = match ranges.len() {
            1 => 0,
            n => format!("({n}/{n})<br/>").chars().count(),
        };
        if needed <= marker_chars {
            break ranges;
        }
        marker_chars = needed;
    };

    let bundle_id = new_id("b");
    let parts = ranges.len() as u32;
    ranges
        .into_iter()
        .enumerate()
        .map(|(index, range)| {
            let messages = &input.messages[range.clone()];
            let first = messages.first().expect("parts are never empty");
            let last = messages.last().expect("parts are never empty");
            let is_new_chat =
                input.first_message_seq.is_some_and(|seq| messages.iter().any(|m| m.seq == seq));
            let marker = (parts > 1).then(|| format!("({}/{parts})", index + 1));
            let link = link(first.seq);
            let aggregation =
                Note { w, marker: marker.clone(), lines: &lines[range.clone()], chat_url: &link }
                    .render()
                    .expect("notes render");
            let aggregation_text = NoteText {
                w,
                marker,
                lines: messages
                    .iter()
                    .zip(&stamps[range.clone()])
                    .map(|(m, at)| TextLine {
                        sender: sender_name(m, input.account, w),
                        at: at.clone(),
                        text: media::note_text(&m.text, &m.attachments, w),
                    })
                    .collect(),
                chat_url: &link,
            }
            .render()
            .expect("notes render");
            let chat = ChatObject::new(input.chat, input.public_url, is_new_chat, input.window_end);
            let payload = BundlePayload {
                bundle_id: &bundle_id,
                part: index as u32 + 1,
                parts,
                channel: &first.channel,
                window_start: timestamp(input.window_start),
                window_end: timestamp(input.window_end),
                closed_by: input.closed_by.map(crate::domain::ClosedBy::as_str),
                whatsapp_account: first.account.as_ref().unwrap_or(input.account),
                bundle_url: &link,
                chat,
                messages: messages
                    .iter()
                    .map(|m| MessageObject::stored(m, input.locale, input.account, input.links.as_ref()))
                    .collect(),
                first_message_timestamp: timestamp(first.timestamp),
                last_message_timestamp: timestamp(last.timestamp),
                message_count: messages.len(),
                aggregation,
                aggregation_text,
            };
            Part {
                bundle_id: bundle_id.clone(),
                part: index as u32 + 1,
                parts,
                payload: serde_json::to_vec(&payload).expect("payloads always serialise"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Direction, Party};
    use serde_json::Value;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn chat() -> Chat {
        Chat {
            id: crate::domain::ChatId(7),
            external_id: "c-1".into(),
            full_name: Some("John Doe".into()),
            phone: Some("+97254000000".into()),
            is_group: false,
            responsible_name: Some("Amnon".into()),
            responsible_email: None,
            responsible_id: None,
            token: "tok123".into(),
            first_seen_at: at("2021-02-24T16:00:00Z"),
            token_issued_at: at("2021-02-24T16:00:00Z"),
            session_status: None,
            reply_window_expires_at: None,
            account_type: None,
            replies_used: None,
            channel_can_reply: None,
            source_key: "api".into(),
        }
    }

    fn message(seq: i64, minute: u32, text: &str) -> StoredMessage {
        StoredMessage {
            seq,
            message_id: format!("m-{seq}"),
            direction: Direction::Received,
            timestamp: at(&format!("2021-02-24T16:{minute:02}:29Z")),
            received_at: at(&format!("2021-02-24T16:{minute:02}:30Z")),
            sender: Party { full_name: Some("John Doe".into()), phone: Some("+97254000000".into()) },
            recipient: Party::default(),
            text: text.into(),
            account: None,
            channel: "whatsapp".into(),
            attachments: Vec::new(),
            reply_to_button: None,
            edited_at: None,
            trace_parent: None,
        }
    }

    fn render_with(messages: &[StoredMessage], tz: &str, limits: Limits) -> Vec<Value> {
        render_in(Locale::En, messages, tz, limits)
    }

    fn render_in(locale: Locale, messages: &[StoredMessage], tz: &str, limits: Limits) -> Vec<Value> {
        let account = Account {
            full_name: Some("Amnon Haha".into()),
            email: Some("amnon@acme.com".into()),
            phone: Some("+972500000000".into()),
        };
        let chat = chat();
        let input = BundleInput {
            public_url: "https://cb.example",
            timezone: tz.parse().unwrap(),
            locale,
            account: &account,
            chat: &chat,
            first_message_seq: Some(1),
            window_start: at("2021-02-24T16:00:00Z"),
            window_end: at("2021-02-24T17:00:00Z"),
            messages,
            links: None,
            closed_by: None,
        };
        render(&input, limits).into_iter().map(|p| serde_json::from_slice(&p.payload).unwrap()).collect()
    }

    #[test]
    fn a_sent_message_without_a_sender_is_the_accounts_in_the_note_and_the_payload() {
        let mut reply = message(2, 30, "on its way");
        reply.direction = Direction::Sent;
        reply.sender = Party::default();
        let parts = render_with(&[message(1, 25, "where is it?"), reply], "UTC", Limits::default());
        let note = parts[0]["aggregation"].as_str().unwrap();
        assert!(note.contains("from Amnon Haha on 2021-02-24 16:30: on its way"), "{note}");
        assert!(parts[0]["aggregation_text"].as_str().unwrap().contains("from Amnon Haha"));
        let sender = &parts[0]["messages"][1]["sender"];
        assert_eq!(
            (sender["full_name"].as_str(), sender["phone"].as_str()),
            (Some("Amnon Haha"), Some("+972500000000"))
        );
    }

    #[test]
    fn a_bundle_carries_timelinesai_keys_and_ours() {
        let parts =
            render_with(&[message(1, 25, "lorem ipsum"), message(2, 30, "dolor")], "UTC", Limits::default());
        assert_eq!(parts.len(), 1);
        let b = &parts[0];
        assert_eq!(b.as_object().unwrap().len(), 15, "no keys beyond the documented ones: {b}");
        assert!(b["bundle_id"].as_str().unwrap().starts_with("b_"));
        assert_eq!((b["part"].as_u64(), b["parts"].as_u64()), (Some(1), Some(1)));
        assert_eq!(b["window_start"], "2021-02-24T16:00:00+0000");
        assert_eq!(b["window_end"], "2021-02-24T17:00:00+0000");
        assert_eq!(b["first_message_timestamp"], "2021-02-24T16:25:29+0000");
        assert_eq!(b["last_message_timestamp"], "2021-02-24T16:30:29+0000");
        assert_eq!(b["message_count"], 2);
        assert_eq!(b["chat"]["is_new_chat"], true);
        // The bundle's link opens the transcript at its first message, the bundle marked; the
        // chat's own link is the chat's, as in every payload of it.
        assert_eq!(b["bundle_url"], "https://cb.example/c/tok123?at=1&from=1&to=2#m1");
        assert_eq!(b["chat"]["chat_url"], "https://cb.example/c/tok123");
        assert_eq!(
            b["aggregation"],
            "from John Doe on 2021-02-24 16:25: lorem ipsum<br/>from John Doe on 2021-02-24 16:30: dolor\
             <br/>Click <a href='https://cb.example/c/tok123?at=1&#38;from=1&#38;to=2#m1'>here</a> to open the conversation"
        );
        assert_eq!(
            b["aggregation_text"],
            "from John Doe on 2021-02-24 16:25: lorem ipsum\nfrom John Doe on 2021-02-24 16:30: dolor\n\
             Open the conversation: https://cb.example/c/tok123?at=1&from=1&to=2#m1"
        );
    }

    #[test]
    fn payload_keys_come_in_the_documented_order() {
        let account = Account::default();
        let chat = chat();
        let messages = [message(1, 25, "hi")];
        let input = BundleInput {
            public_url: "https://cb.example",
            timezone: chrono_tz::UTC,
            locale: Locale::En,
            account: &account,
            chat: &chat,
            first_message_seq: None,
            window_start: at("2021-02-24T16:00:00Z"),
            window_end: at("2021-02-24T17:00:00Z"),
            messages: &messages,
            links: None,
            closed_by: None,
        };
        let raw = String::from_utf8(render(&input, Limits::default()).remove(0).payload).unwrap();
        let order = [
            "\"bundle_id\"",
            "\"part\"",
            "\"parts\"",
            "\"channel\"",
            "\"window_start\"",
            "\"window_end\"",
            "\"whatsapp_account\"",
            "\"chat\"",
            "\"messages\"",
            "\"first_message_timestamp\"",
            "\"last_message_timestamp\"",
            "\"message_count\"",
            "\"aggregation\"",
            "\"aggregation_text\"",
        ];
        let positions: Vec<usize> =
            order.iter().map(|k| raw.find(k).unwrap_or_else(|| panic!("{k} in {raw}"))).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{raw}");
    }

    #[test]
    fn note_times_are_in_the_workspace_time_zone() {
        let parts = render_with(&[message(1, 25, "hi")], "Asia/Kathmandu", Limits::default());
        assert!(
            parts[0]["aggregation"].as_str().unwrap().starts_with("from John Doe on 2021-02-24 22:10: hi")
        );
    }

    #[test]
    fn hostile_text_is_escaped_and_only_allowed_tags_remain() {
        let hostile = "<script>alert('x')</script> \"quoted\" & <b>bold</b> 😀 שלום עולם\nsecond line";
        let parts = render_with(&[message(1, 25, hostile)], "UTC", Limits::default());
        let note = parts[0]["aggregation"].as_str().unwrap();
        assert!(!note.contains("<script"), "{note}");
        assert!(!note.contains("<b>"), "{note}");
        assert!(note.contains("&#60;script&#62;") || note.contains("&lt;script&gt;"), "{note}");
        assert!(note.contains("&#38;") || note.contains("&amp;"), "{note}");
        assert!(note.contains("😀 שלום עולם"), "{note}");
        assert!(note.contains("<br/>second line"), "a newline in a message becomes a line break: {note}");
        // Every tag left is one of the allowed ones.
        for tag in note.split('<').skip(1) {
            let name: String =
                tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphabetic()).collect();
            assert!(["br", "a", "p", "b", "i"].contains(&name.as_str()), "tag {name:?} in {note}");
        }
        // The plain twin keeps the text as it was.
        assert!(parts[0]["aggregation_text"].as_str().unwrap().contains("<script>alert('x')</script>"));
        // And the message itself is untouched.
        assert_eq!(parts[0]["messages"][0]["text"], hostile);
    }

    #[test]
    fn over_500_messages_split_into_complete_parts() {
        let messages: Vec<StoredMessage> = (1..=1201).map(|i| message(i, (i % 60) as u32, "short")).collect();
        let parts = render_with(&messages, "UTC", Limits::default());
        let counts: Vec<u64> = parts.iter().map(|p| p["message_count"].as_u64().unwrap()).collect();
        assert_eq!(counts, [500, 500, 201]);
        let id = &parts[0]["bundle_id"];
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(&p["bundle_id"], id);
            assert_eq!(p["part"], i as u64 + 1);
            assert_eq!(p["parts"], 3);
            assert!(p["aggregation"].as_str().unwrap().ends_with("to open the conversation"));
            assert_eq!(p["messages"].as_array().unwrap().len() as u64, p["message_count"].as_u64().unwrap());
        }
        assert_eq!(parts[0]["chat"]["is_new_chat"], true, "the part with the first message says so");
        assert_eq!(parts[1]["chat"]["is_new_chat"], false);
    }

    #[test]
    fn over_60000_characters_of_note_split_and_every_part_fits() {
        let long = "x".repeat(7_000);
        let messages: Vec<StoredMessage> = (1..=20).map(|i| message(i, i as u32, &long)).collect();
        let parts = render_with(&messages, "UTC", Limits::default());
        assert!(parts.len() >= 3, "{} parts", parts.len());
        let total: u64 = parts.iter().map(|p| p["message_count"].as_u64().unwrap()).sum();
        assert_eq!(total, 20, "no message lost or doubled");
        for p in &parts {
            assert!(p["aggregation"].as_str().unwrap().chars().count() <= 60_000);
        }
        // A single message longer than the whole limit still fits, shortened in the note only.
        let huge = message(1, 1, &"y".repeat(65_000));
        let parts = render_with(&[huge], "UTC", Limits::default());
        assert_eq!(parts.len(), 1);
        assert!(parts[0]["aggregation"].as_str().unwrap().chars().count() <= 60_000);
        assert_eq!(parts[0]["messages"][0]["text"].as_str().unwrap().len(), 65_000);
    }

    /// Every tag in a note is whole: each `<` is closed by a `>` before the next `<`.
    fn whole_tags(note: &str) -> bool {
        let mut open = false;
        for c in note.chars() {
            match c {
                '<' if open => return false,
                '<' => open = true,
                '>' => open = false,
                _ => {}
            }
        }
        !open
    }

    #[test]
    fn a_small_note_limit_splits_japanese_text_between_messages_and_numbers_the_parts() {
        let text = "ご注文の商品は明日発送いたします。😀 <確認> & よろしくお願いします。".repeat(3);
        let messages: Vec<StoredMessage> = (1..=12).map(|i| message(i, i as u32, &text)).collect();
        let limits = Limits { max_note_chars: 500, ..Limits::default() };
        let parts = render_with(&messages, "UTC", limits);
        let n = parts.len();
        assert!(n >= 4, "{n} parts");
        let mut seen = 0;
        for (i, p) in parts.iter().enumerate() {
            let note = p["aggregation"].as_str().unwrap();
            assert!(note.chars().count() <= 500, "part {}: {} characters", i + 1, note.chars().count());
            assert!(note.starts_with(&format!("({}/{n})<br/>from John Doe on ", i + 1)), "{note}");
            assert!(whole_tags(note), "{note}");
            let plain = p["aggregation_text"].as_str().unwrap();
            assert!(plain.starts_with(&format!("({}/{n})\nfrom John Doe", i + 1)), "{plain}");
            // Each part's link opens the transcript at its own first message.
            let first = p["messages"][0]["message_id"].as_str().unwrap().trim_start_matches("m-").to_string();
            assert!(note.contains(&format!("?at={first}&#38;from=1&#38;to=12#m{first}'")), "{note}");
            // Whole messages only: none shortened, the text intact in the note.
            let count = p["message_count"].as_u64().unwrap() as usize;
            assert_eq!(
                note.matches("ご注文の商品は明日発送いたします。😀 &#60;確認&#62; &#38; よろしく").count(),
                count * 3
            );
            seen += count;
        }
        assert_eq!(seen, 12, "no message lost or doubled");
        // A bundle that fits has no marker.
        let one = render_with(&messages[..1], "UTC", limits);
        assert_eq!(one.len(), 1);
        assert!(one[0]["aggregation"].as_str().unwrap().starts_with("from John Doe"));
    }

    #[test]
    fn a_long_message_is_shortened_by_characters_not_bytes_and_the_markup_stays_whole() {
        let text = "日本語のとても長いメッセージ<b>".repeat(100);
        let limits = Limits { max_note_chars: 500, ..Limits::default() };
        let parts = render_with(&[message(1, 1, &text), message(2, 2, "短い")], "UTC", limits);
        for p in &parts {
            let note = p["aggregation"].as_str().unwrap();
            assert!(note.chars().count() <= 500, "{} characters", note.chars().count());
            assert!(whole_tags(note), "{note}");
            assert!(note.ends_with("to open the conversation"));
        }
        let first = parts[0]["aggregation"].as_str().unwrap();
        assert!(first.contains('…'), "shortened in the note: {first}");
        assert!(!first.contains("&#6…") && !first.contains("&#…"), "no entity cut in half: {first}");
        assert_eq!(parts[0]["messages"][0]["text"], text, "the message itself is whole");
    }

    #[test]
    fn a_japanese_note_gives_the_date_in_japanese_first_and_escapes_the_text() {
        let text = "<b>こんにちは</b> & よろしく";
        let parts = render_in(Locale::Ja, &[message(1, 25, text)], "Asia/Tokyo", Limits::default());
        assert_eq!(
            parts[0]["aggregation"],
            "2021年2月25日 01:25 John Doe: &#60;b&#62;こんにちは&#60;/b&#62; &#38; よろしく\
             <br/><a href='https://cb.example/c/tok123?at=1&#38;from=1&#38;to=1#m1'>こちら</a>から会話を開けます"
        );
        assert_eq!(
            parts[0]["aggregation_text"],
            "2021年2月25日 01:25 John Doe: <b>こんにちは</b> & よろしく\n\
             会話を開く: https://cb.example/c/tok123?at=1&from=1&to=1#m1"
        );
        // The payload's keys stay as they are.
        let english = render_in(Locale::En, &[message(1, 25, text)], "Asia/Tokyo", Limits::default());
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&parts[0]), keys(&english[0]));
        // Parts are marked the same way, and a sender-less message is 不明.
        let long = "長".repeat(250);
        let mut nobody = message(2, 26, &long);
        nobody.sender = Party::default();
        let limits = Limits { max_note_chars: 500, ..Limits::default() };
        let parts = render_in(Locale::Ja, &[message(1, 25, &long), nobody], "Asia/Tokyo", limits);
        assert_eq!(parts.len(), 2);
        assert!(
            parts[1]["aggregation"].as_str().unwrap().starts_with("(2/2)<br/>2021年2月25日 01:26 不明: 長")
        );
    }

    #[test]
    fn a_long_sender_name_is_shortened_and_the_note_limit_holds() {
        // 512 bytes of characters that escaping lengthens, as a hostile channel may send.
        let names = ["&".repeat(512), "<".repeat(512), "名".repeat(170), "\"".repeat(512)];
        let limits = Limits { max_note_chars: 500, ..Limits::default() };
        for name in names {
            let mut long = message(1, 1, &"x".repeat(300));
            long.sender = Party { full_name: Some(name.clone()), phone: None };
            let mut short = message(2, 2, "hi");
            short.sender = long.sender.clone();
            let parts = render_with(&[long, short], "UTC", limits);
            for p in &parts {
                let note = p["aggregation"].as_str().unwrap();
                assert!(note.chars().count() <= 500, "{} characters for {name:?}", note.chars().count());
                assert!(whole_tags(note), "{note}");
                assert!(!note.contains("&#3…") && !note.contains("&…"), "no entity cut in half: {note}");
            }
            let first = parts[0]["aggregation"].as_str().unwrap();
            assert!(first.contains('…'), "shortened in the note: {first}");
            assert_eq!(
                parts[0]["messages"][0]["sender"]["full_name"],
                name.as_str(),
                "the payload keeps it whole"
            );
        }
    }
}
