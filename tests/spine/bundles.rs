use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::*;

/// The bundles received, by chat id.
fn by_chat(seen: &[Received]) -> HashMap<String, Vec<Value>> {
    let mut map: HashMap<String, Vec<Value>> = HashMap::new();
    for r in seen {
        let body = r.json();
        map.entry(body["chat"]["chat_id"].as_str().unwrap().to_string()).or_default().push(body);
    }
    map
}

#[tokio::test]
async fn hourly_bundles_go_out_when_the_window_ends_one_per_chat() {
    let app = TestApp::spawn().await; // the clock starts at 12:00:00Z
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("1h", "UTC").await;
    app.create_webhook(&ws.id, json!({"url": receiver.url, "secret": true})).await;

    app.set_time("2024-03-01T12:10:00Z");
    app.ingest(&ws, &message_at("m-2", "c-1", "second <b>", "2024-03-01T12:09:00Z")).await;
    app.ingest(&ws, &message_at("m-1", "c-1", "first", "2024-03-01T12:08:00Z")).await;
    app.set_time("2024-03-01T12:40:00Z");
    app.ingest(&ws, &message_at("m-3", "c-1", "third", "2024-03-01T12:40:00Z")).await;
    app.ingest(&ws, &message_at("x-1", "c-2", "other chat", "2024-03-01T12:41:00Z")).await;

    app.set_time("2024-03-01T12:59:59Z");
    app.closer_settled().await;
    assert!(receiver.received().is_empty(), "nothing before the window ends");
    assert_eq!(app.stats(&ws).await.deliveries_pending, 0);

    app.set_time("2024-03-01T13:00:00Z");
    let seen = receiver.wait_for(2).await;
    let chats = by_chat(&seen);
    assert_eq!(chats.len(), 2, "one bundle per chat");
    let c1 = &chats["c-1"][0];
    assert_eq!(c1["window_start"], "2024-03-01T12:00:00+0000");
    assert_eq!(c1["window_end"], "2024-03-01T13:00:00+0000");
    assert_eq!(c1["message_count"], 3);
    let ids: Vec<&str> =
        c1["messages"].as_array().unwrap().iter().map(|m| m["message_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["m-1", "m-2", "m-3"], "ordered by the messages' own timestamps");
    assert_eq!(c1["first_message_timestamp"], "2024-03-01T12:08:00+0000");
    assert_eq!(c1["last_message_timestamp"], "2024-03-01T12:40:00+0000");
    assert_eq!(c1["chat"]["is_new_chat"], true);
    assert_eq!(c1["whatsapp_account"]["full_name"], "Amnon Haha");
    let note = c1["aggregation"].as_str().unwrap();
    assert!(note.starts_with("from John Doe on 2024-03-01 12:08: first<br/>"), "{note}");
    assert!(!note.contains("<b>"), "message text is escaped: {note}");
    let request = seen.iter().find(|r| r.json()["chat"]["chat_id"] == "c-1").unwrap();
    assert_eq!(request.header("webhook-id"), c1["bundle_id"].as_str().unwrap());
    assert_eq!(chats["c-2"][0]["message_count"], 1);
    app.delivered(&ws, 2).await;

    // The next hour: only the chat that spoke gets a bundle, and it is no longer new.
    app.set_time("2024-03-01T13:30:00Z");
    app.ingest(&ws, &message("m-4", "c-1", "fourth")).await;
    app.set_time("2024-03-01T14:00:00Z");
    let seen = receiver.wait_for(3).await;
    let last = seen[2].json();
    assert_eq!(last["chat"]["chat_id"], "c-1");
    assert_eq!(last["chat"]["is_new_chat"], false);
    assert_eq!(last["window_start"], "2024-03-01T13:00:00+0000");
    // The chat's link is the chat's in every bundle of it; each bundle has its own link, the note's.
    assert_eq!(last["chat"]["chat_url"], c1["chat"]["chat_url"], "one link per chat");
    let chat_url = c1["chat"]["chat_url"].as_str().unwrap();
    assert!(!chat_url.contains('?') && !chat_url.contains('#'), "{chat_url}");
    for bundle in [c1, &last] {
        let bundle_url = bundle["bundle_url"].as_str().unwrap();
        assert!(bundle_url.starts_with(&format!("{chat_url}?at=")), "{bundle_url}");
        let href = bundle_url.replace('&', "&#38;");
        assert!(bundle["aggregation"].as_str().unwrap().contains(&href), "the note links the bundle");
    }
    assert_ne!(last["bundle_url"], c1["bundle_url"]);
    app.closer_settled().await;
    assert_eq!(receiver.received().len(), 3, "a chat without messages yields nothing");
}

#[tokio::test]
async fn daily_bundles_end_at_midnight_in_the_workspace_time_zone() {
    let app = TestApp::spawn().await; // 12:00Z is 17:30 in Kolkata
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("24h", "Asia/Kolkata").await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.ingest(&ws, &message("m-1", "c-1", "namaste")).await;
    app.set_time("2024-03-01T18:00:00Z");
    app.ingest(&ws, &message("m-2", "c-1", "still today")).await;
    app.set_time("2024-03-01T18:29:59Z");
    app.closer_settled().await;
    assert!(receiver.received().is_empty());
    app.set_time("2024-03-01T18:30:00Z"); // midnight IST
    let bundle = receiver.wait_for(1).await[0].json();
    assert_eq!(bundle["window_start"], "2024-02-29T18:30:00+0000");
    assert_eq!(bundle["window_end"], "2024-03-01T18:30:00+0000");
    assert_eq!(bundle["message_count"], 2);
}

#[tokio::test]
async fn two_webhooks_with_different_granularities_share_a_workspace() {
    let app = TestApp::spawn().await;
    let (immediate, hourly) = (Receiver::start().await, Receiver::start().await);
    let ws = app.workspace().await; // default granularity: none
    app.create_webhook(&ws.id, json!({"url": immediate.url})).await;
    app.create_webhook(&ws.id, json!({"url": hourly.url, "granularity": "1h"})).await;
    app.set_time("2024-03-01T12:05:00Z");
    app.ingest(&ws, &json!([message("m-1", "c-1", "a"), message("m-2", "c-1", "b")])).await;
    immediate.wait_for(2).await;
    app.delivered(&ws, 2).await;
    assert!(hourly.received().is_empty());
    app.set_time("2024-03-01T13:00:00Z");
    let bundle = hourly.wait_for(1).await[0].json();
    assert_eq!(bundle["message_count"], 2);
    let single = immediate.received()[0].json();
    assert_eq!(single["chat"]["chat_url"], bundle["chat"]["chat_url"], "the chat's link in both shapes");
    assert!(single.get("bundle_url").is_none(), "a single message has no bundle");
    assert_eq!(immediate.received().len(), 2, "the immediate webhook got each message once");
}

#[tokio::test]
async fn flush_releases_open_windows_now() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("6h", "UTC").await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.set_time("2024-03-01T13:00:00Z");
    app.ingest(&ws, &json!([message("m-1", "c-1", "a"), message("m-2", "c-2", "b")])).await;
    app.set_time("2024-03-01T14:00:00Z");
    assert_eq!(app.flush(&ws.id).await, 2);
    let seen = receiver.wait_for(2).await;
    app.delivered(&ws, 2).await;
    for r in &seen {
        let b = r.json();
        assert_eq!(b["window_start"], "2024-03-01T12:00:00+0000");
        assert_eq!(b["window_end"], "2024-03-01T14:00:00+0000", "a flushed window ends at the flush");
    }
    // What comes after the flush goes out at the natural end, starting where the flush cut.
    app.set_time("2024-03-01T14:00:01Z");
    app.ingest(&ws, &message("m-3", "c-1", "c")).await;
    app.set_time("2024-03-01T14:00:02Z");
    assert_eq!(app.flush(&ws.id).await, 1, "a second flush releases only what is new");
    receiver.wait_for(3).await;
    app.delivered(&ws, 3).await;
    app.set_time("2024-03-01T14:30:00Z");
    app.ingest(&ws, &message("m-4", "c-1", "d")).await;
    app.set_time("2024-03-01T18:00:00Z");
    let seen = receiver.wait_for(4).await;
    let last = seen[3].json();
    assert_eq!(last["window_start"], "2024-03-01T14:00:02+0000", "it starts at the last flush");
    assert_eq!(last["window_end"], "2024-03-01T18:00:00+0000");
    assert_eq!(last["messages"][0]["message_id"], "m-4");
    let missing = app.admin(reqwest::Method::POST, "/api/v1/workspaces/ws_nope/flush").send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn switching_to_none_sends_what_is_buffered_at_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url, "granularity": "1h"})).await;
    app.set_time("2024-03-01T12:10:00Z");
    app.ingest(&ws, &json!([message("m-1", "c-1", "a"), message("m-2", "c-1", "b")])).await;
    app.patch_webhook(hook["id"].as_str().unwrap(), json!({"granularity": "none"})).await;
    let seen = receiver.wait_for(2).await;
    let ids: Vec<String> = seen.iter().map(Received::message_id).collect();
    assert_eq!(ids, ["m-1", "m-2"], "buffered messages go out one by one, in order");
    app.ingest(&ws, &message("m-3", "c-1", "c")).await;
    let seen = receiver.wait_for(3).await;
    assert_eq!(seen[2].message_id(), "m-3", "and new ones at once");
    app.delivered(&ws, 3).await;
    app.set_time("2024-03-01T13:00:00Z");
    app.closer_settled().await;
    assert_eq!(receiver.received().len(), 3, "nothing twice");
}

