//! Arbitrary requests against the whole application in process (real routes, real SQLite):
//! every JSON body, query string and dashboard form the fuzzer makes must get an answer
//! that is not a server error, and an API answer must be JSON (or an empty 204).
#![no_main]

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use latchkey_server::state::AppState;
use latchkey_server::{ServerConfig, SystemClock};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    master: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.db");
        let (app, master) = runtime.block_on(async {
            let store = latchkey_sqlite::SqliteStore::open(path.to_str().unwrap()).await.unwrap();
            let state = AppState::new(Arc::new(store), ServerConfig::default(), Arc::new(SystemClock));
            let master = state.service.ensure_bootstrap_key().await.unwrap().unwrap().expose().to_owned();
            (latchkey_server::app(state), master)
        });
        Fixture { runtime, app, master, _dir: dir }
    })
}

/// The first byte picks a route, the rest is the body or the query string.
const ROUTES: [(&str, &str, &str); 9] = [
    ("POST", "/api/v1/keys", "json"),
    ("POST", "/api/v1/sites", "json"),
    ("POST", "/api/v1/verify", "json"),
    ("POST", "/api/v1/leaks", "json"),
    ("GET", "/api/v1/auth?", "query"),
    ("GET", "/api/v1/keys?", "query"),
    ("GET", "/api/v1/audit?", "query"),
    ("POST", "/login", "form"),
    ("POST", "/keys/new", "form"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (method, path, kind) = ROUTES[selector as usize % ROUTES.len()];
    let fixture = fixture();
    let mut request = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap());
    request = request.header("x-api-key", &fixture.master);
    let request = match kind {
        "query" => {
            let Ok(query) = std::str::from_utf8(rest) else { return };
            let Ok(uri) = format!("{path}{query}").parse::<axum::http::Uri>() else { return };
            request.uri(uri).body(Body::empty())
        }
        "json" => request.uri(path).header(header::CONTENT_TYPE, "application/json").body(Body::from(rest.to_vec())),
        _ => request
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(rest.to_vec())),
    }
    .unwrap();
    let response = fixture.runtime.block_on(fixture.app.clone().oneshot(request)).unwrap();
    let status = response.status();
    assert!(!status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE, "{method} {path}: {status}");
    if path.starts_with("/api/") && status != StatusCode::NO_CONTENT {
        let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(content_type.as_deref(), Some("application/json"), "{method} {path}: {status}");
    }
});
