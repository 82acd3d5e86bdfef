#![no_main]
//! WeChat: any body as plaintext XML, the same bytes encrypted in safe mode, and any string as a
//! ciphertext to decrypt.

use axum::http::HeaderMap;
use chatbundle::domain::SourceKind;
use chatbundle::ingest::{credentials, wechat};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const AES: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fuzz_target!(|data: &[u8]| {
    let credentials = serde_json::json!({"token": "t", "app_id": "wxfuzz", "encoding_aes_key": AES});
    let headers = HeaderMap::new();
    let signed = |extra: Vec<(String, String)>| {
        let mut query = vec![
            ("signature".to_string(), wechat::signature(&["t", "1", "n"])),
            ("timestamp".to_string(), "1".to_string()),
            ("nonce".to_string(), "n".to_string()),
        ];
        query.extend(extra);
        query
    };
    let _ = wechat::parse(&credentials, &common::request(&headers, signed(vec![]), data));
    let held = serde_json::json!({"token": "t", "app_id": "wxfuzz", "original_id": "gh_fuzz", "account_type": "subscription"});
    let _ = wechat::parse(&held, &common::request(&headers, signed(vec![]), data));
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Any account type an admin might give is checked, never a panic; one that passes is one of three.
    let given = serde_json::json!({"token": "t", "app_id": "wxfuzz", "account_type": text});
    if let Ok(checked) = credentials::check(SourceKind::Wechat, given.as_object().unwrap().clone()) {
        assert!(text.trim().is_empty() || wechat::account_type(&checked).as_str() == text);
    }
    let key = wechat::aes_key(AES).unwrap();
    let _ = wechat::decrypt(&key, "wxfuzz", text);
    let encrypted = wechat::encrypt(&key, "wxfuzz", b"0123456789abcdef", text);
    let envelope = format!("<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>");
    let msg_signature = wechat::signature(&["t", "1", "n", &encrypted]);
    let query = signed(vec![("encrypt_type".into(), "aes".into()), ("msg_signature".into(), msg_signature)]);
    let _ = wechat::parse(&credentials, &common::request(&headers, query, envelope.as_bytes()));
});
