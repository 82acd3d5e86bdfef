//! Hostile clients and hostile data, through the daemon in-process: guessing, formula cells,
//! replays, framing, revoked sessions, oversized channel requests, bad owner addresses, masked
//! passwords.

use std::net::IpAddr;
use std::time::Duration;

use chatbundle::ingest::wechat;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// A client whose connections come from `address` (any of 127.0.0.0/8 works on loopback).
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap()
}

#[tokio::test]
async fn guessing_a_credential_shuts_out_that_guessing_and_never_a_valid_credential() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let other_ws = app.workspace().await;
    // Behind one shared address (a proxy, Zapier): one client guesses, the others work.
    let shared = client_from("127.0.0.2");
    let guess = |token: &str| shared.get(app.url("/api/v1/workspaces")).bearer_auth(token).send();
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(guess(&format!("wrong-guess-{i}")).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 401, 429, 429], "five free, then shut out");
    let refused = guess("wrong-guess-again").await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_attempts");

    // A valid credential from the same address is never refused: the admin token, and an
    // ingest key, whose guessing is counted apart.
    assert_eq!(guess(ADMIN_TOKEN).await.unwrap().status(), 200, "the right token goes through");
    let ingest = |ws: &Workspace, key: &str| {
        shared
            .post(app.url(&format!("/api/v1/workspaces/{}/messages", ws.id)))
            .bearer_auth(key)
            .json(&message(&chatbundle::domain::random_token(8), "c", "x"))
            .send()
    };
    assert_eq!(ingest(&ws, &ws.ingest_key).await.unwrap().status(), 202, "a valid ingest key is not held up");
    let mut statuses = Vec::new();
    for i in 0..7 {
        statuses.push(ingest(&ws, &format!("ik_wrong-{i}")).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 401, 429], "one workspace's key guessed");
    assert_eq!(ingest(&ws, &ws.ingest_key).await.unwrap().status(), 202);
    assert_eq!(
        ingest(&other_ws, "ik_wrong").await.unwrap().status(),
        401,
        "guessing another workspace's key is another count"
    );
    let stats = app.stats(&ws).await;
    assert_eq!(stats.messages, 2, "both valid requests stored");

    // The wait runs out; the next wrong guess doubles it.
    app.advance(Duration::from_secs(retry_after));
    assert_eq!(guess("wrong-again").await.unwrap().status(), 401);
    let longer = guess("and-again").await.unwrap();
    assert_eq!(longer.status(), 429);
    assert!(longer.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 2 * retry_after);

    // Sign-in guesses count as guesses of the admin token; the right one still signs in.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let response =
            shared.post(app.url("/login")).form(&[("token", "nope-nope-nope")]).send().await.unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [429, 429], "the address is shut out of guessing the admin token");
    let signed_in = shared.post(app.url("/login")).form(&[("token", ADMIN_TOKEN)]).send().await.unwrap();
    assert_eq!(signed_in.status(), 303, "and signs in with the right one");
    let other = client_from("127.0.0.3");
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let response =
            other.post(app.url("/login")).form(&[("token", "nope-nope-nope")]).send().await.unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 401, 429]);
}

#[tokio::test]
async fn a_hostile_receivers_answer_cannot_plant_a_formula_in_the_exported_log() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.answer(Reply::status(500).body("=HYPERLINK(\"https://evil.example\",\"click\")"));
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap();
    app.ingest(&ws, &message("m-1", "c-1", "-1+2 looks like a sum")).await;
    app.attempts(id, 1).await;
    let csv = app.admin(Method::GET, &format!("/api/v1/webhooks/{id}/log?format=csv")).send().await.unwrap();
    let text = csv.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let (kind, excerpt) = (
        headers.iter().position(|h| h == "kind").unwrap(),
        headers.iter().position(|h| h == "response_excerpt").unwrap(),
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let attempt = rows.iter().find(|row| &row[kind] == "attempt").expect("the attempt's row");
    assert_eq!(&attempt[excerpt], "'=HYPERLINK(\"https://evil.example\",\"click\")");
    for cell in rows.iter().flat_map(|row| row.iter()) {
        assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "{cell:?} would run in a spreadsheet");
    }
}

