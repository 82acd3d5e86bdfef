//! Faults that must end in a clear state rather than a stuck one: an endpoint that keeps
//! rejecting a delivery, a request that cannot be stored whole, a flush cut off, a transcript the
//! store cannot read, and test sends that must not disturb the queue.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn app_with(configure: impl FnOnce(&mut chatbundle::config::Config)) -> TestApp {
    let dir = crate::helpers::test_dir();
    let mut config = test_config(&dir);
    configure(&mut config);
    TestApp::spawn_with(dir, config, chatbundle::clock::ManualClock::new(start_time())).await
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = app.admin(Method::GET, path).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

async fn deliveries(app: &TestApp, webhook: &str, query: &str) -> Vec<Value> {
    get_json(app, &format!("/api/v1/webhooks/{webhook}/deliveries{query}")).await["deliveries"]
        .as_array()
        .unwrap()
        .clone()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_rejected_delivery_is_given_up_and_its_chat_moves_on() {
    let app = app_with(|c| c.delivery.reject_after = 3).await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap();
    // The endpoint refuses the first message for good, three times over.
    for _ in 0..3 {
        receiver.then(Reply::status(422).body("{\"error\": \"phone is not a valid field\"}"));
    }
    app.ingest(&ws, &message("m-1", "c-1", "one")).await;
    app.ingest(&ws, &message("m-2", "c-1", "two")).await;
    app.attempts(id, 1).await;
    // Rejections follow the retry schedule (5 s, then 30 s, each ± 20 %).
    app.advance(Duration::from_secs(7));
    app.attempts(id, 2).await;
    let before = receiver.received().len();
    assert_eq!(before, 2, "m-2 waits behind m-1 while m-1 is being retried");
    app.advance(Duration::from_secs(40));

    // The third rejection gives m-1 up, and the chat's next message goes out.
    let seen = receiver.wait_for(4).await;
    let order: Vec<String> = seen.iter().map(Received::message_id).collect();
    assert_eq!(order, ["m-1", "m-1", "m-1", "m-2"]);
    app.delivered(&ws, 1).await;

    let failed = deliveries(&app, id, "?status=failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let given_up = &failed[0];
    assert_eq!(given_up["id"], seen[0].header("webhook-id"));
    assert_eq!(given_up["kind"], "message");
    assert_eq!((given_up["attempts"].clone(), given_up["last_status"].clone()), (json!(3), json!(422)));
    assert!(given_up["finished_at"].is_string() && given_up["chat_id"].is_i64(), "{given_up}");
    let all = deliveries(&app, id, "").await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["status"], "delivered", "newest first");
    assert_eq!(deliveries(&app, id, "?status=pending").await.len(), 0);

    // The log says what happened and what the endpoint said.
    let log = get_json(&app, &format!("/api/v1/webhooks/{id}/activity")).await;
    let row = log["activity"].as_array().unwrap().iter().find(|r| r["kind"] == "failed").cloned().unwrap();
    assert_eq!(row["detail"]["status"], 422);
    assert!(row["detail"]["response_excerpt"].as_str().unwrap().contains("phone is not a valid field"));
    assert_eq!(row["detail"]["delivery_id"], given_up["id"]);
    let webhook = get_json(&app, &format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(webhook["enabled"], true, "three failures are not yet ten");
    assert_eq!(app.stats(&ws).await.deliveries_failed, 1);
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metric(&metrics, "chatbundle_deliveries_total{outcome=\"failed\"}") >= 1.0, "{metrics}");

    // Resent: the same id and bytes, at once.
    let resend = |delivery: &str| {
        app.admin(Method::POST, &format!("/api/v1/webhooks/{id}/deliveries/{delivery}/resend")).send()
    };
    let answer = resend(given_up["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(answer.status(), 202);
    let again = receiver.wait_for(5).await.remove(4);
    assert_eq!(again.header("webhook-id"), seen[0].header("webhook-id"));
    assert_eq!(again.body, seen[0].body, "the same bytes");
    app.delivered(&ws, 2).await;
    assert_eq!(deliveries(&app, id, "?status=failed").await.len(), 0);

    // Only failed and expired deliveries are sent again; unknown ones are 404.
    let delivered = resend(given_up["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(delivered.status(), 409);
    let body: Value = delivered.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict");
    assert_eq!(resend("msg_nope").await.unwrap().status(), 404);
    let bad = app.admin(Method::GET, &format!("/api/v1/webhooks/{id}/deliveries?status=lost")).send();
    assert_eq!(bad.await.unwrap().status(), 400);
}

#[tokio::test]
async fn answers_that_say_try_later_are_retried_past_the_rejection_limit() {
    let app = app_with(|c| c.delivery.reject_after = 2).await;
    let receiver = Receiver::start().await;
    for status in [429, 408, 409, 425, 503] {
        receiver.then(Reply::status(status));
    }
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap();
    app.ingest(&ws, &message("m-1", "c-1", "one")).await;
    for n in 1..=5 {
        app.attempts(id, n).await;
        // Each retry is due within its nominal delay + 20 % (5 s, 30 s, 2 min, 10 min, 30 min).
        app.advance(Duration::from_secs(40 * 60));
    }
    app.delivered(&ws, 1).await;
    assert_eq!(receiver.received().len(), 6, "five 'later' answers, then a success");
    assert!(deliveries(&app, id, "?status=failed").await.is_empty());
}

/// A Zoho Desk request carrying a message, a non-text message and a session change.
fn zoho_request() -> Value {
    json!([
        {"payload": {"actor": {"name": "Kamal Nayan", "externalId": "+919878765654", "type": "ENDUSER"},
                     "messageType": "TEXT", "integration": "WHATSAPP", "createdTime": "1710293987000",
                     "sessionId": "s-1", "id": "z-1", "text": "My phone is broken", "direction": "IN"},
         "eventTime": "1710313788286", "eventType": "IM_Message_Add", "orgId": "78412359"},
        {"payload": {"actor": {"name": "Kamal Nayan", "type": "ENDUSER"}, "messageType": "IMAGE",
                     "sessionId": "s-1", "id": "z-2", "direction": "IN"},
         "eventTime": "1710313788287", "eventType": "IM_Message_Add", "orgId": "78412359"},
        {"payload": {"currentAssigneeId": "106554156", "sessionStatus": "ON_PROGRESS", "replyStatus": "ACCEPTED",
                     "sessionOldStatus": "OPEN", "sessionId": "s-1", "messagesCount": "1", "assigneeType": "AGENT"},
         "eventTime": "1710313788290", "eventType": "IM_Session_Status", "orgId": "78412359"}
    ])
}

#[tokio::test]
async fn one_inbound_request_is_stored_whole_or_not_at_all() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let (messages, sessions) = (Receiver::start().await, Receiver::start().await);
    let hook = app.create_webhook(&ws.id, json!({"url": messages.url})).await;
    app.create_webhook(&ws.id, json!({"url": sessions.url, "events": ["session_status"]})).await;
    let src: Value = app
        .admin(Method::POST, &format!("/api/v1/workspaces/{}/sources", ws.id))
        .json(&json!({"kind": "zoho_desk", "name": "Zoho Desk"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = src["inbound_url"].as_str().unwrap().to_string();

    // The last thing the request stores (the note of the skipped image) cannot be written.
    app.dir.rename_table("events", "events_away").await;
    let refused = app.http.post(&url).json(&zoho_request()).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let stats = app.stats(&ws).await;
    assert_eq!((stats.chats, stats.messages, stats.deliveries_pending), (0, 0, 0), "nothing of it was kept");
    app.dir.rename_table("events_away", "events").await;

    // The channel's retry stores everything once.
    let stored = app.http.post(&url).json(&zoho_request()).send().await.unwrap();
    assert_eq!(stored.status(), 200);
    assert_eq!(messages.wait_for(1).await[0].message_id(), "z-1");
    let events: Vec<Value> = sessions.wait_for(2).await.iter().map(Received::json).collect();
    assert_eq!(events[1][0]["payload"]["sessionStatus"], "ON_PROGRESS");
    let stats = app.stats(&ws).await;
    assert_eq!((stats.chats, stats.messages), (1, 1));
    let log = get_json(&app, &format!("/api/v1/webhooks/{}/activity", hook["id"].as_str().unwrap())).await;
    let skipped: Vec<&Value> =
        log["activity"].as_array().unwrap().iter().filter(|r| r["kind"] == "skipped").collect();
    assert_eq!(skipped.len(), 1, "{log}");
    assert_eq!(skipped[0]["detail"]["message_ids"], json!(["z-2"]));
    app.closer_settled().await;
    assert_eq!(sessions.received().len(), 2, "CREATED, then ON_PROGRESS: once each");
}

#[tokio::test]
async fn a_flush_cut_off_resumes_as_a_flush() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("1h", "UTC").await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.set_time("2024-03-01T12:10:00Z");
    let chats = chatbundle::window::closer::CHATS_PER_STEP + 50;
    let all: Vec<Value> = (0..chats).map(|i| message(&format!("m-{i}"), &format!("c-{i}"), "x")).collect();
    for chunk in all.chunks(1000) {
        app.ingest(&ws, &json!(chunk)).await;
    }
    let config = app.config.clone();
    let (dir, clock) = app.stop().await;

    // A flush at 12:20 commits its first step, then the process dies.
    let flushed_at = DateTime::parse_from_rfc3339("2024-03-01T12:20:00Z").unwrap().to_utc();
    clock.set(flushed_at);
    let url = dir.store_url();
    let store = chatbundle::store::connect(&url, Arc::new(clock.clone())).await.unwrap();
    let webhook = store.bundling_webhooks(None).await.unwrap().remove(0);
    let plan =
        chatbundle::window::closer::plan(&webhook, chrono_tz::UTC, flushed_at, "http://cb.test".into(), None);
    let step = chatbundle::store::CloseStep {
        webhook_id: webhook.id.clone(),
        bundled_before: webhook.bundled_before,
        boundary: flushed_at,
        chats: chatbundle::window::closer::CHATS_PER_STEP,
        plan,
        flush: true,
    };
    let progress = store.close_step(step).await.unwrap();
    assert!(matches!(progress, chatbundle::store::CloseProgress::More { .. }), "{progress:?}");
    store.close().await;

    // Restarted, the flush finishes as a flush: every chat's bundle ends at the flush...
    clock.set(DateTime::parse_from_rfc3339("2024-03-01T12:25:00Z").unwrap().to_utc());
    let app = TestApp::spawn_with(dir, config, clock).await;
    let seen = receiver.wait_for(chats).await;
    assert!(seen.iter().all(|r| r.json()["window_end"] == "2024-03-01T12:20:00+0000"));
    app.closer_settled().await;
    assert_eq!(receiver.received().len(), chats);
    // Every bundle recorded as delivered before the clock jumps past their leases.
    app.delivered(&ws, chats as u64).await;
    // ...and what follows in that hour starts at the flush, not at the top of the hour.
    app.set_time("2024-03-01T12:30:00Z");
    app.ingest(&ws, &message("later", "c-0", "after the flush")).await;
    app.set_time("2024-03-01T13:00:05Z");
    let next = receiver.wait_for(chats + 1).await.remove(chats).json();
    assert_eq!(next["window_start"], "2024-03-01T12:20:00+0000");
    assert_eq!(next["window_end"], "2024-03-01T13:00:00+0000");
}

#[tokio::test]
async fn a_transcript_the_store_cannot_read_is_a_503_not_a_404() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    app.ingest(&ws, &message("m-1", "c-1", "hello")).await;
    let chats = get_json(&app, &format!("/api/v1/workspaces/{}/chats", ws.id)).await;
    let chat = get_json(&app, &format!("/api/v1/chats/{}", chats["chats"][0]["id"])).await;
    let link = chat["transcript_url"].as_str().unwrap().to_string();
    assert_eq!(app.http.get(&link).send().await.unwrap().status(), 200);

    app.dir.rename_table("chats", "chats_away").await;
    let failing = app.http.get(&link).send().await.unwrap();
    assert_eq!(failing.status(), 503);
    assert!(failing.text().await.unwrap().contains("Try again"));
    app.dir.rename_table("chats_away", "chats").await;

    assert_eq!(app.http.get(&link).send().await.unwrap().status(), 200);
    let unknown = link.rsplit_once('/').unwrap().0.to_string() + "/" + &"x".repeat(32);
    assert_eq!(app.http.get(&unknown).send().await.unwrap().status(), 404);
}

async fn test_send(app: &TestApp, webhook: &Value) -> Value {
    let response =
        app.admin(Method::POST, &format!("/api/v1/webhooks/{}/test", webhook["id"].as_str().unwrap())).send();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_test_send_is_a_fresh_marked_sample_that_changes_nothing() {
    let app = TestApp::spawn().await;
    let (hourly, immediate, sessions) =
        (Receiver::start().await, Receiver::start().await, Receiver::start().await);
    let ws = app.workspace().await;

    // Before any chat: a made-up sample in each webhook's shape.
    let session_hook =
        app.create_webhook(&ws.id, json!({"url": sessions.url, "events": ["session_status"]})).await;
    let result = test_send(&app, &session_hook).await;
    assert_eq!(result["sample"], true);
    let sample = sessions.wait_for(1).await.remove(0);
    let body = sample.json();
    assert_eq!(
        (body[0]["eventType"].clone(), body[0]["test"].clone()),
        (json!("IM_Session_Status"), json!(true))
    );
    assert_eq!(body[0]["sample"], true);
    assert!(sample.header("webhook-id").starts_with("test_"));

    let hour_hook = app.create_webhook(&ws.id, json!({"url": hourly.url, "granularity": "1h"})).await;
    app.set_time("2024-03-01T12:10:00Z");
    app.ingest(&ws, &json!([message("m-1", "c-1", "first"), message("m-2", "c-1", "second")])).await;
    // The new chat's real CREATED event reaches the session webhook (recorded before the clock
    // moves on); from here on nothing is queued or delivered.
    sessions.wait_for(2).await;
    app.delivered(&ws, 1).await;
    app.set_time("2024-03-01T12:20:00Z");
    app.ingest(&ws, &message("m-3", "c-1", "third")).await;
    let before = app.stats(&ws).await;

    // A bundling webhook gets the bundle the latest chat would get if its window closed now.
    let result = test_send(&app, &hour_hook).await;
    assert_eq!((result["ok"].clone(), result["sample"].clone()), (json!(true), json!(false)));
    let sent = hourly.wait_for(1).await.remove(0);
    let bundle = sent.json();
    assert_eq!(bundle["test"], true);
    assert!(sent.header("webhook-id").starts_with("test_"), "{}", sent.header("webhook-id"));
    assert_eq!(result["webhook_id_header"], sent.header("webhook-id"));
    let texts: Vec<&str> =
        bundle["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["first", "second", "third"]);
    assert_eq!(bundle["window_start"], "2024-03-01T12:00:00+0000");
    assert_eq!(bundle["window_end"], "2024-03-01T12:20:00+0000");
    assert_eq!(bundle["chat"]["is_new_chat"], true);

    // An immediate webhook gets the chat's latest message, rendered now.
    let now_hook = app.create_webhook(&ws.id, json!({"url": immediate.url})).await;
    test_send(&app, &now_hook).await;
    let single = immediate.wait_for(1).await.remove(0).json();
    assert_eq!(
        (single["message"]["message_id"].clone(), single["test"].clone()),
        (json!("m-3"), json!(true))
    );
    assert!(single.get("sample").is_none(), "real content is not a made-up sample");

    // A session_status webhook gets that chat's session event.
    test_send(&app, &session_hook).await;
    let event = sessions.wait_for(3).await.remove(2).json();
    assert_eq!(event[0]["payload"]["sessionId"], "c-1");
    assert_eq!(
        (event[0]["payload"]["sessionStatus"].clone(), event[0]["test"].clone()),
        (json!("CREATED"), json!(true))
    );

    // Nothing was queued or moved: the real bundle still goes out at the end of the hour, whole.
    assert_eq!(app.stats(&ws).await, before, "test sends queue and deliver nothing");
    app.set_time("2024-03-01T13:00:05Z");
    let real = hourly.wait_for(2).await.remove(1).json();
    assert!(real.get("test").is_none());
    assert_eq!(real["message_count"], 3);

    // With nothing buffered, the latest 50 messages stand in.
    test_send(&app, &hour_hook).await;
    let latest = hourly.wait_for(3).await.remove(2).json();
    assert_eq!((latest["message_count"].clone(), latest["test"].clone()), (json!(3), json!(true)));
}

#[tokio::test]
#[ignore = "needs aiosmtpd (PyPI), a real SMTP server: run scripts/test"]
async fn the_owner_hears_of_a_delivery_given_up_once_a_day_at_most() {
    let smtp = SmtpSink::start();
    let app = app_with(|c| {
        c.delivery.reject_after = 1;
        c.smtp.url = Some(smtp.url());
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.answer(Reply::status(413).body("payload too large for this CRM"));
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap();

    app.ingest(&ws, &message("m-1", "c-1", "one")).await;
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail["to"], json!(["owner@acme.example"]));
    let text = mail["data"].as_str().unwrap();
    let delivery = receiver.received()[0].header("webhook-id").to_string();
    for needle in [
        id,
        receiver.url.as_str(),
        delivery.as_str(),
        "John Doe (c-1)",
        "HTTP 413",
        "payload too large",
        "/resend",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from the e-mail:\n{text}");
    }

    // A second one the same day: no second e-mail.
    app.ingest(&ws, &message("m-2", "c-2", "two")).await;
    eventually("the second delivery given up", || async {
        (deliveries(&app, id, "?status=failed").await.len() == 2).then_some(())
    })
    .await;
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&metrics, "chatbundle_emails_pending"), 0.0, "nothing else in the outbox");
    assert_eq!(smtp.wait_for(1).await.len(), 1);

    // A day later, the next one is worth telling again: in the workspace's language, now Japanese.
    let patched = app
        .admin(Method::PATCH, &format!("/api/v1/workspaces/{}", ws.id))
        .json(&json!({"locale": "ja"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    app.advance(Duration::from_secs(24 * 3600 + 60));
    app.ingest(&ws, &message("m-3", "c-3", "three")).await;
    let japanese = smtp.wait_for(2).await.remove(1);
    assert_eq!(japanese["subject"], "chatbundle: ワークスペース「Acme」の Webhook が配信を拒否しました");
    let body = japanese["body"].as_str().unwrap();
    assert!(body.contains("チャット:  John Doe (c-3)") && body.contains("ご担当者様"), "{body}");
}

#[tokio::test]
#[ignore = "needs aiosmtpd (PyPI), a real SMTP server: run scripts/test"]
async fn an_email_the_server_refuses_for_good_is_given_up_and_a_refusal_for_now_is_retried() {
    let smtp = SmtpSink::start();
    let app = app_with(|c| c.smtp.url = Some(smtp.url())).await;
    let receiver = Receiver::start().await;
    receiver.answer(Reply::status(410));
    let mut hooks = Vec::new();
    for owner in ["reject@acme.example", "later@acme.example"] {
        let ws = app.create_workspace(json!({"name": owner, "owner_email": owner})).await;
        let ws = Workspace {
            id: ws["id"].as_str().unwrap().parse().unwrap(),
            ingest_key: ws["ingest_key"].as_str().unwrap().into(),
        };
        let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
        app.ingest(&ws, &message("m-1", "c-1", "one")).await; // 410: switched off, owner e-mailed
        hooks.push(hook["id"].as_str().unwrap().to_string());
    }

    // 550: given up at once, and the webhook's log says so.
    let row = eventually("the refused e-mail to be given up", || async {
        let log = get_json(&app, &format!("/api/v1/webhooks/{}/activity", hooks[0])).await;
        log["activity"].as_array().unwrap().iter().find(|r| r["kind"] == "email_failed").cloned()
    })
    .await;
    assert_eq!(row["detail"]["recipient"], "reject@acme.example");
    assert!(row["detail"]["error"].as_str().unwrap().contains("550"), "{row}");

    // 451: tried again on the mailer's schedule (30 s ± 20 %), then delivered.
    let refusals = smtp.wait_for_refusals(2).await;
    assert!(refusals.iter().any(|r| r["refused"] == "later@acme.example" && r["code"] == 451));
    // Time moves on until the retry falls due (the refusal is recorded a moment after the
    // server gave it, so one step of the clock might come too early).
    let mail = eventually("the deferred e-mail to go out on a retry", || async {
        app.advance(Duration::from_secs(40));
        smtp.received().pop()
    })
    .await;
    assert_eq!(mail["to"], json!(["later@acme.example"]));
    let log = get_json(&app, &format!("/api/v1/webhooks/{}/activity", hooks[1])).await;
    assert!(!log["activity"].as_array().unwrap().iter().any(|r| r["kind"] == "email_failed"));
}
