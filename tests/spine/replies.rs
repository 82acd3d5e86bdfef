//! Answering a chat: `POST /api/v1/chats/{id}/messages` stores the reply as a `sent` message of
//! the chat (so every webhook sees it) and sends it through the chat's own channel. The vendors
//! are local servers that take the requests their published documents describe and answer as
//! the vendors do:
//! - Twilio, "Create a Message" (`CreateMessage` in twilio-oai's `twilio_api_v2010.json`:
//!   `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP Basic; `201` with
//!   the message resource, errors as `{"code", "message", "more_info", "status"}`);
//! - Meta, WhatsApp Cloud API "Send message" (`sendMessage` in facebook/openapi's
//!   `business-messaging-api_v23.0.yaml`: `POST /{Version}/{Phone-Number-ID}/messages`, bearer
//!   token, JSON; `200` with `messages[0].id`, errors as `{"error": {"message", "type", "code",
//!   "error_data", "fbtrace_id"}}`);
//! - WeChat, "客服消息 — 发消息" (`POST /cgi-bin/message/custom/send?access_token=…`, answered
//!   200 with `{"errcode", "errmsg"}`), with the access token of "获取Access token";
//! - Chatwoot, "Create New Message" (`POST /api/v1/accounts/{account_id}/conversations/
//!   {conversation_id}/messages` with the `api_access_token` header; `200` with the message,
//!   `401 {"error": "Invalid Access Token"}`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine;
use chatbundle::clock::ManualClock;
use serde_json::{Value, json};

use crate::helpers::*;

/// One request a vendor server took.
#[derive(Debug, Clone)]
struct Taken {
    path: String,
    query: String,
    headers: HeaderMap,
    body: String,
}

