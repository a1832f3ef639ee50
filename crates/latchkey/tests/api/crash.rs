//! Crash safety: the real binary is killed with SIGKILL while writers create keys, three
//! times over; afterwards every key whose creation was acknowledged exists and works, no
//! key exists without its audit event, and (on SQLite) the file passes its integrity check.

use crate::helpers::{eventually, Database};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn latchkey(args: &[&str], database: &Database) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command.args(args).args(database.cli_args()).env("LATCHKEY_LOG", "warn");
    command
}

struct Running {
    child: std::process::Child,
    base: String,
}

async fn start(database: &Database) -> Running {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let child = latchkey(&["serve", "--listen", &listen], database)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    let up =
        eventually(Duration::from_secs(20), || async { client.get(format!("{base}/healthz")).send().await.is_ok() })
            .await;
    assert!(up, "the server did not start");
    Running { child, base }
}

async fn call(base: &str, key: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Option<Value> {
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}")).header("X-API-Key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.ok()?;
    response.status().is_success().then_some(())?;
    response.json().await.ok()
}

/// Every page of a listing.
async fn all(base: &str, key: &str, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor = String::new();
    loop {
        let separator = if path.contains('?') { '&' } else { '?' };
        let page = call(base, key, reqwest::Method::GET, &format!("{path}{separator}limit=200{cursor}"), None)
            .await
            .expect("a listing");
        items.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return items,
        }
    }
}

#[tokio::test]
async fn keys_acknowledged_before_a_kill_9_survive_it_and_nothing_is_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let database = Database::fresh(&dir);
    let boot = latchkey(&["bootstrap"], &database).output().unwrap();
    assert!(boot.status.success(), "{}", String::from_utf8_lossy(&boot.stderr));
    let master = String::from_utf8(boot.stdout).unwrap().trim().to_owned();
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut site = String::new();
    for _round in 0..3 {
        let mut server = start(&database).await;
        if site.is_empty() {
            let created =
                call(&server.base, &master, reqwest::Method::POST, "/api/v1/sites", Some(json!({"name": "s"})));
            site = created.await.unwrap()["id"].as_str().unwrap().to_owned();
        }
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let (base, master, site, acknowledged) =
                    (server.base.clone(), master.clone(), site.clone(), acknowledged.clone());
                tokio::spawn(async move {
                    let body = json!({ "name": "crash", "permission": "read", "site_id": site });
                    while let Some(created) =
                        call(&base, &master, reqwest::Method::POST, "/api/v1/keys", Some(body.clone())).await
                    {
                        let key =
                            (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned());
                        acknowledged.lock().unwrap().push(key);
                    }
                })
            })
            .collect();
        let before = acknowledged.lock().unwrap().len();
        let busy =
            eventually(Duration::from_secs(10), || async { acknowledged.lock().unwrap().len() >= before + 20 }).await;
        assert!(busy, "the writers created keys");
        server.child.kill().unwrap(); // SIGKILL: no graceful stop, no flush.
        server.child.wait().unwrap();
        for writer in writers {
            writer.await.unwrap();
        }
    }
    let server = start(&database).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 60);
    for (id, key) in &acknowledged {
        let answer =
            call(&server.base, &master, reqwest::Method::POST, "/api/v1/verify", Some(json!({ "key": key }))).await;
        assert_eq!(answer.unwrap()["code"], "valid", "acknowledged key {id} works after the crashes");
    }
    let stored = all(&server.base, &master, &format!("/api/v1/keys?site={site}")).await;
    let audited = all(&server.base, &master, "/api/v1/audit?action=key_created").await;
    for key in &stored {
        assert!(
            audited.iter().any(|event| event["target_key_id"] == key["id"]),
            "key {} has no audit event",
            key["id"]
        );
    }
    assert!(stored.len() >= acknowledged.len());
    if let Database::Postgres { url, schema } = &database {
        crate::helpers::drop_schema(url.clone(), schema.clone());
    }
    if let Database::Sqlite(path) = &database {
        use sqlx::Connection;
        let mut connection = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut connection).await.unwrap();
        assert_eq!(check, "ok");
    }
}
