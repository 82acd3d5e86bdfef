//! Load benchmark: starts the release daemon on 127.0.0.1 with a fresh SQLite file, drives it
//! with 64 connections, and receives its deliveries on a local HTTP server.
//!
//! Run with `cargo bench --bench load` (optionally `BENCH_SECONDS=20`, `BENCH_CONNECTIONS=64`,
//! `BENCH_DAEMON_BIN=/path/to/another/build`,
//! `BENCH_PHASES=ingest1,ingest100,drain,e2e`). To drive a daemon that is already running, set
//! `BENCH_TARGET=http://127.0.0.1:8080` and `BENCH_TOKEN=<its admin token>`. With
//! `BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432` it starts `BENCH_DAEMONS` daemons (1 unless
//! set) on one fresh PostgreSQL database instead, and spreads the requests over them as a load
//! balancer would.
//! Phases:
//! 1. ingest, one message per request;
//! 2. ingest, arrays of 100 messages per request;
//! 3. delivery throughput: a backlog of messages drained to a webhook that was switched on;
//! 4. end to end at a steady offered rate: accept (the 202) → arrival at the receiver; and
//!    end-to-end throughput (`throughput`): 20,000 single-message requests over 1,000 chats from 32
//!    connections, first request to last arrival (`BENCH_MESSAGES`, `BENCH_E2E_CONNECTIONS`), with
//!    the CPU each message cost the daemons and, on PostgreSQL, the database's CPU, commits,
//!    statements and planning time per message;
//! 5. closing a day window that holds 1,000,000 messages in 100,000 chats (`BENCH_CLOSE_MESSAGES`,
//!    `BENCH_CLOSE_CHATS`): the time it takes and the daemon's peak memory meanwhile;
//! 6. webhook calls per message on a realistic day of chats (1–200 messages each, in bursts), for
//!    each granularity, with the same window arithmetic the daemon uses;
//! 7. conversations: 100,000 chats (`BENCH_CONVERSATION_CHATS`) open one each and fall silent
//!    (silence 1m): the daemon's CPU while they wait, and the time to close them all once due.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use serde_json::{Value, json};

const CHATS: u64 = 10_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The daemons under test: one, or several sharing a PostgreSQL database.
struct Daemon {
    /// Empty when the benchmark drives a daemon it did not start (`BENCH_TARGET`).
    children: Vec<Child>,
    /// The first daemon's address; admin calls go there.
    base: String,
    /// Every daemon's address; load is spread over them.
    bases: Vec<String>,
    token: String,
    _dirs: Vec<tempfile::TempDir>,
    /// The PostgreSQL database the daemons share, dropped after them.
    database: Option<(String, String)>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        if let Some((admin, name)) = &self.database {
            postgres(admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Runs one statement on the `postgres` database of the server at `admin`.
fn postgres(admin: &str, sql: &str) {
    let (admin, sql) = (admin.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&format!("{admin}/postgres")).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
        })
    })
    .join()
    .unwrap();
}

const TOKEN: &str = "bench-admin-token-0123456789";

