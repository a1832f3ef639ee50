//! A real Caddy (Debian's `caddy`) with `forward_auth`, running the shipped
//! docs/integrations/Caddyfile, and the headers Traefik's forwardAuth sends, sent
//! directly: forged methods, addresses and identity headers change nothing.

use crate::helpers::{error_code, start_and_wait, ChildProcess, TestApp};
use crate::nginx::{
    allowed_only_from_ten, assert_identity_is_latchkeys, behind_a_proxy_with_a_limited_key, free_port,
    spawn_app_behind_a_proxy, start_upstream, FORGED_IDENTITY,
};
use reqwest::Method;
use serde_json::Value;
use std::process::Command;

fn caddy_binary() -> &'static str {
    let path = "/usr/bin/caddy";
    assert!(
        std::path::Path::new(path).exists(),
        "caddy is not installed: this test needs a real Caddy (apt-get install caddy); scripts/install-test-deps installs it"
    );
    path
}

/// Starts the shipped Caddyfile in front of `app` and a recording upstream.
async fn caddy_in_front_of(
    app: &TestApp,
    site: &str,
) -> (ChildProcess, String, std::sync::Arc<std::sync::Mutex<Option<axum::http::HeaderMap>>>, tempfile::TempDir) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let upstream = start_upstream(seen.clone()).await;
    let port = free_port();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/integrations/Caddyfile")).unwrap();
    let site_block = shipped
        .replace(":8000", &format!("http://127.0.0.1:{port}"))
        .replace("127.0.0.1:8080", app.address.trim_start_matches("http://"))
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{upstream}"))
        .replace("SITE_ID", site);
    // No admin endpoint (tests run in parallel) and no certificates.
    let config = format!("{{\n\tadmin off\n\tauto_https off\n}}\n{site_block}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(caddy_binary());
    command.args(["run", "--adapter", "caddyfile", "--config"]).arg(&path);
    for home in ["HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"] {
        command.env(home, dir.path());
    }
    let url = format!("http://127.0.0.1:{port}/content");
    let caddy = start_and_wait(command, &url, "caddy").await;
    (caddy, url, seen, dir)
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn through_caddy_keys_are_checked_and_forged_headers_change_nothing() {
    let app = spawn_app_behind_a_proxy().await;
    let site = app.create_site("protected").await;
    let (read_id, read) = app.create_key("read", Some(&site)).await;
    let (write_id, write) = app.create_key("write", Some(&site)).await;
    let (_, ten) = app.create_key_from(allowed_only_from_ten(&site)).await;
    let (_caddy, url, seen, _dir) = caddy_in_front_of(&app, &site).await;
    let client = reqwest::Client::new();
    let call = |method: Method, key: &str, extra: &[(&str, &str)]| {
        let mut request = client.request(method, &url).header("X-API-Key", key);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        request.send()
    };

    assert_eq!(call(Method::GET, &read, &[]).await.unwrap().status(), 200);
    assert_eq!(call(Method::POST, &write, &[]).await.unwrap().status(), 200);
    for header in ["X-Original-Method", "X-Forwarded-Method"] {
        let (status, body) = answer(call(Method::POST, &read, &[(header, "GET")]).await.unwrap()).await;
        assert_eq!((status, error_code(&body)), (403, "insufficient_permission"), "forged {header}: {body}");
    }
    let (status, body) = answer(call(Method::GET, &ten, &[("X-Forwarded-For", "10.1.2.3")]).await.unwrap()).await;
    assert_eq!((status, error_code(&body)), (401, "ip_not_allowed"), "a forged address");
    assert_eq!(call(Method::GET, &read, &FORGED_IDENTITY).await.unwrap().status(), 200);
    let headers = seen.lock().unwrap().clone().expect("the upstream saw the request");
    assert_identity_is_latchkeys(&headers, &read_id, &site);
    assert!(headers.get("x-api-key").is_none(), "the key reached the upstream");

    app.block(&write_id).await;
    let (status, body) = answer(call(Method::POST, &write, &[]).await.unwrap()).await;
    assert_eq!((status, error_code(&body)), (401, "key_blocked"), "blocked at once, JSON kept");
}

#[tokio::test]
async fn through_caddy_a_rate_limit_is_a_429_with_retry_after() {
    let (app, site, limited) = behind_a_proxy_with_a_limited_key().await;
    let (_caddy, url, _seen, _dir) = caddy_in_front_of(&app, &site).await;
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).header("X-API-Key", &limited).send().await.unwrap().status(), 200);
    let over = client.get(&url).header("X-API-Key", &limited).send().await.unwrap();
    let retry_after = over.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = answer(over).await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"));
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok()), "Retry-After is passed on");
}

/// Traefik's forwardAuth sends the client's headers plus its own X-Forwarded-Method,
/// X-Forwarded-Proto, -Host, -Uri and -For (trustForwardHeader: false replaces the client's
/// X-Forwarded-*, but not X-Original-Method). The shipped traefik.yml asks Latchkey to read
/// X-Forwarded-Method only.
#[tokio::test]
async fn traefiks_header_set_cannot_smuggle_a_read_method() {
    let app = spawn_app_behind_a_proxy().await;
    let site = app.create_site("protected").await;
    let (_, read) = app.create_key("read", Some(&site)).await;
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/integrations/traefik.yml")).unwrap();
    let address = shipped.split("address: \"").nth(1).unwrap().split('"').next().unwrap();
    let path = address.trim_start_matches("http://127.0.0.1:8080").replace("SITE_ID", &site);
    let as_traefik = |method: &str, client_claims: Option<&str>| {
        let mut request = app
            .client
            .get(format!("{}{}", app.address, path))
            .header("X-API-Key", &read)
            .header("X-Forwarded-Method", method)
            .header("X-Forwarded-Proto", "http")
            .header("X-Forwarded-Host", "api.example.com")
            .header("X-Forwarded-Uri", "/content")
            .header("X-Forwarded-For", "127.0.0.1");
        if let Some(claim) = client_claims {
            request = request.header("X-Original-Method", claim);
        }
        request.send()
    };
    assert_eq!(as_traefik("GET", None).await.unwrap().status(), 204);
    let (status, body) = answer(as_traefik("POST", Some("GET")).await.unwrap()).await;
    assert_eq!((status, error_code(&body)), (403, "insufficient_permission"));
    let (status, body) = answer(as_traefik("get", None).await.unwrap()).await;
    assert_eq!((status, error_code(&body)), (403, "insufficient_permission"), "method names are case-sensitive");
}

#[tokio::test]
async fn without_method_header_disagreeing_method_headers_are_refused() {
    let app = spawn_app_behind_a_proxy().await;
    let site = app.create_site("protected").await;
    let (_, read) = app.create_key("read", Some(&site)).await;
    let auth = |original: &str, forwarded: &str| {
        app.client
            .get(format!("{}/api/v1/auth", app.address))
            .header("X-API-Key", &read)
            .header("X-Original-Method", original)
            .header("X-Forwarded-Method", forwarded)
            .send()
    };
    let (status, body) = answer(auth("GET", "POST").await.unwrap()).await;
    assert_eq!((status, error_code(&body)), (400, "conflicting_method"));
    assert_eq!(auth("GET", "GET").await.unwrap().status(), 204);
}
