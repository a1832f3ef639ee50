//! Checks on keys and sites: creating, finding, listing, updating, rotating, deleting.

use super::new_key;
use super::support::{blocked, event, store_key, store_site};
use crate::{next_version, truncate_to_millis, Audited, KeyFilter, Page, SharedStore, StoreError};
use chrono::{Duration, Utc};
use latchkey_core::{
    AuditAction, AuditChange, Credits, KeyFormat, KeyId, KeyName, KeyOptions, KeyRecord, OwnerId, Permission,
    RateLimit, Refill, RefillInterval, SiteId, Status,
};

pub async fn a_created_key_is_found_by_id_and_by_hash(store: SharedStore) {
    assert!(store.has_no_keys().await.unwrap());
    let site = store_site(&store, "blog").await;
    let key = store_key(&store, Permission::Read, Some(&site.id)).await;
    assert!(!store.has_no_keys().await.unwrap());
    assert_eq!(store.get_key(&key.id).await.unwrap(), Some(key.clone()));
    assert_eq!(store.find_key_by_hash(&key.hash).await.unwrap(), Some(key.clone()));
    assert_eq!(store.find_key_by_hash(&KeyFormat::default().generate().hash()).await.unwrap(), None);
    let duplicate = KeyRecord { id: KeyId::generate(), ..key.clone() };
    let result = store.create_key(Audited { value: &duplicate, event: &event(AuditAction::KeyCreated) }).await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    let orphan = new_key(Permission::Read, Some(&SiteId::generate()));
    let result = store.create_key(Audited { value: &orphan, event: &event(AuditAction::KeyCreated) }).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
}

pub async fn keys_are_found_by_many_hashes_at_once(store: SharedStore) {
    let site = store_site(&store, "blog").await;
    let mut stored = Vec::new();
    for _ in 0..40 {
        stored.push(store_key(&store, Permission::Read, Some(&site.id)).await);
    }
    let unknown = KeyFormat::default().generate().hash();
    assert_eq!(store.find_keys_by_hashes(&[]).await.unwrap(), Vec::<KeyRecord>::new());
    assert_eq!(store.find_keys_by_hashes(&[unknown]).await.unwrap(), Vec::<KeyRecord>::new());
    // Every fourth key, an unknown hash among them and one hash twice: each key once.
    let mut wanted: Vec<KeyRecord> = stored.iter().step_by(4).cloned().collect();
    let mut hashes: Vec<_> = wanted.iter().map(|key| key.hash).collect();
    hashes.extend([unknown, wanted[0].hash]);
    let mut found = store.find_keys_by_hashes(&hashes).await.unwrap();
    found.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    wanted.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    assert_eq!(found, wanted);
}

pub async fn keys_list_newest_first_with_a_cursor_and_by_site(store: SharedStore) {
    let site = store_site(&store, "a").await;
    let other = store_site(&store, "b").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(store_key(&store, Permission::Read, Some(&site.id)).await.id);
    }
    store_key(&store, Permission::Read, Some(&other.id)).await;
    let master = store_key(&store, Permission::Master, None).await;
    ids.reverse();
    let filter = KeyFilter { site: Some(site.id.clone()), ..Default::default() };
    let first = store.list_keys(&filter, &Page { after: None, limit: 3 }).await.unwrap();
    assert_eq!(first.iter().map(|k| k.id.clone()).collect::<Vec<_>>(), ids[..3]);
    let rest = store.list_keys(&filter, &Page { after: Some(ids[2].to_string()), limit: 3 }).await.unwrap();
    assert_eq!(rest.iter().map(|k| k.id.clone()).collect::<Vec<_>>(), ids[3..]);
    let all = store.list_keys(&KeyFilter::default(), &Page { after: None, limit: 100 }).await.unwrap();
    assert_eq!(all.len(), 7);
    assert_eq!(all[0].id, master.id);
    let sites = store.list_sites(&Page { after: None, limit: 10 }).await.unwrap();
    assert_eq!(sites.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), [other.id, site.id]);
}

pub async fn an_update_applies_only_to_the_version_that_was_read(store: SharedStore) {
    let site = store_site(&store, "a").await;
    let key = store_key(&store, Permission::Write, Some(&site.id)).await;
    let after = blocked(&key);
    let audit = event(AuditAction::KeyBlocked).for_key(&key).with_changes(AuditChange::between(&key, &after));
    store.update_key(&key, Audited { value: &after, event: &audit }).await.unwrap();
    assert_eq!(store.get_key(&key.id).await.unwrap().unwrap().status, Status::Blocked);
    // A second writer that read the old version must not overwrite the new one.
    let stale = KeyRecord { name: KeyName::parse("stale").unwrap(), ..blocked(&key) };
    let result = store.update_key(&key, Audited { value: &stale, event: &event(AuditAction::KeyUpdated) }).await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    let gone = new_key(Permission::Read, Some(&site.id));
    let result =
        store.update_key(&gone, Audited { value: &blocked(&gone), event: &event(AuditAction::KeyBlocked) }).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
}