fn start_daemon() -> Daemon {
    if let Ok(target) = std::env::var("BENCH_TARGET") {
        let base = target.trim_end_matches('/').to_string();
        return Daemon {
            children: Vec::new(),
            bases: vec![base.clone()],
            base,
            token: std::env::var("BENCH_TOKEN").expect("BENCH_TOKEN: the target's admin token"),
            _dirs: Vec::new(),
            database: None,
        };
    }
    let database = std::env::var("BENCH_POSTGRES").ok().map(|admin| {
        let admin = admin.trim_end_matches('/').to_string();
        let name = format!("chatbundle_bench_{}", std::process::id());
        postgres(&admin, &format!("CREATE DATABASE {name}"));
        (admin, name)
    });
    let count = if database.is_some() { env_or("BENCH_DAEMONS", 1).max(1) } else { 1 };
    let mut daemon = Daemon {
        children: Vec::new(),
        base: String::new(),
        bases: Vec::new(),
        token: TOKEN.into(),
        _dirs: Vec::new(),
        database,
    };
    for _ in 0..count {
        let dir = tempfile::tempdir().unwrap();
        // BENCH_DAEMON_BIN runs another build (e.g. the one before a change, copied aside), so two
        // builds are compared in one sitting.
        let binary =
            std::env::var("BENCH_DAEMON_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_chatbundle").into());
        let mut command = Command::new(binary);
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env("CHATBUNDLE_ADMIN_TOKEN", TOKEN)
            .env("CHATBUNDLE_LOG_FORMAT", "json")
            // No per-webhook pacing: this measures the daemon, not Zapier's limit.
            .env("CHATBUNDLE_DELIVERY__RATE_PER_WEBHOOK", "0")
            // The generator is one client address standing in for many.
            .env("CHATBUNDLE_HTTP__MAX_CONNECTIONS_PER_CLIENT", "4096")
            // The receiver is on loopback, which the SSRF guard refuses by default.
            .env("CHATBUNDLE_DELIVERY__ALLOW_PRIVATE", "[\"127.0.0.0/8\"]")
            // BENCH_RUST_LOG (e.g. `info,chatbundle::store::sqlite::writer=debug` for each group
            // commit) and BENCH_DAEMON_LOG (a file to keep the daemon's log in) help see inside.
            .env("RUST_LOG", std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::piped());
        if let Some((admin, name)) = &daemon.database {
            command.env("CHATBUNDLE_DATABASE_URL", format!("{admin}/{name}"));
        }
        let mut child = command.spawn().expect("the daemon starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let listen = loop {
            let line = lines.next().expect("the daemon reports serving").unwrap();
            let event: Value = serde_json::from_str(&line).unwrap_or_default();
            if event["message"] == "chatbundle is serving" {
                break event["listen"].as_str().unwrap().to_string();
            }
        };
        // Keep draining the daemon's log so it never blocks on a full pipe.
        let mut keep =
            std::env::var("BENCH_DAEMON_LOG").ok().map(|path| std::fs::File::create(path).unwrap());
        std::thread::spawn(move || {
            // Read errors are skipped, as lines are: the pipe must keep draining.
            for line in lines {
                if let (Ok(line), Some(file)) = (line, keep.as_mut()) {
                    let _ = writeln!(file, "{line}");
                }
            }
        });
        daemon.children.push(child);
        daemon.bases.push(format!("http://{listen}"));
        daemon._dirs.push(dir);
    }
    daemon.base = daemon.bases[0].clone();
    daemon
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A message as JSON text, without building a JSON tree first.
fn message_json(id: &str, chat: u64) -> String {
    format!(
        r#"{{"message_id":"{id}","direction":"received","chat":{{"id":"chat-{chat}","full_name":"John Doe","phone":"+97254000000"}},"sender":{{"full_name":"John Doe","phone":"+97254000000"}},"recipient":{{"full_name":"Amnon Haha","phone":"+972500000000"}},"text":"Hi! How are you doing today? Just checking in about the order."}}"#
    )
}

fn message(id: &str, chat: u64) -> Value {
    json!({
        "message_id": id, "direction": "received",
        "chat": {"id": format!("chat-{chat}"), "full_name": "John Doe", "phone": "+97254000000"},
        "sender": {"full_name": "John Doe", "phone": "+97254000000"},
        "recipient": {"full_name": "Amnon Haha", "phone": "+972500000000"},
        "text": "Hi! How are you doing today? Just checking in about the order."
    })
}

