//! Scoped API tokens: a workspace's token acts in its workspace alone, as an admin or a viewer;
//! anything of another workspace answers 404 (as if it did not exist), an instance route 403.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

async fn token(app: &TestApp, ws: &Workspace, name: &str, role: &str) -> Value {
    let path = format!("/api/v1/workspaces/{}/tokens", ws.id);
    let made =
        app.admin(Method::POST, &path).json(&json!({"name": name, "role": role})).send().await.unwrap();
    assert_eq!(made.status(), 201, "making a token");
    made.json().await.unwrap()
}

fn with(app: &TestApp, token: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    app.http.request(method, app.url(path)).bearer_auth(token)
}

#[tokio::test]
async fn a_workspace_token_opens_its_workspace_alone_and_a_revoked_one_nothing() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.workspace().await, app.workspace().await);
    let receiver = Receiver::start().await;
    let b_hook = app.create_webhook(&b.id, json!({"url": receiver.url})).await;
    let made = token(&app, &a, "Zapier", "admin").await;
    let secret = made["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("cbt_") && secret.len() == 44, "{secret}");
    assert_eq!((made["name"].as_str(), made["role"].as_str()), (Some("Zapier"), Some("admin")));
    assert_eq!(made["created_by"], "operator");

    // Its own workspace: everything an admin does there.
    let listed: Value =
        with(&app, &secret, Method::GET, "/api/v1/workspaces").send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> =
        listed["workspaces"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [a.id.as_str()], "only its workspace");
    let hooks = format!("/api/v1/workspaces/{}/webhooks", a.id);
    let created =
        with(&app, &secret, Method::POST, &hooks).json(&json!({"url": receiver.url})).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let own: Value = created.json().await.unwrap();
    let own_path = format!("/api/v1/webhooks/{}", own["id"].as_str().unwrap());
    let patched =
        with(&app, &secret, Method::PATCH, &own_path).json(&json!({"enabled": false})).send().await.unwrap();
    assert_eq!(patched.status(), 200);
    let path = format!("/api/v1/workspaces/{}", a.id);
    let shown: Value = with(&app, &secret, Method::GET, &path).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown["ingest_key"], a.ingest_key.as_str(), "an admin sees the ingest key");

    // Another workspace does not exist to it; instance routes are the operator's.
    let b_path = format!("/api/v1/webhooks/{}", b_hook["id"].as_str().unwrap());
    for (method, path) in [
        (Method::GET, b_path.clone()),
        (Method::DELETE, b_path.clone()),
        (Method::GET, format!("/api/v1/workspaces/{}", b.id)),
        (Method::GET, format!("/api/v1/workspaces/{}/webhooks", b.id)),
        (Method::POST, format!("/api/v1/workspaces/{}/tokens", b.id)),
    ] {
        let answer = with(&app, &secret, method.clone(), &path)
            .json(&json!({"name": "x", "role": "admin"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{method} {path}");
        let error: Value = answer.json().await.unwrap();
        assert_eq!(error["error"]["code"], "not_found");
    }
    let new = json!({"name": "Other", "owner_email": "o@b.example"});
    let refused = with(&app, &secret, Method::POST, "/api/v1/workspaces").json(&new).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        app.admin(Method::GET, &b_path).send().await.unwrap().status().is_success(),
        "B's webhook is untouched"
    );

    // A token made by a token says so; the list never shows a token, and says when it was used.
    let tokens = format!("/api/v1/workspaces/{}/tokens", a.id);
    let second = with(&app, &secret, Method::POST, &tokens)
        .json(&json!({"name": "CRM", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["created_by"], "token:Zapier");
    let list = with(&app, &secret, Method::GET, &tokens).send().await.unwrap().text().await.unwrap();
    assert!(!list.contains(&secret) && !list.contains(second["token"].as_str().unwrap()), "{list}");
    let list: Value = serde_json::from_str(&list).unwrap();
    let zapier = list["tokens"].as_array().unwrap().iter().find(|t| t["name"] == "Zapier").unwrap();
    assert!(zapier["last_used_at"].is_string(), "{zapier}");

    // Who did what: the webhook's log names the token that made and switched it off, and the
    // workspace's events (shown in every webhook's log) the token that made another token.
    let log = with(&app, &secret, Method::GET, &format!("{own_path}/log"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by = |kind: &str| rows.iter().find(|r| r["kind"] == kind).map(|r| r["actor"].clone());
    assert_eq!(by("created"), Some(json!("token:Zapier")), "{rows:?}");
    assert_eq!(by("disabled"), Some(json!("token:Zapier")));
    assert_eq!(by("token_created"), Some(json!("token:Zapier")));
    assert!(!log.contains(second["token"].as_str().unwrap()), "never the token itself");

    // Revoked: refused at once. A made-up token is no token either.
    let revoke = format!("{tokens}/{}", made["id"].as_str().unwrap());
    assert_eq!(app.admin(Method::DELETE, &revoke).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let after = with(&app, &secret, Method::GET, "/api/v1/workspaces").send().await.unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    let made_up = format!("cbt_{}", "x".repeat(40));
    assert_eq!(
        with(&app, &made_up, Method::GET, &path).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.admin(Method::DELETE, &revoke).send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_viewer_token_reads_without_secrets_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let receiver = Receiver::start().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let source_path = format!("/api/v1/workspaces/{}/sources", ws.id);
    let source = app
        .admin(Method::POST, &source_path)
        .json(&json!({"kind": "zoho_desk", "name": "Desk", "credentials": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(source.status(), 201);
    app.ingest(&ws, &message("m-1", "c-1", "hello")).await;
    let viewer = token(&app, &ws, "Reports", "viewer").await["token"].as_str().unwrap().to_string();

    let path = format!("/api/v1/workspaces/{}", ws.id);
    let shown: Value = with(&app, &viewer, Method::GET, &path).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown["name"], "Acme");
    assert!(shown.get("ingest_key").is_none(), "no ingest key for a viewer: {shown}");
    let sources: Value =
        with(&app, &viewer, Method::GET, &source_path).send().await.unwrap().json().await.unwrap();
    assert!(sources["sources"][0].get("inbound_url").is_none(), "no inbound URL (its key) for a viewer");
    let hook_path = format!("/api/v1/webhooks/{}", hook["id"].as_str().unwrap());
    assert_eq!(with(&app, &viewer, Method::GET, &hook_path).send().await.unwrap().status(), StatusCode::OK);
    let chats: Value = with(&app, &viewer, Method::GET, &format!("/api/v1/workspaces/{}/chats", ws.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(chats["chats"].as_array().unwrap().len(), 1, "a viewer reads chats");

    for (method, path, body) in [
        (Method::PATCH, hook_path.clone(), json!({"enabled": false})),
        (Method::DELETE, hook_path.clone(), json!({})),
        (Method::PATCH, path.clone(), json!({"name": "Mine"})),
        (Method::POST, format!("{path}/flush"), json!({})),
        (Method::POST, format!("{path}/tokens"), json!({"name": "more", "role": "admin"})),
        (Method::GET, format!("{path}/tokens"), json!({})),
    ] {
        let answer = with(&app, &viewer, method.clone(), &path).json(&body).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let error: Value = answer.json().await.unwrap();
        assert_eq!(error["error"]["code"], "forbidden");
    }
    let still: Value = app.admin(Method::GET, &hook_path).send().await.unwrap().json().await.unwrap();
    assert_eq!(still["enabled"], true, "nothing changed");
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap()
}

/// An invited viewer chooses a password, is signed in on their workspace, sees only it, reads
/// without forms or secrets, is refused a change, and is out of it at once when removed; the link
/// works once; the password signs in again later.
#[tokio::test]
async fn an_invited_viewer_signs_in_sees_only_their_workspace_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (ws, other) = (app.workspace().await, app.workspace().await);
    let receiver = Receiver::start().await;
    let hook = app.create_webhook(&ws.id, json!({"url": receiver.url})).await;
    let members = format!("/api/v1/workspaces/{}/members", ws.id);
    let invited = app
        .admin(Method::POST, &members)
        .json(&json!({"email": "Mia@Acme.example", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(invited.status(), 201);
    let invited: Value = invited.json().await.unwrap();
    assert_eq!(
        (invited["email"].as_str(), invited["role"].as_str()),
        (Some("mia@acme.example"), Some("viewer"))
    );
    assert_eq!(invited["active"], false);
    let link = invited["invitation_url"].as_str().unwrap().to_string();
    assert!(link.starts_with(&format!("{}/invite/inv_", app.base)), "{link}");

    let mia = browser();
    let form = mia.get(&link).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains("mia@acme.example"));
    let short = mia.post(&link).form(&[("password", "too short")]).send().await.unwrap();
    assert_eq!(short.status(), 422);
    assert!(short.text().await.unwrap().contains("at least 12 characters"));
    let common = mia.post(&link).form(&[("password", "password1234")]).send().await.unwrap();
    assert_eq!(common.status(), 422);
    let joined = mia.post(&link).form(&[("password", "blue tulips at noon")]).send().await.unwrap();
    assert_eq!(joined.status(), 303);
    assert_eq!(joined.headers()["location"], format!("/ui/workspaces/{}", ws.id).as_str());
    assert_eq!(
        browser().post(&link).form(&[("password", "another good one!")]).send().await.unwrap().status(),
        404,
        "single-use"
    );

    // Only their workspace, read-only: no forms that change it, no ingest key, no inbound URL.
    let home = mia.get(app.url("/ui")).send().await.unwrap().text().await.unwrap();
    assert!(
        home.contains(&format!("/ui/workspaces/{}", ws.id)) && !home.contains(other.id.as_str()),
        "{home}"
    );
    assert!(!home.contains("action=\"/ui/workspaces\""), "no new-workspace form for a member");
    let page = mia.get(app.url(&format!("/ui/workspaces/{}", ws.id))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(!page.contains(&ws.ingest_key), "no ingest key for a viewer");
    assert!(!page.contains("method=\"post\" action=\"/ui/webhooks/"), "no webhook forms for a viewer");
    assert!(page.contains(hook["url"].as_str().unwrap()), "the webhook is shown");
    let other_page = mia.get(app.url(&format!("/ui/workspaces/{}", other.id))).send().await.unwrap();
    assert_eq!(other_page.status(), 404, "another workspace does not exist to them");
    let csrf = csrf_of(&page);
    let flush = mia
        .post(app.url(&format!("/ui/workspaces/{}/flush", ws.id)))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(flush.status(), 403);

    // The member list says they are in, and when they signed in.
    let listed: Value = app.admin(Method::GET, &members).send().await.unwrap().json().await.unwrap();
    let row = &listed["members"][0];
    assert_eq!((row["email"].as_str(), row["active"].as_bool()), (Some("mia@acme.example"), Some(true)));
    assert!(row["last_sign_in_at"].is_string());

    // Signing in again with the password; a wrong one is refused.
    let again = browser();
    let wrong = again
        .post(app.url("/login"))
        .form(&[("email", "mia@acme.example"), ("password", "blue tulips at nine")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = again
        .post(app.url("/login"))
        .form(&[("email", "MIA@acme.example"), ("password", "blue tulips at noon")])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 303);
    assert_eq!(again.get(app.url(&format!("/ui/workspaces/{}", ws.id))).send().await.unwrap().status(), 200);

    // Promoted to admin, they may change it; removed, they are out at their next request.
    let user = row["user_id"].as_str().unwrap();
    let promote = app
        .admin(Method::PATCH, &format!("{members}/{user}"))
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(promote.status(), 200);
    let flush = mia
        .post(app.url(&format!("/ui/workspaces/{}/flush", ws.id)))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(flush.status(), 303, "an admin member may");
    assert_eq!(app.admin(Method::DELETE, &format!("{members}/{user}")).send().await.unwrap().status(), 204);
    let gone = mia.get(app.url(&format!("/ui/workspaces/{}", ws.id))).send().await.unwrap();
    assert_eq!(gone.status(), 404, "out of the workspace at once");

    // Who did what, in the workspace's events.
    let log = app
        .admin(Method::GET, &format!("/api/v1/webhooks/{}/log", hook["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let log = log.text().await.unwrap();
    assert!(
        log.contains("\"kind\":\"member_invited\"") && log.contains("\"actor\":\"mia@acme.example\""),
        "{log}"
    );
}

/// The Members section of a workspace's page: invite (the link shown once), change a role, remove.
#[tokio::test]
async fn members_are_invited_changed_and_removed_on_the_page() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let (operator, csrf) = signed_in_browser(&app).await;
    let invite = operator
        .post(app.url(&format!("/ui/workspaces/{}/members", ws.id)))
        .form(&[("csrf", csrf.as_str()), ("email", "dana@acme.example"), ("role", "admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(invite.status(), 200);
    let page = invite.text().await.unwrap();
    let link = page.split("/invite/").nth(1).expect("the link, shown once").split('<').next().unwrap();
    let link = format!("{}/invite/{link}", app.base);
    assert!(page.contains("dana@acme.example"));
    let listed: Value = app
        .admin(Method::GET, &format!("/api/v1/workspaces/{}/members", ws.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = listed["members"][0]["user_id"].as_str().unwrap().to_string();
    assert_eq!(listed["members"][0]["role"], "admin");
    let again = operator
        .get(app.url(&format!("/ui/workspaces/{}", ws.id)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!again.contains("/invite/"), "the link is not shown again");
    assert!(again.contains("dana@acme.example"));

    let member = format!("/ui/workspaces/{}/members/{user}", ws.id);
    let demoted = operator
        .post(app.url(&member))
        .form(&[("csrf", csrf.as_str()), ("role", "viewer"), ("action", "save")])
        .send()
        .await
        .unwrap();
    assert_eq!(demoted.status(), 303);
    let dana = browser();
    assert_eq!(
        dana.post(&link).form(&[("password", "quiet harbour lights")]).send().await.unwrap().status(),
        303
    );
    let dana_page =
        dana.get(app.url(&format!("/ui/workspaces/{}", ws.id))).send().await.unwrap().text().await.unwrap();
    assert!(!dana_page.contains("members-heading"), "a viewer has no Members section");
    let removed = operator
        .post(app.url(&member))
        .form(&[("csrf", csrf.as_str()), ("action", "remove")])
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 303);
    assert_eq!(dana.get(app.url(&format!("/ui/workspaces/{}", ws.id))).send().await.unwrap().status(), 404);
}

/// With an SMTP server, an invitation is e-mailed too, in the workspace's language, carrying the
/// same single-use link.
#[tokio::test]
#[ignore = "needs aiosmtpd (PyPI), a real SMTP server: run scripts/test"]
async fn an_invitation_is_emailed_in_the_workspaces_language() {
    let smtp = SmtpSink::start();
    let dir = test_dir();
    let mut config = test_config(&dir);
    config.smtp.url = Some(smtp.url());
    let app = TestApp::spawn_with(dir, config, chatbundle::clock::ManualClock::new(start_time())).await;
    let made = app
        .create_workspace(json!({"name": "東京店", "owner_email": "owner@acme.example", "locale": "ja"}))
        .await;
    let members = format!("/api/v1/workspaces/{}/members", made["id"].as_str().unwrap());
    let invited: Value = app
        .admin(Method::POST, &members)
        .json(&json!({"email": "ken@acme.example", "role": "viewer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = invited["invitation_url"].as_str().unwrap();
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail["to"], json!(["ken@acme.example"]));
    assert_eq!(mail["subject"], "chatbundle: ワークスペース「東京店」への招待");
    let body = mail["body"].as_str().unwrap();
    assert!(body.contains(link) && body.contains("閲覧者"), "{body}");
}

/// "Forgot your password?": a reset link by e-mail (single-use, 15 minutes, one at a time), which
/// sets a new password, signs out the user's other sessions and signs in.
#[tokio::test]
#[ignore = "needs aiosmtpd (PyPI), a real SMTP server: run scripts/test"]
async fn a_forgotten_password_is_reset_by_a_link_that_works_once() {
    let smtp = SmtpSink::start();
    let dir = test_dir();
    let mut config = test_config(&dir);
    config.smtp.url = Some(smtp.url());
    let app = TestApp::spawn_with(dir, config, chatbundle::clock::ManualClock::new(start_time())).await;
    let ws = app.workspace().await;
    let invited: Value = app
        .admin(Method::POST, &format!("/api/v1/workspaces/{}/members", ws.id))
        .json(&json!({"email": "ana@acme.example", "role": "admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let old = browser();
    let joined =
        old.post(invited["invitation_url"].as_str().unwrap()).form(&[("password", "first long password")]);
    assert_eq!(joined.send().await.unwrap().status(), 303);
    smtp.wait_for(1).await; // the invitation

    let asked =
        browser().post(app.url("/forgot")).form(&[("email", "ana@acme.example")]).send().await.unwrap();
    assert_eq!(asked.status(), 200);
    assert!(asked.text().await.unwrap().contains("If that address has an account"));
    let nobody =
        browser().post(app.url("/forgot")).form(&[("email", "nobody@acme.example")]).send().await.unwrap();
    assert!(nobody.text().await.unwrap().contains("If that address has an account"), "the same answer");
    let mail = smtp.wait_for(2).await.remove(1);
    assert_eq!(
        (mail["to"].clone(), mail["subject"].as_str()),
        (json!(["ana@acme.example"]), Some("chatbundle: choose a new password"))
    );
    let body = mail["body"].as_str().unwrap();
    let link = body.lines().find(|l| l.contains("/reset/rst_")).expect("the link").trim().to_string();
    // Asking again while the link is good sends nothing more.
    browser().post(app.url("/forgot")).form(&[("email", "ana@acme.example")]).send().await.unwrap();

    let new = browser();
    assert_eq!(new.get(&link).send().await.unwrap().status(), 200);
    let short = new.post(&link).form(&[("password", "short")]).send().await.unwrap();
    assert_eq!(short.status(), 422);
    let reset = new.post(&link).form(&[("password", "second long password")]).send().await.unwrap();
    assert_eq!(reset.status(), 303);
    assert_eq!(new.get(app.url("/ui")).send().await.unwrap().status(), 200, "signed in");
    assert_eq!(
        old.get(app.url("/ui")).send().await.unwrap().status(),
        303,
        "the other session is signed out"
    );
    assert_eq!(
        browser().post(&link).form(&[("password", "third long password")]).send().await.unwrap().status(),
        404
    );
    let signin = browser()
        .post(app.url("/login"))
        .form(&[("email", "ana@acme.example"), ("password", "second long password")])
        .send()
        .await
        .unwrap();
    assert_eq!(signin.status(), 303, "the new password signs in");
    assert_eq!(smtp.received().len(), 2, "one reset e-mail, however often asked");

    // A link older than 15 minutes does nothing.
    browser().post(app.url("/forgot")).form(&[("email", "ana@acme.example")]).send().await.unwrap();
    let mail = smtp.wait_for(3).await.remove(2);
    let late = mail["body"]
        .as_str()
        .unwrap()
        .lines()
        .find(|l| l.contains("/reset/rst_"))
        .unwrap()
        .trim()
        .to_string();
    app.advance(std::time::Duration::from_secs(15 * 60));
    assert_eq!(browser().get(&late).send().await.unwrap().status(), 404);
}

/// Invites `email` to `ws` as `role` and accepts with `password`: a browser signed in as them, and
/// their user id.
async fn joined(
    app: &TestApp,
    ws: &Workspace,
    email: &str,
    role: &str,
    password: &str,
) -> (reqwest::Client, String) {
    let invited = app.invite(ws, email, role).await;
    let person = browser();
    let link = invited["invitation_url"].as_str().unwrap();
    assert_eq!(person.post(link).form(&[("password", password)]).send().await.unwrap().status(), 303);
    (person, invited["user_id"].as_str().unwrap().to_string())
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> (reqwest::Client, StatusCode) {
    let person = browser();
    let status = person
        .post(app.url("/login"))
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .unwrap()
        .status();
    (person, status)
}

/// An operator made through the API (as `chatbundle user add EMAIL --operator` does) chooses a
/// password with the link, signs in, sees every workspace and may make one, and is named in the
/// activity log; no longer an operator, they see nothing they are not a member of; deleted, they
/// are signed out at once. Only the operator's credential may manage users.
#[tokio::test]
async fn an_operator_user_does_what_the_admin_token_does_under_their_own_name() {
    let app = TestApp::spawn().await;
    let (ws, other) = (app.workspace().await, app.workspace().await);
    let receiver = Receiver::start().await;
    let hook = app.create_webhook(&other.id, json!({"url": receiver.url})).await;
    let not_operator = app
        .admin(Method::POST, "/api/v1/users")
        .json(&json!({"email": "ops@acme.example", "operator": false}));
    let not_operator = not_operator.send().await.unwrap();
    assert_eq!(not_operator.status(), 400);
    assert!(not_operator.text().await.unwrap().contains("operator"));
    let scoped = token(&app, &ws, "zap", "admin").await;
    let by_token = with(&app, scoped["token"].as_str().unwrap(), Method::POST, "/api/v1/users")
        .json(&json!({"email": "ops@acme.example", "operator": true}));
    assert_eq!(by_token.send().await.unwrap().status(), 403, "a workspace's token manages no users");

    let added = app
        .admin(Method::POST, "/api/v1/users")
        .json(&json!({"email": "Ops@Acme.example", "operator": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let added: Value = added.json().await.unwrap();
    assert_eq!((added["email"].as_str(), added["active"].as_bool()), (Some("ops@acme.example"), Some(false)));
    let link = added["password_url"].as_str().unwrap();
    let ops = browser();
    assert_eq!(
        ops.post(link).form(&[("password", "the operator's own words")]).send().await.unwrap().status(),
        303
    );
    let again: Value = app
        .admin(Method::POST, "/api/v1/users")
        .json(&json!({"email": "ops@acme.example", "operator": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(again.get("password_url").is_none(), "no link for someone who has a password: {again}");

    let home = ops.get(app.url("/ui")).send().await.unwrap().text().await.unwrap();
    assert!(home.contains(ws.id.as_str()) && home.contains(other.id.as_str()), "every workspace");
    assert!(home.contains("action=\"/ui/workspaces\""), "the new-workspace form");
    let page =
        ops.get(app.url(&format!("/ui/workspaces/{}", other.id))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&other.ingest_key), "the operator sees the secrets");
    let flush = ops
        .post(app.url(&format!("/ui/workspaces/{}/flush", other.id)))
        .form(&[("csrf", csrf_of(&page).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(flush.status(), 303);
    let log = app
        .admin(Method::GET, &format!("/api/v1/webhooks/{}/log", hook["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let activity = log.text().await.unwrap();
    assert!(
        activity.contains("\"kind\":\"flushed\"") && activity.contains("\"actor\":\"ops@acme.example\""),
        "{activity}"
    );

    // No longer an operator: from the next request, nothing they are not a member of.
    let user = added["user_id"].as_str().unwrap();
    let demoted = app
        .admin(Method::PATCH, &format!("/api/v1/users/{user}"))
        .json(&json!({"operator": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(demoted.status(), 200);
    assert_eq!(ops.get(app.url(&format!("/ui/workspaces/{}", other.id))).send().await.unwrap().status(), 404);
    let listed: Value = app.admin(Method::GET, "/api/v1/users").send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["users"][0]["operator"], false);
    assert_eq!(
        app.admin(Method::DELETE, &format!("/api/v1/users/{user}")).send().await.unwrap().status(),
        204
    );
    assert_eq!(ops.get(app.url("/ui")).send().await.unwrap().status(), 303, "signed out at once");
    assert_eq!(
        app.admin(Method::DELETE, &format!("/api/v1/users/{user}")).send().await.unwrap().status(),
        404
    );
}

/// A member changes their password on their account page: the current one is asked for (wrong
/// ones count towards the guessing throttle), the new one follows the rules, and their other
/// sessions end while this one stays.
#[tokio::test]
async fn a_member_changes_their_password_and_their_other_sessions_end() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    let (here, _) = joined(&app, &ws, "lee@acme.example", "viewer", "first long password").await;
    let (elsewhere, status) = sign_in(&app, "lee@acme.example", "first long password").await;
    assert_eq!(status, 303);
    let page = here.get(app.url("/ui/account")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("lee@acme.example"), "{page}");
    let csrf = csrf_of(&page);
    let change = |current: &'static str, new: &'static str| {
        here.post(app.url("/ui/account")).form(&[
            ("csrf", csrf.as_str()),
            ("current", current),
            ("password", new),
        ])
    };
    let wrong = change("not my password", "second long password").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("not your current password"));
    let weak = change("first long password", "lee@acme.example").send().await.unwrap();
    assert_eq!(weak.status(), 422);
    let changed = change("first long password", "second long password").send().await.unwrap();
    assert_eq!(changed.status(), 303);
    assert_eq!(here.get(app.url("/ui")).send().await.unwrap().status(), 200, "this session stays");
    assert_eq!(elsewhere.get(app.url("/ui")).send().await.unwrap().status(), 303, "the other one ended");
    assert_eq!(sign_in(&app, "lee@acme.example", "first long password").await.1, 401);
    assert_eq!(sign_in(&app, "lee@acme.example", "second long password").await.1, 303);

    // The admin token has no password: its account page says so and has no form.
    let (operator, _) = signed_in_browser(&app).await;
    let page = operator.get(app.url("/ui/account")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("admin token") && !page.contains("name=\"current\""), "{page}");
}

/// Guessing a password is stopped, not slowed: once a client is shut out of an address, even the
/// right password is refused until the wait is over.
#[tokio::test]
async fn a_client_shut_out_of_an_address_is_refused_even_the_right_password() {
    let app = TestApp::spawn().await;
    let ws = app.workspace().await;
    joined(&app, &ws, "kim@acme.example", "viewer", "kim's long password").await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(sign_in(&app, "kim@acme.example", "a wrong guess here").await.1);
    }
    assert_eq!(statuses.first(), Some(&StatusCode::UNAUTHORIZED));
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    assert_eq!(
        sign_in(&app, "kim@acme.example", "kim's long password").await.1,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        sign_in(&app, "ann@acme.example", "kim's long password").await.1,
        401,
        "another address is not shut"
    );
}

/// Goes through the provider's sign-in as `sub`, as a browser does: our `/login/sso` sends it to
/// the provider with the state, nonce and PKCE challenge; the provider's form signs `sub` in and
/// sends it back to our callback. The callback's answer.
async fn through_provider(
    app: &TestApp,
    provider: &OidcProvider,
    person: &reqwest::Client,
    sub: &str,
) -> reqwest::Response {
    let start = person.get(app.url("/login/sso?next=/ui")).send().await.unwrap();
    assert_eq!(start.status(), 303);
    let authorize = start.headers()["location"].to_str().unwrap().to_string();
    assert!(authorize.starts_with(&format!("{}/oauth2/authorize?", provider.issuer)), "{authorize}");
    for part in [
        "response_type=code",
        "code_challenge_method=S256",
        "code_challenge=",
        "nonce=",
        "state=",
        "scope=openid+email",
    ] {
        assert!(authorize.contains(part), "{part} in {authorize}");
    }
    let signed = person.post(&authorize).form(&[("sub", sub)]).send().await.unwrap();
    assert_eq!(signed.status(), 302, "the provider signs {sub} in");
    let callback = signed.headers()["location"].to_str().unwrap().to_string();
    assert!(callback.starts_with(&app.url("/login/sso/callback?")), "{callback}");
    person.get(&callback).send().await.unwrap()
}

/// Single sign-on against a real OpenID provider: an invited address signs in (and its invitation
/// link stops working), an address nobody invited is refused and nothing is made for it, an
/// address the provider does not say is verified is refused, and a callback without the state
/// its browser set out with is refused.
#[tokio::test]
#[ignore = "needs oidc-provider-mock (PyPI), a real OpenID provider: run scripts/test"]
async fn single_sign_on_lets_in_invited_people_and_no_one_else() {
    let provider = OidcProvider::start().await;
    let app = provider.daemon().await;
    let (ws, other) = (app.workspace().await, app.workspace().await);
    let login = browser().get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(login.contains("Sign in with Acme ID"), "{login}");

    // Invited (no password chosen yet): in, on their workspace alone; the link is spent.
    let invited = app.invite(&ws, "mia@acme.example", "viewer").await;
    provider.person("mia-1", json!({"email": "Mia@Acme.example", "email_verified": true})).await;
    let mia = browser();
    let back = through_provider(&app, &provider, &mia, "mia-1").await;
    assert_eq!(back.status(), 303);
    assert_eq!(back.headers()["location"], "/ui");
    let home = mia.get(app.url("/ui")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    let home = home.text().await.unwrap();
    assert!(home.contains(ws.id.as_str()) && !home.contains(other.id.as_str()), "{home}");
    let link = invited["invitation_url"].as_str().unwrap();
    assert_eq!(browser().get(link).send().await.unwrap().status(), 404, "the invitation is spent");

    // Nobody invited this address: refused, and no user is made.
    provider.person("eve-1", json!({"email": "eve@elsewhere.example", "email_verified": true})).await;
    let eve = browser();
    let refused = through_provider(&app, &provider, &eve, "eve-1").await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("No one has invited eve@elsewhere.example"));
    assert_eq!(eve.get(app.url("/ui")).send().await.unwrap().status(), 303, "not signed in");
    let users: Value = app.admin(Method::GET, "/api/v1/users").send().await.unwrap().json().await.unwrap();
    assert_eq!(users["users"].as_array().unwrap().len(), 1, "only mia: {users}");

    // Invited, but the provider does not vouch for the address.
    app.invite(&ws, "ned@acme.example", "admin").await;
    provider.person("ned-1", json!({"email": "ned@acme.example", "email_verified": false})).await;
    let ned = browser();
    let unverified = through_provider(&app, &provider, &ned, "ned-1").await;
    assert_eq!(unverified.status(), 403);
    assert!(unverified.text().await.unwrap().contains("did not vouch"));

    // A provider that sends no email_verified but says the address's domain is the tenant's own
    // (Microsoft Entra ID's xms_edov) vouches for it.
    app.invite(&ws, "kai@acme.example", "viewer").await;
    provider.person("kai-1", json!({"email": "kai@acme.example", "xms_edov": true})).await;
    let kai = browser();
    assert_eq!(through_provider(&app, &provider, &kai, "kai-1").await.status(), 303);

    // A callback this browser did not set out for (another's state, or none kept) is refused.
    let elsewhere = browser();
    let start = elsewhere.get(app.url("/login/sso")).send().await.unwrap();
    let authorize = start.headers()["location"].to_str().unwrap().to_string();
    let signed = elsewhere.post(&authorize).form(&[("sub", "mia-1")]).send().await.unwrap();
    let callback = signed.headers()["location"].to_str().unwrap().to_string();
    let stranger = browser();
    assert_eq!(stranger.get(&callback).send().await.unwrap().status(), 400, "no state kept");
    let other_start = stranger.get(app.url("/login/sso")).send().await.unwrap();
    assert_eq!(other_start.status(), 303);
    let crossed = stranger.get(&callback).send().await.unwrap();
    assert_eq!(crossed.status(), 400, "another browser's state");
    assert_eq!(stranger.get(app.url("/ui")).send().await.unwrap().status(), 303, "not signed in");
}