#[tokio::test]
async fn switching_from_none_buffers_from_then_on() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.set_time("2024-03-01T12:10:00Z");
    app.ingest(&ws, &message("m-1", "c-1", "a")).await;
    receiver.wait_for(1).await;
    app.delivered(&ws, 1).await;
    app.patch_webhook(hook["id"].as_str().unwrap(), json!({"granularity": "1h"})).await;
    app.ingest(&ws, &message("m-2", "c-1", "b")).await;
    app.set_time("2024-03-01T13:00:00Z");
    let seen = receiver.wait_for(2).await;
    let bundle = seen[1].json();
    assert_eq!(bundle["message_count"], 1, "m-1 went out already; only m-2 is bundled");
    assert_eq!(bundle["messages"][0]["message_id"], "m-2");
}

#[tokio::test]
async fn a_shorter_window_takes_what_is_buffered_at_its_end() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("24h", "UTC").await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.set_time("2024-03-01T12:10:00Z");
    app.ingest(&ws, &message("m-1", "c-1", "a")).await;
    app.set_time("2024-03-01T14:20:00Z");
    app.ingest(&ws, &message("m-2", "c-1", "b")).await;
    // The workspace default changes, and with it the webhook that follows it.
    app.patch_workspace(&ws.id, json!({"granularity": "1h"})).await;
    app.ingest(&ws, &message("m-3", "c-1", "c")).await;
    app.set_time("2024-03-01T15:00:00Z");
    let bundle = receiver.wait_for(1).await[0].json();
    assert_eq!(bundle["message_count"], 3, "everything buffered goes out at the end of the new window");
    assert_eq!(bundle["window_start"], "2024-03-01T14:00:00+0000");
    assert_eq!(bundle["window_end"], "2024-03-01T15:00:00+0000");
}

