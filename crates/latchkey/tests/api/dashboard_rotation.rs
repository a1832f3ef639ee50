//! Rotation, Block and Delete in Chromium: each is asked first and says what will happen;
//! a rotation says until when the old key works, everywhere it shows; and on the key one
//! is signed in with, the question says so and wants a ticked box.

use crate::browser::{signed_in, verify_code};
use crate::helpers::spawn_app_with_sites;
use serde_json::json;

#[tokio::test]
async fn a_rotation_is_asked_first_and_says_until_when_the_old_key_works() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let body = json!({ "name": "Search indexer", "permission": "read", "site_id": site });
    let (id, old) = app.create_key_from(body).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, &format!("/keys/{id}")).await;
    browser.choose("#grace", "1 day").await;
    browser.click_button("Rotate…").await;
    let question = browser.expect_text("Rotate the key Search indexer").await;
    let until = (chrono::Utc::now() + chrono::Duration::days(1)).format("%-d %b %Y").to_string();
    assert!(question.contains("The old key keeps working until") && question.contains(&until), "{question}");
    assert_eq!(
        app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await.1["expires_at"],
        json!(null),
        "asking rotates nothing"
    );

    browser.click_button("Rotate Search indexer").await;
    let grace = browser.text_of("[data-testid=grace]").await;
    assert!(grace.contains("keeps working until") && grace.contains(&until) && grace.contains("(in 1 day)"), "{grace}");
    let new = browser.text_of("#new-key").await.trim().to_owned();
    assert_eq!((verify_code(&app, &old).await, verify_code(&app, &new).await), ("valid".into(), "valid".into()));

    // The list tells the two apart; the old key's page names its replacement.
    browser.open(&app, &format!("/keys?site={site}")).await;
    let list = browser.expect_text("Rotating").await;
    assert!(list.contains("old key works until") && list.contains(&until) && list.contains("replaces"), "{list}");
    browser.open(&app, &format!("/keys/{id}")).await;
    let notice = browser.text_of("[data-testid=rotating]").await;
    assert!(notice.contains("keeps working until") && notice.contains("Search indexer"), "{notice}");
    let facts = browser.text_of("dl.facts").await;
    assert!(facts.contains("Replaced by") && !facts.contains("key_"), "the replacement by name: {facts}");
    browser.close().await;
}

#[tokio::test]
async fn a_blocked_key_says_why_it_cannot_be_rotated() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let (id, _) = app.create_key("read", Some(&site)).await;
    app.block(&id).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, &format!("/keys/{id}")).await;
    let rotate = browser.text_of("section.panel").await;
    assert!(rotate.contains("A blocked key cannot be rotated. Unblock it first"), "{rotate}");
    assert!(browser.client.find(fantoccini::Locator::Css("#grace")).await.is_err(), "no Rotate form");
    browser.close().await;
}

#[tokio::test]
async fn blocking_ones_own_key_warns_and_wants_the_box_ticked_before_signing_out() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let body = json!({ "name": "My admin", "permission": "admin", "site_id": site });
    let (id, admin) = app.create_key_from(body).await;
    let browser = signed_in(&app, &admin).await;
    for action in ["delete", "rotate"] {
        browser.open(&app, &format!("/keys/{id}/{action}")).await;
        browser.expect_text("This is the key you are signed in with.").await;
    }
    browser.open(&app, &format!("/keys/{id}")).await;
    browser.click_button("Block…").await;
    let question = browser.expect_text("This is the key you are signed in with.").await;
    assert!(question.contains("signs you out at once"), "{question}");
    // Sent without the box (the browser would insist on it; the server does too).
    browser.js("document.getElementById('understood').removeAttribute('required'); return null").await;
    browser.click_button("Block My admin").await;
    let refused = browser.text_of("#understood-error").await;
    assert!(refused.contains("Tick the box"), "{refused}");
    assert_eq!(verify_code(&app, &admin).await, "valid", "nothing was blocked");

    browser.click("#understood").await;
    browser.click_button("Block My admin").await;
    browser.expect_path("/login").await;
    browser.expect_text("you have been signed out").await;
    assert_eq!(verify_code(&app, &admin).await, "key_blocked");
    browser.close().await;
}

#[tokio::test]
async fn deleting_another_key_is_asked_first_and_reported_after() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, &format!("/keys/{id}")).await;
    browser.click_button("Delete…").await;
    let question = browser.expect_text("Delete the key read key").await;
    assert!(question.contains("cannot be undone") && !question.contains("signed in with"), "{question}");
    assert_eq!(verify_code(&app, &key).await, "valid", "asking deletes nothing");
    browser.click_button("Delete read key").await;
    browser.expect_text("Deleted the key “read key”.").await;
    assert_eq!(verify_code(&app, &key).await, "invalid_api_key");
    browser.close().await;
}
