use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn one_message_or_an_array_is_accepted_after_commit() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let one = app.ingest(&ws, &message("m-1", "c-1", "Hi")).await;
    assert_eq!(one, json!({"accepted": 1, "duplicates": 0, "skipped": 0}));
    let many: Vec<Value> = (2..=101).map(|i| message(&format!("m-{i}"), "c-2", "hello")).collect();
    let outcome = app.ingest(&ws, &json!(many)).await;
    assert_eq!(outcome["accepted"], 100);
    let stats = app.stats(&ws).await;
    assert_eq!((stats.messages, stats.chats), (101, 2));
}

#[tokio::test]
async fn the_admin_token_may_ingest_too() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let response = app
        .admin(Method::POST, &format!("/api/v1/workspaces/{}/messages", ws.id))
        .json(&message("m-1", "c-1", "Hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn a_redelivered_message_is_a_duplicate_and_is_delivered_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;

    assert_eq!(app.ingest(&ws, &message("m-1", "c-1", "first")).await["accepted"], 1);
    let again = app.ingest(&ws, &message("m-1", "c-1", "first, sent again")).await;
    assert_eq!(again, json!({"accepted": 0, "duplicates": 1, "skipped": 0}));
    let mixed = app.ingest(&ws, &json!([message("m-1", "c-1", "x"), message("m-2", "c-1", "second")])).await;
    assert_eq!(mixed, json!({"accepted": 1, "duplicates": 1, "skipped": 0}));

    // Same chat, so deliveries arrive in order: a delivery for the duplicate would come before m-2.
    let seen = receiver.wait_for(2).await;
    let ids: Vec<String> = seen.iter().map(Received::message_id).collect();
    assert_eq!(ids, ["m-1", "m-2"]);
    assert_eq!(seen[0].json()["message"]["text"], "first", "the original is kept");
    assert_eq!(app.stats(&ws).await.messages, 2);
}

#[tokio::test]
async fn messages_without_words_or_media_are_skipped_and_counted_and_media_are_kept() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    // A typed message with neither text nor attachments (a reaction, an image without its file).
    let mut image = message("m-img", "c-1", "");
    image["type"] = json!("image");
    let mut reaction = message("m-re", "c-1", "");
    reaction["type"] = json!("reaction");
    let mut attachment = message("m-att", "c-1", "");
    attachment.as_object_mut().unwrap().remove("text");
    attachment["attachments"] = json!([{"type": "document", "url": "https://cdn.example/x.pdf"}]);
    let outcome =
        app.ingest(&ws, &json!([image, reaction, attachment, message("m-txt", "c-1", "words")])).await;
    assert_eq!(outcome, json!({"accepted": 2, "duplicates": 0, "skipped": 2}));
    // The document is stored (for the transcript and webhooks that take media); this webhook
    // skips media, as a webhook does unless told otherwise, so the text comes alone.
    let seen = receiver.wait_for(1).await;
    assert_eq!(seen[0].message_id(), "m-txt");
    assert_eq!(app.stats(&ws).await.messages, 2);

    let only_skipped = app.ingest(&ws, &json!([{"type": "sticker", "message_id": "s"}])).await;
    assert_eq!(only_skipped, json!({"accepted": 0, "duplicates": 0, "skipped": 1}));
}

