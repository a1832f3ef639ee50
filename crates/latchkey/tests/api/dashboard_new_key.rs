//! The page that shows a new key once, in Chromium: the warning, the usage example, the
//! Master caution, and a copy button that still helps where the clipboard API is missing.

use crate::browser::{signed_in, start_browser_with, verify_code};
use crate::helpers::spawn_app_with_sites;

/// A name Chromium resolves to the test server: plain HTTP at a name that is not
/// localhost is not a secure context, as for a self-hosted tool opened by its LAN name.
/// (127.0.0.2 would not do: Chromium treats all of 127.0.0.0/8 as secure.)
const INSECURE_HOST: &str = "latchkey.test";

#[tokio::test]
async fn on_a_page_that_is_not_a_secure_context_the_copy_button_selects_the_key_and_says_so() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let rule = format!("--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1");
    let browser = start_browser_with(&[rule.as_str()]).await;
    let base = app.address.replace("127.0.0.1", INSECURE_HOST);
    browser.sign_in_at(&base, &app.master_key).await;
    browser.open_url(&format!("{base}/keys/new?site={site}")).await;
    browser.fill("#name", "Frontend").await;
    browser.click_button("Create key").await;
    browser.expect_text("Copy this key now").await;
    let context = browser.js("return [window.isSecureContext, typeof navigator.clipboard]").await;
    assert_eq!(context, serde_json::json!([false, "undefined"]), "the page has no clipboard API");

    browser.click_button("Copy key").await;
    let status = browser.text_of("#copy-status").await;
    assert!(status.contains("The key is selected: press Ctrl+C"), "{status}");
    let selected = browser.js("return window.getSelection().toString().trim()").await;
    let key = browser.text_of("#new-key").await.trim().to_owned();
    assert_eq!(selected, key.as_str(), "the whole key, and only it, is selected");
    assert_eq!(verify_code(&app, &key).await, "valid");
    browser.close().await;
}

#[tokio::test]
async fn the_new_key_page_warns_shows_how_to_use_the_key_and_cautions_about_master_keys() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, &format!("/keys/new?site={site}")).await;
    browser.fill("#name", "Frontend").await;
    browser.click_button("Create key").await;
    browser.expect_text("Copy this key now: it is shown only this once.").await;
    let warning =
        browser.js("return getComputedStyle(document.querySelector('.notice.warning')).backgroundColor").await;
    assert_eq!(warning, "rgb(255, 246, 214)", "the warning is a yellow warning box, not a grey one");
    let key = browser.text_of("#new-key").await.trim().to_owned();
    let snippet = browser.text_of("pre.snippet").await;
    assert_eq!(snippet, format!("curl -H \"X-API-Key: {key}\" {}/api/v1/whoami", app.address));
    let (status, _) = app.get("/api/v1/whoami", &key).await;
    assert_eq!(status, 200, "the example works as written");
    assert!(!browser.page_text().await.contains("This is a Master key."), "no Master caution for a Read key");

    browser.open(&app, "/keys/new?site=master").await;
    browser.fill("#name", "Ops").await;
    browser.click_button("Create key").await;
    let caution = browser.text_of("[data-testid=master-caution]").await;
    assert!(
        caution.contains("This is a Master key.") && caution.contains("never put it in an application"),
        "{caution}"
    );
    browser.close().await;
}
