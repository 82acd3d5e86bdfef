//! The OpenAPI document against the routes the daemon answers, the chats API it describes, and
//! schemathesis (PyPI) generating requests from it against a running daemon.

use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn document(app: &TestApp) -> Value {
    let response = app.http.get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// Whether the router itself refused: no such route, or no such method on it.
async fn router_refuses(app: &TestApp, method: &str, path: &str) -> bool {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let response = app.admin(method, path).json(&json!({})).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status == 404 && body.contains("no such route")) || status == 405 && body.contains("method_not_allowed")
}

#[tokio::test]
async fn the_document_describes_exactly_the_routes_the_daemon_answers() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "OpenAPI 3");
    // The licence it names is the crate's, whose text is in LICENSE.
    assert_eq!(doc["info"]["license"]["identifier"], env!("CARGO_PKG_LICENSE"));
    let license = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/LICENSE")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0"));
    let paths = doc["paths"].as_object().unwrap();

    // Every documented operation is answered by a handler (a made-up id gets the handler's own
    // 404, never the router's).
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{id}", "x1")
                .replace("{source_id}", "x2")
                .replace("{kind}", "twilio")
                .replace("{delivery_id}", "x3");
            assert!(
                !router_refuses(&app, method, &concrete).await,
                "{method} {path} is documented but not routed"
            );
            operations.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    // The contract's routes are all documented, each with an operation id of its own.
    for expected in [
        "POST /api/v1/workspaces",
        "GET /api/v1/workspaces",
        "GET /api/v1/workspaces/{id}",
        "PATCH /api/v1/workspaces/{id}",
        "POST /api/v1/workspaces/{id}/flush",
        "POST /api/v1/workspaces/{id}/webhooks",
        "GET /api/v1/webhooks/{id}",
        "PATCH /api/v1/webhooks/{id}",
        "DELETE /api/v1/webhooks/{id}",
        "POST /api/v1/webhooks/{id}/test",
        "GET /api/v1/webhooks/{id}/activity",
        "GET /api/v1/webhooks/{id}/log",
        "GET /api/v1/webhooks/{id}/deliveries",
        "POST /api/v1/webhooks/{id}/deliveries/{delivery_id}/resend",
        "POST /api/v1/workspaces/{id}/sources",
        "GET /api/v1/workspaces/{id}/chats",
        "GET /api/v1/chats/{id}",
        "POST /api/v1/chats/{id}/rotate-token",
        "POST /api/v1/workspaces/{id}/messages",
        "POST /hooks/{kind}/{source_id}",
    ] {
        assert!(operations.iter().any(|o| o == expected), "{expected} is not documented");
    }
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "operation ids are unique");

    // And the check can fail: what is not documented is not routed either.
    for (method, path) in
        [("get", "/api/v1/nothing"), ("delete", "/api/v1/workspaces/x1"), ("put", "/api/v1/webhooks/x1")]
    {
        assert!(paths.get(path).is_none_or(|item| item.get(method).is_none()));
        assert!(router_refuses(&app, method, path).await, "{method} {path} is routed");
    }
}

