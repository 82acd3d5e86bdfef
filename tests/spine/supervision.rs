//! The real binary under faults: a part that dies takes the process down with a non-zero exit
//! (so systemd restarts it), a full disk is reported and healed without a restart,
//! deliveries ignore proxy variables, and a database that cannot keep data is refused.
//! Parts are made to fail through `CHATBUNDLE_FAULTS`, which only debug builds read.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

pub const TOKEN: &str = "supervision-test-admin-token";

/// A daemon process, its address and everything it has logged so far (JSON lines, or plain
/// lines as strings).
pub struct Daemon {
    pub child: Child,
    pub base: String,
    pub log: Arc<Mutex<Vec<Value>>>,
}

impl Daemon {
    /// `chatbundle serve` with its data in `data_dir`, JSON logs, a known admin token and
    /// loopback allowed as a webhook address; `program` runs it (the binary, or a shell).
    pub fn command(program: &str, data_dir: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env_remove("CHATBUNDLE_CONFIG")
            .env_remove("CHATBUNDLE_FAULTS")
            .env("RUST_LOG", "info")
            .env("CHATBUNDLE_DATA_DIR", data_dir)
            .env("CHATBUNDLE_LOG_FORMAT", "json")
            .env("CHATBUNDLE_ADMIN_TOKEN", TOKEN)
            .env("CHATBUNDLE_DELIVERY__ALLOW_PRIVATE", "[\"127.0.0.0/8\"]");
        command
    }

