//! One key's page in Chromium: what the key is, by name; the usage chart with its axes and
//! its empty state; the folded Edit form; the red danger zone; a phone's width; and an
//! address of a key that is gone.

use crate::browser::signed_in;
use crate::helpers::{spawn_app_with_sites, TestApp};
use serde_json::json;

async fn key_with_everything(app: &TestApp, site: &str) -> String {
    let body = json!({ "name": "Flows runner", "permission": "write", "site_id": site,
        "scopes": ["flows:execute"], "description": "Runs the nightly flows" });
    app.create_key_from(body).await.0
}

#[tokio::test]
async fn the_key_page_names_its_site_scopes_description_and_creator_and_puts_block_and_delete_in_red() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let id = key_with_everything(&app, &site).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, &format!("/keys/{id}")).await;
    let facts = browser.text_of("dl.facts").await;
    for shown in ["Blog", "flows:execute", "Runs the nightly flows", "by bootstrap", "Write"] {
        assert!(facts.contains(shown), "{shown:?} is not among the details: {facts}");
    }
    assert!(!facts.contains("key_"), "no raw ids: {facts}");
    let danger = browser
        .js("const zone = document.querySelector('.danger-zone');
             return [getComputedStyle(zone).borderTopColor,
                     [...zone.querySelectorAll('.button')].map(b => [b.innerText, getComputedStyle(b).backgroundColor])]")
        .await;
    assert_eq!(danger[0], "rgb(179, 38, 30)", "the danger zone is framed in red");
    assert_eq!(danger[1], json!([["Block…", "rgb(179, 38, 30)"], ["Delete…", "rgb(179, 38, 30)"]]));
    assert_eq!(browser.js("return document.getElementById('edit').open").await, false, "the Edit form is folded");
    let height = browser.js("return document.documentElement.scrollHeight").await.as_i64().unwrap();
    assert!(height < 1500, "the page is {height} px tall");
    browser.close().await;
}

#[tokio::test]
async fn an_unused_key_says_so_and_a_refused_api_call_shows_as_refused_on_dated_axes() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let (id, read) = app.create_key("read", Some(&site)).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, &format!("/keys/{id}")).await;
    let empty = browser.text_of("[data-testid=usage-empty]").await;
    assert!(empty.contains("No requests in the last 30 days."), "{empty}");

    // A Read key may not list keys: refused by the API with 403, counted as refused.
    assert_eq!(app.get("/api/v1/keys", &read).await.0, 403);
    assert_eq!(app.get("/api/v1/sites", &read).await.0, 200);
    let legend = crate::browser::poll(
        || async {
            browser.open(&app, &format!("/keys/{id}")).await;
            browser.page_text().await
        },
        |page| page.contains("Refused: 1"),
    )
    .await;
    assert!(legend.contains("Allowed: 1") && legend.contains("Refused: 1"), "{legend}");
    let today = chrono::Utc::now().format("%-d %b").to_string();
    let axis = browser.text_of(".x-axis").await;
    assert!(axis.contains(&today) && axis.contains("(today, UTC)"), "{axis}");
    assert_eq!(browser.text_of(".y-axis").await.split_whitespace().collect::<Vec<_>>(), ["1", "0"]);
    browser.close().await;
}

#[tokio::test]
async fn at_phone_width_the_key_page_does_not_scroll_sideways() {
    let (app, [site]) = spawn_app_with_sites(["A site with a rather long name for a phone"]).await;
    let id = key_with_everything(&app, &site).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.set_viewport(390, 844).await;
    browser.open(&app, &format!("/keys/{id}")).await;
    browser.expect_text("Danger zone").await;
    assert!(browser.sideways_overflow().await <= 0, "the key page is wider than a phone");
    browser.click("#edit summary").await;
    assert!(browser.sideways_overflow().await <= 0, "the open Edit form is wider than a phone");
    browser.close().await;
}

#[tokio::test]
async fn the_address_of_a_deleted_key_says_what_became_of_it() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let id = key_with_everything(&app, &site).await;
    let (status, _) =
        app.call(reqwest::Method::DELETE, &format!("/api/v1/keys/{id}"), Some(&app.master_key), None).await;
    assert_eq!(status, 204);
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, &format!("/keys/{id}")).await;
    browser.expect_text("The key “Flows runner” was deleted.").await;
    browser.click_button("What happened to it (audit trail)").await;
    let trail = browser.expect_text("Key deleted").await;
    assert!(trail.contains("Key created") && trail.contains("Flows runner"), "{trail}");
    browser.close().await;
}
