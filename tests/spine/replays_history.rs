//! Replaying history to a webhook: a dry run counts, the replay sends exactly that (marked
//! `"replay": true`, with ids of its own), the live stream goes on beside it, and a cancel stops
//! what has not gone out.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn replay(app: &TestApp, webhook: &str, body: Value) -> reqwest::Response {
    app.admin(Method::POST, &format!("/api/v1/webhooks/{webhook}/replay")).json(&body).send().await.unwrap()
}

async fn progress(app: &TestApp, webhook: &str, replay: &str) -> Value {
    app.get_json(&format!("/api/v1/webhooks/{webhook}/replays/{replay}")).await
}

/// The message ids a request carries (a bundle's, or a single message's).
fn carried(body: &Value) -> Vec<String> {
    match body["messages"].as_array() {
        Some(list) => list.iter().map(|m| m["message_id"].as_str().unwrap().to_string()).collect(),
        None => vec![body["message"]["message_id"].as_str().unwrap().to_string()],
    }
}

#[tokio::test]
async fn a_dry_run_counts_what_the_replay_then_sends_beside_the_live_stream() {
    let app = TestApp::spawn().await; // 12:00Z
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("1h", "UTC").await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let hook = hook["id"].as_str().unwrap().to_string();
    // Two hours of two chats, delivered live hour by hour.
    app.set_time("2024-03-01T12:10:00Z");
    app.ingest(&ws, &json!([message("m-1", "c-1", "one"), message("m-2", "c-2", "two")])).await;
    app.set_time("2024-03-01T12:50:00Z");
    app.ingest(&ws, &message("m-3", "c-1", "three")).await;
    app.set_time("2024-03-01T13:20:00Z");
    app.ingest(&ws, &message("m-4", "c-1", "four")).await;
    // The first hour's two bundles are recorded before the clock jumps 40 minutes: a jump while
    // one is in flight would outlast its lease, and it would rightly go out again.
    app.delivered(&ws, 2).await;
    app.set_time("2024-03-01T14:00:00Z");
    let live = receiver.wait_for(3).await;
    app.delivered(&ws, 3).await;

    let range = json!({"from": "2024-03-01T12:00:00Z", "to": "2024-03-01T14:00:00Z", "dry_run": true});
    let dry = replay(&app, &hook, range).await;
    assert_eq!(dry.status(), 200);
    let counts: Value = dry.json().await.unwrap();
    assert_eq!(counts, json!({"chats": 2, "bundles": 3, "messages": 4, "calls": 3}));
    assert_eq!(receiver.received().len(), 3, "a dry run sends nothing");

    let started =
        replay(&app, &hook, json!({"from": "2024-03-01T12:00:00Z", "to": "2024-03-01T14:00:00Z"})).await;
    assert_eq!(started.status(), 202);
    let started: Value = started.json().await.unwrap();
    let id = started["replay_id"].as_str().unwrap().to_string();
    // The live stream goes on meanwhile.
    app.ingest(&ws, &message("m-5", "c-3", "live")).await;
    let all = receiver.wait_for(6).await;
    let replayed: Vec<&Received> = all[3..].iter().filter(|r| r.json()["replay"] == true).collect();
    assert_eq!(replayed.len(), 3, "as many calls as the dry run said");
    let live_ids: BTreeSet<String> = live.iter().map(|r| r.header("webhook-id").to_string()).collect();
    let mut again: Vec<String> = Vec::new();
    for r in &replayed {
        assert!(!live_ids.contains(r.header("webhook-id")), "ids of their own");
        again.extend(carried(&r.json()));
    }
    again.sort();
    let mut before: Vec<String> = live.iter().flat_map(|r| carried(&r.json())).collect();
    before.sort();
    assert_eq!(again, before, "the same messages, bundled the same way");
    let windows: BTreeSet<(String, String)> = replayed
        .iter()
        .map(|r| {
            (
                r.json()["chat"]["chat_id"].as_str().unwrap().to_string(),
                r.json()["window_start"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(windows.contains(&("c-1".into(), "2024-03-01T13:00:00+0000".into())), "{windows:?}");
    let status = eventually("the replay delivered", || async {
        let p = progress(&app, &hook, &id).await;
        (p["delivered"] == 3).then_some(p)
    })
    .await;
    assert_eq!((status["status"].as_str(), status["finished"].as_bool()), (Some("sending"), Some(true)));
    assert_eq!(status["planned"], json!({"chats": 2, "bundles": 3, "messages": 4, "calls": 3}));
    // m-5 waits for its hour, untouched by the replay.
    app.set_time("2024-03-01T15:00:00Z");
    let after = receiver.wait_for(7).await;
    assert_eq!(carried(&after[6].json()), ["m-5"]);
    assert!(after[6].json().get("replay").is_none());
}

#[tokio::test]
async fn a_replay_goes_behind_nothing_live_and_a_cancel_stops_what_has_not_gone_out() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await; // granularity none: a call per message
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let hook = hook["id"].as_str().unwrap().to_string();
    let history: Vec<Value> = (0..5).map(|i| message(&format!("h-{i}"), "c-1", "history")).collect();
    app.ingest(&ws, &json!(history)).await;
    receiver.wait_for(5).await;
    app.delivered(&ws, 5).await;
    app.set_time("2024-03-01T12:30:00Z");

    // The endpoint is down for the replay's first call: its lane waits for the retry, and
    // nothing live waits behind it.
    receiver.then(Reply::status(503));
    let started =
        replay(&app, &hook, json!({"from": "2024-03-01T11:00:00Z", "to": "2024-03-01T12:30:00Z"})).await;
    assert_eq!(started.status(), 202);
    let id = started.json::<Value>().await.unwrap()["replay_id"].as_str().unwrap().to_string();
    receiver.wait_for(6).await;
    app.ingest(&ws, &message("live-1", "c-1", "now")).await;
    let seen = receiver.wait_for(7).await;
    assert_eq!(carried(&seen[6].json()), ["live-1"], "the live message of the same chat went out at once");
    assert!(seen[6].json().get("replay").is_none());

    let cancelled =
        app.admin(Method::DELETE, &format!("/api/v1/webhooks/{hook}/replays/{id}")).send().await.unwrap();
    assert_eq!(cancelled.status(), 200);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancelled"], 5, "the failed first call and the four behind it");
    app.set_time("2024-03-01T13:30:00Z");
    app.closer_settled().await;
    app.ingest(&ws, &message("live-2", "c-1", "later")).await;
    let seen = receiver.wait_for(8).await;
    assert_eq!(carried(&seen[7].json()), ["live-2"], "nothing of the cancelled replay went out");
    let log = app.get_text(&format!("/api/v1/webhooks/{hook}/activity")).await;
    assert!(log.contains("replay_started") && log.contains("replay_cancelled"), "{log}");
    // Nothing that authenticates in what went out or in the log.
    for text in receiver.received().iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).chain([log])
    {
        assert!(!text.contains(&ws.ingest_key) && !text.contains("whsec_"), "{text}");
    }
}

#[tokio::test]
async fn a_conversation_webhook_replays_conversations_and_bad_asks_are_refused() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("conversation", "UTC").await;
    app.patch_workspace(&ws.id, json!({"conversation_silence": "10m"})).await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let hook = hook["id"].as_str().unwrap().to_string();
    app.ingest(&ws, &message("m-1", "c-1", "a")).await;
    app.set_time("2024-03-01T12:05:00Z");
    app.ingest(&ws, &message("m-2", "c-1", "b")).await;
    app.set_time("2024-03-01T12:16:00Z");
    receiver.wait_for(1).await;
    app.delivered(&ws, 1).await;
    app.set_time("2024-03-01T12:30:00Z");
    app.ingest(&ws, &message("m-3", "c-1", "c")).await;
    app.set_time("2024-03-01T13:00:00Z");
    receiver.wait_for(2).await;
    app.delivered(&ws, 2).await;
    let chats = app.get_json(&format!("/api/v1/workspaces/{}/chats", ws.id)).await;
    let chat = chats["chats"][0]["id"].as_i64().unwrap();
    let body = json!({"from": "2024-03-01T11:00:00Z", "to": "2024-03-01T13:00:00Z", "chat_id": chat, "dry_run": true});
    let dry: Value = replay(&app, &hook, body).await.json().await.unwrap();
    assert_eq!(dry, json!({"chats": 1, "bundles": 2, "messages": 3, "calls": 2}));
    let started =
        replay(&app, &hook, json!({"from": "2024-03-01T11:00:00Z", "to": "2024-03-01T13:00:00Z"})).await;
    assert_eq!(started.status(), 202);
    let seen = receiver.wait_for(4).await;
    let replayed: Vec<Value> = seen[2..].iter().map(Received::json).collect();
    assert!(replayed.iter().all(|b| b["replay"] == true && b["closed_by"] == "silence"), "{replayed:?}");
    let mut groups: Vec<Vec<String>> = replayed.iter().map(carried).collect();
    groups.sort();
    assert_eq!(groups, [vec!["m-1".to_string(), "m-2".to_string()], vec!["m-3".to_string()]]);

    for (body, field) in [
        (json!({"from": "2024-03-01T13:00:00Z", "to": "2024-03-01T12:00:00Z"}), "to"),
        (json!({"from": "yesterday", "to": "2024-03-01T12:00:00Z"}), "from"),
        (json!({"to": "2024-03-01T12:00:00Z"}), "from"),
    ] {
        let response = replay(&app, &hook, body).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        let named = error["error"]["field"] == field
            || error["error"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&format!("{field}:")) || d.contains(&format!("`{field}`")));
        assert!(named, "the refusal names {field}: {error}");
    }
    let other = app.workspace().await;
    let stranger = app.ingest(&other, &message("x-1", "x-1", "elsewhere")).await;
    let _ = stranger;
    let theirs = app.get_json(&format!("/api/v1/workspaces/{}/chats", other.id)).await["chats"][0]["id"]
        .as_i64()
        .unwrap();
    let body = json!({"from": "2024-03-01T11:00:00Z", "to": "2024-03-01T13:00:00Z", "chat_id": theirs});
    assert_eq!(replay(&app, &hook, body).await.status(), 404, "a chat of another workspace");
    let missing =
        app.admin(Method::GET, &format!("/api/v1/webhooks/{hook}/replays/rp_nothing")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}
