//! `spawn_latchkey()` (the real Latchkey server on port 0, a fresh SQLite file, a Master
//! key from the service's bootstrap) and `spawn_content_api()` (the example service in
//! front of it), with the few calls the tests share.

use crate::content_api;
use latchkey_client::{ApiKey, Client, CreatedKey, NewKey, Permission, SiteId};
use latchkey_server::state::AppState;
use latchkey_server::{ServerConfig, SystemClock};
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub struct Latchkey {
    /// A client calling with the bootstrap Master key.
    pub master: Client,
    /// A client with no key, as a guarded service would hold.
    pub anonymous: Client,
    pub master_key: ApiKey,
    _shutdown: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

pub async fn spawn_latchkey() -> Latchkey {
    spawn_latchkey_with(ServerConfig::default()).await
}

pub async fn spawn_latchkey_with(config: ServerConfig) -> Latchkey {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("latchkey.db");
    let store = latchkey_sqlite::SqliteStore::open(path.to_str().unwrap()).await.expect("open SQLite");
    let state = AppState::new(Arc::new(store), config, Arc::new(SystemClock));
    let master_key = state.service.ensure_bootstrap_key().await.expect("bootstrap").expect("an empty database");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, stop) = oneshot::channel::<()>();
    tokio::spawn(latchkey_server::serve(listener, state, async {
        let _ = stop.await;
    }));
    let anonymous = Client::new(&url).unwrap();
    let master_key = ApiKey::new(master_key.expose());
    Latchkey { master: anonymous.with_key(master_key.clone()), anonymous, master_key, _shutdown: shutdown, _dir: dir }
}

impl Latchkey {
    pub async fn site(&self, name: &str) -> SiteId {
        self.master.sites().create(name).await.expect("Master creates a site").id
    }

    /// A key of `permission` for `site`, created by Master.
    pub async fn key(&self, permission: Permission, site: &SiteId) -> CreatedKey {
        self.create(NewKey::new(format!("{} key", permission.as_str()), permission).for_site(site)).await
    }

    pub async fn create(&self, key: NewKey) -> CreatedKey {
        self.master.keys().create(&key).await.expect("Master creates the key")
    }
}

/// The example content API, served by its own `serve`, checking keys with `latchkey`.
pub struct ContentApi {
    address: String,
    http: reqwest::Client,
}

/// One answer of the content API: status, JSON body and `Retry-After` in seconds.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after: Option<u64>,
}

impl Answer {
    /// The `code` of Latchkey's error shape, `{"error": {"code", "message"}}`.
    pub fn error_code(&self) -> &str {
        assert!(self.body["error"]["message"].is_string(), "not Latchkey's error shape: {self:?}");
        self.body["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code: {self:?}"))
    }
}

pub async fn spawn_content_api(latchkey: Client) -> ContentApi {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(content_api::serve(listener, latchkey));
    ContentApi { address, http: reqwest::Client::new() }
}

impl ContentApi {
    pub async fn get(&self, path: &str, key: Option<&ApiKey>) -> Answer {
        self.send(self.http.get(self.url(path)), key).await
    }

    pub async fn post(&self, path: &str, key: Option<&ApiKey>, body: Value) -> Answer {
        self.send(self.http.post(self.url(path)).json(&body), key).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder, key: Option<&ApiKey>) -> Answer {
        let request = match key {
            Some(key) => request.header("x-api-key", key.expose()),
            None => request,
        };
        let response = request.send().await.expect("the content API answers");
        let status = response.status();
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
        let text = response.text().await.unwrap();
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Answer { status, body, retry_after }
    }
}
