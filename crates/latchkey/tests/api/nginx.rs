//! A real nginx with `auth_request` in front of a tiny upstream, using the shipped
//! docs/integrations/nginx.conf. Requires the `nginx` binary (`.ci/run` installs it).

use crate::helpers::{error_code, eventually, spawn_app_with, Options, TestApp};
use crate::nginx_process::{start_nginx, Nginx};
use axum::http::HeaderMap;
use latchkey_server::ServerConfig;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The upstream API: remembers the headers of the last request it received.
pub async fn start_upstream(seen: Arc<Mutex<Option<HeaderMap>>>) -> u16 {
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let seen = seen.clone();
        async move {
            *seen.lock().unwrap() = Some(headers);
            "upstream ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// The shipped nginx.conf, running in front of `app` (trusting nginx's X-Forwarded-For)
/// and a recording upstream; returns nginx, the URL of the protected API and what the
/// upstream saw last.
async fn nginx_in_front_of(
    app: &TestApp,
    site: &str,
) -> (Nginx, String, Arc<Mutex<Option<HeaderMap>>>, tempfile::TempDir) {
    let seen = Arc::new(Mutex::new(None));
    let upstream = start_upstream(seen.clone()).await;
    let proxy_port = free_port();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/integrations/nginx.conf")).unwrap();
    let latchkey_address = app.address.trim_start_matches("http://");
    let server_block = shipped
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{proxy_port}"))
        .replace("127.0.0.1:8080", latchkey_address)
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{upstream}"))
        .replace("SITE_ID", site);
    let dir = tempfile::tempdir().unwrap();
    let nginx = start_nginx(dir.path(), &server_block);
    let url = format!("http://127.0.0.1:{proxy_port}/content");
    let client = reqwest::Client::new();
    let up = eventually(Duration::from_secs(10), || async { client.get(&url).send().await.is_ok() }).await;
    assert!(up, "nginx did not start; see its error output above");
    (nginx, url, seen, dir)
}

/// Forged values of every identity header a proxy passes upstream.
pub const FORGED_IDENTITY: [(&str, &str); 5] = [
    ("X-Latchkey-Key-Id", "key_01FORGED0000000000000000"),
    ("X-Latchkey-Site", "site_01FORGED000000000000000"),
    ("X-Latchkey-Permission", "master"),
    ("X-Latchkey-Scopes", "admin:everything"),
    ("X-Latchkey-Owner", "someone-else"),
];

/// The upstream saw Latchkey's identity headers for this Read key of `site`, none forged.
pub fn assert_identity_is_latchkeys(headers: &HeaderMap, key_id: &str, site: &str) {
    assert_eq!(headers["x-latchkey-key-id"], key_id, "{headers:?}");
    assert_eq!(headers["x-latchkey-site"], site, "{headers:?}");
    assert_eq!(headers["x-latchkey-permission"], "read", "{headers:?}");
    assert!(headers.get("x-latchkey-scopes").is_none_or(|v| v.is_empty()), "forged scopes: {headers:?}");
    assert!(headers.get("x-latchkey-owner").is_none_or(|v| v.is_empty()), "forged owner: {headers:?}");
}

/// A Write key usable only from 10.0.0.0/8, which the tests' clients are not in.
pub fn allowed_only_from_ten(site: &str) -> Value {
    json!({ "name": "ten", "permission": "write", "site_id": site, "ip_allowlist": ["10.0.0.0/8"] })
}

/// A Read key allowed one request a minute.
pub fn one_a_minute(site: &str) -> Value {
    json!({ "name": "one a minute", "permission": "read", "site_id": site, "ratelimit": { "limit": 1, "window_seconds": 60 } })
}

/// Latchkey behind a proxy, a site, and a key of it allowed one request a minute.
pub async fn behind_a_proxy_with_a_limited_key() -> (TestApp, String, String) {
    let app = spawn_app_behind_a_proxy().await;
    let site = app.create_site("protected").await;
    let (_, limited) = app.create_key_from(one_a_minute(&site)).await;
    (app, site, limited)
}

/// Latchkey as the shipped configs expect it: trusting the proxy on 127.0.0.1.
pub async fn spawn_app_behind_a_proxy() -> TestApp {
    let config = ServerConfig { trusted_proxies: "127.0.0.1".parse().unwrap(), ..ServerConfig::default() };
    spawn_app_with(Options { config, ..Options::default() }).await
}

#[tokio::test]
async fn nginx_lets_through_only_what_the_key_allows() {
    let app = spawn_app_behind_a_proxy().await;
    let site = app.create_site("protected").await;
    let other_site = app.create_site("elsewhere").await;
    let (_, read) = app.create_key("read", Some(&site)).await;
    let (write_id, write) = app.create_key("write", Some(&site)).await;
    let (_, foreign) = app.create_key("write", Some(&other_site)).await;
    let (_nginx, url, seen, _dir) = nginx_in_front_of(&app, &site).await;
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, key: Option<&str>| {
        let mut request = client.request(method, &url);
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        request.send()
    };
    assert_eq!(call(reqwest::Method::GET, None).await.unwrap().status(), 401);
    assert_eq!(call(reqwest::Method::GET, Some("lk_garbage")).await.unwrap().status(), 401);
    assert_eq!(call(reqwest::Method::GET, Some(&read)).await.unwrap().status(), 200);
    assert_eq!(call(reqwest::Method::POST, Some(&read)).await.unwrap().status(), 403);
    assert_eq!(call(reqwest::Method::GET, Some(&foreign)).await.unwrap().status(), 403);
    let response = call(reqwest::Method::POST, Some(&write)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "upstream ok");

    let headers = seen.lock().unwrap().clone().expect("the upstream saw the request");
    assert_eq!(headers["x-latchkey-key-id"], write_id.as_str());
    assert_eq!(headers["x-latchkey-permission"], "write");
    assert!(headers.get("x-api-key").is_none(), "the key reached the upstream");
    assert!(!format!("{headers:?}").contains(&write), "the key reached the upstream");

    app.block(&write_id).await;
    assert_eq!(call(reqwest::Method::POST, Some(&write)).await.unwrap().status(), 401, "blocked at once");
}

async fn json_answer(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).expect("a JSON body");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    (status, retry_after.unwrap_or_default(), body)
}

#[tokio::test]
async fn through_nginx_forged_headers_change_nothing() {
    let app = spawn_app_behind_a_proxy().await;
    let site = app.create_site("protected").await;
    let (read_id, read) = app.create_key("read", Some(&site)).await;
    let (_, ten) = app.create_key_from(allowed_only_from_ten(&site)).await;
    let (_nginx, url, seen, _dir) = nginx_in_front_of(&app, &site).await;
    let client = reqwest::Client::new();

    // A Read key cannot pass a POST by claiming the method was GET, in either header.
    for header in ["X-Original-Method", "X-Forwarded-Method"] {
        let forged = client.post(&url).header("X-API-Key", &read).header(header, "GET").send().await.unwrap();
        let (status, _, body) = json_answer(forged).await;
        assert_eq!((status, error_code(&body)), (403, "insufficient_permission"), "forged {header}");
    }
    // A client outside 10.0.0.0/8 cannot claim to be inside it.
    let forged = client.get(&url).header("X-API-Key", &ten).header("X-Forwarded-For", "10.1.2.3").send().await.unwrap();
    let (status, _, body) = json_answer(forged).await;
    assert_eq!((status, error_code(&body)), (401, "ip_not_allowed"));
    // No identity header reaches the upstream unless Latchkey set it.
    let mut forged_identity = client.get(&url).header("X-API-Key", &read);
    for (name, value) in FORGED_IDENTITY {
        forged_identity = forged_identity.header(name, value);
    }
    assert_eq!(forged_identity.send().await.unwrap().status(), 200);
    let headers = seen.lock().unwrap().clone().expect("the upstream saw the request");
    assert_identity_is_latchkeys(&headers, &read_id, &site);
}

#[tokio::test]
async fn through_nginx_refusals_keep_their_json_and_limits_are_a_real_429() {
    let (app, site, limited) = behind_a_proxy_with_a_limited_key().await;
    let (_nginx, url, _seen, _dir) = nginx_in_front_of(&app, &site).await;
    let client = reqwest::Client::new();

    let (status, _, body) = json_answer(client.get(&url).send().await.unwrap()).await;
    assert_eq!((status, error_code(&body)), (401, "missing_api_key"));
    let (status, _, body) = json_answer(client.get(&url).header("X-API-Key", "lk_nope").send().await.unwrap()).await;
    assert_eq!((status, error_code(&body)), (401, "invalid_api_key"));
    assert_eq!(client.get(&url).header("X-API-Key", &limited).send().await.unwrap().status(), 200);
    let over = client.get(&url).header("X-API-Key", &limited).send().await.unwrap();
    let (status, retry_after, body) = json_answer(over).await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"));
    let seconds: u64 = retry_after.parse().expect("a Retry-After in seconds");
    assert!((1..=60).contains(&seconds), "Retry-After: {seconds}");
}
