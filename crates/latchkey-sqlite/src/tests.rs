//! The SQLite backend against the conformance suite: one test per check, each on a
//! database file of its own.

use super::SqliteStore;
use latchkey_store::SharedStore;
use std::future::Future;
use std::sync::Arc;

/// Runs `check` on a fresh database in a temporary directory, removed afterwards.
async fn run_check<F>(check: impl FnOnce(SharedStore) -> F)
where
    F: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("latchkey.db").to_str().unwrap()).await.unwrap());
    check(store.clone()).await;
    store.close().await;
}

mod conformance {
    latchkey_store::conformance_tests!(super::run_check);
}
