//! The inbound channels, with requests shaped like the vendors' documented examples and signed
//! the way each vendor signs.

use std::time::Duration;

use chatbundle::ingest::{twilio, wechat};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// A JSON body posted to `url` the way Meta does, signed with app secret `app-secret`.
async fn post_meta(app: &TestApp, url: &str, body: &Value) -> reqwest::Response {
    let raw = serde_json::to_vec(body).unwrap();
    let signature = format!("sha256={}", hex_hmac_sha256("app-secret", &[&raw]));
    app.http.post(url).header("x-hub-signature-256", signature).body(raw).send().await.unwrap()
}

/// A workspace with an immediate webhook and a session_status webhook.
async fn setup(app: &TestApp) -> (Workspace, Receiver, Receiver) {
    let ws = app.workspace().await;
    let (messages, sessions) = (Receiver::start().await, Receiver::start().await);
    app.create_webhook(&ws.id, json!({"url": messages.url})).await;
    app.create_webhook(&ws.id, json!({"url": sessions.url, "events": ["session_status"]})).await;
    (ws, messages, sessions)
}

#[tokio::test]
async fn sources_show_their_inbound_url_and_never_their_secrets() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let created = source(
        &app,
        &ws,
        json!({"kind": "zoho_desk", "name": "Desk", "account": {"full_name": "Acme Support"}, "credentials": {}}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("src_"));
    let url = created["inbound_url"].as_str().unwrap();
    let key = url.strip_prefix(&format!("{}/hooks/zoho-desk/in_", app.base)).expect("the inbound URL");
    assert_eq!(key.len(), 32, "an unguessable key of its own: {url}");
    assert!(!url.contains(id), "the URL's key is not the source's id");
    let twilio =
        source(&app, &ws, json!({"kind": "twilio", "name": "T", "credentials": {"auth_token": "tok-123"}}))
            .await;
    let shown: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/workspaces/{}/sources/{}", ws.id, twilio["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["credentials_set"], json!(["auth_token"]));
    assert!(!shown.to_string().contains("tok-123"), "secrets never come back: {shown}");
    let list: Value = app
        .admin(Method::GET, &format!("/api/v1/workspaces/{}/sources", ws.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["sources"].as_array().unwrap().len(), 2);

    for (body, field) in [
        (json!({"kind": "twilio", "name": "T", "credentials": {}}), "credentials.auth_token"),
        (
            json!({"kind": "whatsapp", "name": "W", "credentials": {"app_secret": "x"}}),
            "credentials.verify_token",
        ),
        (
            json!({"kind": "wechat", "name": "C", "credentials": {"token": "t", "app_id": "a", "encoding_aes_key": "short"}}),
            "credentials.encoding_aes_key",
        ),
        (json!({"kind": "chatwoot", "name": "C", "credentials": {"password": "x"}}), "credentials.password"),
        (json!({"kind": "telegram", "name": "X"}), "kind"),
    ] {
        let response = app
            .admin(Method::POST, &format!("/api/v1/workspaces/{}/sources", ws.id))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["detail"].as_str().unwrap().contains(field), "{error}");
    }
}

#[tokio::test]
async fn twilio_messages_are_verified_stored_and_answered_with_empty_twiml() {
    let app = TestApp::spawn().await;
    let (ws, receiver, _) = setup(&app).await;
    let src = source(
        &app,
        &ws,
        json!({"kind": "twilio", "name": "Twilio", "credentials": {"auth_token": "12345"},
               "account": {"full_name": "Acme WhatsApp", "phone": "+15558675310"}}),
    )
    .await;
    let url = src["inbound_url"].as_str().unwrap().to_string();
    let params: Vec<(String, String)> = [
        ("MessageSid", "SM3558804311501f712c1b4772546a80e0"),
        ("SmsMessageSid", "SM3558804311501f712c1b4772546a80e0"),
        ("AccountSid", "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
        ("From", "whatsapp:+14017122661"),
        ("To", "whatsapp:+15558675310"),
        ("Body", "Hi, is my order on its way?"),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("ProfileName", "Perspective Coffee"),
        ("WaId", "14017122661"),
        ("SmsStatus", "received"),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let post = |params: &Vec<(String, String)>, signature: String| {
        app.http
            .post(&url)
            .header("x-twilio-signature", signature)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(params).unwrap())
            .send()
    };
    let response = post(&params, twilio::signature("12345", &url, &params)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/xml");
    assert!(response.text().await.unwrap().contains("<Response></Response>"));
    let body = receiver.wait_for(1).await[0].json();
    assert_eq!(body["message"]["message_id"], "SM3558804311501f712c1b4772546a80e0");
    assert_eq!(body["message"]["text"], "Hi, is my order on its way?");
    assert_eq!(
        body["message"]["timestamp"], "2024-03-01T12:00:00+0000",
        "Twilio sends no time: receipt time"
    );
    assert_eq!(body["chat"]["chat_id"], "+14017122661");
    assert_eq!(body["chat"]["full_name"], "Perspective Coffee");
    assert_eq!(body["chat"]["can_reply"], true);
    assert_eq!(body["chat"]["reply_window_expires_at"], "2024-03-02T12:00:00+0000", "WhatsApp allows 24 h");
    assert_eq!(body["whatsapp_account"]["full_name"], "Acme WhatsApp", "the source's account");
    assert_eq!(body["channel"], "whatsapp");

    // Twilio retries: the same MessageSid is a duplicate. A forged signature stores nothing.
    post(&params, twilio::signature("12345", &url, &params)).await.unwrap();
    let mut forged = params.clone();
    forged[0].1 = "SMforged".into();
    forged[1].1 = "SMforged".into();
    let refused = post(&forged, twilio::signature("12345", &url, &params)).await.unwrap();
    assert_eq!(refused.status(), 401);
    let refused = app.http.post(&url).body("MessageSid=SMx").send().await.unwrap();
    assert_eq!(refused.status(), 401, "no signature at all");
    // A picture without words is stored too (this webhook skips media: the media test shows more).
    let media: Vec<(String, String)> = [
        ("MessageSid", "MM258c7d2face97078418bc205b8683cf2"),
        ("From", "whatsapp:+14017122661"),
        ("To", "whatsapp:+15558675310"),
        ("Body", ""),
        ("NumMedia", "1"),
        ("MediaContentType0", "image/jpeg"),
        ("MediaUrl0", "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(post(&media, twilio::signature("12345", &url, &media)).await.unwrap().status(), 200);
    // Signed, but not a message: 400, nothing stored.
    let no_sid: Vec<(String, String)> =
        vec![("From".into(), "whatsapp:+1".into()), ("Body".into(), "x".into())];
    assert_eq!(post(&no_sid, twilio::signature("12345", &url, &no_sid)).await.unwrap().status(), 400);
    assert_eq!(app.stats(&ws).await.messages, 2);
}

#[tokio::test]
async fn meta_whatsapp_handshake_signatures_receipts_and_usernames() {
    let app = TestApp::spawn().await;
    let (ws, receiver, _) = setup(&app).await;
    let src = source(
        &app,
        &ws,
        json!({"kind": "whatsapp", "name": "Cloud API", "credentials": {"app_secret": "app-secret", "verify_token": "vt-1"}}),
    )
    .await;
    let url = src["inbound_url"].as_str().unwrap().to_string();
    let challenge = app
        .http
        .get(format!("{url}?hub.mode=subscribe&hub.verify_token=vt-1&hub.challenge=1158201444"))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 200);
    assert_eq!(challenge.text().await.unwrap(), "1158201444");
    let wrong = app
        .http
        .get(format!("{url}?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);

    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234", "user_id": "US.13491208655302741918"},
                     {"profile": {"name": "Pablo M.", "username": "@pablomorales"}, "wa_id": "", "user_id": "US.99"}],
        "messages": [
            {"from": "16505551234", "from_user_id": "US.13491208655302741918", "id": "wamid.A1",
             "timestamp": "1749416383", "type": "text", "text": {"body": "Does it come in another color?"}},
            {"from": "", "from_user_id": "US.99", "id": "wamid.A2", "timestamp": "1749416390", "type": "text",
             "text": {"body": "And in blue?"}},
            {"from": "16505551234", "id": "wamid.A3", "timestamp": "1749416400", "type": "image",
             "image": {"caption": "", "mime_type": "image/jpeg", "id": "1003383421387256"}}
        ],
        "statuses": [{"id": "wamid.S1", "status": "delivered", "timestamp": "1750030073", "recipient_id": "16505551234"}]
    }}]}]});
    let raw = serde_json::to_vec(&body).unwrap();
    let signature = format!("sha256={}", hex_hmac_sha256("app-secret", &[&raw]));
    let response = app
        .http
        .post(&url)
        .header("x-hub-signature-256", &signature)
        .header("content-type", "application/json")
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = receiver.wait_for(2).await;
    let first = seen.iter().find(|r| r.message_id() == "wamid.A1").unwrap().json();
    assert_eq!(first["chat"]["chat_id"], "16505551234");
    assert_eq!(first["chat"]["phone"], "+16505551234");
    assert_eq!(first["chat"]["full_name"], "Sheena Nelson");
    assert_eq!(first["message"]["timestamp"], "2025-06-08T20:59:43+0000");
    let username = seen.iter().find(|r| r.message_id() == "wamid.A2").unwrap().json();
    assert_eq!(username["chat"]["chat_id"], "US.99", "a customer without a phone number is known by user id");
    assert!(username["chat"]["phone"].is_null());
    assert_eq!(username["chat"]["full_name"], "Pablo M.");
    assert_eq!(app.stats(&ws).await.messages, 3, "the receipt is no message; the image is stored");
    // Meta retries a notification it thinks was lost: nothing twice.
    let again =
        app.http.post(&url).header("x-hub-signature-256", &signature).body(raw.clone()).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(app.stats(&ws).await.messages, 3);

    let tampered = raw.iter().map(|b| if *b == b'?' { b'!' } else { *b }).collect::<Vec<u8>>();
    let refused =
        app.http.post(&url).header("x-hub-signature-256", &signature).body(tampered).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let good_sig = format!("sha256={}", hex_hmac_sha256("app-secret", &[b"{not json"]));
    let malformed =
        app.http.post(&url).header("x-hub-signature-256", good_sig).body("{not json").send().await.unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(app.stats(&ws).await.messages, 3);
}

