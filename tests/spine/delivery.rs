use std::time::Duration;

use chatbundle::deliver::SigningSecret;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_message_is_delivered_at_once_in_the_timelinesai_shape() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let webhook = app.create_webhook(&ws.id, json!({"url": receiver.url, "secret": true})).await;
    app.ingest(&ws, &message("m-1", "c-1", "Hi! How are you? 👋")).await;

    let seen = receiver.wait_for(1).await;
    let request = &seen[0];
    let chat_url = request.json()["chat"]["chat_url"].clone();
    assert!(chat_url.as_str().unwrap().starts_with(&format!("{}/c/", app.base)));
    // chatbundle's own id of the chat, which answers it (`POST /api/v1/chats/{id}/messages`).
    let chats = app.get_json(&format!("/api/v1/workspaces/{}/chats", ws.id)).await;
    let chat_id = chats["chats"][0]["id"].clone();
    assert!(chat_id.is_i64());
    assert_eq!(
        request.json(),
        json!({
            "whatsapp_account": {"full_name": "Amnon Haha", "email": "amnon@acme.com", "phone": "+972500000000"},
            "chat": {"full_name": "John Doe", "responsible_name": "Amnon",
                     "responsible_email": "amnon@acme.com", "chat_url": chat_url, "chat_id": "c-1",
                     "is_new_chat": true, "is_group": false, "phone": "+97254000000",
                     "can_reply": true, "reply_window_expires_at": null, "reply_status": "ACCEPTED",
                     "id": chat_id},
            "message": {"direction": "received", "timestamp": "2021-02-24T16:25:29+0000",
                        "message_id": "m-1",
                        "sender": {"full_name": "John Doe", "phone": "+97254000000"},
                        "recipient": {"full_name": "Amnon Haha", "phone": "+972500000000"},
                        "text": "Hi! How are you? 👋"},
            "channel": "api"
        })
    );
    // Keys in TimelinesAI's order, so the raw bytes read like their payloads.
    let raw = String::from_utf8(request.body.to_vec()).unwrap();
    assert!(raw.starts_with(r#"{"whatsapp_account":"#), "{raw}");

    assert_eq!(request.header("content-type"), "application/json; charset=utf-8");
    assert_eq!(request.header("user-agent"), format!("chatbundle/{}", env!("CARGO_PKG_VERSION")));
    let id = request.header("webhook-id");
    assert!(id.starts_with("msg_"), "{id}");
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
    assert_eq!(timestamp, start_time().timestamp(), "signed with the injected clock's time");
    let secret = SigningSecret::parse(webhook["secret"].as_str().unwrap()).unwrap();
    assert!(secret.verify(id, timestamp, &request.body, request.header("webhook-signature")));
}

#[tokio::test]
async fn a_message_names_its_own_account_when_it_has_one() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let mut m = message("m-1", "c-1", "Hi");
    m["account"] = json!({"full_name": "Second Line", "email": "two@acme.com", "phone": "+1555"});
    m["channel"] = json!("whatsapp");
    app.ingest(&ws, &m).await;
    let body = receiver.wait_for(1).await[0].json();
    assert_eq!(body["whatsapp_account"]["full_name"], "Second Line");
    assert_eq!(body["channel"], "whatsapp");
    assert!(receiver.received()[0].headers.get("webhook-signature").is_none(), "no secret, no signature");
}

