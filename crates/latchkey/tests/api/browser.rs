//! The dashboard in a real headless Chromium, driven through chromedriver (Debian's
//! `chromium` and `chromium-driver`; `.ci/run` installs them): the harness every
//! `dashboard_*` browser test uses, and walks through the whole dashboard. The pictures in
//! `docs/screenshots/` come from `dashboard_screenshots.rs`.

use crate::helpers::{spawn_app, spawn_app_with_sites, start_and_wait, ChildProcess, TestApp};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

pub struct Browser {
    pub client: Client,
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

pub async fn start_browser() -> Browser {
    start_browser_with(&[]).await
}

/// A browser signed in to `app` with `key`.
pub async fn signed_in(app: &TestApp, key: &str) -> Browser {
    let browser = start_browser().await;
    browser.sign_in(app, key).await;
    browser
}

/// A headless Chromium with these extra command-line arguments.
pub async fn start_browser_with(extra_args: &[&str]) -> Browser {
    let chromedriver = require("/usr/bin/chromedriver", "chromium-driver");
    let chromium = require("/usr/bin/chromium", "chromium");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = Command::new(chromedriver);
    command.arg(format!("--port={port}"));
    let driver = start_and_wait(command, &format!("http://127.0.0.1:{port}/status"), "chromedriver").await;
    let profile = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,900",
    ]
    .map(str::to_owned)
    .to_vec();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    args.extend(extra_args.iter().map(|arg| arg.to_string()));
    let capabilities = json!({ "goog:chromeOptions": { "binary": chromium, "args": args } });
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    Browser { client, _driver: driver, _profile: profile }
}

