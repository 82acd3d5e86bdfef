//! The binary as an operator runs it: exit codes, signals, the generated admin token.

use std::io::{BufRead, BufReader};

use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::BOUND;

/// The admin token of the daemons [`serve`] starts.
pub(crate) const ADMIN: &str = "process-test-admin-token";

fn chatbundle() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatbundle"));
    command.env_remove("CHATBUNDLE_CONFIG").env("RUST_LOG", "info");
    command
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[delivery]\ntimeout = \"whenever\"\n").unwrap();
    for subcommand in ["check-config", "serve"] {
        let output = chatbundle().arg("--config").arg(&file).arg(subcommand).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{subcommand}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("delivery.timeout"), "{stderr}");
    }
    let output =
        chatbundle().arg("check-config").env("CHATBUNDLE_DELIVERY__CONCURRENCY", "lots").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("delivery.concurrency"));

    let output = chatbundle().arg("--no-such-flag").output().unwrap();
    assert_eq!(output.status.code(), Some(2), "bad usage");
}

#[test]
fn printed_defaults_pass_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let printed = chatbundle().arg("print-default-config").output().unwrap();
    assert!(printed.status.success());
    std::fs::write(&file, &printed.stdout).unwrap();
    let checked = chatbundle().arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert_eq!(checked.status.code(), Some(0), "{}", String::from_utf8_lossy(&checked.stderr));
}

#[test]
fn serve_generates_an_admin_token_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = chatbundle()
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("CHATBUNDLE_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Wait for the line that says it is serving (it comes after migrations and binding).
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + BOUND;
    let addr = loop {
        assert!(Instant::now() < deadline, "the daemon did not report serving");
        let line = lines.next().expect("the daemon is still running").unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
        if event["message"] == "chatbundle is serving" {
            break event["listen"].as_str().unwrap().to_string();
        }
    };
    let token_file = dir.path().join("data/admin-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let status = std::process::Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "-H"])
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .arg(format!("http://{addr}/api/v1/workspaces"))
        .status()
        .unwrap();
    assert!(status.success(), "the generated token opens the admin API");

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(dir.path().join("data/chatbundle.db").exists());
}

#[test]
fn a_second_daemon_on_the_same_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = chatbundle()
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        if line.contains("chatbundle is serving") {
            break;
        }
    }
    let second =
        chatbundle().current_dir(dir.path()).args(["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use by another chatbundle process"));
    first.kill().unwrap();
    first.wait().unwrap();
}

/// A daemon process that is killed when the test ends, however it ends.
pub(crate) struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `chatbundle serve` in `dir` with a known admin token ([`ADMIN`]) and deliveries to
/// loopback allowed; returns it and its address.
pub(crate) fn serve(dir: &std::path::Path) -> (Daemon, String) {
    serve_with(dir, &[])
}

/// `method url` on a daemon [`serve`] started, with its admin token and a JSON body: the answer's
/// JSON (`null` when it has none), which must be a 2xx.
pub(crate) async fn admin_call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: serde_json::Value,
) -> serde_json::Value {
    let response = http.request(method, &url).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert!(response.status().is_success(), "{url}: {}", response.status());
    response.json().await.unwrap_or(serde_json::Value::Null)
}

