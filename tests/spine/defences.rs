//! The real binary against hostile clients on 127.0.0.1: a flood of slow and idle connections,
//! slow bodies, and what the daemon leaves on disk and in its logs.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::*;
use crate::supervision::{Daemon, TOKEN};

/// A connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(to).await
}

/// Waits, within the bound, for the server to close `stream` (a read that returns nothing).
async fn closed_by_server(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&buffer[..n]),
            Err(_) => panic!("the server kept the connection open: {}", String::from_utf8_lossy(&seen)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_slow_and_idle_connections_costs_everyone_else_nothing() {
    // This test holds over a thousand sockets itself.
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &[
            ("CHATBUNDLE_HTTP__HEADER_TIMEOUT", "2s"),
            ("CHATBUNDLE_HTTP__BODY_TIMEOUT", "2s"),
            ("CHATBUNDLE_HTTP__MAX_CONNECTIONS_PER_CLIENT", "64"),
        ],
    );
    let addr: SocketAddr = daemon.base.trim_start_matches("http://").parse().unwrap();
    let ws = daemon.workspace_with_webhook("http://127.0.0.1:9/never").await;

    // 1,100 connections from one address: half send nothing, half start a request and stall.
    let mut flood = Vec::new();
    for i in 0..1100 {
        let Ok(mut stream) = connect_from("127.0.0.2", addr).await else { continue };
        if i % 2 == 1 {
            let _ = stream.write_all(b"POST /api/v1/workspaces HTTP/1.1\r\nHost: x\r\n").await;
        }
        flood.push(stream);
    }
    assert!(flood.len() >= 1000, "the flood connected ({})", flood.len());

    // Everyone else is answered at once.
    let http = Daemon::http();
    let started = Instant::now();
    let health = http.get(format!("{}/healthz", daemon.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(daemon.post_message(&ws, "m-1").await.status(), 202);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "answered within a second during the flood: {took:?}");

    // The flood's connections beyond its share were closed as the daemon took them from the
    // kernel's queue (a connect returns before that), and the rest go when the header timeout
    // runs out, slow or idle.
    eventually("the flood's connections beyond its share to be refused", || async {
        let metrics = http.get(format!("{}/metrics", daemon.base)).send().await.ok()?.text().await.ok()?;
        let refused: f64 = metrics
            .lines()
            .find(|l| l.starts_with("chatbundle_connections_refused_total"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0);
        (refused >= 1000.0).then_some(())
    })
    .await;
    closed_by_server(&mut flood[0]).await;
    closed_by_server(&mut flood[1]).await;

    // A kept-alive connection that goes quiet is closed the same way.
    let mut kept = connect_from("127.0.0.3", addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = closed_by_server(&mut kept).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));

    // A body that trickles in is answered 408, and nothing of it is stored.
    let mut slow = connect_from("127.0.0.3", addr).await.unwrap();
    let head = format!(
        "POST /api/v1/workspaces/{}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{{\"message_id\":",
        ws.0, ws.1
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let answer = closed_by_server(&mut slow).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let stats = daemon.json(reqwest::Method::GET, &format!("/api/v1/workspaces/{}/stats", ws.0), None).await;
    assert_eq!(stats["messages"], 1);
}

#[test]
fn files_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    // An empty token file left by an operator, readable by everyone.
    let token = data.join("admin-token");
    std::fs::write(&token, "").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut command = Daemon::command("sh", &data);
    command.env_remove("CHATBUNDLE_ADMIN_TOKEN").args([
        "-c",
        "umask 022; exec \"$0\" serve --listen 127.0.0.1:0",
        env!("CARGO_BIN_EXE_chatbundle"),
    ]);
    let mut daemon = Daemon::launch(command);
    let mode = |name: &str| std::fs::metadata(data.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    for file in
        ["admin-token", "chatbundle.db", "chatbundle.db-wal", "chatbundle.db-shm", "chatbundle.db.lock"]
    {
        assert_eq!(mode(file), 0o600, "{file}");
    }
    assert!(std::fs::read_to_string(&token).unwrap().trim().len() > 32, "a token was written into it");
    assert_eq!(daemon.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_no_credentials_and_no_forged_lines() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[("CHATBUNDLE_LOG_FORMAT", "plain")]);
    let ws = daemon.workspace_with_webhook("http://127.0.0.1:9/never").await;
    let body = json!({"kind": "zoho_desk", "name": "Zoho"});
    let source =
        daemon.json(reqwest::Method::POST, &format!("/api/v1/workspaces/{}/sources", ws.0), Some(body)).await;
    let source_id = source["id"].as_str().unwrap().to_string();
    let inbound = source["inbound_url"].as_str().unwrap().to_string();
    let events = json!([{"eventType": "IM_Message_Add", "payload": {"id": "z-1", "sessionId": "s-1",
                         "direction": "IN", "text": "hello", "actor": {"name": "Kamal"}}}]);
    assert_eq!(Daemon::http().post(&inbound).json(&events).send().await.unwrap().status(), 200);

    // A wrong token is logged, without the token.
    let guess = "guessed-Token-0123456789-abcdef";
    let wrong = Daemon::http()
        .get(format!("{}/api/v1/workspaces", daemon.base))
        .bearer_auth(guess)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    daemon.wait_for_log("wrong credentials");
    // A name made to forge a log line is refused, and forges nothing.
    let forged =
        json!({"name": "Acme\r\n2026-11-28T00:00:00Z  INFO forged line", "owner_email": "o@acme.example"});
    let refused = daemon.call(reqwest::Method::POST, "/api/v1/workspaces", Some(forged)).await;
    assert_eq!(refused.status(), 400);

    // A peer that forwards for others but is not a trusted proxy: a configuration warning.
    let forwarded = Daemon::http()
        .get(format!("{}/healthz", daemon.base))
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 200);
    daemon.wait_for_log("not in http.trusted_proxies");

    let log = daemon.log_text();
    let key = inbound.rsplit('/').next().unwrap();
    assert!(log.contains(&source_id[..8]), "sources are still told apart:\n{log}");
    assert!(!log.contains(key), "an inbound URL's key is never logged whole:\n{log}");
    assert!(!log.contains(&source_id), "the source id (its credential) is never logged whole:\n{log}");
    assert!(!log.contains(guess) && !log.contains(TOKEN), "no token in the log:\n{log}");
    assert!(log.lines().all(|l| !l.starts_with("2026-11-28T00:00:00Z")), "no forged line:\n{log}");
    assert!(
        log.lines().all(|l| !l.chars().any(|c| c.is_control() && c != '\t')),
        "no raw control characters"
    );
}

/// Sends `head` (a request's head, without its body) from `from`, and reads the answer the server
/// sends before any of the body.
async fn answer_to_head(from: &str, to: SocketAddr, head: &str) -> String {
    let mut stream = connect_from(from, to).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    String::from_utf8_lossy(&closed_by_server(&mut stream).await).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_refused_by_their_length_before_they_are_sent_and_strangers_get_less_time() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &[
            ("CHATBUNDLE_HTTP__ANONYMOUS_BODY_TIMEOUT", "1s"),
            ("CHATBUNDLE_HTTP__BODY_TIMEOUT", "30s"),
            ("CHATBUNDLE_HTTP__MAX_BUFFERED_MIB", "1"),
        ],
    );
    let addr: SocketAddr = daemon.base.trim_start_matches("http://").parse().unwrap();
    let ws = daemon.workspace_with_webhook("http://127.0.0.1:9/never").await;

    // 2 MB announced to the sign-in, to the admin API and to ingest: 413 at once, the body unsent.
    for (path, auth) in [
        ("/login", String::new()),
        ("/api/v1/workspaces", format!("Authorization: Bearer {TOKEN}\r\n")),
        (
            &format!("/api/v1/workspaces/{}/messages", ws.0) as &str,
            format!("Authorization: Bearer {}\r\n", ws.1),
        ),
    ] {
        let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 2000000\r\n\r\n");
        let answer = answer_to_head("127.0.0.2", addr, &head).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(answer.contains("too_large"), "{answer}");
    }
    // A form is held to 64 KiB, ingest to 1 MiB.
    let form = answer_to_head(
        "127.0.0.2",
        addr,
        &format!("POST /api/v1/workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 70000\r\n\r\n"),
    )
    .await;
    assert!(form.starts_with("HTTP/1.1 413"), "{form}");
    // Without a length, the body is cut off where it passes the limit.
    let mut chunked = connect_from("127.0.0.2", addr).await.unwrap();
    chunked
        .write_all(b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n")
        .await
        .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "t".repeat(16 * 1024));
    for _ in 0..5 {
        if chunked.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&closed_by_server(&mut chunked).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Bodies held at once are bounded: while one ingest of 1,000,000 bytes is arriving, another
    // that would go over 1 MiB is answered 503 before its body is read. Which of the two the
    // daemon takes up first is the scheduler's choice (when the second is first, the first is the
    // one refused), so each try starts a new first one.
    let head = format!(
        "POST /api/v1/workspaces/{}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n[",
        ws.0, ws.1
    );
    let (over, holding) = eventually("the second body to be refused for the budget", || async {
        let mut holding = connect_from("127.0.0.3", addr).await.unwrap();
        holding.write_all(head.as_bytes()).await.unwrap();
        // Sent whole (not valid JSON): unless the first one holds the budget, it is read and
        // refused as a bad body; when it does, it is refused before it is read.
        let request = format!(
            "POST /api/v1/workspaces/{}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Length: 100000\r\nConnection: close\r\n\r\n{}",
            ws.0,
            ws.1,
            "x".repeat(100_000)
        );
        let mut stream = connect_from("127.0.0.4", addr).await.unwrap();
        let _ = stream.write_all(request.as_bytes()).await;
        let answer = String::from_utf8_lossy(&closed_by_server(&mut stream).await).into_owned();
        answer.starts_with("HTTP/1.1 503").then_some((answer, holding))
    })
    .await;
    assert!(over.contains("busy") && over.to_ascii_lowercase().contains("retry-after"), "{over}");
    drop(holding);
    // The daemon sees the first one's connection closed, and gives its share back.
    eventually("the budget to come back", || async {
        (daemon.post_message(&ws, "m-after").await.status() == 202).then_some(())
    })
    .await;

    // A stranger's body must come within the anonymous deadline (1 s); the admin's gets 30 s.
    // The admin's request starts first and is still waited for after the stranger's is refused.
    let body = json!({"name": "Slow but signed in", "owner_email": "o@acme.example"}).to_string();
    let mut admin = connect_from("127.0.0.5", addr).await.unwrap();
    let head = format!(
        "POST /api/v1/workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    admin.write_all(head.as_bytes()).await.unwrap();
    admin.write_all(&body.as_bytes()[..10]).await.unwrap();
    let started = Instant::now();
    let mut anonymous = connect_from("127.0.0.5", addr).await.unwrap();
    anonymous
        .write_all(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntoken=")
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&closed_by_server(&mut anonymous).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "the anonymous deadline: {took:?}"
    );
    admin.write_all(&body.as_bytes()[10..]).await.unwrap();
    let answer = String::from_utf8_lossy(&closed_by_server(&mut admin).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 201"), "the admin's body was still waited for: {answer}");
}

/// A counter's value in the daemon's `/metrics`.
async fn metric(daemon: &Daemon, name: &str) -> f64 {
    let text =
        Daemon::http().get(format!("{}/metrics", daemon.base)).send().await.unwrap().text().await.unwrap();
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_its_answer_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[("CHATBUNDLE_HTTP__WRITE_TIMEOUT", "1s")]);
    let addr: SocketAddr = daemon.base.trim_start_matches("http://").parse().unwrap();
    let receiver = Receiver::start().await;
    let ws = daemon.workspace_with_webhook(&receiver.url).await;
    // A log of some megabytes: 120 deliveries of 60 KB each, every one recorded with its body.
    let text = "x".repeat(60_000);
    for batch in 0..8 {
        let messages: Vec<Value> =
            (0..15).map(|i| message(&format!("m-{batch}-{i}"), "c-1", &text)).collect();
        let response = Daemon::http()
            .post(format!("{}/api/v1/workspaces/{}/messages", daemon.base, ws.0))
            .bearer_auth(&ws.1)
            .json(&messages)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    receiver.wait_for(120).await;
    let hooks =
        daemon.json(reqwest::Method::GET, &format!("/api/v1/workspaces/{}/webhooks", ws.0), None).await;
    let id = hooks["webhooks"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/webhooks/{id}/log?format=jsonl");
    let whole = eventually("all 120 attempts in the log", || async {
        let log = daemon.call(reqwest::Method::GET, &path, None).await.bytes().await.unwrap();
        let attempts = log.split(|b| *b == b'\n').filter(|l| {
            l.starts_with(b"{") && {
                serde_json::from_slice::<Value>(l).is_ok_and(|row| row["kind"] == "attempt")
            }
        });
        (attempts.count() >= 120).then_some(log.len())
    })
    .await;
    assert!(whole > 6_000_000, "{whole} bytes");

    // A client that asks for it and reads nothing, with a small receive window.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    stalled.write_all(head.as_bytes()).await.unwrap();
    eventually("the daemon to give up on the client", || async {
        (metric(&daemon, "chatbundle_http_write_timeouts_total").await >= 1.0).then_some(())
    })
    .await;
    // What was still buffered arrives, then the end: far less than the whole log.
    let got = closed_by_server(&mut stalled).await;
    assert!(got.len() < whole, "{} of {whole} bytes", got.len());
    assert!(String::from_utf8_lossy(&got[..12]).starts_with("HTTP/1.1 200"));
    // Everyone else is served as before.
    assert_eq!(daemon.post_message(&ws, "m-after").await.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_answer_when_every_other_connection_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &[
            ("CHATBUNDLE_HTTP__HEADER_TIMEOUT", "30s"),
            ("CHATBUNDLE_HTTP__MAX_CONNECTIONS", "40"),
            ("CHATBUNDLE_HTTP__MAX_CONNECTIONS_PER_CLIENT", "16"),
            ("CHATBUNDLE_HTTP__RESERVED_CONNECTIONS", "12"),
        ],
    );
    let addr: SocketAddr = daemon.base.trim_start_matches("http://").parse().unwrap();
    let ws = daemon.workspace_with_webhook("http://127.0.0.1:9/never").await;
    // Five addresses hold every connection they can, idle.
    let mut flood = Vec::new();
    for from in 2..=6 {
        for _ in 0..16 {
            if let Ok(stream) = connect_from(&format!("127.0.0.{from}"), addr).await {
                flood.push(stream);
            }
        }
    }
    // The cap is reached: a new client's ingest is turned away …
    let client = |from: &str| {
        reqwest::Client::builder().local_address(from.parse::<std::net::IpAddr>().unwrap()).build().unwrap()
    };
    let turned_away = eventually("the general connections to be taken", || async {
        let response = client("127.0.0.7")
            .post(format!("{}/api/v1/workspaces/{}/messages", daemon.base, ws.0))
            .bearer_auth(&ws.1)
            .json(&message("m-1", "c-1", "hi"))
            .send()
            .await
            .ok()?;
        (response.status() == 503).then_some(response)
    })
    .await;
    assert_eq!(turned_away.json::<Value>().await.unwrap()["error"]["code"], "busy");
    // … and the health checks, the metrics and the admin still answer.
    for (from, path) in [
        ("127.0.0.8", "/healthz"),
        ("127.0.0.9", "/readyz"),
        ("127.0.0.10", "/metrics"),
        ("127.0.0.11", "/api/v1/workspaces"),
    ] {
        let response =
            client(from).get(format!("{}{path}", daemon.base)).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    drop(flood);
}