fn wechat_query(token: &str, timestamp: &str, nonce: &str) -> String {
    format!("signature={}&timestamp={timestamp}&nonce={nonce}", wechat::signature(&[token, timestamp, nonce]))
}

#[tokio::test]
async fn wechat_plaintext_and_safe_mode_with_redeliveries_deduplicated() {
    let app = TestApp::spawn().await;
    let (ws, receiver, _) = setup(&app).await;
    let aes = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let src = source(
        &app,
        &ws,
        json!({"kind": "wechat", "name": "Official Account",
               "credentials": {"token": "wx-token", "app_id": "wxb11529c136998cb6", "encoding_aes_key": aes}}),
    )
    .await;
    let url = src["inbound_url"].as_str().unwrap().to_string();
    // Plaintext mode: a source without an EncodingAESKey.
    let plain = source(
        &app,
        &ws,
        json!({"kind": "wechat", "name": "Plain", "credentials": {"token": "wx-token", "app_id": "wxb11529c136998cb6"}}),
    )
    .await;
    let plain_base = plain["inbound_url"].as_str().unwrap().to_string();
    let echo = app
        .http
        .get(format!("{url}?{}&echostr=hello-echo", wechat_query("wx-token", "1709294400", "n1")))
        .send()
        .await
        .unwrap();
    assert_eq!(echo.text().await.unwrap(), "hello-echo");
    let bad = app.http.get(format!("{url}?signature=00&timestamp=1&nonce=2&echostr=x")).send().await.unwrap();
    assert_eq!(bad.status(), 401);

    let text = "<xml><ToUserName><![CDATA[gh_866835093fea]]></ToUserName>\
        <FromUserName><![CDATA[ogdotwSc_MmEEsJs9-ABZ1QL_4r4]]></FromUserName><CreateTime>1478317060</CreateTime>\
        <MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content><MsgId>6349323426230210995</MsgId></xml>";
    // A source in safe mode takes nothing unencrypted.
    let unencrypted = format!("{url}?{}", wechat_query("wx-token", "1709294401", "n2"));
    assert_eq!(app.http.post(&unencrypted).body(text).send().await.unwrap().status(), 401);
    assert_eq!(app.stats(&ws).await.messages, 0);
    let plain_url = format!("{plain_base}?{}", wechat_query("wx-token", "1709294401", "n2"));
    for _ in 0..2 {
        // WeChat redelivers when an answer is slow: the second is a duplicate.
        let answer = app.http.post(&plain_url).body(text).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), "success");
    }
    let body = receiver.wait_for(1).await[0].json();
    assert_eq!(body["message"]["text"], "你好");
    assert_eq!(body["chat"]["chat_id"], "ogdotwSc_MmEEsJs9-ABZ1QL_4r4");
    assert_eq!(body["message"]["timestamp"], "2016-11-05T03:37:40+0000");
    assert_eq!(body["chat"]["reply_window_expires_at"], "2016-11-07T03:37:40+0000", "WeChat allows 48 h");

    // Safe mode: encrypted, signed with msg_signature, for our app id.
    let key = chatbundle::domain::credentials::wechat::aes_key(aes).unwrap();
    let inner = text.replace("你好", "加密的消息").replace("6349323426230210995", "6349323426230210996");
    let encrypted = wechat::encrypt(&key, "wxb11529c136998cb6", b"0123456789abcdef", &inner);
    let envelope = format!(
        "<xml><ToUserName><![CDATA[gh_866835093fea]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    );
    let msg_signature = wechat::signature(&["wx-token", "1709294402", "n3", &encrypted]);
    let safe_url = format!(
        "{url}?{}&encrypt_type=aes&msg_signature={msg_signature}",
        wechat_query("wx-token", "1709294402", "n3")
    );
    assert_eq!(app.http.post(&safe_url).body(envelope.clone()).send().await.unwrap().status(), 200);
    let seen = receiver.wait_for(2).await;
    assert_eq!(seen[1].json()["message"]["text"], "加密的消息");

    // Another app's message, a bad msg_signature, an event and an image.
    let foreign = wechat::encrypt(&key, "wx_someone_else", b"0123456789abcdef", &inner.replace("996", "997"));
    let foreign_sig = wechat::signature(&["wx-token", "1709294402", "n3", &foreign]);
    let foreign_url = format!(
        "{url}?{}&encrypt_type=aes&msg_signature={foreign_sig}",
        wechat_query("wx-token", "1709294402", "n3")
    );
    let envelope_foreign = format!("<xml><Encrypt><![CDATA[{foreign}]]></Encrypt></xml>");
    assert_eq!(app.http.post(&foreign_url).body(envelope_foreign).send().await.unwrap().status(), 401);
    let wrong_sig = safe_url.replace(&msg_signature, "0000");
    assert_eq!(app.http.post(&wrong_sig).body(envelope).send().await.unwrap().status(), 401);
    let event = "<xml><ToUserName><![CDATA[gh_b629c48b653e]]></ToUserName><FromUserName><![CDATA[ollB4jv7LA3tydjviJp5V9qTU_kA]]></FromUserName>\
        <CreateTime>1372307736</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey></xml>";
    let signed = |nonce: &str| format!("{plain_base}?{}", wechat_query("wx-token", "1709294403", nonce));
    assert_eq!(
        app.http.post(signed("n4")).body(event).send().await.unwrap().text().await.unwrap(),
        "success"
    );
    assert_eq!(app.http.post(signed("n5")).body("<xml><MsgType>").send().await.unwrap().status(), 400);
    assert_eq!(app.stats(&ws).await.messages, 2);
}

fn chatwoot_message(id: u64, kind: &str, content: &str, private: bool) -> Value {
    json!({"event": "message_created", "id": id, "content": content, "created_at": "2025-05-15T19:11:08.000Z",
           "message_type": kind, "content_type": "text", "private": private, "source_id": "wamid.HBgL",
           "sender": if kind == "incoming" { json!({"id": 14, "name": "Li Wei", "phone_number": "+8613800138000"}) }
                     else { json!({"id": 1, "name": "John", "available_name": "John", "type": "user"}) },
           "inbox": {"id": 3, "name": "WhatsApp Support"},
           "conversation": {"id": 207, "inbox_id": 3, "channel": "Channel::Whatsapp", "status": "open",
               "meta": {"sender": {"id": 14, "name": "Li Wei", "phone_number": "+8613800138000", "type": "contact"},
                        "assignee": null}},
           "account": {"id": 1, "name": "Acme Inc"}})
}

