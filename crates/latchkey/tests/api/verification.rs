//! `POST /verify` and `GET /auth`: codes, metadata, instant revocation under load, and
//! throttling of failures.

use crate::helpers::{
    assert_error, error_code, eventually, spawn_app, spawn_app_with, spawn_app_with_sites, Options, TestApp,
};
use latchkey_server::config::TrustedProxies;
use latchkey_server::throttle::ThrottleConfig;
use latchkey_server::ServerConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn verify(app: &TestApp, body: Value) -> Value {
    let (status, answer) = app.call(reqwest::Method::POST, "/api/v1/verify", None, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

async fn scoped_key(app: &TestApp, site: &str, permission: &str, scopes: &[&str]) -> (String, String) {
    let body = json!({ "name": "svc", "permission": permission, "site_id": site, "scopes": scopes });
    let (status, created) = app.post("/api/v1/keys", &app.master_key, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn verify_answers_each_code_with_metadata_only_for_existing_keys() {
    let app = spawn_app_with(Options { manual_clock: true, ..Options::default() }).await;
    let site = app.create_site("a").await;
    let other = app.create_site("b").await;
    let (id, key) = scoped_key(&app, &site, "write", &["flows:execute"]).await;

    let valid =
        verify(&app, json!({ "key": key, "permission": "write", "scopes": ["flows:execute"], "site_id": site })).await;
    assert_eq!((valid["valid"].as_bool(), valid["code"].as_str()), (Some(true), Some("valid")));
    assert_eq!(valid["key_id"], id.as_str());
    assert_eq!(valid["site_id"], site.as_str());
    assert_eq!(valid["permission"], "write");
    assert_eq!(valid["scopes"], json!(["flows:execute"]));
    assert_eq!(valid["name"], "svc");

    let cases = [
        (json!({ "key": key, "permission": "admin" }), "insufficient_permission"),
        (json!({ "key": key, "scopes": ["logs:view"] }), "missing_scope"),
        (json!({ "key": key, "site_id": other }), "wrong_site"),
    ];
    for (body, code) in cases {
        let answer = verify(&app, body).await;
        assert_eq!((answer["valid"].as_bool(), answer["code"].as_str()), (Some(false), Some(code)));
        assert_eq!(answer["key_id"], id.as_str(), "metadata is present for an existing key");
    }
    let mut typo = key.clone().into_bytes();
    typo[20] = if typo[20] == b'x' { b'y' } else { b'x' };
    let unknown = latchkey_core::KeyFormat::default().generate();
    for missing in ["garbage".to_owned(), String::from_utf8(typo).unwrap(), unknown.expose().to_owned()] {
        let answer = verify(&app, json!({ "key": missing })).await;
        assert_eq!(answer, json!({ "valid": false, "code": "invalid_api_key" }));
    }

    let expiring = json!({ "name": "temp", "permission": "read", "site_id": site,
        "expires_at": (app.state.clock.now() + chrono::Duration::seconds(30)).to_rfc3339() });
    let (_, temp) = app.post("/api/v1/keys", &app.master_key, expiring).await;
    app.advance_clock(chrono::Duration::seconds(30));
    assert_eq!(verify(&app, json!({ "key": temp["key"] })).await["code"], "key_expired");
    app.block(&id).await;
    let blocked = verify(&app, json!({ "key": key })).await;
    assert_eq!((blocked["code"].as_str(), blocked["key_id"].as_str()), (Some("key_blocked"), Some(id.as_str())));
}

#[tokio::test]
async fn verify_speaks_the_error_tables_words_and_the_old_ones_on_request() {
    let (app, [site]) = spawn_app_with_sites(["a"]).await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    app.block(&id).await;
    let legacy = |body| app.call(reqwest::Method::POST, "/api/v1/verify?codes=legacy", None, Some(body));
    assert_eq!(verify(&app, json!({ "key": key })).await["code"], "key_blocked");
    assert_eq!(legacy(json!({ "key": key })).await.1["code"], "blocked");
    assert_eq!(legacy(json!({ "key": "garbage" })).await.1["code"], "not_found");
    let (status, api) = app.get("/api/v1/whoami", &key).await;
    assert_eq!((status.as_u16(), api["error"]["code"].as_str()), (401, Some("key_blocked")), "the same word");
    let (status, body) =
        app.call(reqwest::Method::POST, "/api/v1/verify?codes=v9", None, Some(json!({ "key": key }))).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (400, Some("invalid_query")));
}

#[tokio::test]
async fn a_master_key_fits_every_site() {
    let (app, [site]) = spawn_app_with_sites(["a"]).await;
    let answer = verify(&app, json!({ "key": app.master_key, "site_id": site, "permission": "admin" })).await;
    assert_eq!(answer["code"], "valid");
}

#[tokio::test]
async fn verification_counts_as_a_use_of_the_key() {
    let (app, [site]) = spawn_app_with_sites(["a"]).await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    verify(&app, json!({ "key": key })).await;
    let path = format!("/api/v1/keys/{id}");
    let used = eventually(Duration::from_secs(3), || async {
        !app.get(&path, &app.master_key).await.1["last_used_at"].is_null()
    })
    .await;
    assert!(used);
}

#[tokio::test]
async fn verify_rejects_bad_requests_with_json_errors() {
    let app = spawn_app().await;
    assert_error(
        app.call(reqwest::Method::POST, "/api/v1/verify", None, Some(json!({ "kee": "x" }))).await,
        422,
        "validation_failed",
    );
    let (status, body) =
        app.call(reqwest::Method::POST, "/api/v1/verify", None, Some(json!({ "key": "x", "permission": "god" }))).await;
    assert_eq!((status.as_u16(), error_code(&body)), (422, "validation_failed"));
}

async fn auth(app: &TestApp, query: &str, key: Option<&str>, method: &str) -> reqwest::Response {
    let mut request = app.client.get(format!("{}/api/v1/auth{query}", app.address)).header("X-Original-Method", method);
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn forward_auth_derives_the_level_from_the_original_method() {
    let (app, [site]) = spawn_app_with_sites(["a"]).await;
    let (read_id, read) = scoped_key(&app, &site, "read", &["flows:execute"]).await;
    let (_, write) = app.create_key("write", Some(&site)).await;

    let allowed = auth(&app, "", Some(&read), "GET").await;
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    let headers = allowed.headers();
    assert_eq!(headers["x-latchkey-key-id"], read_id.as_str());
    assert_eq!(headers["x-latchkey-site"], site.as_str());
    assert_eq!(headers["x-latchkey-permission"], "read");
    assert_eq!(headers["x-latchkey-scopes"], "flows:execute");
    assert!(!format!("{headers:?}").contains(&read), "the key is never echoed");

    for method in ["HEAD", "OPTIONS"] {
        assert_eq!(auth(&app, "", Some(&read), method).await.status(), StatusCode::NO_CONTENT);
    }
    let refused = auth(&app, "", Some(&read), "POST").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(&refused.json().await.unwrap()), "insufficient_permission");
    assert_eq!(auth(&app, "", Some(&write), "DELETE").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(auth(&app, "?permission=write", Some(&read), "GET").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(auth(&app, "?scope=flows:execute", Some(&read), "GET").await.status(), StatusCode::NO_CONTENT);
    let missing = auth(&app, "?scope=flows:execute&scope=logs:view", Some(&read), "GET").await;
    assert_eq!(error_code(&missing.json().await.unwrap()), "missing_scope");
    let other = app.create_site("b").await;
    let wrong = auth(&app, &format!("?site={other}"), Some(&read), "GET").await;
    assert_eq!((wrong.status().as_u16(), error_code(&wrong.json().await.unwrap())), (403, "wrong_site"));

    let none = auth(&app, "", None, "GET").await;
    assert_eq!((none.status().as_u16(), error_code(&none.json().await.unwrap())), (401, "missing_api_key"));
    let bad = auth(&app, "", Some("lk_nope"), "GET").await;
    assert_eq!((bad.status().as_u16(), error_code(&bad.json().await.unwrap())), (401, "invalid_api_key"));
    let typo = auth(&app, "?colour=red", Some(&read), "GET").await;
    assert_eq!(typo.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn forward_auth_reads_the_forwarded_method_and_bearer_tokens() {
    let (app, [site]) = spawn_app_with_sites(["a"]).await;
    let (_, read) = app.create_key("read", Some(&site)).await;
    let response = app
        .client
        .get(format!("{}/api/v1/auth", app.address))
        .header("X-Forwarded-Method", "PUT")
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

/// Many tasks verify one key in a loop while another task blocks it. Each verification
/// notes whether the block had returned before it started; none of those may succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_verification_that_starts_after_a_block_returns_succeeds() {
    let app = Arc::new(spawn_app().await);
    let site = app.create_site("a").await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    let blocked = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (after_block, violations) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (app, key, blocked, stop) = (app.clone(), key.clone(), blocked.clone(), stop.clone());
            let (after_block, violations) = (after_block.clone(), violations.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let started_after_block = blocked.load(Ordering::SeqCst);
                    let answer = verify(&app, json!({ "key": key })).await;
                    if started_after_block {
                        after_block.fetch_add(1, Ordering::SeqCst);
                        if answer["valid"] == true {
                            violations.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    // Let the load warm the cache before the block.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.block(&id).await;
    blocked.store(true, Ordering::SeqCst);
    let enough = eventually(Duration::from_secs(10), || async { after_block.load(Ordering::SeqCst) >= 500 }).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(enough, "too few verifications after the block to judge");
    assert_eq!(violations.load(Ordering::SeqCst), 0, "a blocked key was accepted after the block returned");
}

fn throttled_config(trust_proxy: &str) -> ServerConfig {
    ServerConfig {
        service: latchkey_service::ServiceConfig {
            failure_throttle: ThrottleConfig { max_failures: 3, window_seconds: 60 },
            ..Default::default()
        },
        trusted_proxies: trust_proxy.parse::<TrustedProxies>().unwrap(),
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn repeated_failures_from_one_address_get_429_but_valid_keys_still_pass() {
    let app = spawn_app_with(Options { config: throttled_config(""), manual_clock: true }).await;
    let bad = latchkey_core::KeyFormat::default().generate();
    for _ in 0..3 {
        assert_eq!(verify(&app, json!({ "key": bad.expose() })).await["code"], "invalid_api_key");
    }
    let response = app
        .client
        .post(format!("{}/api/v1/verify", app.address))
        .json(&json!({ "key": bad.expose() }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(response.headers()["ratelimit-policy"], r#""failures";q=3;w=60"#);
    assert_eq!(response.headers()["ratelimit"].to_str().unwrap(), format!(r#""failures";r=0;t={retry_after}"#));
    assert_eq!(error_code(&response.json().await.unwrap()), "rate_limited");
    assert_eq!(verify(&app, json!({ "key": app.master_key })).await["code"], "valid");
    let forward = auth(&app, "", Some(bad.expose()), "GET").await;
    assert_eq!(forward.status(), StatusCode::TOO_MANY_REQUESTS);
}

async fn fail_from(app: &TestApp, forwarded_for: &str) -> StatusCode {
    let bad = latchkey_core::KeyFormat::default().generate();
    app.client
        .post(format!("{}/api/v1/verify", app.address))
        .header("X-Forwarded-For", forwarded_for)
        .json(&json!({ "key": bad.expose() }))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_spoofed_forwarded_for_is_ignored_unless_the_proxy_is_trusted() {
    let app = spawn_app_with(Options { config: throttled_config(""), manual_clock: true }).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(fail_from(&app, &format!("203.0.113.{i}")).await);
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "all counted against the socket address: {statuses:?}");

    let behind_proxy = spawn_app_with(Options { config: throttled_config("127.0.0.1"), manual_clock: true }).await;
    for i in 0..5 {
        assert_eq!(
            fail_from(&behind_proxy, &format!("203.0.113.{i}")).await,
            StatusCode::OK,
            "each client counted apart"
        );
    }
}

#[tokio::test]
async fn usage_counts_allowed_and_refused_requests_per_day() {
    let (app, [site]) = spawn_app_with_sites(["a"]).await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    for _ in 0..3 {
        assert_eq!(verify(&app, json!({ "key": key })).await["code"], "valid");
    }
    for _ in 0..2 {
        assert_eq!(verify(&app, json!({ "key": key, "permission": "write" })).await["code"], "insufficient_permission");
    }
    let path = format!("/api/v1/keys/{id}/usage");
    let counted = eventually(Duration::from_secs(5), || async {
        let (_, usage) = app.get(&path, &app.master_key).await;
        let today = &usage["days"][29];
        today["allowed"] == 3 && today["refused"] == 2
    })
    .await;
    let (status, usage) = app.get(&path, &app.master_key).await;
    assert!(counted, "{usage}");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(usage["days"].as_array().unwrap().len(), 30);
    assert_eq!(usage["days"][29]["date"], chrono::Utc::now().format("%Y-%m-%d").to_string());
    let (_, week) = app.get(&format!("{path}?days=7"), &app.master_key).await;
    assert_eq!(week["days"].as_array().unwrap().len(), 7);
    assert_error(app.get(&format!("{path}?days=91"), &app.master_key).await, 422, "validation_failed");
}

#[tokio::test]
async fn a_management_call_refused_for_the_keys_level_counts_as_refused() {
    let (app, [site]) = spawn_app_with_sites(["a"]).await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    for _ in 0..2 {
        assert_error(app.get("/api/v1/keys", &key).await, 403, "insufficient_permission");
    }
    assert_eq!(app.get("/api/v1/sites", &key).await.0, StatusCode::OK);
    let path = format!("/api/v1/keys/{id}/usage?days=1");
    let counted = eventually(Duration::from_secs(5), || async {
        let (_, usage) = app.get(&path, &app.master_key).await;
        usage["days"][0]["allowed"] == 1 && usage["days"][0]["refused"] == 2
    })
    .await;
    assert!(counted, "{}", app.get(&path, &app.master_key).await.1);
}
