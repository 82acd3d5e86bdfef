//! The test harness: the daemon on port 0 with a temporary SQLite file (or, with
//! `TEST_STORE=postgres`, a PostgreSQL database of its own) and a manual clock, and a
//! real HTTP receiver whose answers can be changed mid-test.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chatbundle::app::{AppError, Application};
use chatbundle::clock::ManualClock;
use chatbundle::config::Config;
use chatbundle::store::{Attempt, SharedStore, WorkspaceStats};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// Daemons started in this test process.
static APPS_STARTED: AtomicUsize = AtomicUsize::new(0);

/// Whether one daemon is all this test process ever started, so that process-wide metric
/// counters are its own.
pub fn only_app_in_process() -> bool {
    APPS_STARTED.load(Ordering::SeqCst) == 1
}

/// How long any wait in a test may take before the test fails.
pub const BOUND: Duration = Duration::from_secs(10);

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A fixed start, so payload timestamps are predictable.
pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-03-01T12:00:00Z").unwrap().to_utc()
}

/// Polls `check` until it returns `Some`, failing the test after [`BOUND`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Where the tests' PostgreSQL is: trust authentication on 127.0.0.1 on these machines and in CI.
fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Whether this run tests the PostgreSQL store (`TEST_STORE=postgres`) rather than
/// the default SQLite one.
pub fn testing_postgres() -> bool {
    std::env::var("TEST_STORE").is_ok_and(|s| s == "postgres")
}

/// A PostgreSQL database of a test's own, created empty and dropped (with whatever is still
/// connected to it) when this is dropped.
pub struct TestDatabase {
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let name = format!("chatbundle_test_{}", chatbundle::domain::random_token(12).to_lowercase());
        let url = format!("{}/{name}", postgres_admin_url());
        admin_sql(format!("CREATE DATABASE {name}"));
        TestDatabase { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        admin_sql(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// Runs one statement on the `postgres` database, from a thread of its own (so it works in and
/// out of an async test, and in `Drop`).
fn admin_sql(sql: String) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            use sqlx::Connection;
            let url = format!("{}/postgres", postgres_admin_url());
            let mut conn = sqlx::PgConnection::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {url} (see README, Tests): {e}"));
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            conn.close().await.unwrap();
        })
    })
    .join()
    .unwrap();
}

/// A test's data: a temporary directory, and with `TEST_STORE=postgres` a database of
/// its own. Both go when the last daemon using them is dropped.
pub struct TestDir {
    dir: TempDir,
    pub database: Option<TestDatabase>,
}

impl std::ops::Deref for TestDir {
    type Target = TempDir;

    fn deref(&self) -> &TempDir {
        &self.dir
    }
}

impl TestDir {
    /// The `database_url` of the test's store.
    pub fn store_url(&self) -> String {
        match &self.database {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", self.path().join("chatbundle.db").display()),
        }
    }

