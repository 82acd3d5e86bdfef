//! The data's whole life, as a workspace's admin runs it: erasing a chat on request.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// The chats of a workspace by their channel id: (chat id, transcript URL).
async fn chat_of(app: &TestApp, ws: &Workspace, external: &str) -> (i64, String) {
    let list: Value = app.get_json(&format!("/api/v1/workspaces/{}/chats", ws.id)).await;
    let line = list["chats"].as_array().unwrap().iter().find(|c| c["chat_id"] == external).cloned();
    let id = line.unwrap_or_else(|| panic!("no chat {external}: {list}"))["id"].as_i64().unwrap();
    let shown: Value = app.get_json(&format!("/api/v1/chats/{id}")).await;
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

/// Switching a webhook off asks what happens meanwhile. Stopped, it takes nothing: what comes
/// while it is off is never sent, and once on it takes what comes after. Paused (the default),
/// everything waits; switched on with `"backlog": "discard"`, what waited is marked `discarded`
/// (listed, logged with who and how many) and never sent; with `send`, it goes out.
#[tokio::test]
async fn a_stopped_webhook_takes_nothing_and_a_paused_ones_backlog_is_sent_or_discarded() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url, "granularity": "none"})).await;
    let id = hook["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/webhooks/{id}");

    let wrong =
        app.admin(Method::PATCH, &path).json(&json!({"enabled": true, "mode": "stop"})).send().await.unwrap();
    assert_eq!(wrong.status(), 400);
    assert_eq!(wrong.json::<Value>().await.unwrap()["error"]["field"], "mode");
    let wrong = app.admin(Method::PATCH, &path).json(&json!({"backlog": "discard"})).send().await.unwrap();
    assert_eq!(wrong.json::<Value>().await.unwrap()["error"]["field"], "backlog");

    // Stopped: nothing is kept for it.
    let stopped = app.patch_webhook(&id, json!({"enabled": false, "mode": "stop"})).await;
    assert_eq!((stopped["enabled"].clone(), stopped["off_mode"].clone()), (json!(false), json!("stop")));
    app.ingest(&ws, &json!([message("s-1", "c-1", "while stopped"), message("s-2", "c-2", "also")])).await;
    let shown: Value = app.get_json(&path).await;
    assert_eq!(shown["waiting"], 0, "nothing waits for a stopped webhook");
    let on = app.patch_webhook(&id, json!({"enabled": true})).await;
    assert_eq!(on["off_mode"], Value::Null);
    app.ingest(&ws, &json!([message("s-3", "c-1", "after")])).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].message_id(), "s-3");

    // Paused: everything waits; discarded on the way back on.
    let paused = app.patch_webhook(&id, json!({"enabled": false})).await;
    assert_eq!(paused["off_mode"], "pause");
    app.ingest(
        &ws,
        &json!([message("p-1", "c-1", "a"), message("p-2", "c-1", "b"), message("p-3", "c-2", "c")]),
    )
    .await;
    let shown: Value = app.get_json(&path).await;
    assert_eq!(shown["waiting"], 3);
    let back = app.patch_webhook(&id, json!({"enabled": true, "backlog": "discard"})).await;
    assert_eq!(back["waiting"], 0);
    let discarded: Value = app.get_json(&format!("{path}/deliveries?status=discarded")).await;
    assert_eq!(discarded["deliveries"].as_array().unwrap().len(), 3, "{discarded}");
    let log = app.get_text(&format!("{path}/log?format=jsonl")).await;
    let row = log.lines().find(|l| l.contains("backlog_discarded")).unwrap_or_else(|| panic!("{log}"));
    assert!(row.contains("\"deliveries\":3") && row.contains("\"actor\":\"operator\""), "{row}");

    // Paused again, and back on sending what waited.
    app.patch_webhook(&id, json!({"enabled": false, "mode": "pause"})).await;
    app.ingest(&ws, &json!([message("q-1", "c-1", "sent later")])).await;
    app.patch_webhook(&id, json!({"enabled": true, "backlog": "send"})).await;
    let got = receiver.wait_for(2).await;
    let ids: Vec<String> = got.iter().map(|r| r.message_id()).collect();
    assert_eq!(ids, ["s-3", "q-1"], "nothing stopped or discarded went out");
}

