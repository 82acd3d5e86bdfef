//! The web page over plain HTTP: sign-in, CSRF, form errors, transcripts. (The browser tests drive
//! the same pages in Chromium.)

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap()
}

async fn signed_in(app: &TestApp) -> (reqwest::Client, String) {
    let http = client();
    let response =
        http.post(app.url("/login")).form(&[("token", ADMIN_TOKEN), ("next", "/ui")]).send().await.unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http public_url: no Secure flag");
    let page = http.get(app.url("/ui")).send().await.unwrap().text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    (http, csrf)
}

#[tokio::test]
async fn pages_need_a_sign_in_and_a_wrong_token_is_refused() {
    let app = TestApp::spawn().await;
    let http = client();
    let response = http.get(app.url("/ui")).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/login?next=%2Fui");
    let wrong = http.post(app.url("/login")).form(&[("token", "nope")]).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("That is not the admin token."));
    let forged = http
        .get(app.url("/ui"))
        .header("cookie", "chatbundle_session=99999999999.deadbeef")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 303, "a made-up cookie is no session");
}

#[tokio::test]
async fn forms_need_the_csrf_token_and_keep_values_next_to_errors() {
    let app = TestApp::spawn().await;
    let (http, csrf) = signed_in(&app).await;
    let no_csrf = http
        .post(app.url("/ui/workspaces"))
        .form(&[("name", "A"), ("owner_email", "a@b.example")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
    let missing = http.get(app.url("/ui/webhooks/wh_nope/log")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let text = missing.text().await.unwrap();
    assert!(text.contains("<h1>404 Not Found</h1>") && text.contains("webhook not found"), "{text}");
    let impossible = http.get(app.url("/ui/webhooks/wh_%00/log")).send().await.unwrap();
    assert_eq!(impossible.status(), 404, "an id that cannot be one names nothing");
    assert!(impossible.text().await.unwrap().contains("<h1>404 Not Found</h1>"));
    let bad = http
        .post(app.url("/ui/workspaces"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "Kept name"),
            ("owner_email", "not-an-email"),
            ("timezone", "Mars/Base"),
            ("granularity", "6h"),
            ("account_phone", "+49\r\n30"),
            ("locale", "fr"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let html = bad.text().await.unwrap();
    assert!(html.contains("value=\"Kept name\""), "entered values are kept");
    assert!(html.contains("is not an e-mail address"));
    assert!(html.contains("unknown IANA time zone"));
    // The page checks the account as the API does, and says so next to the field.
    assert!(html.contains("id=\"ws-acc-phone-error\">contains the control character U+000D"), "{html}");
    assert!(html.contains("<option value=\"6h\" selected>Every 6 hours</option>"));
    assert!(html.contains("id=\"ws-locale-error\">must be one of en, ja"), "{html}");
    let listed: serde_json::Value =
        app.admin(Method::GET, "/api/v1/workspaces").send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["workspaces"].as_array().unwrap().len(), 0, "nothing was created");

    let ok = http
        .post(app.url("/ui/workspaces"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "Acme"),
            ("owner_email", "ops@acme.example"),
            ("timezone", "Europe/Berlin"),
            ("granularity", "none"),
            ("locale", "ja"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    let listed: serde_json::Value =
        app.admin(Method::GET, "/api/v1/workspaces").send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["workspaces"][0]["locale"], "ja", "the language chosen on the page");
    let page = http
        .get(app.url(ok.headers()["location"].to_str().unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The workspace's page speaks the language chosen for it.
    for label in ["まとめずに送る", "1時間ごと", "6時間ごと", "12時間ごと", "24時間ごと", "今すぐ送る"]
    {
        assert!(page.contains(label), "{label} on the page");
    }
}

#[tokio::test]
async fn transcripts_open_without_sign_in_and_a_rotated_token_is_404() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    app.ingest(&ws, &json!([message("m-1", "c-1", "first <b>words</b>"), message("m-2", "c-1", "second")]))
        .await;
    app.ingest(&ws, &message("x-1", "c-2", "someone else's chat")).await;
    let link = receiver.wait_for(1).await[0].json()["chat"]["chat_url"].as_str().unwrap().to_string();
    let anonymous = client();
    let response = anonymous.get(&link).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    let html = response.text().await.unwrap();
    assert!(
        html.contains("first &#60;b&#62;words&#60;/b&#62;")
            || html.contains("first &lt;b&gt;words&lt;/b&gt;"),
        "escaped: {html}"
    );
    assert!(html.contains("second"));
    assert!(!html.contains("someone else"), "only this chat");
    assert!(!html.contains(ws.id.as_str()) && !html.contains("Acme"), "nothing of the workspace");
    let (second, first) = (html.find(">second<").unwrap(), html.find(">first ").unwrap());
    assert!(second < first, "newest first");

    let (http, csrf) = signed_in(&app).await;
    let chats = app.store.list_chats(&ws.id, 10, 0).await.unwrap();
    let chat = chats.iter().find(|c| c.external_id == "c-1").unwrap();
    let rotated = http
        .post(app.url(&format!("/ui/chats/{}/rotate", chat.id)))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 303);
    assert_eq!(anonymous.get(&link).send().await.unwrap().status(), 404, "the old link is dead");
    let page =
        http.get(app.url(&format!("/ui/chats/{}", chat.id))).send().await.unwrap().text().await.unwrap();
    let new_link = page.split("id=\"transcript-link\" href=\"").nth(1).unwrap().split('"').next().unwrap();
    assert_ne!(new_link, link);
    assert_eq!(anonymous.get(new_link).send().await.unwrap().status(), 200);
    assert_eq!(anonymous.get(app.url("/c/short")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_new_signing_secret_is_shown_once_and_release_now_sends_the_buffer() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url, "granularity": "24h"})).await;
    let id = hook["id"].as_str().unwrap();
    let (http, csrf) = signed_in(&app).await;

    let answer = http
        .post(app.url(&format!("/ui/webhooks/{id}/secret")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let html = answer.text().await.unwrap();
    let secret = html.split("data-copy=\"signing secret\">").nth(1).unwrap().split('<').next().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let page =
        http.get(app.url(&format!("/ui/workspaces/{}", ws.id))).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains(secret), "shown once only");
    assert!(page.contains("Signing secret: set."));

    app.ingest(&ws, &message("m-1", "c-1", "buffered for a day")).await;
    app.advance(std::time::Duration::from_secs(60));
    let released = http
        .post(app.url(&format!("/ui/workspaces/{}/flush", ws.id)))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), 303);
    let target = released.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(target, format!("/ui/workspaces/{}?released=1", ws.id));
    let bundle = receiver.wait_for(1).await.remove(0);
    assert!(bundle.json()["aggregation"].as_str().unwrap().contains("buffered for a day"));
    assert!(!bundle.header("webhook-signature").is_empty(), "signed with the new secret");
    let page = http.get(app.url(&target)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Released every open window now: 1 deliveries queued."));
}

#[tokio::test]
async fn a_webhook_that_follows_its_workspace_keeps_following_when_saved_or_re_enabled() {
    let app = TestApp::spawn().await;
    let (http, csrf) = signed_in(&app).await;
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("6h", "UTC").await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap();
    let shown = || async {
        let response = app.admin(Method::GET, &format!("/api/v1/webhooks/{id}")).send().await.unwrap();
        response.json::<serde_json::Value>().await.unwrap()
    };
    let page =
        http.get(app.url(&format!("/ui/workspaces/{}", ws.id))).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("<option value=\"default\" selected>Workspace default (Every 6 hours)</option>"),
        "the webhook's choice is the workspace default"
    );

    // Saved unchanged, then switched off and re-enabled with the page's buttons.
    let save = |enabled: bool| {
        let mut form =
            vec![("csrf", csrf.clone()), ("url", receiver.url.clone()), ("granularity", "default".into())];
        form.push(("action", "save".into()));
        if enabled {
            form.push(("enabled", "on".into()));
        }
        http.post(app.url(&format!("/ui/webhooks/{id}"))).form(&form).send()
    };
    for enabled in [true, false, true] {
        assert_eq!(save(enabled).await.unwrap().status(), 303);
        let shown = shown().await;
        assert_eq!(
            (shown["inherits_granularity"].clone(), shown["enabled"].clone()),
            (json!(true), json!(enabled))
        );
    }
    // A later change of the workspace's default reaches it.
    app.patch_workspace(&ws.id, json!({"granularity": "12h"})).await;
    let now = shown().await;
    assert_eq!(
        (now["granularity"].clone(), now["inherits_granularity"].clone()),
        (json!("12h"), json!(true))
    );

    // Choosing a granularity by name pins it.
    let form =
        [("csrf", csrf.as_str()), ("url", receiver.url.as_str()), ("granularity", "1h"), ("enabled", "on")];
    assert_eq!(
        http.post(app.url(&format!("/ui/webhooks/{id}"))).form(&form).send().await.unwrap().status(),
        303
    );
    let now = shown().await;
    assert_eq!(
        (now["granularity"].clone(), now["inherits_granularity"].clone()),
        (json!("1h"), json!(false))
    );
    assert_eq!(now["note_max_chars"], 60000, "an empty note length leaves it as it was");

    // The note length: too small is refused next to the field, a CRM's limit is kept.
    let note = |chars: &'static str| {
        let form = [
            ("csrf", csrf.clone()),
            ("url", receiver.url.clone()),
            ("granularity", "1h".into()),
            ("enabled", "on".into()),
            ("note_max_chars", chars.into()),
        ];
        http.post(app.url(&format!("/ui/webhooks/{id}"))).form(&form).send()
    };
    let refused = note("400").await.unwrap();
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.unwrap();
    assert!(html.contains(&format!("id=\"{id}-note-error\">must be between 500 and 1000000")), "{html}");
    assert!(html.contains("value=\"400\""), "what was typed is kept");
    assert_eq!(shown().await["note_max_chars"], 60000, "nothing saved");
    assert_eq!(note("32000").await.unwrap().status(), 303);
    assert_eq!(shown().await["note_max_chars"], 32000);

    // Media: the card shows the choice, a wrong value is refused next to it, and it is kept.
    let page =
        http.get(app.url(&format!("/ui/workspaces/{}", ws.id))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<option value=\"skip\" selected>"), "skip is the default");
    let media = |choice: &'static str| {
        let form = [
            ("csrf", csrf.clone()),
            ("url", receiver.url.clone()),
            ("granularity", "1h".into()),
            ("enabled", "on".into()),
            ("media", choice.into()),
        ];
        http.post(app.url(&format!("/ui/webhooks/{id}"))).form(&form).send()
    };
    let refused = media("everything").await.unwrap();
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("must be one of skip, placeholder"));
    assert_eq!(shown().await["media"], "skip", "nothing saved");
    assert_eq!(media("placeholder").await.unwrap().status(), 303);
    assert_eq!(shown().await["media"], "placeholder");
    let page =
        http.get(app.url(&format!("/ui/workspaces/{}", ws.id))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<option value=\"placeholder\" selected>"), "the card shows what is saved");
    // A new webhook takes the choice from the start.
    let form = [
        ("csrf", csrf.as_str()),
        ("url", receiver.url.as_str()),
        ("granularity", "6h"),
        ("media", "placeholder"),
    ];
    let created =
        http.post(app.url(&format!("/ui/workspaces/{}/webhooks", ws.id))).form(&form).send().await.unwrap();
    assert_eq!(created.status(), 303);
    let listed: serde_json::Value = app
        .admin(reqwest::Method::GET, &format!("/api/v1/workspaces/{}/webhooks", ws.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new = listed["webhooks"].as_array().unwrap().iter().find(|w| w["granularity"] == "6h").unwrap();
    assert_eq!(new["media"], "placeholder");
}

#[tokio::test]
async fn a_delivery_given_up_is_listed_under_its_webhook_and_resent_from_the_page() {
    let dir = crate::helpers::test_dir();
    let mut config = test_config(&dir);
    config.delivery.reject_after = 1;
    let app = TestApp::spawn_with(dir, config, chatbundle::clock::ManualClock::new(start_time())).await;
    let (http, csrf) = signed_in(&app).await;
    let receiver = Receiver::start().await;
    receiver.then(Reply::status(400));
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap();
    app.ingest(&ws, &message("m-1", "c-1", "one")).await;
    let delivery = receiver.wait_for(1).await[0].header("webhook-id").to_string();
    let page = eventually("the failed delivery on the page", || async {
        let page = http.get(app.url(&format!("/ui/workspaces/{}", ws.id))).send().await.unwrap();
        let page = page.text().await.unwrap();
        page.contains("Deliveries given up").then_some(page)
    })
    .await;
    assert!(page.contains(&delivery) && page.contains("HTTP 400"), "{page}");
    let action = format!("/ui/webhooks/{id}/deliveries/{delivery}/resend");
    assert!(page.contains(&format!("action=\"{action}\"")));

    let no_csrf = http.post(app.url(&action)).form(&[("csrf", "nope")]).send().await.unwrap();
    assert_eq!(no_csrf.status(), 403);
    let resent = http.post(app.url(&action)).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(resent.status(), 303);
    let again = receiver.wait_for(2).await.remove(1);
    assert_eq!(again.header("webhook-id"), delivery);
    app.delivered(&ws, 1).await;
}

#[tokio::test]
async fn a_chats_owner_is_set_on_its_page_with_the_apis_checks() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    app.ingest(&ws, &message("m-1", "c-1", "hello")).await;
    let chat = app.store.list_chats(&ws.id, 10, 0).await.unwrap()[0].id;
    let before = app.store.get_chat(chat).await.unwrap().unwrap().1;
    let (http, csrf) = signed_in(&app).await;
    let owner_url = app.url(&format!("/ui/chats/{chat}/owner"));
    let bad = http
        .post(&owner_url)
        .form(&[("csrf", csrf.as_str()), ("responsible_name", "Dana Levi"), ("responsible_email", "dana@")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let html = bad.text().await.unwrap();
    assert!(
        html.contains("id=\"owner-email-error\">&#34;dana@&#34; is not an e-mail address")
            || html.contains("id=\"owner-email-error\">&quot;dana@&quot; is not an e-mail address"),
        "{html}"
    );
    assert!(html.contains("value=\"Dana Levi\""), "the entered name is kept");
    let unchanged = app.store.get_chat(chat).await.unwrap().unwrap().1;
    assert_eq!(unchanged, before, "nothing saved");

    let saved = http
        .post(&owner_url)
        .form(&[
            ("csrf", csrf.as_str()),
            ("responsible_name", "Dana Levi"),
            ("responsible_email", "dana@acme.example"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 303);
    let stored = app.store.get_chat(chat).await.unwrap().unwrap().1;
    assert_eq!(
        (stored.responsible_name.as_deref(), stored.responsible_email.as_deref()),
        (Some("Dana Levi"), Some("dana@acme.example"))
    );
    let page = http
        .get(app.url(saved.headers()["location"].to_str().unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Owner saved.") && page.contains("value=\"dana@acme.example\""));
    // The session history, newest first: the business's answer put the session in progress.
    let mut answer = message("m-2", "c-1", "on its way");
    answer["direction"] = json!("sent");
    app.ingest(&ws, &answer).await;
    let page = http.get(app.url(&format!("/ui/chats/{chat}"))).send().await.unwrap().text().await.unwrap();
    let table = &page[page.find("id=\"session-history\"").expect("a history table")..];
    let replied =
        table.find("<td>CREATED</td><td>ON_PROGRESS</td><td>the business replied</td>").expect("the reply");
    let started = table
        .find("<td>—</td><td>CREATED</td><td>a customer&#39;s message</td>")
        .or_else(|| table.find("<td>—</td><td>CREATED</td><td>a customer&#x27;s message</td>"))
        .expect(&page);
    assert!(replied < started, "newest first");
    let forged = http.post(&owner_url).form(&[("responsible_name", "X")]).send().await.unwrap();
    assert_eq!(forged.status(), 403, "the form needs the CSRF token");
}

#[tokio::test]
async fn a_webhooks_next_bundles_are_previewed_on_a_page_of_their_own() {
    let app = TestApp::spawn().await;
    let ws = app.workspace_with("1h", "UTC").await;
    let receiver = Receiver::start().await;
    let webhook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = webhook["id"].as_str().unwrap();
    let preview_url = app.url(&format!("/ui/webhooks/{id}/preview"));
    let anonymous = client().get(&preview_url).send().await.unwrap();
    assert_eq!(anonymous.status(), 303, "signed-in admins only");
    let (http, _) = signed_in(&app).await;
    let empty = http.get(&preview_url).send().await.unwrap().text().await.unwrap();
    assert!(empty.contains("Nothing is buffered for this webhook."), "{empty}");
    app.ingest(&ws, &message("m-1", "c-1", "Where is <my> order?")).await;
    let page = http.get(&preview_url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("1 message buffered"), "{page}");
    let note = &page[page.find("<div class=\"note-preview\">").expect("a note")..];
    assert!(
        note.contains("from John Doe on 2021-02-24 16:25: Where is &#60;my&#62; order?<br/>Click <a href='"),
        "{note}"
    );
    let workspace = http.get(app.url(&format!("/ui/workspaces/{}", ws.id))).send().await.unwrap();
    assert!(workspace.text().await.unwrap().contains(&format!("href=\"/ui/webhooks/{id}/preview\"")));
    assert_eq!(app.stats(&ws).await.deliveries_pending, 0, "nothing queued");
}

/// Fetches a page as the signed-in admin: its status and text.
async fn fetched(http: &reqwest::Client, url: &str) -> (u16, String) {
    let response = http.get(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_japanese_workspaces_pages_speak_japanese_and_an_english_ones_stay_english() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let created = app
        .create_workspace(json!({
            "name": "Acme JP", "owner_email": "owner@acme.example", "granularity": "1h",
            "timezone": "Asia/Tokyo", "locale": "ja",
        }))
        .await;
    let ja = Workspace {
        id: created["id"].as_str().unwrap().parse().unwrap(),
        ingest_key: created["ingest_key"].as_str().unwrap().to_string(),
    };
    let hook = app.create_webhook(&ja.id, json!({"url": receiver.url})).await;
    let hook = hook["id"].as_str().unwrap();
    app.ingest(&ja, &message("m-1", "c-1", "在庫はありますか？")).await;
    let en = app.workspace().await;
    app.create_webhook(&en.id, json!({"url": receiver.url})).await;
    app.ingest(&en, &message("m-1", "c-1", "Is it in stock?")).await;
    let (http, csrf) = signed_in(&app).await;

    // The workspace's page: every label, the granularity choices and the notices.
    let (status, page) = fetched(&http, &app.url(&format!("/ui/workspaces/{}?settings=saved", ja.id))).await;
    assert_eq!(status, 200);
    assert!(page.contains("<html lang=\"ja\">"), "{page}");
    for label in [
        "ワークスペースの設定を保存しました。",
        "送信先（Webhook）",
        "ワークスペースの既定（1時間ごと）",
        "1時間ごと（ワークスペースの既定）",
        ">保存</button>",
        ">保存してテスト送信</button>",
        "署名シークレット：未設定",
        "最近のアクティビティ",
        "次のまとめをプレビュー",
        ">今すぐ送る</button>",
        "連携元",
        "会話",
        "ワークスペースの設定",
        "オーナーのメールアドレス",
        ">ログアウト</button>",
    ] {
        assert!(page.contains(label), "{label} on the Japanese page");
    }
    for english in [
        ">Save<",
        "Outbound webhooks",
        "Release now",
        "Workspace settings",
        "Every 1 hour",
        "Latest activity",
        "Signing secret",
        "Sign out",
    ] {
        assert!(!page.contains(english), "{english} left on the Japanese page");
    }
    // Form values stay what the API takes.
    assert!(page.contains("<option value=\"1h\" selected>1時間ごと</option>"), "{page}");
    // A refused form comes back in Japanese; the domain's refusal itself stays English.
    let form = [
        ("csrf", csrf.as_str()),
        ("url", receiver.url.as_str()),
        ("granularity", "default"),
        ("note_max_chars", "400"),
    ];
    let refused = http.post(app.url(&format!("/ui/webhooks/{hook}"))).form(&form).send().await.unwrap();
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.unwrap();
    assert!(html.contains("<html lang=\"ja\">") && html.contains("メモの長さ（文字数）"), "{html}");
    assert!(html.contains("must be between 500 and 1000000"), "{html}");

    // A chat's page.
    let chat = app.store.list_chats(&ja.id, 10, 0).await.unwrap()[0].id;
    let (_, page) = fetched(&http, &app.url(&format!("/ui/chats/{chat}?owner=saved"))).await;
    assert!(page.contains("<html lang=\"ja\">"), "{page}");
    for label in [
        "担当者を保存しました。",
        "セッション履歴",
        "お客様のメッセージ",
        "会話のリンク",
        ">リンクを再発行</button>",
    ] {
        assert!(page.contains(label), "{label} on the chat's page");
    }
    for english in ["Owner saved", "Session history", "customer", "Rotate link", "Sign out"] {
        assert!(!page.contains(english), "{english} left on the chat's page");
    }
    let link = page.split("id=\"transcript-link\" href=\"").nth(1).unwrap().split('"').next().unwrap();

    // The preview of the webhook's next bundles, its note in Japanese too.
    let (_, page) = fetched(&http, &app.url(&format!("/ui/webhooks/{hook}/preview"))).await;
    assert!(page.contains("<html lang=\"ja\">"), "{page}");
    assert!(page.contains("<h1>次のまとめ</h1>") && page.contains("保留中のメッセージ：1件"), "{page}");
    assert!(page.contains("から会話を開けます"), "the note: {page}");
    for english in ["Next bundles", "buffered", "Nothing is sent"] {
        assert!(!page.contains(english), "{english} left on the preview");
    }

    // The public transcript, dated in the workspace's time zone and language.
    let (status, page) = fetched(&client(), link).await;
    assert_eq!(status, 200);
    assert!(page.contains("<html lang=\"ja\">"), "{page}");
    assert!(page.contains("John Doe との会話") && page.contains("閲覧専用です。"), "{page}");
    assert!(page.contains("<h2>2021年2月25日</h2>"), "16:25 UTC is the next day in Tokyo: {page}");
    assert!(!page.contains("Conversation with") && !page.contains("Read-only"), "{page}");

    // "Release now" says what it did in Japanese.
    app.advance(std::time::Duration::from_secs(60));
    let released = http
        .post(app.url(&format!("/ui/workspaces/{}/flush", ja.id)))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let target = released.headers()["location"].to_str().unwrap().to_string();
    let (_, page) = fetched(&http, &app.url(&target)).await;
    assert!(
        page.contains("開いている時間枠をすべて締めました。配信 1 件を送信待ちに追加しました。"),
        "{page}"
    );

    // The English workspace's pages stay English.
    let (_, page) = fetched(&http, &app.url(&format!("/ui/workspaces/{}", en.id))).await;
    assert!(page.contains("<html lang=\"en\">"), "{page}");
    for label in ["Outbound webhooks", ">Save</button>", "Release now", "Workspace settings", "Sign out"] {
        assert!(page.contains(label), "{label} on the English page");
    }
    assert!(!page.contains("送信先") && !page.contains("ログアウト"), "{page}");
    let chat = app.store.list_chats(&en.id, 10, 0).await.unwrap()[0].id;
    let (_, page) = fetched(&http, &app.url(&format!("/ui/chats/{chat}"))).await;
    assert!(page.contains("<html lang=\"en\">") && page.contains("Session history"), "{page}");
    let link = page.split("id=\"transcript-link\" href=\"").nth(1).unwrap().split('"').next().unwrap();
    let (_, page) = fetched(&client(), link).await;
    assert!(page.contains("<html lang=\"en\">") && page.contains("Conversation with John Doe"), "{page}");
    assert!(page.contains("<h2>2021-02-24</h2>"), "{page}");
}