#[tokio::test]
async fn chatwoot_messages_and_sessions_with_signatures_and_replays() {
    let app = TestApp::spawn().await;
    let (ws, receiver, sessions) = setup(&app).await;
    let src = source(
        &app,
        &ws,
        json!({"kind": "chatwoot", "name": "Chatwoot", "credentials": {"secret": "cw-secret"}}),
    )
    .await;
    let url = src["inbound_url"].as_str().unwrap().to_string();
    let now = start_time().timestamp().to_string();
    let send = |body: Value, timestamp: String, secret: &'static str| {
        let raw = serde_json::to_vec(&body).unwrap();
        let signature = format!("sha256={}", hex_hmac_sha256(secret, &[timestamp.as_bytes(), b".", &raw]));
        app.http
            .post(&url)
            .header("x-chatwoot-signature", signature)
            .header("x-chatwoot-timestamp", timestamp)
            .header("x-chatwoot-delivery", "8e9a1c3e")
            .header("content-type", "application/json")
            .body(raw)
            .send()
    };
    for body in [
        chatwoot_message(118, "incoming", "Hi, is my order shipped?", false),
        chatwoot_message(119, "outgoing", "Yes, this morning.", false),
        chatwoot_message(120, "outgoing", "internal: check the warehouse", true),
        chatwoot_message(121, "activity", "Conversation was assigned to John", false),
    ] {
        assert_eq!(send(body, now.clone(), "cw-secret").await.unwrap().status(), 200);
    }
    let seen = receiver.wait_for(2).await;
    let (received, sent) = (seen[0].json(), seen[1].json());
    assert_eq!(received["message"]["direction"], "received");
    assert_eq!(received["message"]["sender"]["full_name"], "Li Wei");
    assert_eq!(received["chat"]["chat_id"], "207");
    assert_eq!(received["chat"]["phone"], "+8613800138000");
    assert_eq!(received["message"]["timestamp"], "2025-05-15T19:11:08+0000");
    assert_eq!(sent["message"]["direction"], "sent");
    assert_eq!(sent["message"]["sender"]["full_name"], "John");
    assert_eq!(sent["message"]["recipient"]["full_name"], "Li Wei");
    assert_eq!(app.stats(&ws).await.messages, 2, "the private note and the activity line are skipped");

    // Edits do nothing; a forged, stale or unsigned request stores nothing.
    let mut edited = chatwoot_message(118, "incoming", "edited", false);
    edited["event"] = json!("message_updated");
    assert_eq!(send(edited, now.clone(), "cw-secret").await.unwrap().status(), 200);
    let forged =
        send(chatwoot_message(130, "incoming", "forged", false), now.clone(), "wrong").await.unwrap();
    assert_eq!(forged.status(), 401);
    let stale = (start_time().timestamp() - 3600).to_string();
    assert_eq!(
        send(chatwoot_message(131, "incoming", "replayed", false), stale, "cw-secret")
            .await
            .unwrap()
            .status(),
        401
    );
    let unsigned =
        app.http.post(&url).json(&chatwoot_message(132, "incoming", "x", false)).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    assert_eq!(app.stats(&ws).await.messages, 2);

    // The conversation is resolved: a session event, in Zoho's IM_Session_Status shape.
    let resolved = json!({"event": "conversation_status_changed", "id": 207, "inbox_id": 3, "channel": "Channel::Whatsapp",
        "status": "resolved",
        "meta": {"sender": {"id": 14, "name": "Li Wei", "phone_number": "+8613800138000", "type": "contact"},
                 "assignee": {"id": 1, "name": "John", "available_name": "John", "email": "john@acme.example", "type": "user"}},
        "changed_attributes": [{"status": {"previous_value": "open", "current_value": "resolved"}}]});
    assert_eq!(send(resolved, now.clone(), "cw-secret").await.unwrap().status(), 200);
    let events: Vec<Value> = sessions.wait_for(3).await.iter().map(Received::json).collect();
    let created = &events[0][0];
    assert_eq!(created["eventType"], "IM_Session_Status");
    assert_eq!(created["payload"]["sessionStatus"], "CREATED");
    // The agent's answer put the session in progress.
    let answered = &events[1][0];
    assert_eq!(
        (answered["payload"]["sessionOldStatus"].as_str(), answered["payload"]["sessionStatus"].as_str()),
        (Some("CREATED"), Some("ON_PROGRESS"))
    );
    let ended = &events[2][0];
    assert_eq!(ended["payload"]["sessionStatus"], "ENDED");
    assert_eq!(ended["payload"]["sessionOldStatus"], "ON_PROGRESS");
    assert_eq!(ended["payload"]["replyStatus"], "SESSION_ENDED");
    assert_eq!(ended["payload"]["sessionId"], "207");
    assert_eq!(ended["payload"]["currentAssigneeId"], "john@acme.example");
    assert_eq!(ended["payload"]["assigneeType"], "AGENT");
    assert_eq!(ended["payload"]["messagesCount"], "2");
    assert_eq!(ended["payload"]["channelId"], "3", "Chatwoot's inbox: the channel's own id");
    let inbound = src["inbound_url"].as_str().unwrap();
    let secret_parts = [src["id"].as_str().unwrap(), inbound.rsplit('/').next().unwrap()];
    for event in &events {
        let text = event.to_string();
        assert!(secret_parts.iter().all(|s| !text.contains(s)), "no source id or inbound key in {text}");
    }
    assert_eq!(ended["orgId"], ws.id.as_str());
    assert!(ended["eventTime"].as_str().unwrap().parse::<i64>().is_ok());
    assert_eq!(ended["chat"]["can_reply"], false);

    // The customer writes again: a new session; the agent answers it.
    for body in [
        chatwoot_message(140, "incoming", "One more question", false),
        chatwoot_message(141, "outgoing", "Sure, go ahead.", false),
    ] {
        assert_eq!(send(body, now.clone(), "cw-secret").await.unwrap().status(), 200);
    }
    let events: Vec<Value> = sessions.wait_for(5).await.iter().map(Received::json).collect();
    let moved = |e: &Value| {
        (
            e[0]["payload"]["sessionOldStatus"].as_str().map(String::from),
            e[0]["payload"]["sessionStatus"].as_str().map(String::from),
        )
    };
    assert_eq!(moved(&events[3]), (Some("ENDED".into()), Some("CREATED".into())));
    assert_eq!(events[3][0]["payload"]["replyStatus"], "ACCEPTED", "a new session can be answered");
    assert_eq!(moved(&events[4]), (Some("CREATED".into()), Some("ON_PROGRESS".into())));
    let chats: Value = app
        .admin(Method::GET, &format!("/api/v1/workspaces/{}/chats", ws.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let history = app
        .admin(Method::GET, &format!("/api/v1/chats/{}/sessions", chats["chats"][0]["id"]))
        .send()
        .await
        .unwrap();
    assert_eq!(history.status(), 200);
    let history: Value = history.json().await.unwrap();
    let steps: Vec<(Value, Value, Value, Value)> = history["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["from"].clone(), t["to"].clone(), t["cause"].clone(), t["source"].clone()))
        .collect();
    let source = src["id"].clone();
    assert_eq!(
        steps,
        [
            (Value::Null, json!("CREATED"), json!("message"), source.clone()),
            (json!("CREATED"), json!("ON_PROGRESS"), json!("reply"), source.clone()),
            (json!("ON_PROGRESS"), json!("ENDED"), json!("reported"), source.clone()),
            (json!("ENDED"), json!("CREATED"), json!("message"), source.clone()),
            (json!("CREATED"), json!("ON_PROGRESS"), json!("reply"), source),
        ]
    );
    assert_eq!(history["session_status"], "ON_PROGRESS");
    assert_eq!(history["transitions"][2]["reply_status"], Value::Null, "Chatwoot reports none");
    let missing = app.admin(Method::GET, "/api/v1/chats/999999/sessions").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let chat_view = app
        .admin(Method::GET, &format!("/api/v1/workspaces/{}/stats", ws.id))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(chat_view["chats"], 1);
}

#[tokio::test]
async fn zoho_desk_validation_messages_and_session_statuses() {
    let app = TestApp::spawn().await;
    let (ws, receiver, sessions) = setup(&app).await;
    let src = source(&app, &ws, json!({"kind": "zoho_desk", "name": "Zoho Desk"})).await;
    let url = src["inbound_url"].as_str().unwrap().to_string();
    assert_eq!(app.http.get(&url).send().await.unwrap().status(), 200, "Zoho's URL check");
    let events = json!([
        {"payload": {"actor": {"contactId": "186543000000451259", "name": "Kamal Nayan", "externalId": "+919878765654", "type": "ENDUSER"},
                     "messageType": "TEXT", "meta": {"DESK_TICKET_ID": "186543000001543003", "DESK_TICKET_NUMBER": "434"},
                     "integration": "WHATSAPP", "createdTime": "1710293987000", "sessionId": "3942000001025025",
                     "id": "3942000001321149", "text": "This is Zykler Cares. I have some issues with my phone",
                     "channelId": "3942000000995017", "direction": "IN", "status": "SAVED"},
         "eventTime": "1710313788286", "eventType": "IM_Message_Add", "orgId": "78412359"},
        {"payload": {"currentAssigneeId": "106554156", "sessionStatus": "ON_PROGRESS", "replyStatus": "ACCEPTED",
                     "sessionOldStatus": "OPEN", "sessionId": "3942000001025025", "messagesCount": "1",
                     "assigneeType": "AGENT", "channelId": "3942000000995017"},
         "eventTime": "1710313788290", "eventType": "IM_Session_Status", "orgId": "78412359"},
        {"payload": {"messageOldStatus": "SENT", "messageNewStatus": {"updatedTime": "2025-10-09T07:27:19.394Z", "status": "DELIVERED"},
                     "messageId": 50007000000006017_u64, "sessionId": 3942000001025025_u64, "channelId": 3942000000995017_u64},
         "eventTime": "1751022087019", "eventType": "IM_Message_Status", "orgId": "106553778"}
    ]);
    let response = app.http.post(&url).json(&events).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body = receiver.wait_for(1).await[0].json();
    assert_eq!(body["message"]["message_id"], "3942000001321149");
    assert_eq!(body["message"]["direction"], "received");
    assert_eq!(body["message"]["sender"]["full_name"], "Kamal Nayan");
    assert_eq!(body["message"]["timestamp"], "2024-03-13T01:39:47+0000");
    assert_eq!(body["chat"]["chat_id"], "3942000001025025");
    assert_eq!(body["channel"], "whatsapp");
    let statuses: Vec<Value> = sessions.wait_for(2).await.iter().map(Received::json).collect();
    // What Zoho said goes out as it said it, not as chatbundle would have derived it.
    let event = &statuses[1][0];
    assert_eq!(event["payload"]["sessionStatus"], "ON_PROGRESS");
    assert_eq!(event["payload"]["sessionOldStatus"], "OPEN", "Zoho's old status, not chatbundle's CREATED");
    assert_eq!(event["payload"]["currentAssigneeId"], "106554156");
    assert_eq!(event["payload"]["messagesCount"], "1");
    assert_eq!(event["payload"]["channelId"], "3942000000995017");
    assert_eq!(
        (event["orgId"].as_str(), event["eventTime"].as_str()),
        (Some("78412359"), Some("1710313788290"))
    );
    // Same status, but Zoho says the credit is exhausted: that is the alert, passed on as such.
    // Then another agent takes the chat (an assignment alone is news), then a status chatbundle
    // does not know, passed through as sent.
    let session = |status: &str, reply: &str, assignee: &str, time: &str| {
        json!([{"payload": {"currentAssigneeId": assignee, "sessionStatus": status, "replyStatus": reply,
                            "sessionId": "3942000001025025", "assigneeType": "AGENT", "channelId": "3942000000995017"},
                "eventTime": time, "eventType": "IM_Session_Status", "orgId": "78412359"}])
    };
    for body in [
        session("ON_PROGRESS", "CREDIT_EXHAUSTED", "106554156", "1710313790000"),
        session("ON_PROGRESS", "ACCEPTED", "106554999", "1710313791000"),
        session("ESCALATED", "ACCEPTED", "106554999", "1710313792000"),
    ] {
        assert_eq!(app.http.post(&url).json(&body).send().await.unwrap().status(), 200);
    }
    let statuses: Vec<Value> = sessions.wait_for(5).await.iter().map(Received::json).collect();
    assert_eq!(statuses[2][0]["payload"]["replyStatus"], "CREDIT_EXHAUSTED");
    assert_eq!(statuses[3][0]["payload"]["currentAssigneeId"], "106554999");
    assert_eq!(statuses[4][0]["payload"]["sessionStatus"], "ESCALATED");
    // A retry of the same assignment is no news: the next event out is the one after it.
    let retry = session("ESCALATED", "ACCEPTED", "106554999", "1710313792000");
    assert_eq!(app.http.post(&url).json(&retry).send().await.unwrap().status(), 200);
    let ended = session("ENDED", "SESSION_ENDED", "106554999", "1710313793000");
    assert_eq!(app.http.post(&url).json(&ended).send().await.unwrap().status(), 200);
    let statuses: Vec<Value> = sessions.wait_for(6).await.iter().map(Received::json).collect();
    assert_eq!(statuses[5][0]["payload"]["sessionStatus"], "ENDED", "the retry made no event");
    // The assignee is an id: kept as the chat's responsible_id, never as a name.
    let chats = app.admin(Method::GET, &format!("/api/v1/workspaces/{}/chats", ws.id)).send().await.unwrap();
    let chats: Value = chats.json().await.unwrap();
    let chat_path = format!("/api/v1/chats/{}", chats["chats"][0]["id"]);
    let chat: Value = app.admin(Method::GET, &chat_path).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (chat["responsible_id"].as_str(), chat["responsible_name"].as_str()),
        (Some("106554999"), None)
    );
    // Zoho's own words in the history: its statuses (one it has not documented too) with its
    // reply status; the assignment and the credit alert moved no status.
    let history: Value =
        app.admin(Method::GET, &format!("{chat_path}/sessions")).send().await.unwrap().json().await.unwrap();
    let steps: Vec<String> = history["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!("{}>{} {} {}", t["from"].as_str().unwrap_or("-"), t["to"], t["cause"], t["reply_status"])
        })
        .collect();
    assert_eq!(
        steps,
        [
            "->\"CREATED\" \"message\" null",
            "CREATED>\"ON_PROGRESS\" \"reported\" \"ACCEPTED\"",
            "ON_PROGRESS>\"ESCALATED\" \"reported\" \"ACCEPTED\"",
            "ESCALATED>\"ENDED\" \"reported\" \"SESSION_ENDED\"",
        ]
    );
    // An admin names the owner; the id stays.
    let named = app
        .admin(Method::PATCH, &chat_path)
        .json(&json!({"responsible_name": "Asha Rao", "responsible_email": "asha@zylker.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(named.status(), 200);
    let named: Value = named.json().await.unwrap();
    assert_eq!(
        (
            named["responsible_name"].as_str(),
            named["responsible_email"].as_str(),
            named["responsible_id"].as_str()
        ),
        (Some("Asha Rao"), Some("asha@zylker.example"), Some("106554999"))
    );
    assert_eq!(app.http.post(&url).body("[{\"eventType\":").send().await.unwrap().status(), 400);
    let missing_id = json!([{"eventType": "IM_Message_Add", "payload": {"sessionId": "1", "direction": "IN", "text": "x"}}]);
    assert_eq!(app.http.post(&url).json(&missing_id).send().await.unwrap().status(), 400);
    assert_eq!(app.stats(&ws).await.messages, 1);
}

#[tokio::test]
async fn unknown_disabled_and_mismatched_sources_are_404_and_deleting_keeps_chats() {
    let app = TestApp::spawn().await;
    let (ws, _receiver, _) = setup(&app).await;
    let src = source(&app, &ws, json!({"kind": "zoho_desk", "name": "Zoho Desk"})).await;
    let id = src["id"].as_str().unwrap();
    let url = src["inbound_url"].as_str().unwrap().to_string();
    let event = |n: u32| json!([{"eventType": "IM_Message_Add", "payload": {"id": format!("m-{n}"), "sessionId": "s-1", "direction": "IN", "text": "hello"}}]);
    assert_eq!(app.http.post(&url).json(&event(1)).send().await.unwrap().status(), 200);
    assert_eq!(
        app.http.post(app.url("/hooks/zoho-desk/src_unknown")).json(&event(2)).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        app.http
            .post(url.replace("/hooks/zoho-desk/", "/hooks/chatwoot/"))
            .json(&event(3))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let source_path = format!("/api/v1/workspaces/{}/sources/{id}", ws.id);
    let off: Value = app
        .admin(Method::PATCH, &source_path)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(off["enabled"], false);
    assert_eq!(app.http.post(&url).json(&event(4)).send().await.unwrap().status(), 404, "switched off");
    app.admin(Method::PATCH, &source_path).json(&json!({"enabled": true})).send().await.unwrap();
    assert_eq!(app.http.post(&url).json(&event(5)).send().await.unwrap().status(), 200, "and on again");
    assert_eq!(app.stats(&ws).await.messages, 2);
    assert_eq!(app.admin(Method::DELETE, &source_path).send().await.unwrap().status(), 204);
    assert_eq!(app.http.post(&url).json(&event(6)).send().await.unwrap().status(), 404);
    let stats = app.stats(&ws).await;
    assert_eq!((stats.chats, stats.messages), (1, 2), "a deleted source's chats and messages stay");
}

#[tokio::test]
async fn a_lapsed_reply_window_is_announced_even_across_a_restart() {
    let app = TestApp::spawn().await;
    let (ws, receiver, sessions) = setup(&app).await;
    let src = source(
        &app,
        &ws,
        json!({"kind": "twilio", "name": "Twilio", "credentials": {"auth_token": "12345"}}),
    )
    .await;
    let url = src["inbound_url"].as_str().unwrap().to_string();
    let params: Vec<(String, String)> = [
        ("MessageSid", "SM1"),
        ("From", "whatsapp:+14017122661"),
        ("To", "whatsapp:+15558675310"),
        ("Body", "Hello"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let response = app
        .http
        .post(&url)
        .header("x-twilio-signature", twilio::signature("12345", &url, &params))
        .body(serde_urlencoded::to_string(&params).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    receiver.wait_for(1).await;
    let created = sessions.wait_for(1).await[0].json();
    assert_eq!(created[0]["payload"]["sessionStatus"], "CREATED");
    app.delivered(&ws, 2).await;

    // The daemon stops before the window lapses and comes back after.
    let config = app.config.clone();
    let (dir, clock) = app.stop().await;
    clock.advance(Duration::from_secs(25 * 3600));
    let app = TestApp::spawn_with(dir, config, clock).await;
    let events = sessions.wait_for(2).await;
    let expired = events[1].json();
    assert_eq!(expired[0]["payload"]["replyStatus"], "SESSION_EXPIRED");
    assert_eq!(expired[0]["chat"]["can_reply"], false);
    app.closer_settled().await;
    assert_eq!(sessions.received().len(), 2, "announced once");
}

#[tokio::test]
async fn a_source_set_to_one_account_refuses_requests_for_another() {
    let app = TestApp::spawn().await;
    let (ws, receiver, _) = setup(&app).await;

    // Twilio: the AccountSid of a signed request must be the source's account_sid.
    let twilio_source = source(
        &app,
        &ws,
        json!({"kind": "twilio", "name": "Twilio",
               "credentials": {"auth_token": "12345", "account_sid": "AC00000000000000000000000000000001"}}),
    )
    .await;
    let url = twilio_source["inbound_url"].as_str().unwrap().to_string();
    let message = |sid: &str, account: &str| {
        form(&[
            ("MessageSid", sid),
            ("AccountSid", account),
            ("From", "whatsapp:+14017122661"),
            ("Body", "Hi"),
        ])
    };
    let other = post_twilio(&app, &url, &message("SMother", "AC00000000000000000000000000000002")).await;
    assert_eq!(other.status(), 403);
    let error: Value = other.json().await.unwrap();
    assert_eq!(
        (error["error"]["code"].as_str(), error["error"]["field"].as_str()),
        (Some("wrong_account"), Some("AccountSid"))
    );
    let none = post_twilio(&app, &url, &form(&[("MessageSid", "SMnone"), ("Body", "Hi")])).await;
    assert_eq!(none.status(), 403, "no AccountSid at all is not this account either");
    assert_eq!(app.stats(&ws).await.messages, 0, "nothing stored");
    assert_eq!(
        post_twilio(&app, &url, &message("SMours", "AC00000000000000000000000000000001")).await.status(),
        200
    );
    assert_eq!(receiver.wait_for(1).await[0].json()["message"]["message_id"], "SMours");

    // WeChat: the ToUserName of a push must be the source's original_id.
    let wechat_source = source(
        &app,
        &ws,
        json!({"kind": "wechat", "name": "Official Account",
               "credentials": {"token": "wx-token", "app_id": "wxb11529c136998cb6", "original_id": "gh_866835093fea"}}),
    )
    .await;
    let url = wechat_source["inbound_url"].as_str().unwrap().to_string();
    let push = |to: &str, id: &str| {
        format!(
            "<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[ogdotwSc_MmEEsJs9-ABZ1QL_4r4]]></FromUserName>\
             <CreateTime>1709294400</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content><MsgId>{id}</MsgId></xml>"
        )
    };
    let signed =
        |timestamp: &str, nonce: &str| format!("{url}?{}", wechat_query("wx-token", timestamp, nonce));
    let foreign =
        app.http.post(signed("1709294400", "a1")).body(push("gh_someone_else", "1")).send().await.unwrap();
    assert_eq!(foreign.status(), 403);
    let error: Value = foreign.json().await.unwrap();
    assert_eq!(error["error"]["field"], "ToUserName");
    // A plaintext push signed more than five minutes ago is a replay, whatever it carries.
    let stale =
        app.http.post(signed("1709294099", "a2")).body(push("gh_866835093fea", "2")).send().await.unwrap();
    assert_eq!(stale.status(), 401);
    assert_eq!(app.stats(&ws).await.messages, 1, "nothing more stored");
    let ours =
        app.http.post(signed("1709294400", "a3")).body(push("gh_866835093fea", "3")).send().await.unwrap();
    assert_eq!(ours.status(), 200);
    assert_eq!(receiver.wait_for(2).await[1].json()["message"]["text"], "你好");
}

#[tokio::test]
async fn meta_echoes_of_what_the_business_app_sent_are_sent_messages_of_the_same_chat() {
    let app = TestApp::spawn().await;
    let (ws, receiver, _) = setup(&app).await;
    let src = source(
        &app,
        &ws,
        json!({"kind": "whatsapp", "name": "Cloud API", "credentials": {"app_secret": "app-secret", "verify_token": "vt-1"}}),
    )
    .await;
    let url = src["inbound_url"].as_str().unwrap().to_string();
    let metadata = json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"});
    let customer = json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": metadata,
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
        "messages": [{"from": "16505551234", "id": "wamid.IN1", "timestamp": "1749416383", "type": "text",
                      "text": {"body": "Does it come in another color?"}}]
    }}]}]});
    assert_eq!(post_meta(&app, &url, &customer).await.status(), 200);
    // The owner answers from the WhatsApp Business app on the same number (coexistence).
    let echo = json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "smb_message_echoes", "value": {
        "messaging_product": "whatsapp", "metadata": metadata,
        "message_echoes": [
            {"from": "15550783881", "to": "16505551234", "id": "wamid.OUT1", "timestamp": "1749416450",
             "type": "text", "text": {"body": "Yes, in blue and in red."}},
            {"from": "15550783881", "to": "16505551234", "id": "wamid.OUT2", "timestamp": "1749416460",
             "type": "image", "image": {"id": "1003383421387257", "mime_type": "image/jpeg"}}
        ]
    }}]}]});
    assert_eq!(post_meta(&app, &url, &echo).await.status(), 200);
    let seen = receiver.wait_for(2).await;
    let sent = seen.iter().find(|r| r.message_id() == "wamid.OUT1").unwrap().json();
    assert_eq!(sent["message"]["direction"], "sent");
    assert_eq!(sent["message"]["text"], "Yes, in blue and in red.");
    assert_eq!(sent["message"]["timestamp"], "2025-06-08T21:00:50+0000");
    assert_eq!(sent["chat"]["chat_id"], "16505551234", "the customer's chat, not the business's");
    assert_eq!(sent["chat"]["full_name"], "Sheena Nelson", "the name the customer's message gave is kept");
    // The echo names only the business's number: the sender's name is the workspace's account's.
    assert_eq!(sent["message"]["sender"]["full_name"], "Amnon Haha", "{sent}");
    assert_eq!(sent["message"]["sender"]["phone"], "+15550783881");
    let received = seen.iter().find(|r| r.message_id() == "wamid.IN1").unwrap().json();
    assert_eq!(received["chat"]["chat_id"], sent["chat"]["chat_id"]);
    // The picture is stored (a webhook that skips media does not get it); an echo Meta repeats
    // is a duplicate.
    assert_eq!(post_meta(&app, &url, &echo).await.status(), 200);
    assert_eq!(app.stats(&ws).await.messages, 3);
    let no_recipient = json!({"entry": [{"changes": [{"field": "smb_message_echoes", "value": {
        "message_echoes": [{"from": "15550783881", "id": "wamid.OUT3", "type": "text", "text": {"body": "x"}}]
    }}]}]});
    assert_eq!(post_meta(&app, &url, &no_recipient).await.status(), 400, "an echo must say whom it went to");
    assert_eq!(app.stats(&ws).await.messages, 3);
}