/// Polls `read` every 50 ms until `done` accepts what it read, for at most 5 s; returns
/// the last reading either way, for the caller's assertion to show.
pub async fn poll<T, F, Fut>(mut read: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let start = std::time::Instant::now();
    loop {
        let value = read().await;
        if done(&value) || start.elapsed() > Duration::from_secs(5) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Browser {
    pub async fn open(&self, app: &TestApp, path: &str) {
        self.open_url(&format!("{}{path}", app.address)).await;
    }

    pub async fn open_url(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("no field {css}"));
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("no {css}")).click().await.unwrap();
    }

    /// Clicks the button or link whose text is `text`, once the page shows it.
    pub async fn click_button(&self, text: &str) {
        let xpath = format!("//button[normalize-space()='{text}'] | //a[normalize-space()='{text}']");
        let found = poll(|| self.client.find(Locator::XPath(&xpath)), Result::is_ok).await;
        found.unwrap_or_else(|_| panic!("no button {text:?}")).click().await.unwrap();
    }

    /// Picks the option whose text is `text` in the select `css`.
    pub async fn choose(&self, css: &str, text: &str) {
        let select = self.client.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("no select {css}"));
        select.select_by_label(text).await.unwrap_or_else(|_| panic!("no option {text:?} in {css}"));
    }

    /// The page's text once loaded. Clicks that submit a form return before the next
    /// page has loaded, so reads retry until the document is stable.
    pub async fn page_text(&self) -> String {
        let read = || async { self.client.find(Locator::Css("body")).await.ok()?.text().await.ok() };
        poll(read, Option::is_some).await.expect("the page never settled")
    }

    /// Waits (with a deadline) until the page shows `text`; returns the page's text.
    pub async fn expect_text(&self, text: &str) -> String {
        let last = poll(|| self.page_text(), |page| page.contains(text)).await;
        assert!(last.contains(text), "the page never showed {text:?}; it shows:\n{last}");
        last
    }

    /// The text of the first element matching `css`, once there is one.
    pub async fn text_of(&self, css: &str) -> String {
        let read = || async { self.client.find(Locator::Css(css)).await.ok()?.text().await.ok() };
        poll(read, Option::is_some).await.unwrap_or_else(|| panic!("nothing matches {css}"))
    }

    /// The value of the form field `css` (what is typed in it, or the picked option).
    pub async fn value_of(&self, css: &str) -> String {
        let field = self.client.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("no field {css}"));
        field.prop("value").await.unwrap().unwrap_or_default()
    }

    /// Waits (with a deadline) until the browser is at `path`.
    pub async fn expect_path(&self, path: &str) {
        let last = poll(|| async { self.client.current_url().await.unwrap().path().to_owned() }, |at| at == path).await;
        assert_eq!(last, path, "expected to be at {path}");
    }

    /// Runs `script` in the page and returns its result.
    pub async fn js(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|error| panic!("{script}: {error}"))
    }

    /// How many pixels the page is wider than the window (0 when it never scrolls sideways).
    pub async fn sideways_overflow(&self) -> i64 {
        self.js("return document.documentElement.scrollWidth - window.innerWidth").await.as_i64().unwrap()
    }

    /// Signs in and waits for the first page behind the sign-in.
    pub async fn sign_in(&self, app: &TestApp, key: &str) {
        self.sign_in_at(&app.address, key).await;
    }

    /// Signs in at `base` (an address other than the app's own, to test another origin).
    pub async fn sign_in_at(&self, base: &str, key: &str) {
        self.try_sign_in_at(base, key).await;
        self.expect_text("Sign out").await;
    }

    /// Sends the sign-in form, whatever the answer.
    pub async fn try_sign_in_at(&self, base: &str, key: &str) {
        self.open_url(&format!("{base}/login")).await;
        self.fill("#key", key).await;
        self.click_button("Sign in").await;
    }

    /// Sends a DevTools command through chromedriver.
    pub async fn devtools(&self, cmd: &'static str, params: serde_json::Value) -> serde_json::Value {
        self.client.issue_cmd(DevTools { cmd, params }).await.unwrap_or_else(|error| panic!("{cmd}: {error}"))
    }

    /// Lays the page out `width` × `height` CSS pixels, as a phone of that size would.
    /// (Resizing the window cannot: headless Chromium keeps windows at least 500 px wide.)
    pub async fn set_viewport(&self, width: u32, height: u32) {
        let metrics = json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false });
        self.devtools("Emulation.setDeviceMetricsOverride", metrics).await;
        let inner = self.js("return window.innerWidth").await;
        assert_eq!(inner.as_u64(), Some(u64::from(width)), "the page is laid out {width} px wide");
    }

    /// The current page as a PNG in `dir`, as wide as the viewport and as tall as the page.
    pub async fn screenshot_into(&self, dir: &std::path::Path, name: &str) {
        let width = self.js("return window.innerWidth").await.as_u64().unwrap() as u32;
        let viewport = self.js("return window.innerHeight").await.as_u64().unwrap() as u32;
        let height = self.js("return document.documentElement.scrollHeight").await.as_u64().unwrap() as u32;
        self.set_viewport(width, height.clamp(viewport, 6000)).await;
        let png = self.client.screenshot().await.unwrap();
        self.set_viewport(width, viewport).await;
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn close(self) {
        self.client.clone().close().await.unwrap();
    }
}

/// A DevTools command, sent through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct DevTools {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        base_url.join(&format!("session/{}/goog/cdp/execute", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(json!({ "cmd": self.cmd, "params": self.params }).to_string()))
    }
}

