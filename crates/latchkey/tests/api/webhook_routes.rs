//! The webhook routes' rules (who may register what, which URLs), the events that no
//! audited change carries (reminders, rate limits), the `GET /events` feed, and leak
//! reports in GitHub's secret-scanning format.

use crate::helpers::{assert_error, eventually, spawn_app, Database, TestApp};
use crate::webhooks::{register, spawn_app_for_webhooks, Receiver};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn an_admin_registers_endpoints_for_its_own_site_only() {
    let app = spawn_app_for_webhooks(false).await;
    let (ours, theirs) = (app.create_site("Ours").await, app.create_site("Theirs").await);
    let (_, admin) = app.create_key("admin", Some(&ours)).await;
    let (_, write) = app.create_key("write", Some(&ours)).await;
    let url = "http://127.0.0.1:9/hook";
    let (status, own) = app.post("/api/v1/webhooks", &admin, json!({ "url": url })).await;
    assert_eq!((status.as_u16(), own["site_id"].as_str()), (201, Some(ours.as_str())), "{own}");
    assert!(own["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_error(
        app.post("/api/v1/webhooks", &admin, json!({ "url": url, "site_id": theirs })).await,
        403,
        "insufficient_permission",
    );
    assert_error(app.post("/api/v1/webhooks", &write, json!({ "url": url })).await, 403, "insufficient_permission");
    let (all_sites, _) = register(&app, url, json!({})).await;
    assert_error(app.get(&format!("/api/v1/webhooks/{all_sites}"), &admin).await, 404, "not_found");
    let (_, listed) = app.get("/api/v1/webhooks", &admin).await;
    let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [own["id"].as_str().unwrap()]);
    assert!(listed["data"][0].get("secret").is_none(), "a listing never shows the secret");
    let (_, everything) = app.get("/api/v1/webhooks", &app.master_key).await;
    assert_eq!(everything["data"].as_array().unwrap().len(), 2);
    let path = format!("/api/v1/webhooks/{}", own["id"].as_str().unwrap());
    let (status, edited) =
        app.call(reqwest::Method::PATCH, &path, Some(&admin), Some(json!({ "events": ["key.leaked"] }))).await;
    assert_eq!((status.as_u16(), edited["events"].clone()), (200, json!(["key.leaked"])));
    let rotate = format!("{path}/rotate-secret");
    let (status, rotated) = app.post(&rotate, &admin, json!({})).await;
    assert_eq!(status.as_u16(), 200, "{rotated}");
    let (status, _) = app.call(reqwest::Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(status, 204);
    assert_error(app.get(&path, &admin).await, 404, "not_found");
    // Every change to the endpoint is in the audit, by whom and for which site; never its secret.
    let (_, audit) = app.get(&format!("/api/v1/audit?site={ours}"), &admin).await;
    let webhook_id = own["id"].as_str().unwrap();
    let mut actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["changes"].as_array().unwrap().iter().any(|c| c["after"] == webhook_id))
        .map(|event| event["action"].as_str().unwrap())
        .collect();
    actions.reverse();
    assert_eq!(actions, ["webhook_created", "webhook_updated", "webhook_secret_rotated", "webhook_deleted"]);
    let text = audit.to_string();
    assert!(text.contains("key.leaked"), "the edit's change is recorded: {text}");
    for secret in [own["secret"].as_str().unwrap(), rotated["secret"].as_str().unwrap()] {
        assert!(!text.contains(secret));
    }
}

#[tokio::test]
async fn private_targets_and_bad_bodies_are_refused() {
    let app = spawn_app().await;
    let create = |body: Value| app.post("/api/v1/webhooks", &app.master_key, body);
    for url in [
        "http://127.0.0.1/hook",
        "http://10.1.2.3/",
        "http://[::1]/",
        "http://169.254.169.254/latest",
        "http://localhost:8080/",
        "ftp://example.com/",
    ] {
        assert_error(create(json!({ "url": url })).await, 422, "validation_failed");
    }
    assert_error(
        create(json!({ "url": "https://example.com/", "events": ["key.exploded"] })).await,
        422,
        "validation_failed",
    );
    assert_error(create(json!({ "url": "https://example.com/", "secret": "mine" })).await, 422, "validation_failed");
    let (status, created) = create(json!({ "url": "https://example.com/hook" })).await;
    assert_eq!(status, 201, "{created}");
    assert_error(app.get("/api/v1/webhooks/whk_nope", &app.master_key).await, 404, "not_found");
}

