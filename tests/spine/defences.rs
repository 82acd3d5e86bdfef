//! The real binary against hostile clients on 127.0.0.1: a flood of slow and idle connections,
//! slow bodies, and what the daemon leaves on disk and in its logs.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::json;
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

    // The flood's connections beyond its share were closed at once, and the rest go when the
    // header timeout runs out, slow or idle.
    let metrics = http.get(format!("{}/metrics", daemon.base)).send().await.unwrap().text().await.unwrap();
    let refused: f64 = metrics
        .lines()
        .find(|l| l.starts_with("chatbundle_connections_refused_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 1000.0, "{refused} refused");
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

    let log = daemon.log_text();
    assert!(log.contains(&source_id[..8]), "sources are still told apart:\n{log}");
    assert!(!log.contains(&source_id), "the source id (its credential) is never logged whole:\n{log}");
    assert!(!log.contains(guess) && !log.contains(TOKEN), "no token in the log:\n{log}");
    assert!(log.lines().all(|l| !l.starts_with("2026-11-28T00:00:00Z")), "no forged line:\n{log}");
    assert!(
        log.lines().all(|l| !l.chars().any(|c| c.is_control() && c != '\t')),
        "no raw control characters"
    );
}
