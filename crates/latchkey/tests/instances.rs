//! Several `latchkey serve` processes on one PostgreSQL database: a block made through
//! one instance stops the key on the others, a lost notification connection never leaves
//! a stale "valid" answer behind, and `latchkey migrate` moves a SQLite deployment over
//! without re-issuing a key. Needs PostgreSQL (LATCHKEY_TEST_POSTGRES_URL).

use latchkey_core::{KeyFormat, Permission};
use latchkey_server::state::AppState;
use latchkey_server::{ServerConfig, SystemClock};
use latchkey_service::{Check, Presented, Verdict};
use latchkey_store::{ImportBatch, SharedStore};
use serde_json::{json, Value};
use sqlx::Connection;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn postgres_url() -> String {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A uniquely named schema, dropped when the test ends.
struct Schema {
    name: String,
}

impl Schema {
    fn new() -> Self {
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes).unwrap();
        Self { name: format!("instances_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()) }
    }

    async fn open(&self) -> SharedStore {
        let url = postgres_url();
        let store = latchkey_postgres::PostgresStore::open_in_schema(&url, &self.name).await.unwrap_or_else(|error| {
            panic!("PostgreSQL is not reachable at {url} ({error}); start it or set LATCHKEY_TEST_POSTGRES_URL")
        });
        Arc::new(store)
    }

    async fn execute(&self, sql: &str) {
        let mut connection = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
        sqlx::query(&format!("SET search_path TO {}", self.name)).execute(&mut connection).await.unwrap();
        sqlx::query(sql).execute(&mut connection).await.unwrap();
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(mut connection) = sqlx::PgConnection::connect(&postgres_url()).await {
                    let _ =
                        sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).execute(&mut connection).await;
                }
            });
        })
        .join();
    }
}

