//! The data's whole life, as a workspace's admin runs it: erasing a chat on request.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// The chats of a workspace by their channel id: (chat id, transcript URL).
async fn chat_of(app: &TestApp, ws: &Workspace, external: &str) -> (i64, String) {
    let list: Value = app
        .admin(Method::GET, &format!("/api/v1/workspaces/{}/chats", ws.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let line = list["chats"].as_array().unwrap().iter().find(|c| c["chat_id"] == external).cloned();
    let id = line.unwrap_or_else(|| panic!("no chat {external}: {list}"))["id"].as_i64().unwrap();
    let shown: Value =
        app.admin(Method::GET, &format!("/api/v1/chats/{id}")).send().await.unwrap().json().await.unwrap();
    (id, shown["transcript_url"].as_str().unwrap().to_string())
}

/// `DELETE /api/v1/chats/{id}`: a viewer may not, another workspace's token does not see it; an
/// admin erases it, and then its transcript answers 404, its buffered messages are in no bundle,
/// the log export has the erasure (who, how much, no content), and a later message with the same
/// channel id starts a new chat.
#[tokio::test]
async fn an_erased_chat_is_in_no_later_bundle_and_its_transcript_is_gone() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("1h", "UTC").await;
    let other = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.set_time("2024-03-01T13:00:00Z");
    app.ingest(
        &ws,
        &json!([
            message("m-1", "+15550001", "my address is 1 Main St"),
            message("m-2", "+15550002", "keep me")
        ]),
    )
    .await;
    let (erased, transcript) = chat_of(&app, &ws, "+15550001").await;
    assert_eq!(reqwest::get(&transcript).await.unwrap().status(), 200);

    let token = |ws: &Workspace, role: &'static str| {
        let app = &app;
        let ws_id = ws.id.to_string();
        async move {
            let made: Value = app
                .admin(Method::POST, &format!("/api/v1/workspaces/{ws_id}/tokens"))
                .json(&json!({"name": role, "role": role}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            made["token"].as_str().unwrap().to_string()
        }
    };
    let path = format!("/api/v1/chats/{erased}");
    let http = reqwest::Client::new();
    let viewer = http.delete(app.url(&path)).bearer_auth(token(&ws, "viewer").await).send().await.unwrap();
    assert_eq!(viewer.status(), 403);
    let stranger =
        http.delete(app.url(&path)).bearer_auth(token(&other, "admin").await).send().await.unwrap();
    assert_eq!(stranger.status(), 404);

    let admin = token(&ws, "admin").await;
    let done = http.delete(app.url(&path)).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["messages_erased"], 1);
    assert_eq!(http.delete(app.url(&path)).bearer_auth(&admin).send().await.unwrap().status(), 404);
    assert_eq!(reqwest::get(&transcript).await.unwrap().status(), 404, "its transcript is gone");
    assert_eq!(app.admin(Method::GET, &path).send().await.unwrap().status(), 404);

    // The window closes: one bundle, the other chat's.
    app.set_time("2024-03-01T13:30:00Z");
    assert_eq!(app.flush(&ws.id).await, 1);
    let got = receiver.wait_for(1).await;
    let body = got[0].json().to_string();
    assert!(body.contains("keep me") && !body.contains("1 Main St"), "{body}");

    let log = app
        .admin(Method::GET, &format!("/api/v1/webhooks/{}/log?format=jsonl", hook["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row =
        log.lines().find(|l| l.contains("chat_erased")).unwrap_or_else(|| panic!("no erasure row: {log}"));
    assert!(row.contains("\"actor\":\"token:admin\"") && row.contains("\"messages\":1"), "{row}");
    assert!(!row.contains("Main St") && !row.contains("+15550001"), "no content in the log: {row}");

    // The same person writes again: a new chat.
    app.ingest(&ws, &json!([message("m-3", "+15550001", "hello again")])).await;
    let (again, _) = chat_of(&app, &ws, "+15550001").await;
    assert_ne!(again, erased);
}

/// On the chat's page, its admins erase it after ticking the confirmation; a viewer's page has no
/// such form.
#[tokio::test]
async fn a_chat_is_erased_from_its_page_once_confirmed() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    app.ingest(&ws, &json!([message("m-1", "c-1", "hello")])).await;
    let (chat, _) = chat_of(&app, &ws, "c-1").await;
    let (browser, _) = signed_in_browser(&app).await;
    let page = browser.get(app.url(&format!("/ui/chats/{chat}"))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Erase this chat"), "{page}");
    let csrf = csrf_of(&page);
    let erase = app.url(&format!("/ui/chats/{chat}/erase"));
    let unticked = browser.post(&erase).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(unticked.status(), 422);
    assert!(unticked.text().await.unwrap().contains("Tick the box"));
    assert_eq!(app.admin(Method::GET, &format!("/api/v1/chats/{chat}")).send().await.unwrap().status(), 200);
    let done = browser.post(&erase).form(&[("csrf", csrf.as_str()), ("confirm", "on")]).send().await.unwrap();
    assert_eq!(done.status(), 303);
    let back = done.headers()["location"].to_str().unwrap().to_string();
    let notice = browser.get(app.url(&back)).send().await.unwrap().text().await.unwrap();
    assert!(notice.contains("The chat is erased: 1 messages deleted"), "{notice}");
    assert_eq!(app.admin(Method::GET, &format!("/api/v1/chats/{chat}")).send().await.unwrap().status(), 404);

    app.ingest(&ws, &json!([message("m-2", "c-2", "hi")])).await;
    let (viewed, _) = chat_of(&app, &ws, "c-2").await;
    let invited = app.invite(&ws, "vi@acme.example", "viewer").await;
    let viewer = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let link = invited["invitation_url"].as_str().unwrap();
    viewer.post(link).form(&[("password", "a viewer's long password")]).send().await.unwrap();
    let page =
        viewer.get(app.url(&format!("/ui/chats/{viewed}"))).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("/erase"), "no erase form for a viewer");
    let refused = viewer
        .post(app.url(&format!("/ui/chats/{viewed}/erase")))
        .form(&[("csrf", csrf_of(&page).as_str()), ("confirm", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}