impl Taken {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_str(&self.body).unwrap()
    }

    fn field(&self, name: &str) -> Option<String> {
        self.form().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// A vendor server: what it took, and answers to give instead of success, in order.
#[derive(Clone, Default)]
struct Vendor {
    taken: Arc<Mutex<Vec<Taken>>>,
    instead: Arc<Mutex<VecDeque<(u16, Value)>>>,
}

impl Vendor {
    fn take(
        &self,
        path: &str,
        query: Option<String>,
        headers: &HeaderMap,
        body: &str,
    ) -> Option<(StatusCode, Value)> {
        self.taken.lock().unwrap().push(Taken {
            path: path.into(),
            query: query.unwrap_or_default(),
            headers: headers.clone(),
            body: body.into(),
        });
        self.instead.lock().unwrap().pop_front().map(|(s, v)| (StatusCode::from_u16(s).unwrap(), v))
    }

    /// The next send is answered with this instead of success.
    fn answer_next(&self, status: u16, body: Value) {
        self.instead.lock().unwrap().push_back((status, body));
    }

    fn sends(&self, path_part: &str) -> Vec<Taken> {
        self.taken.lock().unwrap().iter().filter(|t| t.path.contains(path_part)).cloned().collect()
    }

    async fn wait_for(&self, path_part: &str, n: usize) -> Vec<Taken> {
        eventually(&format!("{n} requests to {path_part}"), || async {
            let sends = self.sends(path_part);
            (sends.len() >= n).then_some(sends)
        })
        .await
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Twilio's Messages resource for account `AC123` (Auth Token `12345`).
async fn twilio_api(vendor: Vendor) -> String {
    let router = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Messages.json",
            post(|State(v): State<Vendor>, Path(account): Path<String>, headers: HeaderMap, body: String| async move {
                let instead = v.take(&format!("/2010-04-01/Accounts/{account}/Messages.json"), None, &headers, &body);
                let auth = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
                if auth != Some(basic("AC123", "12345").as_str()) || account != "AC123" {
                    let error = json!({"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401});
                    return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
                }
                let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
                let get = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
                if get("To").is_none() {
                    let error = json!({"code": 21604, "message": "A 'To' phone number is required.", "more_info": "https://www.twilio.com/docs/errors/21604", "status": 400});
                    return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
                }
                if get("Body").is_none() && get("ContentSid").is_none() {
                    let error = json!({"code": 21619, "message": "A text message body or media urls must be specified.", "more_info": "https://www.twilio.com/docs/errors/21619", "status": 400});
                    return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
                }
                if let Some((status, body)) = instead {
                    return (status, axum::Json(body)).into_response();
                }
                let n = v.taken.lock().unwrap().len();
                let sid = format!("SM{n:032x}");
                let message = json!({
                    "account_sid": "AC123", "api_version": "2010-04-01", "body": get("Body"),
                    "direction": "outbound-api", "error_code": null, "error_message": null,
                    "from": get("From"), "to": get("To"), "num_media": "0", "num_segments": "1",
                    "price": null, "price_unit": null, "messaging_service_sid": null, "sid": sid,
                    "status": "queued", "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
                    "uri": format!("/2010-04-01/Accounts/AC123/Messages/{sid}.json"),
                });
                (StatusCode::CREATED, axum::Json(message)).into_response()
            }),
        )
        .with_state(vendor);
    serve(router).await
}

/// Meta's Graph API: messages from phone number id `1065` with the token `EAAG-token`.
async fn meta_graph(vendor: Vendor) -> String {
    let router = axum::Router::new()
        .route(
            "/{version}/{number}/messages",
            post(|State(v): State<Vendor>, Path((version, number)): Path<(String, String)>, headers: HeaderMap, body: String| async move {
                let instead = v.take(&format!("/{version}/{number}/messages"), None, &headers, &body);
                if headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()) != Some("Bearer EAAG-token") {
                    let error = json!({"error": {"message": "Invalid OAuth access token - Cannot parse access token", "type": "OAuthException", "code": 190, "fbtrace_id": "A1"}});
                    return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
                }
                let message: Value = serde_json::from_str(&body).unwrap();
                if message["messaging_product"] != "whatsapp" || message["to"].as_str().is_none() {
                    let error = json!({"error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100, "fbtrace_id": "A2"}});
                    return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
                }
                if let Some((status, body)) = instead {
                    return (status, axum::Json(body)).into_response();
                }
                let n = v.taken.lock().unwrap().len();
                let to = message["to"].as_str().unwrap();
                axum::Json(json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                                  "messages": [{"id": format!("wamid.HBgL{n}")}]}))
                .into_response()
            }),
        )
        .with_state(vendor);
    serve(router).await
}

/// WeChat's API for AppID `wx123` (AppSecret `wx-secret`): access tokens, then customer-service
/// messages. A token handed out is good until `expire_tokens`.
async fn wechat_api(vendor: Vendor) -> String {
    let router = axum::Router::new()
        .route(
            "/cgi-bin/token",
            get(|State(v): State<Vendor>, Query(q): Query<Vec<(String, String)>>, headers: HeaderMap| async move {
                let n = v.sends("/cgi-bin/token").len();
                v.taken.lock().unwrap().push(Taken { path: "/cgi-bin/token".into(), query: String::new(), headers, body: String::new() });
                let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
                if get("appid") != Some("wx123") || get("secret") != Some("wx-secret") {
                    return axum::Json(json!({"errcode": 40013, "errmsg": "invalid appid"}));
                }
                axum::Json(json!({"access_token": format!("TOKEN_{n}"), "expires_in": 7200}))
            }),
        )
        .route(
            "/cgi-bin/message/custom/send",
            post(|State(v): State<Vendor>, Query(q): Query<Vec<(String, String)>>, headers: HeaderMap, body: String| async move {
                let token = q.iter().find(|(k, _)| k == "access_token").map(|(_, v)| v.clone());
                let instead = v.take("/cgi-bin/message/custom/send", token.clone(), &headers, &body);
                let message: Value = serde_json::from_str(&body).unwrap();
                if token.as_deref() != Some("TOKEN_0") && token.as_deref() != Some("TOKEN_1") {
                    return axum::Json(json!({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}));
                }
                if message["msgtype"] != "text" || message["touser"].as_str().is_none() {
                    return axum::Json(json!({"errcode": 40008, "errmsg": "invalid message type"}));
                }
                if let Some((_, body)) = instead {
                    return axum::Json(body);
                }
                axum::Json(json!({"errcode": 0, "errmsg": "ok"}))
            }),
        )
        .with_state(vendor);
    serve(router).await
}

/// Chatwoot's API for account 3 with the access token `cw-token`.
async fn chatwoot_api(vendor: Vendor) -> String {
    let router = axum::Router::new()
        .route(
            "/api/v1/accounts/{account}/conversations/{conversation}/messages",
            post(
                |State(v): State<Vendor>,
                 Path((account, conversation)): Path<(String, String)>,
                 headers: HeaderMap,
                 body: String| async move {
                    let path = format!("/api/v1/accounts/{account}/conversations/{conversation}/messages");
                    let instead = v.take(&path, None, &headers, &body);
                    if headers.get("api_access_token").and_then(|h| h.to_str().ok()) != Some("cw-token") {
                        return (
                            StatusCode::UNAUTHORIZED,
                            axum::Json(json!({"error": "Invalid Access Token"})),
                        )
                            .into_response();
                    }
                    if account != "3" {
                        return (
                            StatusCode::NOT_FOUND,
                            axum::Json(json!({"error": "Resource could not be found"})),
                        )
                            .into_response();
                    }
                    if let Some((status, body)) = instead {
                        return (status, axum::Json(body)).into_response();
                    }
                    let message: Value = serde_json::from_str(&body).unwrap();
                    axum::Json(json!({"id": 9001, "content": message["content"], "message_type": 1,
                                  "conversation_id": conversation.parse::<i64>().unwrap(), "private": false,
                                  "created_at": 1_700_000_000}))
                    .into_response()
                },
            ),
        )
        .with_state(vendor);
    serve(router).await
}

async fn chat_id(app: &TestApp, ws: &Workspace, external: &str) -> i64 {
    let chats = app.get_json(&format!("/api/v1/workspaces/{}/chats", ws.id)).await;
    chats["chats"].as_array().unwrap().iter().find(|c| c["chat_id"] == external).expect("the chat")["id"]
        .as_i64()
        .unwrap()
}

async fn answer(app: &TestApp, chat: i64, body: Value) -> reqwest::Response {
    app.admin(reqwest::Method::POST, &format!("/api/v1/chats/{chat}/messages"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn status_of(app: &TestApp, chat: i64, message_id: &str) -> Value {
    app.get_json(&format!("/api/v1/chats/{chat}/messages/{message_id}")).await
}

async fn settled(app: &TestApp, chat: i64, message_id: &str, status: &str) -> Value {
    eventually(&format!("reply {message_id} {status}"), || async {
        let now = status_of(app, chat, message_id).await;
        (now["status"] == status).then_some(now)
    })
    .await
}

/// The activity rows of `kind` in a webhook's log (which holds its workspace's events too).
async fn events(app: &TestApp, webhook: &Value, kind: &str) -> Vec<Value> {
    let log = log_text(app, webhook).await;
    log.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|e| e["kind"] == kind).collect()
}

async fn log_text(app: &TestApp, webhook: &Value) -> String {
    app.get_text(&format!("/api/v1/webhooks/{}/log", webhook["id"].as_str().unwrap())).await
}

#[tokio::test]
async fn a_twilio_chat_is_answered_through_twilio_retried_after_a_5xx_and_refusals_are_kept() {
    let vendor = Vendor::default();
    let dir = test_dir();
    let mut config = test_config(&dir);
    config.vendors.twilio_api = twilio_api(vendor.clone()).await;
    let app = TestApp::spawn_with(dir, config, ManualClock::new(start_time())).await;
    let ws = app.workspace().await;
    let crm = Receiver::start().await;
    let webhook = app.create_webhook(&ws.id, json!({"url": crm.url})).await;
    let twilio = source(
        &app,
        &ws,
        json!({"kind": "twilio", "name": "Twilio", "credentials": {"auth_token": "12345", "account_sid": "AC123"}}),
    )
    .await;
    let url = twilio["inbound_url"].as_str().unwrap();
    post_twilio_ok(
        &app,
        url,
        &[
            ("MessageSid", "SMin1"),
            ("AccountSid", "AC123"),
            ("From", "whatsapp:+14017122661"),
            ("To", "whatsapp:+14155238886"),
            ("Body", "Is my order on its way?"),
        ],
    )
    .await;
    let inbound = crm.wait_for(1).await[0].json();
    let chat = inbound["chat"]["id"].as_i64().expect("every payload names the chat's id");
    assert_eq!(chat, chat_id(&app, &ws, "+14017122661").await);

    // Answered: 202 at once, the reply a `sent` message every webhook sees.
    let answered =
        answer(&app, chat, json!({"text": "Yes, it ships today.", "idempotency_key": "zap-1"})).await;
    assert_eq!(answered.status(), 202);
    let answered: Value = answered.json().await.unwrap();
    let message_id = answered["message_id"].as_str().unwrap().to_string();
    let sent = crm.wait_for(2).await[1].json();
    assert_eq!(sent["message"]["direction"], "sent");
    assert_eq!(sent["message"]["message_id"], message_id.as_str());
    assert_eq!(sent["message"]["text"], "Yes, it ships today.");
    assert_eq!(sent["chat"]["id"], chat);
    // Sent through Twilio's Messages API, from the number the customer wrote to.
    let taken = vendor.wait_for("/Messages.json", 1).await;
    assert_eq!(taken[0].path, "/2010-04-01/Accounts/AC123/Messages.json");
    assert_eq!(taken[0].headers[header::CONTENT_TYPE], "application/x-www-form-urlencoded");
    assert_eq!(
        (taken[0].field("To"), taken[0].field("From"), taken[0].field("Body")),
        (
            Some("whatsapp:+14017122661".into()),
            Some("whatsapp:+14155238886".into()),
            Some("Yes, it ships today.".into())
        )
    );
    let done = settled(&app, chat, &message_id, "sent").await;
    assert_eq!(done["vendor_id"], format!("SM{:032x}", 1));
    assert_eq!(done["error"], Value::Null);

    // The same idempotency key again: the same reply, nothing more sent or stored.
    let again = answer(&app, chat, json!({"text": "Yes, it ships today.", "idempotency_key": "zap-1"})).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.json::<Value>().await.unwrap()["message_id"], message_id.as_str());
    let other = answer(&app, chat, json!({"text": "Tracking: ZX81", "idempotency_key": "zap-2"})).await;
    let other: Value = other.json().await.unwrap();
    vendor.wait_for("/Messages.json", 2).await;
    settled(&app, chat, other["message_id"].as_str().unwrap(), "sent").await;
    assert_eq!(vendor.sends("/Messages.json").len(), 2, "zap-1 once, zap-2 once");
    assert_eq!(crm.wait_for(3).await.len(), 3);

    // Twilio fails (500): the reply waits and is tried again on schedule, then goes through.
    vendor.answer_next(500, json!({"code": 20500, "message": "Internal Server Error", "status": 500}));
    let retried: Value =
        answer(&app, chat, json!({"text": "Sorry, one more thing."})).await.json().await.unwrap();
    let retried_id = retried["message_id"].as_str().unwrap();
    let waiting = eventually("the 500 recorded", || async {
        let now = status_of(&app, chat, retried_id).await;
        (now["attempts"] == 1 && now["error"]["code"] == "20500").then_some(now)
    })
    .await;
    assert_eq!(waiting["status"], "queued");
    app.advance(Duration::from_secs(10));
    settled(&app, chat, retried_id, "sent").await;
    assert_eq!(vendor.sends("/Messages.json").len(), 4, "once more after the 500");

    // Twilio refuses (400, 21211): recorded with its code and words, never sent again.
    vendor.answer_next(
        400,
        json!({"code": 21211, "message": "The 'To' number is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}),
    );
    let refused: Value = answer(&app, chat, json!({"text": "Hello?"})).await.json().await.unwrap();
    let refused_id = refused["message_id"].as_str().unwrap();
    let failed = settled(&app, chat, refused_id, "failed").await;
    assert_eq!(failed["error"]["code"], "21211");
    assert_eq!(failed["error"]["message"], "The 'To' number is not a valid phone number.");
    app.advance(Duration::from_secs(3600));
    // A later reply goes out; the refused one was not tried again.
    let later: Value = answer(&app, chat, json!({"text": "Hello again"})).await.json().await.unwrap();
    settled(&app, chat, later["message_id"].as_str().unwrap(), "sent").await;
    assert_eq!(vendor.sends("/Messages.json").len(), 6);
    // The activity log says who sent what to which chat, and the vendor's answer (never the text).
    let queued = events(&app, &webhook, "reply_queued").await;
    assert_eq!(queued.len(), 5);
    assert!(queued.iter().all(|e| e["actor"] == "operator" && e["detail"]["chat_id"] == chat), "{queued:?}");
    let failures = events(&app, &webhook, "reply_failed").await;
    assert_eq!(failures[0]["detail"]["error"]["code"], "21211");
    assert_eq!(events(&app, &webhook, "reply_retrying").await[0]["detail"]["error"]["code"], "20500");
    let sent_rows = events(&app, &webhook, "reply_sent").await;
    assert!(sent_rows.iter().any(|e| e["detail"]["vendor_id"] == format!("SM{:032x}", 1)), "{sent_rows:?}");
    let rows: Vec<Value> = log_text(&app, &webhook)
        .await
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"].as_str().unwrap().starts_with("reply_"))
        .collect();
    let rows = serde_json::to_string(&rows).unwrap();
    assert!(!rows.contains("Hello again") && !rows.contains("12345"), "no text, no credential: {rows}");

    // Past WhatsApp's 24 hours: 409 naming why, nothing stored; an approved template still goes.
    app.advance(Duration::from_secs(24 * 3600));
    let messages_before =
        app.get_json(&format!("/api/v1/workspaces/{}/chats", ws.id)).await["chats"][0]["messages"].clone();
    let closed = answer(&app, chat, json!({"text": "Still there?"})).await;
    assert_eq!(closed.status(), 409);
    let closed: Value = closed.json().await.unwrap();
    assert_eq!(closed["error"]["code"], "reply_window_closed");
    assert!(closed["error"]["detail"].as_str().unwrap().contains("24 hours"), "{closed}");
    let messages_after =
        app.get_json(&format!("/api/v1/workspaces/{}/chats", ws.id)).await["chats"][0]["messages"].clone();
    assert_eq!(messages_before, messages_after, "nothing stored");
    let template =
        json!({"template": {"name": "HXb5b62575e6e4ff6129ad7c8efe1f983e", "parameters": ["12/1", "3pm"]}});
    let templated: Value = answer(&app, chat, template).await.json().await.unwrap();
    settled(&app, chat, templated["message_id"].as_str().unwrap(), "sent").await;
    let last = vendor.sends("/Messages.json").pop().unwrap();
    assert_eq!(last.field("ContentSid").as_deref(), Some("HXb5b62575e6e4ff6129ad7c8efe1f983e"));
    let variables: Value = serde_json::from_str(&last.field("ContentVariables").unwrap()).unwrap();
    assert_eq!(variables, json!({"1": "12/1", "2": "3pm"}));
    assert_eq!(last.field("Body"), None);
}

#[tokio::test]
async fn a_meta_whatsapp_chat_is_answered_through_the_cloud_api_and_its_echo_is_not_stored_twice() {
    let vendor = Vendor::default();
    let dir = test_dir();
    let mut config = test_config(&dir);
    config.vendors.meta_graph = format!("{}/v23.0", meta_graph(vendor.clone()).await);
    let app = TestApp::spawn_with(dir, config, ManualClock::new(start_time())).await;
    let ws = app.workspace().await;
    let crm = Receiver::start().await;
    app.create_webhook(&ws.id, json!({"url": crm.url})).await;
    // Without the phone number id, replies cannot be sent: 409 naming what is missing.
    let meta = source(
        &app,
        &ws,
        json!({"kind": "whatsapp", "name": "Meta", "credentials": {"app_secret": "meta-secret", "verify_token": "v", "access_token": "EAAG-token"}}),
    )
    .await;
    let inbound_url = meta["inbound_url"].as_str().unwrap().to_string();
    let push = |id: &str, field: &str, item: Value| {
        let key = if field == "messages" { "messages" } else { "message_echoes" };
        json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": field,
            "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550001", "phone_number_id": "1065"},
                      "contacts": [{"profile": {"name": "Kenji"}, "wa_id": "819012345678"}],
                      key: [item.as_object().unwrap().clone().into_iter().chain([("id".to_string(), json!(id))]).collect::<serde_json::Map<_, _>>()]}}]}]})
    };
    let send_push = |body: Value| {
        let app = &app;
        let url = inbound_url.clone();
        async move {
            let bytes = serde_json::to_vec(&body).unwrap();
            let signature = format!("sha256={}", hex_hmac_sha256("meta-secret", &[&bytes]));
            let response = app
                .http
                .post(&url)
                .header("x-hub-signature-256", signature)
                .header("content-type", "application/json")
                .body(bytes)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    };
    send_push(push("wamid.in1", "messages", json!({"from": "819012345678", "timestamp": "1767225600", "type": "text", "text": {"body": "こんにちは"}}))).await;
    crm.wait_for(1).await;
    let chat = chat_id(&app, &ws, "819012345678").await;
    let unconfigured = answer(&app, chat, json!({"text": "Hi"})).await;
    assert_eq!(unconfigured.status(), 409);
    let unconfigured: Value = unconfigured.json().await.unwrap();
    assert_eq!(unconfigured["error"]["code"], "reply_not_configured");
    assert!(
        unconfigured["error"]["detail"].as_str().unwrap().contains("credentials.phone_number_id"),
        "{unconfigured}"
    );
    let patch = format!("/api/v1/sources/{}", meta["id"].as_str().unwrap());
    let patched = app
        .admin(reqwest::Method::PATCH, &patch)
        .json(&json!({"credentials": {"app_secret": "meta-secret", "verify_token": "v", "access_token": "EAAG-token", "phone_number_id": "1065"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);

    let answered: Value = answer(&app, chat, json!({"text": "いらっしゃいませ"})).await.json().await.unwrap();
    let message_id = answered["message_id"].as_str().unwrap().to_string();
    let taken = vendor.wait_for("/messages", 1).await;
    assert_eq!(taken[0].path, "/v23.0/1065/messages");
    assert_eq!(taken[0].headers[header::AUTHORIZATION], "Bearer EAAG-token");
    let body = taken[0].json();
    assert_eq!(
        body,
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "819012345678",
               "type": "text", "text": {"preview_url": false, "body": "いらっしゃいませ"}})
    );
    let done = settled(&app, chat, &message_id, "sent").await;
    assert_eq!(done["vendor_id"], "wamid.HBgL1");
    assert_eq!(crm.wait_for(2).await[1].json()["message"]["direction"], "sent");
    // Meta echoes what the business sent under its own id: the reply's message stands for it.
    send_push(push("wamid.HBgL1", "smb_message_echoes", json!({"from": "15550001", "to": "819012345678", "timestamp": "1767225700", "type": "text", "text": {"body": "いらっしゃいませ"}}))).await;
    send_push(push("wamid.in2", "messages", json!({"from": "819012345678", "timestamp": "1767225800", "type": "text", "text": {"body": "ありがとう"}}))).await;
    let all = crm.wait_for(3).await;
    assert_eq!(all[2].json()["message"]["message_id"], "wamid.in2", "the echo made no delivery");
    let chats = app.get_json(&format!("/api/v1/workspaces/{}/chats", ws.id)).await;
    assert_eq!(chats["chats"][0]["messages"], 3, "in, reply, in: the echo is not a fourth");

    // Meta refuses (its error object): the code and words are kept; not retried.
    vendor.answer_next(
        400,
        json!({"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException", "code": 131047,
                         "error_data": {"messaging_product": "whatsapp", "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."},
                         "fbtrace_id": "A3"}}),
    );
    let refused: Value = answer(&app, chat, json!({"text": "One more thing"})).await.json().await.unwrap();
    let failed = settled(&app, chat, refused["message_id"].as_str().unwrap(), "failed").await;
    assert_eq!(failed["error"]["code"], "131047");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("(#131047) Re-engagement message: Message failed")
    );
    assert_eq!(failed["attempts"], 1);

    // A template after the window: Meta's template message.
    app.advance(Duration::from_secs(25 * 3600));
    let template = json!({"template": {"name": "order_update", "language": "ja", "parameters": ["#1234"]}});
    let templated: Value = answer(&app, chat, template).await.json().await.unwrap();
    settled(&app, chat, templated["message_id"].as_str().unwrap(), "sent").await;
    let last = vendor.sends("/messages").pop().unwrap().json();
    assert_eq!(
        last["template"],
        json!({"name": "order_update", "language": {"code": "ja"}, "components": [{"type": "body", "parameters": [{"type": "text", "text": "#1234"}]}]})
    );
    assert_eq!(last["type"], "template");
}

