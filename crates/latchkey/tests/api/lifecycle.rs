//! Last-used bookkeeping, restarts, and the binary itself (bootstrap, SIGTERM).

use crate::helpers::{eventually, spawn_app_with, spawn_app_with_sites, Options};
use latchkey_server::ServerConfig;
use reqwest::StatusCode;
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn last_used_appears_within_two_seconds_and_survives_a_restart() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    let (_, before) = app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await;
    assert!(before["last_used_at"].is_null(), "never used yet");
    assert_eq!(app.get("/api/v1/sites", &key).await.0, StatusCode::OK);
    let path = format!("/api/v1/keys/{id}");
    let shown = eventually(Duration::from_secs(2), || async {
        !app.get(&path, &app.master_key).await.1["last_used_at"].is_null()
    })
    .await;
    assert!(shown, "last_used_at did not appear within 2 seconds");
    let app = app.restart().await;
    let (_, after) = app.get(&path, &app.master_key).await;
    assert!(!after["last_used_at"].is_null());
}

#[tokio::test]
async fn a_graceful_stop_writes_last_used_times_and_usage_still_in_memory() {
    // The periodic flush is due only in an hour: only the shutdown flush can write.
    let config = ServerConfig { last_used_flush_interval: Duration::from_secs(3600), ..ServerConfig::default() };
    let mut app = spawn_app_with(Options { config, ..Options::default() }).await;
    let site = app.create_site("blog").await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    app.get("/api/v1/whoami", &key).await;
    let id = latchkey_core::KeyId::parse(&id).unwrap();
    let store = app.database.open().await;
    assert!(store.get_key(&id).await.unwrap().unwrap().last_used_at.is_none(), "nothing written before the stop");
    app.stop().await;
    let store = app.database.open().await;
    let stored = store.get_key(&id).await.unwrap().unwrap();
    assert!(stored.last_used_at.is_some(), "last-used was written at shutdown");
    let usage = store.usage(std::slice::from_ref(&id), 0).await.unwrap();
    assert_eq!(usage.iter().map(|day| day.allowed).sum::<u64>(), 1, "the one request was counted at shutdown");
}

fn latchkey() -> Command {
    Command::new(env!("CARGO_BIN_EXE_latchkey"))
}

#[test]
fn bootstrap_prints_only_a_new_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("boot.db");
    let output = latchkey().args(["bootstrap", "--database"]).arg(&database).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let key = stdout.trim();
    assert_eq!(stdout.lines().count(), 1);
    assert!(latchkey_core::ParsedKey::parse(key).is_ok(), "{stdout:?}");
    let custom = latchkey()
        .args(["bootstrap", "--key-prefix", "forja", "--database"])
        .arg(dir.path().join("forja.db"))
        .output()
        .unwrap();
    assert!(String::from_utf8(custom.stdout).unwrap().starts_with("forja_"));
}

#[tokio::test]
async fn serve_prints_the_first_master_key_once_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("serve.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = latchkey()
        .args(["serve", "--listen", &listen, "--database"])
        .arg(&database)
        .env("LATCHKEY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/healthz");
    let up = eventually(Duration::from_secs(20), || async { client.get(&url).send().await.is_ok() }).await;
    assert!(up, "the server did not start");
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "only the key on stdout: {stdout:?}");
    assert!(latchkey_core::ParsedKey::parse(stdout.trim()).is_ok());
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off_while_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = latchkey_server::config::ConnectionLimits {
        header_read_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let app = spawn_app_with(Options {
        config: ServerConfig { connections: limits, ..ServerConfig::default() },
        ..Options::default()
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(stream);
    }
    let (status, _) = app.get("/api/v1/whoami", &app.master_key).await;
    assert_eq!(status, StatusCode::OK, "a normal request is served meanwhile");
    let started = std::time::Instant::now();
    let mut closed = 0;
    for stream in &mut slow {
        let mut buffer = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
        // Closed: end of stream, a reset, or hyper's 408 before closing.
        if matches!(read, Ok(Ok(_)) | Ok(Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(closed, 50, "every half-sent request was closed");
    assert!(started.elapsed() < Duration::from_secs(5), "within the timeout, not the test's deadline");
}

#[tokio::test]
async fn connections_over_the_limit_wait_for_a_free_one() {
    let limits = latchkey_server::config::ConnectionLimits { max_connections: 2, ..Default::default() };
    let app = spawn_app_with(Options {
        config: ServerConfig { connections: limits, ..ServerConfig::default() },
        ..Options::default()
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let held: Vec<_> = futures::future::join_all((0..2).map(|_| tokio::net::TcpStream::connect(&address))).await;
    let third =
        reqwest::Client::new().get(format!("{}/healthz", app.address)).timeout(Duration::from_millis(700)).send().await;
    assert!(third.is_err(), "a third connection is not served while two are held");
    drop(held);
    let (status, _) = app.get("/api/v1/whoami", &app.master_key).await;
    assert_eq!(status, StatusCode::OK, "served once the held connections close");
}