pub async fn verify_code(app: &TestApp, key: &str) -> String {
    let (_, answer) = app.call(reqwest::Method::POST, "/api/v1/verify", None, Some(json!({ "key": key }))).await;
    answer["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_master_walks_the_whole_api_keys_page_in_chromium() {
    let app = spawn_app().await;
    let browser = signed_in(&app, &app.master_key).await;
    browser.expect_path("/keys").await;

    // Sites: create one.
    browser.open(&app, "/sites").await;
    browser.fill("#new-site", "Astro blog").await;
    browser.click_button("Create site").await;
    browser.expect_text("Created the site Astro blog.").await;
    let (_, sites) = app.get("/api/v1/sites", &app.master_key).await;
    let site = sites["data"][0]["id"].as_str().unwrap().to_owned();

    // Empty state, then a new Read key shown once.
    browser.open(&app, &format!("/keys?site={site}")).await;
    browser.expect_text("This site has no API keys yet").await;
    browser.click_button("New API Key").await;
    browser.fill("#name", "Frontend").await;
    browser.choose("#permission", "Read").await;
    browser.click_button("Create key").await;
    browser.expect_text("Copy this key now: it is shown only this once.").await;
    let key = browser.text_of("#new-key").await.trim().to_owned();
    assert_eq!(verify_code(&app, &key).await, "valid", "the key from the one-time page works");

    // Listed with the right prefix and status; the full key is nowhere on the page.
    browser.click_button("Done").await;
    let listing = browser.expect_text(&key[..12]).await;
    assert!(listing.contains("Frontend") && listing.contains("Active"), "{listing}");
    assert!(!browser.client.source().await.unwrap().contains(&key));

    // Block (asked first), unblock, rename, delete (asked first).
    browser.click("a[href^='/keys/key_']").await;
    browser.expect_text("Danger zone").await;
    browser.click_button("Block…").await;
    browser.expect_text("Block the key Frontend").await;
    assert_eq!(verify_code(&app, &key).await, "valid", "asking blocks nothing");
    browser.click_button("Block Frontend").await;
    browser.expect_text("Unblock").await;
    assert_eq!(verify_code(&app, &key).await, "key_blocked");
    browser.click_button("Unblock").await;
    browser.expect_text("Unblocked “Frontend”").await;
    assert_eq!(verify_code(&app, &key).await, "valid");
    browser.click("#edit summary").await;
    browser.fill("#name", "Frontend v2").await;
    browser.click_button("Save changes").await;
    browser.expect_text("Saved the changes to “Frontend v2”.").await;
    browser.click_button("Delete…").await;
    browser.expect_text("Delete the key Frontend v2").await;
    browser.click_button("Delete Frontend v2").await;
    browser.expect_text("This site has no API keys yet").await;
    assert_eq!(verify_code(&app, &key).await, "invalid_api_key");

    // Audit shows what happened, in words.
    browser.open(&app, "/audit").await;
    let audit = browser.expect_text("Key deleted").await;
    assert!(audit.contains("Key blocked") && audit.contains("Key created"), "{audit}");

    // Sign out: the session is gone.
    browser.click_button("Sign out").await;
    browser.expect_path("/login").await;
    browser.expect_text("You have signed out.").await;
    browser.open(&app, "/keys").await;
    browser.expect_path("/login").await;
    browser.close().await;
}

#[tokio::test]
async fn an_admin_sees_only_its_site_cannot_pick_master_and_is_signed_out_when_blocked() {
    let (app, [own, other]) = spawn_app_with_sites(["own", "other"]).await;
    let (admin_id, admin) = app.create_key("admin", Some(&own)).await;
    let browser = signed_in(&app, &admin).await;
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
    browser.close().await;
}

#[tokio::test]
async fn a_read_key_cannot_sign_in_and_says_why() {
    let (app, [site]) = spawn_app_with_sites(["s"]).await;
    let (_, read) = app.create_key("read", Some(&site)).await;
    let browser = start_browser().await;
    browser.try_sign_in_at(&app.address, &read).await;
    browser.expect_path("/login").await;
    browser.expect_text("Read and Write keys cannot sign in").await;
    let cookies = browser.client.get_all_cookies().await.unwrap();
    assert!(cookies.iter().all(|c| c.name() != "latchkey_session"));
    browser.close().await;
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
    let browser = signed_in(&app, &app.master_key).await;
    browser.open(&app, &format!("/keys?site={site}")).await;
    browser.expect_text("Stale").await;
    browser.open(&app, &format!("/keys/{id}")).await;
    browser.choose("#grace", "Stops at once").await;
    browser.click_button("Rotate…").await;
    browser.expect_text("The old key stops working at once.").await;
    browser.click_button("Rotate read key").await;
    browser.expect_text("Copy this key now: it is shown only this once.").await;
    let new = browser.text_of("#new-key").await.trim().to_owned();
    assert_ne!(new, old);
    assert_eq!(verify_code(&app, &new).await, "valid");
    assert_eq!(verify_code(&app, &old).await, "key_expired", "no grace: the old key stops at once");
    browser.close().await;
}
