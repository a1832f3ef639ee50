//! Finding one's way in Chromium: a skip link, the current page marked in the navigation,
//! focus rings, a message after every action, and a page (not JSON) at a mistyped address.

use crate::browser::signed_in;
use crate::helpers::{spawn_app_with_sites, TestApp};
use reqwest::StatusCode;

#[tokio::test]
async fn every_page_starts_with_a_skip_link_and_marks_where_it_is_in_the_navigation() {
    let (app, _) = spawn_app_with_sites(["Blog"]).await;
    let browser = signed_in(&app, &app.master_key).await;
    for (path, current) in [("/keys", "API Keys"), ("/audit", "Audit"), ("/sites", "Sites"), ("/keys/new", "API Keys")]
    {
        browser.open(&app, path).await;
        let marked =
            browser.js("return [...document.querySelectorAll('nav [aria-current=page]')].map(a => a.innerText)").await;
        assert_eq!(marked, serde_json::json!([current]), "{path}");
    }
    let first =
        browser.js("const a = document.querySelector('body a'); return [a.innerText, a.getAttribute('href')]").await;
    assert_eq!(first, serde_json::json!(["Skip to main content", "#main"]));
    // Hidden until focused, then on screen; it leads to the main content.
    let hidden = browser.js("return document.querySelector('.skip-link').getBoundingClientRect().right").await;
    assert!(hidden.as_f64().unwrap() < 0.0, "the skip link is off screen until focused");
    let shown = browser
        .js("const a = document.querySelector('.skip-link'); a.focus(); return a.getBoundingClientRect().left")
        .await;
    assert!(shown.as_f64().unwrap() >= 0.0, "a focused skip link is on screen");
    browser.click(".skip-link").await;
    assert_eq!(browser.js("return document.activeElement.id").await, "main");
    browser.close().await;
}

#[tokio::test]
async fn text_fields_and_the_description_show_a_focus_ring() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, &format!("/keys/new?site={site}")).await;
    for field in ["description", "name", "ratelimit_limit"] {
        let outline = browser
            .js(&format!("const f = document.getElementById('{field}'); f.focus(); const s = getComputedStyle(f); return [s.outlineStyle, s.outlineWidth]"))
            .await;
        assert_eq!(outline, serde_json::json!(["solid", "3px"]), "{field}");
    }
    browser.close().await;
}

#[tokio::test]
async fn creating_saving_blocking_deleting_and_signing_out_each_say_what_was_done() {
    let (app, [site]) = spawn_app_with_sites(["Blog"]).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, &format!("/keys/new?site={site}")).await;
    browser.fill("#name", "Frontend").await;
    browser.click_button("Create key").await;
    browser.expect_text("Created the Read key “Frontend” for the site Blog.").await;
    browser.click_button("Done").await;
    browser.click_button("Frontend").await;
    browser.click("#edit summary").await;
    browser.fill("#description", "The public site").await;
    browser.click_button("Save changes").await;
    assert_eq!(browser.text_of("[data-testid=flash]").await, "Saved the changes to “Frontend”.");
    browser.click_button("Block…").await;
    browser.click_button("Block Frontend").await;
    browser.expect_text("Blocked “Frontend”: requests made with it are refused from now on.").await;
    browser.open(&app, "/keys").await;
    assert!(!browser.page_text().await.contains("Blocked “Frontend”"), "a message is shown once");
    browser.click_button("Frontend").await;
    browser.click_button("Delete…").await;
    browser.click_button("Delete Frontend").await;
    browser.expect_text("Deleted the key “Frontend”.").await;
    browser.click_button("Sign out").await;
    browser.expect_text("You have signed out.").await;
    browser.close().await;
}

async fn get_as_browser(app: &TestApp, path: &str) -> (StatusCode, String, String) {
    let response =
        app.client.get(format!("{}{path}", app.address)).header("accept", "text/html,*/*;q=0.8").send().await.unwrap();
    let kind = response.headers()["content-type"].to_str().unwrap().to_owned();
    (response.status(), kind, response.text().await.unwrap())
}

#[tokio::test]
async fn a_mistyped_dashboard_address_answers_a_page_and_the_api_still_answers_json() {
    let (app, _) = spawn_app_with_sites(["Blog"]).await;
    let browser = signed_in(&app, &app.master_key).await;
    for path in ["/kyes", "/keys/key_01/frobnicate"] {
        browser.open(&app, path).await;
        let page = browser.expect_text("There is no page at this address.").await;
        assert!(page.contains("API Keys") && !page.contains("{\"error\""), "{path}: {page}");
    }
    let (status, kind, _) = get_as_browser(&app, "/kyes").await;
    assert_eq!((status, kind.starts_with("text/html")), (StatusCode::NOT_FOUND, true));
    let (status, kind, body) = get_as_browser(&app, "/api/v1/nothing-here").await;
    assert_eq!((status, kind.as_str()), (StatusCode::NOT_FOUND, "application/json"), "{body}");
    browser.close().await;
}