async fn admin(
    client: &reqwest::Client,
    daemon: &Daemon,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    let response = client
        .request(method, format!("{}{path}", daemon.base))
        .bearer_auth(&daemon.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().await.unwrap_or_default()
}

struct Workspace {
    id: String,
    key: String,
}

async fn workspace(client: &reqwest::Client, daemon: &Daemon) -> Workspace {
    let ws = admin(
        client,
        daemon,
        reqwest::Method::POST,
        "/api/v1/workspaces",
        json!({"name": "bench", "owner_email": "bench@example.com",
               "account": {"full_name": "Bench", "phone": "+1555"}}),
    )
    .await;
    Workspace { id: ws["id"].as_str().unwrap().into(), key: ws["ingest_key"].as_str().unwrap().into() }
}

/// Phases 1 and 2: `connections` clients post as fast as they can for `seconds`. Each client is
/// one keep-alive HTTP/1 connection driven by hyper with bodies rendered up front, so the load
/// generator spends little of the CPU it shares with the daemon.
async fn ingest_phase(
    daemon: &Daemon,
    ws: &Workspace,
    connections: u64,
    seconds: u64,
    batch: u64,
    tag: &str,
) {
    let authorities: Vec<String> =
        daemon.bases.iter().map(|b| b.trim_start_matches("http://").to_string()).collect();
    let path = format!("/api/v1/workspaces/{}/messages", ws.id);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let authority = authorities[c as usize % authorities.len()].clone();
        let (path, key, tag) = (path.clone(), ws.key.clone(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            let auth = format!("Bearer {key}");
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let items: Vec<String> = (0..batch)
                    .map(|i| {
                        n += 1;
                        message_json(&format!("{tag}-{c}-{n}"), (c * 7919 + n * 31 + i) % CHATS)
                    })
                    .collect();
                let body = if batch == 1 { items[0].clone() } else { format!("[{}]", items.join(",")) };
                let request = hyper::Request::post(&path)
                    .header("host", &authority)
                    .header("content-type", "application/json")
                    .header("authorization", &auth)
                    .body(http_body_util::Full::new(Bytes::from(body)))
                    .unwrap();
                let sent = Instant::now();
                match sender.send_request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        // Read the (small) answer so the connection can carry the next request.
                        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                        if status == 202 {
                            latencies.push(sent.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let requests = latencies.len() as f64;
    println!(
        "ingest, {batch:>3} msg/request, {connections} connections, {seconds} s: {:>8.0} requests/s, {:>8.0} messages/s, p50 {}, p99 {}, errors {errors}",
        requests / elapsed,
        requests * batch as f64 / elapsed,
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
    );
}

/// The receiving end: notes when each message arrived.
#[derive(Default)]
struct Arrivals {
    at: Mutex<HashMap<String, Instant>>,
    count: AtomicU64,
}

async fn receive(State(arrivals): State<Arc<Arrivals>>, body: Bytes) -> &'static str {
    let now = Instant::now();
    if let Ok(value) = serde_json::from_slice::<Value>(&body)
        && let Some(id) = value["message"]["message_id"].as_str()
    {
        arrivals.at.lock().unwrap().insert(id.to_string(), now);
    }
    arrivals.count.fetch_add(1, Ordering::Relaxed);
    "ok"
}

async fn start_receiver() -> (String, Arc<Arrivals>) {
    let arrivals = Arc::new(Arrivals::default());
    let app = axum::Router::new().fallback(receive).with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, arrivals)
}

/// Phase 3: a backlog of `total` messages in `CHATS` chats, then the webhook is switched on.
async fn drain_phase(daemon: &Daemon, client: &reqwest::Client, total: u64) {
    let ws = workspace(client, daemon).await;
    let (url, arrivals) = start_receiver().await;
    let hook = admin(
        client,
        daemon,
        reqwest::Method::POST,
        &format!("/api/v1/workspaces/{}/webhooks", ws.id),
        json!({"url": url, "enabled": false}),
    )
    .await;
    let ingest_url = format!("{}/api/v1/workspaces/{}/messages", daemon.base, ws.id);
    for chunk in 0..total / 1000 {
        let body: Vec<Value> =
            (0..1000).map(|i| message(&format!("d-{chunk}-{i}"), (chunk * 1000 + i) % CHATS)).collect();
        let r = client.post(&ingest_url).bearer_auth(&ws.key).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 202);
    }
    let started = Instant::now();
    admin(
        client,
        daemon,
        reqwest::Method::PATCH,
        &format!("/api/v1/webhooks/{}", hook["id"].as_str().unwrap()),
        json!({"enabled": true}),
    )
    .await;
    let limit = Instant::now() + Duration::from_secs(300);
    while arrivals.count.load(Ordering::Relaxed) < total && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = arrivals.count.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "delivery, backlog of {total} messages in {CHATS} chats: {:>8.0} deliveries/s ({got} arrived in {elapsed:.1} s)",
        got as f64 / elapsed
    );
}

/// Phase 4: single-message requests at `rate` per second for `seconds`, webhook on.
async fn end_to_end_phase(daemon: &Daemon, client: &reqwest::Client, rate: u64, seconds: u64) {
    let baseline = postgres_bytes(daemon).await;
    let ws = workspace(client, daemon).await;
    let (url, arrivals) = start_receiver().await;
    admin(
        client,
        daemon,
        reqwest::Method::POST,
        &format!("/api/v1/workspaces/{}/webhooks", ws.id),
        json!({"url": url}),
    )
    .await;
    let ingest_urls: Vec<String> =
        daemon.bases.iter().map(|base| format!("{base}/api/v1/workspaces/{}/messages", ws.id)).collect();
    // Per message: when its request was sent and when its 202 came back.
    let accepted: Arc<Mutex<HashMap<String, (Instant, Instant)>>> = Default::default();
    let total = rate * seconds;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..total {
        // Paced: message n is sent at n / rate seconds.
        let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let url = ingest_urls[n as usize % ingest_urls.len()].clone();
        let (client, key, accepted) = (client.clone(), ws.key.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("e-{n}");
            let sent = Instant::now();
            let r = client.post(&url).bearer_auth(&key).json(&message(&id, n % CHATS)).send().await.unwrap();
            let at = Instant::now();
            assert_eq!(r.status(), 202);
            accepted.lock().unwrap().insert(id, (sent, at));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let limit = Instant::now() + Duration::from_secs(120);
    while arrivals.count.load(Ordering::Relaxed) < total && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (from_request, from_accept) = {
        let (accepted, arrived) = (accepted.lock().unwrap(), arrivals.at.lock().unwrap());
        latencies(&accepted, &arrived)
    };
    println!(
        "end to end, {rate} messages/s offered for {seconds} s: {} of {total} arrived; request→arrival p50 {}, p99 {}; accept→arrival p50 {}, p99 {}",
        from_request.len(),
        ms(percentile(&from_request, 0.50)),
        ms(percentile(&from_request, 0.99)),
        ms(percentile(&from_accept, 0.50)),
        ms(percentile(&from_accept, 0.99)),
    );
    disk_report(daemon, total, baseline).await;
}

/// What the daemons and their PostgreSQL have spent so far: CPU seconds of the daemons started
/// here, of every PostgreSQL server process (from /proc, so on this machine only), and the
/// database's commits (`pg_stat_database`).
struct Costs {
    daemons: Option<f64>,
    postgres: Option<f64>,
    commits: Option<i64>,
    /// Statements run (BEGIN and COMMIT among them) and milliseconds spent planning them, from
    /// `pg_stat_statements` where the server loads it.
    statements: Option<(i64, f64)>,
}

async fn costs(daemon: &Daemon) -> Costs {
    let daemons: Option<f64> = daemon
        .children
        .iter()
        .map(|child| process_cpu_seconds(child.id()))
        .collect::<Option<Vec<f64>>>()
        .filter(|v| !v.is_empty())
        .map(|v| v.iter().sum());
    let (mut postgres, mut commits, mut statements) = (None, None, None);
    if let Some((admin, name)) = &daemon.database {
        let mut total = 0.0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok();
            let is_postgres =
                std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| c.trim() == "postgres");
            if let (Some(pid), true) = (pid, is_postgres) {
                total += process_cpu_seconds(pid).unwrap_or(0.0);
            }
        }
        postgres = Some(total);
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&format!("{admin}/{name}")).await {
            commits = sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
                .bind(name)
                .fetch_one(&mut conn)
                .await
                .ok();
        }
        if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
            statements = sqlx::query_as::<_, (i64, f64)>(
                "SELECT COALESCE(SUM(calls), 0)::BIGINT, COALESCE(SUM(total_plan_time), 0)::FLOAT8
                 FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)",
            )
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .ok();
        }
    }
    Costs { daemons, postgres, commits, statements }
}