#[tokio::test]
async fn a_longer_window_keeps_what_is_buffered_until_its_end() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url, "granularity": "1h"})).await;
    app.set_time("2024-03-01T12:10:00Z");
    app.ingest(&ws, &message("m-1", "c-1", "a")).await;
    app.set_time("2024-03-01T12:30:00Z");
    app.patch_webhook(hook["id"].as_str().unwrap(), json!({"granularity": "12h"})).await;
    app.set_time("2024-03-01T13:00:00Z");
    app.closer_settled().await;
    assert!(receiver.received().is_empty(), "the 1h window no longer applies");
    app.set_time("2024-03-01T18:00:00Z");
    app.ingest(&ws, &message("m-2", "c-1", "b")).await;
    app.set_time("2024-03-02T00:00:00Z");
    let bundle = receiver.wait_for(1).await[0].json();
    assert_eq!(bundle["message_count"], 2);
    assert_eq!(bundle["window_start"], "2024-03-01T12:00:00+0000");
    assert_eq!(bundle["window_end"], "2024-03-02T00:00:00+0000");
}

#[tokio::test]
async fn windows_that_ended_while_down_are_closed_at_startup() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("1h", "UTC").await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.set_time("2024-03-01T12:10:00Z");
    app.ingest(&ws, &message("m-1", "c-1", "before the stop")).await;
    let config = app.config.clone();
    let (dir, clock) = app.stop().await;
    clock.set(DateTime::parse_from_rfc3339("2024-03-01T15:30:00Z").unwrap().to_utc());
    let app = TestApp::spawn_with(dir, config, clock).await;
    let bundle = receiver.wait_for(1).await[0].json();
    assert_eq!(bundle["window_start"], "2024-03-01T12:00:00+0000");
    assert_eq!(bundle["window_end"], "2024-03-01T13:00:00+0000", "the window the message was received in");
    app.closer_settled().await;
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn a_close_cut_short_resumes_without_a_second_bundle() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("1h", "UTC").await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.set_time("2024-03-01T12:10:00Z");
    // More chats than one close step takes.
    let chats = chatbundle::window::closer::CHATS_PER_STEP + 150;
    let all: Vec<Value> = (0..chats).map(|i| message(&format!("m-{i}"), &format!("c-{i}"), "x")).collect();
    for chunk in all.chunks(1000) {
        app.ingest(&ws, &json!(chunk)).await;
    }
    let config = app.config.clone();
    let (dir, clock) = app.stop().await;

    // Past the window's end, with the daemon down, one step of the close commits, and then the
    // process dies: exactly what the database holds after a kill between two steps.
    clock.set(DateTime::parse_from_rfc3339("2024-03-01T13:00:05Z").unwrap().to_utc());
    let url = dir.store_url();
    let store = chatbundle::store::connect(&url, Arc::new(clock.clone())).await.unwrap();
    let webhook = store.bundling_webhooks(None).await.unwrap().remove(0);
    let boundary = DateTime::parse_from_rfc3339("2024-03-01T13:00:00Z").unwrap().to_utc();
    let plan =
        chatbundle::window::closer::plan(&webhook, chrono_tz::UTC, boundary, "http://cb.test".into(), None);
    let step = chatbundle::store::CloseStep {
        webhook_id: webhook.id.clone(),
        bundled_before: webhook.bundled_before,
        boundary,
        chats: chatbundle::window::closer::CHATS_PER_STEP,
        plan,
        flush: false,
    };
    let progress = store.close_step(step).await.unwrap();
    assert!(matches!(progress, chatbundle::store::CloseProgress::More { .. }), "{progress:?}");
    store.close().await;

    let app = TestApp::spawn_with(dir, config, clock).await;
    let seen = receiver.wait_for(chats).await;
    app.closer_settled().await;
    let seen_after = receiver.received();
    assert_eq!(seen_after.len(), chats, "{} bundles for {chats} chats", seen_after.len());
    let per_chat = by_chat(&seen);
    assert_eq!(per_chat.len(), chats, "every chat exactly once");
    assert!(per_chat.values().all(|b| b.len() == 1));
    let ids: std::collections::HashSet<&str> = seen.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), chats);
    assert_eq!(hook["granularity"], "1h");
}

