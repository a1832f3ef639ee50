//! Lifecycle beyond create and delete: rotation, leak reports, stale keys, per-key rate
//! limits, usage credits, owners and metadata, IP allowlists. Time is moved with the
//! injectable clock, never slept.

use crate::helpers::{
    assert_error, error_code, eventually, spawn_app, spawn_app_with, spawn_app_with_sites, Options, TestApp,
};
use latchkey_server::config::TrustedProxies;
use latchkey_server::ServerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

fn manual_clock() -> Options {
    Options { manual_clock: true, ..Options::default() }
}

async fn verify(app: &TestApp, body: Value) -> Value {
    let (status, answer) = app.call(Method::POST, "/api/v1/verify", None, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

async fn forward_auth(app: &TestApp, key: &str) -> reqwest::Response {
    app.client.get(format!("{}/api/v1/auth", app.address)).header("X-API-Key", key).send().await.unwrap()
}

async fn create(app: &TestApp, body: Value) -> Value {
    let (status, created) = app.post("/api/v1/keys", &app.master_key, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

async fn rotate(app: &TestApp, id: &str, body: Option<Value>) -> (StatusCode, Value) {
    app.call(Method::POST, &format!("/api/v1/keys/{id}/rotate"), Some(&app.master_key), body).await
}

#[tokio::test]
async fn rotation_without_grace_replaces_the_key_at_once_and_links_both() {
    let app = spawn_app_with(manual_clock()).await;
    let site = app.create_site("s").await;
    let old = create(&app, json!({ "name": "deploy", "permission": "write", "site_id": site, "scopes": ["flows:execute"], "description": "CI" })).await;
    let old_id = old["id"].as_str().unwrap();
    let (status, new) = rotate(&app, old_id, None).await;
    assert_eq!(status, StatusCode::CREATED, "{new}");
    for field in ["name", "permission", "scopes", "description", "site_id"] {
        assert_eq!(new[field], old[field], "{field} is kept");
    }
    assert_ne!(new["key"], old["key"]);
    assert_eq!(new["rotated_from"], old_id);
    assert_eq!(verify(&app, json!({ "key": new["key"] })).await["code"], "valid");
    assert_eq!(verify(&app, json!({ "key": old["key"] })).await["code"], "key_expired");
    assert_error(app.get("/api/v1/whoami", old["key"].as_str().unwrap()).await, 401, "key_expired");
    let (_, shown) = app.get(&format!("/api/v1/keys/{old_id}"), &app.master_key).await;
    assert_eq!(shown["rotated_to"], new["id"]);
    assert_eq!(shown["status"], "expired");
    let (_, audit) = app.get(&format!("/api/v1/audit?key={old_id}&action=key_rotated"), &app.master_key).await;
    let changes = audit["data"][0]["changes"].as_array().unwrap();
    assert!(changes.iter().any(|c| c["field"] == "rotated_to" && c["after"] == new["id"]));
}

#[tokio::test]
async fn rotation_with_grace_keeps_the_old_key_until_the_grace_ends() {
    let app = spawn_app_with(manual_clock()).await;
    let site = app.create_site("s").await;
    let old = create(&app, json!({ "name": "deploy", "permission": "read", "site_id": site })).await;
    let (status, new) = rotate(&app, old["id"].as_str().unwrap(), Some(json!({ "grace_seconds": 3600 }))).await;
    assert_eq!(status, StatusCode::CREATED);
    app.advance_clock(chrono::Duration::seconds(3599));
    assert_eq!(verify(&app, json!({ "key": old["key"] })).await["code"], "valid");
    assert_eq!(verify(&app, json!({ "key": new["key"] })).await["code"], "valid");
    app.advance_clock(chrono::Duration::seconds(1));
    assert_eq!(verify(&app, json!({ "key": old["key"] })).await["code"], "key_expired");
    assert_eq!(verify(&app, json!({ "key": new["key"] })).await["code"], "valid");
    assert_error(
        rotate(&app, old["id"].as_str().unwrap(), Some(json!({ "grace_seconds": 2_592_001 }))).await,
        422,
        "validation_failed",
    );
}

#[tokio::test]
async fn a_blocked_key_cannot_be_rotated() {
    let (app, [site]) = spawn_app_with_sites(["s"]).await;
    let (id, _) = app.create_key("read", Some(&site)).await;
    app.block(&id).await;
    assert_error(rotate(&app, &id, None).await, 409, "conflict");
}

#[tokio::test]
async fn thirty_two_concurrent_verifications_never_spend_below_zero() {
    let (app, [site]) = spawn_app_with_sites(["s"]).await;
    let created = create(
        &app,
        json!({ "name": "metered", "permission": "read", "site_id": site, "credits": { "remaining": 10 } }),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let answers = futures::future::join_all((0..32).map(|_| verify(&app, json!({ "key": key })))).await;
    let valid = answers.iter().filter(|a| a["code"] == "valid").count();
    let exceeded = answers.iter().filter(|a| a["code"] == "usage_exceeded").count();
    assert_eq!((valid, exceeded), (10, 22));
    let mut remaining: Vec<u64> = answers.iter().filter_map(|a| a["remaining"].as_u64()).collect();
    remaining.sort();
    assert_eq!(remaining, (0..10).collect::<Vec<_>>(), "each credit spent exactly once");
    let (_, shown) = app.get(&format!("/api/v1/keys/{}", created["id"].as_str().unwrap()), &app.master_key).await;
    assert_eq!(shown["credits"]["remaining"], 0);
    let expensive = verify(&app, json!({ "key": key, "cost": 0 })).await;
    assert_eq!(expensive["code"], "valid", "a zero-cost check is allowed at zero");
}

#[tokio::test]
async fn credits_refill_at_the_next_period_and_cost_is_honoured() {
    let app = spawn_app_with(manual_clock()).await;
    let site = app.create_site("s").await;
    let created = create(
        &app,
        json!({ "name": "daily", "permission": "read", "site_id": site,
        "credits": { "remaining": 5, "refill": { "interval": "daily", "amount": 5 } } }),
    )
    .await;
    let key = created["key"].clone();
    assert_eq!(verify(&app, json!({ "key": key, "cost": 3 })).await["remaining"], 2);
    assert_eq!(verify(&app, json!({ "key": key, "cost": 3 })).await["code"], "usage_exceeded");
    let forward = forward_auth(&app, key.as_str().unwrap()).await;
    assert_eq!(forward.status(), StatusCode::NO_CONTENT, "1 credit is left for forward-auth");
    app.advance_clock(chrono::Duration::days(1));
    assert_eq!(verify(&app, json!({ "key": key, "cost": 3 })).await["remaining"], 2, "refilled to 5, then 3 spent");
    let path = format!("/api/v1/keys/{}", created["id"].as_str().unwrap());
    let (status, patched) =
        app.call(Method::PATCH, &path, Some(&app.master_key), Some(json!({ "credits": { "remaining": 100 } }))).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(verify(&app, json!({ "key": key })).await["remaining"], 99);
    app.call(Method::PATCH, &path, Some(&app.master_key), Some(json!({ "credits": null }))).await;
    let unlimited = verify(&app, json!({ "key": key, "cost": 1000 })).await;
    assert_eq!((unlimited["code"].as_str(), unlimited.get("remaining")), (Some("valid"), None));
}

#[tokio::test]
async fn keys_carry_an_owner_and_metadata_through_verification_and_listing() {
    let (app, [site]) = spawn_app_with_sites(["s"]).await;
    let mine = create(
        &app,
        json!({ "name": "a", "permission": "read", "site_id": site,
        "owner_id": "customer-7", "metadata": { "plan": "pro", "seats": 3 } }),
    )
    .await;
    create(&app, json!({ "name": "b", "permission": "read", "site_id": site, "owner_id": "customer-8" })).await;
    let (_, listed) = app.get("/api/v1/keys?owner_id=customer-7", &app.master_key).await;
    let ids: Vec<_> = listed["data"].as_array().unwrap().iter().map(|k| k["id"].clone()).collect();
    assert_eq!(ids, [mine["id"].clone()]);
    let answer = verify(&app, json!({ "key": mine["key"] })).await;
    assert_eq!(answer["owner_id"], "customer-7");
    assert_eq!(answer["metadata"], json!({ "plan": "pro", "seats": 3 }));
    let forward = forward_auth(&app, mine["key"].as_str().unwrap()).await;
    assert_eq!(forward.headers()["x-latchkey-owner"], "customer-7");
    let too_big =
        json!({ "name": "c", "permission": "read", "site_id": site, "metadata": { "blob": "x".repeat(5000) } });
    assert_error(app.post("/api/v1/keys", &app.master_key, too_big).await, 422, "validation_failed");
    let not_object = json!({ "name": "c", "permission": "read", "site_id": site, "metadata": [1, 2] });
    assert_error(app.post("/api/v1/keys", &app.master_key, not_object).await, 422, "validation_failed");
    let path = format!("/api/v1/keys/{}", mine["id"].as_str().unwrap());
    app.call(Method::PATCH, &path, Some(&app.master_key), Some(json!({ "owner_id": "customer-9" }))).await;
    let (_, audit) = app
        .get(&format!("/api/v1/audit?key={}&action=key_updated", mine["id"].as_str().unwrap()), &app.master_key)
        .await;
    let change = &audit["data"][0]["changes"][0];
    assert_eq!((change["field"].as_str(), change["after"].as_str()), (Some("owner_id"), Some("customer-9")));
}

async fn report(app: &TestApp, keys: Value) -> (StatusCode, Value) {
    app.call(Method::POST, "/api/v1/leaks", None, Some(json!({ "keys": keys, "source": "https://gist.example/abc" })))
        .await
}

#[tokio::test]
async fn a_leak_report_blocks_only_a_valid_key_and_answers_the_same_for_all() {
    let (app, [site]) = spawn_app_with_sites(["s"]).await;
    let (valid_id, valid) = app.create_key("read", Some(&site)).await;
    let (blocked_id, blocked) = app.create_key("read", Some(&site)).await;
    let (other_id, _) = app.create_key("read", Some(&site)).await;
    app.block(&blocked_id).await;
    let random = latchkey_core::KeyFormat::default().generate();
    let answers = [
        report(&app, json!([valid])).await,
        report(&app, json!([blocked])).await,
        report(&app, json!([random.expose()])).await,
    ];
    for (status, body) in &answers {
        assert_eq!((*status, body), (StatusCode::ACCEPTED, &json!({ "received": 1 })));
    }
    assert_eq!(verify(&app, json!({ "key": valid })).await["code"], "key_blocked");
    let (_, other) = app.get(&format!("/api/v1/keys/{other_id}"), &app.master_key).await;
    assert_eq!(other["status"], "active", "only reported keys are touched");
    let (_, audit) = app.get("/api/v1/audit?action=key_reported_leaked", &app.master_key).await;
    let events = audit["data"].as_array().unwrap();
    assert_eq!(events.len(), 1, "one key was blocked: {audit}");
    assert_eq!(events[0]["target_key_id"], valid_id.as_str());
    assert!(events[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["field"] == "source" && c["after"] == "https://gist.example/abc"));
    assert!(!audit.to_string().contains(&valid), "the audit never holds the key");
}

#[tokio::test]
async fn leak_reports_are_rate_limited_per_address() {
    let app = spawn_app().await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(report(&app, json!(["lk_nothing"])).await.0);
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::ACCEPTED).count(), 10);
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
}

#[tokio::test]
async fn stale_keys_are_listed_by_days_without_use() {
    let app = spawn_app_with(manual_clock()).await;
    let site = app.create_site("s").await;
    let (old_id, old) = app.create_key("read", Some(&site)).await;
    app.advance_clock(chrono::Duration::days(31));
    let (fresh_id, _) = app.create_key("read", Some(&site)).await;
    let stale_ids = || async {
        let (_, listed) = app.get(&format!("/api/v1/keys?site={site}&unused_for_days=30"), &app.master_key).await;
        listed["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(stale_ids().await, [old_id], "never used for 31 days; {fresh_id} is new");
    verify(&app, json!({ "key": old })).await;
    let fresh_again = eventually(Duration::from_secs(5), || async { stale_ids().await.is_empty() }).await;
    assert!(fresh_again, "a use takes the key off the stale list");
    assert_error(app.get("/api/v1/keys?unused_for_days=0", &app.master_key).await, 422, "validation_failed");
}

#[tokio::test]
async fn a_rate_limited_key_is_refused_until_its_window_rolls_over() {
    let app = spawn_app_with(manual_clock()).await;
    let clock = app.clock.clone().unwrap();
    let start = chrono::DateTime::from_timestamp(1_800_000_020, 0).unwrap(); // 20 s into a minute (1_800_000_000 % 60 == 0)
    clock.set(start);
    let site = app.create_site("s").await;
    let created = create(
        &app,
        json!({ "name": "limited", "permission": "read", "site_id": site,
        "ratelimit": { "limit": 2, "window_seconds": 60 } }),
    )
    .await;
    let key = created["key"].as_str().unwrap();
    let first = verify(&app, json!({ "key": key })).await;
    assert_eq!(
        (first["code"].as_str(), &first["ratelimit"]),
        (Some("valid"), &json!({"limit": 2, "remaining": 1, "reset": 40}))
    );
    assert_eq!(verify(&app, json!({ "key": key })).await["ratelimit"]["remaining"], 0);
    let refused = verify(&app, json!({ "key": key })).await;
    assert_eq!(
        (refused["code"].as_str(), &refused["ratelimit"]),
        (Some("rate_limited"), &json!({"limit": 2, "remaining": 0, "reset": 40}))
    );
    let forward = forward_auth(&app, key).await;
    assert_eq!(forward.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(forward.headers()["retry-after"], "40");
    assert_eq!(forward.headers()["ratelimit-policy"], r#""key";q=2;w=60"#);
    assert_eq!(forward.headers()["ratelimit"], r#""key";r=0;t=40"#);
    clock.set(start + chrono::Duration::seconds(39));
    assert_eq!(verify(&app, json!({ "key": key })).await["code"], "rate_limited");
    clock.set(start + chrono::Duration::seconds(40));
    assert_eq!(verify(&app, json!({ "key": key })).await["code"], "valid", "a new window");
}

#[tokio::test]
async fn ip_allowlists_admit_listed_ipv4_and_ipv6_clients_only() {
    let (app, [site]) = spawn_app_with_sites(["s"]).await;
    let created = create(
        &app,
        json!({ "name": "internal", "permission": "read", "site_id": site,
        "ip_allowlist": ["10.0.0.0/8", "::1/128"] }),
    )
    .await;
    let key = created["key"].clone();
    for (ip, code) in
        [("10.1.2.3", "valid"), ("192.168.1.1", "ip_not_allowed"), ("::1", "valid"), ("::2", "ip_not_allowed")]
    {
        assert_eq!(verify(&app, json!({ "key": key, "ip": ip })).await["code"], code, "{ip}");
    }
    assert_eq!(
        verify(&app, json!({ "key": key })).await["code"],
        "ip_not_allowed",
        "the caller 127.0.0.1 is not listed"
    );
    let bad = json!({ "name": "x", "permission": "read", "site_id": site, "ip_allowlist": ["10.0.0.0/33"] });
    assert_error(app.post("/api/v1/keys", &app.master_key, bad).await, 422, "validation_failed");
    let forward = forward_auth(&app, key.as_str().unwrap()).await;
    assert_eq!(forward.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&forward.json().await.unwrap()), "ip_not_allowed");
}

async fn allowlisted_admin(app: &TestApp, networks: &[&str]) -> String {
    let site = app.create_site("s").await;
    create(app, json!({ "name": "admin", "permission": "admin", "site_id": site, "ip_allowlist": networks })).await
        ["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn whoami_from(app: &TestApp, key: &str, forwarded_for: &str) -> (u16, Value) {
    let response = app
        .client
        .get(format!("{}/api/v1/whoami", app.address))
        .header("X-API-Key", key)
        .header("X-Forwarded-For", forwarded_for)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_spoofed_forwarded_for_cannot_pass_an_allowlist_without_trust_proxy() {
    let app = spawn_app().await;
    let key = allowlisted_admin(&app, &["203.0.113.0/24"]).await;
    let (status, body) = whoami_from(&app, &key, "203.0.113.5").await;
    assert_eq!((status, error_code(&body)), (401, "ip_not_allowed"));
    let local = allowlisted_admin(&app, &["127.0.0.1/32"]).await;
    assert_eq!(whoami_from(&app, &local, "203.0.113.5").await.0, 200);

    let config =
        ServerConfig { trusted_proxies: "127.0.0.1".parse::<TrustedProxies>().unwrap(), ..ServerConfig::default() };
    let behind_proxy = spawn_app_with(Options { config, ..Options::default() }).await;
    let key = allowlisted_admin(&behind_proxy, &["203.0.113.0/24"]).await;
    assert_eq!(whoami_from(&behind_proxy, &key, "203.0.113.5").await.0, 200, "the trusted proxy's header counts");
}

#[tokio::test]
async fn a_leaked_last_master_is_blocked_and_healthz_says_so_until_bootstrap() {
    let app = crate::helpers::spawn_app().await;
    let health = || async {
        app.client.get(format!("{}/healthz", app.address)).send().await.unwrap().json::<Value>().await.unwrap()
    };
    assert_eq!(health().await, json!({ "status": "ok", "limits": "memory" }));
    let report = json!({ "keys": [app.master_key], "source": "https://example.com/paste" });
    let (status, _) = app.call(reqwest::Method::POST, "/api/v1/leaks", None, Some(report)).await;
    assert_eq!(status.as_u16(), 202);
    assert_eq!(app.get("/api/v1/whoami", &app.master_key).await.0.as_u16(), 401, "blocked, security first");
    let degraded = health().await;
    assert_eq!(degraded["status"], "degraded");
    assert!(degraded["warnings"][0].as_str().unwrap().contains("latchkey bootstrap"), "{degraded}");
    // The operator's way back: `latchkey bootstrap`, another process on the same database.
    let bootstrap = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("bootstrap")
        .args(app.database.cli_args())
        .output()
        .unwrap();
    assert!(bootstrap.status.success(), "{}", String::from_utf8_lossy(&bootstrap.stderr));
    let fresh = String::from_utf8(bootstrap.stdout).unwrap().trim().to_owned();
    assert_eq!(app.get("/api/v1/whoami", &fresh).await.0.as_u16(), 200);
    let cleared = eventually(Duration::from_secs(5), || async {
        health().await == json!({ "status": "ok", "limits": "memory" })
    })
    .await;
    assert!(cleared, "a new Master key clears the warning");
}
