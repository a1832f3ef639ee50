//! The API Keys list in Chromium: Master keys under their own entry, every column on a
//! phone, "your key", the site picker, search and pages both ways.

use crate::browser::{signed_in, verify_code};
use crate::helpers::{eventually, spawn_app, spawn_app_with_sites};
use fantoccini::Locator;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn master_keys_are_listed_under_master_keys_and_can_be_blocked_from_there() {
    let (app, [_site]) = spawn_app_with_sites(["Blog"]).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.choose("#site", "Master keys (all sites)").await;
    let listed = browser.expect_text("Master keys belong to no site").await;
    assert!(listed.contains("bootstrap"), "the first Master key is listed: {listed}");

    // A new Master key from this list: the form starts as Master, and "Done" comes back here.
    browser.click_button("New API Key").await;
    assert_eq!(browser.value_of("#permission").await, "master");
    browser.fill("#name", "Ops master").await;
    browser.click_button("Create key").await;
    browser.expect_text("This is a Master key.").await;
    let key = browser.text_of("#new-key").await.trim().to_owned();
    browser.click_button("Done").await;
    let listed = browser.expect_text("Ops master").await;
    assert!(listed.contains("bootstrap"), "{listed}");

    browser.click_button("Ops master").await;
    browser.click_button("Block…").await;
    browser.click_button("Block Ops master").await;
    browser.expect_text("Blocked “Ops master”").await;
    assert_eq!(verify_code(&app, &key).await, "key_blocked");
    browser.close().await;
}

#[tokio::test]
async fn at_phone_width_the_list_shows_every_column_without_scrolling_sideways() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let (_, used) = app.create_key("read", Some(&site)).await;
    app.create_key("write", Some(&site)).await;
    app.get("/api/v1/sites", &used).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.set_viewport(390, 844).await;
    browser.open(&app, &format!("/keys?site={site}")).await;
    browser.expect_text("write key").await;
    assert!(browser.sideways_overflow().await <= 0, "the list is wider than a phone");
    // Each cell: its column's name, its text, and whether all of it is on screen.
    let cells = browser
        .js("return [...document.querySelectorAll('table.cards tbody td')].map(td => {
                const box = td.getBoundingClientRect();
                return [td.dataset.label, td.innerText.trim(), box.width > 0 && box.left >= 0 && box.right <= window.innerWidth];
            })")
        .await;
    let cells = cells.as_array().unwrap();
    let columns = ["Name", "Key prefix", "Permission", "Status", "Created", "Last used", "30 days"];
    assert_eq!(cells.len(), 2 * columns.len(), "two rows of every column: {cells:?}");
    for (cell, column) in cells.iter().zip(columns.iter().cycle()) {
        assert_eq!(cell[0], *column, "{cells:?}");
        assert!(!cell[1].as_str().unwrap().is_empty() && cell[2] == true, "{column} is not all on screen: {cell}");
    }
    let text = browser.page_text().await;
    assert!(text.contains("Active") && text.contains("just now"), "Status and Last used show: {text}");
    browser.close().await;
}

#[tokio::test]
async fn the_signed_in_key_is_named_in_the_header_and_marked_in_the_list() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let body = json!({ "name": "Blog admin", "permission": "admin", "site_id": site });
    let (_, admin) = app.create_key_from(body).await;
    app.create_key("read", Some(&site)).await;
    let browser = signed_in(&app, &admin).await;
    let header = browser.text_of("header").await;
    assert!(header.contains("Signed in as Blog admin (Admin)"), "{header}");
    let marked = browser.js("return [...document.querySelectorAll('tbody tr')].map(tr => tr.innerText)").await;
    let rows: Vec<&str> = marked.as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(rows.iter().filter(|row| row.contains("Your key")).count(), 1, "{rows:?}");
    assert!(rows.iter().any(|row| row.contains("Blog admin") && row.contains("Your key")), "{rows:?}");
    browser.close().await;
}

#[tokio::test]
async fn the_site_picker_shows_the_picked_site_at_once_and_says_when_there_is_none() {
    let app = spawn_app().await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.expect_text("There are no sites yet.").await;
    app.create_site("Shop").await;
    app.create_site("Blog").await;
    browser.open(&app, "/keys").await;
    browser.expect_text("Keys of the site Blog").await;
    browser.choose("#site", "Shop").await;
    browser.expect_text("Keys of the site Shop").await;
    browser.close().await;
}

#[tokio::test]
async fn the_list_finds_keys_by_name_or_prefix_and_pages_forward_and_back() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let mut prefix = String::new();
    for n in 1..=27 {
        let body = json!({ "name": format!("worker {n:02}"), "permission": "read", "site_id": site });
        let (id, _) = app.create_key_from(body).await;
        if n == 7 {
            prefix = app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await.1["prefix"].as_str().unwrap().into();
        }
    }
    let browser = signed_in(&app, &app.master_key).await;
    let rows = || async { browser.client.find_all(Locator::Css("tbody tr")).await.unwrap().len() };
    browser.expect_text("worker 27").await;
    assert_eq!(rows().await, 25);
    browser.click_button("Older keys →").await;
    browser.expect_text("Page 2").await;
    assert_eq!(rows().await, 2);
    browser.click_button("← Newer keys").await;
    browser.expect_text("Page 1").await;
    assert_eq!(rows().await, 25);

    browser.fill("#q", &prefix).await;
    browser.click_button("Show").await;
    assert!(eventually(Duration::from_secs(5), || async { rows().await == 1 }).await, "a prefix finds one key");
    assert!(browser.page_text().await.contains("worker 07"));
    browser.open(&app, "/keys").await;
    browser.fill("#q", "WORKER 12").await;
    browser.click_button("Show").await;
    assert!(eventually(Duration::from_secs(5), || async { rows().await == 1 }).await, "a name, in any case");
    assert!(browser.page_text().await.contains("worker 12"));
    browser.close().await;
}
