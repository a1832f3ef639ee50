//! Webhook deliveries, end to end: a real receiver on 127.0.0.1 that checks every
//! delivery with the `standardwebhooks` crate (not Latchkey's own signing code), retries
//! on a test clock, secret rotation, and the binary killed with SIGKILL mid-stream.

use crate::helpers::{eventually, spawn_app_with, Options, TestApp};
use axum::http::{HeaderMap, StatusCode};
use latchkey_server::ServerConfig;
use latchkey_service::webhooks::WebhookConfig;
use latchkey_service::ServiceConfig;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> String {
        self.headers[name].to_str().unwrap().to_owned()
    }

    /// Whether the delivery verifies with `secret`, by the Standard Webhooks library.
    pub fn verifies_with(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret).unwrap().verify(self.body.as_bytes(), &self.headers).is_ok()
    }
}

/// A webhook receiver on 127.0.0.1: records every request and answers with the next
/// scripted status (200 once the script is used up).
pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(script: &[u16]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, script)
    }

    pub fn serve(listener: tokio::net::TcpListener, script: &[u16]) -> Self {
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (log, answers) = (received.clone(), script);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (log, answers) = (log.clone(), answers.clone());
                async move {
                    log.lock().unwrap().push(Received { headers, body });
                    StatusCode::from_u16(answers.lock().unwrap().pop_front().unwrap_or(200)).unwrap()
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) until `count` requests came, and returns them.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        let arrived = eventually(Duration::from_secs(10), || async { self.received().len() >= count }).await;
        assert!(arrived, "expected {count} deliveries, got {:#?}", self.received());
        self.received()
    }

    /// The event types received, in order.
    pub fn types(&self) -> Vec<String> {
        self.received().iter().map(|r| r.json()["type"].as_str().unwrap().to_owned()).collect()
    }
}

/// A server whose worker polls every 20 ms and that may send to 127.0.0.1.
pub async fn spawn_app_for_webhooks(manual_clock: bool) -> TestApp {
    let webhooks =
        WebhookConfig { allow_private_targets: true, poll_interval: Duration::from_millis(20), ..Default::default() };
    let config = ServerConfig { service: ServiceConfig { webhooks, ..Default::default() }, ..Default::default() };
    spawn_app_with(Options { manual_clock, config }).await
}