pub async fn deleting_a_site_deletes_its_keys_and_returns_them(store: SharedStore) {
    let site = store_site(&store, "doomed").await;
    let key = store_key(&store, Permission::Admin, Some(&site.id)).await;
    let deleted = store.delete_site(&site.id, &event(AuditAction::SiteDeleted).for_site(&site)).await.unwrap();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].id, key.id);
    assert_eq!(store.get_key(&key.id).await.unwrap(), None);
    assert_eq!(store.get_site(&site.id).await.unwrap(), None);
    let again = store.delete_site(&site.id, &event(AuditAction::SiteDeleted)).await;
    assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");
}

pub async fn thirty_two_concurrent_creators_all_succeed(store: SharedStore) {
    let site = store_site(&store, "busy").await;
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            let site = site.id.clone();
            tokio::spawn(async move { store_key(&store, Permission::Read, Some(&site)).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("a creator failed");
    }
    let listed = store
        .list_keys(&KeyFilter { site: Some(site.id), ..Default::default() }, &Page { after: None, limit: 100 })
        .await
        .unwrap();
    assert_eq!(listed.len(), 32);
}

pub async fn key_options_round_trip_and_owner_and_stale_filters_work(store: SharedStore) {
    let site = store_site(&store, "options").await;
    let mut key = new_key(Permission::Read, Some(&site.id));
    key.options = KeyOptions {
        owner_id: Some(OwnerId::parse("customer-42").unwrap()),
        metadata: Some(latchkey_core::Metadata::parse(r#"{"plan":"pro"}"#).unwrap()),
        ip_allowlist: latchkey_core::options::parse_allowlist(&["10.0.0.0/8", "::1/128"]).unwrap(),
        ratelimit: Some(RateLimit::new(100, 60).unwrap()),
        credits: Some(Credits {
            remaining: 7,
            refill: Some(Refill { interval: RefillInterval::Monthly, amount: 10 }),
            refilled_at: None,
        }),
        rotated_from: Some(KeyId::generate()),
        rotated_to: None,
    };
    key.created_at = truncate_to_millis(Utc::now() - Duration::days(40));
    store.create_key(Audited { value: &key, event: &event(AuditAction::KeyCreated) }).await.unwrap();
    assert_eq!(store.get_key(&key.id).await.unwrap(), Some(key.clone()));
    let fresh = store_key(&store, Permission::Read, Some(&site.id)).await;
    let page = Page { after: None, limit: 10 };
    let owned = KeyFilter { owner_id: Some("customer-42".into()), ..Default::default() };
    assert_eq!(store.list_keys(&owned, &page).await.unwrap(), [key.clone()]);
    let stale = KeyFilter { unused_since: Some(Utc::now() - Duration::days(30)), ..Default::default() };
    let ids: Vec<_> = store.list_keys(&stale, &page).await.unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(ids, [key.id.clone()], "the fresh key {} is not stale", fresh.id);
    store.record_last_used(&[(key.id.clone(), truncate_to_millis(Utc::now()))]).await.unwrap();
    assert!(store.list_keys(&stale, &page).await.unwrap().is_empty(), "a recent use makes it fresh");
}

pub async fn a_rotation_links_both_keys_in_one_transaction(store: SharedStore) {
    let site = store_site(&store, "rotation").await;
    let old = store_key(&store, Permission::Write, Some(&site.id)).await;
    let mut new = new_key(Permission::Write, Some(&site.id));
    new.options.rotated_from = Some(old.id.clone());
    let mut old_after = old.clone();
    old_after.options.rotated_to = Some(new.id.clone());
    old_after.expires_at = Some(truncate_to_millis(Utc::now() + Duration::hours(1)));
    old_after.updated_at = next_version(old.updated_at, Utc::now());
    let rotated = event(AuditAction::KeyRotated).for_key(&old);
    let created = event(AuditAction::KeyCreated).for_key(&new);
    store
        .rotate_key(&old, Audited { value: &old_after, event: &rotated }, Audited { value: &new, event: &created })
        .await
        .unwrap();
    assert_eq!(store.get_key(&old.id).await.unwrap(), Some(old_after));
    assert_eq!(store.get_key(&new.id).await.unwrap(), Some(new.clone()));
    // A second rotation from the stale version fails as a whole: no new key appears.
    let another = new_key(Permission::Write, Some(&site.id));
    let result = store
        .rotate_key(
            &old,
            Audited { value: &old, event: &event(AuditAction::KeyRotated) },
            Audited { value: &another, event: &event(AuditAction::KeyCreated) },
        )
        .await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    assert_eq!(store.get_key(&another.id).await.unwrap(), None);
}
