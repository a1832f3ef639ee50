//! The Audit page in Chromium: names instead of ids, actions in words, a site column,
//! filters by key name, action and site, and deleted keys that lead to their trail.

use crate::browser::signed_in;
use crate::helpers::{spawn_app_with_sites, TestApp};
use fantoccini::Locator;
use serde_json::json;

async fn named_key(app: &TestApp, name: &str, site: &str) -> String {
    app.create_key_from(json!({ "name": name, "permission": "write", "site_id": site })).await.0
}

/// The audit table's rows, each as its cells' text.
async fn rows(browser: &crate::browser::Browser) -> Vec<Vec<String>> {
    let rows = browser
        .js("return [...document.querySelectorAll('table.cards tbody tr')].map(tr => [...tr.cells].map(td => td.innerText.trim()))")
        .await;
    serde_json::from_value(rows).unwrap()
}

#[tokio::test]
async fn the_audit_names_keys_sites_and_actors_and_says_actions_in_words() {
    let (app, [blog]) = spawn_app_with_sites(["Blog"]).await;
    let id = named_key(&app, "CI deploy", &blog).await;
    app.block(&id).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, "/audit").await;
    browser.expect_text("Key blocked").await;
    let table = rows(&browser).await;
    let blocked = table.iter().find(|row| row[1] == "Key blocked").expect("a Key blocked row");
    assert!(blocked[2].starts_with("CI deploy"), "the key by name: {blocked:?}");
    assert_eq!(blocked[3], "Blog", "the site by name: {blocked:?}");
    assert!(blocked[4].starts_with("bootstrap"), "who did it, by name: {blocked:?}");
    assert_eq!(blocked[5], "Status: Active → Blocked");
    let page = browser.page_text().await;
    assert!(!page.contains("key_blocked") && !page.contains(&id), "no raw actions or ids: {page}");
    browser.close().await;
}

#[tokio::test]
async fn the_audit_filters_by_key_name_by_action_and_by_site() {
    let (app, [blog, shop]) = spawn_app_with_sites(["Blog", "Shop"]).await;
    let deploy = named_key(&app, "CI deploy", &blog).await;
    named_key(&app, "Checkout", &shop).await;
    app.block(&deploy).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, "/audit").await;

    browser.fill("#key", "ci DEPLOY").await;
    browser.click_button("Filter").await;
    browser.expect_text("Clear filters").await;
    let by_key = rows(&browser).await;
    assert_eq!(by_key.iter().map(|r| r[1].as_str()).collect::<Vec<_>>(), ["Key blocked", "Key created"], "{by_key:?}");

    browser.open(&app, "/audit").await;
    browser.choose("#action", "Key created").await;
    browser.choose("#site", "Shop").await;
    browser.click_button("Filter").await;
    browser.expect_text("Clear filters").await;
    let filtered = rows(&browser).await;
    assert_eq!(filtered.len(), 1, "{filtered:?}");
    assert!(filtered[0][2].starts_with("Checkout") && filtered[0][3] == "Shop", "{filtered:?}");
    browser.close().await;
}

#[tokio::test]
async fn a_deleted_key_in_the_audit_leads_to_its_trail_not_to_an_error() {
    let (app, [blog]) = spawn_app_with_sites(["Blog"]).await;
    let id = named_key(&app, "Old webhook", &blog).await;
    let (status, _) =
        app.call(reqwest::Method::DELETE, &format!("/api/v1/keys/{id}"), Some(&app.master_key), None).await;
    assert_eq!(status, 204);
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, "/audit").await;
    let deleted = rows(&browser).await.into_iter().find(|row| row[1] == "Key deleted").expect("a Key deleted row");
    assert_eq!(deleted[2], "Old webhook (deleted)");
    browser.client.find(Locator::LinkText("Old webhook")).await.unwrap().click().await.unwrap();
    browser.expect_text("Clear filters").await;
    let trail = rows(&browser).await;
    assert_eq!(trail.iter().map(|r| r[1].as_str()).collect::<Vec<_>>(), ["Key deleted", "Key created"]);
    assert_eq!(browser.js("return document.title").await, "Audit · Latchkey", "the trail, not an error page");
    browser.close().await;
}