#[tokio::test]
async fn pages_forbid_framing_inline_script_and_caching() {
    let app = TestApp::spawn().await;
    let browser = client_from("127.0.0.1");
    let login = browser.get(app.url("/login")).send().await.unwrap();
    let headers = login.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in ["frame-ancestors 'none'", "script-src 'self'", "default-src 'none'"] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.contains_key("referrer-policy"));
    let html = login.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("<style>") && !html.contains("style=\""),
        "nothing inline"
    );
    let css = browser.get(app.url("/static/chatbundle.css")).send().await.unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert!(browser.get(app.url("/static/chatbundle.js")).send().await.unwrap().status().is_success());

    let signed_in = browser.post(app.url("/login")).form(&[("token", ADMIN_TOKEN)]).send().await.unwrap();
    assert_eq!(signed_in.status(), 303);
    let ws = app.workspace().await;
    let page = browser.get(app.url(&format!("/ui/workspaces/{}", ws.id))).send().await.unwrap();
    assert_eq!(page.headers()["cache-control"], "no-store", "the ingest key is on this page");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let api = app.admin(Method::GET, "/api/v1/workspaces").send().await.unwrap();
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn signing_out_ends_the_session_for_every_copy_of_its_cookie() {
    let app = TestApp::spawn().await;
    let browser = client_from("127.0.0.1");
    let signed_in = browser.post(app.url("/login")).form(&[("token", ADMIN_TOKEN)]).send().await.unwrap();
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = browser.get(app.url("/ui")).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_of(&page);
    // A copy of the cookie, as an attacker who read it would hold it.
    let copy = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let with_copy = || copy.get(app.url("/ui")).header("cookie", &cookie).send();
    assert_eq!(with_copy().await.unwrap().status(), 200);

    let out = browser.post(app.url("/logout")).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(out.status(), 303);
    let refused = with_copy().await.unwrap();
    assert_eq!(refused.status(), 303, "the copied cookie no longer opens anything");
    assert!(refused.headers()["location"].to_str().unwrap().starts_with("/login"));
}

