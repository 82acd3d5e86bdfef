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
    let excerpt = headers.iter().position(|h| h == "response_excerpt").unwrap();
    let row = reader.records().next().unwrap().unwrap();
    assert_eq!(&row[excerpt], "'=HYPERLINK(\"https://evil.example\",\"click\")");
    for cell in row.iter() {
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
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
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
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
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