#[tokio::test]
async fn chats_are_listed_shown_and_their_transcript_link_rotated() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    app.ingest(&ws, &json!([message("m-1", "c-1", "hello"), message("m-2", "c-2", "hi")])).await;
    app.advance(Duration::from_secs(1));
    app.ingest(&ws, &message("m-3", "c-1", "again")).await;

    let listed: Value = app
        .admin(Method::GET, &format!("/api/v1/workspaces/{}/chats?limit=1", ws.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chats = listed["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 1, "limit is honoured");
    assert_eq!(chats[0]["chat_id"], "c-1", "the most recently active first");
    assert_eq!(chats[0]["messages"], 2);
    let id = chats[0]["id"].as_i64().unwrap();

    let shown: Value =
        app.admin(Method::GET, &format!("/api/v1/chats/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown["workspace_id"], ws.id.as_str());
    let old = shown["transcript_url"].as_str().unwrap().to_string();
    assert_eq!(app.http.get(&old).send().await.unwrap().status(), 200);

    let rotated = app.admin(Method::POST, &format!("/api/v1/chats/{id}/rotate-token")).send().await.unwrap();
    assert_eq!(rotated.status(), 200);
    let new = rotated.json::<Value>().await.unwrap()["transcript_url"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(app.http.get(&old).send().await.unwrap().status(), 404, "the old link is dead");
    assert_eq!(app.http.get(&new).send().await.unwrap().status(), 200);

    let bad =
        app.admin(Method::GET, &format!("/api/v1/workspaces/{}/chats?limit=0", ws.id)).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["error"]["field"], "limit");
    for path in ["/api/v1/chats/abc", "/api/v1/chats/-1", "/api/v1/chats/999999"] {
        assert_eq!(app.admin(Method::GET, path).send().await.unwrap().status(), 404, "{path}");
    }
    let anonymous = app.http.get(app.url(&format!("/api/v1/chats/{id}"))).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// schemathesis generates requests from the document, valid and invalid, for a bounded time, and
/// checks that none gets a 5xx and every answer matches the document's status codes, content
/// types and response schemas. Webhook creation and updates are left out: their URLs are resolved
/// by the SSRF guard, and generated host names would be looked up in DNS.
#[tokio::test]
#[ignore = "needs schemathesis (PyPI): run scripts/test"]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let app = TestApp::spawn().await;
    // Something to find, so not every generated id meets an empty store.
    let ws = app.workspace().await;
    app.ingest(&ws, &message("m-1", "c-1", "hello")).await;
    let seconds = std::env::var("CHATBUNDLE_SCHEMATHESIS_SECONDS").unwrap_or_else(|_| "45".into());
    let run = || {
        let base = app.base.clone();
        let seconds = seconds.clone();
        tokio::task::spawn_blocking(move || {
            let dir = tempfile::tempdir().unwrap();
            Command::new("schemathesis")
                .current_dir(dir.path())
                .args(["run", &format!("{base}/api/v1/openapi.json")])
                .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
                .args([
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                ])
                .args(["--exclude-operation-id", "webhooks_create", "--exclude-operation-id", "webhooks_update"])
                .args(["--max-time", &seconds, "--request-timeout", "10", "--workers", "2"])
                .args(["--no-color", "--generation-database", "none"])
                .output()
                .expect("schemathesis runs (scripts/test installs it with pip)")
        })
    };
    // schemathesis sometimes trips over its own example generation ("Inconsistent results", a
    // Hypothesis flake, or an error raised inside its schema coverage code, such as CPython
    // 3.11's "AST constructor recursion depth mismatch" while Hypothesis reads a lambda's source):
    // reported as a runtime error, not a finding, such a run proves nothing either way, so it is
    // run again (five runs at most; three in a row have failed so on a loaded machine). Findings
    // (a FAILURES section) fail at once.
    let inconclusive = |stdout: &str| {
        !stdout.contains("FAILURES")
            && (stdout.contains("Inconsistent results")
                || stdout.contains("AST constructor recursion depth mismatch")
                || stdout.contains("schemathesis/specs/openapi/coverage"))
    };
    let mut output = run().await.unwrap();
    let mut stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    for _ in 0..4 {
        if output.status.success() || !inconclusive(&stdout) {
            break;
        }
        output = run().await.unwrap();
        stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    }
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("generated"), "schemathesis generated test cases:\n{stdout}");
}

#[tokio::test]
async fn the_documents_name_limits_are_the_ones_the_daemon_checks() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut checked = 0;
    for (schema, body) in schemas {
        for (field, property) in body["properties"].as_object().into_iter().flatten() {
            if matches!(field.as_str(), "name" | "responsible_name") && property.get("maxLength").is_some() {
                assert_eq!(
                    property["maxLength"],
                    chatbundle::domain::Name::MAX_CHARS,
                    "{schema}.{field}: the document's limit is Name::MAX_CHARS"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "the name fields of workspaces, sources and chats are documented ({checked})");
}
