//! Conversation bundles through the daemon: one bundle per chat when its conversation ends (by
//! silence, its maximum, the channel ending the session, a flush), on the injected clock, with
//! the closer, the delivery worker and a real receiver. Chatwoot's `conversation_status_changed`
//! follows Chatwoot's webhook documentation (developers.chatwoot.com, "Webhook events"); Zoho
//! Desk's `IM_Session_Status` its IM webhook documentation.

use serde_json::{Value, json};

use chrono::DateTime;

use crate::helpers::*;

/// A workspace that bundles by conversation, and a receiver of its bundles.
async fn conversation_workspace(app: &TestApp, settings: Value) -> (Workspace, Receiver) {
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("conversation", "UTC").await;
    if settings.as_object().is_some_and(|s| !s.is_empty()) {
        app.patch_workspace(&ws.id, settings).await;
    }
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    (ws, receiver)
}

fn ids(bundle: &Value) -> Vec<&str> {
    bundle["messages"].as_array().unwrap().iter().map(|m| m["message_id"].as_str().unwrap()).collect()
}

/// A message the business sent, at its own time.
fn sent_at(id: &str, chat: &str, text: &str, at: &str) -> Value {
    let mut m = message_at(id, chat, text, at);
    m["direction"] = json!("sent");
    m
}

#[tokio::test]
async fn silence_closes_a_conversation_with_what_both_sides_said_and_the_next_message_opens_another() {
    let app = TestApp::spawn().await; // 12:00:00Z
    let (ws, receiver) = conversation_workspace(&app, json!({"conversation_silence": "10m"})).await;
    app.ingest(&ws, &message_at("m-1", "c-1", "is my order shipped?", "2024-03-01T12:00:00Z")).await;
    app.set_time("2024-03-01T12:04:00Z");
    app.ingest(&ws, &sent_at("m-2", "c-1", "yes, this morning", "2024-03-01T12:04:00Z")).await;
    app.ingest(&ws, &message_at("x-1", "c-2", "another chat", "2024-03-01T12:04:00Z")).await;

    // Ten minutes after the last message of each chat, and not before.
    app.set_time("2024-03-01T12:13:59Z");
    app.closer_settled().await;
    assert!(receiver.received().is_empty(), "nothing while the chats may still talk");
    app.set_time("2024-03-01T12:14:01Z");
    let seen = receiver.wait_for(2).await;
    let bundles: Vec<Value> = seen.iter().map(Received::json).collect();
    let c1 = bundles.iter().find(|b| b["chat"]["chat_id"] == "c-1").unwrap();
    assert_eq!(ids(c1), ["m-1", "m-2"], "both directions, in order");
    assert_eq!(c1["closed_by"], "silence");
    assert_eq!(c1["window_start"], "2024-03-01T12:00:00+0000", "its first message's time");
    assert_eq!(c1["window_end"], "2024-03-01T12:04:00+0000", "its last message's time");
    assert_eq!(c1["message_count"], 2);
    assert_eq!(c1["chat"]["is_new_chat"], true);
    assert!(c1["aggregation"].as_str().unwrap().contains("is my order shipped?"));
    assert!(bundles.iter().any(|b| b["chat"]["chat_id"] == "c-2" && ids(b) == ["x-1"]));
    app.delivered(&ws, 2).await;

    // The chat speaks again: a new conversation, a new bundle with only what followed.
    app.set_time("2024-03-01T12:30:00Z");
    app.ingest(&ws, &message_at("m-3", "c-1", "thanks!", "2024-03-01T12:30:00Z")).await;
    app.set_time("2024-03-01T12:40:01Z");
    let next = receiver.wait_for(3).await[2].json();
    assert_eq!(ids(&next), ["m-3"]);
    assert_eq!(next["chat"]["is_new_chat"], false);
    assert_ne!(next["bundle_id"], c1["bundle_id"]);
    app.closer_settled().await;
    assert_eq!(receiver.received().len(), 3, "each conversation once");
}

#[tokio::test]
async fn a_chat_that_never_falls_quiet_gets_its_bundle_at_the_maximum() {
    let app = TestApp::spawn().await;
    let (ws, receiver) =
        conversation_workspace(&app, json!({"conversation_silence": "30m", "conversation_max": "1h"})).await;
    for (n, at) in ["12:00", "12:20", "12:40", "12:59"].iter().enumerate() {
        app.set_time(&format!("2024-03-01T{at}:00Z"));
        let time = format!("2024-03-01T{at}:00Z");
        app.ingest(&ws, &message_at(&format!("m-{n}"), "c-1", "still talking", &time)).await;
    }
    app.set_time("2024-03-01T13:00:01Z");
    let bundle = receiver.wait_for(1).await[0].json();
    assert_eq!(bundle["closed_by"], "max");
    assert_eq!(ids(&bundle), ["m-0", "m-1", "m-2", "m-3"]);
    app.delivered(&ws, 1).await;
    // What follows opens the next conversation.
    app.set_time("2024-03-01T13:05:00Z");
    app.ingest(&ws, &message("m-4", "c-1", "one more")).await;
    app.set_time("2024-03-01T13:35:01Z");
    let next = receiver.wait_for(2).await[1].json();
    assert_eq!((ids(&next), next["closed_by"].as_str()), (vec!["m-4"], Some("silence")));
}

