//! The web page driven in real headless Chromium through ChromeDriver (Debian's `chromium` and
//! `chromium-driver`, which `.ci/run` installs). With `CHATBUNDLE_SCREENSHOTS=<dir>` set, the test
//! also saves screenshots of the main pages there (the README shows the ones in `docs/`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::*;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A ChromeDriver process and a browser session on it, with its own profile and download folder.
struct Browser {
    client: Client,
    driver: Child,
    downloads: TempDir,
    _profile: TempDir,
}

impl Browser {
    /// A desktop-sized window, or (with `phone`) a phone's screen as Chromium's device emulation
    /// gives it (a desktop window cannot be made narrower than about 500 pixels).
    async fn start(phone: bool) -> Browser {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "the browser tests need Debian's chromium and chromium-driver (.ci/run installs them)"
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.path().display()),
                    "--window-size=1280,1000",
                ],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
            }
        });
        let Value::Object(mut capabilities) = capabilities else { unreachable!() };
        if phone {
            capabilities["goog:chromeOptions"]["mobileEmulation"] =
                json!({"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2.0, "touch": true}});
        }
        let webdriver = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + BOUND;
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&webdriver)
                .await
            {
                Ok(client) => break client,
                Err(e) => {
                    assert!(Instant::now() < deadline, "no browser session within the bound: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        Browser { client, driver, downloads, _profile: profile }
    }

    async fn css(&self, selector: &str) -> Element {
        self.client.wait().at_most(BOUND).for_element(Locator::Css(selector)).await.unwrap_or_else(|e| {
            panic!("no {selector} on the page: {e}");
        })
    }

    async fn button(&self, text: &str) -> Element {
        let xpath = format!("//button[normalize-space()=\"{text}\"]");
        self.client.wait().at_most(BOUND).for_element(Locator::XPath(&xpath)).await.unwrap_or_else(|e| {
            panic!("no button {text:?}: {e}");
        })
    }

    /// Fills a field found by its label's `for` id.
    async fn fill(&self, id: &str, value: &str) {
        let field = self.css(&format!("#{id}")).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// Fills the field named `name` (a page that is not ours, whose fields have no ids).
    async fn fill_named(&self, name: &str, value: &str) {
        let field = self.css(&format!("input[name='{name}']")).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    async fn text(&self) -> String {
        self.css("body").await.text().await.unwrap()
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    /// Clicks and waits until the browser has left the current page for another.
    async fn click_and_wait(&self, element: Element) {
        let body = self.css("body").await;
        element.click().await.unwrap();
        let deadline = Instant::now() + BOUND;
        while body.text().await.is_ok() {
            assert!(Instant::now() < deadline, "the page did not change");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.css("body").await;
    }

    /// Saves the window, or one element of it, as `<name>.png` when screenshots were asked for.
    async fn screenshot(&self, name: &str) {
        self.screenshot_of(name, None).await;
    }

    async fn screenshot_of(&self, name: &str, element: Option<&Element>) {
        let Some(dir) = std::env::var_os("CHATBUNDLE_SCREENSHOTS") else { return };
        let png = match element {
            Some(element) => element.screenshot().await.unwrap(),
            None => self.client.screenshot().await.unwrap(),
        };
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Waits for a finished download whose name ends with `suffix`.
    async fn downloaded(&self, suffix: &str) -> String {
        let deadline = Instant::now() + BOUND;
        loop {
            let done = std::fs::read_dir(self.downloads.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(suffix));
            if let Some(path) = done {
                return std::fs::read_to_string(path).unwrap();
            }
            assert!(Instant::now() < deadline, "no {suffix} download within the bound");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

async fn sign_in(browser: &Browser, app: &TestApp) {
    browser.client.goto(&app.url("/ui")).await.unwrap();
    assert_eq!(browser.path().await, "/login", "signing in comes first");
    browser.screenshot("sign-in").await;
    browser.fill("token", ADMIN_TOKEN).await;
    browser.click_and_wait(browser.button("Sign in with the admin token").await).await;
    assert_eq!(browser.path().await, "/ui");
}

#[tokio::test]
#[ignore = "needs Chromium and ChromeDriver: run scripts/test"]
async fn an_admin_sets_up_tests_and_reads_in_the_browser() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let browser = Browser::start(false).await;
    sign_in(&browser, &app).await;

    // A workspace, with one mistake first: the error sits next to the field and the values stay.
    browser.fill("ws-name", "Acme Support").await;
    browser.fill("ws-owner", "owner-at-acme").await;
    browser.fill("ws-tz", "Europe/Berlin").await;
    browser.click_and_wait(browser.button("Create workspace").await).await;
    assert!(browser.css("#ws-owner-error").await.text().await.unwrap().contains("e-mail"));
    assert_eq!(browser.css("#ws-name").await.prop("value").await.unwrap().as_deref(), Some("Acme Support"));
    browser.fill("ws-owner", "owner@acme.example").await;
    browser.click_and_wait(browser.button("Create workspace").await).await;
    assert!(browser.path().await.starts_with("/ui/workspaces/"));
    let ws = Workspace {
        id: browser.path().await.rsplit('/').next().unwrap().parse().unwrap(),
        ingest_key: browser.css("#ingest-key").await.text().await.unwrap(),
    };

    // A webhook that sends each message at once.
    browser.fill("new-url", &receiver.url).await;
    let choice = browser.css("#new-granularity").await;
    choice.select_by_value("none").await.unwrap();
    let label = browser.css("#new-granularity option:checked").await.text().await.unwrap();
    assert_eq!(label, "Don't aggregate");
    browser.click_and_wait(browser.button("Add webhook").await).await;
    let hooks: Value = app
        .admin(Method::GET, &format!("/api/v1/workspaces/{}/webhooks", ws.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let webhook_id = hooks["webhooks"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(hooks["webhooks"][0]["granularity"], "none");

    app.ingest(
        &ws,
        &json!([
            message("m-1", "c-1", "Hello, is the blue kettle in stock?"),
            message("m-2", "c-1", "And can it ship to Haifa?"),
        ]),
    )
    .await;
    receiver.wait_for(2).await;

    // Every 6 hours, saved and tested: the result shows at once on the page.
    let select = browser.css(&format!("[id='{webhook_id}-granularity']")).await;
    select.select_by_label("Every 6 hours").await.unwrap();
    browser.click_and_wait(browser.button("Save and test").await).await;
    let result = browser.css(&format!("[id='{webhook_id}-test']")).await.text().await.unwrap();
    assert!(result.contains("Test delivered") && result.contains("HTTP 200"), "{result}");
    browser.screenshot_of("save-and-test", Some(&browser.css(&format!("[id='{webhook_id}']")).await)).await;
    let test = receiver.wait_for(3).await.pop().unwrap();
    let bundle = test.json();
    assert_eq!(bundle["messages"][1]["text"], "And can it ship to Haifa?", "real messages, as a bundle");
    assert!(bundle["aggregation"].as_str().unwrap().contains("blue kettle"), "{bundle}");
    assert_eq!(bundle.get("sample"), None, "not a made-up sample");
    let hook: Value = app
        .admin(Method::GET, &format!("/api/v1/webhooks/{webhook_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hook["granularity"], "6h", "the granularity was saved");
    let selected = browser.css(&format!("[id='{webhook_id}-granularity'] option:checked")).await;
    assert_eq!(selected.text().await.unwrap(), "Every 6 hours");

    // Activity rows: the two deliveries, the test, and the events, its creation and the change
    // (a fresh GET: reloading the page the test answered would send the form again, as any browser
    // does with a POST); who made and changed it is named. The test's clock stands still, and the
    // store's clock gives each event a later millisecond than the attempts made at that instant.
    browser.client.goto(&app.url(&format!("/ui/workspaces/{}", ws.id))).await.unwrap();
    let rows = browser.client.find_all(Locator::Css(&format!("[id='{webhook_id}'] tbody tr"))).await.unwrap();
    let (mut kinds, mut actors) = (Vec::new(), Vec::new());
    for row in rows {
        kinds.push(row.find(Locator::Css("td:nth-child(2)")).await.unwrap().text().await.unwrap());
        actors.push(row.find(Locator::Css("td:nth-child(5)")).await.unwrap().text().await.unwrap());
    }
    assert_eq!(kinds, ["config_changed", "created", "test", "attempt", "attempt"], "newest first");
    assert_eq!(actors, ["operator", "operator", "", "", ""], "who did what");
    browser.screenshot("workspace").await;

    // The log download, through the browser's own session.
    browser.css(&format!("a[href='/ui/webhooks/{webhook_id}/log?format=csv']")).await.click().await.unwrap();
    let csv = browser.downloaded(".csv").await;
    assert!(csv.lines().count() >= 4, "a header and three rows: {csv}");

    // The chat's page, its transcript link, and a rotation that kills the old link.
    browser.click_and_wait(browser.css("a[href^='/ui/chats/']").await).await;
    let old_link = browser.css("#transcript-link").await.attr("href").await.unwrap().unwrap();
    browser.screenshot("chat").await;
    browser.client.goto(&old_link).await.unwrap();
    let transcript = browser.text().await;
    assert!(transcript.contains("Hello, is the blue kettle in stock?"), "{transcript}");
    assert!(
        transcript.find("ship to Haifa").unwrap() < transcript.find("blue kettle").unwrap(),
        "newest first"
    );
    browser.screenshot("transcript").await;
    browser.client.back().await.unwrap();
    browser.click_and_wait(browser.button("Rotate link").await).await;
    let new_link = browser.css("#transcript-link").await.attr("href").await.unwrap().unwrap();
    assert_ne!(new_link, old_link);
    browser.client.goto(&old_link).await.unwrap();
    assert!(browser.text().await.contains("does not exist"), "the old link is dead");
    browser.client.goto(&new_link).await.unwrap();
    assert!(browser.text().await.contains("blue kettle"));

    // Signing out ends the session.
    browser.client.goto(&app.url(&format!("/ui/workspaces/{}", ws.id))).await.unwrap();
    browser.click_and_wait(browser.button("Sign out").await).await;
    browser.client.goto(&app.url("/ui")).await.unwrap();
    assert_eq!(browser.path().await, "/login");
    browser.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium and ChromeDriver: run scripts/test"]
async fn a_disabled_webhook_shows_why_and_comes_back_on_a_phone() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap();
    app.admin(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    let browser = Browser::start(true).await;
    sign_in(&browser, &app).await;
    browser.client.goto(&app.url(&format!("/ui/workspaces/{}", ws.id))).await.unwrap();
    let width: f64 = browser
        .client
        .execute("return document.documentElement.scrollWidth", vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(width <= 390.0, "nothing wider than a phone's screen: {width}px");
    let unlabelled = browser
        .client
        .execute(
            "return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))\
                 .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.id || e.name)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabelled, json!([]), "every field has a label");
    let alert = browser.css("[role='alert']").await.text().await.unwrap();
    assert!(alert.contains("switched off"), "{alert}");
    browser.screenshot("phone").await;
    browser.click_and_wait(browser.button("Re-enable").await).await;
    let shown: Value =
        app.admin(Method::GET, &format!("/api/v1/webhooks/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown["enabled"], true);
    browser.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium and ChromeDriver: run scripts/test"]
async fn a_japanese_workspace_is_run_in_japanese_in_the_browser() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let created = app
        .create_workspace(json!({
            "name": "Acme 東京", "owner_email": "owner@acme.example", "granularity": "1h",
            "timezone": "Asia/Tokyo", "locale": "ja",
            "account": {"full_name": "Acme サポート", "email": "support@acme.example"},
        }))
        .await;
    let ws = Workspace {
        id: created["id"].as_str().unwrap().parse().unwrap(),
        ingest_key: created["ingest_key"].as_str().unwrap().to_string(),
    };
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url, "media": "placeholder"})).await;
    let webhook_id = hook["id"].as_str().unwrap().to_string();
    let from_yamada = |id: &str, text: &str, timestamp: &str| {
        let mut m = message_at(id, "c-1", text, timestamp);
        m["chat"]["full_name"] = json!("山田 太郎");
        m["sender"]["full_name"] = json!("山田 太郎");
        m
    };
    let mut photo = from_yamada("m-3", "この色です", "2021-02-24T01:13:00Z");
    photo["attachments"] =
        json!([{"type": "image", "mime_type": "image/jpeg", "url": "https://media.example/kettle.jpg"}]);
    let mut place = from_yamada("m-4", "", "2021-02-24T01:14:00Z");
    place.as_object_mut().unwrap().remove("text");
    place["attachments"] =
        json!([{"type": "location", "latitude": 34.7025, "longitude": 135.4959, "name": "大阪駅"}]);
    app.ingest(
        &ws,
        &json!([
            from_yamada("m-1", "こんにちは。青いやかんの在庫はありますか？", "2021-02-24T01:10:00Z"),
            from_yamada("m-2", "大阪への配送はできますか？", "2021-02-24T01:12:00Z"),
            photo,
            place,
        ]),
    )
    .await;
    let browser = Browser::start(false).await;
    sign_in(&browser, &app).await;
    browser.client.goto(&app.url(&format!("/ui/workspaces/{}", ws.id))).await.unwrap();
    let lang = browser.css("html").await.attr("lang").await.unwrap();
    assert_eq!(lang.as_deref(), Some("ja"));

    // Saved and tested with the page's Japanese buttons; the result is in Japanese too.
    browser.click_and_wait(browser.button("保存してテスト送信").await).await;
    let result = browser.css(&format!("[id='{webhook_id}-test']")).await.text().await.unwrap();
    assert!(result.contains("テスト送信に成功しました") && result.contains("HTTP 200"), "{result}");
    receiver.wait_for(1).await;

    // The script's copy buttons speak the page's language as well.
    browser.client.goto(&app.url(&format!("/ui/workspaces/{}", ws.id))).await.unwrap();
    let copy = browser.css("#ingest-key + button").await;
    assert_eq!(copy.text().await.unwrap(), "コピー");
    assert_eq!(copy.attr("aria-label").await.unwrap().as_deref(), Some("取り込みキーをコピー"));
    let text = browser.text().await;
    for label in ["送信先（Webhook）", "今すぐ送る", "最近のアクティビティ", "ログアウト"]
    {
        assert!(text.contains(label), "{label}: {text}");
    }
    browser.screenshot("workspace-ja").await;

    // The next bundle's note as the CRM will show it, media as placeholders in Japanese; the
    // media choice saved through the page stayed as it was.
    browser.client.goto(&app.url(&format!("/ui/webhooks/{webhook_id}/preview"))).await.unwrap();
    let note = browser.css(".note-preview").await.text().await.unwrap();
    for words in [
        "山田 太郎: こんにちは",
        "[画像] この色です",
        "[位置情報 34.7025, 135.4959: 大阪駅]",
        "こちらから会話を開けます",
    ] {
        assert!(note.contains(words), "{words}: {note}");
    }
    browser.screenshot("note-ja").await;

    // The chat's page and its transcript, dated in Tokyo.
    browser.click_and_wait(browser.css("a[href^='/ui/chats/']").await).await;
    assert!(browser.text().await.contains("セッション履歴"));
    let link = browser.css("#transcript-link").await.attr("href").await.unwrap().unwrap();
    browser.client.goto(&link).await.unwrap();
    let transcript = browser.text().await;
    assert!(
        transcript.contains("山田 太郎 との会話") && transcript.contains("2021年2月24日"),
        "{transcript}"
    );
    browser.screenshot("transcript-ja").await;
    browser.close().await;
}

/// People, in the browser: the operator invites an admin and a viewer from the Members section;
/// the invited admin chooses a password, lands on their workspace and sees no other; the viewer
/// reads without a form that changes anything, and is out of the workspace at their next page
/// once removed; someone invited signs in with the OpenID provider's button.
#[tokio::test]
#[ignore = "needs Chromium, ChromeDriver and oidc-provider-mock: run scripts/test"]
async fn people_are_invited_sign_in_and_see_only_their_workspace_in_the_browser() {
    let provider = OidcProvider::start().await;
    let app = provider.daemon().await;
    let (ws, other) = (app.workspace().await, app.workspace().await);
    let receiver = Receiver::start().await;
    app.create_webhook(&ws.id, json!({"url": receiver.url})).await;

    // The operator invites two people from the Members section.
    let browser = Browser::start(false).await;
    browser.client.goto(&app.url("/login")).await.unwrap();
    browser.fill("token", ADMIN_TOKEN).await;
    browser.click_and_wait(browser.button("Sign in with the admin token").await).await;
    let workspace = app.url(&format!("/ui/workspaces/{}", ws.id));
    let mut links = Vec::new();
    for (email, role) in [("ana@acme.example", "admin"), ("vic@acme.example", "viewer")] {
        browser.client.goto(&workspace).await.unwrap();
        browser.fill("invite-email", email).await;
        let role_option = browser.css(&format!("#invite-role option[value='{role}']")).await;
        role_option.click().await.unwrap();
        browser.click_and_wait(browser.button("Invite").await).await;
        let shown = browser.css("p.notice.good code").await.text().await.unwrap();
        assert!(shown.contains("/invite/inv_"), "{shown}");
        links.push(shown);
    }
    let members = browser.css("section.card:has(#invite-email)").await;
    let listed = members.text().await.unwrap();
    assert!(listed.contains("ana@acme.example") && listed.contains("vic@acme.example"), "{listed}");
    browser.screenshot_of("members", Some(&members)).await;
    browser.close().await;

    // The invited admin chooses a password and lands on their workspace, the only one they see.
    let ana = Browser::start(false).await;
    ana.client.goto(&links[0]).await.unwrap();
    ana.fill("password", "ana's long password").await;
    ana.click_and_wait(ana.button("Set the password and sign in").await).await;
    assert_eq!(ana.path().await, format!("/ui/workspaces/{}", ws.id));
    assert!(ana.text().await.contains("Members"), "an admin manages members");
    ana.client.goto(&app.url("/ui")).await.unwrap();
    let home = ana.client.source().await.unwrap();
    assert!(home.contains(ws.id.as_str()) && !home.contains(other.id.as_str()), "only their workspace");
    ana.close().await;

    // The viewer reads without a form that changes anything; removed, they are out at once.
    let vic = Browser::start(false).await;
    vic.client.goto(&links[1]).await.unwrap();
    vic.fill("password", "vic's long password").await;
    vic.click_and_wait(vic.button("Set the password and sign in").await).await;
    let page = vic.client.source().await.unwrap();
    assert!(!page.contains(&ws.ingest_key), "no secret for a viewer");
    let changing = vic
        .client
        .execute(
            "return Array.from(document.querySelectorAll('main form')).map(f => f.getAttribute('action'))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(changing, json!([]), "no form that changes anything");
    let members: Value = app
        .admin(Method::GET, &format!("/api/v1/workspaces/{}/members", ws.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let vic_id = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "vic@acme.example")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.admin(Method::DELETE, &format!("/api/v1/workspaces/{}/members/{vic_id}", ws.id))
        .send()
        .await
        .unwrap();
    vic.client.goto(&workspace).await.unwrap();
    assert!(vic.text().await.contains("404"), "out of the workspace at their next page");
    vic.close().await;

    // Someone invited signs in with the provider's button.
    app.invite(&ws, "sam@acme.example", "viewer").await;
    provider.person("sam-1", json!({"email": "sam@acme.example", "email_verified": true})).await;
    let sam = Browser::start(false).await;
    sam.client.goto(&app.url("/ui")).await.unwrap();
    assert_eq!(sam.path().await, "/login");
    sam.screenshot("sign-in-sso").await;
    sam.click_and_wait(sam.css("a#sso").await).await;
    assert!(
        sam.client.current_url().await.unwrap().as_str().starts_with(&provider.issuer),
        "at the provider"
    );
    sam.fill_named("sub", "sam-1").await;
    sam.click_and_wait(sam.button("Authorize").await).await;
    assert_eq!(sam.path().await, "/ui", "back, signed in");
    let home = sam.client.source().await.unwrap();
    assert!(home.contains(ws.id.as_str()) && !home.contains(other.id.as_str()), "their workspace alone");
    sam.close().await;
}

/// A workspace's whole set-up in the browser: each of the five channels connected from the page
/// (each card then shows the request its vendor sent, and Twilio's, for a badly signed one, why it
/// was refused); a webhook stopped, then paused and switched back on discarding what waited; a chat erased from its page, whose
/// transcript then answers 404 and whose words go out in no later bundle, and whose erasure is
/// in the log export.
#[tokio::test]
#[ignore = "needs Chromium and ChromeDriver: run scripts/test"]
async fn a_workspace_is_set_up_paused_and_a_chat_erased_in_the_browser() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let ws = app.workspace_with("1h", "UTC").await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url, "granularity": "none"})).await;
    let hook_id = hook["id"].as_str().unwrap().to_string();
    let browser = Browser::start(false).await;
    sign_in(&browser, &app).await;
    let workspace = app.url(&format!("/ui/workspaces/{}", ws.id));

    // Connect Twilio from the page.
    browser.client.goto(&workspace).await.unwrap();
    let connect = browser.css(&format!("a[href='/ui/workspaces/{}/sources/new/twilio']", ws.id)).await;
    browser.click_and_wait(connect).await;
    browser.fill("source-name", "Shop WhatsApp").await;
    browser.fill("credential-auth_token", "12345").await;
    browser.screenshot("connect-twilio").await;
    browser.click_and_wait(browser.button("Connect").await).await;
    let text = browser.text().await;
    assert!(text.contains("Connected: Shop WhatsApp"), "{text}");
    let inbound = browser.css("section.card code[data-copy*='Shop WhatsApp']").await.text().await.unwrap();
    assert!(inbound.contains("/hooks/twilio/in_"), "{inbound}");

    // The vendor's requests, one signed right and one not, show on the card.
    let params: Vec<(String, String)> = [
        ("MessageSid", "SM1"),
        ("From", "whatsapp:+15550001"),
        ("To", "whatsapp:+15550002"),
        ("Body", "hello"),
        ("NumMedia", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for token in ["12345", "a mistyped token"] {
        app.http
            .post(&inbound)
            .header("x-twilio-signature", chatbundle::ingest::twilio::signature(token, &inbound, &params))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&params).unwrap())
            .send()
            .await
            .unwrap();
    }
    let card_text = eventually("the card shows both requests", || async {
        browser.client.goto(&workspace).await.unwrap();
        let text = browser.text().await;
        (text.contains("2 in the last 24 hours") && text.contains("Last refused")).then_some(text)
    })
    .await;
    assert!(card_text.contains("bad_signature"), "{card_text}");
    let card = browser.css("section.card:has(p.traffic)").await;
    browser.screenshot_of("source-card", Some(&card)).await;

    // The other four channels, connected the same way; each one's first request, as its vendor
    // documents it (Meta's and WeChat's URL checks, a Chatwoot event, Zoho Desk's validation),
    // shows on its card.
    /// A channel's path segment, the source's name, and the credentials its form needs.
    type Connection = (&'static str, &'static str, &'static [(&'static str, &'static str)]);
    let others: [Connection; 4] = [
        ("whatsapp", "Meta WhatsApp", &[("app_secret", "app-secret"), ("verify_token", "vt-1")]),
        ("wechat", "WeChat", &[("token", "wx-token"), ("app_id", "wxb11529c136998cb6")]),
        ("chatwoot", "Chatwoot", &[]),
        ("zoho-desk", "Zoho Desk", &[]),
    ];
    for (kind, name, fields) in others {
        browser.client.goto(&workspace).await.unwrap();
        let connect = browser.css(&format!("a[href='/ui/workspaces/{}/sources/new/{kind}']", ws.id)).await;
        browser.click_and_wait(connect).await;
        browser.fill("source-name", name).await;
        for (key, value) in fields {
            browser.fill(&format!("credential-{key}"), value).await;
        }
        browser.click_and_wait(browser.button("Connect").await).await;
        assert!(browser.text().await.contains(&format!("Connected: {name}")), "{kind}");
        let url = browser.css(&format!("section.card code[data-copy*='{name}']")).await.text().await.unwrap();
        let answered = match kind {
            "whatsapp" => {
                app.http.get(format!("{url}?hub.mode=subscribe&hub.verify_token=vt-1&hub.challenge=42"))
            }
            "wechat" => {
                let now = chatbundle::clock::Clock::now(&app.clock).timestamp().to_string();
                let signature = chatbundle::ingest::wechat::signature(&["wx-token", &now, "n1"]);
                app.http.get(format!("{url}?signature={signature}&timestamp={now}&nonce=n1&echostr=e1"))
            }
            "chatwoot" => app.http.post(&url).json(&json!({"event": "webwidget_triggered"})),
            _ => app.http.get(&url),
        };
        assert_eq!(answered.send().await.unwrap().status(), 200, "{kind}'s request");
    }
    eventually("every card shows its vendor's request", || async {
        browser.client.goto(&workspace).await.unwrap();
        let text = browser.text().await;
        (text.matches("in the last 24 hours").count() == 5).then_some(())
    })
    .await;

    // Stop the webhook: the alert says nothing is collected; then pause it instead.
    browser.css(&format!("[id='{hook_id}-enabled']")).await.click().await.unwrap();
    browser.css(&format!("[id='{hook_id}-off-stop']")).await.click().await.unwrap();
    let save = browser.css(&format!("[id='{hook_id}'] button[name='action'][value='save']")).await;
    browser.click_and_wait(save).await;
    let alert = browser.css(&format!("[id='{hook_id}'] [role='alert']")).await.text().await.unwrap();
    assert!(alert.contains("It is stopped: nothing is collected"), "{alert}");
    app.patch_webhook(&hook_id, json!({"enabled": true})).await;
    browser.client.goto(&workspace).await.unwrap();

    // Pause the webhook: what comes waits; switched on again, it is discarded.
    let off = browser.css(&format!("[id='{hook_id}-enabled']")).await;
    off.click().await.unwrap();
    browser.css(&format!("[id='{hook_id}-off-pause']")).await.click().await.unwrap();
    let save = browser.css(&format!("[id='{hook_id}'] button[name='action'][value='save']")).await;
    browser.click_and_wait(save).await;
    let delivered_before = receiver.received().len();
    app.ingest(&ws, &json!([message("w-1", "c-9", "while paused"), message("w-2", "c-9", "also")])).await;
    browser.client.goto(&workspace).await.unwrap();
    let alert = browser.css(&format!("[id='{hook_id}'] [role='alert']")).await.text().await.unwrap();
    assert!(alert.contains("Send the 2 waiting deliveries"), "{alert}");
    browser.css(&format!("[id='{hook_id}-backlog-discard']")).await.click().await.unwrap();
    browser.click_and_wait(browser.button("Re-enable").await).await;
    let shown: Value = app.get_json(&format!("/api/v1/webhooks/{hook_id}")).await;
    assert_eq!((shown["enabled"].clone(), shown["waiting"].clone()), (json!(true), json!(0)));
    assert_eq!(receiver.received().len(), delivered_before, "nothing that waited went out");

    // Erase a chat from its page.
    let chats: Value = app.get_json(&format!("/api/v1/workspaces/{}/chats", ws.id)).await;
    let chat = chats["chats"].as_array().unwrap().iter().find(|c| c["chat_id"] == "c-9").unwrap()["id"]
        .as_i64()
        .unwrap();
    let transcript =
        app.get_json(&format!("/api/v1/chats/{chat}")).await["transcript_url"].as_str().unwrap().to_string();
    browser.client.goto(&app.url(&format!("/ui/chats/{chat}"))).await.unwrap();
    browser.css("#erase-confirm").await.click().await.unwrap();
    browser.click_and_wait(browser.button("Erase the chat").await).await;
    assert!(browser.text().await.contains("The chat is erased: 2 messages deleted"));
    assert_eq!(reqwest::get(&transcript).await.unwrap().status(), 404);
    let log = app.get_text(&format!("/api/v1/webhooks/{hook_id}/log?format=csv")).await;
    assert!(log.contains("chat_erased") && !log.contains("while paused"), "{log}");
    browser.close().await;
}
