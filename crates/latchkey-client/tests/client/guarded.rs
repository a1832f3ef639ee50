//! The example content API, guarded by `LatchkeyLayer` in front of a real Latchkey: who
//! gets through, what the handler sees, what the refused get (Latchkey's JSON error with
//! its status), and how soon a change in Latchkey reaches the layer's cache.

use crate::servers::{spawn_content_api, spawn_latchkey, Answer, ContentApi};
use axum::routing::get;
use axum::Router;
use latchkey_client::{
    ApiKey, Client, Credits, LatchkeyLayer, NewKey, Permission, VerifiedKey, VerifyRequest, DEFAULT_MAX_STALENESS,
};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_read_key_lists_articles_and_the_handler_sees_who_it_is() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let reader = latchkey
        .create(
            NewKey::new("frontend", Permission::Read).for_site(&site).with_scopes(["articles:list"]).owned_by("c-7"),
        )
        .await;
    let api = spawn_content_api(latchkey.anonymous.clone()).await;

    let listed = api.get("/articles", Some(&reader.key)).await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    assert_eq!(listed.body, json!({ "data": [] }));

    let seen = api.get("/whoami", Some(&reader.key)).await;
    assert_eq!(seen.status, StatusCode::OK, "{seen:?}");
    assert_eq!(seen.body["key_id"], json!(reader.record.id));
    assert_eq!(seen.body["permission"], "read");
    assert_eq!(seen.body["site_id"], json!(site));
    assert_eq!(seen.body["scopes"], json!(["articles:list"]));
    assert_eq!(seen.body["owner_id"], "c-7");
}

#[tokio::test]
async fn a_read_key_cannot_write_an_article() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let reader = latchkey.key(Permission::Read, &site).await;
    let api = spawn_content_api(latchkey.anonymous.clone()).await;

    let refused = api.post("/articles", Some(&reader.key), json!({ "title": "t", "body": "b" })).await;
    assert_eq!((refused.status, refused.error_code()), (StatusCode::FORBIDDEN, "insufficient_permission"));
}

#[tokio::test]
async fn a_write_key_writes_an_article_that_only_keys_of_its_site_then_read() {
    let latchkey = spawn_latchkey().await;
    let (blog, shop) = (latchkey.site("Blog").await, latchkey.site("Shop").await);
    let writer = latchkey.key(Permission::Write, &blog).await;
    let blog_reader = latchkey.key(Permission::Read, &blog).await;
    let shop_reader = latchkey.key(Permission::Read, &shop).await;
    let api = spawn_content_api(latchkey.anonymous.clone()).await;

    let written = api.post("/articles", Some(&writer.key), json!({ "title": "Hello", "body": "First" })).await;
    assert_eq!(written.status, StatusCode::CREATED, "{written:?}");
    assert_eq!(written.body["author_key_id"], json!(writer.record.id));

    let titles = |answer: Answer| answer.body["data"].as_array().unwrap().iter().map(|a| a["title"].clone()).collect();
    let blog_titles: Vec<_> = titles(api.get("/articles", Some(&blog_reader.key)).await);
    assert_eq!(blog_titles, [json!("Hello")]);
    let shop_titles: Vec<_> = titles(api.get("/articles", Some(&shop_reader.key)).await);
    assert!(shop_titles.is_empty(), "{shop_titles:?}");
}

#[tokio::test]
async fn a_request_without_a_key_is_refused_as_missing_api_key() {
    let latchkey = spawn_latchkey().await;
    let api = spawn_content_api(latchkey.anonymous.clone()).await;

    let refused = api.get("/articles", None).await;
    assert_eq!((refused.status, refused.error_code()), (StatusCode::UNAUTHORIZED, "missing_api_key"));
}

#[tokio::test]
async fn an_unknown_key_is_refused_as_invalid_api_key() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let deleted = latchkey.key(Permission::Read, &site).await;
    latchkey.master.keys().delete(&deleted.record.id).await.unwrap();
    let api = spawn_content_api(latchkey.anonymous.clone()).await;

    for key in [deleted.key, ApiKey::new("lk_typo")] {
        let refused = api.get("/articles", Some(&key)).await;
        assert_eq!((refused.status, refused.error_code()), (StatusCode::UNAUTHORIZED, "invalid_api_key"));
    }
}

#[tokio::test]
async fn a_bearer_token_is_read_as_the_key() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let reader = latchkey.key(Permission::Read, &site).await;
    let api = spawn_content_api(latchkey.anonymous.clone()).await;

    let request = reqwest::Client::new().get(api.url("/whoami")).bearer_auth(reader.key.expose());
    let answer = api.send(request, None).await;
    assert_eq!((answer.status, &answer.body["key_id"]), (StatusCode::OK, &json!(reader.record.id)));
}

#[tokio::test]
async fn two_keys_in_one_request_are_refused_rather_than_guessed_between() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let reader = latchkey.key(Permission::Read, &site).await;
    let api = spawn_content_api(latchkey.anonymous.clone()).await;

    let request = reqwest::Client::new()
        .get(api.url("/articles"))
        .header("x-api-key", reader.key.expose())
        .header("x-api-key", latchkey.master_key.expose());
    let refused = api.send(request, None).await;
    assert_eq!((refused.status, refused.error_code()), (StatusCode::UNAUTHORIZED, "invalid_api_key"));
}

