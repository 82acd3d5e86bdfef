//! WeChat Official Accounts. The URL is checked with a `GET` carrying `echostr`; messages come as
//! XML `POST`s. Every request is signed: `signature` = SHA-1 of the sorted token, timestamp and
//! nonce. In safe mode the XML is encrypted (AES-256-CBC with the EncodingAESKey) and signed again
//! with `msg_signature`, which covers the ciphertext too; the decrypted message ends with the app
//! id, which must be ours. WeChat wants `success` back within 5 seconds, and redelivers up to
//! three times: `MsgId` makes the redeliveries duplicates.

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::NoPadding};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::DateTime;
use quick_xml::events::Event;
use serde_json::Value;
use sha1::{Digest, Sha1};

use super::error::IngestError;
use super::inbound::{Answer, HookRequest, Inbound, malformed, refuse};
use crate::domain::{Attachment, AttachmentKind, Direction, Party, SourceKind};
use crate::store::{ChatInfo, NewMessage};
use tracing::warn;

use crate::domain::credentials::wechat::{APP_ID, ENCODING_AES_KEY, ORIGINAL_ID, TOKEN, aes_key};

/// SHA-1 of the parts sorted and joined: the WeChat signature.
pub fn signature(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    let digest = Sha1::digest(sorted.concat().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn same(a: &str, b: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()).into()
}

/// Decrypts a safe-mode `Encrypt` value and checks the app id at its end; returns the message XML.
pub fn decrypt(key: &[u8; 32], app_id: &str, encrypted: &str) -> Result<String, String> {
    let mut data = STANDARD.decode(encrypted.trim()).map_err(|_| "Encrypt: not base64")?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err("Encrypt: not a whole number of AES blocks".into());
    }
    let iv: [u8; 16] = key[..16].try_into().expect("16 bytes");
    let plain = cbc::Decryptor::<aes::Aes256>::new(key.into(), &iv.into())
        .decrypt_padded_mut::<NoPadding>(&mut data)
        .map_err(|_| "Encrypt: cannot decrypt")?;
    // PKCS#7 over 32-byte blocks: 1 to 32 bytes of padding, each holding its count.
    let pad = *plain.last().ok_or("Encrypt: empty")? as usize;
    if !(1..=32).contains(&pad) || pad > plain.len() {
        return Err("Encrypt: bad padding (wrong EncodingAESKey?)".into());
    }
    let plain = &plain[..plain.len() - pad];
    // 16 random bytes, a big-endian length, the XML, the app id.
    if plain.len() < 20 {
        return Err("Encrypt: too short".into());
    }
    let length = u32::from_be_bytes(plain[16..20].try_into().expect("4 bytes")) as usize;
    let rest = &plain[20..];
    if length > rest.len() {
        return Err("Encrypt: length beyond the message".into());
    }
    let (xml, id) = rest.split_at(length);
    if id != app_id.as_bytes() {
        return Err("Encrypt: for another app id".into());
    }
    String::from_utf8(xml.to_vec()).map_err(|_| "Encrypt: not UTF-8".into())
}

/// Encrypts a message as WeChat does (for tests and tools): random ‖ length ‖ XML ‖ app id.
pub fn encrypt(key: &[u8; 32], app_id: &str, random: &[u8; 16], xml: &str) -> String {
    use aes::cipher::BlockEncryptMut;
    let mut plain = random.to_vec();
    plain.extend_from_slice(&(xml.len() as u32).to_be_bytes());
    plain.extend_from_slice(xml.as_bytes());
    plain.extend_from_slice(app_id.as_bytes());
    let pad = 32 - plain.len() % 32;
    plain.extend(std::iter::repeat_n(pad as u8, pad));
    let length = plain.len();
    let iv: [u8; 16] = key[..16].try_into().expect("16 bytes");
    let cipher = cbc::Encryptor::<aes::Aes256>::new(key.into(), &iv.into())
        .encrypt_padded_mut::<NoPadding>(&mut plain, length)
        .expect("whole blocks");
    STANDARD.encode(cipher)
}