/// Sends a request and checks it was refused with `status`, naming `field`, storing nothing.
async fn refused(app: &TestApp, ws: &Workspace, request: reqwest::RequestBuilder, status: u16, field: &str) {
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), status, "expected {status} naming {field}");
    let body: Value = response.json().await.unwrap();
    let detail = body["error"]["detail"].as_str().unwrap_or_else(|| panic!("error shape: {body}"));
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(detail.contains(field), "{detail:?} should name {field:?}");
    let stats = app.stats(ws).await;
    assert_eq!((stats.messages, stats.chats), (0, 0), "nothing stored after {detail}");
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_named_and_nothing_stored() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let other = app.workspace().await;
    let url = app.url(&format!("/api/v1/workspaces/{}/messages", ws.id));
    let post = || app.http.post(&url).bearer_auth(&ws.ingest_key);
    let json_post = |body: Value| post().json(&body);
    let without = |key: &str| {
        let mut m = message("m-1", "c-1", "Hi");
        let (object, key) = key.split_once('.').unwrap_or(("", key));
        let target = if object.is_empty() { &mut m } else { &mut m[object] };
        target.as_object_mut().unwrap().remove(key);
        m
    };

    let malformed = post().header("content-type", "application/json").body("{\"message_id\": ");
    refused(&app, &ws, malformed, 400, "JSON").await;
    refused(&app, &ws, json_post(without("message_id")), 400, "message_id").await;
    refused(&app, &ws, json_post(without("chat.id")), 400, "chat.id").await;
    refused(&app, &ws, json_post(without("chat")), 400, "chat").await;
    refused(&app, &ws, json_post(without("direction")), 400, "direction").await;
    refused(&app, &ws, json_post(without("text")), 400, "text").await;
    let mut wrong = message("m-1", "c-1", "Hi");
    wrong["timestamp"] = json!("last tuesday");
    refused(&app, &ws, json_post(wrong), 400, "timestamp").await;
    let mut wrong = message("m-1", "c-1", "Hi");
    wrong["chat"]["is_group"] = json!("no");
    refused(&app, &ws, json_post(wrong), 400, "chat.is_group").await;
    refused(&app, &ws, json_post(json!("just a string")), 400, "body").await;
    refused(&app, &ws, json_post(json!([])), 400, "body").await;

    // One bad element spoils the whole array: none of it is stored.
    let array = json!([message("m-1", "c-1", "ok"), without("message_id"), message("m-3", "c-3", "ok")]);
    refused(&app, &ws, json_post(array), 400, "[1].message_id").await;

    let too_many: Vec<Value> = (0..1001).map(|i| message(&format!("m-{i}"), "c", "x")).collect();
    refused(&app, &ws, json_post(json!(too_many)), 413, "1000").await;
    let long_text = message("m-1", "c-1", &"a".repeat(64 * 1024 + 1));
    refused(&app, &ws, json_post(long_text), 413, "text").await;
    let huge: Vec<Value> = (0..40).map(|i| message(&format!("m-{i}"), "c", &"b".repeat(30_000))).collect();
    refused(&app, &ws, json_post(json!(huge)), 413, "1 MiB").await;

    let form = post().header("content-type", "application/x-www-form-urlencoded").body("a=b");
    refused(&app, &ws, form, 415, "Content-Type").await;
    let anonymous = app.http.post(&url).json(&message("m-1", "c-1", "Hi"));
    refused(&app, &ws, anonymous, 401, "Authorization").await;
    let wrong_key = app.http.post(&url).bearer_auth("ik_wrong").json(&message("m-1", "c-1", "Hi"));
    refused(&app, &ws, wrong_key, 401, "ingest key").await;
    let others_key = app.http.post(&url).bearer_auth(&other.ingest_key).json(&message("m-1", "c-1", "Hi"));
    refused(&app, &ws, others_key, 401, "ingest key").await;

    let unknown = app
        .http
        .post(app.url("/api/v1/workspaces/ws_unknown/messages"))
        .bearer_auth(&ws.ingest_key)
        .json(&message("m-1", "c-1", "Hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert!(body["error"]["detail"].as_str().unwrap().contains("workspace"));
}

#[tokio::test]
async fn a_storage_failure_answers_503_and_keeps_nothing_of_the_request() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    app.ingest(&ws, &message("m-0", "c-0", "before")).await;

    // Break the messages table from a second connection, as a full disk or corruption would.
    app.dir.rename_table("messages", "messages_away").await;

    let response = app.post_messages(&ws, &message("m-1", "c-new", "lost?")).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");

    app.dir.rename_table("messages_away", "messages").await;
    let stats = app.stats(&ws).await;
    assert_eq!((stats.messages, stats.chats), (1, 1), "the failed request left no chat behind");
    // And the store keeps working once the fault is gone.
    assert_eq!(app.ingest(&ws, &message("m-1", "c-new", "now")).await["accepted"], 1);
}