use chrono::DateTime;

/// A webhook's `note_max_chars` decides where bundles split, each part's note says "(k/n)", and
/// the note's link opens the transcript on the page that holds the bundle's first message, with
/// the bundle's messages marked, however many came after it.
#[tokio::test]
async fn a_webhooks_note_limit_splits_bundles_and_the_link_opens_the_bundle_in_the_transcript() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("6h", "UTC").await;
    let path = format!("/api/v1/workspaces/{}/webhooks", ws.id);
    let small = app
        .admin(reqwest::Method::POST, &path)
        .json(&json!({"url": receiver.url, "note_max_chars": 499}))
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 400);
    assert_eq!(small.json::<Value>().await.unwrap()["error"]["field"], "note_max_chars");
    let webhook = app.create_webhook(&ws.id, json!({"url": receiver.url, "note_max_chars": 500})).await;
    assert_eq!(webhook["note_max_chars"], 500);

    app.set_time("2024-03-01T13:00:00Z");
    let text = "ご注文ありがとうございます。発送は明日の予定です。<よろしく> & 😀".repeat(2);
    let bundle: Vec<Value> = (1..=8).map(|i| message(&format!("b-{i}"), "c-1", &text)).collect();
    app.ingest(&ws, &Value::Array(bundle)).await;
    app.set_time("2024-03-01T14:00:00Z");
    let parts = app.flush(&ws.id).await as usize;
    assert!(parts >= 2, "{parts} parts");
    let seen: Vec<Value> = receiver.wait_for(parts).await.iter().map(Received::json).collect();
    for (i, part) in seen.iter().enumerate() {
        let note = part["aggregation"].as_str().unwrap();
        assert!(note.chars().count() <= 500, "{} characters", note.chars().count());
        assert!(note.starts_with(&format!("({}/{parts})<br/>", i + 1)), "{note}");
    }

    // Sixty newer messages push the bundle to the transcript's second page.
    app.set_time("2024-03-01T14:30:00Z");
    let later: Vec<Value> = (1..=60).map(|i| message(&format!("n-{i}"), "c-1", "later")).collect();
    app.ingest(&ws, &Value::Array(later)).await;
    let link = seen[0]["bundle_url"].as_str().unwrap();
    let (page_url, anchor) = link.split_once('#').unwrap();
    let page = app.http.get(page_url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("id=\"{anchor}\"")), "the bundle's first message is on the page");
    assert_eq!(page.matches(" marked\"").count(), 8, "the bundle's messages are marked: {page}");
    assert_eq!(page.matches(">later<").count(), 10, "the page after the 50 newest");
    assert!(page.contains("href=\"?page=0&amp;from=") || page.contains("href=\"?page=0&#38;from="), "{page}");
    let token_page = page_url.split('?').next().unwrap();
    let plain = app.http.get(token_page).send().await.unwrap().text().await.unwrap();
    assert!(!plain.contains(" marked\""), "nothing is marked without a bundle");

    let id = webhook["id"].as_str().unwrap();
    let changed = app
        .admin(reqwest::Method::PATCH, &format!("/api/v1/webhooks/{id}"))
        .json(&json!({"note_max_chars": 32000}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.json::<Value>().await.unwrap()["note_max_chars"], 32000);
}

