//! Media a CRM can open: with `media: "link"`, each attachment whose file chatbundle can fetch
//! carries a `download_url` that streams it from the channel, with the source's credentials, when
//! it is opened. The vendors are local servers that answer as their documents say:
//! - Twilio, "Retrieve Media" (`GET /2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}/Media/{Sid}`,
//!   HTTP Basic with the Account SID and Auth Token, answered with a redirect to Twilio's storage);
//! - Meta, WhatsApp Cloud API "Media" (`GET /{media-id}` with a bearer token answers
//!   `{"url", "mime_type", "sha256", "file_size", "id", "messaging_product"}`; `GET url` with the
//!   same token answers the file);
//! - WeChat, "获取临时素材" (`GET /cgi-bin/media/get?access_token=…&media_id=…`) with an access
//!   token from "获取Access token" (`GET /cgi-bin/token?grant_type=client_credential&appid=…&secret=…`,
//!   `{"access_token", "expires_in": 7200}`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use chatbundle::clock::ManualClock;
use serde_json::{Value, json};

use crate::helpers::*;

const PHOTO: &[u8] = b"\xff\xd8\xff\xe0 a customer's photo";

/// What a vendor server saw: each request's path and its Authorization header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct Vendor {
    base: String,
    seen: Seen,
}

fn note(seen: &Seen, path: &str, headers: &HeaderMap) {
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap().to_string());
    seen.lock().unwrap().push((path.to_string(), auth));
}

/// Storage that serves the photo to anyone who has its address (as Twilio's signed storage URLs do).
async fn storage() -> Vendor {
    let seen: Seen = Arc::default();
    let router = axum::Router::new()
        .route(
            "/files/{name}",
            get(|State(seen): State<Seen>, Path(name): Path<String>, headers: HeaderMap| async move {
                note(&seen, &format!("/files/{name}"), &headers);
                // A video over the tests' one-MiB cap.
                let body = if name == "MEbig.jpg" { vec![0u8; 2 * 1024 * 1024] } else { PHOTO.to_vec() };
                ([(header::CONTENT_TYPE, "image/jpeg")], body).into_response()
            }),
        )
        .with_state(seen.clone());
    Vendor { base: serve(router).await, seen }
}

/// Twilio's media resource: Basic authentication with `AC123` and `12345`, then a redirect to
/// the file in storage.
async fn twilio_api(storage: String) -> Vendor {
    let seen: Seen = Arc::default();
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("AC123:12345"));
    let router = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Messages/{message}/Media/{media}",
            get(
                move |State(seen): State<Seen>,
                      Path((account, message, media)): Path<(String, String, String)>,
                      headers: HeaderMap| async move {
                    note(
                        &seen,
                        &format!("/2010-04-01/Accounts/{account}/Messages/{message}/Media/{media}"),
                        &headers,
                    );
                    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                    if given != Some(expected.as_str()) || account != "AC123" {
                        let body = json!({"code": 20003, "message": "Authenticate", "status": 401});
                        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
                    }
                    // A storage address the SSRF guard refuses (not allow-listed in these tests).
                    let to = if media == "MEprivate" {
                        "http://10.1.2.3/files/private.jpg".to_string()
                    } else {
                        format!("{storage}/files/{media}.jpg")
                    };
                    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
                },
            ),
        )
        .with_state(seen.clone());
    Vendor { base: serve(router).await, seen }
}