#[tokio::test]
async fn chats_keep_their_first_seen_time_assignee_and_transcript_token() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.ingest(&ws, &message("m-1", "c-1", "one")).await;
    // Delivered before the clock moves on (a delivery still in flight a minute later would have
    // outlived its lease, and rightly be sent again).
    app.delivered(&ws, 1).await;
    app.advance(std::time::Duration::from_secs(60));
    let mut reassigned = message("m-2", "c-1", "two");
    reassigned["chat"]["responsible_name"] = json!("Dana");
    reassigned["chat"]["responsible_email"] = json!("dana@acme.com");
    reassigned["chat"].as_object_mut().unwrap().remove("full_name");
    app.ingest(&ws, &reassigned).await;

    let seen = receiver.wait_for(2).await;
    let (first, second) = (seen[0].json(), seen[1].json());
    assert_eq!(first["chat"]["is_new_chat"], true);
    assert_eq!(second["chat"]["is_new_chat"], false);
    assert_eq!(second["chat"]["responsible_name"], "Dana");
    assert_eq!(second["chat"]["full_name"], "John Doe", "a missing name keeps the known one");
    assert_eq!(first["chat"]["chat_url"], second["chat"]["chat_url"], "one transcript token per chat");
    let url = first["chat"]["chat_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/c/", app.base)), "{url}");
    assert!(url.len() > app.base.len() + 3 + 24, "the token is long enough to be unguessable: {url}");
}

#[tokio::test]
async fn concurrent_requests_are_all_stored() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (http, url, key) = (
            app.http.clone(),
            app.url(&format!("/api/v1/workspaces/{}/messages", ws.id)),
            ws.ingest_key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let body = json!([
                message(&format!("a-{i}"), &format!("c-{i}"), "x"),
                message(&format!("b-{i}"), &format!("c-{i}"), "y")
            ]);
            http.post(url).bearer_auth(key).json(&body).send().await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 202);
    }
    let stats = app.stats(&ws).await;
    assert_eq!((stats.messages, stats.chats), (128, 64));
}

#[tokio::test]
async fn the_same_message_posted_concurrently_is_accepted_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (http, url, key) = (
            app.http.clone(),
            app.url(&format!("/api/v1/workspaces/{}/messages", ws.id)),
            ws.ingest_key.clone(),
        );
        // Every request carries the shared message and one of its own, in the same new chat.
        let body = json!([message("shared", "c-1", "same"), message(&format!("own-{i}"), "c-1", "own")]);
        tasks.push(tokio::spawn(async move {
            let response = http.post(url).bearer_auth(key).json(&body).send().await.unwrap();
            assert_eq!(response.status(), 202);
            response.json::<Value>().await.unwrap()
        }));
    }
    let mut accepted = 0;
    let mut duplicates = 0;
    for task in tasks {
        let outcome = task.await.unwrap();
        accepted += outcome["accepted"].as_u64().unwrap();
        duplicates += outcome["duplicates"].as_u64().unwrap();
    }
    assert_eq!((accepted, duplicates), (33, 31));
    let seen = receiver.wait_for(33).await;
    assert_eq!(seen.iter().filter(|r| r.message_id() == "shared").count(), 1);
    let new_chat_flags = seen.iter().filter(|r| r.json()["chat"]["is_new_chat"] == true).count();
    assert_eq!(new_chat_flags, 1, "one message, the chat's first, says the chat is new");
    assert!(seen[0].json()["chat"]["is_new_chat"] == true, "and it is the first delivered");
    let urls: std::collections::HashSet<String> =
        seen.iter().map(|r| r.json()["chat"]["chat_url"].as_str().unwrap().to_string()).collect();
    assert_eq!(urls.len(), 1, "one chat, one transcript link");
}