impl Costs {
    /// What was spent per message between `before` and now.
    fn report(&self, before: &Costs, messages: u64) {
        let per = |after: Option<f64>, before: Option<f64>| {
            after.zip(before).map(|(a, b)| format!("{:.3} ms", (a - b) * 1000.0 / messages.max(1) as f64))
        };
        let mut line = format!("cost per message ({messages} messages):");
        if let Some(d) = per(self.daemons, before.daemons) {
            line.push_str(&format!(" daemons' CPU {d};"));
        }
        if let Some(p) = per(self.postgres, before.postgres) {
            line.push_str(&format!(" PostgreSQL's CPU {p};"));
        }
        if let Some((a, b)) = self.commits.zip(before.commits) {
            line.push_str(&format!(" commits {:.3};", (a - b) as f64 / messages.max(1) as f64));
        }
        if let Some(((calls, plan), (calls_before, plan_before))) = self.statements.zip(before.statements) {
            let n = messages.max(1) as f64;
            line.push_str(&format!(
                " statements {:.2}, planning {:.3} ms;",
                (calls - calls_before) as f64 / n,
                (plan - plan_before) / n
            ));
        }
        println!("{line}");
    }
}

/// A process's CPU time so far (user + system), in seconds, from /proc.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// On PostgreSQL, the bytes its database holds now (tables, indexes and their TOAST; the server's
/// write-ahead log is shared by every database and left out).
async fn postgres_bytes(daemon: &Daemon) -> Option<i64> {
    use sqlx::Connection;
    let (admin, name) = daemon.database.as_ref()?;
    let mut conn = sqlx::PgConnection::connect(&format!("{admin}/{name}")).await.ok()?;
    sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(&mut conn).await.ok()
}

