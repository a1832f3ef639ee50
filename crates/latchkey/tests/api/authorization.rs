//! The route × caller matrix: every management route against Read, Write, Admin and
//! Master keys, an Admin of another site, no key, and a blocked key, with the exact
//! status and error code of each cell.

use crate::helpers::{assert_error, error_code, spawn_app, spawn_app_with_sites, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;

#[derive(Clone, Copy, Debug)]
enum Who {
    Read,
    Write,
    Admin,
    Master,
    OtherSiteAdmin,
    NoKey,
    Blocked,
}

const EVERYONE: [Who; 7] =
    [Who::Read, Who::Write, Who::Admin, Who::Master, Who::OtherSiteAdmin, Who::NoKey, Who::Blocked];

struct Fixture {
    app: TestApp,
    site: String,
    keys: Vec<(String, String)>,
}

impl Fixture {
    async fn new() -> Self {
        let app = spawn_app().await;
        let site = app.create_site("site A").await;
        let other = app.create_site("site B").await;
        let read = app.create_key("read", Some(&site)).await;
        let write = app.create_key("write", Some(&site)).await;
        let admin = app.create_key("admin", Some(&site)).await;
        let other_admin = app.create_key("admin", Some(&other)).await;
        let blocked = app.create_key("admin", Some(&site)).await;
        app.block(&blocked.0).await;
        let master = (String::new(), app.master_key.clone());
        Self { app, site, keys: vec![read, write, admin, master, other_admin, (String::new(), String::new()), blocked] }
    }

    /// A fresh webhook endpoint of site A (for no event that happens here).
    async fn webhook(&self) -> String {
        let body = json!({ "url": "https://receiver.example/hook", "site_id": self.site, "events": ["key.leaked"] });
        let (status, created) = self.app.post("/api/v1/webhooks", &self.app.master_key, body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["id"].as_str().unwrap().to_owned()
    }

    fn key(&self, who: Who) -> Option<&str> {
        match who {
            Who::NoKey => None,
            _ => Some(self.keys[who as usize].1.as_str()),
        }
    }
}

/// What a cell expects: a status, and for errors the error code.
type Expect = (u16, &'static str);
const OK: Expect = (200, "");
const CREATED: Expect = (201, "");
const GONE: Expect = (204, "");
const DENIED: Expect = (403, "insufficient_permission");
const HIDDEN: Expect = (404, "not_found");
const MISSING: Expect = (401, "missing_api_key");
const BLOCKED: Expect = (401, "key_blocked");
const ACCEPTED: Expect = (202, "");

struct Route {
    method: Method,
    /// `{site}`: site A; `{target}`: a fresh Read key of site A; `{fresh_site}`: a new site;
    /// `{fresh_hash}`: a SHA-256 no key has yet.
    path: &'static str,
    body: Option<Value>,
    /// Expectations in the order of `EVERYONE`.
    expect: [Expect; 7],
}

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

/// One row of the matrix.
fn row(method: Method, path: &'static str, body: Option<Value>, expect: [Expect; 7]) -> Route {
    Route { method, path, body, expect }
}

fn routes() -> Vec<Route> {
    let name = json!({ "name": "renamed" });
    let new_key = json!({ "name": "new", "permission": "read", "site_id": "{site}" });
    vec![
        row(GET, "/api/v1/sites", None, [OK, OK, OK, OK, OK, MISSING, BLOCKED]),
        row(POST, "/api/v1/sites", Some(name.clone()), [DENIED, DENIED, DENIED, CREATED, DENIED, MISSING, BLOCKED]),
        row(GET, "/api/v1/sites/{site}", None, [OK, OK, OK, OK, DENIED, MISSING, BLOCKED]),
        row(PATCH, "/api/v1/sites/{site}", Some(name.clone()), [DENIED, DENIED, DENIED, OK, DENIED, MISSING, BLOCKED]),
        row(DELETE, "/api/v1/sites/{fresh_site}", None, [DENIED, DENIED, DENIED, GONE, DENIED, MISSING, BLOCKED]),
        row(GET, "/api/v1/keys?site={site}", None, [DENIED, DENIED, OK, OK, DENIED, MISSING, BLOCKED]),
        row(GET, "/api/v1/keys", None, [DENIED, DENIED, OK, OK, OK, MISSING, BLOCKED]),
        row(POST, "/api/v1/keys", Some(new_key), [DENIED, DENIED, CREATED, CREATED, DENIED, MISSING, BLOCKED]),
        row(GET, "/api/v1/keys/{target}", None, [DENIED, DENIED, OK, OK, HIDDEN, MISSING, BLOCKED]),
        row(PATCH, "/api/v1/keys/{target}", Some(name), [DENIED, DENIED, OK, OK, HIDDEN, MISSING, BLOCKED]),
        row(POST, "/api/v1/keys/{target}/block", None, [DENIED, DENIED, OK, OK, HIDDEN, MISSING, BLOCKED]),
        row(POST, "/api/v1/keys/{target}/unblock", None, [DENIED, DENIED, OK, OK, HIDDEN, MISSING, BLOCKED]),
        row(DELETE, "/api/v1/keys/{target}", None, [DENIED, DENIED, GONE, GONE, HIDDEN, MISSING, BLOCKED]),
        row(GET, "/api/v1/whoami", None, [OK, OK, OK, OK, OK, MISSING, BLOCKED]),
        row(GET, "/api/v1/audit?site={site}", None, [DENIED, DENIED, OK, OK, DENIED, MISSING, BLOCKED]),
        row(GET, "/api/v1/audit", None, [DENIED, DENIED, OK, OK, OK, MISSING, BLOCKED]),
        row(
            POST,
            "/api/v1/keys/{target}/rotate",
            Some(json!({ "grace_seconds": 60 })),
            [DENIED, DENIED, CREATED, CREATED, HIDDEN, MISSING, BLOCKED],
        ),
        row(GET, "/api/v1/keys/{target}/usage?days=7", None, [DENIED, DENIED, OK, OK, HIDDEN, MISSING, BLOCKED]),
        row(
            POST,
            "/api/v1/keys/import",
            Some(
                json!({ "keys": [{ "name": "old", "permission": "read", "site_id": "{site}", "sha256": "{fresh_hash}" }] }),
            ),
            [DENIED, DENIED, CREATED, CREATED, DENIED, MISSING, BLOCKED],
        ),
        // Needs no key: the reported key is the subject, whoever reports it.
        row(
            POST,
            "/api/v1/leaks",
            Some(json!({ "keys": ["lk_not_a_real_key"], "source": "the matrix" })),
            [ACCEPTED; 7],
        ),
        // GitHub's signed format: not configured here, so not served to anyone.
        row(
            POST,
            "/api/v1/leaks/github",
            Some(json!([{ "token": "lk_x", "type": "t", "url": "u", "source": "content" }])),
            [HIDDEN; 7],
        ),
        row(GET, "/api/v1/webhooks", None, [DENIED, DENIED, OK, OK, OK, MISSING, BLOCKED]),
        row(
            POST,
            "/api/v1/webhooks",
            Some(json!({ "url": "https://receiver.example/hook", "site_id": "{site}", "events": ["key.leaked"] })),
            [DENIED, DENIED, CREATED, CREATED, DENIED, MISSING, BLOCKED],
        ),
        row(GET, "/api/v1/webhooks/{webhook}", None, [DENIED, DENIED, OK, OK, HIDDEN, MISSING, BLOCKED]),
        row(
            PATCH,
            "/api/v1/webhooks/{webhook}",
            Some(json!({ "description": "edited" })),
            [DENIED, DENIED, OK, OK, HIDDEN, MISSING, BLOCKED],
        ),
        row(DELETE, "/api/v1/webhooks/{webhook}", None, [DENIED, DENIED, GONE, GONE, HIDDEN, MISSING, BLOCKED]),
        row(POST, "/api/v1/webhooks/{webhook}/rotate-secret", None, [DENIED, DENIED, OK, OK, HIDDEN, MISSING, BLOCKED]),
        row(
            POST,
            "/api/v1/webhooks/{webhook}/test",
            None,
            [DENIED, DENIED, ACCEPTED, ACCEPTED, HIDDEN, MISSING, BLOCKED],
        ),
        row(GET, "/api/v1/webhooks/{webhook}/deliveries", None, [DENIED, DENIED, OK, OK, HIDDEN, MISSING, BLOCKED]),
        row(GET, "/api/v1/events?wait=0", None, [DENIED, DENIED, OK, OK, OK, MISSING, BLOCKED]),
    ]
}

#[tokio::test]
async fn every_route_answers_every_kind_of_caller_exactly_as_specified() {
    let fixture = Fixture::new().await;
    let app = &fixture.app;
    let mut failures = Vec::new();
    for route in routes() {
        for (who, (status, code)) in EVERYONE.into_iter().zip(route.expect) {
            let target = app.create_key("read", Some(&fixture.site)).await.0;
            let fresh_site = app.create_site("throwaway").await;
            let webhook = fixture.webhook().await;
            let fresh_hash: String =
                sha2::Sha256::digest(target.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect();
            let fill = |text: &str| {
                text.replace("{site}", &fixture.site)
                    .replace("{target}", &target)
                    .replace("{fresh_site}", &fresh_site)
                    .replace("{fresh_hash}", &fresh_hash)
                    .replace("{webhook}", &webhook)
            };
            let body = route.body.as_ref().map(|b| serde_json::from_str(&fill(&b.to_string())).unwrap());
            let (got, answer) = app.call(route.method.clone(), &fill(route.path), fixture.key(who), body).await;
            let got_code = if got.is_success() { "" } else { answer["error"]["code"].as_str().unwrap_or("<not JSON>") };
            if got != StatusCode::from_u16(status).unwrap() || got_code != code {
                failures.push(format!(
                    "{} {} as {who:?}: expected {status} {code}, got {} {got_code}",
                    route.method,
                    route.path,
                    got.as_u16()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} cells differ:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn an_admin_cannot_create_raise_to_or_see_a_master_key() {
    let (app, [site]) = spawn_app_with_sites(["a"]).await;
    let (_, admin) = app.create_key("admin", Some(&site)).await;
    let (status, body) =
        app.post("/api/v1/keys", &admin, json!({ "name": "m", "permission": "master", "site_id": null })).await;
    assert_eq!((status.as_u16(), error_code(&body)), (403, "insufficient_permission"));
    let (read_id, _) = app.create_key_as(&admin, "read", Some(&site)).await;
    assert_error(
        app.call(
            Method::PATCH,
            &format!("/api/v1/keys/{read_id}"),
            Some(&admin),
            Some(json!({"permission": "master"})),
        )
        .await,
        403,
        "insufficient_permission",
    );
    let (master_id, _) = app.create_key("master", None).await;
    assert_error(app.get(&format!("/api/v1/keys/{master_id}"), &admin).await, 404, "not_found");
    assert_error(app.post(&format!("/api/v1/keys/{master_id}/block"), &admin, json!({})).await, 404, "not_found");
    let (_, listed) = app.get("/api/v1/keys", &admin).await;
    assert!(listed["data"].as_array().unwrap().iter().all(|k| k["permission"] != "master"));
}

#[tokio::test]
async fn an_admin_of_site_a_cannot_touch_site_b() {
    let (app, [a, b]) = spawn_app_with_sites(["a", "b"]).await;
    let (_, admin_a) = app.create_key("admin", Some(&a)).await;
    let (key_b, _) = app.create_key("read", Some(&b)).await;
    let (status, body) =
        app.post("/api/v1/keys", &admin_a, json!({ "name": "x", "permission": "read", "site_id": b })).await;
    assert_eq!((status.as_u16(), error_code(&body)), (403, "insufficient_permission"));
    assert_error(
        app.call(Method::DELETE, &format!("/api/v1/keys/{key_b}"), Some(&admin_a), None).await,
        404,
        "not_found",
    );
    let (status, _) = app.get(&format!("/api/v1/keys/{key_b}"), &app.master_key).await;
    assert_eq!(status, StatusCode::OK, "the key of site B is untouched");
    let (_, sites) = app.get("/api/v1/sites", &admin_a).await;
    assert_eq!(sites["data"].as_array().unwrap().len(), 1);
    assert_eq!(sites["data"][0]["id"], a.as_str());
}

#[tokio::test]
async fn nobody_can_create_a_key_above_their_own_level() {
    let (app, [site]) = spawn_app_with_sites(["a"]).await;
    let (_, admin) = app.create_key("admin", Some(&site)).await;
    let (_, created) = app.create_key_as(&admin, "admin", Some(&site)).await;
    let (status, _) = app.get("/api/v1/whoami", &created).await;
    assert_eq!(status, StatusCode::OK);
    let (_, write) = app.create_key("write", Some(&site)).await;
    let (status, body) =
        app.post("/api/v1/keys", &write, json!({ "name": "x", "permission": "read", "site_id": site })).await;
    assert_eq!((status.as_u16(), error_code(&body)), (403, "insufficient_permission"));
}

#[tokio::test]
async fn the_last_active_master_key_cannot_be_blocked_or_deleted() {
    let app = spawn_app().await;
    let (_, me) = app.get("/api/v1/whoami", &app.master_key).await;
    let my_id = me["id"].as_str().unwrap();
    assert_error(
        app.post(&format!("/api/v1/keys/{my_id}/block"), &app.master_key, json!({})).await,
        409,
        "last_master",
    );
    assert_error(
        app.call(Method::DELETE, &format!("/api/v1/keys/{my_id}"), Some(&app.master_key), None).await,
        409,
        "last_master",
    );
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/keys/{my_id}"),
            Some(&app.master_key),
            Some(json!({"permission": "admin"})),
        )
        .await;
    assert_eq!(status.as_u16(), 422, "a Master key cannot become a site key: {body}");
    let (_, second) = app.create_key("master", None).await;
    let (status, _) = app.post(&format!("/api/v1/keys/{my_id}/block"), &second, json!({})).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_last_lasting_master_cannot_be_given_an_expiry_or_an_allowlist_but_may_be_rotated() {
    let app = spawn_app().await;
    let (_, me) = app.get("/api/v1/whoami", &app.master_key).await;
    let me = format!("/api/v1/keys/{}", me["id"].as_str().unwrap());
    let in_a_month = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    for edit in [json!({ "expires_at": in_a_month }), json!({ "ip_allowlist": ["10.0.0.0/8"] })] {
        let (status, body) = app.call(Method::PATCH, &me, Some(&app.master_key), Some(edit.clone())).await;
        assert_eq!((status.as_u16(), error_code(&body)), (409, "last_master"), "{edit}");
    }
    // Rotating the only Master leaves its replacement, even with no grace at all.
    let (status, rotated) = app.post(&format!("{me}/rotate"), &app.master_key, json!({ "grace_seconds": 0 })).await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let new_master = rotated["key"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/whoami", new_master).await.0, StatusCode::OK);
    assert_eq!(app.get("/api/v1/whoami", &app.master_key).await.0, StatusCode::UNAUTHORIZED);
}
