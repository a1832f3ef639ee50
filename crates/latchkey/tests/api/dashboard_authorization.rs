//! The dashboard's state-changing routes against every kind of signed-in user, without a
//! browser: the same policy as the API (through the same service operations), a CSRF
//! token on every form, and sign-in refused to keys that may not manage keys.

use crate::helpers::{post_sign_in, spawn_app, spawn_app_with_sites, TestApp};
use reqwest::redirect::Policy;
use reqwest::StatusCode;

struct Session {
    cookie: String,
    csrf: String,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

/// Signs in with `key`; `None` when sign-in is refused (with its status).
async fn sign_in(app: &TestApp, key: &str) -> Result<Session, StatusCode> {
    let response = post_sign_in(&app.address, key).await;
    let session = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("latchkey_session="));
    let Some(set_cookie) = session else {
        return Err(response.status());
    };
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let page = client().get(format!("{}/keys", app.address)).header("cookie", &cookie).send().await.unwrap();
    let html = page.text().await.unwrap();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    Ok(Session { cookie, csrf })
}

async fn post_form(app: &TestApp, session: &Session, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
    let mut form: Vec<(&str, &str)> = vec![("csrf", session.csrf.as_str())];
    form.extend_from_slice(fields);
    let response = client()
        .post(format!("{}{}", app.address, path))
        .header("cookie", &session.cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn read_and_write_keys_cannot_sign_in_and_admins_and_masters_can() {
    let (app, [site]) = spawn_app_with_sites(["a"]).await;
    for (level, expected) in [("read", Err(403)), ("write", Err(403)), ("admin", Ok(())), ("master", Ok(()))] {
        let key = app.create_key(level, (level != "master").then_some(site.as_str())).await.1;
        let signed_in = sign_in(&app, &key).await.map(|_| ()).map_err(|status| status.as_u16());
        assert_eq!(signed_in, expected, "{level}");
    }
}

/// A form post: the path (with `{target}`, `{site}`, `{fresh_site}`), its fields (`{form}`
/// is a fresh single-use id), and the status expected for an admin of the site, an admin of
/// another site, and Master.
type FormCase = (&'static str, Vec<(&'static str, &'static str)>, [u16; 3]);

#[tokio::test]
async fn every_dashboard_form_obeys_the_same_policy_as_the_api() {
    let (app, [site, other]) = spawn_app_with_sites(["a", "b"]).await;
    let admin = sign_in(&app, &app.create_key("admin", Some(&site)).await.1).await.unwrap();
    let other_admin = sign_in(&app, &app.create_key("admin", Some(&other)).await.1).await.unwrap();
    let master = sign_in(&app, &app.master_key).await.unwrap();
    let cases: Vec<FormCase> = vec![
        ("/keys/{target}/block", vec![], [303, 404, 303]),
        ("/keys/{target}/unblock", vec![], [303, 404, 303]),
        ("/keys/{target}", vec![("name", "renamed"), ("permission", "read")], [303, 404, 303]),
        ("/keys/{target}/rotate", vec![("form_id", "{form}"), ("grace_seconds", "0")], [200, 404, 200]),
        ("/keys/{target}/delete", vec![], [303, 404, 303]),
        (
            "/keys/new",
            vec![("form_id", "{form}"), ("name", "n"), ("permission", "read"), ("site_id", "{site}")],
            [200, 403, 200],
        ),
        ("/keys/new", vec![("form_id", "{form}"), ("name", "m"), ("permission", "master")], [403, 403, 200]),
        ("/sites", vec![("name", "new site")], [403, 403, 303]),
        ("/sites/{fresh_site}/rename", vec![("name", "renamed")], [403, 403, 303]),
        ("/sites/{fresh_site}/delete", vec![], [403, 403, 303]),
        (
            "/webhooks",
            vec![("form_id", "{form}"), ("url", "https://example.com/hook"), ("site_id", "{site}")],
            [200, 403, 200],
        ),
        ("/webhooks/{webhook}", vec![("url", "https://example.com/moved")], [303, 404, 303]),
        ("/webhooks/{webhook}/test", vec![], [303, 404, 303]),
        ("/webhooks/{webhook}/rotate-secret", vec![], [200, 404, 200]),
        ("/webhooks/{webhook}/delete", vec![], [303, 404, 303]),
    ];
    let mut failures = Vec::new();
    for (n, (path, fields, expected)) in cases.iter().enumerate() {
        for (who, (session, want)) in
            ["admin", "other admin", "master"].iter().zip([&admin, &other_admin, &master].into_iter().zip(expected))
        {
            let target = app.create_key("read", Some(&site)).await.0;
            let fresh_site = app.create_site("throwaway").await;
            let hook = serde_json::json!({ "url": "https://example.com/site-hook", "site_id": site });
            let webhook =
                app.post("/api/v1/webhooks", &app.master_key, hook).await.1["id"].as_str().unwrap().to_owned();
            let form_id = format!("form-{n}-{who}");
            let fill = |text: &str| {
                text.replace("{target}", &target)
                    .replace("{site}", &site)
                    .replace("{fresh_site}", &fresh_site)
                    .replace("{form}", &form_id)
                    .replace("{webhook}", &webhook)
            };
            let filled: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), fill(v))).collect();
            let borrowed: Vec<(&str, &str)> = filled.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (status, _) = post_form(&app, session, &fill(path), &borrowed).await;
            if status.as_u16() != *want {
                failures.push(format!("POST {path} as {who}: expected {want}, got {status}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} cells differ:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_refused_with_its_own_code() {
    let (app, [site]) = spawn_app_with_sites(["a"]).await;
    let (id, _) = app.create_key("read", Some(&site)).await;
    let master = sign_in(&app, &app.master_key).await.unwrap();
    let forged = Session { cookie: master.cookie.clone(), csrf: "forged".into() };
    let (status, page) = post_form(&app, &forged, &format!("/keys/{id}/block"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("data-error-code=\"csrf_failed\""), "the page names the code: {page}");
    let (_, shown) = app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await;
    assert_eq!(shown["status"], "active", "nothing was blocked");
}

#[tokio::test]
async fn an_admin_key_allowed_only_from_elsewhere_cannot_sign_in_or_stay_signed_in() {
    let (app, [site]) = spawn_app_with_sites(["a"]).await;
    let (id, key) = app.create_key("admin", Some(&site)).await;
    let session = sign_in(&app, &key).await.unwrap();
    let only_ten = serde_json::json!({ "ip_allowlist": ["10.0.0.0/8"] });
    let (status, _) =
        app.call(reqwest::Method::PATCH, &format!("/api/v1/keys/{id}"), Some(&app.master_key), Some(only_ten)).await;
    assert_eq!(status, StatusCode::OK);
    let page = client().get(format!("{}/keys", app.address)).header("cookie", &session.cookie).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER, "the open session ends");
    assert_eq!(page.headers()["location"], "/login?reason=ip_not_allowed");
    assert_eq!(sign_in(&app, &key).await.err(), Some(StatusCode::UNAUTHORIZED), "and a new one cannot start");
}

#[tokio::test]
async fn saving_the_edit_form_keeps_credits_spent_since_the_page_was_shown() {
    let (app, [site]) = spawn_app_with_sites(["a"]).await;
    let body = serde_json::json!({ "name": "metered", "permission": "read", "site_id": site,
        "credits": { "remaining": 10 } });
    let (_, created) = app.post("/api/v1/keys", &app.master_key, body).await;
    let (id, key) = (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned());
    let master = sign_in(&app, &app.master_key).await.unwrap();
    // The page shows 10; meanwhile the key spends 4.
    let spend = serde_json::json!({ "key": key, "cost": 4 });
    let (_, spent) = app.call(reqwest::Method::POST, "/api/v1/verify", None, Some(spend)).await;
    assert_eq!(spent["remaining"], 6);
    let form = [("name", "renamed"), ("permission", "read"), ("credits_remaining", "10"), ("credits_was", "10")];
    let (status, _) = post_form(&app, &master, &format!("/keys/{id}"), &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, shown) = app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await;
    assert_eq!(shown["name"], "renamed");
    assert_eq!(shown["credits"]["remaining"], 6, "the rename did not reset the balance");
    let top_up = [("name", "renamed"), ("permission", "read"), ("credits_remaining", "50"), ("credits_was", "10")];
    post_form(&app, &master, &format!("/keys/{id}"), &top_up).await;
    let (_, shown) = app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await;
    assert_eq!(shown["credits"]["remaining"], 50, "a changed balance is set");
}

#[tokio::test]
async fn a_sign_in_without_the_forms_login_token_is_refused() {
    let app = spawn_app().await;
    let forged = client().post(format!("{}/login", app.address)).form(&[("key", app.master_key.as_str())]);
    let response = forged.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()["x-latchkey-error"], "csrf_failed");
    let set_cookie: Vec<_> = response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(set_cookie.iter().all(|c| !c.starts_with("latchkey_session")), "no session: {set_cookie:?}");
    assert_eq!(post_sign_in(&app.address, &app.master_key).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn behind_a_trusted_https_proxy_the_session_cookie_is_secure_whatever_the_forwarded_address() {
    let config = latchkey_server::ServerConfig { trusted_proxies: "127.0.0.1".parse().unwrap(), ..Default::default() };
    let app = crate::helpers::spawn_app_with(crate::helpers::Options { config, ..Default::default() }).await;
    let page = client().get(format!("{}/login", app.address)).send().await.unwrap();
    let login_cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let token = html.split("name=\"login_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let response = client()
        .post(format!("{}/login", app.address))
        .header("cookie", login_cookie)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "203.0.113.5")
        .form(&[("key", app.master_key.as_str()), ("login_token", token.as_str())])
        .send()
        .await
        .unwrap();
    let session = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(session.starts_with("latchkey_session=") && session.contains("; Secure"), "{session}");
}

#[tokio::test]
async fn repeated_failed_sign_ins_from_one_address_are_throttled() {
    let config = latchkey_server::ServerConfig {
        service: latchkey_service::ServiceConfig {
            failure_throttle: latchkey_server::throttle::ThrottleConfig { max_failures: 3, window_seconds: 60 },
            ..Default::default()
        },
        ..Default::default()
    };
    let app = crate::helpers::spawn_app_with(crate::helpers::Options { config, manual_clock: true }).await;
    let guess = latchkey_core::KeyFormat::default().generate();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(post_sign_in(&app.address, guess.expose()).await.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
}

#[tokio::test]
async fn a_form_the_server_cannot_read_comes_back_as_a_page_not_as_text() {
    let app = spawn_app().await;
    let master = sign_in(&app, &app.master_key).await.unwrap();
    // A form without its required fields: axum's own rejection, rewrapped.
    let response = client()
        .post(format!("{}/keys/new", app.address))
        .header("cookie", &master.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}", master.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(response.text().await.unwrap().contains("data-error-code=\"validation_failed\""));
}

/// The session cookie a successful sign-in sets (`latchkey_session=…`).
fn session_cookie(signed_in: &reqwest::Response) -> String {
    let set_cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    assert!(set_cookie.starts_with("latchkey_session="), "{set_cookie}");
    set_cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_dashboard_session_is_stored_and_survives_a_restart_of_the_server() {
    let app = spawn_app().await;
    let signed_in = post_sign_in(&app.address, &app.master_key).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let cookie = session_cookie(&signed_in);
    let app = app.restart().await;
    let no_redirects = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let page = no_redirects.get(format!("{}/keys", app.address)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "the session outlived the process that started it");
    // Signing out ends it in the store, not only in one process's memory.
    let html = page.text().await.unwrap();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let signed_out = no_redirects
        .post(format!("{}/logout", app.address))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    let after = no_redirects.get(format!("{}/keys", app.address)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert!(after.headers()["location"].to_str().unwrap().starts_with("/login"));
}
