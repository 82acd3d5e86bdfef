use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn app_with(configure: impl FnOnce(&mut chatbundle::config::Config)) -> TestApp {
    let dir = crate::helpers::test_dir();
    let mut config = test_config(&dir);
    configure(&mut config);
    TestApp::spawn_with(dir, config, chatbundle::clock::ManualClock::new(start_time())).await
}

async fn webhook_json(app: &TestApp, id: &str) -> Value {
    app.admin(Method::GET, &format!("/api/v1/webhooks/{id}")).send().await.unwrap().json().await.unwrap()
}

async fn activity(app: &TestApp, id: &str) -> Vec<Value> {
    let body: Value = app
        .admin(Method::GET, &format!("/api/v1/webhooks/{id}/activity"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["activity"].as_array().unwrap().clone()
}

#[tokio::test]
#[ignore = "needs aiosmtpd (PyPI), a real SMTP server: run scripts/test"]
async fn consecutive_failures_disable_a_webhook_email_the_owner_and_lose_nothing() {
    let smtp = SmtpSink::start();
    let app = app_with(|c| {
        c.delivery.disable_after = 3;
        c.smtp.url = Some(smtp.url());
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.answer(Reply::status(500).body("boom"));
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap();

    app.ingest(&ws, &message("m-1", "c-1", "one")).await;
    app.attempts(id, 1).await;
    app.advance(Duration::from_secs(10));
    app.attempts(id, 2).await;
    app.advance(Duration::from_secs(60));
    app.attempts(id, 3).await;
    let shown = eventually("the webhook to be disabled", || async {
        let w = webhook_json(&app, id).await;
        (w["enabled"] == false).then_some(w)
    })
    .await;
    assert!(shown["disabled_reason"].as_str().unwrap().contains("3 consecutive failed attempts"), "{shown}");

    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail["to"], json!(["owner@acme.example"]));
    let text = mail["data"].as_str().unwrap();
    for needle in
        ["Acme", receiver.url.as_str(), "3 consecutive failed attempts", "HTTP 500", "\"enabled\": true"]
    {
        assert!(text.contains(needle), "{needle:?} missing from the e-mail:\n{text}");
    }
    let log = activity(&app, id).await;
    assert_eq!(log[0]["kind"], "disabled", "{log:?}");

    // While disabled, messages keep accumulating and nothing is sent.
    app.ingest(&ws, &json!([message("m-2", "c-1", "two"), message("m-3", "c-2", "three")])).await;
    app.advance(Duration::from_secs(3600));
    let sent_while_disabled = receiver.received().len();
    assert_eq!(sent_while_disabled, 3);
    assert_eq!(app.stats(&ws).await.deliveries_pending, 3);

    // Switched on again, everything goes out, oldest first and in per-chat order.
    receiver.answer(Reply::status(200));
    let back = app.patch_webhook(id, json!({"enabled": true})).await;
    assert_eq!((back["enabled"].clone(), back["consecutive_failures"].clone()), (json!(true), json!(0)));
    assert!(back["disabled_reason"].is_null());
    let seen = receiver.wait_for(6).await;
    let c1: Vec<String> =
        seen[3..].iter().filter(|r| r.json()["chat"]["chat_id"] == "c-1").map(Received::message_id).collect();
    assert_eq!(c1, ["m-1", "m-2"]);
    assert!(seen[3..].iter().any(|r| r.message_id() == "m-3"));
    app.delivered(&ws, 3).await;
    assert!(activity(&app, id).await.iter().any(|row| row["kind"] == "enabled"));
}

#[tokio::test]
async fn gone_disables_at_once_and_no_smtp_server_is_not_fatal() {
    let app = TestApp::spawn().await; // no [smtp] url
    let receiver = Receiver::start().await;
    receiver.answer(Reply::status(410));
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap();
    app.ingest(&ws, &message("m-1", "c-1", "one")).await;
    let shown = eventually("410 to disable", || async {
        let w = webhook_json(&app, id).await;
        (w["enabled"] == false).then_some(w)
    })
    .await;
    assert_eq!(shown["disabled_reason"], "the endpoint answered 410 Gone");
    assert_eq!(app.stats(&ws).await.deliveries_pending, 1, "kept for when it is switched on again");
}

#[tokio::test]
#[ignore = "needs aiosmtpd (PyPI), a real SMTP server: run scripts/test"]
async fn an_smtp_outage_delays_the_email_but_never_loses_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = app_with(|c| c.smtp.url = Some(format!("smtp://127.0.0.1:{port}"))).await;
    let receiver = Receiver::start().await;
    receiver.answer(Reply::status(410));
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.ingest(&ws, &message("m-1", "c-1", "one")).await;
    eventually("the disable", || async {
        (webhook_json(&app, hook["id"].as_str().unwrap()).await["enabled"] == false).then_some(())
    })
    .await;
    // The SMTP server is down: let the mailer try and fail at least once.
    eventually("a failed e-mail attempt", || async {
        let tried = app.dir.count("SELECT COUNT(*) FROM outbox WHERE attempts > 0 AND sent_at IS NULL").await;
        (tried > 0).then_some(())
    })
    .await;

    let smtp = SmtpSink::start_on(port);
    app.advance(Duration::from_secs(120)); // past the first retry (30 s ± 20 %)
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail["to"], json!(["owner@acme.example"]));
}

#[tokio::test]
async fn the_activity_log_shows_the_latest_ten_and_exports_everything() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap();
    let batch: Vec<Value> = (0..12).map(|i| message(&format!("m-{i}"), &format!("c-{i}"), "x")).collect();
    app.ingest(&ws, &json!(batch)).await;
    app.attempts(id, 12).await;
    let mut skipped = message("img-1", "c-1", "");
    skipped["type"] = json!("image");
    app.ingest(&ws, &json!([skipped])).await;
    app.patch_webhook(id, json!({"timeout": "5s", "secret": true})).await;

    let latest = activity(&app, id).await;
    assert_eq!(latest.len(), 10);
    assert_eq!(latest[0]["kind"], "config_changed");
    assert_eq!(latest[0]["detail"]["secret"], "changed", "never the secret itself: {}", latest[0]);
    assert_eq!(latest[0]["detail"]["timeout"], "5s");
    assert_eq!(latest[0]["actor"], "operator", "who changed it");
    assert_eq!(latest[1]["kind"], "skipped");
    assert_eq!(latest[1]["detail"]["message_ids"], json!(["img-1"]));
    assert_eq!(latest[1]["actor"], Value::Null, "the daemon's own doing names nobody");
    // (The test's clock stands still: events made at that instant sort after its attempts.)
    assert_eq!(
        (latest[2]["kind"].as_str(), latest[2]["actor"].as_str()),
        (Some("created"), Some("operator"))
    );
    assert_eq!(latest[3]["kind"], "attempt");
    assert_eq!(latest[3]["status"], 200);
    assert!(latest[3]["request_body"].as_str().unwrap().contains("\"message_id\""));
    assert!(latest[3]["request_headers"]["webhook-id"].as_str().unwrap().starts_with("msg_"));
    assert!(latest[3]["duration_ms"].is_u64());

    let jsonl =
        app.admin(Method::GET, &format!("/api/v1/webhooks/{id}/log?format=jsonl")).send().await.unwrap();
    assert_eq!(jsonl.headers()["content-type"], "application/x-ndjson");
    let text = jsonl.text().await.unwrap();
    let rows: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 15, "12 attempts, its creation, a skip, a change");
    assert!(rows.iter().any(|r| r["kind"] == "created" && r["actor"] == "operator"));
    assert_eq!(rows.iter().filter(|r| r["kind"] == "attempt").count(), 12);

    let csv = app.admin(Method::GET, &format!("/api/v1/webhooks/{id}/log?format=csv")).send().await.unwrap();
    assert!(csv.headers()["content-disposition"].to_str().unwrap().contains(".csv"));
    let body = csv.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert!(headers.iter().any(|h| h == "request_body") && headers.iter().any(|h| h == "actor"));
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 15);

    let bad = app.admin(Method::GET, &format!("/api/v1/webhooks/{id}/log?format=xml")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn the_log_streams_well_past_a_thousand_attempts() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap();
    let batch: Vec<Value> = (0..1200).map(|i| message(&format!("m-{i}"), &format!("c-{i}"), "x")).collect();
    app.ingest(&ws, &json!(batch[..1000])).await;
    app.ingest(&ws, &json!(batch[1000..])).await;
    app.attempts(id, 1200).await;
    let text = app
        .admin(Method::GET, &format!("/api/v1/webhooks/{id}/log"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: std::collections::HashSet<&str> =
        rows.iter().filter(|r| r["kind"] == "attempt").map(|r| r["delivery_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1200, "every attempt once, across pages");
    assert_eq!(rows.len(), 1201, "and the webhook's creation");
}

#[tokio::test]
async fn a_test_send_reports_its_result_and_never_counts_towards_a_disable() {
    let app = app_with(|c| c.delivery.disable_after = 1).await;
    let receiver = Receiver::start().await;
    receiver.then(Reply::status(500).body("not today"));
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url, "secret": true})).await;
    let id = hook["id"].as_str().unwrap();

    let result: Value = app
        .admin(Method::POST, &format!("/api/v1/webhooks/{id}/test"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(result["ok"], false);
    assert_eq!(result["status"], 500);
    assert_eq!(result["response_excerpt"], "not today");
    assert_eq!(result["sample"], true);
    let sent = receiver.wait_for(1).await[0].json();
    assert_eq!(sent["sample"], true, "a sample is clearly marked");
    assert!(sent["message"]["text"].as_str().unwrap().contains("sample"));
    let shown = webhook_json(&app, id).await;
    assert_eq!((shown["enabled"].clone(), shown["consecutive_failures"].clone()), (json!(true), json!(0)));

    // With a real message in the workspace, the test sends that.
    app.ingest(&ws, &message("m-1", "c-1", "the real thing")).await;
    receiver.wait_for(2).await;
    let result: Value = app
        .admin(Method::POST, &format!("/api/v1/webhooks/{id}/test"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((result["ok"].clone(), result["sample"].clone()), (json!(true), json!(false)));
    let sent = receiver.wait_for(3).await;
    assert_eq!(sent[2].message_id(), "m-1");
    assert!(sent[2].header("webhook-id").starts_with("test_"));
    assert!(activity(&app, id).await.iter().any(|row| row["kind"] == "test"));
}

/// `GET /api/v1/workspaces/{id}/sample`: what a webhook with some settings would receive now,
/// for an integration to show before it has a webhook, as a test send would carry it.
#[tokio::test]
async fn a_sample_shows_what_a_webhook_with_those_settings_would_receive_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let sample = |query: &str| {
        let url = format!("/api/v1/workspaces/{}/sample{query}", ws.id);
        let request = app.admin(Method::GET, &url);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    // No chat yet: made up, and said so.
    let (status, made_up) = sample("").await;
    assert_eq!(status, 200, "{made_up}");
    assert_eq!(made_up["sample"], true);
    assert_eq!(made_up["payload"]["test"], true);
    assert!(
        made_up["payload"]["message"].is_object(),
        "one message for the workspace's granularity: {made_up}"
    );

    app.ingest(&ws, &message("m-1", "c-1", "Where is my parcel?")).await;
    app.ingest(&ws, &message("m-2", "c-1", "It was due yesterday")).await;
    let (_, immediate) = sample("?granularity=none").await;
    assert_eq!(immediate["sample"], false);
    assert_eq!(immediate["payload"]["message"]["message_id"], "m-2", "the latest message");
    assert_eq!(immediate["payload"]["chat"]["chat_id"], "c-1");
    let (_, bundled) = sample("?granularity=1h&media=link").await;
    assert_eq!(bundled["payload"]["message_count"], 2);
    assert!(bundled["payload"]["aggregation"].as_str().unwrap().contains("It was due yesterday"));
    assert_eq!(bundled["payload"]["test"], true);
    let (_, session) = sample("?events=session_status").await;
    let events = session["payload"].as_array().expect("session events are an array");
    assert_eq!(events[0]["eventType"], "IM_Session_Status");
    assert_eq!(events[0]["payload"]["sessionStatus"], "CREATED");

    // Bad settings name their field; nothing was sent or stored by any of this.
    for (query, field) in [
        ("?events=", "events"),
        ("?events=messages,calls", "events"),
        ("?granularity=2h", "granularity"),
        ("?media=all", "media"),
    ] {
        let (status, error) = sample(query).await;
        assert_eq!(status, 400, "{query}: {error}");
        assert_eq!(error["error"]["field"], field, "{query}: {error}");
    }
    let webhooks = app.get_json(&format!("/api/v1/workspaces/{}/webhooks", ws.id)).await;
    assert_eq!(webhooks["webhooks"], json!([]));
    assert_eq!(app.stats(&ws).await.messages, 2);
}

#[tokio::test]
async fn retention_removes_what_is_older() {
    let app =
        app_with(|c| c.delivery.retention = chatbundle::config::HumanDuration(Duration::from_secs(3600)))
            .await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap();
    app.ingest(&ws, &message("m-1", "c-1", "old")).await;
    app.attempts(id, 1).await;
    app.delivered(&ws, 1).await;
    app.advance(Duration::from_secs(2 * 3600 + 60)); // the hourly job runs; the attempt is 2 h old
    eventually("the old attempt to be pruned", || async {
        activity(&app, id).await.is_empty().then_some(())
    })
    .await;
    assert_eq!(app.stats(&ws).await.deliveries_delivered, 0, "finished deliveries go too");
    assert_eq!(app.stats(&ws).await.messages, 1, "messages stay (transcripts need them)");
}

#[tokio::test]
async fn health_readiness_and_metrics_describe_the_daemon() {
    let app = TestApp::spawn().await;
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = eventually("readiness", || async {
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        (r.status() == 200).then_some(r)
    })
    .await;
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["store"], "ok");
    assert_eq!(body["workers"], json!({"delivery": true, "closer": true, "mailer": true}));

    let receiver = Receiver::start().await;
    receiver.answer(Reply::status(500));
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let mut image = message("img", "c-1", "");
    image["type"] = json!("image");
    app.ingest(&ws, &json!([message("m-1", "c-1", "a"), message("m-2", "c-2", "b"), image])).await;
    app.ingest(&ws, &message("m-1", "c-1", "again")).await;
    app.attempts(hook["id"].as_str().unwrap(), 2).await;
    app.advance(Duration::from_secs(60));

    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
    };
    // Counters belong to the process: exact where this daemon is its only one (nextest runs each
    // test in a process of its own), at least this much where `cargo test` shares one.
    let counted = |name: &str, expected: f64| {
        let seen = value(name);
        if only_app_in_process() {
            assert_eq!(seen, expected, "{name}");
        } else {
            assert!(seen >= expected, "{name}: {seen}");
        }
    };
    counted("chatbundle_messages_received_total", 2.0);
    counted("chatbundle_messages_duplicate_total", 1.0);
    counted("chatbundle_messages_skipped_total", 1.0);
    assert!(value("chatbundle_deliveries_total{outcome=\"retry\"}") >= 2.0);
    // Attempts' durations, kept in a bounded summary however long nobody scraped.
    assert!(value("chatbundle_delivery_seconds_count") >= 2.0);
    assert_eq!(value("chatbundle_queue_depth"), 2.0);
    assert!(value("chatbundle_queue_oldest_pending_seconds") >= 59.0);
    assert_eq!(value("chatbundle_webhooks_disabled"), 0.0);
    assert_eq!(value("chatbundle_emails_pending"), 0.0);
    assert!(text.contains("# HELP chatbundle_queue_depth"));
}