#[tokio::test]
async fn a_wechat_follower_is_answered_with_a_customer_service_message_and_a_stale_token_is_renewed() {
    let vendor = Vendor::default();
    let dir = test_dir();
    let mut config = test_config(&dir);
    config.vendors.wechat_api = wechat_api(vendor.clone()).await;
    let app = TestApp::spawn_with(dir, config, ManualClock::new(start_time())).await;
    let ws = app.workspace().await;
    let crm = Receiver::start().await;
    app.create_webhook(&ws.id, json!({"url": crm.url})).await;
    let wechat = source(
        &app,
        &ws,
        json!({"kind": "wechat", "name": "WeChat", "credentials": {"token": "wx-token", "app_id": "wx123", "app_secret": "wx-secret"}}),
    )
    .await;
    let url = wechat["inbound_url"].as_str().unwrap();
    let xml = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oFollower1]]></FromUserName>\
               <CreateTime>1767225600</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content>\
               <MsgId>1001</MsgId></xml>";
    let now = start_time().timestamp().to_string();
    let (timestamp, nonce) = (now.as_str(), "n1");
    let signature = chatbundle::ingest::wechat::signature(&["wx-token", timestamp, nonce]);
    let pushed = app
        .http
        .post(format!("{url}?signature={signature}&timestamp={timestamp}&nonce={nonce}"))
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 200);
    crm.wait_for(1).await;
    let chat = chat_id(&app, &ws, "oFollower1").await;

    let answered: Value =
        answer(&app, chat, json!({"text": "您好，有什么可以帮您？"})).await.json().await.unwrap();
    settled(&app, chat, answered["message_id"].as_str().unwrap(), "sent").await;
    let sent = vendor.sends("/cgi-bin/message/custom/send");
    assert_eq!(sent[0].query, "TOKEN_0");
    assert_eq!(
        sent[0].json(),
        json!({"touser": "oFollower1", "msgtype": "text", "text": {"content": "您好，有什么可以帮您？"}})
    );
    assert_eq!(crm.wait_for(2).await[1].json()["message"]["direction"], "sent");

    // WeChat's verdict comes in a 200: 45015 (out of the reply window) is a refusal.
    vendor.answer_next(
        200,
        json!({"errcode": 45015, "errmsg": "response out of time limit or subscription is canceled"}),
    );
    let refused: Value = answer(&app, chat, json!({"text": "还在吗？"})).await.json().await.unwrap();
    let failed = settled(&app, chat, refused["message_id"].as_str().unwrap(), "failed").await;
    assert_eq!(failed["error"]["code"], "45015");
    assert_eq!(vendor.sends("/cgi-bin/token").len(), 1, "the token is kept");
    // WeChat no longer takes the token (40001): a fresh one is fetched and the reply sent with it.
    vendor.answer_next(
        200,
        json!({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}),
    );
    let renewed: Value = answer(&app, chat, json!({"text": "我们明天发货。"})).await.json().await.unwrap();
    settled(&app, chat, renewed["message_id"].as_str().unwrap(), "sent").await;
    assert_eq!(vendor.sends("/cgi-bin/token").len(), 2);
    let sent = vendor.sends("/cgi-bin/message/custom/send");
    assert_eq!(
        sent.iter().map(|t| t.query.as_str()).collect::<Vec<_>>(),
        ["TOKEN_0", "TOKEN_0", "TOKEN_0", "TOKEN_1"]
    );
    // A templated reply is WhatsApp's alone.
    let template = answer(&app, chat, json!({"template": {"name": "x"}})).await;
    assert_eq!(template.status(), 400);
    assert_eq!(template.json::<Value>().await.unwrap()["error"]["field"], "template");
}