#[tokio::test]
async fn only_webhooks_without_aggregation_get_messages_at_once() {
    let app = TestApp::spawn().await;
    let (now, later) = (Receiver::start().await, Receiver::start().await);
    let ws = app.workspace().await;
    app.create_webhook(&ws.id, json!({"url": later.url, "granularity": "1h"})).await;
    app.create_webhook(&ws.id, json!({"url": now.url})).await;
    app.ingest(&ws, &message("m-1", "c-1", "Hi")).await;
    now.wait_for(1).await;
    assert!(later.received().is_empty(), "a 1h webhook waits for its window");
    let stats = eventually("the delivery to be recorded", || async {
        let stats = app.stats(&ws).await;
        (stats.deliveries_delivered == 1).then_some(stats)
    })
    .await;
    assert_eq!(stats.deliveries_pending, 0, "no delivery was made for the 1h webhook");
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_id_and_bytes() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.then(Reply::status(500).body("database exploded"));
    let ws = app.workspace().await;
    let webhook = app.create_webhook(&ws.id, json!({"url": receiver.url, "secret": true})).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    app.ingest(&ws, &message("m-1", "c-1", "Hi")).await;

    receiver.wait_for(1).await;
    let attempts = app.attempts(webhook_id, 1).await;
    assert_eq!(attempts[0].status, Some(500));
    assert_eq!(attempts[0].response_excerpt.as_deref(), Some("database exploded"));
    let shown: Value = app
        .admin(Method::GET, &format!("/api/v1/webhooks/{webhook_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["consecutive_failures"], 1);

    // The first retry is due 5 s ± 20 % later.
    app.advance(Duration::from_secs(3));
    app.ingest(&ws, &message("other", "c-other", "barrier")).await;
    eventually("the other chat's message", || async {
        receiver.received().iter().any(|r| r.message_id() == "other").then_some(())
    })
    .await;
    assert_eq!(
        receiver.received().iter().filter(|r| r.message_id() == "m-1").count(),
        1,
        "not retried early"
    );

    receiver.then(Reply::status(502));
    app.advance(Duration::from_secs(4));
    receiver.wait_for(3).await;
    app.attempts(webhook_id, 3).await;
    app.advance(Duration::from_secs(40)); // the second retry: 30 s ± 20 %
    let seen = receiver.wait_for(4).await;
    let tries: Vec<&Received> = seen.iter().filter(|r| r.message_id() == "m-1").collect();
    assert_eq!(tries.len(), 3);
    let secret = SigningSecret::parse(webhook["secret"].as_str().unwrap()).unwrap();
    for attempt in &tries {
        assert_eq!(attempt.header("webhook-id"), tries[0].header("webhook-id"));
        assert_eq!(attempt.body, tries[0].body, "a retry sends the same bytes");
        let ts: i64 = attempt.header("webhook-timestamp").parse().unwrap();
        assert!(secret.verify(
            attempt.header("webhook-id"),
            ts,
            &attempt.body,
            attempt.header("webhook-signature")
        ));
    }
    assert_ne!(tries[0].header("webhook-timestamp"), tries[2].header("webhook-timestamp"));

    let attempts = app.attempts(webhook_id, 4).await;
    let m1: Vec<_> = attempts.iter().filter(|a| a.request_body.contains("\"m-1\"")).collect();
    assert_eq!(m1.iter().map(|a| a.status).collect::<Vec<_>>(), [Some(200), Some(502), Some(500)]);
    assert_eq!(m1[0].request_body.as_bytes(), &tries[0].body[..], "the attempt shows the bytes sent");
    assert!(m1.iter().all(|a| a.request_body == m1[0].request_body), "each retry's too");
    // … kept once, in the delivery: no attempt stores a second copy.
    let copies =
        app.dir.count("SELECT CAST(COALESCE(SUM(LENGTH(request_body)), 0) AS BIGINT) FROM attempts").await;
    assert_eq!(copies, 0, "the attempts hold no copy of the payload");
    // Each attempt shows the headers it sent, though it keeps only what its columns do not say
    // (the delivery's id, the attempt's time and the constant content type are given back).
    for (attempt, sent) in m1.iter().rev().zip(&tries) {
        for name in ["content-type", "user-agent", "webhook-id", "webhook-timestamp", "webhook-signature"] {
            assert_eq!(attempt.request_headers[name], sent.header(name), "{name} as sent");
        }
    }
    let whole =
        app.dir.count("SELECT COUNT(*) FROM attempts WHERE request_headers LIKE '%webhook-id%'").await;
    assert_eq!(whole, 0, "no attempt stores what its columns say");
    // The payload is kept packed: far smaller than the bytes sent, and read back exactly (above).
    let kept = app.dir.count("SELECT CAST(MAX(LENGTH(payload)) AS BIGINT) FROM deliveries").await;
    assert!(kept * 3 < 2 * tries[0].body.len() as i64, "{kept} bytes kept of {}", tries[0].body.len());
    let shown: Value = app
        .admin(Method::GET, &format!("/api/v1/webhooks/{webhook_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["consecutive_failures"], 0, "a 2xx resets the count");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.then(Reply::status(429).header("retry-after", "120"));
    let ws = app.workspace().await;
    let webhook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.ingest(&ws, &message("m-1", "c-1", "Hi")).await;
    app.attempts(webhook["id"].as_str().unwrap(), 1).await;

    // Well past the schedule's 5 s, but short of the 120 s asked for.
    app.advance(Duration::from_secs(60));
    app.ingest(&ws, &message("other", "c-2", "barrier")).await;
    eventually("the other chat's message", || async {
        receiver.received().iter().any(|r| r.message_id() == "other").then_some(())
    })
    .await;
    assert_eq!(receiver.received().len(), 2, "m-1 waits as the receiver asked");
    // (The barrier's result recorded before the clock jumps past its lease.)
    app.delivered(&ws, 1).await;

    app.advance(Duration::from_secs(61));
    let seen = receiver.wait_for(3).await;
    assert_eq!(seen[2].message_id(), "m-1");
}

#[tokio::test]
async fn a_chat_stays_in_order_across_a_failure_while_other_chats_flow() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.then(Reply::status(500));
    let ws = app.workspace().await;
    let webhook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.ingest(&ws, &message("a-1", "chat-a", "one")).await;
    app.attempts(webhook["id"].as_str().unwrap(), 1).await;
    app.ingest(&ws, &json!([message("a-2", "chat-a", "two"), message("a-3", "chat-a", "three")])).await;
    app.ingest(&ws, &message("b-1", "chat-b", "meanwhile")).await;

    // chat-b is not held up by chat-a's failure, and chat-a's later messages wait their turn.
    eventually("chat-b's message", || async {
        receiver.received().iter().any(|r| r.message_id() == "b-1").then_some(())
    })
    .await;
    let a_so_far: Vec<String> =
        receiver.received().iter().map(Received::message_id).filter(|id| id.starts_with("a-")).collect();
    assert_eq!(a_so_far, ["a-1"]);

    app.advance(Duration::from_secs(10));
    let seen = receiver.wait_for(5).await;
    let a: Vec<String> = seen.iter().map(Received::message_id).filter(|id| id.starts_with("a-")).collect();
    assert_eq!(a, ["a-1", "a-1", "a-2", "a-3"]);
}

#[tokio::test]
async fn a_restart_with_deliveries_pending_loses_nothing() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.answer(Reply::status(503));
    let ws = app.workspace().await;
    let webhook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let webhook_id = webhook["id"].as_str().unwrap().to_string();
    app.ingest(
        &ws,
        &json!([message("m-1", "c-1", "one"), message("m-2", "c-1", "two"), message("m-3", "c-2", "three")]),
    )
    .await;
    app.attempts(&webhook_id, 2).await; // the heads of both chats failed once
    let first_ids: Vec<String> =
        receiver.received().iter().map(|r| r.header("webhook-id").to_string()).collect();

    let config = app.config.clone();
    let (dir, clock) = app.stop().await;
    receiver.answer(Reply::status(200));
    let app = TestApp::spawn_with(dir, config, clock).await;
    app.advance(Duration::from_secs(10));

    let seen = receiver.wait_for(5).await;
    let after: Vec<&Received> = seen[2..].iter().collect();
    let mut delivered: Vec<String> = after.iter().map(|r| r.message_id()).collect();
    delivered.sort();
    assert_eq!(delivered, ["m-1", "m-2", "m-3"]);
    for id in &first_ids {
        assert!(after.iter().any(|r| r.header("webhook-id") == id), "retried under the same webhook-id");
    }
    eventually("all three recorded as delivered", || async {
        let stats = app.stats(&ws).await;
        (stats.deliveries_pending, stats.deliveries_delivered).eq(&(0, 3)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn redirects_are_not_followed_and_count_as_failures() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    receiver.then(Reply::status(302).header("location", &elsewhere.url));
    let ws = app.workspace().await;
    let webhook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.ingest(&ws, &message("m-1", "c-1", "Hi")).await;
    let attempts = app.attempts(webhook["id"].as_str().unwrap(), 1).await;
    assert_eq!(attempts[0].status, Some(302));
    assert!(elsewhere.received().is_empty());
    assert_eq!(app.stats(&ws).await.deliveries_pending, 1, "to be retried");
}

#[tokio::test]
async fn a_slow_receiver_times_out_and_the_error_is_recorded() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.then(Reply::status(200).delay(Duration::from_secs(5)));
    let ws = app.workspace().await;
    let webhook = app.create_webhook(&ws.id, json!({"url": receiver.url, "timeout": "1s"})).await;
    app.ingest(&ws, &message("m-1", "c-1", "Hi")).await;
    let attempts = app.attempts(webhook["id"].as_str().unwrap(), 1).await;
    assert_eq!(attempts[0].status, None);
    assert!(attempts[0].error.as_deref().unwrap().contains("timed out"), "{:?}", attempts[0].error);
}

#[tokio::test]
async fn unreachable_receivers_are_connection_errors() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    // A port nobody listens on: bind one, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let webhook = app.create_webhook(&ws.id, json!({"url": format!("http://127.0.0.1:{port}/x")})).await;
    app.ingest(&ws, &message("m-1", "c-1", "Hi")).await;
    let attempts = app.attempts(webhook["id"].as_str().unwrap(), 1).await;
    assert!(attempts[0].error.as_deref().unwrap().contains("connection"), "{:?}", attempts[0].error);
}

#[tokio::test]
async fn response_excerpts_are_cut_at_two_kib() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.then(Reply::status(500).body(&"e".repeat(10_000)));
    let ws = app.workspace().await;
    let webhook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.ingest(&ws, &message("m-1", "c-1", "Hi")).await;
    let attempts = app.attempts(webhook["id"].as_str().unwrap(), 1).await;
    assert_eq!(attempts[0].response_excerpt.as_ref().unwrap().len(), 2048);
}

#[tokio::test]
async fn different_chats_go_in_parallel_within_the_concurrency_bound() {
    let dir = crate::helpers::test_dir();
    let mut config = test_config(&dir);
    config.delivery.concurrency = 3;
    let app = TestApp::spawn_with(dir, config, chatbundle::clock::ManualClock::new(start_time())).await;
    let receiver = Receiver::start().await;
    receiver.answer(Reply::status(200).delay(Duration::from_millis(300)));
    let ws = app.workspace().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let batch: Vec<Value> = (0..9).map(|i| message(&format!("m-{i}"), &format!("c-{i}"), "x")).collect();
    app.ingest(&ws, &json!(batch)).await;
    receiver.wait_for(9).await;
    assert_eq!(receiver.max_in_flight(), 3, "three at a time: parallel, and bounded");
}

#[tokio::test]
async fn each_webhook_is_held_to_its_rate_limit() {
    let dir = crate::helpers::test_dir();
    let mut config = test_config(&dir);
    config.delivery.rate_per_webhook = 10;
    let app = TestApp::spawn_with(dir, config, chatbundle::clock::ManualClock::new(start_time())).await;
    let (receiver, other) = (Receiver::start().await, Receiver::start().await);
    let ws = app.workspace().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let elsewhere = app.workspace().await;
    app.create_webhook(&elsewhere.id, json!({"url": other.url})).await;
    let batch: Vec<Value> = (0..25).map(|i| message(&format!("m-{i}"), &format!("c-{i}"), "x")).collect();
    app.ingest(&ws, &json!(batch)).await;

    // A burst of 10; then, as long as the clock stands still, nothing more for this webhook,
    // while another webhook's delivery (its own bucket) goes through: the barrier.
    let mut expected = 10;
    for round in 0..3 {
        receiver.wait_for(expected).await;
        app.ingest(&elsewhere, &message(&format!("barrier-{round}"), "c-x", "x")).await;
        other.wait_for(round + 1).await;
        app.delivered(&elsewhere, round as u64 + 1).await;
        assert_eq!(receiver.received().len(), expected, "no more than the bucket holds");
        // Then 10 a second (a little more than a second: a store on the database's clock
        // reads the test's clock give or take a millisecond).
        app.advance(Duration::from_millis(1050));
        expected = (expected + 10).min(25);
    }
    receiver.wait_for(25).await;
    app.delivered(&ws, 25).await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_delivery_finish() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.answer(Reply::status(200).delay(Duration::from_millis(500)));
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.ingest(&ws, &message("m-1", "c-1", "Hi")).await;
    receiver.wait_for(1).await; // the request is now in flight
    let (dir, clock) = app.stop().await;

    let url = dir.store_url();
    let store = chatbundle::store::connect(&url, std::sync::Arc::new(clock)).await.unwrap();
    let webhook = hook["id"].as_str().unwrap().parse().unwrap();
    let statuses: Vec<_> =
        store.list_deliveries(&webhook, None, 10, 0).await.unwrap().iter().map(|d| d.status).collect();
    assert_eq!(
        statuses,
        [chatbundle::domain::DeliveryStatus::Delivered],
        "the answer that came during shutdown was recorded"
    );
}

#[tokio::test]
async fn the_ssrf_guard_checks_again_at_delivery_time() {
    // The webhook was allowed when it was set; then the operator took loopback off the allow-list
    // (as a DNS change would move a name onto a private address).
    let dir = crate::helpers::test_dir();
    let mut config = test_config(&dir);
    config.delivery.allow_private.push("::1/128".parse().unwrap());
    let app = TestApp::spawn_with(dir, config, chatbundle::clock::ManualClock::new(start_time())).await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    // One by address, one by name: the name goes through the guarded resolver.
    let literal = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let named = app.create_webhook(&ws.id, json!({"url": by_name})).await;
    let mut config = app.config.clone();
    config.delivery.allow_private.clear();
    let (dir, clock) = app.stop().await;
    let app = TestApp::spawn_with(dir, config, clock).await;
    app.ingest(&ws, &message("m-1", "c-1", "Hi")).await;
    for webhook in [&literal, &named] {
        let attempts = app.attempts(webhook["id"].as_str().unwrap(), 1).await;
        assert!(attempts[0].error.as_deref().unwrap().contains("SSRF guard"), "{:?}", attempts[0].error);
    }
    assert!(receiver.received().is_empty(), "nothing reached the private address");
}
