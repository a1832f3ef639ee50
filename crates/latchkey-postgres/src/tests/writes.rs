//! Writes that only a shared database can get wrong: racing instances, batches that
//! name a key twice, imports larger than one statement.

use super::{block, event, store_key, usable_masters, TestSchema};
use crate::import::IMPORT_CHUNK;
use chrono::Utc;
use latchkey_core::{AuditAction, AuditEvent, KeyId, KeyRecord, Permission, Site, SiteId};
use latchkey_store::conformance::{new_key, new_site};
use latchkey_store::{truncate_to_millis, Audited, ImportBatch, Store, StoreError};
use std::sync::Arc;

/// Two instances each take away one of the last two usable Master keys at the same
/// moment. Without the advisory lock both would count the other key and succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_removals_of_the_last_two_masters_exactly_one_succeeds() {
    let schema = TestSchema::new().await;
    let (left, right) = (schema.open().await, schema.open().await);
    let mut survivor = store_key(&left, new_key(Permission::Master, None)).await;
    for round in 0..12 {
        let fresh = store_key(&left, new_key(Permission::Master, None)).await;
        let start = Arc::new(tokio::sync::Barrier::new(2));
        // Odd rounds race a deletion against a block, even rounds two blocks.
        let delete_fresh = round % 2 == 1;
        let racers = [(left.clone(), survivor.clone(), false), (right.clone(), fresh.clone(), delete_fresh)].map(
            |(store, key, delete)| {
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    let outcome = if delete {
                        let event = event(AuditAction::KeyDeleted).for_key(&key);
                        store.delete_key(Audited { value: &key, event: &event }).await
                    } else {
                        block(&store, &key).await
                    };
                    (key, outcome)
                })
            },
        );
        let mut refused = Vec::new();
        let mut succeeded = 0;
        for racer in racers {
            match racer.await.expect("a racer panicked") {
                (_, Ok(())) => succeeded += 1,
                (key, Err(StoreError::LastMaster)) => refused.push(key),
                (_, Err(error)) => panic!("round {round}: unexpected {error:?}"),
            }
        }
        assert_eq!(succeeded, 1, "round {round}: exactly one may succeed");
        survivor = refused.pop().expect("the other was refused");
        assert_eq!(usable_masters(&left).await, [survivor.id.clone()]);
    }
    left.close().await;
    right.close().await;
}

#[tokio::test]
async fn a_last_used_batch_keeps_the_latest_time_per_key() {
    let schema = TestSchema::new().await;
    let store = schema.open().await;
    let one = store_key(&store, new_key(Permission::Master, None)).await;
    let two = store_key(&store, new_key(Permission::Master, None)).await;
    let now = truncate_to_millis(Utc::now());
    let minutes = |n| now - chrono::Duration::minutes(n);
    store
        .record_last_used(&[
            (one.id.clone(), minutes(1)),
            (two.id.clone(), now),
            (one.id.clone(), now),
            (one.id.clone(), minutes(2)),
            (KeyId::generate(), now),
        ])
        .await
        .unwrap();
    store.record_last_used(&[(one.id.clone(), minutes(5)), (two.id.clone(), minutes(5))]).await.unwrap();
    for key in [&one, &two] {
        let stored = store.get_key(&key.id).await.unwrap().unwrap();
        assert_eq!(stored.last_used_at, Some(now));
    }
    store.close().await;
}

#[tokio::test]
async fn an_import_spanning_several_statements_is_all_or_nothing() {
    let schema = TestSchema::new().await;
    let store = schema.open().await;
    let sites: Vec<Site> = (0..3).map(|_| new_site("imported")).collect();
    let keys: Vec<KeyRecord> =
        (0..IMPORT_CHUNK * 2 + 7).map(|i| new_key(Permission::Read, Some(&sites[i % sites.len()].id))).collect();
    let events: Vec<AuditEvent> =
        keys.iter().take(IMPORT_CHUNK + 1).map(|key| event(AuditAction::KeyCreated).for_key(key)).collect();

    // The last key's site is missing: the whole batch, earlier chunks included, is
    // rolled back.
    let mut broken = ImportBatch { sites: sites.clone(), keys: keys.clone(), events: events.clone() };
    broken.keys.push(new_key(Permission::Read, Some(&SiteId::generate())));
    let result = store.import(&broken).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert!(store.has_no_keys().await.unwrap());
    assert_eq!(store.get_site(&sites[0].id).await.unwrap(), None);

    let batch = ImportBatch { sites, keys, events };
    store.import(&batch).await.unwrap();
    let count = |table: &str| {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let pool = store.pool.clone();
        async move { sqlx::query_scalar::<_, i64>(&sql).fetch_one(&pool).await.unwrap() }
    };
    assert_eq!(count("sites").await, 3);
    assert_eq!(count("keys").await, batch.keys.len() as i64);
    assert_eq!(count("audit_events").await, batch.events.len() as i64);
    let last = batch.keys.last().unwrap();
    assert_eq!(store.find_key_by_hash(&last.hash).await.unwrap().as_ref(), Some(last));
    let again = store.import(&batch).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    store.close().await;
}

#[tokio::test]
#[should_panic(expected = "PostgreSQL is not reachable at")]
async fn an_unreachable_server_fails_the_tests_loudly() {
    TestSchema::at("postgres://postgres@127.0.0.1:1/test".to_owned()).await;
}
