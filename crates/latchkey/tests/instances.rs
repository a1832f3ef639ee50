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
    start_instance_on(schema, &port.to_string(), extra).await
}

/// An instance on a given port (a restart takes the place of the instance it replaces).
async fn start_instance_on(schema: &Schema, port: &str, extra: &[&str]) -> Instance {
    // Unknown keys are not throttled unless a test asks for it.
    let throttling = if extra.contains(&"--failure-limit") { &[][..] } else { &["--failure-limit", "0"][..] };
    let child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--database", &postgres_url()])
        .args(["--postgres-schema", &schema.name])
        .args(throttling)
        .args(extra)
        .env("LATCHKEY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut instance = Instance { child, base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() };
    let deadline = Instant::now() + Duration::from_secs(30);
    while instance.client.get(format!("{}/healthz", instance.base)).send().await.is_err() {
        assert!(Instant::now() < deadline, "latchkey did not start on port {port}");
        if let Some(exit) = instance.child.try_wait().unwrap() {
            panic!("latchkey exited at start ({exit}); its error is above");
        }
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

#[path = "support/nginx_process.rs"]
mod nginx_process;

/// A Redis of this test's own, on its own port, so the test can stop and restart it.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: scripts/install-test-deps installs it");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// nginx balancing round-robin over `instances`, passing the client's address on; returns
/// nginx and its base URL.
fn balance(dir: &std::path::Path, instances: &[&Instance]) -> (nginx_process::Nginx, String) {
    let port = free_port();
    let servers: String =
        instances.iter().map(|i| format!("  server {} max_fails=0;\n", i.base.trim_start_matches("http://"))).collect();
    let block = format!(
        "upstream latchkey {{\n{servers} }}\n\
         server {{\n listen 127.0.0.1:{port};\n location / {{\n  proxy_pass http://latchkey;\n  \
         proxy_set_header X-Forwarded-For $remote_addr;\n  proxy_next_upstream error timeout;\n }}\n}}\n"
    );
    (nginx_process::start_nginx(dir, &block), format!("http://127.0.0.1:{port}"))
}

/// Forward-auth through `base`: the status and the refusal's code (empty when allowed).
async fn forward_auth(client: &reqwest::Client, base: &str, key: &str) -> (u16, String) {
    let response = client.get(format!("{base}/api/v1/auth")).header("X-API-Key", key).send().await.unwrap();
    let status = response.status().as_u16();
    let code = response.headers().get("x-latchkey-error").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, code)
}

async fn verifications_answered(instance: &Instance) -> f64 {
    let text = instance.client.get(format!("{}/metrics", instance.base)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|line| line.starts_with("latchkey_verifications_total{"))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Signs in to the dashboard at `base`; returns the session cookie (`name=value`).
async fn sign_in(base: &str, key: &str) -> String {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = client.get(format!("{base}/login")).send().await.unwrap();
    let login_cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let token = html.split("name=\"login_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let signed_in = client
        .post(format!("{base}/login"))
        .header("cookie", login_cookie)
        .form(&[("key", key), ("login_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status().as_u16(), 303);
    signed_in.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn three_instances_behind_nginx_share_limits_throttling_sessions_and_revocation_and_survive_a_crash() {
    let schema = Schema::new();
    let master = bootstrap(&schema).await;
    let mut redis = RedisServer::start(free_port());
    let redis_url = redis.url();
    let shared = ["--redis", redis_url.as_str(), "--trust-proxy", "127.0.0.1", "--failure-limit", "20"];
    let a = start_instance(&schema, &shared).await;
    let b = start_instance(&schema, &shared).await;
    let c = start_instance(&schema, &shared).await;
    let dir = tempfile::tempdir().unwrap();
    let (_nginx, front) = balance(dir.path(), &[&a, &b, &c]);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get(format!("{front}/healthz")).send().await.map(|r| !r.status().is_success()).unwrap_or(true) {
        assert!(Instant::now() < deadline, "nginx did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let site =
        a.post("/api/v1/sites", Some(&master), json!({ "name": "shared" })).await["id"].as_str().unwrap().to_owned();
    let limited = a
        .post(
            "/api/v1/keys",
            Some(&master),
            json!({ "name": "100 a minute", "permission": "read", "site_id": site, "ratelimit": { "limit": 100, "window_seconds": 60 } }),
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned();

    // A dashboard session opened through one instance works through the others.
    let cookie = sign_in(&a.base, &master).await;
    for instance in [&a, &b, &c] {
        let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let page = no_redirects.get(format!("{}/keys", instance.base)).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(page.status().as_u16(), 200, "{} serves a session opened through another", instance.base);
    }

    // One limit across the three: exactly 100 through nginx, then 429 with Retry-After.
    for request in 1..=100 {
        let (status, code) = forward_auth(&client, &front, &limited).await;
        assert_eq!((status, code.as_str()), (204, ""), "request {request} of 100");
    }
    let over = client.get(format!("{front}/api/v1/auth")).header("X-API-Key", &limited).send().await.unwrap();
    assert_eq!(over.status().as_u16(), 429);
    let retry_after: u64 = over.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    for instance in [&a, &b, &c] {
        assert!(verifications_answered(instance).await >= 20.0, "nginx spread the requests over every instance");
    }

    // One failure budget per address, whichever instance a guess reaches.
    let mut codes = Vec::new();
    for guess in 0..24 {
        let (status, code) = forward_auth(&client, &front, &format!("lk_guess{guess}")).await;
        codes.push((status, code));
    }
    assert!(codes[..20].iter().all(|(status, code)| *status == 401 && code == "invalid_api_key"), "{codes:?}");
    assert!(codes[20..].iter().all(|(status, _)| *status == 429), "{codes:?}");

    // Revocation under load, and an instance killed mid-load.
    let created =
        a.post("/api/v1/keys", Some(&master), json!({ "name": "busy", "permission": "read", "site_id": site })).await;
    let (busy_id, busy) = (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (client, front, busy, stop) = (client.clone(), front.clone(), busy.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    answers.push(forward_auth(&client, &front, &busy).await);
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await; // the load is running
    let mut b = b;
    let _ = b.child.kill(); // SIGKILL: no graceful stop, no flush
    let _ = b.child.wait();
    a.post(&format!("/api/v1/keys/{busy_id}/block"), Some(&master), json!({})).await;
    let blocked_at = Instant::now();
    let mut delays = Vec::new();
    for instance in [&a, &c] {
        loop {
            if forward_auth(&client, &instance.base, &busy).await.1 == "key_blocked" {
                delays.push(blocked_at.elapsed());
                break;
            }
            assert!(blocked_at.elapsed() < Duration::from_secs(5), "{} still accepts the blocked key", instance.base);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answers = Vec::new();
    for task in load {
        answers.extend(task.await.unwrap());
    }
    assert!(answers.len() > 20, "the load ran: {} requests", answers.len());
    let wrong: Vec<_> = answers.iter().filter(|(status, code)| !(*status == 204 || code == "key_blocked")).collect();
    assert!(wrong.is_empty(), "every answer under load was allowed or key_blocked: {wrong:?}");
    delays.sort();
    eprintln!("block to refused on the surviving instances, under load: {delays:?}");
    assert!(delays.iter().all(|delay| *delay < Duration::from_secs(1)), "{delays:?}");

    // The killed instance comes back into the rotation with a correct cache.
    let b_port = b.base.rsplit(':').next().unwrap().to_owned();
    drop(b);
    let restarted = start_instance_on(&schema, &b_port, &shared).await;
    assert_eq!(forward_auth(&client, &restarted.base, &busy).await.1, "key_blocked");
    assert_eq!(forward_auth(&client, &restarted.base, &master).await.0, 204);

    // Redis stops: failing open, every instance still answers and says so on /healthz;
    // when Redis is back, the warning goes.
    redis.stop();
    let fresh = a
        .post(
            "/api/v1/keys",
            Some(&master),
            json!({ "name": "during the outage", "permission": "read", "site_id": site, "ratelimit": { "limit": 1000, "window_seconds": 60 } }),
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..6 {
        assert_eq!(forward_auth(&client, &front, &fresh).await.0, 204, "open: answered without Redis");
    }
    let health: Value = client.get(format!("{}/healthz", a.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["limits"], "redis (on failure: open)");
    let _redis_again = RedisServer::start(redis.port);
    let recovered_by = Instant::now() + Duration::from_secs(10);
    loop {
        forward_auth(&client, &a.base, &fresh).await;
        let health: Value = client.get(format!("{}/healthz", a.base)).send().await.unwrap().json().await.unwrap();
        if health["status"] == "ok" {
            break;
        }
        assert!(Instant::now() < recovered_by, "the Redis warning stayed after Redis came back: {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
