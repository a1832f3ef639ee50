//! The Webhooks pages in Chromium: registering an endpoint (its secret shown once and
//! verifying real deliveries), a failing endpoint marked with its waiting events, an
//! Admin's view limited to its site, and rotating and deleting behind confirmations.

use crate::browser::{poll, signed_in};
use crate::webhooks::{failing_endpoint, register, spawn_app_for_webhooks, Receiver};
use serde_json::json;

#[tokio::test]
async fn a_webhook_registered_in_the_dashboard_shows_its_secret_once_and_deliveries_verify_with_it() {
    let app = spawn_app_for_webhooks(false).await;
    let receiver = Receiver::start(&[]).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, "/webhooks").await;
    browser.expect_text("No webhooks yet").await;
    browser.fill("#url", &receiver.url).await;
    browser.click("input[name='event:site.created']").await;
    browser.fill("#description", "Audit collector").await;
    browser.click_button("Register webhook").await;
    browser.expect_text("shown only this once").await;
    let secret = browser.text_of("[data-testid=new-secret]").await;
    assert!(secret.starts_with("whsec_"), "{secret}");

    app.create_site("Shop").await;
    let delivery = receiver.wait_for(1).await.remove(0);
    assert_eq!(delivery.json()["type"], "site.created");
    assert!(delivery.verifies_with(&secret), "the secret shown is the one that signs");

    let (_, listed) = app.get("/api/v1/webhooks", &app.master_key).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "registered once");
    assert_eq!(listed["data"][0]["events"], json!(["site.created"]));
    assert_eq!(listed["data"][0]["description"], "Audit collector");
    assert!(!listed.to_string().contains(&secret), "the list never shows the secret");

    browser.click_button("Done").await;
    browser.click_button("Send a test event").await;
    browser.expect_text("Queued the test event").await;
    receiver.wait_for(2).await;
    let page = poll(
        || async {
            browser.open(&app, &format!("/webhooks/{}", listed["data"][0]["id"].as_str().unwrap())).await;
            browser.page_text().await
        },
        |text: &String| text.contains("webhook.test") && text.contains("Delivered (200)"),
    )
    .await;
    assert!(!page.contains(&secret), "the endpoint's page never shows the secret");
    browser.open(&app, "/webhooks").await;
    let list = browser.page_text().await;
    assert!(list.contains(&receiver.url) && list.contains("Active"), "{list}");
    browser.close().await;
}

#[tokio::test]
async fn a_refused_url_comes_back_beside_its_field_with_what_was_typed() {
    let app = crate::helpers::spawn_app().await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, "/webhooks").await;
    browser.fill("#url", "http://127.0.0.1:9/hook").await;
    browser.click("input[name='event:key.blocked']").await;
    browser.click_button("Register webhook").await;
    let error = browser.text_of("#url-error").await;
    assert!(error.starts_with("The URL points at a loopback, private or internal address"), "{error}");
    assert_eq!(browser.value_of("#url").await, "http://127.0.0.1:9/hook");
    let ticked = browser.js("return document.querySelector(\"input[name='event:key.blocked']\").checked").await;
    assert_eq!(ticked, json!(true), "the ticked event stays ticked");
    let (_, listed) = app.get("/api/v1/webhooks", &app.master_key).await;
    assert!(listed["data"].as_array().unwrap().is_empty(), "nothing registered");
    browser.close().await;
}

#[tokio::test]
async fn a_failing_endpoint_is_marked_failing_with_its_waiting_events() {
    let app = spawn_app_for_webhooks(true).await;
    let (_receiver, webhook) = failing_endpoint(&app).await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, "/webhooks").await;
    let marked = browser.text_of("[data-testid=failing]").await;
    assert!(marked.starts_with("Failing since") && marked.ends_with("2 waiting"), "{marked}");
    browser.open(&app, &format!("/webhooks/{webhook}")).await;
    let page = browser.page_text().await;
    assert!(page.contains("keep failing") && page.contains("HTTP 503"), "{page}");
    browser.close().await;
}

#[tokio::test]
async fn an_admin_sees_only_its_sites_webhooks_and_rotates_and_deletes_behind_confirmations() {
    let app = spawn_app_for_webhooks(false).await;
    let (site, other) = (app.create_site("Shop").await, app.create_site("Blog").await);
    let (_, admin) = app.create_key("admin", Some(&site)).await;
    let receiver = Receiver::start(&[]).await;
    let (own, old_secret) = register(&app, &receiver.url, json!({ "site_id": site })).await;
    register(&app, "https://other.example.com/hook", json!({ "site_id": other })).await;
    register(&app, "https://all.example.com/hook", json!({})).await;
    let browser = signed_in(&app, &admin).await;
    browser.open(&app, "/webhooks").await;
    let list = browser.page_text().await;
    assert!(list.contains(&receiver.url), "{list}");
    assert!(!list.contains("other.example.com") && !list.contains("all.example.com"), "{list}");
    assert!(list.contains("It receives the events of your site, Shop."), "{list}");

    browser.open(&app, &format!("/webhooks/{own}")).await;
    browser.click_button("Rotate secret…").await;
    browser.expect_text("each delivery is signed with both secrets").await;
    browser.click_button("Rotate secret").await;
    let new_secret = browser.text_of("[data-testid=new-secret]").await;
    assert!(new_secret.starts_with("whsec_") && new_secret != old_secret);
    app.create_key("read", Some(&site)).await;
    let delivery = receiver.wait_for(1).await.remove(0);
    assert!(delivery.verifies_with(&new_secret) && delivery.verifies_with(&old_secret), "both sign in the overlap");

    browser.open(&app, &format!("/webhooks/{own}")).await;
    browser.click_button("Delete…").await;
    browser.click_button("Delete webhook").await;
    browser.expect_text(&format!("Deleted the webhook {}.", receiver.url)).await;
    let (status, _) = app.get(&format!("/api/v1/webhooks/{own}"), &app.master_key).await;
    assert_eq!(status, 404);
    browser.close().await;
}