#[tokio::test]
async fn a_chatwoot_conversation_is_answered_through_its_api_and_a_bad_token_is_a_refusal() {
    let vendor = Vendor::default();
    let api = chatwoot_api(vendor.clone()).await;
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let crm = Receiver::start().await;
    app.create_webhook(&ws.id, json!({"url": crm.url})).await;
    let chatwoot = source(
        &app,
        &ws,
        json!({"kind": "chatwoot", "name": "Chatwoot", "credentials": {"api_url": api, "account_id": "3", "api_access_token": "cw-token"}}),
    )
    .await;
    let url = chatwoot["inbound_url"].as_str().unwrap();
    let push = |id: i64, message_type: &str, content: &str| {
        json!({"event": "message_created", "id": id, "content": content, "message_type": message_type,
               "created_at": "2026-01-01T00:00:00Z", "private": false,
               "sender": {"id": 7, "name": "Ana", "type": "contact"},
               "conversation": {"id": 42, "can_reply": true, "status": "open",
                                "meta": {"sender": {"id": 7, "name": "Ana", "phone_number": "+5511999990000"}}},
               "account": {"id": 3, "name": "Acme"}})
    };
    let pushed = app.http.post(url).json(&push(500, "incoming", "Olá")).send().await.unwrap();
    assert_eq!(pushed.status(), 200);
    crm.wait_for(1).await;
    let chat = chat_id(&app, &ws, "42").await;

    let answered: Value =
        answer(&app, chat, json!({"text": "Olá! Como posso ajudar?"})).await.json().await.unwrap();
    let done = settled(&app, chat, answered["message_id"].as_str().unwrap(), "sent").await;
    assert_eq!(done["vendor_id"], "9001");
    let taken = vendor.sends("/messages");
    assert_eq!(taken[0].path, "/api/v1/accounts/3/conversations/42/messages");
    assert_eq!(
        taken[0].json(),
        json!({"content": "Olá! Como posso ajudar?", "message_type": "outgoing", "private": false})
    );
    // Chatwoot tells its webhooks of the message it made: that is the reply, not a new message.
    let echoed =
        app.http.post(url).json(&push(9001, "outgoing", "Olá! Como posso ajudar?")).send().await.unwrap();
    assert_eq!(echoed.status(), 200);
    app.http.post(url).json(&push(501, "incoming", "Obrigada")).send().await.unwrap();
    let all = crm.wait_for(3).await;
    assert_eq!(all[1].json()["message"]["direction"], "sent");
    assert_eq!(all[2].json()["message"]["text"], "Obrigada", "the echo made no delivery");

    // A token Chatwoot does not take: its 401 is a refusal, kept, not retried.
    let patch = format!("/api/v1/sources/{}", chatwoot["id"].as_str().unwrap());
    app.admin(reqwest::Method::PATCH, &patch)
        .json(&json!({"credentials": {"api_url": api, "account_id": "3", "api_access_token": "revoked"}}))
        .send()
        .await
        .unwrap();
    let refused: Value = answer(&app, chat, json!({"text": "Ainda aí?"})).await.json().await.unwrap();
    let failed = settled(&app, chat, refused["message_id"].as_str().unwrap(), "failed").await;
    assert_eq!(
        (failed["error"]["code"].as_str(), failed["error"]["message"].as_str()),
        (Some("401"), Some("Invalid Access Token"))
    );
}

