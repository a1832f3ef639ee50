//! The Sites page in Chromium: an empty table that says what to do, names that must be
//! unique, and a deletion that says how many keys go with the site.

use crate::browser::{signed_in, verify_code};
use crate::helpers::{spawn_app, spawn_app_with_sites};

#[tokio::test]
async fn an_empty_sites_page_says_what_to_do_and_a_taken_name_is_refused_beside_its_field() {
    let app = spawn_app().await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, "/sites").await;
    browser.expect_text("There are no sites yet. Create the first one above").await;
    browser.fill("#new-site", "Blog").await;
    browser.click_button("Create site").await;
    browser.expect_text("Created the site Blog.").await;
    browser.fill("#new-site", "blog").await;
    browser.click_button("Create site").await;
    let error = browser.text_of("#new-site-error").await;
    assert!(error.contains("A site named \"blog\" already exists"), "{error}");
    assert_eq!(browser.value_of("#new-site").await, "blog", "what was typed stays");
    let (_, sites) = app.get("/api/v1/sites", &app.master_key).await;
    assert_eq!(sites["data"].as_array().unwrap().len(), 1, "no second site");
    browser.close().await;
}

#[tokio::test]
async fn deleting_a_site_says_how_many_keys_go_with_it_before_and_after() {
    let (app, [site]) = spawn_app_with_sites(["Shop"]).await;
    let (_, first) = app.create_key("read", Some(&site)).await;
    app.create_key("write", Some(&site)).await;
    app.create_key("admin", Some(&site)).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, "/sites").await;
    browser.click_button("Delete…").await;
    let question = browser.expect_text("Delete the site Shop?").await;
    assert!(question.contains("Its 3 API keys are deleted with it"), "{question}");
    browser.click_button("Delete Shop").await;
    browser.expect_text("Deleted the site Shop and its 3 API keys.").await;
    assert_eq!(verify_code(&app, &first).await, "invalid_api_key");
    browser.close().await;
}