#[tokio::test]
async fn channels_obey_the_json_apis_limits_and_store_nothing_of_a_refused_request() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let zoho: Value = app
        .admin(Method::POST, &format!("/api/v1/workspaces/{}/sources", ws.id))
        .json(&json!({"kind": "zoho_desk", "name": "Zoho"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = zoho["inbound_url"].as_str().unwrap().to_string();
    let event = |id: usize, name: &str, text: &str| {
        json!({"eventType": "IM_Message_Add", "payload": {"id": format!("z-{id}"), "sessionId": "s-1",
               "direction": "IN", "text": text, "actor": {"name": name}}})
    };
    let cases = [
        (json!((0..1001).map(|i| event(i, "Kamal", "hi")).collect::<Vec<_>>()), 413, "body"),
        (json!([event(1, "Kamal", &"x".repeat(65 * 1024))]), 413, "messages[0].text"),
        (json!([event(1, &"K".repeat(5000), "hi")]), 400, "messages[0].chat.full_name"),
        (json!([event(1, "Kamal", "hi"), event(2, "Kamal", "nul \u{0} inside")]), 400, "messages[1].text"),
        (json!([event(1, "Kamal\r\nINFO forged", "hi")]), 400, "messages[0].chat.full_name"),
    ];
    for (body, status, field) in cases {
        let response = app.http.post(&url).json(&body).send().await.unwrap();
        assert_eq!(response.status(), status, "{field}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    let stats = app.stats(&ws).await;
    assert_eq!((stats.chats, stats.messages), (0, 0), "nothing of a refused request is kept");
    assert_eq!(
        app.http
            .post(&url)
            .json(&json!((0..1000).map(|i| event(i, "Kamal", "hi")).collect::<Vec<_>>()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.stats(&ws).await.messages, 1000, "the limit itself is allowed");
}

#[tokio::test]
async fn owner_addresses_that_no_mail_server_takes_are_refused() {
    let app = TestApp::spawn().await;
    for owner in ["\">‹svg onload=alert(1)>\"@x.com", "a@[127.0.0.1]", "a@localhost.", "root@localhost"] {
        let response = app
            .admin(Method::POST, "/api/v1/workspaces")
            .json(&json!({"name": "Acme", "owner_email": owner}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{owner}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["field"], "owner_email");
    }
    let crlf = app
        .admin(Method::POST, "/api/v1/workspaces")
        .json(&json!({"name": "Acme\r\n2026-11-28T00:00:00Z INFO forged", "owner_email": "o@acme.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(crlf.status(), 400);
    assert_eq!(crlf.json::<Value>().await.unwrap()["error"]["field"], "name");
}

#[tokio::test]
async fn wechat_replays_and_entities() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let receiver = Receiver::start().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let src: Value = app
        .admin(Method::POST, &format!("/api/v1/workspaces/{}/sources", ws.id))
        .json(&json!({"kind": "wechat", "name": "OA", "credentials": {"token": "wx-token", "app_id": "wx1"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = src["inbound_url"].as_str().unwrap().to_string();
    let signed = |timestamp: &str, nonce: &str| {
        format!(
            "{url}?signature={}&timestamp={timestamp}&nonce={nonce}",
            wechat::signature(&["wx-token", timestamp, nonce])
        )
    };
    let push = |id: &str, content: &str| {
        format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[openid-1]]></FromUserName>\
             <CreateTime>1709294400</CreateTime><MsgType><![CDATA[text]]></MsgType>\
             <Content>{content}</Content><MsgId>{id}</MsgId></xml>"
        )
    };
    let now = start_time().timestamp();
    // Signed in 2001: the signature matches, the time does not.
    let old = app.http.post(signed("1000000000", "n1")).body(push("1", "hi")).send().await.unwrap();
    assert_eq!(old.status(), 401);
    let late =
        app.http.post(signed(&(now - 301).to_string(), "n1")).body(push("1", "hi")).send().await.unwrap();
    assert_eq!(late.status(), 401);
    // Entities and character references outside CDATA give the customer's text exactly.
    let fresh = signed(&(now - 10).to_string(), "n2");
    let text = "&lt;script&gt;&amp;&#65;&#x42; &quot;ok&quot;";
    assert_eq!(app.http.post(&fresh).body(push("2", text)).send().await.unwrap().status(), 200);
    assert_eq!(receiver.wait_for(1).await[0].json()["message"]["text"], "<script>&AB \"ok\"");
    // The same signed URL again: with its own body it is WeChat redelivering (a duplicate), with
    // another it is a replay.
    assert_eq!(app.http.post(&fresh).body(push("2", text)).send().await.unwrap().status(), 200);
    let replay = app.http.post(&fresh).body(push("3", "send money")).send().await.unwrap();
    assert_eq!(replay.status(), 401);
    assert_eq!(app.stats(&ws).await.messages, 1);
}

#[tokio::test]
async fn a_password_in_a_webhook_url_is_never_shown_again_and_is_kept() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let with_password = receiver.url.replace("http://", "http://zap:s3cret@");
    let hook = app.create_webhook(&ws.id, json!({"url": with_password})).await;
    let id = hook["id"].as_str().unwrap();
    let masked = receiver.url.replace("http://", "http://zap:****@");
    assert_eq!(hook["url"], masked);
    let listed = app.admin(Method::GET, &format!("/api/v1/webhooks/{id}")).send().await.unwrap();
    assert!(!listed.text().await.unwrap().contains("s3cret"));

    // The page shows it masked; saving the form as shown keeps the password.
    let browser = client_from("127.0.0.1");
    browser.post(app.url("/login")).form(&[("token", ADMIN_TOKEN)]).send().await.unwrap();
    let page = browser
        .get(app.url(&format!("/ui/workspaces/{}", ws.id)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("s3cret") && page.contains("zap:****@"), "masked on the page");
    let csrf = csrf_of(&page);
    let form =
        [("csrf", csrf.as_str()), ("url", masked.as_str()), ("granularity", "default"), ("enabled", "on")];
    assert_eq!(
        browser.post(app.url(&format!("/ui/webhooks/{id}"))).form(&form).send().await.unwrap().status(),
        303
    );
    app.patch_webhook(id, json!({"url": masked})).await;
    app.ingest(&ws, &message("m-1", "c-1", "hi")).await;
    let sent = receiver.wait_for(1).await.remove(0);
    // The password still goes out, as HTTP Basic credentials.
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("zap:s3cret");
    assert_eq!(sent.header("authorization"), format!("Basic {basic}"));
    let log =
        app.admin(Method::GET, &format!("/api/v1/webhooks/{id}/log?format=jsonl")).send().await.unwrap();
    assert!(!log.text().await.unwrap().contains("s3cret"), "nor in the activity log");
}

/// Posts `body` as JSON to an admin path and insists on `status`; the answer's JSON.
async fn admin_json(app: &TestApp, method: Method, path: &str, body: Option<Value>, status: u16) -> Value {
    let mut request = app.admin(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), status, "{path}");
    response.json().await.unwrap_or(Value::Null)
}

/// Zoho Desk's events for one chat: a customer's message, then a session report.
fn zoho_events(message_id: &str, status: &str) -> Value {
    json!([
        {"payload": {"actor": {"name": "Kamal Nayan", "externalId": "+919878765654", "type": "ENDUSER"},
                     "messageType": "TEXT", "integration": "WHATSAPP", "createdTime": "1710293987000",
                     "sessionId": "3942000001025025", "id": message_id, "text": "Where is my order?",
                     "direction": "IN", "status": "SAVED"},
         "eventTime": "1710313788286", "eventType": "IM_Message_Add", "orgId": "78412359"},
        {"payload": {"currentAssigneeId": "106554156", "sessionStatus": status, "replyStatus": "ACCEPTED",
                     "sessionId": "3942000001025025", "messagesCount": "1", "assigneeType": "AGENT"},
         "eventTime": "1710313788290", "eventType": "IM_Session_Status", "orgId": "78412359"}
    ])
}

/// Chatwoot's events for one conversation, unsigned: a message, then its resolution.
fn chatwoot_events(id: u64) -> [Value; 2] {
    let conversation = json!({"id": 207, "inbox_id": 3, "channel": "Channel::Api", "status": "open",
        "meta": {"sender": {"id": 14, "name": "Li Wei", "phone_number": "+8613800138000", "type": "contact"}, "assignee": null}});
    let mut resolved = conversation.clone();
    resolved["event"] = json!("conversation_status_changed");
    resolved["status"] = json!("resolved");
    [
        json!({"event": "message_created", "id": id, "content": "Is it shipped?", "created_at": "2025-05-15T19:11:08.000Z",
               "message_type": "incoming", "content_type": "text", "private": false,
               "sender": {"id": 14, "name": "Li Wei", "phone_number": "+8613800138000"},
               "conversation": conversation}),
        resolved,
    ]
}

#[tokio::test]
async fn no_payload_note_or_activity_row_carries_a_credential() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let receiver = Receiver::start().await;
    let immediate = app.create_webhook(&ws.id, json!({"url": receiver.url, "secret": true})).await;
    let bundling = app.create_webhook(&ws.id, json!({"url": receiver.url, "granularity": "1h"})).await;
    let sessions =
        app.create_webhook(&ws.id, json!({"url": receiver.url, "events": ["session_status"]})).await;
    let sources = format!("/api/v1/workspaces/{}/sources", ws.id);
    // The channels that sign nothing: their inbound URL is their only secret.
    let zoho =
        admin_json(&app, Method::POST, &sources, Some(json!({"kind": "zoho_desk", "name": "Desk"})), 201)
            .await;
    let chatwoot =
        admin_json(&app, Method::POST, &sources, Some(json!({"kind": "chatwoot", "name": "Inbox"})), 201)
            .await;
    let url = |source: &Value| source["inbound_url"].as_str().unwrap().to_string();
    assert_eq!(
        app.http.post(url(&zoho)).json(&zoho_events("z-1", "ON_PROGRESS")).send().await.unwrap().status(),
        200
    );
    for event in chatwoot_events(118) {
        assert_eq!(app.http.post(url(&chatwoot)).json(&event).send().await.unwrap().status(), 200);
    }
    // A receipt is skipped: noted in the activity log.
    let receipt = json!([{"payload": {"messageId": "z-0", "sessionId": "3942000001025025"},
                          "eventTime": "1", "eventType": "IM_Message_Status", "orgId": "78412359"}]);
    assert_eq!(app.http.post(url(&zoho)).json(&receipt).send().await.unwrap().status(), 200);
    let skipped = json!([{"payload": {"id": "z-2", "sessionId": "3942000001025025", "direction": "IN",
                           "messageType": "IMAGE"}, "eventType": "IM_Message_Add"}]);
    assert_eq!(app.http.post(url(&zoho)).json(&skipped).send().await.unwrap().status(), 200);
    app.ingest(&ws, &message("m-1", "c-1", "Hi from the JSON API")).await;
    app.advance(Duration::from_secs(1));
    assert_eq!(app.flush(&ws.id).await, 3, "a bundle for each chat");
    eventually("every delivery made", || async {
        let stats = app.stats(&ws).await;
        (stats.deliveries_pending == 0 && stats.deliveries_delivered > 0).then_some(())
    })
    .await;
    // And a test send of each: a bundle, a message and a session event as they would go now.
    for hook in [&immediate, &bundling, &sessions] {
        let id = hook["id"].as_str().unwrap();
        admin_json(&app, Method::POST, &format!("/api/v1/webhooks/{id}/test"), None, 200).await;
    }
    // An API token and an invitation: their own activity rows must not carry them either.
    let tokens_path = format!("/api/v1/workspaces/{}/tokens", ws.id);
    let api_token =
        admin_json(&app, Method::POST, &tokens_path, Some(json!({"name": "Zap", "role": "admin"})), 201)
            .await["token"]
            .as_str()
            .unwrap()
            .to_string();
    let members_path = format!("/api/v1/workspaces/{}/members", ws.id);
    let invitation = admin_json(
        &app,
        Method::POST,
        &members_path,
        Some(json!({"email": "mia@acme.example", "role": "viewer"})),
        201,
    )
    .await["invitation_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let received = receiver.received();

    let secret = immediate["secret"].as_str().unwrap().to_string();
    let key_of = |s: &Value| url(s).rsplit('/').next().unwrap().to_string();
    let credentials = [
        ("Zoho Desk's source id", zoho["id"].as_str().unwrap().to_string()),
        ("Zoho Desk's inbound key", key_of(&zoho)),
        ("Chatwoot's source id", chatwoot["id"].as_str().unwrap().to_string()),
        ("Chatwoot's inbound key", key_of(&chatwoot)),
        ("the ingest key", ws.ingest_key.clone()),
        ("the webhook secret", secret.trim_start_matches("whsec_").to_string()),
        ("the admin token", ADMIN_TOKEN.to_string()),
        ("an API token", api_token),
        ("an invitation link's token", invitation),
    ];
    let chats =
        admin_json(&app, Method::GET, &format!("/api/v1/workspaces/{}/chats", ws.id), None, 200).await;
    let mut tokens = Vec::new();
    for chat in chats["chats"].as_array().unwrap() {
        let shown = admin_json(&app, Method::GET, &format!("/api/v1/chats/{}", chat["id"]), None, 200).await;
        let link = shown["transcript_url"].as_str().unwrap();
        tokens.push(link.rsplit('/').next().unwrap().to_string());
    }
    assert_eq!(tokens.len(), 3);
    // Each payload may carry its own chat's transcript link, and no other secret.
    let check = |what: &str, text: &str, own_token: Option<&str>| {
        for (name, value) in &credentials {
            assert!(!text.contains(value.as_str()), "{what} carries {name}: {text}");
        }
        for token in &tokens {
            assert!(
                own_token == Some(token.as_str()) || !text.contains(token.as_str()),
                "{what} carries another chat's link: {text}"
            );
        }
    };
    let own_token = |payload: &Value| {
        let object = if payload.is_array() { &payload[0] } else { payload };
        object["chat"]["chat_url"]
            .as_str()
            .map(|u| u.rsplit('/').next().unwrap().split('?').next().unwrap().to_string())
    };
    let mut kinds = std::collections::BTreeSet::new();
    for request in &received {
        let payload = request.json();
        let object = if payload.is_array() { payload[0].clone() } else { payload.clone() };
        kinds.insert(if object.get("eventType").is_some() {
            "session"
        } else if object.get("bundle_id").is_some() {
            "bundle"
        } else {
            "message"
        });
        let headers = format!("{:?}", request.headers);
        check("a delivery's headers", &headers, None);
        check("a payload", &String::from_utf8_lossy(&request.body), own_token(&payload).as_deref());
    }
    assert_eq!(kinds.len(), 3, "every kind of payload was scanned: {kinds:?}");
    // The session event's channelId is the channel's own id, or nothing.
    let zoho_event = received
        .iter()
        .map(Received::json)
        .find(|p| p[0]["payload"]["sessionStatus"] == "ON_PROGRESS")
        .expect("Zoho's report went out");
    assert_eq!(zoho_event[0]["payload"]["channelId"], Value::Null);

    // The activity log: every row, as exported.
    for hook in [&immediate, &bundling, &sessions] {
        let id = hook["id"].as_str().unwrap();
        let log =
            app.admin(Method::GET, &format!("/api/v1/webhooks/{id}/log?format=jsonl")).send().await.unwrap();
        let text = log.text().await.unwrap();
        assert!(text.contains("skipped"), "the skipped messages are in the log: {text}");
        for line in text.lines() {
            let row: Value = serde_json::from_str(line).unwrap();
            let body = row["request_body"].as_str().and_then(|b| serde_json::from_str::<Value>(b).ok());
            let own = body.as_ref().and_then(own_token);
            check("an activity row", line, own.as_deref());
        }
    }
}

#[tokio::test]
async fn a_sources_inbound_url_rotates_and_the_old_one_answers_404() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let receiver = Receiver::start().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let sources = format!("/api/v1/workspaces/{}/sources", ws.id);
    let zoho =
        admin_json(&app, Method::POST, &sources, Some(json!({"kind": "zoho_desk", "name": "Desk"})), 201)
            .await;
    let id = zoho["id"].as_str().unwrap();
    let old = zoho["inbound_url"].as_str().unwrap().to_string();
    assert_eq!(app.http.post(&old).json(&zoho_events("z-1", "OPEN")).send().await.unwrap().status(), 200);

    let shown = admin_json(&app, Method::GET, &format!("/api/v1/sources/{id}"), None, 200).await;
    assert_eq!(shown["inbound_url"], old.as_str());
    let rotated = admin_json(&app, Method::POST, &format!("/api/v1/sources/{id}/rotate"), None, 200).await;
    let new = rotated["inbound_url"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(rotated["id"], id, "the source stays the same source");
    assert_eq!(app.http.post(&old).json(&zoho_events("z-2", "OPEN")).send().await.unwrap().status(), 404);
    assert_eq!(app.http.get(&old).send().await.unwrap().status(), 404);
    assert_eq!(app.http.post(&new).json(&zoho_events("z-3", "OPEN")).send().await.unwrap().status(), 200);
    let stats = app.stats(&ws).await;
    assert_eq!((stats.chats, stats.messages), (1, 2), "the new URL files into the same chat");
    assert_eq!(
        admin_json(&app, Method::GET, &format!("/api/v1/sources/{id}"), None, 200).await["inbound_url"],
        new.as_str()
    );
    admin_json(&app, Method::POST, "/api/v1/sources/src_nope/rotate", None, 404).await;

    // The page rotates it too, from the source's card.
    let (browser, csrf) = signed_in_browser(&app).await;
    let page = browser
        .get(app.url(&format!("/ui/workspaces/{}", ws.id)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&new) && page.contains(&format!("/ui/sources/{id}/rotate")), "{page}");
    let done = browser
        .post(app.url(&format!("/ui/sources/{id}/rotate")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    let target = done.headers()["location"].to_str().unwrap().to_string();
    let page = browser.get(app.url(&target)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("has a new inbound URL"), "the page says so");
    assert!(!page.contains(&new), "and shows the newer URL");
    assert_eq!(app.http.post(&new).json(&zoho_events("z-4", "OPEN")).send().await.unwrap().status(), 404);
    // Deleting the source through its own path.
    let gone = app.admin(Method::DELETE, &format!("/api/v1/sources/{id}")).send().await.unwrap();
    assert_eq!(gone.status(), 204);
}

#[tokio::test]
async fn a_masked_password_stays_stored_for_a_new_path_must_be_retyped_for_a_new_user_and_is_masked_in_e_mails()
 {
    let smtp = SmtpSink::start();
    let dir = test_dir();
    let mut config = test_config(&dir);
    config.smtp.url = Some(smtp.url());
    config.delivery.disable_after = 1;
    let app = TestApp::spawn_with(dir, config, chatbundle::clock::ManualClock::new(start_time())).await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let with_password = receiver.url.replace("http://", "http://zap:s3cret@");
    let hook = app.create_webhook(&ws.id, json!({"url": with_password})).await;
    let id = hook["id"].as_str().unwrap();

    // The path changes, the password is sent back as shown: the stored one stays.
    let moved = receiver.url.replace("http://", "http://zap:****@").replace("/hook", "/hook/v2");
    let patched = app.patch_webhook(id, json!({"url": moved})).await;
    assert_eq!(patched["url"], moved.as_str(), "shown masked");
    // Another user with the masked password: the password must be typed again.
    let other_user = moved.replace("zap:", "eve:");
    let refused = app
        .admin(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
        .json(&json!({"url": other_user}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["field"], "url", "{error}");
    // The page's form says the same, next to the URL.
    let (browser, csrf) = signed_in_browser(&app).await;
    let form = [
        ("csrf", csrf.as_str()),
        ("url", other_user.as_str()),
        ("granularity", "default"),
        ("enabled", "on"),
    ];
    let answer = browser.post(app.url(&format!("/ui/webhooks/{id}"))).form(&form).send().await.unwrap();
    assert_eq!(answer.status(), 422);
    assert!(answer.text().await.unwrap().contains("type the password again"));

    app.ingest(&ws, &message("m-1", "c-1", "hi")).await;
    let sent = receiver.wait_for(1).await.remove(0);
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("zap:s3cret");
    assert_eq!(sent.header("authorization"), format!("Basic {basic}"), "the stored password, not the mask");

    // The endpoint fails: the webhook is switched off and its owner e-mailed, the password masked.
    receiver.answer(Reply::status(500));
    app.ingest(&ws, &message("m-2", "c-1", "again")).await;
    let mails = smtp.wait_for(1).await;
    let mail = mails[0].to_string();
    assert!(!mail.contains("s3cret"), "no password in the e-mail: {mail}");
    assert!(mail.contains("zap:****@"), "the URL is shown masked: {mail}");
}

#[tokio::test]
async fn zoho_session_fields_obey_the_json_apis_limits_and_names_lose_reordering_characters() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let receiver = Receiver::start().await;
    let sessions = Receiver::start().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.create_webhook(&ws.id, json!({"url": sessions.url, "events": ["session_status"]})).await;
    let zoho = admin_json(
        &app,
        Method::POST,
        &format!("/api/v1/workspaces/{}/sources", ws.id),
        Some(json!({"kind": "zoho_desk", "name": "Desk"})),
        201,
    )
    .await;
    let url = zoho["inbound_url"].as_str().unwrap().to_string();
    let report = |key: &str, value: Value| {
        let mut payload = json!({"sessionStatus": "OPEN", "replyStatus": "ACCEPTED", "sessionId": "s-1",
                                 "channelId": "3942000000995017", "messagesCount": "1", "assigneeType": "AGENT"});
        let mut event =
            json!({"eventTime": "1710313788290", "eventType": "IM_Session_Status", "orgId": "78412359"});
        if ["orgId", "eventTime"].contains(&key) {
            event[key] = value;
        } else {
            payload[key] = value;
        }
        event["payload"] = payload;
        json!([event])
    };
    for key in [
        "sessionStatus",
        "replyStatus",
        "channelId",
        "sessionOldStatus",
        "messagesCount",
        "assigneeType",
        "orgId",
        "eventTime",
    ] {
        for value in [json!("x".repeat(900 * 1024)), json!("OPEN\r\nforged: line"), json!("nul\u{0}")] {
            let response = app.http.post(&url).json(&report(key, value)).send().await.unwrap();
            let status = response.status();
            let error: Value = response.json().await.unwrap();
            assert!(status == 400 || status == 413, "{key}: {status}");
            assert_eq!(error["error"]["field"], format!("sessions[0].{key}"), "{error}");
        }
    }
    assert_eq!(app.stats(&ws).await.chats, 0, "nothing of a refused request is kept");

    // Characters that reorder text leave names and file names; the text stays as written.
    let message = json!([{"payload": {"actor": {"name": "Eve\u{202E}gnp.exe"}, "sessionId": "s-2", "id": "z-1",
                                      "direction": "IN", "text": "\u{202B}שלום\u{202C}"},
                          "eventType": "IM_Message_Add"}]);
    assert_eq!(app.http.post(&url).json(&message).send().await.unwrap().status(), 200);
    let attachment = json!({"message_id": "m-1", "direction": "received", "chat": {"id": "c-1", "full_name": "\u{2066}Mallory\u{2069}"},
                            "text": "see attached", "attachments": [{"type": "document", "filename": "invoice\u{202E}fdp.exe",
                            "url": "https://files.example.com/1"}]});
    app.ingest(&ws, &attachment).await;
    let got = receiver.wait_for(2).await;
    let zoho_message = got.iter().map(Received::json).find(|p| p["message"]["message_id"] == "z-1").unwrap();
    assert_eq!(zoho_message["message"]["sender"]["full_name"], "Evegnp.exe");
    assert_eq!(zoho_message["message"]["text"], "\u{202B}שלום\u{202C}");
    let api_message = got.iter().map(Received::json).find(|p| p["message"]["message_id"] == "m-1").unwrap();
    assert_eq!(api_message["chat"]["full_name"], "Mallory");
    let shown = api_message.to_string();
    assert!(!shown.contains('\u{202E}') && !shown.contains('\u{2066}'), "{shown}");
}

#[tokio::test]
async fn the_small_ones_ipv4_translated_addresses_no_store_long_names_and_spreadsheet_cells() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    // The SSRF guard refuses IPv4-translated addresses (::ffff:0:0/96), here 127.0.0.1's.
    let refused = app
        .admin(Method::POST, &format!("/api/v1/workspaces/{}/webhooks", ws.id))
        .json(&json!({"url": "http://[::ffff:0:7f00:1]:9/hook"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.headers()["cache-control"].to_str().unwrap().contains("no-store"));
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["field"], "url");
    // Every admin answer is kept out of caches: they hold ingest keys and secrets.
    for path in [
        "/api/v1/workspaces".to_string(),
        format!("/api/v1/workspaces/{}", ws.id),
        format!("/api/v1/workspaces/{}/sources", ws.id),
        "/api/v1/webhooks/wh_none".to_string(),
    ] {
        let response = app.admin(Method::GET, &path).send().await.unwrap();
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
    }

    // A very long sender name is shortened in the note; the note's limit holds.
    let receiver = Receiver::start().await;
    let hook = app
        .create_webhook(&ws.id, json!({"url": receiver.url, "granularity": "1h", "note_max_chars": 500}))
        .await;
    let mut long = message("m-1", "c-1", &"x".repeat(300));
    long["sender"]["full_name"] = json!("&".repeat(512));
    let mut hostile = message("m-2", "c-1", " =1+1");
    hostile["sender"]["full_name"] = json!("＝HYPERLINK(\"https://evil.example\")");
    app.ingest(&ws, &json!([long, hostile])).await;
    app.advance(Duration::from_secs(1));
    assert!(app.flush(&ws.id).await >= 1);
    let bundles = receiver.wait_for(1).await;
    for bundle in &bundles {
        let note = bundle.json()["aggregation"].as_str().unwrap().to_string();
        assert!(note.chars().count() <= 500, "{} characters", note.chars().count());
    }
    // Cells a spreadsheet would run, also after a space or in full-width, are neutralised.
    let id = hook["id"].as_str().unwrap();
    receiver.answer(Reply::status(500).body(" =HYPERLINK(\"https://evil.example\")"));
    app.ingest(&ws, &message("m-3", "c-2", "＋1")).await;
    app.advance(Duration::from_secs(1));
    app.flush(&ws.id).await;
    app.attempts(id, 2).await;
    let csv = app.admin(Method::GET, &format!("/api/v1/webhooks/{id}/log?format=csv")).send().await.unwrap();
    let text = csv.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    for row in reader.records() {
        for cell in row.unwrap().iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r', '\n', ' ', '＝', '＋', '－', '＠']),
                "{cell:?} would run in a spreadsheet"
            );
        }
    }
}

#[tokio::test]
async fn a_transcript_page_is_bounded_and_links_a_long_message_whole() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let long = format!("{}THE-END", "long words ".repeat(5_000));
    let mut messages = vec![message("m-0", "c-1", &long)];
    for i in 1..30 {
        messages.push(message(&format!("m-{i}"), "c-1", &"y".repeat(60 * 1024)));
    }
    for chunk in messages.chunks(10) {
        app.ingest(&ws, &json!(chunk)).await;
    }
    let chats =
        admin_json(&app, Method::GET, &format!("/api/v1/workspaces/{}/chats", ws.id), None, 200).await;
    let chat =
        admin_json(&app, Method::GET, &format!("/api/v1/chats/{}", chats["chats"][0]["id"]), None, 200).await;
    let link = chat["transcript_url"].as_str().unwrap().to_string();
    let page = app.http.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(page.len() < 200 * 1024, "a page of 30 messages of 60 KiB is {} bytes", page.len());
    assert!(!page.contains("THE-END"), "a long message is shortened");
    let whole = page
        .split("href=\"?message=")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(whole.len(), 30, "each long message links to itself whole");
    // The oldest message, whole, on a page of its own.
    let first = whole.last().unwrap();
    let alone = app.http.get(format!("{link}?message={first}")).send().await.unwrap();
    assert_eq!(alone.status(), 200);
    let alone = alone.text().await.unwrap();
    assert!(alone.contains("THE-END") && alone.contains("Back to the conversation"));
    assert_eq!(app.http.get(format!("{link}?message=999999")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_wechat_url_checks_signature_cannot_carry_a_body() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let src = admin_json(
        &app,
        Method::POST,
        &format!("/api/v1/workspaces/{}/sources", ws.id),
        Some(json!({"kind": "wechat", "name": "OA", "credentials": {"token": "wx-token", "app_id": "wx1"}})),
        201,
    )
    .await;
    let url = src["inbound_url"].as_str().unwrap().to_string();
    let timestamp = (start_time().timestamp() - 5).to_string();
    let signed = format!(
        "{url}?signature={}&timestamp={timestamp}&nonce=n1",
        wechat::signature(&["wx-token", &timestamp, "n1"])
    );
    let check = app.http.get(format!("{signed}&echostr=e1")).send().await.unwrap();
    assert_eq!(check.text().await.unwrap(), "e1");
    assert_eq!(
        app.http.get(format!("{signed}&echostr=e1")).send().await.unwrap().status(),
        200,
        "WeChat checking again"
    );
    // The same signature, posted with a message: a replay of the URL check.
    let push = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[openid-1]]></FromUserName>\
                <CreateTime>1709294400</CreateTime><MsgType><![CDATA[text]]></MsgType>\
                <Content>send money</Content><MsgId>1</MsgId></xml>";
    assert_eq!(app.http.post(&signed).body(push).send().await.unwrap().status(), 401);
    assert_eq!(app.stats(&ws).await.messages, 0);
}