    /// One number from the test's store, read behind the daemon's back (for what no API shows).
    pub async fn count(&self, sql: &str) -> i64 {
        use sqlx::Connection;
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match &self.database {
            Some(db) => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
            None => {
                let mut conn = sqlx::SqliteConnection::connect(&self.store_url()).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
        }
    }

    /// Renames a table behind the daemon's back: how the fault tests make one part of the store
    /// fail (and, renamed back, heal).
    pub async fn rename_table(&self, from: &str, to: &str) {
        use sqlx::Connection;
        let sql = format!("ALTER TABLE {from} RENAME TO {to}");
        match &self.database {
            Some(db) => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            None => {
                let mut conn = sqlx::SqliteConnection::connect(&self.store_url()).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }
}

/// Data for a test, on the store under test.
pub fn test_dir() -> Arc<TestDir> {
    Arc::new(TestDir {
        dir: tempfile::tempdir().unwrap(),
        database: testing_postgres().then(TestDatabase::create),
    })
}

/// A running daemon.
pub struct TestApp {
    pub base: String,
    pub clock: ManualClock,
    pub store: SharedStore,
    pub http: reqwest::Client,
    pub dir: Arc<TestDir>,
    pub config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), AppError>>>,
}

/// The configuration tests start from: port 0, a temporary data directory (and database), a
/// known token.
pub fn test_config(dir: &TestDir) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        database_url: dir.database.as_ref().map(|db| db.url.clone()),
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Config::default()
    };
    config.delivery.rate_per_webhook = 0;
    // The receivers of these tests listen on loopback, which the SSRF guard refuses by default.
    config.delivery.allow_private = vec!["127.0.0.0/8".parse().unwrap()];
    config.shutdown.grace = chatbundle::config::HumanDuration(Duration::from_secs(5));
    config
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        let dir = test_dir();
        let config = test_config(&dir);
        TestApp::spawn_with(dir, config, ManualClock::new(start_time())).await
    }

    /// Starts a daemon on an existing data directory (a restart) or with a custom configuration.
    pub async fn spawn_with(dir: Arc<TestDir>, config: Config, clock: ManualClock) -> TestApp {
        APPS_STARTED.fetch_add(1, Ordering::SeqCst);
        if std::env::var_os("TEST_LOG").is_some() {
            std::mem::forget(chatbundle::telemetry::init(
                chatbundle::config::LogFormat::Plain,
                &config.telemetry,
            ));
        }
        let app = Application::build(config.clone(), Arc::new(clock.clone())).await.expect("the app builds");
        let addr = app.local_addr();
        let store = app.store();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        TestApp {
            base: format!("http://{addr}"),
            clock,
            store,
            http: reqwest::Client::new(),
            dir,
            config,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Shuts the daemon down as SIGTERM would, and waits until it has stopped.
    pub async fn stop(mut self) -> (Arc<TestDir>, ManualClock) {
        self.shutdown.take().unwrap().send(()).unwrap();
        let task = self.task.take().unwrap();
        tokio::time::timeout(BOUND, task)
            .await
            .expect("the app stops within the bound")
            .unwrap()
            .expect("the app stops cleanly");
        (self.dir.clone(), self.clock.clone())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` with the admin token, its answer's JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.admin(reqwest::Method::GET, path).send().await.unwrap().json().await.unwrap()
    }

    /// `GET path` with the admin token, its answer's text.
    pub async fn get_text(&self, path: &str) -> String {
        self.admin(reqwest::Method::GET, path).send().await.unwrap().text().await.unwrap()
    }

    /// Invites `email` to `ws` as `role` through the admin API: the answer (`user_id`,
    /// `invitation_url`, …).
    pub async fn invite(&self, ws: &Workspace, email: &str, role: &str) -> Value {
        let invited = self
            .admin(reqwest::Method::POST, &format!("/api/v1/workspaces/{}/members", ws.id))
            .json(&json!({"email": email, "role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(invited.status(), 201, "inviting {email}");
        invited.json().await.unwrap()
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(ADMIN_TOKEN)
    }

    pub async fn create_workspace(&self, body: Value) -> Value {
        let response =
            self.admin(reqwest::Method::POST, "/api/v1/workspaces").json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201, "creating a workspace");
        response.json().await.unwrap()
    }

    /// A workspace with an account, ready for messages.
    pub async fn workspace(&self) -> Workspace {
        let ws = self
            .create_workspace(json!({
                "name": "Acme", "owner_email": "owner@acme.example",
                "account": {"full_name": "Amnon Haha", "email": "amnon@acme.com", "phone": "+972500000000"}
            }))
            .await;
        Workspace {
            id: ws["id"].as_str().unwrap().parse().unwrap(),
            ingest_key: ws["ingest_key"].as_str().unwrap().to_string(),
        }
    }

    pub async fn create_webhook(&self, workspace_id: impl AsRef<str>, body: Value) -> Value {
        let workspace_id = workspace_id.as_ref();
        let response = self
            .admin(reqwest::Method::POST, &format!("/api/v1/workspaces/{workspace_id}/webhooks"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "creating a webhook");
        response.json().await.unwrap()
    }

    /// Posts messages with the workspace's ingest key.
    pub async fn post_messages(&self, ws: &Workspace, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/v1/workspaces/{}/messages", ws.id)))
            .bearer_auth(&ws.ingest_key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts messages and insists they were accepted.
    pub async fn ingest(&self, ws: &Workspace, body: &Value) -> Value {
        let response = self.post_messages(ws, body).await;
        assert_eq!(response.status(), 202, "ingest accepted");
        response.json().await.unwrap()
    }

    pub async fn stats(&self, ws: &Workspace) -> WorkspaceStats {
        self.store.workspace_stats(&ws.id).await.unwrap()
    }

    /// Waits until the webhook has at least `n` recorded attempts; newest first.
    pub async fn attempts(&self, webhook_id: &str, n: usize) -> Vec<Attempt> {
        eventually(&format!("{n} attempts on {webhook_id}"), || async {
            let attempts =
                self.store.list_attempts(&webhook_id.parse().unwrap(), n.max(1000) as u32).await.unwrap();
            (attempts.len() >= n).then_some(attempts)
        })
        .await
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub struct Workspace {
    pub id: chatbundle::domain::WorkspaceId,
    pub ingest_key: String,
}

/// A canonical message for chat `chat` with id `id`.
pub fn message(id: &str, chat: &str, text: &str) -> Value {
    json!({
        "message_id": id, "direction": "received", "timestamp": "2021-02-24T16:25:29Z",
        "chat": {"id": chat, "full_name": "John Doe", "phone": "+97254000000", "is_group": false,
                 "responsible_name": "Amnon", "responsible_email": "amnon@acme.com"},
        "sender": {"full_name": "John Doe", "phone": "+97254000000"},
        "recipient": {"full_name": "Amnon Haha", "phone": "+972500000000"},
        "text": text
    })
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The `message.message_id` of a single-message payload.
    pub fn message_id(&self) -> String {
        self.json()["message"]["message_id"].as_str().unwrap_or_default().to_string()
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: String::new(), delay: Duration::ZERO }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.to_string();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct ReceiverState {
    requests: Mutex<Vec<Received>>,
    /// One-off answers, used first, in order.
    script: Mutex<VecDeque<Reply>>,
    /// The answer when the script is empty.
    default: Mutex<Option<Reply>>,
    arrived: Notify,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A real HTTP server that records what it is sent.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        *state.default.lock().unwrap() = Some(Reply::status(200).body("ok"));
        let app = axum::Router::new().fallback(receive).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url: format!("http://{addr}/hook"), state }
    }

    /// Answers every later request this way (after any scripted replies).
    pub fn answer(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = Some(reply);
    }

    /// Answers the next request this way, once.
    pub fn then(&self, reply: Reply) {
        self.state.script.lock().unwrap().push_back(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let arrived = self.state.arrived.notified();
            let seen = self.received();
            if seen.len() >= n {
                return seen;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("timed out waiting for {n} requests; got {}", self.received().len());
            }
        }
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let reply = {
        let scripted = state.script.lock().unwrap().pop_front();
        scripted.unwrap_or_else(|| state.default.lock().unwrap().clone().unwrap())
    };
    state.requests.lock().unwrap().push(Received { headers, body });
    state.arrived.notify_waiters();
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

impl TestApp {
    pub async fn patch_webhook(&self, id: impl AsRef<str>, body: Value) -> Value {
        let id = id.as_ref();
        let response = self
            .admin(reqwest::Method::PATCH, &format!("/api/v1/webhooks/{id}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "patching a webhook");
        response.json().await.unwrap()
    }

    pub async fn patch_workspace(&self, id: impl AsRef<str>, body: Value) -> Value {
        let id = id.as_ref();
        let response = self
            .admin(reqwest::Method::PATCH, &format!("/api/v1/workspaces/{id}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "patching a workspace");
        response.json().await.unwrap()
    }

    /// Releases a workspace's open windows; returns the number of deliveries made.
    pub async fn flush(&self, workspace_id: impl AsRef<str>) -> u64 {
        let workspace_id = workspace_id.as_ref();
        let response = self
            .admin(reqwest::Method::POST, &format!("/api/v1/workspaces/{workspace_id}/flush"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "flushing");
        response.json::<Value>().await.unwrap()["deliveries"].as_u64().unwrap()
    }

    /// A workspace with the given default granularity and time zone.
    pub async fn workspace_with(&self, granularity: &str, timezone: &str) -> Workspace {
        let ws = self
            .create_workspace(json!({
                "name": "Acme", "owner_email": "owner@acme.example", "granularity": granularity,
                "timezone": timezone,
                "account": {"full_name": "Amnon Haha", "email": "amnon@acme.com", "phone": "+972500000000"}
            }))
            .await;
        Workspace {
            id: ws["id"].as_str().unwrap().parse().unwrap(),
            ingest_key: ws["ingest_key"].as_str().unwrap().to_string(),
        }
    }

    /// Moves the clock to an instant (forward only).
    pub fn set_time(&self, rfc3339: &str) {
        let to = DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc();
        assert!(to >= chatbundle::clock::Clock::now(&self.clock), "time only moves forward in these tests");
        self.clock.set(to);
    }

    /// A barrier: once a flush of an unrelated, empty workspace has been answered, the closer has
    /// finished whatever it was doing before.
    pub async fn closer_settled(&self) {
        let idle = self.workspace().await;
        self.flush(&idle.id).await;
    }
}

/// A message with its own timestamp (RFC 3339).
pub fn message_at(id: &str, chat: &str, text: &str, timestamp: &str) -> Value {
    let mut m = message(id, chat, text);
    m["timestamp"] = json!(timestamp);
    m
}

impl TestApp {
    /// Waits until `n` deliveries of the workspace are recorded as delivered, so that moving the
    /// clock next cannot catch a send in flight (its lease is measured on the same clock).
    pub async fn delivered(&self, ws: &Workspace, n: u64) {
        eventually(&format!("{n} deliveries recorded"), || async {
            let stats = self.stats(ws).await;
            (stats.deliveries_delivered >= n).then_some(())
        })
        .await;
    }
}

/// A real SMTP server (aiosmtpd, which scripts/test installs) that records the messages it accepts.
pub struct SmtpSink {
    pub port: u16,
    child: std::process::Child,
    messages: Arc<Mutex<Vec<Value>>>,
    refusals: Arc<Mutex<Vec<Value>>>,
}

impl SmtpSink {
    /// Starts on a free port.
    pub fn start() -> SmtpSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        SmtpSink::start_on(port)
    }

    pub fn start_on(port: u16) -> SmtpSink {
        use std::io::BufRead;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert!(
            first.contains("ready"),
            "the SMTP sink did not start ({first:?}); it needs aiosmtpd, which scripts/test installs"
        );
        let messages: Arc<Mutex<Vec<Value>>> = Default::default();
        let refusals: Arc<Mutex<Vec<Value>>> = Default::default();
        let (accepted, refused) = (messages.clone(), refusals.clone());
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    let sink = if value.get("refused").is_some() { &refused } else { &accepted };
                    sink.lock().unwrap().push(value);
                }
            }
        });
        SmtpSink { port, child, messages, refusals }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Waits until `n` recipients have been refused (550 or 451), as `{"refused", "code"}`.
    pub async fn wait_for_refusals(&self, n: usize) -> Vec<Value> {
        eventually(&format!("{n} refusals"), || async {
            let got = self.refusals.lock().unwrap().clone();
            (got.len() >= n).then_some(got)
        })
        .await
    }

    /// The messages accepted so far.
    pub fn received(&self) -> Vec<Value> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until `n` messages have been accepted.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        eventually(&format!("{n} e-mails"), || async {
            let got = self.messages.lock().unwrap().clone();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real OpenID Connect provider on a free port: PyPI's `oidc-provider-mock` (built on authlib),
/// which publishes its discovery document and keys, signs ID tokens (RS256), and signs in whoever
/// the authorization form names. Clients must register (their redirect URIs and secret are then
/// checked), and every authorization request must carry a nonce.
pub struct OidcProvider {
    pub issuer: String,
    child: std::process::Child,
}

impl OidcProvider {
    pub async fn start() -> OidcProvider {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("python3")
            .args(["-W", "ignore", "-m", "oidc_provider_mock", "--port", &port.to_string()])
            .args(["--require-registration", "true", "--require-nonce", "true"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs");
        let issuer = format!("http://127.0.0.1:{port}");
        let provider = OidcProvider { issuer, child };
        let discovery = format!("{}/.well-known/openid-configuration", provider.issuer);
        eventually(
            "the OpenID provider answers (it needs oidc-provider-mock: scripts/test installs it)",
            || {
                let discovery = discovery.clone();
                async move { reqwest::get(&discovery).await.ok().filter(|r| r.status() == 200).map(|_| ()) }
            },
        )
        .await;
        provider
    }

    /// Registers a client whose redirect URI is `redirect`: its id and secret.
    pub async fn register(&self, redirect: &str) -> (String, String) {
        let client: Value = reqwest::Client::new()
            .post(format!("{}/oauth2/clients", self.issuer))
            .json(&json!({"redirect_uris": [redirect], "token_endpoint_auth_method": "client_secret_basic"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (client["client_id"].as_str().unwrap().into(), client["client_secret"].as_str().unwrap().into())
    }

    /// Sets the claims the provider gives about the person `sub`.
    pub async fn person(&self, sub: &str, claims: Value) {
        let put = reqwest::Client::new().put(format!("{}/users/{sub}", self.issuer)).json(&claims);
        assert_eq!(put.send().await.unwrap().status(), 204);
    }
}

impl OidcProvider {
    /// A daemon whose sign-in page offers this provider ("Sign in with Acme ID"), registered with
    /// it as a client whose callback is the daemon's.
    pub async fn daemon(&self) -> TestApp {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (client_id, secret) = self.register(&format!("http://127.0.0.1:{port}/login/sso/callback")).await;
        let dir = test_dir();
        let mut config = test_config(&dir);
        config.listen = format!("127.0.0.1:{port}").parse().unwrap();
        config.oidc = Some(chatbundle::config::OidcConfig {
            issuer: self.issuer.clone(),
            client_id,
            client_secret: Some(secret),
            client_secret_file: None,
            name: "Acme ID".into(),
        });
        TestApp::spawn_with(dir, config, ManualClock::new(start_time())).await
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CSRF token the forms of a signed-in page carry.
pub fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .expect("a form with a CSRF token")
        .split('"')
        .next()
        .unwrap()
        .into()
}

/// A browser-like client (cookies kept, redirects not followed) signed in to the web page with the
/// admin token, and the CSRF token of its forms.
pub async fn signed_in_browser(app: &TestApp) -> (reqwest::Client, String) {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let response = browser.post(app.url("/login")).form(&[("token", ADMIN_TOKEN)]).send().await.unwrap();
    assert_eq!(response.status(), 303, "signing in");
    let page = browser.get(app.url("/ui")).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_of(&page);
    (browser, csrf)
}

/// A local server on port 0 for `router` (a vendor's API, as the tests play it); its base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// Creates a source in `ws` through the admin API; its view (with `id` and `inbound_url`).
pub async fn source(app: &TestApp, ws: &Workspace, body: Value) -> Value {
    let path = format!("/api/v1/workspaces/{}/sources", ws.id);
    let response = app.admin(reqwest::Method::POST, &path).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201, "creating a source");
    response.json().await.unwrap()
}

/// HMAC-SHA256 of the parts, in hex: how Meta signs (`X-Hub-Signature-256: sha256=…`).
pub fn hex_hmac_sha256(key: &str, parts: &[&[u8]]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Form fields as Twilio posts them.
pub fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A form posted to `url` the way Twilio does, signed with auth token `12345`.
pub async fn post_twilio(app: &TestApp, url: &str, params: &[(String, String)]) -> reqwest::Response {
    app.http
        .post(url)
        .header("x-twilio-signature", chatbundle::ingest::twilio::signature("12345", url, params))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(params).unwrap())
        .send()
        .await
        .unwrap()
}

/// [`post_twilio`], which must be taken (200).
pub async fn post_twilio_ok(app: &TestApp, url: &str, pairs: &[(&str, &str)]) {
    assert_eq!(post_twilio(app, url, &form(pairs)).await.status(), 200);
}
