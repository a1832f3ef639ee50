//! Sites: create, read, rename, delete; visibility per key.

use crate::helpers::{assert_error, spawn_app_with_sites};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_master_creates_renames_and_deletes_a_site() {
    let (app, [id]) = spawn_app_with_sites(["Blog"]).await;
    let (status, body) = app
        .call(Method::PATCH, &format!("/api/v1/sites/{id}"), Some(&app.master_key), Some(json!({"name": "News"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "News");
    let (_, listed) = app.get("/api/v1/sites", &app.master_key).await;
    assert_eq!(listed["data"][0]["name"], "News");
    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/sites/{id}"), Some(&app.master_key), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(app.get(&format!("/api/v1/sites/{id}"), &app.master_key).await, 404, "not_found");
}

#[tokio::test]
async fn a_read_key_sees_only_its_own_site_as_in_the_seeds_curl_example() {
    let (app, [own, other]) = spawn_app_with_sites(["own", "other"]).await;
    let (_, read) = app.create_key("read", Some(&own)).await;
    let (status, body) = app.get("/api/v1/sites", &read).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["id"], own.as_str());
    assert_error(app.get(&format!("/api/v1/sites/{other}"), &read).await, 403, "insufficient_permission");
}