#[tokio::test]
async fn the_events_feed_follows_a_cursor_and_shows_an_admin_its_site_only() {
    let app = spawn_app().await;
    let ours = app.create_site("Ours").await;
    let (_, admin) = app.create_key("admin", Some(&ours)).await;
    app.create_site("Theirs").await;
    let (_, all) = app.get("/api/v1/events?wait=0", &app.master_key).await;
    let types: Vec<&str> = all["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["key.created", "site.created", "key.created", "site.created"]);
    let (_, mine) = app.get("/api/v1/events?wait=0", &admin).await;
    assert!(mine["data"].as_array().unwrap().iter().all(|e| e["data"]["site_id"] == ours || e["data"]["id"] == ours));
    assert_eq!(mine["data"].as_array().unwrap().len(), 2, "{mine}");
    let cursor = all["next_after"].as_str().unwrap().to_owned();
    let waiting = {
        let (client, url, key) = (
            app.client.clone(),
            format!("{}/api/v1/events?after={cursor}&wait=10", app.address),
            app.master_key.clone(),
        );
        tokio::spawn(
            async move { client.get(url).header("X-API-Key", key).send().await.unwrap().json::<Value>().await },
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.create_site("Later").await;
    let next = waiting.await.unwrap().unwrap();
    assert_eq!(next["data"][0]["type"], "site.created", "{next}");
    assert_eq!(next["data"][0]["data"]["name"], "Later");
    assert_error(app.get("/api/v1/events?after=nonsense&wait=0", &app.master_key).await, 422, "validation_failed");
}

#[tokio::test]
async fn key_expiring_fires_once_at_seven_days_and_once_at_one_day() {
    let app = spawn_app_for_webhooks(true).await;
    let site = app.create_site("Expiring").await;
    let expires = app.state.clock.now() + chrono::Duration::days(10);
    let (id, _) = app
        .create_key_from(json!({ "name": "soon", "permission": "read", "site_id": site, "expires_at": expires }))
        .await;
    // Followed as a collector would: old events are pruned after a week, seen ones stay seen.
    let mut seen: Vec<(Value, Value)> = Vec::new();
    let mut cursor = "0".to_owned();
    let steps = [(3 * 24 + 1, 1), (1, 1), (6 * 24, 2), (2, 2), (24, 3)];
    for (hours, expected) in steps {
        app.advance_clock(chrono::Duration::hours(hours));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while seen.len() < expected && std::time::Instant::now() < deadline {
            let (_, page) = app.get(&format!("/api/v1/events?after={cursor}&wait=1"), &app.master_key).await;
            cursor = page["next_after"].as_str().unwrap().to_owned();
            seen.extend(
                page["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["data"]["id"] == id.as_str() && e["type"].as_str().unwrap().starts_with("key.expir"))
                    .map(|e| (e["type"].clone(), e["data"]["days_left"].clone())),
            );
        }
        let (_, late) = app.get(&format!("/api/v1/events?after={cursor}&wait=0"), &app.master_key).await;
        assert!(late["data"].as_array().unwrap().iter().all(|e| e["type"] != "key.expiring"), "{late}");
        assert_eq!(seen.len(), expected, "{seen:?}");
    }
    assert_eq!(
        seen,
        [(json!("key.expiring"), json!(7)), (json!("key.expiring"), json!(1)), (json!("key.expired"), Value::Null)]
    );
}

#[tokio::test]
async fn a_flood_of_rate_limited_requests_gives_one_event_per_window() {
    let app = spawn_app_for_webhooks(true).await;
    let site = app.create_site("Flooded").await;
    let (id, key) = app
        .create_key_from(json!({ "name": "limited", "permission": "read", "site_id": site,
            "ratelimit": { "limit": 1, "window_seconds": 60 } }))
        .await;
    let rate_limited = || async {
        let (_, feed) = app.get("/api/v1/events?wait=0", &app.master_key).await;
        feed["data"].as_array().unwrap().iter().filter(|e| e["type"] == "key.rate_limited").count()
    };
    for window in 1..=2 {
        for _ in 0..30 {
            app.post("/api/v1/verify", &app.master_key, json!({ "key": key })).await;
        }
        assert!(eventually(Duration::from_secs(5), || async { rate_limited().await >= window }).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rate_limited().await, window);
        app.advance_clock(chrono::Duration::seconds(61));
    }
    let (_, feed) = app.get("/api/v1/events?wait=0", &app.master_key).await;
    let event = feed["data"].as_array().unwrap().iter().find(|e| e["type"] == "key.rate_limited").unwrap().clone();
    assert_eq!((event["data"]["id"].as_str(), event["data"]["limit"].as_u64()), (Some(id.as_str()), Some(1)));
}

#[tokio::test]
async fn a_key_out_of_credits_gives_one_usage_exceeded_event_an_hour_however_often_it_is_refused() {
    let app = spawn_app_for_webhooks(true).await;
    let site = app.create_site("Metered").await;
    let (id, key) = app
        .create_key_from(json!({ "name": "metered", "permission": "read", "site_id": site,
            "credits": { "remaining": 2 } }))
        .await;
    let exceeded = || async {
        let (_, feed) = app.get("/api/v1/events?wait=0", &app.master_key).await;
        feed["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "key.usage_exceeded")
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(app.post("/api/v1/verify", &app.master_key, json!({ "key": key })).await.1["code"].clone());
    }
    assert_eq!(codes.iter().filter(|code| *code == "valid").count(), 2, "two credits, two valid answers");
    assert!(codes[2..].iter().all(|code| code == "usage_exceeded"), "{codes:?}");
    assert!(eventually(Duration::from_secs(5), || async { !exceeded().await.is_empty() }).await);
    for _ in 0..20 {
        app.post("/api/v1/verify", &app.master_key, json!({ "key": key })).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first_hour = exceeded().await;
    assert_eq!(first_hour.len(), 1, "{first_hour:?}");
    assert_eq!(first_hour[0]["data"]["id"], id.as_str());
    app.advance_clock(chrono::Duration::minutes(61));
    app.post("/api/v1/verify", &app.master_key, json!({ "key": key })).await;
    assert!(eventually(Duration::from_secs(5), || async { exceeded().await.len() == 2 }).await, "the next hour's one");
}

/// A test's own stand-in for GitHub's signing key, and the public-keys document for it.
fn github_keys(dir: &tempfile::TempDir) -> (SigningKey, std::path::PathBuf) {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).unwrap();
    let signing = SigningKey::from_slice(&secret).unwrap();
    let pem = signing.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
    let document = json!({ "public_keys": [{ "key_identifier": "test-key-1", "key": pem, "is_current": true }] });
    let path = dir.path().join("github-keys.json");
    std::fs::write(&path, document.to_string()).unwrap();
    (signing, path)
}

async fn report(app: &TestApp, body: &str, signature: &str) -> (reqwest::StatusCode, Value) {
    let response = app
        .client
        .post(format!("{}/api/v1/leaks/github", app.address))
        .header("content-type", "application/json")
        .header("Github-Public-Key-Identifier", "test-key-1")
        .header("Github-Public-Key-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_github_report_needs_a_good_signature_and_blocks_only_real_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (signing, path) = github_keys(&dir);
    let keys =
        latchkey_service::github_leaks::SecretScanningKeys::from_github_json(&std::fs::read_to_string(path).unwrap());
    let mut options = crate::helpers::Options::default();
    options.config.service.github_secret_scanning_keys = keys.unwrap();
    let app = crate::helpers::spawn_app_with(options).await;
    let site = app.create_site("Leaky").await;
    let (real_id, real) = app.create_key("read", Some(&site)).await;
    let (other_id, _) = app.create_key("read", Some(&site)).await;
    let body = json!([
        { "token": real, "type": "latchkey_api_key", "url": "https://github.com/o/r/blob/x/.env", "source": "content" },
        { "token": "lk_notarealkeyatall0000000000000000", "type": "latchkey_api_key", "url": "u", "source": "content" },
    ])
    .to_string();
    let forged: Signature = SigningKey::from_slice(&[7u8; 32]).unwrap().sign(body.as_bytes());
    let (status, refused) = report(&app, &body, &base64_of(&forged.to_der().to_bytes())).await;
    assert_eq!((status.as_u16(), refused["error"]["code"].as_str()), (403, Some("insufficient_permission")));
    assert_eq!(app.get(&format!("/api/v1/keys/{real_id}"), &app.master_key).await.1["status"], "active");

    let signature: Signature = signing.sign(body.as_bytes());
    let (status, labels) = report(&app, &body, &base64_of(&signature.to_der().to_bytes())).await;
    assert_eq!(status, 200, "{labels}");
    let labels: Vec<&str> = labels.as_array().unwrap().iter().map(|l| l["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["true_positive", "false_positive"]);
    assert_eq!(app.get(&format!("/api/v1/keys/{real_id}"), &app.master_key).await.1["status"], "blocked");
    assert_eq!(app.get(&format!("/api/v1/keys/{other_id}"), &app.master_key).await.1["status"], "active");
    let (_, feed) = app.get("/api/v1/events?wait=0", &app.master_key).await;
    let leaked: Vec<&Value> = feed["data"].as_array().unwrap().iter().filter(|e| e["type"] == "key.leaked").collect();
    assert_eq!((leaked.len(), leaked[0]["data"]["id"].as_str()), (1, Some(real_id.as_str())));
    assert!(!feed.to_string().contains(&real), "no event holds a key");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The real binary, for SIGKILL: started on a free port, with its own Master key.
pub struct Binary {
    child: std::process::Child,
    base: String,
    master_key: String,
}

impl Binary {
    pub async fn start(database: &Database) -> Self {
        let output = Command::new(env!("CARGO_BIN_EXE_latchkey")).arg("bootstrap").args(database.cli_args()).output();
        let master_key = String::from_utf8(output.unwrap().stdout).unwrap().trim().to_owned();
        Self::serve(database, master_key).await
    }

    async fn serve(database: &Database, master_key: String) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--webhook-allow-private", "true"])
            .args(["--webhook-claim-timeout", "2"])
            .args(database.cli_args())
            .env("LATCHKEY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let up =
            eventually(Duration::from_secs(20), || async { http.get(format!("{base}/healthz")).send().await.is_ok() });
        assert!(up.await, "the server did not start");
        Self { child, base, master_key }
    }

    pub async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .header("X-API-Key", &self.master_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.unwrap()
    }

    /// SIGKILL, then a new process on the same database.
    pub async fn kill_and_restart(mut self, database: &Database) -> Self {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        Self::serve(database, std::mem::take(&mut self.master_key)).await
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn no_event_body_holds_a_key_value_or_a_hash() {
    let app = spawn_app_for_webhooks(false).await;
    let receiver = Receiver::start(&[]).await;
    register(&app, &receiver.url, json!({})).await;
    let site = app.create_site("Secrets").await;
    let (id, key) = app.create_key("admin", Some(&site)).await;
    let (_, rotated) = app.post(&format!("/api/v1/keys/{id}/rotate"), &app.master_key, json!({})).await;
    let keys = [key, rotated["key"].as_str().unwrap().to_owned(), app.master_key.clone()];
    let deliveries = receiver.wait_for(4).await;
    let (_, feed) = app.get("/api/v1/events?wait=0", &app.master_key).await;
    let everything = format!("{feed} {}", deliveries.iter().map(|d| d.body.clone()).collect::<Vec<_>>().join(" "));
    for key in &keys {
        use sha2::Digest;
        let hash: String = sha2::Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        assert!(!everything.contains(key.as_str()) && !everything.contains(&hash));
    }
    assert!(!everything.contains("\"hash\""));
}