#[tokio::test]
async fn replies_sent_through_other_tools_join_the_channels_conversation() {
    let app = TestApp::spawn().await;
    let (ws, receiver, _) = setup(&app).await;
    let src = source(
        &app,
        &ws,
        json!({"kind": "twilio", "name": "Twilio", "credentials": {"auth_token": "12345"},
               "account": {"full_name": "Acme WhatsApp"}}),
    )
    .await;
    let url = src["inbound_url"].as_str().unwrap().to_string();
    let params =
        form(&[("MessageSid", "SMin1"), ("From", "whatsapp:+14017122661"), ("Body", "Where is my order?")]);
    let customer = post_twilio(&app, &url, &params).await;
    assert_eq!(customer.status(), 200);
    // The tool that answered through Twilio's API posts its reply, naming the source.
    let reply = json!({"message_id": "SMout1", "direction": "sent", "text": "It ships today.",
                       "chat": {"id": "+14017122661"}});
    let path = format!("/api/v1/workspaces/{}/messages?source_id={}", ws.id, src["id"].as_str().unwrap());
    let posted = app.http.post(app.url(&path)).bearer_auth(&ws.ingest_key).json(&reply).send().await.unwrap();
    assert_eq!(posted.status(), 202);
    let seen = receiver.wait_for(2).await;
    let (inbound, outbound) = (seen[0].json(), seen[1].json());
    assert_eq!(outbound["message"]["direction"], "sent");
    assert_eq!(outbound["chat"]["chat_id"], inbound["chat"]["chat_id"], "the same conversation");
    assert_eq!(outbound["channel"], "whatsapp", "the source's channel, not the API's");
    assert_eq!(outbound["whatsapp_account"]["full_name"], "Acme WhatsApp", "the source's account");
    // The reply names no sender: it is the source's account, in the payload as in the transcript.
    assert_eq!(outbound["message"]["sender"]["full_name"], "Acme WhatsApp", "{outbound}");
    let transcript = app.http.get(outbound["chat"]["chat_url"].as_str().unwrap()).send().await.unwrap();
    let page = transcript.text().await.unwrap();
    assert!(page.contains("Acme WhatsApp") && !page.contains(">unknown<"), "{page}");
    assert_eq!(app.stats(&ws).await.chats, 1);

    // Another workspace's source, or none, is refused naming the parameter; nothing is stored.
    let other = app.workspace().await;
    let foreign = source(&app, &other, json!({"kind": "zoho_desk", "name": "Z"})).await;
    // (One that cannot be an id, a NUL in it, is no store error either, PostgreSQL included.)
    for id in [foreign["id"].as_str().unwrap(), "src_nope", "F%F2%A1%85%83%00%1C"] {
        let path = format!("/api/v1/workspaces/{}/messages?source_id={id}", ws.id);
        let refused =
            app.http.post(app.url(&path)).bearer_auth(&ws.ingest_key).json(&reply).send().await.unwrap();
        assert_eq!(refused.status(), 400);
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["field"], "source_id");
    }
    let hook = app.http.post(app.url("/hooks/twilio/src_%00x")).form(&params).send().await.unwrap();
    assert_eq!(hook.status(), 404);
    assert_eq!(app.stats(&ws).await.messages, 2);
}

