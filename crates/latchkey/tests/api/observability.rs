//! What operators see: `/metrics` moves by exactly what the traffic did, and every answer
//! carries a request id that the access log line also holds.

use crate::helpers::{spawn_app, spawn_app_with_sites};
use reqwest::StatusCode;
use serde_json::json;

/// The value of one sample, e.g. `latchkey_verifications_total{result="valid"}`.
fn sample(exposition: &str, series: &str) -> f64 {
    find_sample(exposition, series).unwrap_or_else(|| panic!("{series} is not in the metrics:\n{exposition}"))
}

fn find_sample(exposition: &str, series: &str) -> Option<f64> {
    let value = exposition.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')));
    value.map(|value| value.parse().unwrap())
}

async fn scrape(app: &crate::helpers::TestApp) -> String {
    let response = reqwest::get(format!("{}/metrics", app.address)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_each_verification_by_outcome_and_each_request_by_route() {
    let (app, [site]) = spawn_app_with_sites(["s"]).await;
    let (blocked_id, blocked_key) = app.create_key("read", Some(&site)).await;
    app.block(&blocked_id).await;
    let before = scrape(&app).await;

    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/whoami", &app.master_key).await.0, StatusCode::OK);
    }
    for _ in 0..2 {
        let (status, body) =
            app.call(reqwest::Method::POST, "/api/v1/verify", None, Some(json!({"key": "lk_unknown"}))).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::OK, Some("invalid_api_key")));
    }
    let forward_auth = app.client.get(format!("{}/api/v1/auth", app.address)).header("X-API-Key", &blocked_key);
    assert_eq!(forward_auth.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    let after = scrape(&app).await;
    // A route first seen after `before` has no series there yet: it started from zero.
    let moved = |series: &str| sample(&after, series) - find_sample(&before, series).unwrap_or(0.0);
    assert_eq!(moved(r#"latchkey_verifications_total{result="valid"}"#), 3.0);
    assert_eq!(moved(r#"latchkey_verifications_total{result="invalid_api_key"}"#), 2.0);
    assert_eq!(moved(r#"latchkey_verifications_total{result="key_blocked"}"#), 1.0);
    assert_eq!(moved(r#"latchkey_verifications_total{result="insufficient_permission"}"#), 0.0);
    assert_eq!(moved(r#"latchkey_http_request_duration_seconds_count{route="/api/v1/whoami",status="2xx"}"#), 3.0);
    assert_eq!(moved(r#"latchkey_http_request_duration_seconds_count{route="/api/v1/auth",status="4xx"}"#), 1.0);
    // The cache answered the Master key's three checks without the store.
    assert!(moved("latchkey_cache_hits_total") >= 3.0, "{after}");
    // The Master key at least. The blocked key was cached by the forward-auth check too, but
    // on PostgreSQL the block's own notification may arrive after that and evict it again.
    assert!(sample(&after, "latchkey_cache_entries") >= 1.0, "{after}");
    assert!(sample(&after, "latchkey_flush_lag_seconds") < 60.0);
}

#[tokio::test]
async fn a_plausible_request_id_is_kept_and_any_other_is_replaced_by_a_fresh_one() {
    let app = spawn_app().await;
    let request_id = |sent: Option<&'static str>| {
        let mut request = app.client.get(format!("{}/healthz", app.address));
        if let Some(id) = sent {
            request = request.header("X-Request-Id", id);
        }
        async move { request.send().await.unwrap().headers()["x-request-id"].to_str().unwrap().to_owned() }
    };
    assert_eq!(request_id(Some("proxy-4bf92f3577b34da6")).await, "proxy-4bf92f3577b34da6");
    let forged = request_id(Some("x\" level=error msg=\"forged")).await;
    assert!(forged.len() == 16 && forged.bytes().all(|b| b.is_ascii_hexdigit()), "{forged}");
    let (first, second) = (request_id(None).await, request_id(None).await);
    assert_ne!(first, second);
}
