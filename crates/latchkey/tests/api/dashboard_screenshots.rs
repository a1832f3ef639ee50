//! The screenshots in `docs/screenshots/`: every dashboard page at 1280 and 390 px wide,
//! on a small made-up deployment with two weeks of traffic. Ignored in the normal run;
//! `scripts/screenshots` runs it (`cargo test -p latchkey --test api dashboard_screenshots
//! -- --ignored`), and a person looks at the pictures before they are committed.

use crate::browser::{start_browser, Browser};
use crate::helpers::{spawn_app_with, Options, TestApp};
use serde_json::json;
use std::path::PathBuf;

fn docs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
}

/// Both widths of the page the browser is on: `NAME.png` and `NAME-phone.png`.
async fn both_widths(browser: &Browser, name: &str) {
    browser.set_viewport(1280, 900).await;
    browser.screenshot_into(&docs_dir(), name).await;
    browser.set_viewport(390, 844).await;
    browser.screenshot_into(&docs_dir(), &format!("{name}-phone")).await;
    browser.set_viewport(1280, 900).await;
}

/// Requests made with `key` on the API: `allowed` that pass, `refused` that its level may
/// not make (a Read key listing keys).
async fn traffic(app: &TestApp, key: &str, allowed: usize, refused: usize) {
    for _ in 0..allowed {
        app.get("/api/v1/sites", key).await;
    }
    for _ in 0..refused {
        app.get("/api/v1/keys", key).await;
    }
}

#[tokio::test]
#[ignore = "writes docs/screenshots; run by scripts/screenshots"]
async fn screenshots_of_every_dashboard_page_at_desktop_and_phone_width() {
    let app = spawn_app_with(Options { manual_clock: true, ..Default::default() }).await;
    let _app_site = app.create_site("Forja app").await;
    let blog = app.create_site("Forja blog").await;
    let key = |name: &str, permission: &str, extra: serde_json::Value| {
        let mut body = json!({ "name": name, "permission": permission, "site_id": blog });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        app.create_key_from(body)
    };
    let (frontend_id, frontend) = key(
        "Astro blog frontend",
        "read",
        json!({
            "description": "Server-side rendering of the public blog",
            "scopes": ["posts:read", "comments:read"], "owner_id": "team-web"
        }),
    )
    .await;
    let (_, ci) = key("CI deploy", "write", json!({ "scopes": ["deploys:write"] })).await;
    key("Blog admin", "admin", json!({})).await;
    let (old_id, _) = key("Old webhook", "read", json!({})).await;
    app.block(&old_id).await;
    let (indexer_id, _) = key("Search indexer", "read", json!({})).await;
    // Two weeks of made-up traffic, different each day, a few refusals among it.
    for day in 0..14usize {
        let refused = if day % 4 == 1 { 2 } else { 0 };
        traffic(&app, &frontend, (day * 7) % 23 + 3, refused).await;
        traffic(&app, &ci, if day.is_multiple_of(3) { 2 } else { 0 }, 0).await;
        app.state.service.write_bookkeeping().await.unwrap();
        app.advance_clock(chrono::Duration::days(1));
    }
    let rotate = json!({ "grace_seconds": 86_400 });
    app.post(&format!("/api/v1/keys/{indexer_id}/rotate"), &app.master_key, rotate).await;

    let browser = start_browser().await;
    browser.open(&app, "/login").await;
    both_widths(&browser, "sign-in").await;
    browser.sign_in(&app, &app.master_key).await;
    browser.open(&app, &format!("/keys?site={blog}")).await;
    browser.expect_text("Astro blog frontend").await;
    both_widths(&browser, "keys").await;

    browser.click_button("New API Key").await;
    browser.fill("#name", "Flows runner").await;
    browser.fill("#scopes", "Flows").await;
    browser.click_button("Create key").await;
    browser.expect_text("is not a scope").await;
    both_widths(&browser, "new-key").await;
    browser.fill("#scopes", "flows:execute").await;
    browser.click_button("Create key").await;
    browser.expect_text("Copy this key now").await;
    both_widths(&browser, "created-key").await;

    browser.open(&app, &format!("/keys/{frontend_id}")).await;
    browser.expect_text("Danger zone").await;
    both_widths(&browser, "key").await;
    browser.open(&app, "/audit").await;
    browser.expect_text("Key created").await;
    both_widths(&browser, "audit").await;
    browser.open(&app, "/sites").await;
    browser.expect_text("Forja app").await;
    both_widths(&browser, "sites").await;

    let hook = json!({ "url": "https://hooks.forja.example/latchkey", "site_id": blog,
        "events": ["key.blocked", "key.leaked", "key.rotated"], "description": "Forja's key alerts" });
    let (_, hook) = app.post("/api/v1/webhooks", &app.master_key, hook).await;
    let siem = json!({ "url": "https://siem.example.net/ingest", "description": "Security log" });
    app.post("/api/v1/webhooks", &app.master_key, siem).await;
    app.block(&frontend_id).await;
    // The receivers do not exist: the first attempts fail, as a person would see them.
    let deliveries = format!("/api/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap());
    let attempted = crate::helpers::eventually(std::time::Duration::from_secs(20), || async {
        !app.get(&deliveries, &app.master_key).await.1["data"].as_array().unwrap().is_empty()
    });
    assert!(attempted.await, "the worker tried the endpoint");
    browser.open(&app, "/webhooks").await;
    browser.expect_text("siem.example.net").await;
    both_widths(&browser, "webhooks").await;
    browser.open(&app, &format!("/webhooks/{}", hook["id"].as_str().unwrap())).await;
    browser.expect_text("Recent deliveries").await;
    both_widths(&browser, "webhook").await;
    browser.close().await;
    for name in ["sign-in", "keys", "new-key", "created-key", "key", "audit", "sites", "webhooks", "webhook"] {
        for suffix in ["", "-phone"] {
            let file = docs_dir().join(format!("{name}{suffix}.png"));
            assert!(std::fs::metadata(&file).is_ok_and(|m| m.len() > 10_000), "{} was not written", file.display());
        }
    }
}