/// The seed's WeChat limits: replies are free for 48 hours after the customer's message; after
/// that a service account may send 4 messages a month (by WeChat's clock, China time), and the
/// chat says what is left in `replies_left`, `can_reply` and `reply_status`.
#[tokio::test]
async fn a_wechat_service_account_may_send_four_messages_a_month_after_the_48_hour_window() {
    let app = TestApp::spawn().await;
    let (ws, receiver, sessions) = setup(&app).await;
    let sources = format!("/api/v1/workspaces/{}/sources", ws.id);
    let wrong = app
        .admin(Method::POST, &sources)
        .json(&json!({"kind": "wechat", "name": "OA", "credentials": {"token": "t", "account_type": "personal"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let wrong: Value = wrong.json().await.unwrap();
    assert_eq!(wrong["error"]["field"], "credentials.account_type");
    let src = source(
        &app,
        &ws,
        json!({"kind": "wechat", "name": "Service Account",
               "credentials": {"token": "wx-token", "app_id": "wxb11529c136998cb6", "account_type": "service"}}),
    )
    .await;
    assert_eq!(src["account_type"], "service");
    let url = src["inbound_url"].as_str().unwrap().to_string();
    let push = "<xml><ToUserName><![CDATA[gh_866835093fea]]></ToUserName>\
        <FromUserName><![CDATA[ogdotwSc_MmEEsJs9-ABZ1QL_4r4]]></FromUserName><CreateTime>1709294400</CreateTime>\
        <MsgType><![CDATA[text]]></MsgType><Content><![CDATA[请问什么时候发货?]]></Content><MsgId>6349323426230210995</MsgId></xml>";
    let signed = format!("{url}?{}", wechat_query("wx-token", "1709294400", "n1"));
    assert_eq!(app.http.post(&signed).body(push).send().await.unwrap().status(), 200);
    receiver.wait_for(1).await;
    let chats: Value = app
        .admin(Method::GET, &format!("/api/v1/workspaces/{}/chats", ws.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat_path = format!("/api/v1/chats/{}", chats["chats"][0]["id"]);
    let reply = || async {
        let chat: Value = app.admin(Method::GET, &chat_path).send().await.unwrap().json().await.unwrap();
        (chat["reply_status"].clone(), chat["can_reply"].clone(), chat["replies_left"].clone())
    };
    assert_eq!(reply().await, (json!("ACCEPTED"), json!(true), Value::Null), "within 48 hours: no limit");

    // 49 hours on, the window has lapsed: the lapse is announced, and 4 messages remain. (First
    // the message and the CREATED event are recorded as delivered: a jump past their leases
    // would hand them out again.)
    sessions.wait_for(1).await;
    app.delivered(&ws, 2).await;
    app.set_time("2024-03-03T13:00:00Z");
    assert_eq!(reply().await, (json!("ACCEPTED"), json!(true), json!(4)));
    let lapse = sessions.wait_for(2).await[1].json();
    assert_eq!(lapse[0]["payload"]["replyStatus"], "SESSION_EXPIRED", "the free window is over");
    let chat = &lapse[0]["chat"];
    assert_eq!(
        (chat["can_reply"].clone(), chat["replies_left"].clone()),
        (json!(true), json!(4)),
        "4 may still go"
    );

    // The tool that answers through WeChat's API files its messages through the JSON API.
    let path = format!("/api/v1/workspaces/{}/messages?source_id={}", ws.id, src["id"].as_str().unwrap());
    for n in 1..=4 {
        let sent = json!({"message_id": format!("out-{n}"), "direction": "sent", "text": format!("Update {n}"),
                          "timestamp": format!("2024-03-03T13:0{n}:00Z"),
                          "chat": {"id": "ogdotwSc_MmEEsJs9-ABZ1QL_4r4"}});
        let posted =
            app.http.post(app.url(&path)).bearer_auth(&ws.ingest_key).json(&sent).send().await.unwrap();
        assert_eq!(posted.status(), 202);
    }
    let seen = receiver.wait_for(5).await;
    let chat_of = |id: &str| seen.iter().find(|r| r.message_id() == id).unwrap().json()["chat"].clone();
    assert_eq!(
        (chat_of("out-1")["replies_left"].clone(), chat_of("out-1")["can_reply"].clone()),
        (json!(3), json!(true))
    );
    let last = chat_of("out-4");
    assert_eq!(
        (last["reply_status"].clone(), last["can_reply"].clone(), last["replies_left"].clone()),
        (json!("OUTGOING_LIMIT_REACHED"), json!(false), json!(0))
    );
    assert_eq!(reply().await, (json!("OUTGOING_LIMIT_REACHED"), json!(false), json!(0)));
    // Session webhooks hear of it once: CREATED, the lapse, the answer (ON_PROGRESS), the limit.
    let events: Vec<Value> = sessions.wait_for(4).await.iter().map(Received::json).collect();
    let replies: Vec<&str> =
        events.iter().map(|e| e[0]["payload"]["replyStatus"].as_str().unwrap()).collect();
    assert_eq!(replies.iter().filter(|r| **r == "OUTGOING_LIMIT_REACHED").count(), 1, "{replies:?}");
    let limit = events.iter().find(|e| e[0]["payload"]["replyStatus"] == "OUTGOING_LIMIT_REACHED").unwrap();
    assert_eq!(
        (limit[0]["chat"]["can_reply"].clone(), limit[0]["chat"]["replies_left"].clone()),
        (json!(false), json!(0))
    );

    // The month ends at midnight in China (16:00 UTC): then 4 more.
    app.set_time("2024-03-31T15:59:00Z");
    assert_eq!(reply().await.2, json!(0));
    app.set_time("2024-03-31T16:00:00Z");
    assert_eq!(reply().await, (json!("ACCEPTED"), json!(true), json!(4)));
}

/// Media from every channel: a webhook with `media: placeholder` gets each media message with its
/// caption or placeholder as text and its attachments as the channel described them; one that
/// skips media (the default) gets the text messages alone. In each chat a text message follows
/// the media, so once the skipping webhook has it, it would have had the media before.
#[tokio::test]
async fn media_from_every_channel_go_to_a_placeholder_webhook_and_not_to_one_that_skips_them() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let (skips, keeps) = (Receiver::start().await, Receiver::start().await);
    app.create_webhook(&ws.id, json!({"url": skips.url})).await;
    let created = app.create_webhook(&ws.id, json!({"url": keeps.url, "media": "placeholder"})).await;
    assert_eq!(created["media"], "placeholder");
    let inbound = |src: Value| src["inbound_url"].as_str().unwrap().to_string();

    // Twilio: two files with a caption, then a shared location.
    let twilio_url = inbound(
        source(
            &app,
            &ws,
            json!({"kind": "twilio", "name": "Twilio", "credentials": {"auth_token": "12345"}}),
        )
        .await,
    );
    let twilio_form = |sid: &str, body: &str, extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("MessageSid", sid),
            ("From", "whatsapp:+14017122661"),
            ("To", "whatsapp:+15558675310"),
            ("Body", body),
        ];
        pairs.extend_from_slice(extra);
        form(&pairs)
    };
    for params in [
        twilio_form(
            "MMtw1",
            "Here is the receipt",
            &[
                ("NumMedia", "2"),
                ("MediaContentType0", "image/jpeg"),
                ("MediaUrl0", "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MMtw1/Media/ME1"),
                ("MediaContentType1", "application/pdf"),
                ("MediaUrl1", "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MMtw1/Media/ME2"),
            ],
        ),
        twilio_form(
            "MMtw2",
            "",
            &[
                ("NumMedia", "0"),
                ("Latitude", "35.681236"),
                ("Longitude", "139.767125"),
                ("Label", "Tokyo Station"),
            ],
        ),
        twilio_form("SMtw3", "Did you get them?", &[("NumMedia", "0")]),
    ] {
        assert_eq!(post_twilio(&app, &twilio_url, &params).await.status(), 200);
    }

    // Meta: image with a caption, document, voice note, location, sticker, contact card, and a
    // reaction (not a message), then text.
    let meta_url = inbound(
        source(
            &app,
            &ws,
            json!({"kind": "whatsapp", "name": "Cloud API", "credentials": {"app_secret": "app-secret", "verify_token": "vt"}}),
        )
        .await,
    );
    let meta = |id: &str, kind: &str, body: Value| {
        let mut m = json!({"from": "16505551234", "id": id, "timestamp": "1749416400", "type": kind});
        m[kind] = body;
        m
    };
    let mut contacts = meta("wamid.M6", "contacts", Value::Null);
    contacts.as_object_mut().unwrap().remove("contacts");
    contacts["contacts"] = json!([{"name": {"formatted_name": "Kenji Sato", "first_name": "Kenji"},
                                   "phones": [{"phone": "+81 90 1234 5678", "type": "CELL"}]}]);
    let notification = json!({"object": "whatsapp_business_account", "entry": [{"id": "1022", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
        "messages": [
            meta("wamid.M1", "image", json!({"caption": "the blue one", "mime_type": "image/jpeg", "sha256": "x", "id": "1003383421387256"})),
            meta("wamid.M2", "document", json!({"filename": "invoice.pdf", "mime_type": "application/pdf", "id": "2003"})),
            meta("wamid.M3", "audio", json!({"mime_type": "audio/ogg; codecs=opus", "id": "3003", "voice": true})),
            meta("wamid.M4", "location", json!({"latitude": 35.68, "longitude": 139.76, "name": "Tokyo Station", "address": "Marunouchi"})),
            meta("wamid.M5", "sticker", json!({"mime_type": "image/webp", "id": "5003", "animated": false})),
            contacts,
            meta("wamid.M7", "reaction", json!({"message_id": "wamid.M1", "emoji": "👍"})),
            meta("wamid.M8", "text", json!({"body": "Thanks!"})),
        ]
    }}]}]});
    assert_eq!(post_meta(&app, &meta_url, &notification).await.status(), 200);

    // WeChat: image, voice, location and link pushes, then text.
    let wechat_url = inbound(
        source(&app, &ws, json!({"kind": "wechat", "name": "Official Account", "credentials": {"token": "wx-token", "app_id": "wxb11529c136998cb6"}}))
            .await,
    );
    let push = |id: &str, kind: &str, fields: &str| {
        format!(
            "<xml><ToUserName><![CDATA[gh_866835093fea]]></ToUserName><FromUserName><![CDATA[oWeChatUser1]]></FromUserName>\
             <CreateTime>1478317060</CreateTime><MsgType><![CDATA[{kind}]]></MsgType>{fields}<MsgId>{id}</MsgId></xml>"
        )
    };
    for (nonce, body) in [
        (
            "w1",
            push(
                "71",
                "image",
                "<PicUrl><![CDATA[http://mmbiz.qpic.cn/mmbiz/pic1]]></PicUrl><MediaId><![CDATA[media_pic_1]]></MediaId>",
            ),
        ),
        (
            "w2",
            push(
                "72",
                "voice",
                "<MediaId><![CDATA[media_voice_1]]></MediaId><Format><![CDATA[amr]]></Format>",
            ),
        ),
        (
            "w3",
            push(
                "73",
                "location",
                "<Location_X>23.134521</Location_X><Location_Y>113.358803</Location_Y><Scale>20</Scale><Label><![CDATA[广州市天河区]]></Label>",
            ),
        ),
        (
            "w4",
            push(
                "74",
                "link",
                "<Title><![CDATA[Order #1234]]></Title><Description><![CDATA[your order]]></Description><Url><![CDATA[https://shop.example/o/1234]]></Url>",
            ),
        ),
        // A link no page may open, with a line break in its title: kept, without the URL.
        (
            "w6",
            push(
                "76",
                "link",
                "<Title><![CDATA[line\nbreak]]></Title><Url><![CDATA[javascript:alert(1)]]></Url>",
            ),
        ),
        ("w5", push("75", "text", "<Content><![CDATA[在吗？]]></Content>")),
    ] {
        let url = format!("{wechat_url}?{}", wechat_query("wx-token", "1709294401", nonce));
        assert_eq!(app.http.post(&url).body(body).send().await.unwrap().text().await.unwrap(), "success");
    }

    // Chatwoot: a message of attachments alone, then text.
    let chatwoot_url = inbound(
        source(
            &app,
            &ws,
            json!({"kind": "chatwoot", "name": "Chatwoot", "credentials": {"secret": "cw-secret"}}),
        )
        .await,
    );
    let mut files = chatwoot_message(301, "incoming", "", false);
    files["content"] = Value::Null;
    files["attachments"] = json!([
        {"id": 41, "message_id": 301, "file_type": "image", "account_id": 1, "extension": null,
         "data_url": "https://chatwoot.example/rails/active_storage/blobs/redirect/abc/photo.jpg",
         "thumb_url": "https://chatwoot.example/thumb.jpg", "file_size": 1024},
        {"id": 42, "message_id": 301, "file_type": "file", "account_id": 1, "extension": "pdf",
         "data_url": "https://chatwoot.example/rails/active_storage/blobs/redirect/def/%E8%AB%8B%E6%B1%82%E6%9B%B8.pdf", "file_size": 2048},
    ]);
    let now = start_time().timestamp().to_string();
    for body in [files, chatwoot_message(302, "incoming", "Can you check these?", false)] {
        let raw = serde_json::to_vec(&body).unwrap();
        let signature = format!("sha256={}", hex_hmac_sha256("cw-secret", &[now.as_bytes(), b".", &raw]));
        let response = app
            .http
            .post(&chatwoot_url)
            .header("x-chatwoot-signature", signature)
            .header("x-chatwoot-timestamp", &now)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    // The webhook that skips media: the four text messages, nothing else.
    // The webhook that skips media: the text messages and the captions, without their media;
    // a chat that opened with media is new to it with the first words it sees.
    let plain = skips.wait_for(6).await;
    let mut ids: Vec<String> = plain.iter().map(|r| r.message_id()).collect();
    ids.sort();
    assert_eq!(ids, ["302", "75", "MMtw1", "SMtw3", "wamid.M1", "wamid.M8"]);
    assert!(plain.iter().all(|r| r.json()["message"].get("attachments").is_none()));
    let plain_of = |id: &str| plain.iter().find(|r| r.message_id() == id).unwrap().json();
    assert_eq!(plain_of("MMtw1")["message"]["text"], "Here is the receipt");
    assert_eq!(plain_of("wamid.M1")["message"]["text"], "the blue one");
    for (id, new) in [
        ("MMtw1", true),
        ("SMtw3", false),
        ("wamid.M1", true),
        ("wamid.M8", false),
        ("75", true),
        ("302", true),
    ] {
        assert_eq!(plain_of(id)["chat"]["is_new_chat"], new, "{id}");
    }

    // The webhook that keeps them: every media message, as the channel gave it.
    let kept = keeps.wait_for(4 + 2 + 6 + 5 + 1).await;
    assert_eq!(kept.len(), 18, "the reaction is no message");
    let by_id = |id: &str| {
        kept.iter().find(|r| r.message_id() == id).unwrap_or_else(|| panic!("{id}")).json()["message"].clone()
    };
    let receipt = by_id("MMtw1");
    assert_eq!(receipt["text"], "Here is the receipt");
    assert_eq!(receipt["attachments"][0]["type"], "image");
    assert_eq!(receipt["attachments"][0]["mime_type"], "image/jpeg");
    assert_eq!(
        receipt["attachments"][0]["url"],
        "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MMtw1/Media/ME1"
    );
    assert_eq!(receipt["attachments"][1]["type"], "document");
    let place = by_id("MMtw2");
    assert_eq!(place["text"], "[location 35.681236, 139.767125: Tokyo Station]");
    assert_eq!(place["attachments"][0]["latitude"], 35.681236);

    let image = by_id("wamid.M1");
    assert_eq!(image["text"], "the blue one");
    assert_eq!(
        image["attachments"],
        json!([{"type": "image", "mime_type": "image/jpeg", "media_id": "1003383421387256", "caption": "the blue one"}])
    );
    assert_eq!(by_id("wamid.M2")["text"], "[document: invoice.pdf]");
    assert_eq!(by_id("wamid.M2")["attachments"][0]["filename"], "invoice.pdf");
    assert_eq!(by_id("wamid.M3")["text"], "[voice message]");
    assert_eq!(by_id("wamid.M3")["attachments"][0]["mime_type"], "audio/ogg; codecs=opus");
    assert_eq!(by_id("wamid.M4")["text"], "[location 35.68, 139.76: Tokyo Station]");
    assert_eq!(by_id("wamid.M5")["text"], "[sticker]");
    assert_eq!(by_id("wamid.M6")["text"], "[contact: Kenji Sato]");

    assert_eq!(by_id("71")["text"], "[image]");
    assert_eq!(
        by_id("71")["attachments"],
        json!([{"type": "image", "mime_type": null, "url": "http://mmbiz.qpic.cn/mmbiz/pic1", "media_id": "media_pic_1"}])
    );
    assert_eq!(by_id("72")["attachments"][0]["type"], "voice");
    assert_eq!(by_id("72")["attachments"][0]["mime_type"], "audio/amr");
    assert_eq!(by_id("73")["text"], "[location 23.134521, 113.358803: 广州市天河区]");
    assert_eq!(by_id("74")["text"], "[link: Order #1234]");
    assert_eq!(by_id("74")["attachments"][0]["url"], "https://shop.example/o/1234");

    let cw = by_id("301");
    assert_eq!(cw["text"], "[image] [document: 請求書.pdf]");
    assert_eq!(
        cw["attachments"][0]["url"],
        "https://chatwoot.example/rails/active_storage/blobs/redirect/abc/photo.jpg"
    );
    assert_eq!(cw["attachments"][1]["filename"], "請求書.pdf", "the URL's name, decoded");
    assert_eq!(
        by_id("76")["attachments"],
        json!([{"type": "link", "mime_type": null, "name": "line break"}])
    );
    for (id, new) in [("71", true), ("75", false), ("301", true), ("302", false)] {
        let json = kept.iter().find(|r| r.message_id() == id).unwrap().json();
        assert_eq!(json["chat"]["is_new_chat"], new, "{id}");
    }
    assert!(
        kept.iter()
            .filter(|r| ["SMtw3", "wamid.M8", "75", "302"].contains(&r.message_id().as_str()))
            .all(|r| r.json()["message"].get("attachments").is_none())
    );
    // Stored once each, whichever webhook takes them: 14 media messages and 4 text ones.
    assert_eq!(app.stats(&ws).await.messages, 18);
}

/// A customer who taps a template's quick-reply button or picks a row of an interactive list
/// answers in words: Meta's `button` and `interactive` (`button_reply`, `list_reply`) messages,
/// shaped as in Meta's Cloud API webhook reference ("Messages" object), and Twilio's `ButtonText`
/// and `ButtonPayload` (Twilio's "WhatsApp: Quick Reply buttons" inbound parameters), are delivered
/// as text with the choice's payload id in `reply_to_button`. Reactions stay skipped.
#[tokio::test]
async fn a_customers_answer_by_button_or_list_is_delivered_as_their_words() {
    let app = TestApp::spawn().await;
    let (ws, receiver, _) = setup(&app).await;
    let meta = source(
        &app,
        &ws,
        json!({"kind": "whatsapp", "name": "Cloud API", "credentials": {"app_secret": "app-secret", "verify_token": "vt-1"}}),
    )
    .await;
    let url = meta["inbound_url"].as_str().unwrap().to_string();
    let context = json!({"from": "15550783881", "id": "wamid.TEMPLATE1"});
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
        "messages": [
            {"context": context, "from": "16505551234", "id": "wamid.B1", "timestamp": "1749416383",
             "type": "button", "button": {"text": "予約する", "payload": "BOOK"}},
            {"context": context, "from": "16505551234", "id": "wamid.B2", "timestamp": "1749416384",
             "type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "yes-1", "title": "はい"}}},
            {"context": context, "from": "16505551234", "id": "wamid.B3", "timestamp": "1749416385",
             "type": "interactive", "interactive": {"type": "list_reply",
                "list_reply": {"id": "slot-10", "title": "10:00", "description": "Morning"}}},
            {"from": "16505551234", "id": "wamid.R1", "timestamp": "1749416386",
             "type": "reaction", "reaction": {"message_id": "wamid.B1", "emoji": "👍"}}
        ]
    }}]}]});
    assert_eq!(post_meta(&app, &url, &body).await.status(), 200);
    let seen = receiver.wait_for(3).await;
    let answers: Vec<(String, String)> = seen
        .iter()
        .map(|r| {
            let message = r.json()["message"].clone();
            assert_eq!(message["direction"], "received");
            (message["text"].as_str().unwrap().into(), message["reply_to_button"].as_str().unwrap().into())
        })
        .collect();
    let expected = [("予約する", "BOOK"), ("はい", "yes-1"), ("10:00", "slot-10")];
    assert_eq!(answers, expected.map(|(t, p)| (t.to_string(), p.to_string())));

    let twilio = source(
        &app,
        &ws,
        json!({"kind": "twilio", "name": "Twilio", "credentials": {"auth_token": "12345"}}),
    )
    .await;
    let url = twilio["inbound_url"].as_str().unwrap().to_string();
    let tapped = form(&[
        ("MessageSid", "SMbtn1"),
        ("From", "whatsapp:+14017122661"),
        ("To", "whatsapp:+14155238886"),
        ("Body", "Yes"),
        ("MessageType", "button"),
        ("ButtonText", "Yes"),
        ("ButtonPayload", "CONFIRM_ORDER"),
        ("NumMedia", "0"),
    ]);
    assert_eq!(post_twilio(&app, &url, &tapped).await.status(), 200);
    // A tap whose Body is empty says the button's text.
    let bare = form(&[
        ("MessageSid", "SMbtn2"),
        ("From", "whatsapp:+14017122661"),
        ("Body", ""),
        ("ButtonText", "Cancel"),
        ("ButtonPayload", "CANCEL_ORDER"),
    ]);
    assert_eq!(post_twilio(&app, &url, &bare).await.status(), 200);
    let seen = receiver.wait_for(5).await;
    let twilio_answers: Vec<Value> = seen[3..].iter().map(|r| r.json()["message"].clone()).collect();
    assert_eq!(
        (twilio_answers[0]["text"].as_str(), twilio_answers[0]["reply_to_button"].as_str()),
        (Some("Yes"), Some("CONFIRM_ORDER"))
    );
    assert_eq!(
        (twilio_answers[1]["text"].as_str(), twilio_answers[1]["reply_to_button"].as_str()),
        (Some("Cancel"), Some("CANCEL_ORDER"))
    );
    // A plain message has no such key; the reaction was counted, not stored.
    let plain = form(&[("MessageSid", "SMplain"), ("From", "whatsapp:+14017122661"), ("Body", "thanks")]);
    assert_eq!(post_twilio(&app, &url, &plain).await.status(), 200);
    assert!(receiver.wait_for(6).await[5].json()["message"].get("reply_to_button").is_none());
    assert_eq!(app.stats(&ws).await.messages, 6, "the reaction is not stored");
}