/// A bundling webhook stopped takes no message of the time it was off into a later bundle.
#[tokio::test]
async fn a_stopped_bundling_webhook_bundles_only_what_came_after() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("1h", "UTC").await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap().to_string();
    app.set_time("2024-03-01T13:00:00Z");
    app.patch_webhook(&id, json!({"enabled": false, "mode": "stop"})).await;
    app.ingest(&ws, &json!([message("m-1", "c-1", "while stopped")])).await;
    app.set_time("2024-03-01T13:10:00Z");
    app.patch_webhook(&id, json!({"enabled": true})).await;
    app.set_time("2024-03-01T13:20:00Z");
    app.ingest(&ws, &json!([message("m-2", "c-1", "after")])).await;
    app.set_time("2024-03-01T13:30:00Z");
    assert_eq!(app.flush(&ws.id).await, 1);
    let got = receiver.wait_for(1).await;
    let body = got[0].json().to_string();
    assert!(body.contains("after") && !body.contains("while stopped"), "{body}");
}

/// On the page: a webhook switched off to stop says so; paused with deliveries waiting, its
/// re-enable form offers to send them (saying how many) or discard them.
#[tokio::test]
async fn the_page_asks_how_to_switch_off_and_what_to_do_with_what_waited() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url, "granularity": "none"})).await;
    let id = hook["id"].as_str().unwrap().to_string();
    let (browser, csrf) = signed_in_browser(&app).await;
    let page_url = app.url(&format!("/ui/workspaces/{}", ws.id));
    let save = |fields: Vec<(&'static str, &'static str)>| {
        let mut form =
            vec![("csrf", csrf.clone()), ("url", receiver.url.clone()), ("granularity", "none".into())];
        form.extend(fields.into_iter().map(|(k, v)| (k, v.to_string())));
        browser.post(app.url(&format!("/ui/webhooks/{id}"))).form(&form).send()
    };

    assert_eq!(save(vec![("off_mode", "stop"), ("action", "save")]).await.unwrap().status(), 303);
    let shown: Value = app.get_json(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(shown["off_mode"], "stop");
    let page = browser.get(&page_url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("It is stopped: nothing is collected"), "{page}");

    assert_eq!(save(vec![("off_mode", "pause"), ("action", "save")]).await.unwrap().status(), 303);
    app.ingest(&ws, &json!([message("m-1", "c-1", "a"), message("m-2", "c-1", "b")])).await;
    let page = browser.get(&page_url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Send the 2 waiting deliveries"), "{page}");
    let back = save(vec![("enabled", "on"), ("backlog", "discard"), ("action", "save")]).await.unwrap();
    assert_eq!(back.status(), 303);
    let shown: Value = app.get_json(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!((shown["enabled"].clone(), shown["waiting"].clone()), (json!(true), json!(0)));
    app.ingest(&ws, &json!([message("m-3", "c-1", "c")])).await;
    assert_eq!(receiver.wait_for(1).await[0].message_id(), "m-3", "the discarded two never went");
    let bad = save(vec![("off_mode", "sometimes"), ("action", "save")]).await.unwrap();
    assert_eq!(bad.status(), 422);
}

/// A channel connected on the page: the form asks for exactly that channel's credentials with
/// their help, refuses a missing one by name, and the card then shows the inbound URL, the steps
/// in the vendor's console, and which credentials are set (never their values). The URL takes a
/// request signed as Twilio signs; edited with empty fields, the credentials stay; deleted (once
/// confirmed), its URL takes nothing.
#[tokio::test]
async fn a_channel_is_connected_edited_and_deleted_on_the_page() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let (browser, csrf) = signed_in_browser(&app).await;
    let page_url = app.url(&format!("/ui/workspaces/{}", ws.id));
    let home = browser.get(&page_url).send().await.unwrap().text().await.unwrap();
    for kind in ["twilio", "whatsapp", "wechat", "chatwoot", "zoho-desk"] {
        assert!(home.contains(&format!("/sources/new/{kind}\"")), "a way to connect {kind}");
    }
    let form =
        browser.get(app.url(&format!("/ui/workspaces/{}/sources/new/twilio", ws.id))).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let form = form.text().await.unwrap();
    assert!(
        form.contains("name=\"credential.auth_token\"") && form.contains("name=\"credential.account_sid\"")
    );
    assert!(!form.contains("credential.app_secret"), "only Twilio's credentials");
    assert!(form.contains("API keys &#38; tokens"), "with each field's help: {form}");

    let create = |fields: &[(&str, &str)]| {
        let mut all = vec![("csrf", csrf.as_str()), ("kind", "twilio"), ("name", "Shop WhatsApp")];
        all.extend_from_slice(fields);
        browser.post(app.url(&format!("/ui/workspaces/{}/sources", ws.id))).form(&all).send()
    };
    let missing = create(&[]).await.unwrap();
    assert_eq!(missing.status(), 422);
    assert!(missing.text().await.unwrap().contains("id=\"credential-auth_token-error\""));
    let made = create(&[("credential.auth_token", "12345")]).await.unwrap();
    assert_eq!(made.status(), 303);
    let card = browser.get(app.url(made.headers()["location"].to_str().unwrap())).send().await.unwrap();
    let card = card.text().await.unwrap();
    assert!(card.contains("Connected: Shop WhatsApp"), "{card}");
    assert!(card.contains("Messaging → Senders → WhatsApp senders"), "the vendor's steps");
    assert!(!card.contains("12345"), "a secret is never shown");
    let sources: Value = app.get_json(&format!("/api/v1/workspaces/{}/sources", ws.id)).await;
    let source = sources["sources"][0].clone();
    assert_eq!(source["credentials_set"], json!(["auth_token"]));
    let inbound = source["inbound_url"].as_str().unwrap().to_string();
    assert!(card.contains(&inbound));

    let params: Vec<(String, String)> = [
        ("MessageSid", "SM1"),
        ("From", "whatsapp:+15550001"),
        ("To", "whatsapp:+15550002"),
        ("Body", "hello from Twilio"),
        ("NumMedia", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let signed = |url: &str| {
        app.http
            .post(url)
            .header("x-twilio-signature", chatbundle::ingest::twilio::signature("12345", url, &params))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&params).unwrap())
            .send()
    };
    assert_eq!(signed(&inbound).await.unwrap().status(), 200);

    // Saved with the credential fields empty: they stay; switched off.
    let id = source["id"].as_str().unwrap();
    let saved = browser
        .post(app.url(&format!("/ui/sources/{id}")))
        .form(&[("csrf", csrf.as_str()), ("name", "Shop (old number)"), ("credential.auth_token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 303);
    let shown: Value = app.get_json(&format!("/api/v1/sources/{id}")).await;
    assert_eq!(
        (shown["name"].clone(), shown["enabled"].clone(), shown["credentials_set"].clone()),
        (json!("Shop (old number)"), json!(false), json!(["auth_token"]))
    );

    let delete = app.url(&format!("/ui/sources/{id}/delete"));
    let unconfirmed = browser.post(&delete).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(unconfirmed.status(), 422);
    let deleted =
        browser.post(&delete).form(&[("csrf", csrf.as_str()), ("confirm", "on")]).send().await.unwrap();
    assert_eq!(deleted.status(), 303);
    assert_eq!(signed(&inbound).await.unwrap().status(), 404, "its URL takes nothing");
}

/// Everything the API sets on a webhook, on the page: which events it takes (at least one), its
/// timeout, and deleting it, once a confirmation that names its waiting deliveries is ticked.
#[tokio::test]
async fn a_webhooks_events_timeout_and_deletion_are_on_the_page() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let (browser, csrf) = signed_in_browser(&app).await;
    let new = |fields: &[(&'static str, &'static str)]| {
        let mut all = vec![("csrf", csrf.as_str()), ("url", receiver.url.as_str()), ("granularity", "none")];
        all.extend_from_slice(&[("full", "1"), ("enabled", "on")]);
        all.extend_from_slice(fields);
        browser.post(app.url(&format!("/ui/workspaces/{}/webhooks", ws.id))).form(&all).send()
    };
    let none = new(&[]).await.unwrap();
    assert_eq!(none.status(), 422);
    assert!(none.text().await.unwrap().contains("choose at least one"));
    let made = new(&[("event_session_status", "on"), ("timeout", "5s")]).await.unwrap();
    assert_eq!(made.status(), 303);
    let hooks: Value = app.get_json(&format!("/api/v1/workspaces/{}/webhooks", ws.id)).await;
    let hook = hooks["webhooks"][0].clone();
    assert_eq!((hook["events"].clone(), hook["timeout"].clone()), (json!(["session_status"]), json!("5s")));
    let id = hook["id"].as_str().unwrap().to_string();

    let save = browser
        .post(app.url(&format!("/ui/webhooks/{id}")))
        .form(&[
            ("csrf", csrf.as_str()),
            ("url", receiver.url.as_str()),
            ("granularity", "none"),
            ("full", "1"),
            ("enabled", "on"),
            ("event_messages", "on"),
            ("event_session_status", "on"),
            ("timeout", ""),
            ("action", "save"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(save.status(), 303);
    let shown: Value = app.get_json(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(shown["events"], json!(["messages", "session_status"]));
    assert_ne!(shown["timeout"], "5s", "an empty timeout is the daemon's setting again");
    let bad = browser
        .post(app.url(&format!("/ui/webhooks/{id}")))
        .form(&[
            ("csrf", csrf.as_str()),
            ("url", receiver.url.as_str()),
            ("full", "1"),
            ("event_messages", "on"),
            ("timeout", "5h"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422, "a timeout past 2m is refused");

    app.patch_webhook(&id, json!({"enabled": false})).await;
    app.ingest(&ws, &json!([message("m-1", "c-1", "a"), message("m-2", "c-1", "b")])).await;
    let page = browser
        .get(app.url(&format!("/ui/workspaces/{}", ws.id)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let waiting = app.get_json(&format!("/api/v1/webhooks/{id}")).await["waiting"].as_u64().unwrap();
    assert_eq!(waiting, 3, "two messages and the new chat's session");
    assert!(page.contains("Yes, delete this webhook: its 3 waiting deliveries are dropped unsent"), "{page}");
    let delete = app.url(&format!("/ui/webhooks/{id}/delete"));
    assert_eq!(browser.post(&delete).form(&[("csrf", csrf.as_str())]).send().await.unwrap().status(), 422);
    let gone =
        browser.post(&delete).form(&[("csrf", csrf.as_str()), ("confirm", "on")]).send().await.unwrap();
    assert_eq!(gone.status(), 303);
    assert_eq!(app.admin(Method::GET, &format!("/api/v1/webhooks/{id}")).send().await.unwrap().status(), 404);
}

/// Is the vendor reaching us? A source's API view and card show when its last request came, how
/// many came in the last 24 hours, and the last one refused with why: a mistyped secret shows as
/// a bad signature.
#[tokio::test]
async fn a_sources_card_shows_its_last_request_and_why_one_was_refused() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let made = app
        .admin(Method::POST, &format!("/api/v1/workspaces/{}/sources", ws.id))
        .json(&json!({"kind": "twilio", "name": "Shop", "credentials": {"auth_token": "12345"}}))
        .send()
        .await
        .unwrap();
    let source: Value = made.json().await.unwrap();
    let (id, inbound) =
        (source["id"].as_str().unwrap().to_string(), source["inbound_url"].as_str().unwrap().to_string());
    assert_eq!((source["requests_24h"].clone(), source["last_request_at"].clone()), (json!(0), Value::Null));
    let params: Vec<(String, String)> = [
        ("MessageSid", "SM1"),
        ("From", "whatsapp:+15550001"),
        ("To", "whatsapp:+15550002"),
        ("Body", "hi"),
        ("NumMedia", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let post = |token: &'static str| {
        app.http
            .post(&inbound)
            .header("x-twilio-signature", chatbundle::ingest::twilio::signature(token, &inbound, &params))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&params).unwrap())
            .send()
    };
    assert_eq!(post("12345").await.unwrap().status(), 200);
    let refused = post("a mistyped token").await.unwrap().status().as_u16();
    assert!(refused >= 400);

    let path = format!("/api/v1/sources/{id}");
    let seen = eventually("the requests counted", || async {
        let shown = app.get_json(&path).await;
        (shown["requests_24h"] == 2 && shown["last_refusal"].is_object()).then_some(shown)
    })
    .await;
    assert!(seen["last_request_at"].is_string());
    assert_eq!(seen["last_refusal"]["status"], refused);
    let reason = seen["last_refusal"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("bad_signature"), "{reason}");
    assert!(!reason.contains("12345"), "no credential in the reason");

    let (browser, _) = signed_in_browser(&app).await;
    let page = browser
        .get(app.url(&format!("/ui/workspaces/{}", ws.id)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("2 in the last 24 hours") && page.contains("Last refused: "), "{page}");
}

/// A workspace keeps its messages as long as it says: `message_retention` (refused outside 1day
/// to 10years, naming the field), and the hourly job, woken by the clock, deletes what is older
/// once its window has gone out; the transcript says how far back it goes.
#[tokio::test]
async fn messages_older_than_the_workspace_keeps_them_are_deleted_once_delivered() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("1h", "UTC").await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let path = format!("/api/v1/workspaces/{}", ws.id);
    let short =
        app.admin(Method::PATCH, &path).json(&json!({"message_retention": "2h"})).send().await.unwrap();
    assert_eq!(short.status(), 400);
    assert_eq!(short.json::<Value>().await.unwrap()["error"]["field"], "message_retention");
    let set = app.patch_workspace(&ws.id, json!({"message_retention": "30days"})).await;
    assert_eq!(set["message_retention"], "30days");

    app.set_time("2024-03-01T13:00:00Z");
    app.ingest(&ws, &json!([message("m-1", "c-1", "an old message")])).await;
    app.set_time("2024-03-01T13:30:00Z");
    assert_eq!(app.flush(&ws.id).await, 1);
    receiver.wait_for(1).await;
    app.delivered(&ws, 1).await;
    let (chat, transcript) = chat_of(&app, &ws, "c-1").await;
    let page = reqwest::get(&transcript).await.unwrap().text().await.unwrap();
    assert!(page.contains("Messages older than 30days are deleted"), "{page}");

    app.set_time("2024-04-02T13:00:00Z");
    eventually("the old message deleted", || async {
        let list = app.get_json(&format!("/api/v1/workspaces/{}/chats", ws.id)).await;
        (list["chats"][0]["messages"] == 0).then_some(())
    })
    .await;
    assert_eq!(app.get_json(&format!("/api/v1/chats/{chat}")).await["id"], chat, "the chat stays");
}

/// The operator's page shows every workspace at a glance: webhooks off, deliveries waiting, the
/// oldest's wait, sources silent for a day; a member's does not.
#[tokio::test]
async fn the_operators_page_shows_every_workspace_at_a_glance() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url, "granularity": "none"})).await;
    app.patch_webhook(hook["id"].as_str().unwrap(), json!({"enabled": false})).await;
    app.ingest(&ws, &json!([message("m-1", "c-1", "a"), message("m-2", "c-1", "b")])).await;
    app.admin(Method::POST, &format!("/api/v1/workspaces/{}/sources", ws.id))
        .json(&json!({"kind": "zoho_desk", "name": "Desk", "credentials": {}}))
        .send()
        .await
        .unwrap();
    app.advance(std::time::Duration::from_secs(2 * 3600));
    let (browser, _) = signed_in_browser(&app).await;
    let home = browser.get(app.url("/ui")).send().await.unwrap().text().await.unwrap();
    let row = home.split("<tr").find(|r| r.contains(ws.id.as_str())).unwrap_or_else(|| panic!("{home}"));
    let cells: Vec<&str> = row.split("<td>").skip(2).map(|c| c.split('<').next().unwrap()).collect();
    assert_eq!((cells[0], cells[1], cells[3]), ("1", "2", "1"), "{row}");
    assert!(cells[2].ends_with(" h"), "the oldest has waited hours: {row}");
    assert!(row.contains("attention"));

    let (member, _) = {
        let invited = app.invite(&ws, "vi@acme.example", "viewer").await;
        let person = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        person
            .post(invited["invitation_url"].as_str().unwrap())
            .form(&[("password", "a viewer's long password")])
            .send()
            .await
            .unwrap();
        (person, ())
    };
    let theirs = member.get(app.url("/ui")).send().await.unwrap().text().await.unwrap();
    assert!(!theirs.contains("workspaces-health"), "the glance is the operator's");
}

/// Transcript links can expire: `transcript_link_ttl` (refused outside 1h to 10years, naming the
/// field); once a link is older than that it answers 410 saying why, and rotating it makes a new
/// one that works again.
#[tokio::test]
async fn a_transcript_link_older_than_its_workspace_allows_is_gone() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let path = format!("/api/v1/workspaces/{}", ws.id);
    let short =
        app.admin(Method::PATCH, &path).json(&json!({"transcript_link_ttl": "5m"})).send().await.unwrap();
    assert_eq!(short.json::<Value>().await.unwrap()["error"]["field"], "transcript_link_ttl");
    let set = app.patch_workspace(&ws.id, json!({"transcript_link_ttl": "7days"})).await;
    assert_eq!(set["transcript_link_ttl"], "7days");
    app.ingest(&ws, &json!([message("m-1", "c-1", "hello")])).await;
    let (chat, link) = chat_of(&app, &ws, "c-1").await;
    assert_eq!(reqwest::get(&link).await.unwrap().status(), 200);
    app.advance(std::time::Duration::from_secs(8 * 24 * 3600));
    let gone = reqwest::get(&link).await.unwrap();
    assert_eq!(gone.status(), 410);
    assert!(
        gone.text().await.unwrap().contains("This transcript link has expired: its links work for 7days")
    );
    let rotated =
        app.admin(Method::POST, &format!("/api/v1/chats/{chat}/rotate-token")).send().await.unwrap();
    let fresh = rotated.json::<Value>().await.unwrap()["transcript_url"].as_str().unwrap().to_string();
    assert_eq!(reqwest::get(&fresh).await.unwrap().status(), 200, "a rotated link starts afresh");
    app.patch_workspace(&ws.id, json!({"transcript_link_ttl": "never"})).await;
    assert_eq!(reqwest::get(&fresh).await.unwrap().status(), 200);
}

/// A Japanese workspace's channel form speaks Japanese: the suggested name, each credential's
/// label and help.
#[tokio::test]
async fn a_japanese_workspaces_channel_form_speaks_japanese() {
    let app = TestApp::spawn().await;
    let ws = app
        .create_workspace(
            json!({"name": "東京ショップ", "owner_email": "owner@acme.example", "locale": "ja"}),
        )
        .await;
    let (browser, _) = signed_in_browser(&app).await;
    let form = browser
        .get(app.url(&format!("/ui/workspaces/{}/sources/new/wechat", ws["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains("value=\"WeChat 公式アカウント\""), "{form}");
    assert!(
        form.contains("EncodingAESKey（安全モード）") && form.contains("明文モードなら空のまま"),
        "{form}"
    );
}
