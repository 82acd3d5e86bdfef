//! How what was sent is kept on disk: a delivery's payload compressed, an attempt's headers
//! without what its own columns say, and both given back as they were sent.
//!
//! A payload is mostly the same keys in the same order (`whatsapp_account`, `chat`, `chat_url`,
//! …) around a few short values, so on its own it compresses poorly (about 40 %), but against a
//! dictionary that already holds those keys it keeps only its values: a single message of about
//! 700 bytes keeps about 250. The dictionary is `payload-v1.dict`, built into the binary.
//!
//! A stored payload is either the JSON itself (rows written before payloads were packed, and any
//! payload that packing would not make smaller) or the byte [`PACKED_V1`] followed by a zstd frame
//! made with that dictionary. JSON never starts with that byte. The dictionary is part of the
//! file format: changing it would leave every packed row unreadable, so a better one comes as a
//! new version byte beside this one, never in its place.

use std::cell::RefCell;
use std::sync::{Arc, LazyLock};

use super::{StoreError, StoreResult};

/// The first byte of a payload packed with dictionary 1.
const PACKED_V1: u8 = 1;

/// Dictionary 1: payloads' keys and common values, the likeliest last (zstd reaches the end of a
/// dictionary most cheaply). Never edited: see the module's documentation.
const DICTIONARY_V1: &[u8] = include_bytes!("payload-v1.dict");

/// zstd's default level: at a payload's size, higher levels make it no smaller.
const LEVEL: i32 = 3;

/// The largest payload unpacking will allocate for, far above any payload rendered (bundles are
/// split into parts well below it): a damaged frame cannot ask for more.
const MAX_PAYLOAD: usize = 64 << 20;

static ENCODER: LazyLock<zstd::dict::EncoderDictionary<'static>> =
    LazyLock::new(|| zstd::dict::EncoderDictionary::copy(DICTIONARY_V1, LEVEL));
static DECODER: LazyLock<zstd::dict::DecoderDictionary<'static>> =
    LazyLock::new(|| zstd::dict::DecoderDictionary::copy(DICTIONARY_V1));

thread_local! {
    // A compression context is worth keeping: making one costs more than packing a payload.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// `payload` as it is stored: packed, or as it is when packing would not make it smaller.
pub fn pack(payload: &[u8]) -> Vec<u8> {
    let packed = COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = match slot {
            Some(c) => c,
            None => slot.insert(zstd::bulk::Compressor::with_prepared_dictionary(&ENCODER).ok()?),
        };
        let mut out = vec![0; 1 + zstd::zstd_safe::compress_bound(payload.len())];
        out[0] = PACKED_V1;
        let written = compressor.compress_to_buffer(payload, &mut out[1..]).ok()?;
        out.truncate(1 + written);
        Some(out)
    });
    match packed {
        Some(packed) if packed.len() < payload.len() => packed,
        _ => payload.to_vec(),
    }
}

/// The payload that `stored` keeps, as it was rendered.
pub fn unpack(stored: Vec<u8>) -> StoreResult<Vec<u8>> {
    if stored.first() != Some(&PACKED_V1) {
        return Ok(stored);
    }
    let frame = &stored[1..];
    let damaged = |e: std::io::Error| StoreError::Unavailable(Arc::new(e));
    // Packing writes the payload's size into the frame; a frame without it is damaged.
    let capacity = zstd::bulk::Decompressor::upper_bound(frame)
        .filter(|size| !frame.is_empty() && *size <= MAX_PAYLOAD)
        .ok_or_else(|| damaged(std::io::Error::other("a packed payload without its size")))?;
    DECOMPRESSOR.with_borrow_mut(|slot| {
        let decompressor = match slot {
            Some(d) => d,
            None => {
                slot.insert(zstd::bulk::Decompressor::with_prepared_dictionary(&DECODER).map_err(damaged)?)
            }
        };
        decompressor.decompress(frame, capacity).map_err(damaged)
    })
}