#[tokio::test]
async fn a_chatwoot_resolve_and_a_zoho_desk_end_close_the_conversation_at_once() {
    let app = TestApp::spawn().await;
    let (ws, receiver) = conversation_workspace(&app, json!({})).await;
    let chatwoot = source(
        &app,
        &ws,
        json!({"kind": "chatwoot", "name": "Chatwoot", "credentials": {"secret": "cw-secret"}}),
    )
    .await;
    let url = chatwoot["inbound_url"].as_str().unwrap().to_string();
    let now = start_time().timestamp().to_string();
    let send = |body: Value| {
        let raw = serde_json::to_vec(&body).unwrap();
        let signature = format!("sha256={}", hex_hmac_sha256("cw-secret", &[now.as_bytes(), b".", &raw]));
        app.http
            .post(&url)
            .header("x-chatwoot-signature", signature)
            .header("x-chatwoot-timestamp", now.clone())
            .header("content-type", "application/json")
            .body(raw)
            .send()
    };
    let incoming = json!({"event": "message_created", "id": 118, "content": "Where is my parcel?",
        "created_at": "2024-03-01T12:00:00.000Z", "message_type": "incoming", "content_type": "text", "private": false,
        "sender": {"id": 14, "name": "Li Wei", "phone_number": "+8613800138000"},
        "conversation": {"id": 207, "inbox_id": 3, "channel": "Channel::Whatsapp", "status": "open",
            "meta": {"sender": {"id": 14, "name": "Li Wei", "phone_number": "+8613800138000", "type": "contact"}}},
        "account": {"id": 1, "name": "Acme Inc"}});
    assert_eq!(send(incoming).await.unwrap().status(), 200);
    app.closer_settled().await;
    assert!(receiver.received().is_empty());
    let resolved = json!({"event": "conversation_status_changed", "id": 207, "inbox_id": 3,
        "channel": "Channel::Whatsapp", "status": "resolved",
        "meta": {"sender": {"id": 14, "name": "Li Wei", "phone_number": "+8613800138000", "type": "contact"}},
        "changed_attributes": [{"status": {"previous_value": "open", "current_value": "resolved"}}]});
    assert_eq!(send(resolved).await.unwrap().status(), 200);
    // No clock moves: the resolve itself sends the bundle.
    let bundle = receiver.wait_for(1).await[0].json();
    assert_eq!(bundle["closed_by"], "session_end");
    assert_eq!(bundle["chat"]["chat_id"], "207");
    assert_eq!(bundle["message_count"], 1);

    let zoho = source(&app, &ws, json!({"kind": "zoho_desk", "name": "Zoho Desk"})).await;
    let zoho_url = zoho["inbound_url"].as_str().unwrap().to_string();
    let message = json!([{"payload": {"actor": {"contactId": "186543000000451259", "name": "Kamal Nayan",
            "externalId": "+919878765654", "type": "ENDUSER"}, "messageType": "TEXT",
            "integration": "WHATSAPP", "createdTime": "1709294400000", "sessionId": "3942000001025025",
            "id": "3942000001321149", "text": "My phone will not start", "channelId": "3942000000995017",
            "direction": "IN", "status": "SAVED"},
        "eventTime": "1709294400100", "eventType": "IM_Message_Add", "orgId": "78412359"}]);
    assert_eq!(app.http.post(&zoho_url).json(&message).send().await.unwrap().status(), 200);
    let ended = json!([{"payload": {"currentAssigneeId": "106554156", "sessionStatus": "ENDED",
            "replyStatus": "SESSION_ENDED", "sessionId": "3942000001025025", "assigneeType": "AGENT",
            "channelId": "3942000000995017"},
        "eventTime": "1709294400200", "eventType": "IM_Session_Status", "orgId": "78412359"}]);
    assert_eq!(app.http.post(&zoho_url).json(&ended).send().await.unwrap().status(), 200);
    let bundle = receiver.wait_for(2).await[1].json();
    assert_eq!(bundle["closed_by"], "session_end");
    assert_eq!(bundle["chat"]["chat_id"], "3942000001025025");
    assert_eq!(ids(&bundle), ["3942000001321149"]);
}

