use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("errors are JSON");
    assert!(body["error"]["code"].is_string(), "error shape: {body}");
    assert!(body["error"]["detail"].is_string(), "error shape: {body}");
    (status, body["error"].clone())
}

#[tokio::test]
async fn workspaces_are_created_listed_shown_and_updated() {
    let app = TestApp::spawn().await;
    let created = app
        .create_workspace(json!({"name": "Acme", "owner_email": "owner@acme.example",
                                 "timezone": "Europe/Berlin", "granularity": "6h",
                                 "account": {"full_name": "Acme Sales", "phone": "+4930123"}}))
        .await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("ws_"));
    assert!(created["ingest_key"].as_str().unwrap().starts_with("ik_"));
    assert_eq!(created["timezone"], "Europe/Berlin");
    assert_eq!(created["granularity"], "6h");
    assert_eq!(created["account"]["full_name"], "Acme Sales");

    let list: Value =
        app.admin(Method::GET, "/api/v1/workspaces").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["workspaces"].as_array().unwrap().len(), 1);

    let updated: Value = app
        .admin(Method::PATCH, &format!("/api/v1/workspaces/{id}"))
        .json(&json!({"timezone": "Asia/Kathmandu", "granularity": "none",
                      "account": {"full_name": "Acme Support", "email": "support@acme.example"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(updated["timezone"], "Asia/Kathmandu");
    assert_eq!(updated["granularity"], "none");
    assert_eq!(updated["name"], "Acme", "untouched fields keep their values");
    assert_eq!(updated["account"]["email"], "support@acme.example");

    let shown: Value = app
        .admin(Method::GET, &format!("/api/v1/workspaces/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown, updated);
}

#[tokio::test]
async fn workspace_input_errors_name_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"name": "", "owner_email": "a@b.example"}), "name"),
        (json!({"name": "A", "owner_email": "not-an-email"}), "owner_email"),
        (json!({"name": "A", "owner_email": "a@b.example", "timezone": "Mars/Base"}), "timezone"),
        (json!({"name": "A", "owner_email": "a@b.example", "granularity": "2h"}), "granularity"),
        (json!({"name": "A", "owner_email": "a@b.example", "locale": "fr"}), "locale"),
        (json!({"name": "A", "owner_email": "a@b.example", "colour": "red"}), "colour"),
        (json!({"owner_email": "a@b.example"}), "name"),
    ];
    for (body, field) in cases {
        let response = app.admin(Method::POST, "/api/v1/workspaces").json(&body).send().await.unwrap();
        let (status, error) = error_of(response).await;
        assert!((400..500).contains(&status), "{body}: {status}");
        assert!(error["detail"].as_str().unwrap().contains(field), "{body}: {error}");
    }
    let listed: Value =
        app.admin(Method::GET, "/api/v1/workspaces").send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["workspaces"].as_array().unwrap().len(), 0, "nothing was created");
}

#[tokio::test]
async fn the_admin_api_needs_the_admin_token() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let anonymous = app.http.get(app.url("/api/v1/workspaces")).send().await.unwrap();
    let (status, error) = error_of(anonymous).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (401, "unauthorized"));
    // An ingest key opens ingest, not administration.
    let with_key =
        app.http.get(app.url("/api/v1/workspaces")).bearer_auth(&ws.ingest_key).send().await.unwrap();
    assert_eq!(with_key.status(), 401);
}

