//! The PostgreSQL backend's tests: the conformance suite, one test per check, and what
//! only several instances sharing one database can show ([`feed`], [`writes`]). Each
//! test works in a schema of its own, so they run in parallel on one database.

mod feed;
mod writes;

use super::schema::quote_ident;
use super::PostgresStore;
use chrono::Utc;
use latchkey_core::{Actor, AuditAction, AuditEvent, KeyId, KeyRecord, Site, Status};
use latchkey_store::conformance::new_site;
use latchkey_store::{next_version, truncate_to_millis, Audited, KeyFilter, Page, SharedStore, Store, StoreResult};
use sqlx::{Connection, Executor, PgConnection};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Generous: the machine may be busy compiling; only a failure waits this long.
const PATIENCE: Duration = Duration::from_secs(20);

fn test_url() -> String {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A schema of the test's own, so tests run in parallel on one database. Dropped
/// (with everything in it) when the value is, even if the test panicked.
struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    async fn new() -> Self {
        Self::at(test_url()).await
    }

    /// Refuses to go on without a server: a skipped backend test would read as a pass.
    async fn at(url: String) -> Self {
        let reached = tokio::time::timeout(PATIENCE, PgConnection::connect(&url)).await;
        match reached {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            Ok(Err(error)) => panic!(
                "PostgreSQL is not reachable at {url}; start it or set \
                 LATCHKEY_TEST_POSTGRES_URL ({error})"
            ),
            Err(_) => panic!(
                "PostgreSQL is not reachable at {url}; start it or set \
                 LATCHKEY_TEST_POSTGRES_URL (no answer within {PATIENCE:?})"
            ),
        }
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("the OS provides randomness");
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        Self { url, name: format!("test_{hex}") }
    }

    /// The same schema chosen the other way: by `search_path` in the URL, through
    /// [`PostgresStore::open`]. Only after [`open`](Self::open) created the schema.
    async fn open_by_url(&self) -> Arc<PostgresStore> {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        let url = format!("{}{separator}options=-csearch_path%3D{}", self.url, self.name);
        Arc::new(PostgresStore::open(&url).await.expect("opening a store through search_path"))
    }

    async fn open(&self) -> Arc<PostgresStore> {
        Arc::new(PostgresStore::open_in_schema(&self.url, &self.name).await.expect("opening a store in a fresh schema"))
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(&self.name));
        // `drop` cannot await, and the test's runtime may be the current thread:
        // run the cleanup on a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime for cleanup");
            runtime.block_on(async move {
                let mut conn = PgConnection::connect(&url).await?;
                conn.execute(sql.as_str()).await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {dropped:?}", self.name);
        }
    }
}

fn event(action: AuditAction) -> AuditEvent {
    AuditEvent::new(&Actor::system(), action, truncate_to_millis(Utc::now()))
}

fn blocked(key: &KeyRecord) -> KeyRecord {
    KeyRecord { status: Status::Blocked, updated_at: next_version(key.updated_at, Utc::now()), ..key.clone() }
}

async fn store_key(store: &PostgresStore, key: KeyRecord) -> KeyRecord {
    store
        .create_key(Audited { value: &key, event: &event(AuditAction::KeyCreated).for_key(&key) })
        .await
        .expect("creating a key");
    key
}

async fn store_site(store: &PostgresStore) -> Site {
    let site = new_site("feed");
    store
        .create_site(Audited { value: &site, event: &event(AuditAction::SiteCreated).for_site(&site) })
        .await
        .expect("creating a site");
    site
}

async fn block(store: &PostgresStore, key: &KeyRecord) -> StoreResult<()> {
    let after = blocked(key);
    store.update_key(key, Audited { value: &after, event: &event(AuditAction::KeyBlocked).for_key(key) }).await
}

async fn usable_masters(store: &PostgresStore) -> Vec<KeyId> {
    let page = Page { after: None, limit: 1000 };
    let now = Utc::now();
    store
        .list_keys(&KeyFilter::default(), &page)
        .await
        .unwrap()
        .into_iter()
        .filter(|key| key.is_usable_master_at(now))
        .map(|key| key.id)
        .collect()
}

/// Runs `check` on a fresh store in a schema of its own. On a task of its own, so that the
/// store is closed even when the check panics; the panic then fails the test.
async fn run_check<F>(check: impl FnOnce(SharedStore) -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let schema = TestSchema::new().await;
    let store = schema.open().await;
    let outcome = tokio::spawn(check(store.clone())).await;
    store.close().await;
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("the check did not finish: {error}"),
        }
    }
}

mod conformance {
    latchkey_store::conformance_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        super::run_check
    );
}