    /// Starts `chatbundle serve` with its data in `data_dir` and the given extra environment.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut command = Self::command(env!("CARGO_BIN_EXE_chatbundle"), data_dir);
        command.args(["serve", "--listen", "127.0.0.1:0"]);
        for (key, value) in env {
            command.env(key, value);
        }
        Self::launch(command)
    }

    /// Runs a prepared command and waits until it serves.
    pub fn launch(mut command: Command) -> Daemon {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let log: Arc<Mutex<Vec<Value>>> = Default::default();
        let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(serde_json::from_str(&line).unwrap_or(Value::String(line)));
            }
        });
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(Value::String(line));
            }
        });
        let mut daemon = Daemon { child, base: String::new(), log };
        let serving = daemon.wait_for_log("chatbundle is serving");
        let listen = match &serving {
            Value::String(line) => {
                line.split("listen=").nth(1).unwrap().split_whitespace().next().unwrap().to_string()
            }
            event => event["listen"].as_str().unwrap().to_string(),
        };
        daemon.base = format!("http://{listen}");
        daemon
    }

    /// Every line logged so far, as text.
    pub fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|l| format!("{}\n", l.as_str().map(str::to_string).unwrap_or(l.to_string())))
            .collect()
    }

    /// Waits until a log line contains `needle`; returns it.
    pub fn wait_for_log(&self, needle: &str) -> Value {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.to_string().contains(needle)) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}: {:#?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits, within the bound, for the process to exit.
    pub fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the daemon did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn terminate(&mut self) -> ExitStatus {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        self.exit()
    }

    pub fn http() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = Self::http().request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let response = self.call(method, path, body).await;
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap()
    }

    /// A workspace with an immediate webhook to `url`; its id and ingest key.
    pub async fn workspace_with_webhook(&self, url: &str) -> (String, String) {
        let body = json!({"name": "Acme", "owner_email": "owner@acme.example"});
        let ws = self.json(reqwest::Method::POST, "/api/v1/workspaces", Some(body)).await;
        let id = ws["id"].as_str().unwrap().to_string();
        let path = format!("/api/v1/workspaces/{id}/webhooks");
        self.json(reqwest::Method::POST, &path, Some(json!({"url": url}))).await;
        (id, ws["ingest_key"].as_str().unwrap().to_string())
    }

    pub async fn post_message(&self, (workspace, key): &(String, String), id: &str) -> reqwest::Response {
        Self::http()
            .post(format!("{}/api/v1/workspaces/{workspace}/messages", self.base))
            .bearer_auth(key)
            .json(&message(id, "c-1", "hello"))
            .send()
            .await
            .unwrap()
    }

    pub async fn ready(&self) -> (u16, Value) {
        let response = Self::http().get(format!("{}/readyz", self.base)).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon with the given faults armed, ready.
async fn with_faults(dir: &Path, faults: &str) -> Daemon {
    let daemon = Daemon::start(dir, &[("CHATBUNDLE_FAULTS", faults)]);
    let (status, body) = daemon.ready().await;
    assert_eq!(status, 200, "ready before the fault: {body}");
    daemon
}

/// Asserts that the daemon exits non-zero, having logged `cause`.
fn exits_for(daemon: &mut Daemon, cause: &str) {
    let status = daemon.exit();
    assert_eq!(status.code(), Some(1), "a failed part makes the process fail");
    daemon.wait_for_log(cause);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_writer_makes_the_process_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = with_faults(dir.path(), "writer").await;
    let ws = daemon.workspace_with_webhook("http://127.0.0.1:9/never").await;
    let refused = daemon.post_message(&ws, "m-1").await;
    assert_eq!(refused.status(), 503, "never a 2xx for what was not stored");
    exits_for(&mut daemon, "the store's writer thread died: injected fault: writer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_worker_that_panics_makes_the_process_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = with_faults(dir.path(), "delivery").await;
    let ws = daemon.workspace_with_webhook("http://127.0.0.1:9/never").await;
    assert_eq!(daemon.post_message(&ws, "m-1").await.status(), 202);
    exits_for(&mut daemon, "the delivery worker panicked: injected fault: delivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closer_that_panics_makes_the_process_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = with_faults(dir.path(), "closer").await;
    let ws = daemon.workspace_with_webhook("http://127.0.0.1:9/never").await;
    let _ = daemon.call(reqwest::Method::POST, &format!("/api/v1/workspaces/{}/flush", ws.0), None).await;
    exits_for(&mut daemon, "the window closer panicked: injected fault: closer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_server_that_stops_on_its_own_makes_the_process_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = with_faults(dir.path(), "http").await;
    exits_for(&mut daemon, "the HTTP server stopped on its own");
}

/// A tmpfs mounted for one test, unmounted when it ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None`, with the reason printed, where this process may not mount.
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output();
        match output {
            Ok(output) if output.status.success() => Some(Tmpfs(at.to_path_buf())),
            Ok(output) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs here: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    /// Fills the file system to the last byte; returns the file that holds the room.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in [1 << 20, 4096, 1] {
            let block = vec![0u8; chunk];
            while file.write_all(&block).is_ok() {}
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_and_heals_without_a_restart() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "24m") else { return };
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(BOUND)).unwrap();
    let watchdog = || {
        let mut buffer = [0u8; 512];
        loop {
            let n = socket.recv(&mut buffer).expect("a notification within the bound");
            if String::from_utf8_lossy(&buffer[..n]).contains("WATCHDOG=1") {
                return;
            }
        }
    };
    // Pings already queued on the socket say nothing about what comes next.
    let drain = || {
        socket.set_nonblocking(true).unwrap();
        while socket.recv(&mut [0u8; 512]).is_ok() {}
        socket.set_nonblocking(false).unwrap();
    };
    let receiver = Receiver::start().await;
    let mut daemon = Daemon::start(
        &disk.0.join("data"),
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap()), ("WATCHDOG_USEC", "400000")],
    );
    watchdog();
    let ws = daemon.workspace_with_webhook(&receiver.url).await;
    assert_eq!(daemon.post_message(&ws, "m-1").await.status(), 202);
    receiver.wait_for(1).await;
    // Its attempt recorded before the disk fills: an attempt that cannot be recorded keeps the
    // delivery leased, and m-2, behind it in the chat, would wait for that lease to run out.
    let stats_path = format!("/api/v1/workspaces/{}/stats", ws.0);
    eventually("m-1's attempt recorded", || async {
        let stats = daemon.json(reqwest::Method::GET, &stats_path, None).await;
        (stats["deliveries_delivered"] == 1).then_some(())
    })
    .await;

    // Filled to the last byte: refused with the error shape and a time to come back, and
    // nothing half-stored.
    let filler = disk.fill();
    let refused = daemon.post_message(&ws, "m-2").await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    let (status, ready) = daemon.ready().await;
    assert_eq!(status, 503, "{ready}");
    let store = ready["store"].as_str().unwrap();
    assert!(store.starts_with("cannot commit") && store.contains("full"), "{ready}");
    daemon.wait_for_log("withholding the watchdog ping");
    drain();
    assert!(daemon.child.try_wait().unwrap().is_none(), "no crash");

    // Room again: ready again by itself, the watchdog fed again, and the retry is stored.
    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + BOUND;
    while daemon.ready().await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watchdog();
    assert_eq!(daemon.post_message(&ws, "m-2").await.status(), 202);
    let seen = receiver.wait_for(2).await;
    let ids: Vec<String> = seen.iter().map(Received::message_id).collect();
    assert_eq!(ids, ["m-1", "m-2"], "each message delivered once");
    let stats = daemon.json(reqwest::Method::GET, &stats_path, None).await;
    assert_eq!(stats["messages"], 2);
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// An HTTP proxy that answers every connection with a 502 and counts them.
fn recording_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            count.fetch_add(1, Ordering::SeqCst);
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = stream.read(&mut [0u8; 4096]);
            let _ = stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_never_go_through_a_proxy_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, seen) = recording_proxy();
    let receiver = Receiver::start().await;
    let daemon = Daemon::start(
        dir.path(),
        &[
            ("HTTP_PROXY", &proxy),
            ("HTTPS_PROXY", &proxy),
            ("ALL_PROXY", &proxy),
            ("http_proxy", &proxy),
            ("https_proxy", &proxy),
            ("NO_PROXY", ""),
            ("no_proxy", ""),
        ],
    );
    // By name, so nothing special about loopback addresses could keep a proxy out of it.
    let url = receiver.url.replace("127.0.0.1", "localhost");
    let ws = daemon.workspace_with_webhook(&url).await;
    assert_eq!(daemon.post_message(&ws, "m-1").await.status(), 202);
    assert_eq!(receiver.wait_for(1).await[0].message_id(), "m-1");
    let hooks =
        daemon.json(reqwest::Method::GET, &format!("/api/v1/workspaces/{}/webhooks", ws.0), None).await;
    let hook = hooks["webhooks"][0]["id"].as_str().unwrap().to_string();
    let test = daemon.json(reqwest::Method::POST, &format!("/api/v1/webhooks/{hook}/test"), None).await;
    assert_eq!(test["ok"], true, "{test}");
    receiver.wait_for(2).await;
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the proxy saw nothing");
}

#[test]
fn an_in_memory_database_is_refused_at_start() {
    for url in ["sqlite::memory:", "sqlite://chatbundle.db?mode=memory"] {
        for subcommand in ["check-config", "serve"] {
            let output = Command::new(env!("CARGO_BIN_EXE_chatbundle"))
                .env_remove("CHATBUNDLE_CONFIG")
                .env("CHATBUNDLE_DATABASE_URL", url)
                .arg(subcommand)
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(2), "{url} {subcommand}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("database_url") && stderr.contains("in-memory"), "{stderr}");
        }
    }
}
