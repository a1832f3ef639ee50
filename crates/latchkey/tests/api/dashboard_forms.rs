//! Refused forms in Chromium: they come back filled in, with the message next to the
//! field and a fresh single-use token, and a form that did create a key cannot create a
//! second one.

use crate::browser::{signed_in, verify_code};
use crate::helpers::{spawn_app_with_sites, TestApp};
use serde_json::json;

async fn keys_named(app: &TestApp, site: &str, name: &str) -> usize {
    let (_, listed) = app.get(&format!("/api/v1/keys?site={site}"), &app.master_key).await;
    listed["data"].as_array().unwrap().iter().filter(|key| key["name"] == name).count()
}

#[tokio::test]
async fn a_bad_scope_comes_back_beside_its_field_with_what_was_typed_and_the_form_still_works_once() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, &format!("/keys/new?site={site}")).await;
    let first_token = browser.value_of("input[name=form_id]").await;
    browser.fill("#name", "Flows runner").await;
    browser.choose("#permission", "Write").await;
    browser.fill("#scopes", "Flows").await;
    browser.fill("#description", "Runs the nightly flows").await;
    browser.click_button("Create key").await;

    let error = browser.text_of("#scopes-error").await;
    assert!(error.contains("\"Flows\" is not a scope") && error.contains("flows:execute"), "{error}");
    let page = browser.page_text().await;
    assert!(page.contains("The key was not created.") && !page.contains("[a-z0-9_-]"), "plain words: {page}");
    assert_eq!(browser.js("return document.title").await, "New API Key · Latchkey", "the form, not an error page");
    assert_eq!(browser.value_of("#name").await, "Flows runner");
    assert_eq!(browser.value_of("#permission").await, "write");
    assert_eq!(browser.value_of("#scopes").await, "Flows");
    assert_eq!(browser.value_of("#description").await, "Runs the nightly flows");
    assert_eq!(browser.value_of("#site_id").await, site);
    let scopes_field = browser.js("return document.getElementById('scopes').getAttribute('aria-describedby')").await;
    assert_eq!(scopes_field, "scopes-error", "the message is tied to its field");
    assert_ne!(browser.value_of("input[name=form_id]").await, first_token, "a fresh single-use token");
    assert_eq!(keys_named(&app, &site, "Flows runner").await, 0);

    // Corrected, it creates the key; the same form sent again creates nothing more.
    browser.fill("#scopes", "flows:execute").await;
    let sent = browser
        .js("return new URLSearchParams(new FormData(document.querySelector('form[action=\"/keys/new\"]'))).toString()")
        .await;
    browser.click_button("Create key").await;
    browser.expect_text("Copy this key now").await;
    let key = browser.text_of("#new-key").await.trim().to_owned();
    assert_eq!(verify_code(&app, &key).await, "valid");
    let again = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/keys/new', { method: 'POST', body: arguments[0],
                 headers: { 'content-type': 'application/x-www-form-urlencoded' } })
               .then(r => r.text().then(t => done([r.status, t])));",
            vec![sent],
        )
        .await
        .unwrap();
    assert_eq!(again[0], 409, "{again}");
    let answer = again[1].as_str().unwrap();
    assert!(answer.contains("already sent") && answer.contains("Flows runner"), "{answer}");
    assert!(!answer.contains(&key), "the key is not shown again");
    assert_eq!(keys_named(&app, &site, "Flows runner").await, 1, "exactly one key was created");
    browser.close().await;
}

#[tokio::test]
async fn a_new_key_without_a_site_is_refused_beside_the_site_field() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, "/keys/new").await;
    assert_eq!(browser.value_of("#site_id").await, "", "no site is picked silently");
    browser.fill("#name", "Nowhere").await;
    browser.click_button("Create key").await;
    let error = browser.text_of("#site_id-error").await;
    assert_eq!(error, "Pick the site this key is for.");
    assert_eq!(browser.value_of("#name").await, "Nowhere");
    assert_eq!(keys_named(&app, &site, "Nowhere").await, 0);
    browser.close().await;
}

#[tokio::test]
async fn a_refused_edit_comes_back_open_with_what_was_typed_and_saves_nothing() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let body = json!({ "name": "Frontend", "permission": "read", "site_id": site });
    let (id, _) = app.create_key_from(body).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, &format!("/keys/{id}")).await;
    browser.click("#edit summary").await;
    browser.fill("#name", "Frontend v2").await;
    browser.fill("#ratelimit_limit", "5").await;
    browser.fill("#ratelimit_window", "100000").await;
    browser.click_button("Save changes").await;
    let error = browser.text_of("#ratelimit_window-error").await;
    assert!(error.contains("between 1 and 86,400 seconds"), "{error}");
    assert_eq!(browser.js("return document.getElementById('edit').open").await, true, "the form stays open");
    assert_eq!(browser.value_of("#name").await, "Frontend v2");
    assert!(browser.page_text().await.contains("Nothing was saved."));
    let (_, key) = app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await;
    assert_eq!(key["name"], "Frontend", "nothing was saved");
    browser.close().await;
}
