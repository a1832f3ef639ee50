//! Every error is `{"error": {"code", "message"}}` with the right status.

use crate::helpers::{assert_error, error_code, spawn_app, spawn_app_with_sites};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn bad_bodies_get_the_documented_status_and_code() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let url = format!("{}/api/v1/keys", app.address);
    let raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(&url)
            .header("X-API-Key", &app.master_key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = raw("{not json", "application/json").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&response.json().await.unwrap()), "malformed_json");
    let response = raw("name=x", "application/x-www-form-urlencoded").await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_code(&response.json().await.unwrap()), "unsupported_media_type");
    let huge = json!({ "name": "x".repeat(70 * 1024), "permission": "read", "site_id": site });
    assert_error(app.post("/api/v1/keys", &app.master_key, huge).await, 413, "payload_too_large");

    let invalid = [
        json!({ "name": "x", "permission": "read", "site_id": site, "colour": "red" }),
        json!({ "name": "", "permission": "read", "site_id": site }),
        json!({ "name": "x".repeat(101), "permission": "read", "site_id": site }),
        json!({ "name": "x", "permission": "owner", "site_id": site }),
        json!({ "name": "x", "permission": "read", "site_id": site, "scopes": ["Flows:Execute"] }),
        json!({ "name": "x", "permission": "read", "site_id": site, "expires_at": "2001-01-01T00:00:00Z" }),
        json!({ "name": "x", "permission": "read", "site_id": site, "expires_at": "tomorrow" }),
        json!({ "name": "x", "permission": "read" }),
        json!({ "name": "x", "permission": "master", "site_id": site }),
        json!({ "name": 5, "permission": "read", "site_id": site }),
    ];
    for body in invalid {
        let (status, answer) = app.post("/api/v1/keys", &app.master_key, body.clone()).await;
        assert_eq!((status.as_u16(), error_code(&answer)), (422, "validation_failed"), "{body} → {answer}");
    }
    let name_100 = json!({ "name": "é".repeat(100), "permission": "read", "site_id": site });
    assert_eq!(app.post("/api/v1/keys", &app.master_key, name_100).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn bad_keys_get_401_with_a_code_that_says_why() {
    let app = spawn_app().await;
    assert_error(app.call(Method::GET, "/api/v1/sites", None, None).await, 401, "missing_api_key");
    let mut typo = app.master_key.clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let random = latchkey_core::KeyFormat::default().generate();
    for wrong in ["nonsense", typo.as_str(), random.expose()] {
        let (status, body) = app.get("/api/v1/sites", wrong).await;
        assert_eq!((status.as_u16(), error_code(&body)), (401, "invalid_api_key"));
        assert!(!body.to_string().contains(wrong), "the presented key was echoed");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = spawn_app().await;
    assert_error(app.get("/api/v1/nope", &app.master_key).await, 404, "not_found");
    assert_error(app.call(Method::PUT, "/api/v1/sites", Some(&app.master_key), None).await, 405, "method_not_allowed");
    assert_error(app.get("/api/v1/keys?limit=nope", &app.master_key).await, 400, "invalid_query");
    assert_error(app.get("/api/v1/keys/key_doesnotexist", &app.master_key).await, 404, "not_found");
}

#[tokio::test]
async fn errors_that_axum_writes_as_text_reach_the_client_as_json() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, _) = app.create_key("read", Some(&site)).await;
    let not_utf8 = app.call(Method::GET, "/api/v1/keys/%FF%FE", Some(&app.master_key), None).await;
    assert_eq!((not_utf8.0.as_u16(), error_code(&not_utf8.1)), (400, "bad_request"), "{}", not_utf8.1);
    let huge_rotate = app
        .client
        .post(format!("{}/api/v1/keys/{id}/rotate", app.address))
        .header("X-API-Key", &app.master_key)
        .header("content-type", "application/json")
        .body(format!("{{\"grace_seconds\": 1, \"pad\": \"{}\"}}", "x".repeat(70 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(huge_rotate.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(huge_rotate.headers()["content-type"], "application/json");
    assert_eq!(error_code(&huge_rotate.json().await.unwrap()), "payload_too_large");
}

#[tokio::test]
async fn names_with_text_direction_or_invisible_characters_are_refused() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    for sneaky in ["deploy\u{202E}gpj.exe", "ci\u{200B}deploy"] {
        let body = json!({ "name": sneaky, "permission": "read", "site_id": site });
        let (status, answer) = app.post("/api/v1/keys", &app.master_key, body).await;
        assert_eq!((status.as_u16(), error_code(&answer)), (422, "validation_failed"), "{sneaky:?}");
        let (status, answer) = app.post("/api/v1/sites", &app.master_key, json!({ "name": sneaky })).await;
        assert_eq!((status.as_u16(), error_code(&answer)), (422, "validation_failed"), "{sneaky:?}");
    }
}

#[tokio::test]
async fn every_response_says_nosniff_and_pages_cannot_be_framed() {
    let app = spawn_app().await;
    let api = app.client.get(format!("{}/api/v1/sites", app.address)).send().await.unwrap();
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    let page = app.client.get(format!("{}/login", app.address)).send().await.unwrap();
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
}