#[tokio::test]
async fn json_api_chats_are_answered_through_the_workspaces_signed_reply_url_and_zoho_desk_chats_are_not() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    app.ingest(&ws, &message("m-1", "c-1", "Hello")).await;
    let chat = chat_id(&app, &ws, "c-1").await;
    // No reply_url: 409 saying how to get one.
    let unsupported = answer(&app, chat, json!({"text": "Hi"})).await;
    assert_eq!(unsupported.status(), 409);
    let unsupported: Value = unsupported.json().await.unwrap();
    assert_eq!(unsupported["error"]["code"], "reply_not_supported");
    assert!(unsupported["error"]["detail"].as_str().unwrap().contains("reply_url"));

    let system = Receiver::start().await;
    let set = app.patch_workspace(&ws.id, json!({"reply_url": system.url})).await;
    let secret = set["reply_secret"].as_str().expect("a generated secret, shown once").to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(set["has_reply_secret"], true);
    let shown = app.get_json(&format!("/api/v1/workspaces/{}", ws.id)).await;
    assert!(shown.get("reply_secret").is_none(), "never shown again");
    assert_eq!(shown["reply_url"], system.url.as_str());

    let answered: Value =
        answer(&app, chat, json!({"text": "Hi, how can we help?"})).await.json().await.unwrap();
    let message_id = answered["message_id"].as_str().unwrap().to_string();
    let got = system.wait_for(1).await.remove(0);
    let body = got.json();
    assert_eq!(body["event"], "chat.reply");
    assert_eq!(body["message_id"], message_id.as_str());
    assert_eq!(body["text"], "Hi, how can we help?");
    assert_eq!(body["chat"]["chat_id"], "c-1");
    assert_eq!(body["chat"]["id"], chat);
    // Signed as deliveries are (Standard Webhooks), with the reply's message id as webhook-id.
    assert_eq!(got.header("webhook-id"), message_id);
    let signing = chatbundle::deliver::signature::SigningSecret::parse(&secret).unwrap();
    let timestamp: i64 = got.header("webhook-timestamp").parse().unwrap();
    assert!(signing.verify(&message_id, timestamp, &got.body, got.header("webhook-signature")));
    // Nothing that authenticates goes with it: not the secret, the ingest key or the admin token.
    let sent_whole = format!("{:?}{}", got.headers, String::from_utf8_lossy(&got.body));
    for secret in [secret.as_str(), secret.trim_start_matches("whsec_"), ws.ingest_key.as_str(), ADMIN_TOKEN]
    {
        assert!(!sent_whole.contains(secret), "{secret} left the daemon: {sent_whole}");
    }
    settled(&app, chat, &message_id, "sent").await;
    // The transcript shows it as sent.
    let messages = app.get_json(&format!("/api/v1/chats/{chat}")).await;
    let transcript = app
        .http
        .get(messages["transcript_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(transcript.contains("Hi, how can we help?"), "{transcript}");

    // A receiver that refuses (422) fails the reply; its answer is kept.
    system.answer(Reply::status(422).body(r#"{"error": {"message": "unknown chat"}}"#));
    let refused: Value = answer(&app, chat, json!({"text": "Again"})).await.json().await.unwrap();
    let failed = settled(&app, chat, refused["message_id"].as_str().unwrap(), "failed").await;
    assert_eq!(
        (failed["error"]["code"].as_str(), failed["error"]["message"].as_str()),
        (Some("422"), Some("unknown chat"))
    );

    // Zoho Desk's chats are answered in Zoho Desk.
    let zoho = source(&app, &ws, json!({"kind": "zoho_desk", "name": "Zoho"})).await;
    let event = json!([{"payload": {"actor": {"name": "Ana", "externalId": "+5511999990000", "type": "ENDUSER"},
                    "messageType": "TEXT", "integration": "WHATSAPP", "createdTime": "1710293987000",
                    "sessionId": "s-1", "id": "zm-1", "text": "Help", "channelId": "c-9", "direction": "IN", "status": "SAVED"},
         "eventTime": "1710313788286", "eventType": "IM_Message_Add", "orgId": "78412359"}]);
    let pushed = app.http.post(zoho["inbound_url"].as_str().unwrap()).json(&event).send().await.unwrap();
    assert!(pushed.status().is_success(), "{}", pushed.text().await.unwrap());
    let chats = app.get_json(&format!("/api/v1/workspaces/{}/chats", ws.id)).await;
    let zoho_chat = chats["chats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"] != "api")
        .expect("the Zoho chat")["id"]
        .as_i64()
        .unwrap();
    let refused = answer(&app, zoho_chat, json!({"text": "Hi"})).await;
    assert_eq!(refused.status(), 409);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "reply_not_supported");
    assert!(refused["error"]["detail"].as_str().unwrap().contains("Zoho Desk"));

    // On the page: the chat's admins answer from its reply box; a chat that cannot be answered
    // says why instead.
    let (browser, csrf) = signed_in_browser(&app).await;
    let page = browser.get(app.url(&format!("/ui/chats/{chat}"))).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("action=\"/ui/chats/{chat}/reply\"".replace("{chat}", &chat.to_string()).as_str()),
        "{page}"
    );
    let empty = browser
        .post(app.url(&format!("/ui/chats/{chat}/reply")))
        .form(&[("csrf", csrf.as_str()), ("text", " ")])
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 422);
    assert!(empty.text().await.unwrap().contains("text: must not be empty"));
    system.answer(Reply::status(200).body("{}"));
    let sent = browser
        .post(app.url(&format!("/ui/chats/{chat}/reply")))
        .form(&[("csrf", csrf.as_str()), ("text", "Typed on the page")])
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 303);
    let got = system.wait_for(3).await;
    assert_eq!(got[2].json()["text"], "Typed on the page");
    assert_eq!(got[2].json()["sent_by"], "operator");
    let zoho_page =
        browser.get(app.url(&format!("/ui/chats/{zoho_chat}"))).send().await.unwrap().text().await.unwrap();
    assert!(
        zoho_page.contains(
            "This chat cannot be answered now: Zoho Desk chats are answered by agents in Zoho Desk"
        ),
        "{zoho_page}"
    );
    assert!(!zoho_page.contains("/reply\""), "no reply box");
}

