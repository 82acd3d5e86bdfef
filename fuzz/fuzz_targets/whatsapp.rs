#![no_main]
//! Meta WhatsApp Cloud: any body, signed with the app secret so the JSON walk is reached.

use axum::http::HeaderMap;
use chatbundle::ingest::whatsapp;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let credentials = serde_json::json!({"app_secret": "fuzz-secret", "verify_token": "vt"});
    let mut headers = HeaderMap::new();
    let signature = format!("sha256={}", common::hex_hmac_sha256("fuzz-secret", &[data]));
    headers.insert("x-hub-signature-256", signature.parse().unwrap());
    let _ = whatsapp::parse(&credentials, &common::request(&headers, vec![], data));
    // And the signature header itself is fuzzed input too.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = whatsapp::verify("fuzz-secret", b"{}", text);
    }
});
