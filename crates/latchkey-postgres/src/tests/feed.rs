//! The invalidation feed between instances: what one changes, the other's cache hears
//! of, and a lost listener is reported, replaced and caught up.

use super::{block, event, store_key, store_site, TestSchema, PATIENCE};
use crate::PostgresStore;
use latchkey_core::{AuditAction, Permission};
use latchkey_store::conformance::new_key;
use latchkey_store::{Audited, Invalidation, Store, StoreError};
use sqlx::{Connection, PgConnection};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

async fn next(feed: &mut mpsc::Receiver<Invalidation>) -> Invalidation {
    tokio::time::timeout(PATIENCE, feed.recv())
        .await
        .unwrap_or_else(|_| panic!("no invalidation within {PATIENCE:?}"))
        .expect("the feed ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_delivers_changes_made_by_another_instance() {
    let schema = TestSchema::new().await;
    let watcher = schema.open().await;
    // Opened the other way on purpose: both must agree on the channel.
    let writer = schema.open_by_url().await;
    assert_eq!(writer.listener_application_name(), watcher.listener_application_name());
    let mut feed = watcher.watch_invalidations().await.unwrap().expect("PostgreSQL has an invalidation feed");
    let master = store_key(&writer, new_key(Permission::Master, None)).await;
    let site = store_site(&writer).await;
    let [first, second, third] = [(); 3].map(|()| new_key(Permission::Read, Some(&site.id)));
    for key in [&first, &second, &third] {
        store_key(&writer, key.clone()).await;
    }

    // Refused: rolled back, so it notifies nobody. Notifications arrive in commit
    // order, so the next message proves nothing came from this one.
    assert!(matches!(block(&writer, &master).await, Err(StoreError::LastMaster)));
    block(&writer, &first).await.unwrap();
    assert_eq!(next(&mut feed).await, Invalidation::Key(first.hash));

    let deletion = event(AuditAction::KeyDeleted).for_key(&second);
    writer.delete_key(Audited { value: &second, event: &deletion }).await.unwrap();
    assert_eq!(next(&mut feed).await, Invalidation::Key(second.hash));

    let deleted = writer.delete_site(&site.id, &event(AuditAction::SiteDeleted).for_site(&site)).await.unwrap();
    assert_eq!(deleted.len(), 2);
    let mut invalidated = HashSet::new();
    for _ in 0..2 {
        match next(&mut feed).await {
            Invalidation::Key(hash) => invalidated.insert(hash),
            other => panic!("expected a key, got {other:?}"),
        };
    }
    assert_eq!(invalidated, HashSet::from([first.hash, third.hash]));

    drop(feed);
    watcher.close().await;
    writer.close().await;
}

async fn listener_pids(admin: &mut PgConnection, store: &PostgresStore) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
          WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(store.listener_application_name())
    .fetch_all(admin)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_reports_lost_then_resumed_and_keeps_delivering() {
    let schema = TestSchema::new().await;
    let (watcher, writer) = (schema.open().await, schema.open().await);
    let mut feed = watcher.watch_invalidations().await.unwrap().unwrap();
    let mut admin = PgConnection::connect(&schema.url).await.unwrap();

    let killed = listener_pids(&mut admin, &watcher).await;
    assert_eq!(killed.len(), 1, "one listener connection, already listening");
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(watcher.listener_application_name())
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(terminated, [true]);

    assert_eq!(next(&mut feed).await, Invalidation::Lost);
    assert_eq!(next(&mut feed).await, Invalidation::Resumed);

    // A new backend is listening: poll, since the old one may linger in the view
    // for a moment after it was told to exit.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let pids = listener_pids(&mut admin, &watcher).await;
        if pids.len() == 1 && !killed.contains(&pids[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "listener pids stayed {pids:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let master = store_key(&writer, new_key(Permission::Master, None)).await;
    store_key(&writer, new_key(Permission::Master, None)).await;
    block(&writer, &master).await.unwrap();
    assert_eq!(next(&mut feed).await, Invalidation::Key(master.hash));

    let _ = admin.close().await;
    drop(feed);
    watcher.close().await;
    writer.close().await;
}
