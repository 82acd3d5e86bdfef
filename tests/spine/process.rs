//! The binary as an operator runs it: exit codes, signals, the generated admin token.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::BOUND;

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
        let output = chatbundle()
            .arg("--config")
            .arg(&file)
            .arg(subcommand)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{subcommand}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("delivery.timeout"), "{stderr}");
    }
    let output = chatbundle()
        .arg("check-config")
        .env("CHATBUNDLE_DELIVERY__CONCURRENCY", "lots")
        .output()
        .unwrap();
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
    let checked = chatbundle()
        .arg("--config")
        .arg(&file)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
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

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
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
    let second = chatbundle()
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use by another chatbundle process"));
    first.kill().unwrap();
    first.wait().unwrap();
}
