//! Several real daemon processes on one PostgreSQL database, with no leader: messages ingested
//! on every daemon while another keeps releasing the windows are each bundled once; a window
//! released by two daemons at the same instant makes one bundle per chat; the delivery of a
//! daemon killed mid-send is taken over by another once its lease runs out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::supervision::Daemon;

/// `n` daemons sharing `db`, each with a data directory of its own (which only holds the logs of
/// its admin token), ready.
async fn daemons(db: &TestDatabase, n: usize) -> (Vec<Daemon>, Vec<tempfile::TempDir>) {
    let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let daemons: Vec<Daemon> = dirs
        .iter()
        .map(|d| Daemon::start(d.path(), &[("CHATBUNDLE_DATABASE_URL", db.url.as_str())]))
        .collect();
    for daemon in &daemons {
        assert_eq!(daemon.ready().await.0, 200);
    }
    (daemons, dirs)
}

/// A workspace with one webhook (its JSON settings) to `url`: the workspace's id and ingest key,
/// and the webhook's id.
async fn workspace(daemon: &Daemon, url: &str, webhook: Value) -> (String, String, String) {
    let body = json!({"name": "Acme", "owner_email": "owner@acme.example"});
    let ws = daemon.json(Method::POST, "/api/v1/workspaces", Some(body)).await;
    let id = ws["id"].as_str().unwrap().to_string();
    let mut settings = webhook;
    settings["url"] = json!(url);
    let hook = daemon.json(Method::POST, &format!("/api/v1/workspaces/{id}/webhooks"), Some(settings)).await;
    (id, ws["ingest_key"].as_str().unwrap().to_string(), hook["id"].as_str().unwrap().to_string())
}

/// Posts one message; whether it was acknowledged.
async fn post(base: &str, workspace: &str, key: &str, id: &str, chat: &str) -> bool {
    let response = Daemon::http()
        .post(format!("{base}/api/v1/workspaces/{workspace}/messages"))
        .bearer_auth(key)
        .json(&message(id, chat, "hello"))
        .send()
        .await
        .unwrap();
    response.status() == 202
}

async fn stats(daemon: &Daemon, workspace: &str) -> Value {
    daemon.json(Method::GET, &format!("/api/v1/workspaces/{workspace}/stats"), None).await
}

