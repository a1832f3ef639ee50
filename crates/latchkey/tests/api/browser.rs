//! The dashboard in a real headless Chromium, driven through chromedriver (Debian's
//! `chromium` and `chromium-driver`; `.ci/run` installs them). Screenshots of the main
//! pages go to `target/tmp/screenshots/`.

use crate::helpers::{eventually, spawn_app, spawn_app_with_sites, start_and_wait, ChildProcess, TestApp};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

struct Browser {
    client: Client,
    _driver: ChildProcess,
    _profile: tempfile::TempDir,
}

fn require(path: &str, package: &str) -> String {
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is missing: these tests need Debian's {package} (apt-get install chromium chromium-driver); .ci/run installs it"
    );
    path.to_owned()
}

async fn start_browser() -> Browser {
    let chromedriver = require("/usr/bin/chromedriver", "chromium-driver");
    let chromium = require("/usr/bin/chromium", "chromium");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = Command::new(chromedriver);
    command.arg(format!("--port={port}"));
    let driver = start_and_wait(command, &format!("http://127.0.0.1:{port}/status"), "chromedriver").await;
    let profile = tempfile::tempdir().unwrap();
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    Browser { client, _driver: driver, _profile: profile }
}

impl Browser {
    async fn open(&self, app: &TestApp, path: &str) {
        self.client.goto(&format!("{}{path}", app.address)).await.unwrap();
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("no {css}")).click().await.unwrap();
    }

    async fn click_button(&self, text: &str) {
        let xpath = format!("//button[normalize-space()='{text}'] | //a[normalize-space()='{text}']");
        self.client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|_| panic!("no button {text:?}"))
            .click()
            .await
            .unwrap();
    }

    /// The page's text once loaded. Clicks that submit a form return before the next
    /// page has loaded, so reads retry until the document is stable.
    async fn page_text(&self) -> String {
        for _ in 0..100 {
            if let Ok(body) = self.client.find(Locator::Css("body")).await {
                if let Ok(text) = body.text().await {
                    return text;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page never settled");
    }

    /// Waits (with a deadline) until the page shows `text`; returns the page's text.
    async fn expect_text(&self, text: &str) -> String {
        let mut last = String::new();
        for _ in 0..100 {
            last = self.page_text().await;
            if last.contains(text) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page never showed {text:?}; it shows:\n{last}");
    }

    /// Waits (with a deadline) until the browser is at `path`.
    async fn expect_path(&self, path: &str) {
        let mut last = String::new();
        for _ in 0..100 {
            last = self.client.current_url().await.unwrap().path().to_owned();
            if last == path {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected to be at {path}, still at {last}");
    }

    async fn sign_in(&self, app: &TestApp, key: &str) {
        self.open(app, "/login").await;
        self.fill("#key", key).await;
        self.click_button("Sign in").await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

async fn verify_code(app: &TestApp, key: &str) -> String {
    let (_, answer) = app.call(reqwest::Method::POST, "/api/v1/verify", None, Some(json!({ "key": key }))).await;
    answer["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_master_walks_the_whole_api_keys_page_in_chromium() {
    let app = spawn_app().await;
    let browser = start_browser().await;
    browser.sign_in(&app, &app.master_key).await;
    browser.expect_path("/keys").await;

    // Sites: create one.
    browser.open(&app, "/sites").await;
    browser.fill("#new-site", "Astro blog").await;
    browser.click_button("Create site").await;
    browser.expect_text("Astro blog").await;
    browser.screenshot("sites").await;
    let (_, sites) = app.get("/api/v1/sites", &app.master_key).await;
    let site = sites["data"][0]["id"].as_str().unwrap().to_owned();

    // Empty state, then a new Read key shown once.
    browser.open(&app, &format!("/keys?site={site}")).await;
    browser.expect_text("This site has no API keys yet").await;
    browser.click_button("New API Key").await;
    browser.fill("#name", "Frontend").await;
    browser.click("#permission option[value=read]").await;
    browser.click_button("Create").await;
    browser.expect_text("Copy it now; you won't be able to see it again.").await;
    let key = browser.client.find(Locator::Css("#new-key")).await.unwrap().text().await.unwrap().trim().to_owned();
    browser.screenshot("new-key").await;
    assert_eq!(verify_code(&app, &key).await, "valid", "the key from the one-time dialog works");

    // Listed with the right prefix and status; the full key is nowhere on the page.
    browser.click_button("Done").await;
    let listing = browser.expect_text(&key[..12]).await;
    assert!(listing.contains("Frontend") && listing.contains("Active"), "{listing}");
    assert!(!browser.client.source().await.unwrap().contains(&key));
    browser.screenshot("keys").await;
    // Phone width: the page itself never scrolls sideways (the table scrolls in its box).
    browser.client.set_window_size(390, 844).await.unwrap();
    let overflow = browser
        .client
        .execute("return document.documentElement.scrollWidth - window.innerWidth", vec![])
        .await
        .unwrap();
    assert!(overflow.as_i64().unwrap() <= 0, "the page is wider than a phone screen by {overflow}px");
    browser.screenshot("keys-phone").await;
    browser.client.set_window_size(1280, 900).await.unwrap();

    // Block, unblock, rename, delete.
    browser.click("a[href^='/keys/key_']").await;
    browser.expect_text("Last 30 days:").await;
    browser.click_button("Block").await;
    browser.expect_text("Unblock").await;
    assert_eq!(verify_code(&app, &key).await, "key_blocked");
    browser.screenshot("key-detail").await;
    browser.click_button("Unblock").await;
    browser.expect_text("Block").await;
    eventually(Duration::from_secs(5), || async { verify_code(&app, &key).await == "valid" }).await;
    assert_eq!(verify_code(&app, &key).await, "valid");
    browser.fill("#name", "Frontend v2").await;
    browser.click_button("Save").await;
    browser.expect_text("Frontend v2").await;
    browser.click_button("Delete…").await;
    browser.expect_text("Delete the key Frontend v2").await;
    browser.click_button("Delete Frontend v2").await;
    browser.expect_text("This site has no API keys yet").await;
    assert_eq!(verify_code(&app, &key).await, "invalid_api_key");
    browser.expect_text("This site has no API keys yet").await;

    // Audit shows what happened.
    browser.open(&app, "/audit").await;
    let audit = browser.expect_text("key_deleted").await;
    assert!(audit.contains("key_blocked"));
    browser.screenshot("audit").await;

    // Sign out: the session is gone.
    browser.click_button("Sign out").await;
    browser.expect_path("/login").await;
    browser.open(&app, "/keys").await;
    browser.expect_path("/login").await;
    browser.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn an_admin_sees_only_its_site_cannot_pick_master_and_is_signed_out_when_blocked() {
    let (app, [own, other]) = spawn_app_with_sites(["own", "other"]).await;
    let (admin_id, admin) = app.create_key("admin", Some(&own)).await;
    let browser = start_browser().await;
    browser.sign_in(&app, &admin).await;
    browser.expect_path("/keys").await;
    let options = browser.client.find_all(Locator::Css("#site option")).await.unwrap();
    assert_eq!(options.len(), 1, "an Admin sees only its own site");
    assert_eq!(options[0].attr("value").await.unwrap().as_deref(), Some(own.as_str()));
    browser.open(&app, &format!("/keys?site={other}")).await;
    browser.expect_text("cannot access that site").await;
    browser.open(&app, &format!("/keys/new?site={own}")).await;
    let levels = browser.client.find_all(Locator::Css("#permission option")).await.unwrap();
    let mut values = Vec::new();
    for level in levels {
        values.push(level.attr("value").await.unwrap().unwrap());
    }
    assert_eq!(values, ["read", "write", "admin"]);
    browser.open(&app, "/sites").await;
    assert!(!browser.page_text().await.contains("Create site"));

    app.block(&admin_id).await;
    browser.open(&app, "/keys").await;
    browser.expect_path("/login").await;
    browser.expect_text("signed out").await;
    browser.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn a_read_key_cannot_sign_in_and_says_why() {
    let (app, [site]) = spawn_app_with_sites(["s"]).await;
    let (_, read) = app.create_key("read", Some(&site)).await;
    let browser = start_browser().await;
    browser.sign_in(&app, &read).await;
    browser.expect_path("/login").await;
    browser.expect_text("Read and Write keys cannot sign in").await;
    let cookies = browser.client.get_all_cookies().await.unwrap();
    assert!(cookies.iter().all(|c| c.name() != "latchkey_session"));
    browser.client.clone().close().await.unwrap();
}

/// Signs in over plain HTTP and returns the session cookie and the page's CSRF token.
async fn sign_in_without_a_browser(app: &TestApp, key: &str) -> (String, String) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = crate::helpers::post_sign_in(&app.address, key).await;
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(!set_cookie.contains(key), "the key is never put in a cookie");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let page = client.get(format!("{}/keys", app.address)).header("cookie", &cookie).send().await.unwrap();
    let html = page.text().await.unwrap();
    let token = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    (cookie, token)
}

#[tokio::test]
async fn a_form_post_without_the_csrf_token_is_refused() {
    let (app, [site]) = spawn_app_with_sites(["s"]).await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    let (cookie, token) = sign_in_without_a_browser(&app, &app.master_key).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let block = format!("{}/keys/{id}/block", app.address);
    let refused = client.post(&block).header("cookie", &cookie).form(&[("x", "y")]).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let forged = client.post(&block).header("cookie", &cookie).form(&[("csrf", "forged")]).send().await.unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(verify_code(&app, &key).await, "valid", "nothing was blocked");
    let accepted =
        client.post(&block).header("cookie", &cookie).form(&[("csrf", token.as_str())]).send().await.unwrap();
    assert_eq!(accepted.status(), 303);
    assert_eq!(verify_code(&app, &key).await, "key_blocked");
}

#[tokio::test]
async fn a_stale_key_is_marked_and_can_be_rotated_from_its_page() {
    let app =
        crate::helpers::spawn_app_with(crate::helpers::Options { manual_clock: true, ..Default::default() }).await;
    let site = app.create_site("s").await;
    let (id, old) = app.create_key("read", Some(&site)).await;
    app.advance_clock(chrono::Duration::days(91));
    let browser = start_browser().await;
    browser.sign_in(&app, &app.master_key).await;
    browser.open(&app, &format!("/keys?site={site}")).await;
    browser.expect_text("Stale").await;
    browser.open(&app, &format!("/keys/{id}")).await;
    browser.click_button("Rotate").await;
    browser.expect_text("Copy it now; you won't be able to see it again.").await;
    let new = browser.client.find(Locator::Css("#new-key")).await.unwrap().text().await.unwrap().trim().to_owned();
    assert_ne!(new, old);
    assert_eq!(verify_code(&app, &new).await, "valid");
    assert_eq!(verify_code(&app, &old).await, "key_expired", "no grace: the old key stops at once");
    browser.client.clone().close().await.unwrap();
}