/// Meta's Graph API: `GET /{media-id}` with the bearer token gives the file's URL, which the
/// same token opens.
async fn meta_graph() -> Vendor {
    let seen: Seen = Arc::default();
    let router = axum::Router::new()
        .route(
            "/{id}",
            get(|State(seen): State<Seen>, Path(id): Path<String>, headers: HeaderMap| async move {
                note(&seen, &format!("/{id}"), &headers);
                if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some("Bearer EAAG-token") {
                    let error = json!({"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}});
                    return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
                }
                let host = headers.get(header::HOST).unwrap().to_str().unwrap().to_string();
                axum::Json(json!({"messaging_product": "whatsapp", "url": format!("http://{host}/lookaside/{id}"),
                                  "mime_type": "image/jpeg", "sha256": "…", "file_size": PHOTO.len(), "id": id}))
                .into_response()
            }),
        )
        .route(
            "/lookaside/{id}",
            get(|State(seen): State<Seen>, Path(id): Path<String>, headers: HeaderMap| async move {
                note(&seen, &format!("/lookaside/{id}"), &headers);
                if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some("Bearer EAAG-token") {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                ([(header::CONTENT_TYPE, "image/jpeg")], PHOTO).into_response()
            }),
        )
        .with_state(seen.clone());
    Vendor { base: serve(router).await, seen }
}

/// WeChat's API: an access token for AppID `wx123` and its AppSecret, then the file by media id.
async fn wechat_api() -> Vendor {
    let seen: Seen = Arc::default();
    let router = axum::Router::new()
        .route(
            "/cgi-bin/token",
            get(|State(seen): State<Seen>, Query(q): Query<Vec<(String, String)>>, headers: HeaderMap| async move {
                note(&seen, "/cgi-bin/token", &headers);
                let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
                if get("grant_type") != Some("client_credential")
                    || get("appid") != Some("wx123")
                    || get("secret") != Some("wx-secret")
                {
                    return axum::Json(json!({"errcode": 40013, "errmsg": "invalid appid"}));
                }
                axum::Json(json!({"access_token": "ACCESS_TOKEN_1", "expires_in": 7200}))
            }),
        )
        .route(
            "/cgi-bin/media/get",
            get(|State(seen): State<Seen>, Query(q): Query<Vec<(String, String)>>, headers: HeaderMap| async move {
                note(&seen, "/cgi-bin/media/get", &headers);
                let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
                if get("access_token") != Some("ACCESS_TOKEN_1") {
                    return axum::Json(json!({"errcode": 40001, "errmsg": "invalid credential"})).into_response();
                }
                ([(header::CONTENT_TYPE, "image/jpeg")], PHOTO).into_response()
            }),
        )
        .with_state(seen.clone());
    Vendor { base: serve(router).await, seen }
}

#[tokio::test]
async fn a_twilio_photo_opens_through_its_download_url_until_the_link_expires() {
    let files = storage().await;
    let twilio_api = twilio_api(files.base.clone()).await;
    let dir = test_dir();
    let mut config = test_config(&dir);
    config.vendors.twilio_api = twilio_api.base.clone();
    config.vendors.media_max_mib = 1;
    let app = TestApp::spawn_with(dir, config, ManualClock::new(start_time())).await;
    let ws = app.workspace().await;
    // The workspace's links last two hours (from 5 minutes to 30 days; 24 hours unless set).
    let path = format!("/api/v1/workspaces/{}", ws.id);
    let short =
        app.admin(reqwest::Method::PATCH, &path).json(&json!({"media_link_ttl": "1m"})).send().await.unwrap();
    assert_eq!(short.status(), 400);
    let error: Value = short.json().await.unwrap();
    assert_eq!(error["error"]["field"], "media_link_ttl");
    let set =
        app.admin(reqwest::Method::PATCH, &path).json(&json!({"media_link_ttl": "2h"})).send().await.unwrap();
    let set: Value = set.json().await.unwrap();
    assert_eq!(set["media_link_ttl"], "2h");
    let (linked, placeholders) = (Receiver::start().await, Receiver::start().await);
    app.create_webhook(&ws.id, json!({"url": linked.url, "media": "link"})).await;
    app.create_webhook(&ws.id, json!({"url": placeholders.url, "media": "placeholder"})).await;
    let with_sid = source(
        &app,
        &ws,
        json!({"kind": "twilio", "name": "Twilio", "credentials": {"auth_token": "12345", "account_sid": "AC123"}}),
    )
    .await;
    let media_url = format!("{}/2010-04-01/Accounts/AC123/Messages/MM1/Media/ME1", twilio_api.base);
    let url = with_sid["inbound_url"].as_str().unwrap();
    post_twilio_ok(
        &app,
        url,
        &[
            ("MessageSid", "MM1"),
            ("AccountSid", "AC123"),
            ("From", "whatsapp:+14017122661"),
            ("Body", ""),
            ("NumMedia", "1"),
            ("MediaUrl0", &media_url),
            ("MediaContentType0", "image/jpeg"),
        ],
    )
    .await;
    let payload = linked.wait_for(1).await[0].json();
    let attachment = &payload["message"]["attachments"][0];
    assert_eq!(attachment["type"], "image");
    assert_eq!(attachment["url"], media_url.as_str(), "the channel's own description stays");
    let link = attachment["download_url"].as_str().expect("a download_url").to_string();
    assert!(link.starts_with(&format!("{}/media/", app.base)), "{link}");
    assert!(!link.contains("AC123") && !link.contains("12345"), "the link holds no credential: {link}");
    let plain = placeholders.wait_for(1).await[0].json();
    assert!(plain["message"]["attachments"][0].get("download_url").is_none(), "only for media: link");

    // Opened: fetched from Twilio with the source's credentials, the redirect followed, the file
    // streamed through with Twilio's content type.
    let opened = app.http.get(&link).send().await.unwrap();
    assert_eq!(opened.status(), 200);
    assert_eq!(opened.headers()["content-type"], "image/jpeg");
    assert_eq!(opened.bytes().await.unwrap().as_ref(), PHOTO);
    let asked = twilio_api.seen.lock().unwrap().clone();
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("AC123:12345"));
    assert_eq!(asked, [("/2010-04-01/Accounts/AC123/Messages/MM1/Media/ME1".to_string(), Some(basic))]);
    let stored = files.seen.lock().unwrap().clone();
    assert_eq!(stored, [("/files/ME1.jpg".to_string(), None)], "the credentials stay with Twilio");

    // A link altered, or one of another message, leads nowhere.
    let forged = format!("{}0", &link[..link.len() - 1]);
    assert_eq!(app.http.get(&forged).send().await.unwrap().status(), 404);

    // A source without its Account SID cannot fetch: no download_url.
    let without_sid = source(
        &app,
        &ws,
        json!({"kind": "twilio", "name": "Twilio 2", "credentials": {"auth_token": "12345"}}),
    )
    .await;
    post_twilio_ok(
        &app,
        without_sid["inbound_url"].as_str().unwrap(),
        &[
            ("MessageSid", "MM2"),
            ("From", "whatsapp:+14017122662"),
            ("NumMedia", "1"),
            ("MediaUrl0", &media_url),
            ("MediaContentType0", "image/jpeg"),
        ],
    )
    .await;
    let second = linked.wait_for(2).await[1].json();
    assert!(second["message"]["attachments"][0].get("download_url").is_none(), "{second}");
    // The workspace's page says which source can give links and what the other one lacks.
    let (browser, _) = signed_in_browser(&app).await;
    let page = browser
        .get(app.url(&format!("/ui/workspaces/{}", ws.id)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Media links: its files can be opened through download links."), "{page}");
    assert!(page.contains("until the source has its <code>account_sid</code>"), "{page}");

    // The transcript links the photo through the same route.
    let transcript = app.http.get(payload["chat"]["chat_url"].as_str().unwrap()).send().await.unwrap();
    let transcript = transcript.text().await.unwrap();
    let href = transcript.split("href=\"").find(|part| part.contains("/media/")).expect("a media link");
    let href = href.split('"').next().unwrap().replace("&#38;", "&").replace("&amp;", "&");
    let from_page = app.http.get(&href).send().await.unwrap();
    assert_eq!(from_page.bytes().await.unwrap().as_ref(), PHOTO);
    assert_eq!(twilio_api.seen.lock().unwrap().len(), 2);

    // A redirect to an address the SSRF guard refuses is not followed.
    let private_url = format!("{}/2010-04-01/Accounts/AC123/Messages/MM3/Media/MEprivate", twilio_api.base);
    post_twilio_ok(
        &app,
        url,
        &[
            ("MessageSid", "MM3"),
            ("AccountSid", "AC123"),
            ("From", "whatsapp:+14017122661"),
            ("NumMedia", "1"),
            ("MediaUrl0", &private_url),
            ("MediaContentType0", "image/jpeg"),
        ],
    )
    .await;
    let third = linked.wait_for(3).await[2].json();
    let private_link = third["message"]["attachments"][0]["download_url"].as_str().unwrap().to_string();
    let refused = app.http.get(&private_link).send().await.unwrap();
    assert_eq!(refused.status(), 502);
    assert!(refused.text().await.unwrap().contains("redirect was refused"));
    assert_eq!(files.seen.lock().unwrap().len(), 2, "storage was not asked again");

    // A file over `media_max_mib` is not passed on.
    let big_url = format!("{}/2010-04-01/Accounts/AC123/Messages/MM4/Media/MEbig", twilio_api.base);
    post_twilio_ok(
        &app,
        url,
        &[
            ("MessageSid", "MM4"),
            ("AccountSid", "AC123"),
            ("From", "whatsapp:+14017122661"),
            ("NumMedia", "1"),
            ("MediaUrl0", &big_url),
            ("MediaContentType0", "video/mp4"),
        ],
    )
    .await;
    let fourth = linked.wait_for(4).await[3].json();
    let big_link = fourth["message"]["attachments"][0]["download_url"].as_str().unwrap().to_string();
    let refused = app.http.get(&big_link).send().await.unwrap();
    assert_eq!(refused.status(), 502);
    assert!(refused.text().await.unwrap().contains("too large"));

    // Within its lifetime it still opens; after it, it is refused, and Twilio is not asked.
    app.advance(Duration::from_secs(2 * 3600 - 60));
    assert_eq!(app.http.get(&link).send().await.unwrap().status(), 200);
    app.advance(Duration::from_secs(60));
    let late = app.http.get(&link).send().await.unwrap();
    assert_eq!(late.status(), 410);
    assert_eq!(twilio_api.seen.lock().unwrap().len(), 5, "Twilio is not asked for an expired link");
}

#[tokio::test]
async fn meta_and_wechat_media_are_fetched_with_the_sources_tokens() {
    let (graph, weixin) = (meta_graph().await, wechat_api().await);
    let dir = test_dir();
    let mut config = test_config(&dir);
    config.vendors.meta_graph = graph.base.clone();
    config.vendors.wechat_api = weixin.base.clone();
    let app = TestApp::spawn_with(dir, config, ManualClock::new(start_time())).await;
    let ws = app.workspace().await;
    let receiver = Receiver::start().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url, "media": "link"})).await;

    let meta = source(
        &app,
        &ws,
        json!({"kind": "whatsapp", "name": "Cloud API",
               "credentials": {"app_secret": "app-secret", "verify_token": "vt", "access_token": "EAAG-token"}}),
    )
    .await;
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Sheena"}, "wa_id": "16505551234"}],
        "messages": [{"from": "16505551234", "id": "wamid.IMG1", "timestamp": "1749416383", "type": "image",
                      "image": {"id": "1003383421387256", "mime_type": "image/jpeg", "sha256": "…"}}]
    }}]}]});
    let raw = serde_json::to_vec(&body).unwrap();
    let signature = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"app-secret").unwrap();
        mac.update(&raw);
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256={hex}")
    };
    let posted = app
        .http
        .post(meta["inbound_url"].as_str().unwrap())
        .header("x-hub-signature-256", signature)
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let payload = receiver.wait_for(1).await[0].json();
    let link =
        payload["message"]["attachments"][0]["download_url"].as_str().expect("a download_url").to_string();
    let opened = app.http.get(&link).send().await.unwrap();
    assert_eq!((opened.status(), opened.bytes().await.unwrap().as_ref()), (StatusCode::OK, PHOTO));
    let asked: Vec<String> = graph.seen.lock().unwrap().iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(asked, ["/1003383421387256", "/lookaside/1003383421387256"]);

    // WeChat: the AppSecret gets an access token, kept for the next file.
    let wechat = source(
        &app,
        &ws,
        json!({"kind": "wechat", "name": "OA",
               "credentials": {"token": "wx-token", "app_id": "wx123", "app_secret": "wx-secret"}}),
    )
    .await;
    for (n, id) in [(1, "MEDIA_1"), (2, "MEDIA_2")] {
        let xml = format!(
            "<xml><ToUserName><![CDATA[gh_866835093fea]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>\
             <CreateTime>1709294400</CreateTime><MsgType><![CDATA[image]]></MsgType>\
             <PicUrl><![CDATA[http://mmbiz.example/pic{n}]]></PicUrl><MediaId><![CDATA[{id}]]></MediaId>\
             <MsgId>2302000000000{n}</MsgId></xml>"
        );
        let url = format!(
            "{}?{}",
            wechat["inbound_url"].as_str().unwrap(),
            wechat_query("wx-token", &start_time().timestamp().to_string(), &format!("n{n}"))
        );
        assert_eq!(app.http.post(url).body(xml).send().await.unwrap().status(), 200);
        let payload = receiver.wait_for(1 + n).await[n].json();
        let link = payload["message"]["attachments"][0]["download_url"]
            .as_str()
            .expect("a download_url")
            .to_string();
        let opened = app.http.get(&link).send().await.unwrap();
        assert_eq!((opened.status(), opened.bytes().await.unwrap().as_ref()), (StatusCode::OK, PHOTO));
    }
    let asked: Vec<String> = weixin.seen.lock().unwrap().iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(asked, ["/cgi-bin/token", "/cgi-bin/media/get", "/cgi-bin/media/get"], "one token for both");

    // Chatwoot: its data_url, which needs no credential.
    let files = storage().await;
    let chatwoot =
        source(&app, &ws, json!({"kind": "chatwoot", "name": "Chatwoot", "credentials": {}})).await;
    let message = json!({"event": "message_created", "id": 501, "content": null, "message_type": "incoming",
        "created_at": "2024-03-01T12:00:00Z", "private": false,
        "attachments": [{"id": 9, "file_type": "image", "data_url": format!("{}/files/cw-9.jpg", files.base)}],
        "sender": {"id": 14, "name": "Li Wei"},
        "conversation": {"id": 207, "inbox_id": 3, "channel": "Channel::Api", "status": "open",
            "meta": {"sender": {"id": 14, "name": "Li Wei", "type": "contact"}}}});
    let posted =
        app.http.post(chatwoot["inbound_url"].as_str().unwrap()).json(&message).send().await.unwrap();
    assert_eq!(posted.status(), 200);
    let payload = receiver.wait_for(4).await[3].json();
    let link =
        payload["message"]["attachments"][0]["download_url"].as_str().expect("a download_url").to_string();
    let opened = app.http.get(&link).send().await.unwrap();
    assert_eq!((opened.status(), opened.bytes().await.unwrap().as_ref()), (StatusCode::OK, PHOTO));
    assert_eq!(files.seen.lock().unwrap().clone(), [("/files/cw-9.jpg".to_string(), None)]);
}

/// WeChat's URL signature: SHA-1 of the sorted token, timestamp and nonce.
fn wechat_query(token: &str, timestamp: &str, nonce: &str) -> String {
    format!(
        "signature={}&timestamp={timestamp}&nonce={nonce}",
        chatbundle::ingest::wechat::signature(&[token, timestamp, nonce])
    )
}
