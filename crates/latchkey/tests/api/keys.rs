//! The Forja seed's API Keys page, step by step, over HTTP.

use crate::helpers::{assert_error, error_code, spawn_app, spawn_app_with, spawn_app_with_sites, Options};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn the_full_key_is_shown_once_and_never_again() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    assert!(key.starts_with("lk_"));
    let (_, shown) = app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await;
    assert_eq!(shown["prefix"], &key[..12]);
    assert!(shown.get("key").is_none());
    let places = [
        app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await.1,
        app.get(&format!("/api/v1/keys?site={site}"), &app.master_key).await.1,
        app.get("/api/v1/audit", &app.master_key).await.1,
        app.get("/api/v1/whoami", &key).await.1,
    ];
    for body in places {
        assert!(!body.to_string().contains(&key), "the key leaked into {body}");
    }
}

#[tokio::test]
async fn a_blocked_key_is_refused_at_once_and_works_again_after_unblock() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    assert_eq!(app.get("/api/v1/sites", &key).await.0, StatusCode::OK);
    app.block(&id).await;
    assert_error(app.get("/api/v1/sites", &key).await, 401, "key_blocked");
    let (_, listed) = app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await;
    assert_eq!(listed["status"], "blocked");
    let (status, _) = app.post(&format!("/api/v1/keys/{id}/unblock"), &app.master_key, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/sites", &key).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_deleted_key_is_refused_and_gone() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, key) = app.create_key("write", Some(&site)).await;
    assert_eq!(app.get("/api/v1/whoami", &key).await.0, StatusCode::OK);
    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/keys/{id}"), Some(&app.master_key), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(app.get("/api/v1/whoami", &key).await, 401, "invalid_api_key");
    assert_error(app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await, 404, "not_found");
}

#[tokio::test]
async fn deleting_a_site_stops_its_keys_at_once() {
    let (app, [site]) = spawn_app_with_sites(["doomed"]).await;
    let (_, key) = app.create_key("admin", Some(&site)).await;
    assert_eq!(app.get("/api/v1/keys", &key).await.0, StatusCode::OK);
    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/sites/{site}"), Some(&app.master_key), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(app.get("/api/v1/keys", &key).await, 401, "invalid_api_key");
}

#[tokio::test]
async fn patch_edits_name_permission_scopes_and_expiry_but_never_the_key() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    let path = format!("/api/v1/keys/{id}");
    let change = json!({
        "name": "Astro frontend", "description": "public site", "permission": "write",
        "scopes": ["flows:execute", "logs:view"], "expires_at": "2099-01-01T00:00:00Z"
    });
    let (status, body) = app.call(Method::PATCH, &path, Some(&app.master_key), Some(change)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "Astro frontend");
    assert_eq!(body["permission"], "write");
    assert_eq!(body["scopes"], json!(["flows:execute", "logs:view"]));
    assert_eq!(body["expires_at"], "2099-01-01T00:00:00Z");
    let (_, cleared) = app
        .call(Method::PATCH, &path, Some(&app.master_key), Some(json!({"description": null, "expires_at": null})))
        .await;
    assert_eq!(cleared["description"], serde_json::Value::Null);
    assert_eq!(cleared["expires_at"], serde_json::Value::Null);
    for field in ["key", "prefix", "hash"] {
        let (status, body) =
            app.call(Method::PATCH, &path, Some(&app.master_key), Some(json!({ field: "lk_x" }))).await;
        assert_eq!((status.as_u16(), error_code(&body)), (422, "immutable_field"), "{field}");
    }
    let (_, me) = app.get("/api/v1/whoami", &key).await;
    assert_eq!(me["prefix"], &key[..12], "the same key still works after the edits");
    let (_, audit) = app.get(&format!("/api/v1/audit?key={id}&action=key_updated"), &app.master_key).await;
    let changes = &audit["data"][1]["changes"];
    assert!(changes
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["field"] == "permission" && c["before"] == "read" && c["after"] == "write"));
}

#[tokio::test]
async fn an_expired_key_is_refused_from_its_expiry_second() {
    let app = spawn_app_with(Options { manual_clock: true, ..Options::default() }).await;
    let site = app.create_site("blog").await;
    let expiry = (app.state.clock.now() + chrono::Duration::seconds(60)).to_rfc3339();
    let (status, body) = app
        .post(
            "/api/v1/keys",
            &app.master_key,
            json!({"name": "temp", "permission": "read", "site_id": site, "expires_at": expiry}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    app.advance_clock(chrono::Duration::seconds(59));
    assert_eq!(app.get("/api/v1/whoami", &key).await.0, StatusCode::OK);
    app.advance_clock(chrono::Duration::seconds(1));
    assert_error(app.get("/api/v1/whoami", &key).await, 401, "key_expired");
    let (_, listed) = app.get(&format!("/api/v1/keys?site={site}"), &app.master_key).await;
    assert_eq!(listed["data"][0]["status"], "expired");
}

#[tokio::test]
async fn keys_are_listed_newest_first_with_a_cursor() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.create_key("read", Some(&site)).await.0);
    }
    ids.reverse();
    let (_, first) = app.get(&format!("/api/v1/keys?site={site}&limit=2"), &app.master_key).await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app.get(&format!("/api/v1/keys?site={site}&limit=2&cursor={cursor}"), &app.master_key).await;
    let (_, third) = app
        .get(
            &format!("/api/v1/keys?site={site}&limit=2&cursor={}", second["next_cursor"].as_str().unwrap()),
            &app.master_key,
        )
        .await;
    let seen: Vec<_> = [first, second, third.clone()]
        .iter()
        .flat_map(|page| {
            page["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(seen, ids);
    assert!(third["next_cursor"].is_null());
}

#[tokio::test]
async fn thirty_two_concurrent_creators_never_see_an_error() {
    let (app, [site]) = spawn_app_with_sites(["busy"]).await;
    let creators = (0..32).map(|i| {
        let body = json!({ "name": format!("key {i}"), "permission": "read", "site_id": site });
        app.post("/api/v1/keys", &app.master_key, body)
    });
    for (status, body) in futures::future::join_all(creators).await {
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, listed) = app.get(&format!("/api/v1/keys?site={site}&limit=100"), &app.master_key).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 32);
}

#[tokio::test]
async fn the_authorization_bearer_header_is_accepted_too() {
    let app = spawn_app().await;
    let response =
        app.client.get(format!("{}/api/v1/whoami", app.address)).bearer_auth(&app.master_key).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