#[tokio::test]
async fn webhooks_are_created_patched_and_deleted() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let created =
        app.create_webhook(&ws.id, json!({"url": "https://93.184.216.34/catch/1", "secret": true})).await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("wh_"));
    assert_eq!(created["granularity"], "none");
    assert_eq!(created["inherits_granularity"], true);
    assert_eq!(created["enabled"], true);
    assert_eq!(created["events"], json!(["messages"]));
    assert_eq!(created["timeout"], "10s");
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"), "a generated secret is shown once");

    let shown: Value =
        app.admin(Method::GET, &format!("/api/v1/webhooks/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown["has_secret"], true);
    assert!(shown.get("secret").is_none(), "GET never shows the secret: {shown}");

    let patched: Value = app
        .admin(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
        .json(&json!({"url": "https://93.184.216.34/in", "granularity": "12h", "enabled": false,
                      "timeout": "30s", "secret": null}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["url"], "https://93.184.216.34/in");
    assert_eq!(patched["granularity"], "12h");
    assert_eq!(patched["inherits_granularity"], false);
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["timeout"], "30s");
    assert_eq!(patched["has_secret"], false);

    let back: Value = app
        .admin(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
        .json(&json!({"granularity": null, "timeout": null}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(back["granularity"], "none", "null follows the workspace again");
    assert_eq!(back["inherits_granularity"], true);
    assert_eq!(back["timeout"], "10s");
    assert_eq!(back["url"], "https://93.184.216.34/in", "absent keys are left alone");

    let list: Value = app
        .admin(Method::GET, &format!("/api/v1/workspaces/{}/webhooks", ws.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);

    let deleted = app.admin(Method::DELETE, &format!("/api/v1/webhooks/{id}")).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = app.admin(Method::GET, &format!("/api/v1/webhooks/{id}")).send().await.unwrap();
    let (status, error) = error_of(gone).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (404, "not_found"));
}

#[tokio::test]
async fn webhook_input_errors_name_the_field() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let path = format!("/api/v1/workspaces/{}/webhooks", ws.id);
    let cases = [
        (json!({"url": "ftp://example.com/x"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({}), "url"),
        (json!({"url": "https://93.184.216.34/", "granularity": "hourly"}), "granularity"),
        (json!({"url": "https://93.184.216.34/", "secret": "plain-secret"}), "secret"),
        (json!({"url": "https://93.184.216.34/", "timeout": "forever"}), "timeout"),
        (json!({"url": "https://93.184.216.34/", "timeout": "10m"}), "timeout"),
        (json!({"url": "https://93.184.216.34/", "events": []}), "events"),
        (json!({"url": "https://93.184.216.34/", "events": ["everything"]}), "events"),
    ];
    for (body, field) in cases {
        let response = app.admin(Method::POST, &path).json(&body).send().await.unwrap();
        let (status, error) = error_of(response).await;
        assert_eq!(status, 400, "{body}");
        assert!(error["detail"].as_str().unwrap().contains(field), "{body}: {error}");
    }
    // The SSRF guard: addresses that are not public are refused, named as the url's fault.
    for private in
        ["http://10.0.0.7/hook", "http://169.254.169.254/latest", "http://[::1]:8080/", "http://[fd00::1]/"]
    {
        let response = app.admin(Method::POST, &path).json(&json!({"url": private})).send().await.unwrap();
        let (status, error) = error_of(response).await;
        assert_eq!(status, 400, "{private}");
        assert_eq!(error["field"], "url", "{private}: {error}");
        assert!(error["detail"].as_str().unwrap().contains("not a public address"), "{error}");
    }
    let missing = app
        .admin(Method::POST, "/api/v1/workspaces/ws_nope/webhooks")
        .json(&json!({"url": "https://93.184.216.34/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let list: Value = app.admin(Method::GET, &path).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 0, "nothing was created");
}

/// A path segment that cannot be an id (a NUL, a space, another kind's prefix) names nothing:
/// 404 in the error shape, as an unknown id, on the API and on the page, and no store is asked
/// (PostgreSQL would refuse a NUL outright).
#[tokio::test]
async fn an_id_that_cannot_be_one_answers_404() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    for path in [
        "/api/v1/webhooks/wh_%00x".to_string(),
        "/api/v1/webhooks/ws_abc/deliveries".to_string(),
        "/api/v1/workspaces/ws_a%20b".to_string(),
        format!("/api/v1/workspaces/{}/sources/src_F%F2%A1%85%83%00%1C", ws.id),
        "/api/v1/sources/x".to_string(),
    ] {
        let (status, error) = error_of(app.admin(Method::GET, &path).send().await.unwrap()).await;
        assert_eq!((status, error["code"].as_str().unwrap()), (404, "not_found"), "{path}: {error}");
    }
    let (status, _) = error_of(
        app.admin(Method::PATCH, "/api/v1/workspaces/ws_%00")
            .json(&json!({"name": "X"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) =
        error_of(app.admin(Method::DELETE, "/api/v1/webhooks/wh_a%00").send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert!(app.store.get_workspace(&ws.id).await.unwrap().is_some(), "the store still answers");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let (status, error) = error_of(app.admin(Method::GET, "/api/v1/nothing").send().await.unwrap()).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (404, "not_found"));
    let (status, error) = error_of(app.admin(Method::PUT, "/api/v1/workspaces").send().await.unwrap()).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (405, "method_not_allowed"));
}

#[tokio::test]
async fn a_chats_owner_is_set_checked_and_cleared() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    app.ingest(&ws, &message("m-1", "c-1", "hello")).await;
    let chats = app.admin(Method::GET, &format!("/api/v1/workspaces/{}/chats", ws.id)).send().await.unwrap();
    let chats: Value = chats.json().await.unwrap();
    let path = format!("/api/v1/chats/{}", chats["chats"][0]["id"]);
    let patch = |body: Value| app.admin(Method::PATCH, &path).json(&body).send();

    let set = patch(json!({"responsible_name": " Dana Levi ", "responsible_email": "dana@acme.example"}))
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let set: Value = set.json().await.unwrap();
    assert_eq!(
        (set["responsible_name"].as_str(), set["responsible_email"].as_str()),
        (Some("Dana Levi"), Some("dana@acme.example"))
    );
    for (body, field) in [
        (json!({"responsible_email": "not-an-address"}), "responsible_email"),
        (json!({"responsible_name": "Dana\r\nINFO forged"}), "responsible_name"),
        (json!({"responsible_name": ""}), "responsible_name"),
    ] {
        let refused = patch(body).await.unwrap();
        assert_eq!(refused.status(), 400);
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["field"], field);
    }
    let cleared = patch(json!({"responsible_email": null})).await.unwrap();
    let cleared: Value = cleared.json().await.unwrap();
    assert_eq!(
        (cleared["responsible_name"].as_str(), cleared["responsible_email"].as_str()),
        (Some("Dana Levi"), None)
    );
    // The next message names no owner: its payload names the one set here.
    let receiver = Receiver::start().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let mut next = message("m-2", "c-1", "again");
    next["chat"].as_object_mut().unwrap().remove("responsible_name");
    app.ingest(&ws, &next).await;
    assert_eq!(receiver.wait_for(1).await[0].json()["chat"]["responsible_name"], "Dana Levi");
    let unknown = app.admin(Method::PATCH, "/api/v1/chats/999999").json(&json!({})).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
}