/// Message ids in the bundles received, with how often each came.
fn bundled(receiver: &Receiver) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for r in receiver.received() {
        for m in r.json()["messages"].as_array().unwrap() {
            *count.entry(m["message_id"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    count
}

/// Waits until the workspace has nothing pending and `done` holds of the receiver.
async fn settled(daemon: &Daemon, workspace: &str, receiver: &Receiver, done: impl Fn(&Receiver) -> bool) {
    eventually("every delivery made and recorded", || async {
        let s = stats(daemon, workspace).await;
        (s["deliveries_pending"] == 0 && done(receiver)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]
async fn three_daemons_ingest_while_another_keeps_releasing_and_every_message_is_bundled_once() {
    let db = TestDatabase::create();
    let (daemons, _dirs) = daemons(&db, 3).await;
    let receiver = Receiver::start().await;
    let (ws, key, _) = workspace(&daemons[0], &receiver.url, json!({"granularity": "1h"})).await;

    // Every daemon takes messages (four chats shared by all, so their windows interleave)...
    let writers: Vec<_> = daemons
        .iter()
        .enumerate()
        .map(|(d, daemon)| {
            let (base, ws, key) = (daemon.base.clone(), ws.clone(), key.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0..60 {
                    let id = format!("d{d}-m{i}");
                    if post(&base, &ws, &key, &id, &format!("c-{}", i % 4)).await {
                        acknowledged.push(id);
                    }
                }
                acknowledged
            })
        })
        .collect();
    // ...while the third keeps releasing the open windows.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let releaser = {
        let (base, ws, stop) = (daemons[2].base.clone(), ws.clone(), stop.clone());
        tokio::spawn(async move {
            let mut releases = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let response = Daemon::http()
                    .post(format!("{base}/api/v1/workspaces/{ws}/flush"))
                    .bearer_auth(crate::supervision::TOKEN)
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
                releases += 1;
            }
            releases
        })
    };
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(releaser.await.unwrap() > 1, "releases ran while messages were committed");
    assert_eq!(acknowledged.len(), 180);
    daemons[1].json(Method::POST, &format!("/api/v1/workspaces/{ws}/flush"), None).await;

    settled(&daemons[0], &ws, &receiver, |r| bundled(r).len() == acknowledged.len()).await;
    let count = bundled(&receiver);
    for id in &acknowledged {
        assert_eq!(count.get(id), Some(&1), "{id} is in exactly one bundle");
    }
    assert_eq!(stats(&daemons[1], &ws).await["messages"], 180);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]
async fn a_window_released_by_two_daemons_at_the_same_instant_makes_one_bundle_per_chat() {
    let db = TestDatabase::create();
    let (daemons, _dirs) = daemons(&db, 2).await;
    let receiver = Receiver::start().await;
    let (ws, key, _) = workspace(&daemons[0], &receiver.url, json!({"granularity": "1h"})).await;
    for i in 0..60 {
        assert!(post(&daemons[i % 2].base, &ws, &key, &format!("m-{i}"), &format!("c-{}", i % 20)).await);
    }
    let path = format!("/api/v1/workspaces/{ws}/flush");
    let (a, b) =
        tokio::join!(daemons[0].call(Method::POST, &path, None), daemons[1].call(Method::POST, &path, None));
    assert!(a.status().is_success() && b.status().is_success());

    settled(&daemons[1], &ws, &receiver, |r| r.received().len() >= 20).await;
    let bundles = receiver.received();
    let mut per_chat: HashMap<String, usize> = HashMap::new();
    for r in &bundles {
        *per_chat.entry(r.json()["chat"]["chat_id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(per_chat.len(), 20);
    assert!(per_chat.values().all(|n| *n == 1), "one bundle per chat: {per_chat:?}");
    assert_eq!(bundled(&receiver).len(), 60);
    assert!(bundled(&receiver).values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]
async fn a_delivery_of_a_daemon_killed_mid_send_is_taken_over_once_its_lease_runs_out() {
    let db = TestDatabase::create();
    let (mut first, _dirs) = daemons(&db, 1).await;
    let mut first = first.remove(0);
    let receiver = Receiver::start().await;
    // The first request hangs (the daemon is killed while it waits); the next is answered.
    receiver.then(Reply::status(200).delay(Duration::from_secs(120)));
    receiver.answer(Reply::status(200));
    let (ws, key, hook) = workspace(&first, &receiver.url, json!({"timeout": "2s"})).await;
    assert!(post(&first.base, &ws, &key, "m-1", "c-1").await);
    let sent = receiver.wait_for(1).await.remove(0);
    let in_flight = Instant::now();
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();

    let (second, _more) = daemons(&db, 1).await;
    let lease = Duration::from_secs(2 + 30);
    let deadline = in_flight + lease + Duration::from_secs(5);
    let again = loop {
        if let Some(r) = receiver.received().get(1) {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "not taken over within the webhook's timeout + 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let waited = in_flight.elapsed();
    assert!(waited >= lease - Duration::from_secs(1), "not before the lease ran out: {waited:?}");
    assert_eq!(again.header("webhook-id"), sent.header("webhook-id"), "a duplicate, with the same id");
    eventually("the delivery recorded as delivered", || async {
        let list = second[0].json(Method::GET, &format!("/api/v1/webhooks/{hook}/deliveries"), None).await;
        (list["deliveries"][0]["status"] == "delivered").then_some(())
    })
    .await;
    assert_eq!(receiver.received().len(), 2);
}

/// Runs `chatbundle copy-store`; its exit code and what it printed.
fn copy_store(from: &str, to: &str) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatbundle"))
        .env_remove("CHATBUNDLE_CONFIG")
        .args(["copy-store", "--from", from, "--to", to])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]
async fn copy_store_moves_an_installation_to_postgres_and_a_daemon_there_carries_on() {
    // An installation on SQLite: a bundling webhook holding a window open, an immediate one
    // whose endpoint is failing (so its deliveries wait for a retry), both signing.
    let app = TestApp::spawn().await;
    let sqlite = app.dir.store_url();
    let (bundles, immediate) = (Receiver::start().await, Receiver::start().await);
    immediate.answer(Reply::status(503));
    let ws = app.workspace().await;
    let bundling =
        app.create_webhook(&ws.id, json!({"url": bundles.url, "granularity": "1h", "secret": true})).await;
    let direct = app.create_webhook(&ws.id, json!({"url": immediate.url, "secret": true})).await;
    // And one bundling by conversation: its open conversations move with the rest.
    let conversations = Receiver::start().await;
    app.create_webhook(&ws.id, json!({"url": conversations.url, "granularity": "conversation"})).await;
    app.ingest(
        &ws,
        &json!([message("m-1", "c-1", "one"), message("m-2", "c-2", "two"), message("m-3", "c-1", "three")]),
    )
    .await;
    // m-3 waits behind m-1 in chat c-1's lane: two requests, both refused.
    immediate.wait_for(2).await;
    let chats: Value = app
        .admin(Method::GET, &format!("/api/v1/workspaces/{}/chats", ws.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat_id = chats["chats"].as_array().unwrap().iter().find(|c| c["chat_id"] == "c-1").unwrap()["id"]
        .as_i64()
        .unwrap();
    let chat: Value = app
        .admin(Method::GET, &format!("/api/v1/chats/{chat_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = chat["transcript_url"].as_str().unwrap().to_string();
    let token_path = link.split_once("/c/").map(|(_, t)| format!("/c/{t}")).unwrap();

    let db = TestDatabase::create();
    let (code, text) = copy_store(&sqlite, &db.url);
    assert_eq!(code, Some(2), "a store its daemon still holds is refused: {text}");
    assert!(text.contains("in use"), "{text}");
    let (_dir, _clock) = app.stop().await;

    let (code, text) = copy_store(&sqlite, &db.url);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.lines().any(|l| l.starts_with("messages") && l.trim_end().ends_with("3 rows")), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("conversations") && l.trim_end().ends_with("2 rows")),
        "{text}"
    );
    let (code, text) = copy_store(&sqlite, &db.url);
    assert_eq!(code, Some(2), "a target that is not empty is refused: {text}");
    assert!(text.contains("not") || text.contains("already"), "{text}");

    // A daemon on the copy: the endpoint is back; what waited goes out, the open window is
    // released (its hour is long past by this daemon's clock), with the same signing secrets.
    immediate.answer(Reply::status(200));
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[("CHATBUNDLE_DATABASE_URL", db.url.as_str())]);
    let seen = immediate.wait_for(5).await;
    let direct_secret =
        chatbundle::deliver::SigningSecret::parse(direct["secret"].as_str().unwrap()).unwrap();
    let ids = |list: &[Received]| {
        let mut ids: Vec<String> = list.iter().map(|r| r.header("webhook-id").to_string()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&seen[..2]), ids(&seen[2..4]), "the same deliveries, resumed under the same ids");
    assert_eq!(seen[4].message_id(), "m-3", "and then the one that waited behind them");
    for after in &seen[2..] {
        let timestamp: i64 = after.header("webhook-timestamp").parse().unwrap();
        assert!(direct_secret.verify(
            after.header("webhook-id"),
            timestamp,
            &after.body,
            after.header("webhook-signature")
        ));
    }
    let bundled = bundles.wait_for(2).await;
    let bundle_secret =
        chatbundle::deliver::SigningSecret::parse(bundling["secret"].as_str().unwrap()).unwrap();
    let mut ids: Vec<String> = Vec::new();
    for r in &bundled {
        let timestamp: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert!(bundle_secret.verify(
            r.header("webhook-id"),
            timestamp,
            &r.body,
            r.header("webhook-signature")
        ));
        ids.extend(
            r.json()["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["message_id"].as_str().unwrap().to_string()),
        );
    }
    ids.sort();
    assert_eq!(ids, ["m-1", "m-2", "m-3"], "every buffered message bundled once");
    // The conversations fell silent long ago by the new daemon's clock: each goes out once.
    let mut talked: Vec<(String, u64)> = conversations
        .wait_for(2)
        .await
        .iter()
        .map(|r| {
            let body = r.json();
            assert_eq!(body["closed_by"], "silence");
            (body["chat"]["chat_id"].as_str().unwrap().to_string(), body["message_count"].as_u64().unwrap())
        })
        .collect();
    talked.sort();
    assert_eq!(talked, [("c-1".to_string(), 2), ("c-2".to_string(), 1)]);
    // The old transcript link, on the new daemon.
    let transcript = Daemon::http().get(format!("{}{token_path}", daemon.base)).send().await.unwrap();
    assert_eq!(transcript.status(), 200);
    assert!(transcript.text().await.unwrap().contains("three"));
    // And new messages keep their chats: the chat ids continue after the copied ones.
    let key = ws.ingest_key.clone();
    assert!(post(&daemon.base, ws.id.as_str(), &key, "m-4", "c-3").await);
    eventually("the new chat listed", || async {
        let list = daemon.json(Method::GET, &format!("/api/v1/workspaces/{}/chats", ws.id), None).await;
        (list["chats"].as_array().unwrap().len() == 3).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]
async fn a_replayed_wechat_signature_and_a_rotated_inbound_url_are_refused_by_every_daemon() {
    use chatbundle::ingest::wechat;
    let db = TestDatabase::create();
    let (daemons, _dirs) = daemons(&db, 2).await;
    let receiver = Receiver::start().await;
    let (ws, _, _) = workspace(&daemons[0], &receiver.url, json!({})).await;
    let src = daemons[0]
        .json(
            Method::POST,
            &format!("/api/v1/workspaces/{ws}/sources"),
            Some(json!({"kind": "wechat", "name": "OA", "credentials": {"token": "wx-token", "app_id": "wx1"}})),
        )
        .await;
    let path = src["inbound_url"].as_str().unwrap().split("/hooks/").nth(1).unwrap().to_string();
    let now = chrono::Utc::now().timestamp().to_string();
    let query =
        format!("signature={}&timestamp={now}&nonce=n1", wechat::signature(&["wx-token", &now, "n1"]));
    let push = |id: &str, text: &str| {
        format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[openid-1]]></FromUserName>\
             <CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
             <Content>{text}</Content><MsgId>{id}</MsgId></xml>"
        )
    };
    let send = |daemon: &Daemon, body: String| {
        Daemon::http().post(format!("{}/hooks/{path}?{query}", daemon.base)).body(body).send()
    };
    assert_eq!(send(&daemons[0], push("1", "hello")).await.unwrap().status(), 200);
    assert_eq!(send(&daemons[1], push("1", "hello")).await.unwrap().status(), 200, "WeChat's redelivery");
    assert_eq!(
        send(&daemons[1], push("2", "send the refund to IBAN …")).await.unwrap().status(),
        401,
        "the signature, replayed to another daemon with another body"
    );
    assert_eq!(stats(&daemons[1], &ws).await["messages"], 1);

    // A rotation on one daemon closes the old URL on every daemon at once.
    let id = src["id"].as_str().unwrap();
    daemons[0].json(Method::POST, &format!("/api/v1/sources/{id}/rotate"), None).await;
    let check = format!("{}/hooks/{path}?{query}&echostr=e", daemons[1].base);
    assert_eq!(Daemon::http().get(check).send().await.unwrap().status(), 404);
}