/// Polls `GET /articles` with `key` until its status is no longer `before`, asserting that
/// no request sent later than the staleness bound after `changed_at` still got `before`.
async fn first_answer_after_a_change(
    api: &ContentApi,
    key: &ApiKey,
    before: StatusCode,
    changed_at: Instant,
) -> Answer {
    let deadline = changed_at + DEFAULT_MAX_STALENESS + Duration::from_secs(10);
    loop {
        let sent_at = Instant::now();
        let answer = api.get("/articles", Some(key)).await;
        if answer.status != before {
            return answer;
        }
        assert!(
            sent_at < changed_at + DEFAULT_MAX_STALENESS,
            "still {before} for a request sent {:?} after the change",
            sent_at - changed_at
        );
        assert!(Instant::now() < deadline, "no change before the deadline");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_blocked_key_is_refused_within_the_staleness_bound() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let reader = latchkey.key(Permission::Read, &site).await;
    let api = spawn_content_api(latchkey.anonymous.clone()).await;
    assert_eq!(api.get("/articles", Some(&reader.key)).await.status, StatusCode::OK, "cached as allowed");

    latchkey.master.keys().block(&reader.record.id).await.unwrap();
    let blocked_at = Instant::now();
    let refused = first_answer_after_a_change(&api, &reader.key, StatusCode::OK, blocked_at).await;
    assert_eq!((refused.status, refused.error_code()), (StatusCode::UNAUTHORIZED, "key_blocked"));
}

#[tokio::test]
async fn an_unblocked_key_is_let_through_again_within_the_staleness_bound() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let reader = latchkey.key(Permission::Read, &site).await;
    latchkey.master.keys().block(&reader.record.id).await.unwrap();
    let api = spawn_content_api(latchkey.anonymous.clone()).await;
    assert_eq!(api.get("/articles", Some(&reader.key)).await.status, StatusCode::UNAUTHORIZED, "cached as refused");

    latchkey.master.keys().unblock(&reader.record.id).await.unwrap();
    let unblocked_at = Instant::now();
    let allowed = first_answer_after_a_change(&api, &reader.key, StatusCode::UNAUTHORIZED, unblocked_at).await;
    assert_eq!(allowed.status, StatusCode::OK, "{allowed:?}");
}

#[tokio::test]
async fn a_key_over_its_rate_limit_is_refused_at_once_with_429_and_told_when_its_window_ends() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let limited =
        latchkey.create(NewKey::new("limited", Permission::Read).for_site(&site).with_ratelimit(1, 3600)).await;
    let api = spawn_content_api(latchkey.anonymous.clone()).await;
    assert_eq!(api.get("/articles", Some(&limited.key)).await.status, StatusCode::OK, "the one use of the window");

    // At once, not after the staleness bound: Latchkey reports the key's window, so the
    // layer never serves a rate-limited key from its cache and every request counts.
    let refused = api.get("/articles", Some(&limited.key)).await;
    assert_eq!((refused.status, refused.error_code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));

    // A refused verification is not counted, so asking Latchkey now changes nothing.
    let window = latchkey.anonymous.verify(&VerifyRequest::new(limited.key)).await.unwrap().ratelimit.unwrap();
    let retry_after = refused.retry_after.expect("Retry-After");
    assert!(retry_after.abs_diff(window.reset) <= 1, "Retry-After {retry_after}, window ends in {}", window.reset);
}

#[tokio::test]
async fn a_key_with_credits_spends_one_per_request_and_is_refused_when_none_are_left() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let metered = NewKey::new("metered", Permission::Read).for_site(&site);
    let metered = latchkey.create(metered.with_credits(Credits { remaining: 2, refill: None })).await;
    let api = spawn_content_api(latchkey.anonymous.clone()).await;

    // No waiting: a key with credits is never served from the cache.
    for _ in 0..2 {
        assert_eq!(api.get("/articles", Some(&metered.key)).await.status, StatusCode::OK);
    }
    let refused = api.get("/articles", Some(&metered.key)).await;
    assert_eq!((refused.status, refused.error_code()), (StatusCode::TOO_MANY_REQUESTS, "usage_exceeded"));
}

#[tokio::test]
async fn requests_are_refused_with_503_while_latchkey_cannot_be_reached() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = Client::new(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    let api = spawn_content_api(closed).await;

    let refused = api.get("/articles", Some(&ApiKey::new("lk_anything"))).await;
    assert_eq!((refused.status, refused.error_code()), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
}

#[tokio::test]
async fn a_layer_for_one_site_and_scope_refuses_keys_of_other_sites_and_without_the_scope() {
    let latchkey = spawn_latchkey().await;
    let (blog, shop) = (latchkey.site("Blog").await, latchkey.site("Shop").await);
    let scoped = latchkey.create(NewKey::new("scoped", Permission::Read).for_site(&blog).with_scopes(["a:b"])).await;
    let unscoped = latchkey.key(Permission::Read, &blog).await;
    let elsewhere = latchkey.create(NewKey::new("shop", Permission::Read).for_site(&shop).with_scopes(["a:b"])).await;

    let layer = LatchkeyLayer::new(latchkey.anonymous.clone()).for_site(&blog).require_scopes(["a:b"]);
    let app = Router::new().route("/", get(|key: VerifiedKey| async move { key.id.to_string() })).route_layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let ask = |key: ApiKey| {
        let request = reqwest::Client::new().get(&url).header("x-api-key", key.expose());
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<serde_json::Value>().await.ok().map(|body| body["error"]["code"].clone()))
        }
    };
    assert_eq!(ask(scoped.key).await.0, StatusCode::OK);
    assert_eq!(ask(unscoped.key).await, (StatusCode::FORBIDDEN, Some(json!("missing_scope"))));
    assert_eq!(ask(elsewhere.key).await, (StatusCode::FORBIDDEN, Some(json!("wrong_site"))));
}