/// The headers every attempt sends whose values its own columns already hold: `webhook-id` is
/// its delivery's id, `webhook-timestamp` its time in seconds, and the content type is always the
/// same.
fn derived_headers(delivery_id: &str, attempted_at_ms: i64) -> [(&'static str, String); 3] {
    [
        ("content-type", "application/json; charset=utf-8".to_string()),
        ("webhook-id", delivery_id.to_string()),
        ("webhook-timestamp", attempted_at_ms.div_euclid(1000).to_string()),
    ]
}

/// Where an attempt's stored headers say that it sent all of [`derived_headers`]: a key that
/// cannot be a header's name (names are never empty), so headers stored whole, and rows written
/// before, never carry it.
const DERIVED: &str = "";

/// An attempt's request headers (a JSON object) as they are stored: when it sent every header of
/// [`derived_headers`] with exactly the values its columns hold, without them and with the
/// [`DERIVED`] mark in their place; otherwise whole. [`sent_headers`] gives back what was sent.
pub fn stored_headers(attempt: &super::AttemptRecord) -> String {
    let Ok(serde_json::Value::Object(mut headers)) = serde_json::from_str(&attempt.request_headers) else {
        return attempt.request_headers.clone();
    };
    let derived = derived_headers(attempt.delivery_id.as_str(), attempt.attempted_at.timestamp_millis());
    if !derived.iter().all(|(name, value)| headers.get(*name).and_then(|v| v.as_str()) == Some(value)) {
        return attempt.request_headers.clone();
    }
    for (name, _) in &derived {
        headers.remove(*name);
    }
    headers.insert(DERIVED.to_string(), 1.into());
    serde_json::Value::Object(headers).to_string()
}

/// The request headers an attempt sent, from what was stored of them ([`stored_headers`]); rows
/// stored whole, and rows written before, read back as they are.
pub fn sent_headers(stored: serde_json::Value, delivery_id: &str, attempted_at_ms: i64) -> serde_json::Value {
    let serde_json::Value::Object(mut sent) = stored else { return stored };
    if sent.remove(DERIVED).is_some() {
        for (name, value) in derived_headers(delivery_id, attempted_at_ms) {
            sent.insert(name.to_string(), value.into());
        }
    }
    serde_json::Value::Object(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single_message() -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "whatsapp_account": {"full_name": "Acme Support", "email": null, "phone": "+15550001111"},
            "chat": {"full_name": "John Doe", "responsible_name": null, "responsible_email": null,
                     "chat_url": "https://bundle.example.com/c/1m4Hnl6aOHPO08NxWCcBR5fRsLJX6NnA",
                     "chat_id": "chat-2048", "is_new_chat": false, "is_group": false, "phone": "+97254000000",
                     "can_reply": true, "reply_window_expires_at": null, "reply_status": "ACCEPTED", "id": 2049},
            "message": {"direction": "received", "timestamp": "2026-12-07T13:07:33+0000", "message_id": "wamid.52048",
                        "sender": {"full_name": "John Doe", "phone": "+97254000000"},
                        "recipient": {"full_name": "Acme Support", "phone": "+15550001111"},
                        "text": "Hi! How are you doing today? Just checking in about the order."},
            "channel": "whatsapp"
        }))
        .unwrap()
    }

    #[test]
    fn a_packed_payload_unpacks_to_the_same_bytes_and_is_far_smaller() {
        let payload = single_message();
        let stored = pack(&payload);
        assert_eq!(stored[0], PACKED_V1);
        assert!(stored.len() * 2 < payload.len(), "{} bytes kept of {}", stored.len(), payload.len());
        assert_eq!(unpack(stored).unwrap(), payload);
    }

    #[test]
    fn payloads_stored_as_json_read_back_as_they_are() {
        // Rows written before payloads were packed, and payloads packing would not shrink.
        for json in [&br#"{"a":1}"#[..], br#"[{"payload":{}}]"#, b""] {
            assert_eq!(pack(json), json, "too small to shrink: kept as it is");
            assert_eq!(unpack(json.to_vec()).unwrap(), json);
        }
    }

    #[test]
    fn a_damaged_packed_payload_is_an_error_not_a_panic() {
        let mut stored = pack(&single_message());
        let last = stored.len() - 1;
        stored.truncate(last / 2);
        assert!(unpack(stored).is_err());
        assert!(unpack(vec![PACKED_V1]).is_err());
    }

    #[test]
    fn large_bundles_pack_and_unpack() {
        let lines: Vec<String> = (0..2_000)
            .map(|n| format!("from John Doe on 2026-12-07 13:{:02}: message {n}", n % 60))
            .collect();
        let payload =
            serde_json::to_vec(&serde_json::json!({"bundle_id": "b_1", "aggregation": lines.join("<br/>")}))
                .unwrap();
        let stored = pack(&payload);
        assert!(stored.len() < payload.len() / 4);
        assert_eq!(unpack(stored).unwrap(), payload);
    }

    #[test]
    fn an_attempt_keeps_only_the_headers_its_columns_do_not_say() {
        let at = chrono::DateTime::from_timestamp_millis(1_796_648_819_456).unwrap();
        let id = crate::domain::DeliveryId::stored("0ZkQ3u1aXb2c3d4e5f6g7h8i".to_string());
        // As the worker writes them (the delivery test checks them against what a receiver got).
        let sent = serde_json::json!({
            "content-type": "application/json; charset=utf-8",
            "user-agent": "chatbundle/0.1.0",
            "webhook-id": id.as_str(),
            "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "webhook-timestamp": at.timestamp().to_string(),
        })
        .to_string();
        let attempt = crate::store::AttemptRecord {
            delivery_seq: 1,
            lease_token: 1,
            delivery_id: id.clone(),
            webhook_id: crate::domain::WebhookId::stored("wh".to_string()),
            attempted_at: at,
            duration: std::time::Duration::ZERO,
            status: Some(200),
            response_excerpt: None,
            error: None,
            request_headers: sent.clone(),
            request_body: Vec::new(),
        };
        let stored = stored_headers(&attempt);
        let kept: serde_json::Value = serde_json::from_str(&stored).unwrap();
        let mut names: Vec<&str> = kept.as_object().unwrap().keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, [DERIVED, "user-agent", "webhook-signature"]);
        // Read back: the same headers.
        let whole: serde_json::Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(sent_headers(kept, id.as_str(), at.timestamp_millis()), whole);
        // A row stored whole (written before, or by a version that kept them) reads back as it is.
        assert_eq!(sent_headers(whole.clone(), "another-id", at.timestamp_millis()), whole);
        // Headers that do not all match their columns are kept whole, and so are none at all.
        for differing in [
            sent.replace(&at.timestamp().to_string(), "1"),
            sent.replace("\"webhook-id\"", "\"x-webhook-id\""),
            "{}".to_string(),
        ] {
            let attempt =
                crate::store::AttemptRecord { request_headers: differing.clone(), ..attempt.clone() };
            assert_eq!(stored_headers(&attempt), differing);
            let read =
                sent_headers(serde_json::from_str(&differing).unwrap(), id.as_str(), at.timestamp_millis());
            assert_eq!(read, serde_json::from_str::<serde_json::Value>(&differing).unwrap());
        }
    }

    /// The dictionary is part of the file format: packed rows on disk need exactly these bytes.
    #[test]
    fn dictionary_one_is_never_edited() {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(DICTIONARY_V1);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex, "0d25d3574ceb906637571e0c970b84002279c7a3098fb1c848aafa942f4b73ba",
            "add a new version instead of changing payload-v1.dict"
        );
    }
}