#[tokio::test]
async fn a_conversation_due_while_the_daemon_was_down_goes_out_once_after_the_restart() {
    let app = TestApp::spawn().await;
    let (ws, receiver) = conversation_workspace(&app, json!({"conversation_silence": "5m"})).await;
    app.ingest(&ws, &message("m-1", "c-1", "hello")).await;
    let (dir, clock) = app.stop().await;
    clock.set(DateTime::parse_from_rfc3339("2024-03-01T13:00:00Z").unwrap().to_utc());
    let config = test_config(&dir);
    let app = TestApp::spawn_with(dir, config, clock).await;
    let bundle = receiver.wait_for(1).await[0].json();
    assert_eq!((ids(&bundle), bundle["closed_by"].as_str()), (vec!["m-1"], Some("silence")));
    app.delivered(&ws, 1).await;
    app.closer_settled().await;
    app.set_time("2024-03-01T14:00:00Z");
    app.closer_settled().await;
    assert_eq!(receiver.received().len(), 1, "once");
}

#[tokio::test]
async fn a_flush_and_a_change_of_granularity_send_open_conversations_at_once() {
    let app = TestApp::spawn().await;
    let (ws, receiver) = conversation_workspace(&app, json!({})).await;
    app.ingest(&ws, &message("m-1", "c-1", "first")).await;
    assert_eq!(app.flush(&ws.id).await, 1);
    let flushed = receiver.wait_for(1).await[0].json();
    assert_eq!((ids(&flushed), flushed["closed_by"].as_str()), (vec!["m-1"], Some("flush")));
    app.delivered(&ws, 1).await;

    // Hourly from now: what the conversation held goes out at once, and what follows waits
    // for the hour.
    app.set_time("2024-03-01T12:10:00Z");
    app.ingest(&ws, &message("m-2", "c-1", "second")).await;
    app.patch_workspace(&ws.id, json!({"granularity": "1h"})).await;
    let ended = receiver.wait_for(2).await[1].json();
    assert_eq!((ids(&ended), ended["closed_by"].as_str()), (vec!["m-2"], Some("flush")));
    app.ingest(&ws, &message("m-3", "c-1", "third")).await;
    app.delivered(&ws, 2).await;
    app.set_time("2024-03-01T13:00:00Z");
    let hourly = receiver.wait_for(3).await[2].json();
    assert_eq!(ids(&hourly), ["m-3"]);
    assert!(hourly.get("closed_by").is_none(), "a window's bundle says nothing of conversations");
    app.delivered(&ws, 3).await;

    // And back: what the hour buffered goes out as one bundle per chat, then conversations.
    app.set_time("2024-03-01T13:10:00Z");
    app.ingest(&ws, &message("m-4", "c-1", "fourth")).await;
    app.patch_workspace(&ws.id, json!({"granularity": "conversation", "conversation_silence": "1m"})).await;
    let buffered = receiver.wait_for(4).await[3].json();
    assert_eq!(ids(&buffered), ["m-4"]);
    app.ingest(&ws, &message("m-5", "c-1", "fifth")).await;
    app.delivered(&ws, 4).await;
    app.set_time("2024-03-01T13:11:01Z");
    let conversation = receiver.wait_for(5).await[4].json();
    assert_eq!((ids(&conversation), conversation["closed_by"].as_str()), (vec!["m-5"], Some("silence")));
}

#[tokio::test]
async fn conversation_settings_are_checked_and_shown() {
    let app = TestApp::spawn().await;
    let ws = app.workspace_with("conversation", "UTC").await;
    let shown = app.get_json(&format!("/api/v1/workspaces/{}", ws.id)).await;
    assert_eq!(
        (shown["conversation_silence"].as_str(), shown["conversation_max"].as_str()),
        (Some("30m"), Some("1day"))
    );
    for (field, value) in
        [("conversation_silence", "30s"), ("conversation_silence", "2days"), ("conversation_max", "10m")]
    {
        let response = app
            .admin(reqwest::Method::PATCH, &format!("/api/v1/workspaces/{}", ws.id))
            .json(&json!({ field: value }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{field} {value}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    let receiver = Receiver::start().await;
    let hook = app
        .create_webhook(
            &ws.id,
            json!({"url": receiver.url, "conversation_silence": "2m", "conversation_max": "3h"}),
        )
        .await;
    assert_eq!(
        (hook["granularity"].as_str(), hook["conversation_silence"].as_str()),
        (Some("conversation"), Some("2m"))
    );
    let id = hook["id"].as_str().unwrap();
    let back = app.patch_webhook(id, json!({"conversation_silence": null})).await;
    assert!(back["conversation_silence"].is_null(), "back to the workspace's");
    // The webhook's own silence decides: two minutes here, not the workspace's thirty.
    let own = app.patch_webhook(id, json!({"conversation_silence": "2m"})).await;
    assert_eq!(own["conversation_silence"], "2m");
    app.ingest(&ws, &message("m-1", "c-1", "hi")).await;
    app.set_time("2024-03-01T12:02:01Z");
    let bundle = receiver.wait_for(1).await[0].json();
    assert_eq!(bundle["closed_by"], "silence");
}