/// When this benchmark started the daemon: the database's size per message so far, and where it
/// goes. On SQLite: the file and its write-ahead log, the bytes of the largest columns and the
/// bytes of each table and index. On PostgreSQL: what the database grew by since `baseline`
/// (its size before the messages), and each table and index.
async fn disk_report(daemon: &Daemon, messages: u64, baseline: Option<i64>) {
    if let (Some((admin, name)), Some(before), Some(now)) =
        (&daemon.database, baseline, postgres_bytes(daemon).await)
    {
        use sqlx::Connection;
        println!(
            "disk, {messages} messages: database grew {:.0} MiB, {:.2} KB per message",
            (now - before) as f64 / 1048576.0,
            (now - before) as f64 / messages.max(1) as f64 / 1000.0
        );
        let Ok(mut conn) = sqlx::PgConnection::connect(&format!("{admin}/{name}")).await else { return };
        // Tables with their TOAST, and indexes, each on its own.
        let sql = "SELECT c.relname::TEXT,
                          (pg_relation_size(c.oid) + COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0))::BIGINT
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')
                   ORDER BY 2 DESC LIMIT 16";
        if let Ok(objects) = sqlx::query_as::<_, (String, i64)>(sql).fetch_all(&mut conn).await {
            let mut line = String::from("disk, bytes per message in:");
            for (name, bytes) in objects {
                line.push_str(&format!(" {name} {:.0};", bytes as f64 / messages.max(1) as f64));
            }
            println!("{line}");
        }
        return;
    }
    let Some(dir) = daemon._dirs.first().filter(|_| daemon.database.is_none()) else { return };
    let data = dir.path().join("data");
    let size = |name: &str| std::fs::metadata(data.join(name)).map_or(0, |m| m.len());
    let (db, wal) = (size("chatbundle.db"), size("chatbundle.db-wal"));
    println!(
        "disk, {messages} messages: database {:.0} MiB + log {:.0} MiB, {:.2} KB per message",
        db as f64 / 1048576.0,
        wal as f64 / 1048576.0,
        (db + wal) as f64 / messages.max(1) as f64 / 1000.0
    );
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", data.join("chatbundle.db").display());
    let Ok(mut conn) = sqlx::SqliteConnection::connect(&url).await else { return };
    let mut line = String::from("disk, bytes per message of:");
    for (what, sql) in [
        ("attempt bodies", "SELECT COALESCE(SUM(LENGTH(request_body)), 0) FROM attempts"),
        ("attempt headers", "SELECT COALESCE(SUM(LENGTH(request_headers)), 0) FROM attempts"),
        ("delivery payloads", "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM deliveries"),
        ("message texts", "SELECT COALESCE(SUM(LENGTH(text)), 0) FROM messages"),
    ] {
        if let Ok(bytes) = sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn).await {
            line.push_str(&format!(" {what} {:.0};", bytes as f64 / messages.max(1) as f64));
        }
    }
    println!("{line}");
    // Where the pages go: each table and index, in bytes per message (SQLite's `dbstat`).
    let sql = "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 16";
    if let Ok(objects) = sqlx::query_as::<_, (String, i64)>(sql).fetch_all(&mut conn).await {
        let mut line = String::from("disk, bytes per message in:");
        for (name, bytes) in objects {
            line.push_str(&format!(" {name} {:.0};", bytes as f64 / messages.max(1) as f64));
        }
        println!("{line}");
    }
}