#[tokio::test]
async fn only_who_may_change_a_workspace_answers_its_chats_and_bad_replies_name_their_field() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    app.ingest(&ws, &message("m-1", "c-1", "Hello")).await;
    let chat = chat_id(&app, &ws, "c-1").await;
    let system = Receiver::start().await;
    app.patch_workspace(&ws.id, json!({"reply_url": system.url})).await;
    let token = |role: &str| {
        let app = &app;
        let ws = &ws;
        let role = role.to_string();
        async move {
            let made = app
                .admin(reqwest::Method::POST, &format!("/api/v1/workspaces/{}/tokens", ws.id))
                .json(&json!({"name": format!("zap-{role}"), "role": role}))
                .send()
                .await
                .unwrap();
            assert_eq!(made.status(), 201);
            made.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string()
        }
    };
    let (viewer, admin) = (token("viewer").await, token("admin").await);
    let path = app.url(&format!("/api/v1/chats/{chat}/messages"));
    let as_viewer =
        app.http.post(&path).bearer_auth(&viewer).json(&json!({"text": "Hi"})).send().await.unwrap();
    assert_eq!(as_viewer.status(), 403);
    let as_admin =
        app.http.post(&path).bearer_auth(&admin).json(&json!({"text": "Hi"})).send().await.unwrap();
    assert_eq!(as_admin.status(), 202);
    let reply: Value = as_admin.json().await.unwrap();
    // The chat shows the token's name as the sender.
    let got = system.wait_for(1).await[0].json();
    assert_eq!(got["sent_by"], "token:zap-admin");
    let status = app
        .http
        .get(app.url(&format!("/api/v1/chats/{chat}/messages/{}", reply["message_id"].as_str().unwrap())))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200, "a viewer may follow it");

    for (body, field) in [
        (json!({}), "text"),
        (json!({"text": "  "}), "text"),
        (json!({"text": "x".repeat(4097)}), "text"),
        (json!({"text": "a", "template": {"name": "t"}}), "template"),
        (json!({"text": "a", "idempotency_key": ""}), "idempotency_key"),
    ] {
        let refused = answer(&app, chat, body.clone()).await;
        assert_eq!(refused.status(), 400, "{body}");
        assert_eq!(refused.json::<Value>().await.unwrap()["error"]["field"], field, "{body}");
    }
    let unknown = answer(&app, 999_999, json!({"text": "Hi"})).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(system.received().len(), 1, "nothing else was sent");
}