/// A `latchkey serve` child process.
struct Instance {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_instance(schema: &Schema, extra: &[&str]) -> Instance {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--database", &postgres_url()])
        .args(["--postgres-schema", &schema.name, "--failure-limit", "0"])
        .args(extra)
        .env("LATCHKEY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let instance = Instance { child, base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() };
    let deadline = Instant::now() + Duration::from_secs(30);
    while instance.client.get(format!("{}/healthz", instance.base)).send().await.is_err() {
        assert!(Instant::now() < deadline, "latchkey did not start on port {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    instance
}

impl Instance {
    async fn post(&self, path: &str, key: Option<&str>, body: Value) -> Value {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(&body);
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        let response = request.send().await.unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap()
    }

    async fn verify(&self, key: &str) -> String {
        self.post("/api/v1/verify", None, json!({ "key": key })).await["code"].as_str().unwrap().to_owned()
    }
}

/// Creates the schema's first Master key in-process; returns it.
async fn bootstrap(schema: &Schema) -> String {
    let state = AppState::new(schema.open().await, ServerConfig::default(), Arc::new(SystemClock));
    state.service.ensure_bootstrap_key().await.unwrap().expect("an empty schema").expose().to_owned()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test]
async fn a_block_through_one_instance_stops_the_key_on_another() {
    let schema = Schema::new();
    let master = bootstrap(&schema).await;
    let a = start_instance(&schema, &[]).await;
    let b = start_instance(&schema, &["--cache-max-staleness", "60"]).await;
    let site =
        a.post("/api/v1/sites", Some(&master), json!({ "name": "shared" })).await["id"].as_str().unwrap().to_owned();
    let mut delays = Vec::new();
    for round in 0..100 {
        let body = json!({ "name": format!("round {round}"), "permission": "read", "site_id": site });
        let created = a.post("/api/v1/keys", Some(&master), body).await;
        let (id, key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
        assert_eq!(b.verify(key).await, "valid", "B sees a key created through A");
        a.post(&format!("/api/v1/keys/{id}/block"), Some(&master), json!({})).await;
        let blocked_at = Instant::now();
        loop {
            if b.verify(key).await == "key_blocked" {
                delays.push(blocked_at.elapsed());
                break;
            }
            assert!(blocked_at.elapsed() < Duration::from_secs(5), "B still accepts a key blocked through A");
        }
    }
    delays.sort();
    let (p50, p99) = (percentile(&delays, 0.5), percentile(&delays, 0.99));
    eprintln!("cross-instance propagation over {} blocks: p50 {p50:?}, p99 {p99:?}", delays.len());
    // The target is 100 ms on loopback; the assertion leaves room for a loaded CI machine.
    assert!(p99 < Duration::from_secs(1), "p99 propagation {p99:?}");
}

#[tokio::test]
async fn an_instance_that_loses_its_notification_connection_never_serves_a_blocked_key() {
    let schema = Schema::new();
    let master = bootstrap(&schema).await;
    // A staleness bound far above the test's deadline: only the lost-connection path can
    // explain the key being refused in time.
    let b = start_instance(&schema, &["--cache-max-staleness", "300"]).await;
    let site = b.post("/api/v1/sites", Some(&master), json!({ "name": "s" })).await["id"].as_str().unwrap().to_owned();
    let created =
        b.post("/api/v1/keys", Some(&master), json!({ "name": "k", "permission": "read", "site_id": site })).await;
    let (id, key) = (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned());
    assert_eq!(b.verify(&key).await, "valid");
    // A change whose notification never arrives: written straight to the table.
    schema.execute(&format!("UPDATE keys SET status = 'blocked' WHERE id = '{id}'")).await;
    assert_eq!(b.verify(&key).await, "valid", "without a notification B still has the old answer cached");
    schema
        .execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'latchkey-listener-{}'",
            schema.name
        ))
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.verify(&key).await == "valid" {
        assert!(Instant::now() < deadline, "B kept serving a stale valid answer after losing its listener");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..50 {
        assert_eq!(b.verify(&key).await, "key_blocked");
    }
}

#[tokio::test]
async fn the_staleness_bound_caps_a_cached_answer_even_without_notifications() {
    let schema = Schema::new();
    let master = bootstrap(&schema).await;
    let b = start_instance(&schema, &["--cache-max-staleness", "1"]).await;
    let site = b.post("/api/v1/sites", Some(&master), json!({ "name": "s" })).await["id"].as_str().unwrap().to_owned();
    let created =
        b.post("/api/v1/keys", Some(&master), json!({ "name": "k", "permission": "read", "site_id": site })).await;
    let (id, key) = (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned());
    assert_eq!(b.verify(&key).await, "valid");
    let changed_at = Instant::now();
    schema.execute(&format!("UPDATE keys SET status = 'blocked' WHERE id = '{id}'")).await;
    while b.verify(&key).await == "valid" {
        assert!(changed_at.elapsed() < Duration::from_secs(4), "the cached answer outlived the staleness bound");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn migrate_moves_ten_thousand_keys_from_sqlite_to_postgres_and_every_key_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_path = dir.path().join("old.db");
    let source = latchkey_sqlite::SqliteStore::open(sqlite_path.to_str().unwrap()).await.unwrap();
    let site = latchkey_store::conformance::new_site("migrated");
    let format = KeyFormat::default();
    let mut secrets = Vec::new();
    let mut keys = Vec::new();
    for _ in 0..10_000 {
        let secret = format.generate();
        let mut key = latchkey_store::conformance::new_key(Permission::Read, Some(&site.id));
        key.hash = secret.hash();
        key.prefix = secret.display_prefix();
        keys.push(key);
        secrets.push(secret);
    }
    keys.push(latchkey_store::conformance::new_key(Permission::Master, None));
    let store: &dyn latchkey_store::Store = &source;
    store.import(&ImportBatch { sites: vec![site], keys, events: Vec::new() }).await.unwrap();
    source.close().await;

    let schema = Schema::new();
    schema.open().await; // creates the schema and its tables
    let migrate = |force: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        command.args(["migrate", "--from"]).arg(&sqlite_path).args([
            "--to",
            &postgres_url(),
            "--postgres-schema",
            &schema.name,
        ]);
        if force {
            command.arg("--force");
        }
        command.output().unwrap()
    };
    let output = migrate(false);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("copied 10001 keys"), "progress is printed: {log}");
    assert!(!migrate(false).status.success(), "a non-empty target is refused without --force");

    let state = AppState::new(schema.open().await, ServerConfig::default(), Arc::new(SystemClock));
    for secret in &secrets {
        match state.service.verify(Presented::Key(secret.expose()), &Check::default()).await.unwrap() {
            Verdict::Allowed { .. } => {}
            Verdict::Refused { refusal, .. } => panic!("a migrated key was refused: {refusal:?}"),
        }
    }
}