/// [`serve`] with more environment: other settings.
pub(crate) fn serve_with(dir: &std::path::Path, env: &[(&str, &str)]) -> (Daemon, String) {
    let mut child = chatbundle()
        .current_dir(dir)
        .envs(env.iter().copied())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("CHATBUNDLE_LOG_FORMAT", "json")
        .env("CHATBUNDLE_ADMIN_TOKEN", ADMIN)
        .env("CHATBUNDLE_DELIVERY__ALLOW_PRIVATE", "[\"127.0.0.0/8\"]")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + BOUND;
    let addr = loop {
        assert!(Instant::now() < deadline, "the daemon did not report serving");
        let line = lines.next().expect("the daemon is still running").unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if event["message"] == "chatbundle is serving" {
            break event["listen"].as_str().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Daemon(child), addr)
}

/// A kill -9 in the middle of closing a window: after a restart the close resumes, and every
/// chat ends up with exactly one bundle holding all its messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_the_middle_of_closing_loses_nothing_and_doubles_nothing() {
    use serde_json::{Value, json};
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, addr) = serve(dir.path());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth(ADMIN);
    let ws: Value = admin(http.post(format!("http://{addr}/api/v1/workspaces")))
        .json(&json!({"name": "kill", "owner_email": "k@example.com", "granularity": "24h"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ws_id = ws["id"].as_str().unwrap().to_string();
    // Disabled, so bundles stay in the queue where they can be counted.
    admin(http.post(format!("http://{addr}/api/v1/workspaces/{ws_id}/webhooks")))
        .json(&json!({"url": "http://127.0.0.1:9/never", "enabled": false}))
        .send()
        .await
        .unwrap();
    let chats = 12_000;
    for start in (0..chats).step_by(1000) {
        let batch: Vec<Value> = (start..start + 1000)
            .map(|i| crate::helpers::message(&format!("m-{i}"), &format!("c-{i}"), "hello"))
            .collect();
        let r = http
            .post(format!("http://{addr}/api/v1/workspaces/{ws_id}/messages"))
            .bearer_auth(ws["ingest_key"].as_str().unwrap())
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }

    // Start a flush, and kill the daemon as soon as the first step of the close has committed.
    let flush =
        tokio::spawn(admin(http.post(format!("http://{addr}/api/v1/workspaces/{ws_id}/flush"))).send());
    let db = format!("sqlite://{}?mode=ro", dir.path().join("data/chatbundle.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db).await.unwrap();
    let deadline = Instant::now() + BOUND;
    loop {
        let cursor: Option<i64> =
            sqlx::query_scalar("SELECT closing_cursor FROM webhooks").fetch_one(&mut conn).await.unwrap();
        if cursor.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the close never started");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    daemon.0.kill().unwrap(); // SIGKILL
    daemon.0.wait().unwrap();
    let _ = flush.await;
    let part_done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE kind = 'bundle'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(part_done < chats, "killed before the close finished ({part_done} bundles)");
    drop(conn);

    // Restart: the interrupted close is finished first thing.
    let (daemon, _addr) = serve(dir.path());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db).await.unwrap();
    let deadline = Instant::now() + BOUND;
    loop {
        let open: Option<i64> =
            sqlx::query_scalar("SELECT closing_boundary FROM webhooks").fetch_one(&mut conn).await.unwrap();
        if open.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the close was not resumed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let per_chat: Vec<(i64, i64)> =
        sqlx::query_as("SELECT chat_id, COUNT(*) FROM deliveries WHERE kind = 'bundle' GROUP BY chat_id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(per_chat.len() as i64, chats, "every chat has a bundle");
    assert!(per_chat.iter().all(|(_, n)| *n == 1), "and only one");
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payload FROM deliveries WHERE kind = 'bundle'")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let messages: u64 = payloads
        .iter()
        .map(|p| {
            let payload = chatbundle::store::payload::unpack(p.clone()).unwrap();
            serde_json::from_slice::<Value>(&payload).unwrap()["message_count"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(messages, chats as u64, "every message in exactly one bundle");
    drop(conn);
    drop(daemon);
}

/// The systemd notify protocol, with the test as the service manager: READY=1 only once the port
/// answers, WATCHDOG=1 pings at half the interval, STOPPING=1 on SIGTERM, then exit 0.
#[test]
fn the_daemon_speaks_the_systemd_notify_protocol() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(BOUND)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Daemon(
        chatbundle()
            .current_dir(dir.path())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "200000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut buffer = [0u8; 512];
    let mut next = || {
        let n = socket.recv(&mut buffer).expect("a notification within the bound");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    let first = next();
    assert!(first.contains("READY=1"), "{first:?}");
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("ready means the port is bound");
    assert!(next().contains("WATCHDOG=1"));
    assert!(next().contains("WATCHDOG=1"));

    Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    let stopping = loop {
        let message = next();
        if !message.contains("WATCHDOG=1") {
            break message;
        }
    };
    assert!(stopping.contains("STOPPING=1"), "{stopping:?}");
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

/// The unit file is valid and well sandboxed: `systemd-analyze security` rates its exposure
/// under 2.0 (on its 0–10 scale; the threshold is given in tenths).
#[test]
#[ignore = "needs systemd-analyze (Debian's systemd): run scripts/test"]
fn the_systemd_unit_verifies_and_scores_under_two() {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/chatbundle.service");
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20", unit])
        .output()
        .expect("systemd-analyze is installed (Debian's systemd package)");
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(security.status.success(), "exposure above 2.0:\n{report}");
    assert!(report.contains("Overall exposure level"), "{report}");
    let verify = Command::new("systemd-analyze").args(["verify", unit]).output().unwrap();
    let complaints = String::from_utf8_lossy(&verify.stderr);
    // The binary is not installed on a build machine; anything else is a mistake in the unit.
    for line in complaints.lines().filter(|l| !l.trim().is_empty()) {
        assert!(line.contains("/usr/bin/chatbundle"), "systemd-analyze verify: {line}");
    }
}

/// The CLI mirrors the admin API against a running daemon, with the token from the configuration.
#[test]
fn the_cli_drives_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, addr) = serve(dir.path());
    let url = format!("http://{addr}");
    let run = |args: &[&str]| {
        let output = chatbundle()
            .env("CHATBUNDLE_ADMIN_TOKEN", ADMIN)
            .args(args)
            .args(["--url", &url])
            .output()
            .unwrap();
        let json = serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap_or_default();
        (output.status.code(), json, String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, ws, _) = run(&[
        "workspace",
        "create",
        "--name",
        "Acme",
        "--owner-email",
        "ops@acme.example",
        "--timezone",
        "Europe/Berlin",
        "--account-name",
        "Acme Sales",
        "--locale",
        "ja",
    ]);
    assert_eq!(code, Some(0));
    let ws_id = ws["id"].as_str().unwrap().to_string();
    assert_eq!(
        (ws["account"]["full_name"].clone(), ws["locale"].clone()),
        (json!("Acme Sales"), json!("ja"))
    );

    let (code, hook, _) = run(&["webhook", "create", &ws_id, "http://127.0.0.1:9/x", "--secret"]);
    assert_eq!(code, Some(0));
    assert!(hook["secret"].as_str().unwrap().starts_with("whsec_"));
    let hook_id = hook["id"].as_str().unwrap().to_string();

    let (code, updated, _) =
        run(&["webhook", "update", &hook_id, "--granularity", "6h", "--enabled", "false"]);
    assert_eq!(code, Some(0));
    assert_eq!((updated["granularity"].clone(), updated["enabled"].clone()), (json!("6h"), json!(false)));
    let (_, back, _) = run(&["webhook", "update", &hook_id, "--granularity", "default", "--enabled", "true"]);
    assert_eq!((back["inherits_granularity"].clone(), back["enabled"].clone()), (json!(true), json!(true)));
    let (code, noted, _) = run(&["webhook", "update", &hook_id, "--note-max-chars", "32000"]);
    assert_eq!((code, noted["note_max_chars"].clone()), (Some(0), json!(32000)));
    let (code, _, err) = run(&["webhook", "update", &hook_id, "--note-max-chars", "100"]);
    assert_eq!(code, Some(2), "bad input");
    assert!(err.contains("note_max_chars"), "{err}");
    let (code, kept, _) = run(&["webhook", "update", &hook_id, "--media", "placeholder"]);
    assert_eq!((code, kept["media"].clone()), (Some(0), json!("placeholder")));
    let (code, _, err) = run(&["webhook", "update", &hook_id, "--media", "everything"]);
    assert_eq!(code, Some(2), "bad input");
    assert!(err.contains("--media"), "{err}");

    let (code, listed, _) = run(&["webhook", "list", &ws_id]);
    assert_eq!(code, Some(0));
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1);
    let (code, flushed, _) = run(&["workspace", "flush", &ws_id]);
    assert_eq!((code, flushed["deliveries"].clone()), (Some(0), json!(0)));
    let (code, activity, _) = run(&["webhook", "activity", &hook_id]);
    assert_eq!(code, Some(0));
    assert!(activity["activity"].as_array().unwrap().iter().any(|row| row["kind"] == "config_changed"));
    let log = chatbundle()
        .env("CHATBUNDLE_ADMIN_TOKEN", ADMIN)
        .args(["webhook", "log", &hook_id, "--format", "csv", "--url", &url])
        .output()
        .unwrap();
    assert!(log.status.success());
    assert!(String::from_utf8_lossy(&log.stdout).starts_with("at,kind,"));

    let (code, listed, _) = run(&["webhook", "deliveries", &hook_id, "--status", "failed"]);
    assert_eq!(code, Some(0));
    assert_eq!(listed["deliveries"], json!([]));
    let (code, _, stderr) = run(&["webhook", "resend", &hook_id, "msg_nope"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("404") && stderr.contains("delivery"), "{stderr}");
    // A replay: counted first, then started and followed, then cancelled.
    let range = ["--from", "2024-01-01T00:00:00Z", "--to", "2024-02-01T00:00:00Z"];
    let (code, counted, _) = run(&[&["webhook", "replay", &hook_id, "--dry-run"][..], &range].concat());
    assert_eq!((code, counted), (Some(0), json!({"chats": 0, "bundles": 0, "messages": 0, "calls": 0})));
    let (code, started, _) = run(&[&["webhook", "replay", &hook_id][..], &range].concat());
    assert_eq!(code, Some(0));
    let replay_id = started["replay_id"].as_str().unwrap().to_string();
    let (code, shown, _) = run(&["webhook", "replay-status", &hook_id, &replay_id]);
    assert_eq!((code, shown["replay_id"].as_str()), (Some(0), Some(replay_id.as_str())));
    let (code, cancelled, _) = run(&["webhook", "replay-status", &hook_id, &replay_id, "--cancel"]);
    assert_eq!((code, cancelled["status"].clone()), (Some(0), json!("cancelled")));
    let (code, _, stderr) = run(&["webhook", "replay", &hook_id, "--from", "soon", "--to", "later"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--from"), "{stderr}");

    let (code, _, stderr) = run(&["webhook", "update", &hook_id, "--granularity", "2h"]);
    assert_eq!(code, Some(2), "input the API refuses is bad usage");
    assert!(stderr.contains("granularity"), "{stderr}");
    let (code, _, stderr) = run(&["webhook", "show", "wh_nope"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("404"), "{stderr}");
    let (code, _, _) = run(&["webhook", "delete", &hook_id]);
    assert_eq!(code, Some(0));
    let (code, source, _) = run(&[
        "source",
        "create",
        &ws_id,
        "--kind",
        "twilio",
        "--name",
        "Twilio",
        "--credential",
        "auth_token=abc",
    ]);
    assert_eq!(code, Some(0));
    assert!(source["inbound_url"].as_str().unwrap().contains("/hooks/twilio/in_"));
    assert_eq!(source["credentials_set"], json!(["auth_token"]));
    let (code, _, stderr) = run(&["source", "create", &ws_id, "--kind", "twilio", "--name", "T"]);
    assert_eq!(code, Some(2), "the missing auth token is bad input: {stderr}");

    // A member, invited from the command line: the link to pass on is printed.
    let (code, invited, _) = run(&["member", "add", &ws_id, "mia@acme.example", "--role", "admin"]);
    assert_eq!(code, Some(0));
    assert!(invited["invitation_url"].as_str().unwrap().contains("/invite/inv_"), "{invited}");
    let user = invited["user_id"].as_str().unwrap().to_string();
    let (code, viewer, _) = run(&["member", "role", &ws_id, &user, "viewer"]);
    assert_eq!((code, viewer["role"].clone()), (Some(0), json!("viewer")));
    let (code, _, stderr) = run(&["member", "add", &ws_id, "dana@acme.example", "--role", "owner"]);
    assert_eq!(code, Some(2), "an unknown role is bad input: {stderr}");
    let (code, listed, _) = run(&["member", "list", &ws_id]);
    assert_eq!((code, listed["members"].as_array().unwrap().len()), (Some(0), 1));

    // An operator, made from the command line: the link where they choose a password is printed.
    let (code, operator, _) = run(&["user", "add", "ops@acme.example", "--operator"]);
    assert_eq!((code, operator["operator"].clone()), (Some(0), json!(true)));
    assert!(operator["password_url"].as_str().unwrap().contains("/reset/rst_"), "{operator}");
    let (code, _, stderr) = run(&["user", "add", "ops2@acme.example"]);
    assert_eq!(code, Some(2), "user add makes operators: {stderr}");
    assert!(stderr.contains("--operator"), "{stderr}");
    let ops = operator["user_id"].as_str().unwrap().to_string();
    let (code, demoted, _) = run(&["user", "set", &ops, "--operator", "false"]);
    assert_eq!((code, demoted["operator"].clone()), (Some(0), json!(false)));
    let (code, users, _) = run(&["user", "list"]);
    assert_eq!((code, users["users"].as_array().unwrap().len()), (Some(0), 2), "mia and the operator");

    let _ = rustls::crypto::ring::default_provider().install_default();
    let ingest = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::Client::new()
            .post(format!("{url}/api/v1/workspaces/{ws_id}/messages"))
            .bearer_auth(ws["ingest_key"].as_str().unwrap())
            .json(&crate::helpers::message("m-1", "c-1", "hello"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(ingest, 202);
    let (code, chats, _) = run(&["chat", "list", &ws_id]);
    assert_eq!(code, Some(0));
    let chat_id = chats["chats"][0]["id"].as_i64().unwrap().to_string();
    let (_, shown, _) = run(&["chat", "show", &chat_id]);
    let (code, rotated, _) = run(&["chat", "rotate-token", &chat_id]);
    assert_eq!(code, Some(0));
    assert_ne!(shown["transcript_url"], rotated["transcript_url"], "a new transcript link");
    let (code, owned, _) =
        run(&["chat", "update", &chat_id, "--responsible-name", "Dana Levi", "--responsible-email", ""]);
    assert_eq!(code, Some(0));
    assert_eq!(
        (owned["responsible_name"].clone(), owned["responsible_email"].clone()),
        (json!("Dana Levi"), json!(null))
    );
    let (code, history, _) = run(&["chat", "sessions", &chat_id]);
    assert_eq!((code, history["transitions"][0]["to"].clone()), (Some(0), json!("CREATED")));
    let (code, _, _) = run(&["chat", "show", "999999"]);
    assert_eq!(code, Some(1), "no such chat");
    let (code, _, stderr) = run(&["chat", "erase", &chat_id]);
    assert_eq!(code, Some(2), "erasing wants --yes: {stderr}");
    let (code, erased, _) = run(&["chat", "erase", &chat_id, "--yes"]);
    assert_eq!((code, erased["messages_erased"].clone()), (Some(0), json!(1)));
    let (code, _, _) = run(&["chat", "show", &chat_id]);
    assert_eq!(code, Some(1), "erased");

    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let output = chatbundle()
        .env("CHATBUNDLE_ADMIN_TOKEN", ADMIN)
        .args(["workspace", "list", "--url", &format!("http://{nobody}")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "no daemon there");
}

/// Crash safety: under load, the daemon is killed with SIGKILL at random moments, during ingest,
/// window closing and delivery, and restarted on the same data directory. Every acknowledged
/// message must reach the receiver (at least once), and copies must share their `webhook-id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use rand::Rng;

    // webhook-ids seen per (receiver path, message id).
    type Seen = Arc<Mutex<HashMap<(String, String), HashSet<String>>>>;
    let seen: Seen = Default::default();
    let receiver = {
        let seen = seen.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let mut ids = Vec::new();
                    if let Some(m) = value["message"]["message_id"].as_str() {
                        ids.push(m.to_string());
                    }
                    for m in value["messages"].as_array().into_iter().flatten() {
                        ids.push(m["message_id"].as_str().unwrap_or_default().to_string());
                    }
                    let mut seen = seen.lock().unwrap();
                    for m in ids {
                        seen.entry((uri.path().to_string(), m)).or_default().insert(id.clone());
                    }
                    "ok"
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    };

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start = |dir: &std::path::Path| {
        let mut child = chatbundle()
            .current_dir(dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("CHATBUNDLE_LOG_FORMAT", "json")
            .env("CHATBUNDLE_ADMIN_TOKEN", ADMIN)
            .env("CHATBUNDLE_DELIVERY__ALLOW_PRIVATE", "[\"127.0.0.0/8\"]")
            .env("CHATBUNDLE_DELIVERY__RATE_PER_WEBHOOK", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("the daemon starts").unwrap();
            if line.contains("chatbundle is serving") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Daemon(child)
    };
    let mut daemon = start(dir.path());
    let base = format!("http://127.0.0.1:{port}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let ws: serde_json::Value = http
        .post(format!("{base}/api/v1/workspaces"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "crash", "owner_email": "c@example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ws_id = ws["id"].as_str().unwrap().to_string();
    let key = ws["ingest_key"].as_str().unwrap().to_string();
    for (path, granularity) in [("/now", "none"), ("/bundled", "1h")] {
        let r = http
            .post(format!("{base}/api/v1/workspaces/{ws_id}/webhooks"))
            .bearer_auth(ADMIN)
            .json(&json!({"url": format!("{receiver}{path}"), "granularity": granularity}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    // Load: single messages and small arrays over 40 chats, and a flush now and then (closing).
    let acknowledged: Arc<Mutex<Vec<String>>> = Default::default();
    let running = Arc::new(AtomicBool::new(true));
    let mut loaders = Vec::new();
    for worker in 0..4 {
        let (http, base, ws_id, key, acknowledged, running) =
            (http.clone(), base.clone(), ws_id.clone(), key.clone(), acknowledged.clone(), running.clone());
        loaders.push(tokio::spawn(async move {
            let mut n = 0u64;
            while running.load(Ordering::SeqCst) {
                n += 1;
                let count = if n.is_multiple_of(3) { 5 } else { 1 };
                let ids: Vec<String> = (0..count).map(|i| format!("w{worker}-{n}-{i}")).collect();
                let body: Vec<serde_json::Value> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| crate::helpers::message(id, &format!("c-{}", (n + i as u64) % 40), "x"))
                    .collect();
                let sent = http
                    .post(format!("{base}/api/v1/workspaces/{ws_id}/messages"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await;
                if matches!(&sent, Ok(r) if r.status() == 202) {
                    acknowledged.lock().unwrap().extend(ids);
                }
                if worker == 0 && n.is_multiple_of(25) {
                    let _ = http
                        .post(format!("{base}/api/v1/workspaces/{ws_id}/flush"))
                        .bearer_auth(ADMIN)
                        .send()
                        .await;
                }
                if sent.is_err() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }

    for _ in 0..4 {
        let pause = rand::rng().random_range(300..900);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        daemon.0.kill().unwrap(); // SIGKILL
        daemon.0.wait().unwrap();
        daemon = start(dir.path());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, Ordering::SeqCst);
    for loader in loaders {
        loader.await.unwrap();
    }
    // Release the last open windows, then wait for everything acknowledged to arrive.
    let flushed =
        http.post(format!("{base}/api/v1/workspaces/{ws_id}/flush")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(flushed.status(), 200);
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 100, "the load was real ({} messages)", acknowledged.len());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing: Vec<(String, String)> = {
            let seen = seen.lock().unwrap();
            ["/now", "/bundled"]
                .iter()
                .flat_map(|path| acknowledged.iter().map(move |m| (path.to_string(), m.clone())))
                .filter(|key| !seen.contains_key(key))
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged deliveries never arrived, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.lock().unwrap();
    for ((path, message), ids) in seen.iter() {
        assert_eq!(ids.len(), 1, "{message} reached {path} under different webhook-ids: {ids:?}");
    }
}

/// The real binary on the real clock: a conversation webhook with a one-minute silence sends one
/// bundle with both sides' messages about a minute after the last; a Chatwoot resolve (its
/// `conversation_status_changed` webhook event, as Chatwoot's documentation shows it) sends the
/// chat's bundle at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_goes_out_a_minute_after_its_last_message_and_a_resolve_sends_one_at_once() {
    use serde_json::Value;
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, addr) = serve(dir.path());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let receiver = crate::helpers::Receiver::start().await;
    let http = reqwest::Client::new();
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth(ADMIN);
    let ws: Value = admin(http.post(format!("http://{addr}/api/v1/workspaces")))
        .json(&json!({"name": "talk", "owner_email": "t@example.com", "granularity": "conversation",
                      "conversation_silence": "1m"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ws_id = ws["id"].as_str().unwrap().to_string();
    let created = admin(http.post(format!("http://{addr}/api/v1/workspaces/{ws_id}/webhooks")))
        .json(&json!({"url": receiver.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let ingest = |body: Value| {
        http.post(format!("http://{addr}/api/v1/workspaces/{ws_id}/messages"))
            .bearer_auth(ws["ingest_key"].as_str().unwrap())
            .json(&body)
            .send()
    };
    let now = || chrono::Utc::now().to_rfc3339();
    let mut question = crate::helpers::message_at("m-1", "c-1", "is my order shipped?", &now());
    question["direction"] = json!("received");
    assert_eq!(ingest(question).await.unwrap().status(), 202);
    let mut answer = crate::helpers::message_at("m-2", "c-1", "yes, this morning", &now());
    answer["direction"] = json!("sent");
    assert_eq!(ingest(answer).await.unwrap().status(), 202);
    let last = Instant::now();

    // Meanwhile a Chatwoot conversation is resolved: its bundle goes out at once.
    let source: Value = admin(http.post(format!("http://{addr}/api/v1/workspaces/{ws_id}/sources")))
        .json(&json!({"kind": "chatwoot", "name": "Chatwoot", "credentials": {"secret": "cw-secret"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The public URL names port 0 (the daemon listens on whatever port it was given).
    let inbound = source["inbound_url"].as_str().unwrap();
    let inbound = format!("http://{addr}{}", &inbound[inbound.find("/hooks/").unwrap()..]);
    let send = |body: Value| {
        let raw = serde_json::to_vec(&body).unwrap();
        let stamp = chrono::Utc::now().timestamp().to_string();
        let signature = format!(
            "sha256={}",
            crate::helpers::hex_hmac_sha256("cw-secret", &[stamp.as_bytes(), b".", &raw])
        );
        http.post(&inbound)
            .header("x-chatwoot-signature", signature)
            .header("x-chatwoot-timestamp", stamp)
            .header("content-type", "application/json")
            .body(raw)
            .send()
    };
    let incoming = json!({"event": "message_created", "id": 118, "content": "Where is my parcel?",
        "created_at": now(), "message_type": "incoming", "content_type": "text", "private": false,
        "sender": {"id": 14, "name": "Li Wei", "phone_number": "+8613800138000"},
        "conversation": {"id": 207, "inbox_id": 3, "channel": "Channel::Whatsapp", "status": "open",
            "meta": {"sender": {"id": 14, "name": "Li Wei", "phone_number": "+8613800138000", "type": "contact"}}}});
    assert_eq!(send(incoming).await.unwrap().status(), 200);
    let resolved = json!({"event": "conversation_status_changed", "id": 207, "inbox_id": 3,
        "channel": "Channel::Whatsapp", "status": "resolved",
        "meta": {"sender": {"id": 14, "name": "Li Wei", "phone_number": "+8613800138000", "type": "contact"}},
        "changed_attributes": [{"status": {"previous_value": "open", "current_value": "resolved"}}]});
    let resolved_at = Instant::now();
    assert_eq!(send(resolved).await.unwrap().status(), 200);
    let first = receiver.wait_for(1).await[0].json();
    assert!(resolved_at.elapsed() < Duration::from_secs(5), "at once, not at the silence");
    assert_eq!(
        (first["chat"]["chat_id"].as_str(), first["closed_by"].as_str()),
        (Some("207"), Some("session_end"))
    );

    // The API chat's bundle: a minute after its last message, both messages, once.
    let deadline = last + Duration::from_secs(90);
    let bundle = loop {
        if let Some(found) =
            receiver.received().iter().map(|r| r.json()).find(|b| b["chat"]["chat_id"] == "c-1")
        {
            break found;
        }
        assert!(Instant::now() < deadline, "no bundle a minute and a half after the last message");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let waited = last.elapsed();
    assert!(waited >= Duration::from_secs(59), "not before the silence: {waited:?}");
    assert!(waited < Duration::from_secs(75), "about a minute after the last message: {waited:?}");
    assert_eq!(bundle["closed_by"], "silence");
    let ids: Vec<&str> =
        bundle["messages"].as_array().unwrap().iter().map(|m| m["message_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["m-1", "m-2"]);
    assert_eq!(receiver.received().len(), 2, "one bundle per conversation");
}