/// Chatwoot's own values pass through (its `can_reply`, from the conversation object of its
/// webhook payloads as Chatwoot's "Webhook events" document lists it), and its `message_updated`
/// event edits: a buffered message goes out in its bundle as edited; one already delivered is
/// shown edited in the transcript and not sent again.
#[tokio::test]
async fn chatwoots_can_reply_passes_through_and_its_edits_change_what_a_bundle_sends() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let (immediate, hourly) = (Receiver::start().await, Receiver::start().await);
    app.create_webhook(&ws.id, json!({"url": immediate.url})).await;
    app.create_webhook(&ws.id, json!({"url": hourly.url, "granularity": "1h"})).await;
    let src = source(&app, &ws, json!({"kind": "chatwoot", "name": "Chatwoot", "credentials": {}})).await;
    let url = src["inbound_url"].as_str().unwrap().to_string();
    let post = |body: Value| app.http.post(&url).json(&body).send();
    app.set_time("2024-03-01T12:05:00Z");
    let mut first = chatwoot_message(301, "incoming", "Is it in stock?", false);
    first["conversation"]["can_reply"] = json!(false);
    assert_eq!(post(first.clone()).await.unwrap().status(), 200);
    let single = immediate.wait_for(1).await[0].json();
    assert_eq!(single["chat"]["can_reply"], false, "Chatwoot's value, not chatbundle's: {single}");
    assert_eq!(single["chat"]["reply_status"], "SESSION_EXPIRED");
    // The customer fixes a typo while the message waits for the hour's bundle.
    let mut edit = first.clone();
    edit["event"] = json!("message_updated");
    edit["content"] = json!("Is the blue one in stock?");
    edit["updated_at"] = json!("2024-03-01T12:06:00Z");
    assert_eq!(post(edit).await.unwrap().status(), 200);
    app.set_time("2024-03-01T13:00:00Z");
    let bundle = hourly.wait_for(1).await[0].json();
    assert_eq!(bundle["messages"][0]["text"], "Is the blue one in stock?");
    assert_eq!(bundle["messages"][0]["edited_at"], "2024-03-01T12:06:00+0000");
    assert!(bundle["aggregation"].as_str().unwrap().contains("Is the blue one in stock?"));
    app.delivered(&ws, 2).await;
    // An edit after delivery: the transcript shows it edited, nothing goes out again.
    let mut late = first.clone();
    late["event"] = json!("message_updated");
    late["content"] = json!("Is the red one in stock?");
    late["updated_at"] = json!("2024-03-01T13:10:00Z");
    app.set_time("2024-03-01T13:10:00Z");
    assert_eq!(post(late).await.unwrap().status(), 200);
    let transcript = app.http.get(bundle["chat"]["chat_url"].as_str().unwrap()).send().await.unwrap();
    let page = transcript.text().await.unwrap();
    assert!(page.contains("Is the red one in stock?") && page.contains("edited"), "{page}");
    app.set_time("2024-03-01T14:00:00Z");
    app.closer_settled().await;
    assert_eq!((immediate.received().len(), hourly.received().len()), (1, 1), "nothing is sent again");
    assert_eq!(app.stats(&ws).await.messages, 1);
}
