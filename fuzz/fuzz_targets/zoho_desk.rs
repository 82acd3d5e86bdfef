#![no_main]
//! Zoho Desk: any body.

use axum::http::HeaderMap;
use chatbundle::ingest::zoho_desk;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let headers = HeaderMap::new();
    let _ = zoho_desk::parse(&common::request(&headers, vec![], data));
});
