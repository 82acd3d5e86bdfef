#![no_main]
//! Chatwoot: any body, signed over "{timestamp}.{body}" so the event parser is reached.

use axum::http::HeaderMap;
use chatbundle::ingest::chatwoot;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let credentials = serde_json::json!({"secret": "fuzz-secret"});
    let mut headers = HeaderMap::new();
    let timestamp = "1700000000";
    let signature = format!("sha256={}", common::hex_hmac_sha256("fuzz-secret", &[timestamp.as_bytes(), b".", data]));
    headers.insert("x-chatwoot-signature", signature.parse().unwrap());
    headers.insert("x-chatwoot-timestamp", timestamp.parse().unwrap());
    let _ = chatwoot::parse(&credentials, &common::request(&headers, vec![], data));
    let _ = chatwoot::parse(&serde_json::json!({}), &common::request(&HeaderMap::new(), vec![], data));
});
