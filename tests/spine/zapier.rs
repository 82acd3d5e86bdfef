//! The Zapier app (`integrations/zapier/`) against a running daemon: its own tests
//! (`node --test`, through zapier-platform-core's test tools) subscribe each trigger with a hook
//! URL of their own, receive real deliveries through it, run them through the trigger, answer a
//! chat and unsubscribe. This test starts the daemon (the real binary, on the real clock: the
//! app's tests release a window by a flush, which takes what came before that moment), makes the
//! workspace and its API token the app connects with, and checks that the app's reply reached
//! the workspace's `reply_url`.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::process::{admin_call as admin, serve};

/// The app's tests take a few seconds; this bounds a hang.
const NODE_BOUND: Duration = Duration::from_secs(120);

#[tokio::test]
#[ignore = "needs Node.js and the app's packages (npm ci in integrations/zapier): run scripts/test"]
async fn the_zapier_app_subscribes_receives_real_deliveries_answers_a_chat_and_unsubscribes() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, addr) = serve(dir.path());
    let daemon = format!("http://{addr}");
    chatbundle::tls::use_ring();
    let http = reqwest::Client::new();
    let admin = |method, path: String, body| admin(&http, method, format!("{daemon}{path}"), body);
    let ws = admin(
        reqwest::Method::POST,
        "/api/v1/workspaces".into(),
        json!({"name": "Zapier test", "owner_email": "owner@example.com", "granularity": "24h"}),
    )
    .await;
    let ws_id = ws["id"].as_str().unwrap();
    let token = admin(
        reqwest::Method::POST,
        format!("/api/v1/workspaces/{ws_id}/tokens"),
        json!({"name": "Zapier", "role": "admin"}),
    )
    .await;
    let token = token["token"].as_str().expect("a workspace API token").to_string();
    // JSON API chats are answered at the workspace's reply_url.
    let system = Receiver::start().await;
    admin(reqwest::Method::PATCH, format!("/api/v1/workspaces/{ws_id}"), json!({"reply_url": system.url}))
        .await;
    let reply_text = "Thanks! It ships today.";

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("integrations/zapier");
    let run = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", "test/"])
        .current_dir(&dir)
        .env("CHATBUNDLE_URL", &daemon)
        .env("CHATBUNDLE_API_TOKEN", &token)
        .env("CHATBUNDLE_WORKSPACE_ID", ws_id)
        .env("CHATBUNDLE_INGEST_KEY", ws["ingest_key"].as_str().unwrap())
        .env("CHATBUNDLE_REPLY_TEXT", reply_text)
        // zapier-platform-core sends its logs to Zapier only with a logging token: none here,
        // and nothing leaves the machine.
        .env_remove("LOGGING_TOKEN")
        .env("LOGGING_ENDPOINT", "http://127.0.0.1:9/")
        .kill_on_drop(true)
        .output();
    let output =
        tokio::time::timeout(NODE_BOUND, run).await.expect("the app's tests end within the bound").unwrap();
    let report =
        format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the Zapier app's tests failed:\n{report}");
    assert!(report.contains("ℹ fail 0"), "{report}");
    assert!(!report.contains("ℹ pass 0\n"), "no test ran:\n{report}");

    // The reply the app's action sent reached the workspace's system, once (its idempotency key
    // made the second run answer with the first reply).
    let replies = system.wait_for(1).await;
    assert_eq!(replies.len(), 1, "answered once");
    let reply = replies[0].json();
    assert_eq!(reply["event"], "chat.reply");
    assert_eq!(reply["text"], reply_text);
    assert_eq!(reply["chat"]["chat_id"], "zap-chat-4");
    assert_eq!(reply["sent_by"], "token:Zapier", "the token's name says who answered");
}