/// The preview shows each chat's next bundle, most recently active first (or one chat), sends and
/// changes nothing, and is what a flush at that moment then delivers.
#[tokio::test]
async fn a_preview_shows_each_chats_next_bundle_and_a_flush_delivers_the_same() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("1h", "UTC").await;
    let webhook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = webhook["id"].as_str().unwrap();
    app.set_time("2024-03-01T12:10:00Z");
    app.ingest(&ws, &json!([message("m-1", "c-1", "first"), message("m-2", "c-1", "second")])).await;
    app.set_time("2024-03-01T12:20:00Z");
    app.ingest(&ws, &message("m-3", "c-2", "<b>other</b>")).await;
    app.set_time("2024-03-01T12:30:00Z");

    let shared = &app;
    let preview = |query: String| {
        let path = format!("/api/v1/webhooks/{id}/preview{query}");
        async move { shared.admin(reqwest::Method::GET, &path).send().await.unwrap() }
    };
    let all: Value = preview(String::new()).await.json().await.unwrap();
    let chats = all["chats"].as_array().unwrap();
    let order: Vec<&str> = chats.iter().map(|c| c["chat_id"].as_str().unwrap()).collect();
    assert_eq!(order, ["c-2", "c-1"], "most recently active first");
    assert_eq!(chats[1]["messages"], 2);
    let note = chats[1]["parts"][0]["note"].as_str().unwrap();
    assert!(note.starts_with("from John Doe on 2021-02-24 16:25: first<br/>"), "{note}");
    assert!(chats[0]["parts"][0]["note"].as_str().unwrap().contains("&#60;b&#62;other"), "escaped");
    let one: Value = preview(format!("?chat_id={}", chats[1]["id"])).await.json().await.unwrap();
    assert_eq!(one["chats"].as_array().unwrap().len(), 1);
    assert_eq!(one["chats"][0]["chat_id"], "c-1");
    assert_eq!(preview("?chat_id=999999".into()).await.status(), 404);
    assert_eq!(preview("?chat_id=x".into()).await.status(), 400);
    assert_eq!(app.stats(&ws).await.deliveries_pending, 0, "a preview queues nothing");

    // A flush now delivers what the preview showed (a bundle gets its id when it is made).
    assert_eq!(app.flush(&ws.id).await, 2);
    let delivered: Vec<Value> = receiver.wait_for(2).await.iter().map(Received::json).collect();
    let without_id = |mut payload: Value| {
        payload.as_object_mut().unwrap().remove("bundle_id");
        payload
    };
    for chat in chats {
        let shown = without_id(chat["parts"][0]["payload"].clone());
        let sent = delivered.iter().find(|d| d["chat"]["chat_id"] == chat["chat_id"]).unwrap();
        assert_eq!(shown, without_id(sent.clone()));
    }
    app.delivered(&ws, 2).await;
    let after: Value = preview(String::new()).await.json().await.unwrap();
    assert_eq!(after["chats"], json!([]), "nothing is buffered after the flush");
    assert_eq!(chats[1]["parts"][0]["payload"]["chat"]["is_new_chat"], true, "c-1 began in that bundle");
    app.ingest(&ws, &message("m-4", "c-1", "again")).await;
    let again: Value = preview(String::new()).await.json().await.unwrap();
    assert_eq!(
        again["chats"][0]["parts"][0]["payload"]["chat"]["is_new_chat"], false,
        "c-1 is not new any more"
    );
}

