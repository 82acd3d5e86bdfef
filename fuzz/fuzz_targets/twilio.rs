#![no_main]
//! Twilio: any body, unsigned (must be refused) and signed (reaches the form parser).

use axum::http::HeaderMap;
use chatbundle::ingest::twilio;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let credentials = serde_json::json!({"auth_token": "fuzz-token"});
    let headers = HeaderMap::new();
    assert!(twilio::parse(&credentials, &common::request(&headers, vec![], data)).is_err(), "unsigned");
    let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data) else { return };
    let mut headers = HeaderMap::new();
    let signature = twilio::signature("fuzz-token", common::URL, &params);
    headers.insert("x-twilio-signature", signature.parse().unwrap());
    let _ = twilio::parse(&credentials, &common::request(&headers, vec![], data));
    // Held to one account: whatever AccountSid the body carries, the check never panics.
    let held = serde_json::json!({"auth_token": "fuzz-token", "account_sid": "AC0"});
    let _ = twilio::parse(&held, &common::request(&headers, vec![], data));
});
