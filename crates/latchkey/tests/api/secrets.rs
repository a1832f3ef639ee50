//! A key value never leaves the two places it belongs (the create or rotate response, and
//! the caller's request): a whole session against the real binary, logging at `trace`,
//! then the log and every database file are searched for each key value.

use crate::helpers::eventually;
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Server {
    base: String,
    client: reqwest::Client,
}

impl Server {
    async fn call(&self, method: reqwest::Method, path: &str, key: Option<&str>, body: Option<Value>) -> Value {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let text = request.send().await.unwrap().text().await.unwrap();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn no_key_value_reaches_the_trace_log_or_the_database_files() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("secrets.db");
    let log_path = dir.path().join("trace.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--database"])
        .arg(&database)
        .env("LATCHKEY_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let server = Server {
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder().redirect(Policy::none()).build().unwrap(),
    };
    let up = eventually(Duration::from_secs(20), || async {
        server.client.get(format!("{}/healthz", server.base)).send().await.is_ok()
    })
    .await;
    assert!(up, "the server did not start");
    let mut master = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut master).unwrap();
    let master = master.trim().to_owned();
    let mut secrets = vec![master.clone()];

    use reqwest::Method;
    let site = server.call(Method::POST, "/api/v1/sites", Some(&master), Some(json!({"name": "s"}))).await;
    let site = site["id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for level in ["read", "admin"] {
        let body = json!({"name": level, "permission": level, "site_id": site});
        let created = server.call(Method::POST, "/api/v1/keys", Some(&master), Some(body)).await;
        secrets.push(created["key"].as_str().unwrap().to_owned());
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (read, admin) = (secrets[1].clone(), secrets[2].clone());
    server.call(Method::POST, "/api/v1/verify", None, Some(json!({"key": read, "permission": "admin"}))).await;
    server.call(Method::GET, "/api/v1/auth", Some(&read), None).await;
    server.call(Method::GET, "/api/v1/keys", Some(&read), None).await;
    let patch = json!({"key": read});
    server.call(Method::PATCH, &format!("/api/v1/keys/{}", ids[0]), Some(&master), Some(patch)).await;
    let login = crate::helpers::post_sign_in(&server.base, &admin).await;
    assert_eq!(login.status(), 303, "the admin signs in to the dashboard");
    let rotated = server.call(Method::POST, &format!("/api/v1/keys/{}/rotate", ids[0]), Some(&master), None).await;
    secrets.push(rotated["key"].as_str().unwrap().to_owned());
    server.call(Method::POST, &format!("/api/v1/keys/{}/block", ids[1]), Some(&master), None).await;
    server.call(Method::GET, "/api/v1/whoami", Some(&admin), None).await;
    let leak = json!({"keys": [secrets[3]], "source": "https://example.com/paste"});
    server.call(Method::POST, "/api/v1/leaks", None, Some(leak)).await;
    server.call(Method::DELETE, &format!("/api/v1/keys/{}", ids[1]), Some(&master), None).await;

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.lines().count() > 20, "the log is really at trace level ({} lines)", log.lines().count());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for (n, secret) in secrets.iter().enumerate() {
            assert!(!text.contains(secret.as_str()), "key #{n} appears in {}", path.display());
            // A key's secret part alone would be as bad as the whole key.
            assert!(!text.contains(&secret[12..]), "the secret part of key #{n} appears in {}", path.display());
        }
    }
}