/// Registers an endpoint as Master (all sites); returns (id, secret).
pub async fn register(app: &TestApp, url: &str, extra: Value) -> (String, String) {
    let mut body = json!({ "url": url });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (status, created) = app.post("/api/v1/webhooks", &app.master_key, body).await;
    assert_eq!(status, 201, "{created}");
    (created["id"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn create_block_rotate_delete_reach_the_receiver_in_order_and_verify_as_standard_webhooks() {
    let app = spawn_app_for_webhooks(false).await;
    let receiver = Receiver::start(&[]).await;
    let (_, secret) = register(&app, &receiver.url, json!({})).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let site = app.create_site("Blog").await;
    let (status, created) = app
        .post("/api/v1/keys", &app.master_key, json!({ "name": "CI", "permission": "write", "site_id": site }))
        .await;
    assert_eq!(status, 201);
    let (id, key) = (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned());
    app.block(&id).await;
    app.post(&format!("/api/v1/keys/{id}/unblock"), &app.master_key, json!({})).await;
    let (_, rotated) = app.post(&format!("/api/v1/keys/{id}/rotate"), &app.master_key, json!({})).await;
    let new_id = rotated["id"].as_str().unwrap();
    let (status, _) =
        app.call(reqwest::Method::DELETE, &format!("/api/v1/keys/{new_id}"), Some(&app.master_key), None).await;
    assert_eq!(status, 204);

    let deliveries = receiver.wait_for(7).await;
    assert_eq!(
        receiver.types(),
        ["site.created", "key.created", "key.blocked", "key.unblocked", "key.rotated", "key.created", "key.deleted"]
    );
    for delivery in &deliveries {
        assert!(delivery.verifies_with(&secret), "{delivery:?}");
        assert!(delivery.header("webhook-id").starts_with("evt_"));
        assert!(!delivery.body.contains(&key) && !delivery.body.contains(rotated["key"].as_str().unwrap()));
    }
    // The key as the management API showed it when it was created, never the key itself.
    let mut shown = created.clone();
    shown.as_object_mut().unwrap().remove("key");
    assert_eq!(deliveries[1].json()["data"], shown);
    assert_eq!(deliveries[2].json()["data"]["status"], "blocked");
    assert!(deliveries[1].json()["timestamp"].is_string());
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_same_id_three_times_with_growing_delays() {
    let app = spawn_app_for_webhooks(true).await;
    let receiver = Receiver::start(&[500, 500]).await;
    let (webhook, secret) = register(&app, &receiver.url, json!({ "events": ["site.created"] })).await;
    app.create_site("Retried").await;
    let deliveries_of = |count: usize| attempts_recorded(&app, &webhook, count);
    receiver.wait_for(1).await;
    let log = deliveries_of(1).await;
    let first_retry = log["data"][0]["next_retry_at"].as_str().unwrap().to_owned();
    assert_eq!((log["data"][0]["status_code"].as_u64(), log["pending"].as_u64()), (Some(500), Some(1)));
    app.advance_clock(chrono::Duration::seconds(4));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), 1, "not before the retry is due");
    app.advance_clock(chrono::Duration::seconds(2));
    receiver.wait_for(2).await;
    deliveries_of(2).await;
    app.advance_clock(chrono::Duration::seconds(70));
    let deliveries = receiver.wait_for(3).await;
    let log = deliveries_of(3).await;

    let ids: Vec<String> = deliveries.iter().map(|d| d.header("webhook-id")).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let times: Vec<i64> = deliveries.iter().map(|d| d.header("webhook-timestamp").parse().unwrap()).collect();
    let (first_gap, second_gap) = (times[1] - times[0], times[2] - times[1]);
    assert!((4..=7).contains(&first_gap) && second_gap >= 54 && second_gap > first_gap, "{times:?}");
    assert!(deliveries.iter().all(|d| d.verifies_with(&secret)));
    let attempts: Vec<u64> = log["data"].as_array().unwrap().iter().map(|a| a["attempt"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [3, 2, 1]);
    assert!(log["data"][0]["next_retry_at"].is_null() && log["pending"] == 0);
    assert!(log["data"][1]["next_retry_at"].as_str().unwrap() > first_retry.as_str());
}

#[tokio::test]
async fn a_rotated_secret_signs_alongside_the_old_one_during_the_overlap() {
    let app = spawn_app_for_webhooks(false).await;
    let receiver = Receiver::start(&[]).await;
    let (webhook, old_secret) = register(&app, &receiver.url, json!({})).await;
    let (status, rotated) =
        app.post(&format!("/api/v1/webhooks/{webhook}/rotate-secret"), &app.master_key, json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_ne!(new_secret, old_secret);
    assert!(rotated["previous_secret_expires_at"].is_string());
    let (status, test) = app.post(&format!("/api/v1/webhooks/{webhook}/test"), &app.master_key, json!({})).await;
    assert_eq!(status, 202);
    let delivery = receiver.wait_for(1).await.remove(0);
    assert_eq!(delivery.header("webhook-id"), test["event_id"].as_str().unwrap());
    assert_eq!(delivery.json()["type"], "webhook.test");
    assert!(delivery.verifies_with(&old_secret) && delivery.verifies_with(new_secret));
    assert!(!delivery.verifies_with("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
}

/// Waits (at most 10 s) until the endpoint's delivery log holds `count` attempts, and returns
/// the log. A test on a manual clock waits for this before moving the clock: the worker
/// reckons the next retry from the time it records an attempt, which comes after the
/// receiver has seen the request.
pub async fn attempts_recorded(app: &TestApp, webhook: &str, count: usize) -> Value {
    let path = format!("/api/v1/webhooks/{webhook}/deliveries");
    let recorded = eventually(Duration::from_secs(10), || async {
        app.get(&path, &app.master_key).await.1["data"].as_array().unwrap().len() >= count
    })
    .await;
    let log = app.get(&path, &app.master_key).await.1;
    assert!(recorded, "expected {count} recorded attempts, got {log:#}");
    log
}

/// An endpoint (for `site.created`) that answered 503 to the three attempts of the first
/// of two events, on a manual clock: marked failing, both events waiting.
pub async fn failing_endpoint(app: &TestApp) -> (Receiver, String) {
    let receiver = Receiver::start(&[503, 503, 503]).await;
    let (webhook, _) = register(app, &receiver.url, json!({ "events": ["site.created"] })).await;
    app.create_site("First").await;
    app.create_site("Second").await;
    for (count, wait) in [(1, 0), (2, 6), (3, 70)] {
        app.advance_clock(chrono::Duration::seconds(wait));
        receiver.wait_for(count).await;
        attempts_recorded(app, &webhook, count).await;
    }
    let failing = eventually(Duration::from_secs(5), || async {
        app.get(&format!("/api/v1/webhooks/{webhook}"), &app.master_key).await.1["status"] == "failing"
    })
    .await;
    assert!(failing, "three failures in a row mark the endpoint failing");
    (receiver, webhook)
}

#[tokio::test]
async fn a_failing_endpoint_is_marked_and_its_events_wait_rather_than_vanish() {
    let app = spawn_app_for_webhooks(true).await;
    let (receiver, webhook) = failing_endpoint(&app).await;
    assert!(receiver.types().iter().all(|t| t == "site.created"));
    assert_eq!(
        receiver.received().iter().map(|r| r.json()["data"]["name"].clone()).collect::<Vec<_>>(),
        ["First", "First", "First"]
    );
    app.advance_clock(chrono::Duration::minutes(12));
    let all = receiver.wait_for(5).await;
    assert_eq!(all[3].json()["data"]["name"], "First");
    assert_eq!(all[4].json()["data"]["name"], "Second", "the later event waited behind the failed one");
    let recovered = eventually(Duration::from_secs(5), || async {
        app.get(&format!("/api/v1/webhooks/{webhook}"), &app.master_key).await.1["status"] == "active"
    })
    .await;
    assert!(recovered);
}

#[tokio::test]
async fn events_written_while_the_receiver_is_down_arrive_after_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let database = crate::helpers::Database::fresh(&dir);
    // The receiver's port is known but nothing listens on it yet.
    let parked = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = parked.local_addr().unwrap();
    drop(parked);
    let server = crate::webhook_routes::Binary::start(&database).await;
    let url = format!("http://{address}/hook");
    let webhook = server.call("POST", "/api/v1/webhooks", json!({ "url": url, "events": ["site.created"] })).await;
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    for name in ["one", "two", "three"] {
        server.call("POST", "/api/v1/sites", json!({ "name": name })).await;
    }
    let server = server.kill_and_restart(&database).await;
    let receiver = Receiver::serve(tokio::net::TcpListener::bind(address).await.unwrap(), &[]);
    let deliveries = receiver.wait_for(3).await;
    let names: Vec<Value> = deliveries.iter().map(|d| d.json()["data"]["name"].clone()).collect();
    assert_eq!(names, ["one", "two", "three"]);
    assert!(deliveries.iter().all(|d| d.verifies_with(&secret)));
    drop(server);
    if let crate::helpers::Database::Postgres { url, schema } = database {
        crate::helpers::drop_schema(url, schema);
    }
}

#[tokio::test]
async fn two_instances_on_one_database_deliver_each_event_once() {
    let app = spawn_app_for_webhooks(false).await;
    let receiver = Receiver::start(&[]).await;
    register(&app, &receiver.url, json!({ "events": ["site.created"] })).await;
    // A second server on the same database, with its own worker.
    let webhooks =
        WebhookConfig { allow_private_targets: true, poll_interval: Duration::from_millis(20), ..Default::default() };
    let config = ServerConfig { service: ServiceConfig { webhooks, ..Default::default() }, ..Default::default() };
    let other = latchkey_server::state::AppState::new(
        app.database.open().await,
        config,
        Arc::new(latchkey_server::SystemClock),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let second = tokio::spawn(latchkey_server::serve(listener, other, async {
        let _ = stopped.await;
    }));
    for n in 0..30 {
        app.create_site(&format!("site {n}")).await;
    }
    let deliveries = receiver.wait_for(30).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids: Vec<String> = receiver.received().iter().map(|d| d.header("webhook-id")).collect();
    assert_eq!(ids.len(), 30, "each event once: {ids:?}");
    ids.dedup();
    assert_eq!(ids.len(), 30);
    let names: Vec<Value> = deliveries.iter().map(|d| d.json()["data"]["name"].clone()).collect();
    let expected: Vec<Value> = (0..30).map(|n| json!(format!("site {n}"))).collect();
    assert_eq!(names, expected, "in order, whichever instance sent each");
    let _ = stop.send(());
    second.await.unwrap().unwrap();
}