/// A workspace in Japanese gets its bundle notes in Japanese (the date first, 年月日, the link
/// line); the payload's keys stay; an unknown language is refused naming the field.
#[tokio::test]
async fn a_japanese_workspace_gets_japanese_notes() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let refused = app
        .admin(reqwest::Method::POST, "/api/v1/workspaces")
        .json(&json!({"name": "Acme", "owner_email": "owner@acme.example", "locale": "fr"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let refused: Value = refused.json().await.unwrap();
    assert!(refused["error"]["detail"].as_str().unwrap().contains("locale"), "{refused}");
    let ws = app.workspace_with("1h", "Asia/Tokyo").await;
    let changed = app
        .admin(reqwest::Method::PATCH, &format!("/api/v1/workspaces/{}", ws.id))
        .json(&json!({"locale": "ja"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.json::<Value>().await.unwrap()["locale"], "ja");
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.set_time("2024-03-01T12:10:00Z");
    app.ingest(&ws, &message("m-1", "c-1", "発送はいつですか?")).await;
    app.set_time("2024-03-01T12:20:00Z");
    assert_eq!(app.flush(&ws.id).await, 1);
    let bundle = receiver.wait_for(1).await[0].json();
    let note = bundle["aggregation"].as_str().unwrap();
    assert!(note.starts_with("2021年2月25日 01:25 John Doe: 発送はいつですか?<br/><a href='"), "{note}");
    assert!(note.ends_with("'>こちら</a>から会話を開けます"), "{note}");
    assert!(bundle["aggregation_text"].as_str().unwrap().contains("\n会話を開く: http"));
    assert_eq!(bundle["message_count"], 1, "the keys are the same in every language");
}

/// Media in bundles: a webhook with `media: placeholder` bundles a media message with its
/// caption or a placeholder in the workspace's language, and its attachments; one that skips
/// media bundles the text alone (and makes no bundle for a chat of media alone). The preview is
/// what the flush delivers, and the transcript shows the media with links.
#[tokio::test]
async fn media_are_bundled_with_japanese_placeholders_or_left_out_as_each_webhook_chooses() {
    let app = TestApp::spawn().await;
    let (keeps, skips) = (Receiver::start().await, Receiver::start().await);
    let ws = app.workspace_with("1h", "Asia/Tokyo").await;
    app.admin(reqwest::Method::PATCH, &format!("/api/v1/workspaces/{}", ws.id))
        .json(&json!({"locale": "ja"}))
        .send()
        .await
        .unwrap();
    let kept = app.create_webhook(&ws.id, json!({"url": keeps.url, "media": "placeholder"})).await;
    let refused = app
        .admin(reqwest::Method::POST, &format!("/api/v1/workspaces/{}/webhooks", ws.id))
        .json(&json!({"url": skips.url, "media": "all"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let refused: Value = refused.json().await.unwrap();
    assert!(refused["error"]["detail"].as_str().unwrap().contains("media"), "{refused}");
    app.create_webhook(&ws.id, json!({"url": skips.url})).await;

    let with = |id: &str, chat: &str, text: Option<&str>, attachments: Value| {
        let mut m = message(id, chat, text.unwrap_or_default());
        if text.is_none() {
            m.as_object_mut().unwrap().remove("text");
        }
        m["attachments"] = attachments;
        m
    };
    app.set_time("2024-03-01T12:10:00Z");
    let accepted = app
        .ingest(
            &ws,
            &json!([
                message("m-1", "c-1", "見積もりをお願いします"),
                with("m-2", "c-1", None, json!([{"type": "image", "mime_type": "image/jpeg", "url": "https://media.example/p/1.jpg"}])),
                with("m-3", "c-1", Some("請求書です <b>"), json!([{"type": "document", "mime_type": "application/pdf", "filename": "invoice.pdf", "media_id": "doc-9"}])),
                with("m-4", "c-1", None, json!([{"type": "location", "latitude": 35.68, "longitude": 139.76}])),
                with("m-5", "c-2", None, json!([{"type": "voice", "mime_type": "audio/ogg"}])),
                with("m-7", "c-3", None, json!([{"type": "sticker"}])),
                message("m-8", "c-3", "こんにちは"),
                {"message_id": "m-6", "type": "reaction", "direction": "received", "chat": {"id": "c-1"}},
            ]),
        )
        .await;
    assert_eq!(
        (accepted["accepted"].as_u64(), accepted["skipped"].as_u64()),
        (Some(7), Some(1)),
        "{accepted}"
    );
    app.set_time("2024-03-01T12:20:00Z");

    let path = format!("/api/v1/webhooks/{}/preview", kept["id"].as_str().unwrap());
    let preview: Value = app.admin(reqwest::Method::GET, &path).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        app.flush(&ws.id).await,
        5,
        "c-1, c-2, c-3 for the webhook that keeps media; c-1, c-3 for the other"
    );
    let delivered = by_chat(&keeps.wait_for(3).await);
    let bundle = &delivered["c-1"][0];
    let note = bundle["aggregation"].as_str().unwrap();
    assert!(note.starts_with("2021年2月25日 01:25 John Doe: 見積もりをお願いします<br/>"), "{note}");
    assert!(note.contains("John Doe: [画像]<br/>"), "{note}");
    assert!(note.contains("John Doe: [ドキュメント: invoice.pdf] 請求書です &#60;b&#62;<br/>"), "{note}");
    assert!(note.contains("John Doe: [位置情報 35.68, 139.76]<br/>"), "{note}");
    assert!(bundle["aggregation_text"].as_str().unwrap().contains("John Doe: [画像]\n"));
    assert_eq!(bundle["message_count"], 4);
    let messages = bundle["messages"].as_array().unwrap();
    assert_eq!(messages[1]["text"], "[画像]");
    assert_eq!(
        messages[1]["attachments"],
        json!([{"type": "image", "mime_type": "image/jpeg", "url": "https://media.example/p/1.jpg"}])
    );
    assert_eq!(messages[2]["text"], "請求書です <b>", "a caption is the text");
    assert_eq!(messages[2]["attachments"][0]["media_id"], "doc-9");
    assert!(messages[0].get("attachments").is_none(), "a text message has no attachments key");
    assert_eq!(delivered["c-2"][0]["messages"][0]["text"], "[ボイスメッセージ]");

    // The preview showed what the flush delivered.
    let shown = preview["chats"].as_array().unwrap().iter().find(|c| c["chat_id"] == "c-1").unwrap();
    assert_eq!(shown["messages"], 4);
    let mut shown = shown["parts"][0]["payload"].clone();
    let mut sent = bundle.clone();
    for payload in [&mut shown, &mut sent] {
        payload.as_object_mut().unwrap().remove("bundle_id");
    }
    assert_eq!(shown, sent);

    // The webhook that skips media: c-1's text and the caption without its document, nothing
    // for c-2 (a voice message has no words), and c-3 new with its first words.
    let plain = by_chat(&skips.wait_for(2).await);
    let c1 = &plain["c-1"][0];
    assert_eq!(c1["message_count"], 2);
    assert_eq!(c1["messages"][1]["text"], "請求書です <b>");
    assert!(c1["messages"][1].get("attachments").is_none());
    assert!(!c1["aggregation"].as_str().unwrap().contains('['), "no placeholder: {}", c1["aggregation"]);
    assert_eq!(plain["c-3"][0]["message_count"], 1);
    assert_eq!(
        plain["c-3"][0]["chat"]["is_new_chat"], true,
        "the first message it sees of a chat opened with a sticker"
    );
    assert_eq!(delivered["c-3"][0]["message_count"], 2);
    assert_eq!(delivered["c-3"][0]["chat"]["is_new_chat"], true);
    assert!(!plain.contains_key("c-2"));

    // The transcript shows every message, media as placeholders linked where they can be opened.
    let link = bundle["bundle_url"].as_str().unwrap();
    let page = app.http.get(link).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains(
            "<a href=\"https://media.example/p/1.jpg\" rel=\"noopener noreferrer nofollow\">[画像]</a>"
        ),
        "{page}"
    );
    assert!(page.contains("<span>[ドキュメント: invoice.pdf]</span>"), "{page}");
    assert!(page.contains("請求書です &#60;b&#62;"), "{page}");
}