/// The top-level elements of a WeChat XML message, by name (CDATA or text).
pub fn fields(xml: &str) -> Result<Vec<(String, String)>, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut fields = Vec::new();
    let mut depth = 0usize;
    let mut current: Option<(String, String)> = None;
    loop {
        match reader.read_event().map_err(|e| format!("not XML: {e}"))? {
            Event::Start(start) => {
                depth += 1;
                if depth == 2 {
                    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                    current = Some((name, String::new()));
                }
            }
            Event::End(_) => {
                if depth == 2
                    && let Some(field) = current.take()
                {
                    fields.push(field);
                }
                depth = depth.saturating_sub(1);
            }
            Event::Empty(empty) if depth == 1 => {
                fields.push((String::from_utf8_lossy(empty.name().as_ref()).into_owned(), String::new()));
            }
            // Text comes in pieces: plain runs, and each entity or character reference on its own,
            // so `&lt;script&gt;&amp;&#65;` is the customer's `<script>&A`, byte for byte.
            Event::Text(text) if depth == 2 => {
                if let Some((_, value)) = current.as_mut() {
                    value.push_str(&text.decode().map_err(|e| format!("bad text: {e}"))?);
                }
            }
            Event::GeneralRef(reference) if depth == 2 => {
                if let Some((_, value)) = current.as_mut() {
                    match reference.resolve_char_ref().map_err(|e| format!("bad character reference: {e}"))? {
                        Some(ch) => value.push(ch),
                        None => {
                            let name = reference.decode().map_err(|e| format!("bad entity: {e}"))?;
                            let resolved = quick_xml::escape::resolve_predefined_entity(&name)
                                .ok_or_else(|| format!("unknown entity &{name};"))?;
                            value.push_str(resolved);
                        }
                    }
                }
            }
            Event::CData(data) if depth == 2 => {
                if let Some((_, value)) = current.as_mut() {
                    value.push_str(&String::from_utf8_lossy(&data));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if depth != 0 {
        return Err("not XML: unclosed element".into());
    }
    Ok(fields)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// Checks the query `signature` over token, timestamp and nonce.
fn check_signature(token: &str, request: &HookRequest) -> Result<(), IngestError> {
    let (Some(given), Some(timestamp), Some(nonce)) =
        (request.param("signature"), request.param("timestamp"), request.param("nonce"))
    else {
        return Err(refuse(SourceKind::Wechat, "missing signature, timestamp or nonce"));
    };
    if token.is_empty() || !same(&signature(&[token, timestamp, nonce]), given) {
        return Err(refuse(SourceKind::Wechat, "signature does not match"));
    }
    // A signature does not expire by itself: one captured long ago would still match.
    if !crate::http::replay::fresh(timestamp, request.received_at) {
        return Err(refuse(SourceKind::Wechat, "timestamp is more than five minutes from now (a replay?)"));
    }
    Ok(())
}

/// `GET`: the server check; answers `echostr` when the signature matches.
pub fn handshake(credentials: &Value, request: &HookRequest) -> Result<Answer, IngestError> {
    check_signature(TOKEN.read(credentials).unwrap_or_default(), request)?;
    let echo = request.param("echostr").ok_or_else(|| malformed("echostr: missing"))?;
    Ok(Answer::text(echo))
}

/// `POST`: one message or event, plain or encrypted.
pub fn parse(credentials: &Value, request: &HookRequest) -> Result<(Inbound, Answer), IngestError> {
    let token = TOKEN.read(credentials).unwrap_or_default();
    let app_id = APP_ID.read(credentials).unwrap_or_default();
    check_signature(token, request)?;
    let body = std::str::from_utf8(request.body).map_err(|_| malformed("body: not UTF-8"))?;
    let outer = fields(body).map_err(|e| malformed(format!("body: {e}")))?;
    let key = ENCODING_AES_KEY.read(credentials).and_then(aes_key);
    let xml = match field(&outer, "Encrypt") {
        // A source with an EncodingAESKey is in safe (or compatible) mode: only what is
        // encrypted, and signed with msg_signature over the ciphertext, is taken; plaintext
        // beside it (compatible mode) or instead of it is not.
        Some(encrypted)
            if key.is_some()
                || request.param("encrypt_type") == Some("aes")
                || field(&outer, "MsgType").is_none() =>
        {
            let key = key.ok_or_else(|| {
                refuse(SourceKind::Wechat, "an encrypted message, but no encoding_aes_key is set")
            })?;
            let (Some(given), Some(timestamp), Some(nonce)) =
                (request.param("msg_signature"), request.param("timestamp"), request.param("nonce"))
            else {
                return Err(refuse(SourceKind::Wechat, "missing msg_signature"));
            };
            if !same(&signature(&[token, timestamp, nonce, encrypted]), given) {
                return Err(refuse(SourceKind::Wechat, "msg_signature does not match"));
            }
            Some(decrypt(&key, app_id, encrypted).map_err(|e| refuse(SourceKind::Wechat, &e))?)
        }
        _ if key.is_some() => {
            return Err(refuse(
                SourceKind::Wechat,
                "not encrypted, but this source has an encoding_aes_key (safe mode takes encrypted pushes only)",
            ));
        }
        _ => None,
    };
    let message = match &xml {
        Some(xml) => fields(xml).map_err(|e| malformed(format!("Encrypt: {e}")))?,
        None => outer,
    };
    if let Some(expected) = ORIGINAL_ID.read(credentials)
        && field(&message, "ToUserName") != Some(expected)
    {
        warn!(kind = "wechat", "refused a push addressed to another account");
        return Err(IngestError::wrong_account("ToUserName", "is not this source's original_id"));
    }
    let mut inbound = Inbound::default();
    let kind = field(&message, "MsgType").ok_or_else(|| malformed("MsgType: missing"))?;
    // Events (follow, unfollow, menu clicks, scans) are not messages.
    if kind == "event" {
        return Ok((inbound, Answer::text("success")));
    }
    let id = field(&message, "MsgId").ok_or_else(|| malformed("MsgId: missing"))?.to_string();
    let from = field(&message, "FromUserName").ok_or_else(|| malformed("FromUserName: missing"))?.to_string();
    let Some((text, attachments)) = content(kind, &message) else {
        inbound.skipped.push(Some(id));
        return Ok((inbound, Answer::text("success")));
    };
    let timestamp = field(&message, "CreateTime")
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .unwrap_or(request.received_at);
    inbound.messages.push(NewMessage {
        message_id: id,
        direction: Direction::Received,
        timestamp,
        chat: ChatInfo { external_id: from.clone(), is_group: Some(false), ..ChatInfo::default() },
        // WeChat names its users only by their openid.
        sender: Party { full_name: Some(from), phone: None },
        recipient: Party { full_name: field(&message, "ToUserName").map(str::to_string), phone: None },
        text,
        account: None,
        channel: "wechat".into(),
        attachments,
        reply_to_button: None,
    });
    Ok((inbound, Answer::text("success")))
}

/// What a pushed message says: its `Content`, or its medium (image, voice, video, short video,
/// location, link) as WeChat describes it. `None` for text without words and unknown types.
fn content(kind: &str, message: &[(String, String)]) -> Option<(String, Vec<Attachment>)> {
    let get = |name: &str| field(message, name).filter(|v| !v.trim().is_empty()).map(str::to_string);
    let attachment = match kind {
        "text" => return get("Content").map(|text| (text, Vec::new())),
        "image" => {
            let mut a = Attachment::new(AttachmentKind::Image);
            a.url = get("PicUrl");
            a
        }
        "voice" => {
            let mut a = Attachment::new(AttachmentKind::Voice);
            // `amr` or `speex`.
            a.mime_type = get("Format").map(|f| format!("audio/{}", f.to_ascii_lowercase()));
            a
        }
        "video" | "shortvideo" => Attachment::new(AttachmentKind::Video),
        "location" => {
            let mut a = Attachment::new(AttachmentKind::Location);
            a.latitude = get("Location_X").and_then(|v| v.parse().ok());
            a.longitude = get("Location_Y").and_then(|v| v.parse().ok());
            a.name = get("Label");
            a
        }
        "link" => {
            let mut a = Attachment::new(AttachmentKind::Link);
            a.url = get("Url");
            a.name = get("Title");
            a.caption = get("Description");
            a
        }
        _ => return None,
    };
    let mut attachment = attachment;
    // Fetched through WeChat's media API by whoever holds the account's access token.
    attachment.media_id = get("MediaId");
    Some((String::new(), vec![attachment]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_signature_matches_the_published_vector() {
        assert_eq!(signature(&["test", "1410685589", "test"]), "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff");
    }

    #[test]
    fn encryption_matches_tencents_sample_and_round_trips() {
        let key = aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
        let cipher = encrypt(&key, "wxb11529c136998cb6", b"aaaabbbbccccdddd", "我是中文abcd123");
        assert_eq!(
            cipher,
            "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
        );
        assert_eq!(decrypt(&key, "wxb11529c136998cb6", &cipher).unwrap(), "我是中文abcd123");
    }

    #[test]
    fn safe_mode_matches_the_wechatpy_vector() {
        let encrypted = "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=";
        assert_eq!(
            signature(&["123456", "1411525903", "461056294", encrypted]),
            "74d92dfeb87ba7c714f89d98870ae5eb62dff26d"
        );
        let key = aes_key("kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR").unwrap();
        let xml = decrypt(&key, "wx49f0ab532d5d035a", encrypted).unwrap();
        let message = fields(&xml).unwrap();
        assert_eq!(field(&message, "Content"), Some("test"));
        assert_eq!(field(&message, "FromUserName"), Some("messense"));
    }

    #[test]
    fn decryption_refuses_another_app_id_wrong_keys_and_garbage() {
        let key = aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
        let cipher =
            "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg==";
        assert!(decrypt(&key, "wx_someone_else", cipher).is_err());
        let other = aes_key("kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR").unwrap();
        assert!(decrypt(&other, "wxb11529c136998cb6", cipher).is_err());
        assert!(decrypt(&key, "wxb11529c136998cb6", "not base64!").is_err());
        assert!(decrypt(&key, "wxb11529c136998cb6", "AAAA").is_err());
        assert!(aes_key("short").is_none());
    }

    #[test]
    fn xml_fields_are_read_from_cdata_and_text() {
        let xml = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><CreateTime>1478317060</CreateTime>\
                   <Content><![CDATA[你好 <b>]]></Content><MsgId>6349323426230210995</MsgId></xml>";
        let f = fields(xml).unwrap();
        assert_eq!(field(&f, "ToUserName"), Some("gh_1"));
        assert_eq!(field(&f, "Content"), Some("你好 <b>"));
        assert_eq!(field(&f, "CreateTime"), Some("1478317060"));
        assert!(fields("<xml><a>").is_err());
    }

    #[test]
    fn entities_and_character_references_give_the_text_exactly() {
        let xml = "<xml><Content>&lt;script&gt;&amp;&#65;&#x42; &quot;q&quot; &apos;a&apos; &amp;lt;</Content>\
                   <Other><![CDATA[&lt; stays]]>&amp;<![CDATA[!]]></Other></xml>";
        let f = fields(xml).unwrap();
        assert_eq!(field(&f, "Content"), Some("<script>&AB \"q\" 'a' &lt;"));
        assert_eq!(field(&f, "Other"), Some("&lt; stays&!"));
        assert!(fields("<xml><Content>&nope;</Content></xml>").is_err(), "no undeclared entities");
    }
}
