//! `spawn_app()` and friends: start the real server on port 0 with a fresh SQLite file.

use latchkey_server::state::AppState;
use latchkey_server::{Clock, ManualClock, ServerConfig, SystemClock};
use latchkey_store::SharedStore;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub master_key: String,
    pub state: AppState,
    pub clock: Option<Arc<ManualClock>>,
    pub database: Database,
    shutdown: Option<oneshot::Sender<()>>,
    /// Whether dropping this app removes its PostgreSQL schema (not when restarted).
    owns_database: bool,
    server: Option<JoinHandle<std::io::Result<()>>>,
    _dir: Arc<tempfile::TempDir>,
}

#[derive(Default)]
pub struct Options {
    pub manual_clock: bool,
    pub config: ServerConfig,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// Where a test's data lives: its own SQLite file, or its own PostgreSQL schema.
/// `LATCHKEY_TEST_ENGINE=postgres` runs the whole suite on PostgreSQL.
#[derive(Clone, Debug)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

pub fn postgres_url() -> String {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl Database {
    /// The `--database` (and `--postgres-schema`) arguments of the `latchkey` binary.
    pub fn cli_args(&self) -> Vec<String> {
        match self {
            Database::Sqlite(path) => vec!["--database".into(), path.display().to_string()],
            Database::Postgres { url, schema } => {
                vec!["--database".into(), url.clone(), "--postgres-schema".into(), schema.clone()]
            }
        }
    }

    pub fn fresh(dir: &tempfile::TempDir) -> Self {
        match std::env::var("LATCHKEY_TEST_ENGINE").as_deref() {
            Ok("postgres") => {
                let mut suffix = [0u8; 8];
                getrandom::fill(&mut suffix).unwrap();
                let schema = format!("api_test_{}", suffix.iter().map(|b| format!("{b:02x}")).collect::<String>());
                Database::Postgres { url: postgres_url(), schema }
            }
            Ok("sqlite") | Err(_) => Database::Sqlite(dir.path().join("latchkey.db")),
            Ok(other) => panic!("LATCHKEY_TEST_ENGINE must be sqlite or postgres, not {other:?}"),
        }
    }

    pub async fn open(&self) -> SharedStore {
        match self {
            Database::Sqlite(path) => {
                Arc::new(latchkey_sqlite::SqliteStore::open(path.to_str().unwrap()).await.expect("open SQLite"))
            }
            Database::Postgres { url, schema } => {
                Arc::new(latchkey_postgres::PostgresStore::open_in_schema(url, schema).await.unwrap_or_else(|error| {
                    panic!("PostgreSQL is not reachable at {url} ({error}); start it or set LATCHKEY_TEST_POSTGRES_URL")
                }))
            }
        }
    }
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("a temporary directory"));
    let database = Database::fresh(&dir);
    let mut app = start(dir, database, options).await;
    let key = app.state.service.ensure_bootstrap_key().await.expect("bootstrap").expect("an empty database");
    app.master_key = key.expose().to_owned();
    app
}

async fn start(dir: Arc<tempfile::TempDir>, database: Database, options: Options) -> TestApp {
    let store = database.open().await;
    let manual = options.manual_clock.then(|| Arc::new(ManualClock::starting_now()));
    let clock: Arc<dyn Clock> = match &manual {
        Some(clock) => clock.clone(),
        None => Arc::new(SystemClock),
    };
    let state = AppState::new(store, options.config, clock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(latchkey_server::serve(listener, state.clone(), async {
        let _ = stop.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        master_key: String::new(),
        state,
        clock: manual,
        database,
        shutdown: Some(shutdown),
        owns_database: true,
        server: Some(server),
        _dir: dir,
    }
}

impl TestApp {
    /// Stops the server gracefully (as SIGTERM would) and starts a new one on the same file.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        self.owns_database = false;
        let master_key = self.master_key.clone();
        let mut app = start(self._dir.clone(), self.database.clone(), Options::default()).await;
        app.master_key = master_key;
        app
    }

    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    pub fn advance_clock(&self, by: chrono::Duration) {
        self.clock.as_ref().expect("spawned with a manual clock").advance(by);
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{}", self.address, path));
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let text = response.text().await.unwrap();
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    pub async fn create_site(&self, name: &str) -> String {
        let (status, body) = self.post("/api/v1/sites", &self.master_key, json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Creates a key as Master; returns (id, full key).
    pub async fn create_key(&self, permission: &str, site: Option<&str>) -> (String, String) {
        self.create_key_as(&self.master_key, permission, site).await
    }

    pub async fn create_key_as(&self, creator: &str, permission: &str, site: Option<&str>) -> (String, String) {
        let body = json!({ "name": format!("{permission} key"), "permission": permission, "site_id": site });
        let (status, body) = self.post("/api/v1/keys", creator, body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (body["id"].as_str().unwrap().to_owned(), body["key"].as_str().unwrap().to_owned())
    }

    pub async fn block(&self, id: &str) {
        let (status, body) = self.post(&format!("/api/v1/keys/{id}/block"), &self.master_key, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let (true, Database::Postgres { url, schema }) = (self.owns_database, &self.database) {
            drop_schema(url.clone(), schema.clone());
        }
    }
}

/// Removes a test's PostgreSQL schema. Runs on its own thread and runtime because `Drop`
/// cannot await; best effort (a leftover schema is harmless and uniquely named).
///
/// Not joined: the server's background tasks (bookkeeping flush, webhook delivery,
/// reminders) run on the test's runtime and may hold a transaction open on the schema.
/// Waiting here would block that runtime, so the transaction could never finish and the
/// `DROP` would wait for its locks forever. Detached, it waits until the test's runtime is
/// gone and its connections close.
pub fn drop_schema(url: String, schema: String) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            use sqlx::Connection;
            if let Ok(mut connection) = sqlx::PgConnection::connect(&url).await {
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut connection).await;
            }
        });
    });
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("not a JSON error: {body}"))
}

/// Polls `check` until it returns true or `deadline` passes. For eventual effects
/// (batched last-used writes), never a fixed sleep.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Signs in to the dashboard as a browser would: fetches the sign-in page (its login token
/// and cookie), then posts the key with them. Returns the answer to the post.
pub async fn post_sign_in(base: &str, key: &str) -> reqwest::Response {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = client.get(format!("{base}/login")).send().await.expect("the sign-in page");
    let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let token = html.split("name=\"login_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    client
        .post(format!("{base}/login"))
        .header("cookie", cookie)
        .form(&[("key", key), ("login_token", token.as_str())])
        .send()
        .await
        .expect("the server answers")
}

/// A fresh app with these sites already created (as Master); their ids in the same order.
pub async fn spawn_app_with_sites<const N: usize>(names: [&str; N]) -> (TestApp, [String; N]) {
    let app = spawn_app().await;
    let mut ids = Vec::with_capacity(N);
    for name in names {
        ids.push(app.create_site(name).await);
    }
    let ids: [String; N] = ids.try_into().expect("one id per name");
    (app, ids)
}

/// A helper process (a proxy, a browser driver): killed when dropped, so a failing test
/// leaves nothing running.
pub struct ChildProcess(pub std::process::Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` with its output discarded and waits (at most 20 s) until `url` answers.
pub async fn start_and_wait(mut command: std::process::Command, url: &str, what: &str) -> ChildProcess {
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("{what} does not start: {error}"));
    let child = ChildProcess(child);
    let http = reqwest::Client::new();
    let up = eventually(Duration::from_secs(20), || async { http.get(url).send().await.is_ok() }).await;
    assert!(up, "{what} did not answer at {url}");
    child
}

impl TestApp {
    /// Creates a key from a whole JSON body (as Master); returns (id, full key).
    pub async fn create_key_from(&self, body: Value) -> (String, String) {
        let (status, created) = self.post("/api/v1/keys", &self.master_key, body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned())
    }
}

/// Asserts that an answer is the JSON error `code` with `status`.
pub fn assert_error(answer: (StatusCode, Value), status: u16, code: &str) {
    let (got, body) = answer;
    assert_eq!((got.as_u16(), error_code(&body)), (status, code), "{body}");
}
