#![allow(dead_code)] // each target uses part of it
//! Shared by the fuzz targets: a request around fuzzed bytes, signed the way the vendor signs so
//! that the parser behind the signature check is reached.

use axum::http::HeaderMap;
use chatbundle::ingest::inbound::HookRequest;
use hmac::{Hmac, Mac};

pub const URL: &str = "https://cb.example/hooks/x/src_fuzz";

pub fn request<'a>(headers: &'a HeaderMap, query: Vec<(String, String)>, body: &'a [u8]) -> HookRequest<'a> {
    HookRequest {
        headers,
        url: URL.to_string(),
        query,
        body,
        received_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
    }
}

pub fn hex_hmac_sha256(key: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}