/// Phase 4b: end-to-end throughput, as svix was measured beside chatbundle: `total` single-message
/// requests (1,000 chats) as fast as `connections` keep-alive connections take them, to a
/// workspace with an immediate webhook; from the first request to the last arrival.
async fn throughput_phase(daemon: &Daemon, client: &reqwest::Client, total: u64, connections: u64) {
    const CHATS_HERE: u64 = 1_000;
    let ws = workspace(client, daemon).await;
    let (url, arrivals) = start_receiver().await;
    admin(
        client,
        daemon,
        reqwest::Method::POST,
        &format!("/api/v1/workspaces/{}/webhooks", ws.id),
        json!({"url": url}),
    )
    .await;
    let authorities: Vec<String> =
        daemon.bases.iter().map(|b| b.trim_start_matches("http://").to_string()).collect();
    let path = format!("/api/v1/workspaces/{}/messages", ws.id);
    let next = Arc::new(AtomicU64::new(0));
    let accepted: Arc<Mutex<HashMap<String, (Instant, Instant)>>> = Default::default();
    // PostgreSQL's backends report their commits when idle for a while (about ten seconds): wait
    // for what came before to be counted.
    if daemon.database.is_some() {
        tokio::time::sleep(Duration::from_secs(11)).await;
    }
    let cost_before = costs(daemon).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let authority = authorities[c as usize % authorities.len()].clone();
        let (path, key, next, accepted) = (path.clone(), ws.key.clone(), next.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            let auth = format!("Bearer {key}");
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let id = format!("t-{n}");
                let request = hyper::Request::post(&path)
                    .header("host", &authority)
                    .header("content-type", "application/json")
                    .header("authorization", &auth)
                    .body(http_body_util::Full::new(Bytes::from(message_json(&id, n % CHATS_HERE))))
                    .unwrap();
                let sent = Instant::now();
                let response = sender.send_request(request).await.unwrap();
                let status = response.status();
                let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                assert_eq!(status, 202);
                accepted.lock().unwrap().insert(id, (sent, Instant::now()));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let sent = started.elapsed().as_secs_f64();
    let limit = Instant::now() + Duration::from_secs(600);
    while arrivals.count.load(Ordering::Relaxed) < total && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let done = started.elapsed().as_secs_f64();
    let mut cost_after = costs(daemon).await;
    if daemon.database.is_some() {
        tokio::time::sleep(Duration::from_secs(11)).await;
        cost_after.commits = costs(daemon).await.commits;
    }
    let got = arrivals.count.load(Ordering::Relaxed);
    let (from_request, from_accept) = {
        let (accepted, arrived) = (accepted.lock().unwrap(), arrivals.at.lock().unwrap());
        latencies(&accepted, &arrived)
    };
    cost_after.report(&cost_before, got);
    println!(
        "end to end, {total} messages in {CHATS_HERE} chats, {connections} connections: {:>8.0} messages/s ({got} arrived in {done:.1} s; ingest {:.0}/s); request→arrival p50 {}, p99 {}; accept→arrival p50 {}, p99 {}",
        got as f64 / done,
        total as f64 / sent,
        ms(percentile(&from_request, 0.50)),
        ms(percentile(&from_request, 0.99)),
        ms(percentile(&from_accept, 0.50)),
        ms(percentile(&from_accept, 0.99)),
    );
}

/// Each arrived message's time from its request being sent, and from its 202 being read, to its
/// arrival at the receiver, both sorted. The generator reads a 202 a little after the daemon sent
/// it, and a delivery can arrive before that: the second figure is then zero, and the first is the
/// one that bounds what a sender sees.
fn latencies(
    accepted: &HashMap<String, (Instant, Instant)>,
    arrived: &HashMap<String, Instant>,
) -> (Vec<Duration>, Vec<Duration>) {
    let (mut from_request, mut from_accept): (Vec<Duration>, Vec<Duration>) = accepted
        .iter()
        .filter_map(|(id, (sent, at))| {
            arrived
                .get(id)
                .map(|arr| (arr.saturating_duration_since(*sent), arr.saturating_duration_since(*at)))
        })
        .unzip();
    from_request.sort();
    from_accept.sort();
    (from_request, from_accept)
}

/// The daemon's resident memory now and at its peak, in MiB, from /proc.
fn memory(daemon: &Daemon) -> Option<(f64, f64)> {
    let pid = daemon.children.first()?.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Starts a new peak-memory measurement (Linux: writing 5 to clear_refs resets VmHWM).
fn reset_peak(daemon: &Daemon) {
    if let Some(child) = daemon.children.first() {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", child.id()), "5");
    }
}

/// Phase 5: a 24-hour window holding `total` messages in `chats` chats, closed by a flush.
async fn close_phase(daemon: &Daemon, client: &reqwest::Client, total: u64, chats: u64) {
    let ws = {
        let ws = admin(
            client,
            daemon,
            reqwest::Method::POST,
            "/api/v1/workspaces",
            json!({"name": "close", "owner_email": "bench@example.com", "granularity": "24h",
                   "account": {"full_name": "Bench", "phone": "+1555"}}),
        )
        .await;
        Workspace { id: ws["id"].as_str().unwrap().into(), key: ws["ingest_key"].as_str().unwrap().into() }
    };
    // Switched off, so the bundles wait in the queue: this phase measures closing alone.
    admin(
        client,
        daemon,
        reqwest::Method::POST,
        &format!("/api/v1/workspaces/{}/webhooks", ws.id),
        json!({"url": "http://127.0.0.1:9/off", "enabled": false}),
    )
    .await;
    let url = format!("{}/api/v1/workspaces/{}/messages", daemon.base, ws.id);
    let started = Instant::now();
    let requests = total / 1000;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, url, key, next) = (client.clone(), url.clone(), ws.key.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let r = next.fetch_add(1, Ordering::Relaxed);
                if r >= requests {
                    break;
                }
                let items: Vec<String> =
                    (r * 1000..(r + 1) * 1000).map(|i| message_json(&format!("c-{i}"), i % chats)).collect();
                let body = format!("[{}]", items.join(","));
                let response = client
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 202);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    let before = memory(daemon);
    reset_peak(daemon);
    let started = Instant::now();
    let flushed = admin(
        client,
        daemon,
        reqwest::Method::POST,
        &format!("/api/v1/workspaces/{}/flush", ws.id),
        json!({}),
    )
    .await;
    let close_secs = started.elapsed().as_secs_f64();
    let after = memory(daemon);
    let bundles = flushed["deliveries"].as_u64().unwrap_or(0);
    println!(
        "close, {total} messages in {chats} chats (ingested in {ingest_secs:.1} s): {bundles} bundles in {close_secs:.1} s ({:.0} messages/s)",
        total as f64 / close_secs
    );
    if let (Some((rss_before, _)), Some((rss_after, peak))) = (before, after) {
        println!(
            "close, daemon memory: {rss_before:.0} MiB before, peak {peak:.0} MiB while closing, {rss_after:.0} MiB after"
        );
    }
}

/// The daemon's CPU time so far (user + system), in seconds, from /proc.
fn cpu_seconds(daemon: &Daemon) -> Option<f64> {
    process_cpu_seconds(daemon.children.first()?.id())
}

/// Phase 7: `chats` chats open a conversation each (a webhook bundling by conversation, silence
/// 1m, switched off so the bundles wait in the queue), then fall silent: what the daemon spends
/// while they wait (nothing per chat), and how long closing them all by silence takes once due.
async fn conversations_phase(daemon: &Daemon, client: &reqwest::Client, chats: u64) {
    let ws = admin(
        client,
        daemon,
        reqwest::Method::POST,
        "/api/v1/workspaces",
        json!({"name": "talk", "owner_email": "bench@example.com", "granularity": "conversation",
               "conversation_silence": "1m", "account": {"full_name": "Bench", "phone": "+1555"}}),
    )
    .await;
    let ws =
        Workspace { id: ws["id"].as_str().unwrap().into(), key: ws["ingest_key"].as_str().unwrap().into() };
    admin(
        client,
        daemon,
        reqwest::Method::POST,
        &format!("/api/v1/workspaces/{}/webhooks", ws.id),
        json!({"url": "http://127.0.0.1:9/off", "enabled": false}),
    )
    .await;
    let url = format!("{}/api/v1/workspaces/{}/messages", daemon.base, ws.id);
    let started = Instant::now();
    let requests = chats.div_ceil(1000);
    for r in 0..requests {
        let items: Vec<String> = (r * 1000..((r + 1) * 1000).min(chats))
            .map(|i| message_json(&format!("t-{i}"), 1_000_000 + i))
            .collect();
        let response = client
            .post(&url)
            .bearer_auth(&ws.key)
            .header("content-type", "application/json")
            .body(format!("[{}]", items.join(",")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    let last = Instant::now();
    let ingest_secs = started.elapsed().as_secs_f64();
    // While they wait: the daemon's CPU over the 50 s before the first deadline.
    let cpu_before = cpu_seconds(daemon);
    tokio::time::sleep(Duration::from_secs(50)).await;
    let idle_cpu = cpu_seconds(daemon).zip(cpu_before).map(|(after, before)| after - before);
    reset_peak(daemon);
    let stats = format!("/api/v1/workspaces/{}/stats", ws.id);
    let deadline = last + Duration::from_secs(60);
    let mut first_bundle = None;
    let closed_at = loop {
        let pending =
            admin(client, daemon, reqwest::Method::GET, &stats, Value::Null).await["deliveries_pending"]
                .as_u64()
                .unwrap_or(0);
        if pending > 0 && first_bundle.is_none() {
            first_bundle = Some(Instant::now());
        }
        if pending >= chats {
            break Instant::now();
        }
        assert!(
            last.elapsed() < Duration::from_secs(600),
            "conversations not closed after 10 minutes: {pending}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let closing = closed_at.saturating_duration_since(deadline).as_secs_f64();
    let from_first = first_bundle.map_or(0.0, |f| closed_at.saturating_duration_since(f).as_secs_f64());
    println!(
        "conversations, {chats} chats (opened in {ingest_secs:.1} s): daemon CPU while they waited {} over 50 s; \
         all closed by silence {closing:.1} s after the deadline ({from_first:.1} s from the first bundle, {:.0} conversations/s)",
        idle_cpu.map_or("unknown".into(), |s| format!("{s:.2} s")),
        chats as f64 / from_first.max(0.001)
    );
    if let Some((rss, peak)) = memory(daemon) {
        println!("conversations, daemon memory: peak {peak:.0} MiB while closing, {rss:.0} MiB after");
    }
}

/// Phase 6: how many webhook calls a realistic day of chats costs at each granularity.
fn calls_per_message_phase() {
    use chatbundle::domain::Granularity;
    use chatbundle::window::bounds;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(2024);
    let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let day = chrono::DateTime::parse_from_rfc3339("2024-03-01T00:00:00+01:00").unwrap().to_utc();
    let chats = 2000;
    // Messages per chat: 1 to 200, most chats short (log-uniform); each chat talks in 1–4 bursts
    // of a few minutes to an hour, at random times of the day.
    let mut per_chat: Vec<Vec<chrono::DateTime<chrono::Utc>>> = Vec::new();
    for _ in 0..chats {
        let n = (200f64.powf(rng.random_range(0.0..1.0))).round().max(1.0) as usize;
        let bursts = rng.random_range(1..=4usize).min(n);
        let bursts: Vec<(i64, i64)> =
            (0..bursts).map(|_| (rng.random_range(0..86_400 - 3600), rng.random_range(300..3600))).collect();
        let times = (0..n)
            .map(|i| {
                let (start, length) = bursts[i % bursts.len()];
                day + chrono::Duration::seconds(start + rng.random_range(0..length))
            })
            .collect();
        per_chat.push(times);
    }
    let messages: usize = per_chat.iter().map(Vec::len).sum();
    print!("calls per message, {chats} chats, {messages} messages in a day:");
    for g in Granularity::ALL {
        let calls: usize = match g {
            Granularity::None => messages,
            // A bundle per conversation: a new one after 30 minutes of silence (the default).
            Granularity::Conversation => per_chat
                .iter()
                .map(|times| {
                    let mut times = times.clone();
                    times.sort();
                    1 + times.windows(2).filter(|w| w[1] - w[0] >= chrono::Duration::minutes(30)).count()
                })
                .sum(),
            _ => per_chat
                .iter()
                .map(|times| {
                    let mut windows: Vec<_> =
                        times.iter().map(|t| bounds::containing(*t, g, tz).start).collect();
                    windows.sort();
                    windows.dedup();
                    windows.len()
                })
                .sum(),
        };
        print!(" {g} {:.3} ({calls} calls);", calls as f64 / messages as f64);
    }
    println!();
}

/// Whether a phase runs: all of them, unless `BENCH_PHASES` lists some (comma-separated).
fn phase(name: &str) -> bool {
    std::env::var("BENCH_PHASES").map_or(true, |list| list.split(',').any(|p| p.trim() == name))
}

fn main() {
    let seconds = env_or("BENCH_SECONDS", 10);
    let connections = env_or("BENCH_CONNECTIONS", 64);
    let backlog = env_or("BENCH_BACKLOG", 50_000);
    let rate = env_or("BENCH_RATE", 1_000);
    // One thread for the whole generator (like `wrk -t1`): the daemon gets the other core.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Idle pooled connections are dropped well before the daemon closes them (it lets a
        // kept-alive connection idle for `http.header_timeout`, 10 s): a request sent on one the
        // daemon is closing fails with an incomplete message.
        let client = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(2)).build().unwrap();
        let daemon = start_daemon();
        println!("chatbundle load benchmark against {}", daemon.bases.join(", "));
        let ws = workspace(&client, &daemon).await;
        if phase("ingest1") {
            ingest_phase(&daemon, &ws, connections, seconds, 1, "s").await;
        }
        if phase("ingest100") {
            ingest_phase(&daemon, &ws, connections, seconds, 100, "a").await;
        }
        if phase("drain") {
            drain_phase(&daemon, &client, backlog).await;
        }
        if phase("e2e") {
            end_to_end_phase(&daemon, &client, rate, seconds).await;
        }
        if phase("throughput") {
            throughput_phase(
                &daemon,
                &client,
                env_or("BENCH_MESSAGES", 20_000),
                env_or("BENCH_E2E_CONNECTIONS", 32),
            )
            .await;
        }
        if phase("close") {
            let total = env_or("BENCH_CLOSE_MESSAGES", 1_000_000);
            let chats = env_or("BENCH_CLOSE_CHATS", 100_000);
            close_phase(&daemon, &client, total, chats).await;
        }
        if phase("calls") {
            calls_per_message_phase();
        }
        if phase("conversations") {
            conversations_phase(&daemon, &client, env_or("BENCH_CONVERSATION_CHATS", 100_000)).await;
        }
    });
}
