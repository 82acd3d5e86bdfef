#![no_main]
//! The JSON API's message parser: any bytes, as one message or an array of them.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    match &value {
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let _ = chatbundle::ingest::canonical::parse_message(item, &format!("[{i}]"), now);
            }
        }
        other => {
            let _ = chatbundle::ingest::canonical::parse_message(other, "", now);
        }
    }
});
