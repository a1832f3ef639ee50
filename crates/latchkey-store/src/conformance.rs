//! The conformance suite: written once against [`Store`], run by every backend's tests
//! (see `latchkey-sqlite` and `latchkey-postgres`). A backend is done when it passes all.

use crate::{
    next_version, truncate_to_millis, AuditFilter, Audited, ImportBatch, KeyFilter, Page, SharedStore, StoreError,
};
use chrono::{Duration, Utc};
use latchkey_core::{
    Actor, AuditAction, AuditChange, AuditEvent, Credits, KeyFormat, KeyId, KeyName, KeyOptions, KeyRecord, OwnerId,
    Permission, RateLimit, Refill, RefillInterval, Scopes, Site, SiteId, SiteName, Status,
};
use std::future::Future;
use std::pin::Pin;

pub struct Check {
    pub name: &'static str,
    pub run: fn(SharedStore) -> Pin<Box<dyn Future<Output = ()> + Send>>,
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        pub const CHECKS: &[Check] = &[$(Check { name: stringify!($name), run: |store| Box::pin($name(store)) }),*];
    };
}

checks!(
    a_created_key_is_found_by_id_and_by_hash,
    keys_list_newest_first_with_a_cursor_and_by_site,
    an_update_applies_only_to_the_version_that_was_read,
    the_last_usable_master_key_cannot_be_blocked_or_deleted,
    deleting_a_site_deletes_its_keys_and_returns_them,
    last_used_only_moves_forward,
    audit_events_are_filtered_by_site_key_and_action,
    thirty_two_concurrent_creators_all_succeed,
    an_import_keeps_ids_hashes_and_times,
    usage_counts_add_up_per_key_and_day,
    key_options_round_trip_and_owner_and_stale_filters_work,
    credits_are_spent_exactly_under_concurrency_and_refilled,
    a_rotation_links_both_keys_in_one_transaction,
    a_leaked_last_master_key_can_still_be_blocked,
);

fn event(action: AuditAction) -> AuditEvent {
    AuditEvent::new(&Actor::system(), action, truncate_to_millis(Utc::now()))
}

pub fn new_site(name: &str) -> Site {
    Site { id: SiteId::generate(), name: SiteName::parse(name).unwrap(), created_at: truncate_to_millis(Utc::now()) }
}

pub fn new_key(permission: Permission, site: Option<&SiteId>) -> KeyRecord {
    let secret = KeyFormat::default().generate();
    let now = truncate_to_millis(Utc::now());
    KeyRecord {
        id: KeyId::generate(),
        site_id: site.cloned(),
        name: KeyName::parse("conformance").unwrap(),
        description: None,
        permission,
        scopes: Scopes::parse(&["flows:execute"]).unwrap(),
        status: Status::Active,
        prefix: secret.display_prefix(),
        hash: secret.hash(),
        created_at: now,
        created_by: None,
        updated_at: now,
        last_used_at: None,
        expires_at: None,
        options: KeyOptions::default(),
    }
}

async fn store_site(store: &SharedStore, name: &str) -> Site {
    let site = new_site(name);
    store.create_site(Audited { value: &site, event: &event(AuditAction::SiteCreated).for_site(&site) }).await.unwrap();
    site
}

async fn store_key(store: &SharedStore, permission: Permission, site: Option<&SiteId>) -> KeyRecord {
    let key = new_key(permission, site);
    store.create_key(Audited { value: &key, event: &event(AuditAction::KeyCreated).for_key(&key) }).await.unwrap();
    key
}

fn blocked(key: &KeyRecord) -> KeyRecord {
    KeyRecord { status: Status::Blocked, updated_at: next_version(key.updated_at, Utc::now()), ..key.clone() }
}

async fn a_created_key_is_found_by_id_and_by_hash(store: SharedStore) {
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

async fn keys_list_newest_first_with_a_cursor_and_by_site(store: SharedStore) {
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

async fn an_update_applies_only_to_the_version_that_was_read(store: SharedStore) {
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

async fn the_last_usable_master_key_cannot_be_blocked_or_deleted(store: SharedStore) {
    let first = store_key(&store, Permission::Master, None).await;
    let block = || event(AuditAction::KeyBlocked);
    let result = store.update_key(&first, Audited { value: &blocked(&first), event: &block() }).await;
    assert!(matches!(result, Err(StoreError::LastMaster)), "{result:?}");
    let result = store.delete_key(Audited { value: &first, event: &event(AuditAction::KeyDeleted) }).await;
    assert!(matches!(result, Err(StoreError::LastMaster)), "{result:?}");
    // An expired second Master does not count as a way back in.
    let mut expired = new_key(Permission::Master, None);
    expired.expires_at = Some(truncate_to_millis(Utc::now() - Duration::hours(1)));
    store.create_key(Audited { value: &expired, event: &event(AuditAction::KeyCreated) }).await.unwrap();
    let result = store.delete_key(Audited { value: &first, event: &event(AuditAction::KeyDeleted) }).await;
    assert!(matches!(result, Err(StoreError::LastMaster)), "{result:?}");
    store_key(&store, Permission::Master, None).await;
    store.update_key(&first, Audited { value: &blocked(&first), event: &block() }).await.unwrap();
}

async fn deleting_a_site_deletes_its_keys_and_returns_them(store: SharedStore) {
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

async fn last_used_only_moves_forward(store: SharedStore) {
    let key = store_key(&store, Permission::Master, None).await;
    let later = truncate_to_millis(Utc::now());
    let earlier = later - Duration::minutes(5);
    store.record_last_used(&[(key.id.clone(), later)]).await.unwrap();
    store.record_last_used(&[(key.id.clone(), earlier)]).await.unwrap();
    assert_eq!(store.get_key(&key.id).await.unwrap().unwrap().last_used_at, Some(later));
}

async fn audit_events_are_filtered_by_site_key_and_action(store: SharedStore) {
    let site = store_site(&store, "audited").await;
    let key = store_key(&store, Permission::Read, Some(&site.id)).await;
    let after = blocked(&key);
    let audit = event(AuditAction::KeyBlocked).for_key(&key).with_changes(AuditChange::between(&key, &after));
    store.update_key(&key, Audited { value: &after, event: &audit }).await.unwrap();
    let page = Page { after: None, limit: 10 };
    let for_site = store.list_audit(&AuditFilter { site: Some(site.id.clone()), ..Default::default() }, &page).await;
    let actions: Vec<_> = for_site.unwrap().iter().map(|e| e.action).collect();
    assert_eq!(actions, [AuditAction::KeyBlocked, AuditAction::KeyCreated, AuditAction::SiteCreated]);
    let filter = AuditFilter { key: Some(key.id.clone()), action: Some(AuditAction::KeyBlocked), ..Default::default() };
    let blocked_events = store.list_audit(&filter, &page).await.unwrap();
    assert_eq!(blocked_events, [audit]);
}

async fn thirty_two_concurrent_creators_all_succeed(store: SharedStore) {
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

async fn an_import_keeps_ids_hashes_and_times(store: SharedStore) {
    let site = new_site("imported");
    let mut key = new_key(Permission::Write, Some(&site.id));
    key.last_used_at = Some(truncate_to_millis(Utc::now() - Duration::days(3)));
    let master = new_key(Permission::Master, None);
    let audit = event(AuditAction::KeyCreated).for_key(&key);
    let batch =
        ImportBatch { sites: vec![site.clone()], keys: vec![key.clone(), master.clone()], events: vec![audit.clone()] };
    store.import(&batch).await.unwrap();
    assert_eq!(store.get_site(&site.id).await.unwrap(), Some(site));
    assert_eq!(store.find_key_by_hash(&key.hash).await.unwrap(), Some(key));
    assert_eq!(store.get_key(&master.id).await.unwrap(), Some(master));
    let events = store.list_audit(&AuditFilter::default(), &Page { after: None, limit: 10 }).await.unwrap();
    assert_eq!(events, [audit]);
}

async fn usage_counts_add_up_per_key_and_day(store: SharedStore) {
    use crate::UsageCount;
    let key = store_key(&store, Permission::Master, None).await;
    let other = store_key(&store, Permission::Master, None).await;
    let count = |key: &KeyRecord, day, allowed, refused| UsageCount { key_id: key.id.clone(), day, allowed, refused };
    store.record_usage(&[count(&key, 100, 3, 1), count(&other, 100, 5, 0)]).await.unwrap();
    store.record_usage(&[count(&key, 100, 2, 2), count(&key, 101, 1, 0)]).await.unwrap();
    let gone = new_key(Permission::Read, None);
    store.record_usage(&[count(&gone, 100, 1, 1)]).await.expect("a deleted key's counts are skipped");
    let mut rows = store.usage(std::slice::from_ref(&key.id), 100).await.unwrap();
    rows.sort_by_key(|row| row.day);
    assert_eq!(rows, [count(&key, 100, 5, 3), count(&key, 101, 1, 0)]);
    assert_eq!(store.usage(&[key.id.clone(), other.id.clone()], 101).await.unwrap().len(), 1);
}

async fn key_options_round_trip_and_owner_and_stale_filters_work(store: SharedStore) {
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

async fn credits_are_spent_exactly_under_concurrency_and_refilled(store: SharedStore) {
    use crate::CreditSpend;
    let mut key = new_key(Permission::Master, None);
    let now = Utc::now();
    key.options.credits = Some(Credits { remaining: 10, refill: None, refilled_at: None });
    store.create_key(Audited { value: &key, event: &event(AuditAction::KeyCreated) }).await.unwrap();
    let spenders: Vec<_> = (0..32)
        .map(|_| {
            let (store, id) = (store.clone(), key.id.clone());
            tokio::spawn(async move { store.spend_credits(&id, 1, now).await.unwrap() })
        })
        .collect();
    let mut spent = 0;
    for spender in spenders {
        if let CreditSpend::Spent { .. } = spender.await.unwrap() {
            spent += 1;
        }
    }
    assert_eq!(spent, 10, "exactly the balance is spent");
    assert_eq!(store.spend_credits(&key.id, 1, now).await.unwrap(), CreditSpend::Exhausted);
    let plain = store_key(&store, Permission::Master, None).await;
    assert_eq!(store.spend_credits(&plain.id, 1, now).await.unwrap(), CreditSpend::NotLimited);

    let mut daily = new_key(Permission::Master, None);
    let refill = Refill { interval: RefillInterval::Daily, amount: 3 };
    daily.options.credits =
        Some(Credits { remaining: 0, refill: Some(refill), refilled_at: Some(refill.interval.period_start(now)) });
    store.create_key(Audited { value: &daily, event: &event(AuditAction::KeyCreated) }).await.unwrap();
    assert_eq!(store.spend_credits(&daily.id, 1, now).await.unwrap(), CreditSpend::Exhausted);
    let tomorrow = now + Duration::days(1);
    assert_eq!(store.spend_credits(&daily.id, 1, tomorrow).await.unwrap(), CreditSpend::Spent { remaining: 2 });
    assert_eq!(store.get_key(&daily.id).await.unwrap().unwrap().options.credits.unwrap().remaining, 2);
}

async fn a_rotation_links_both_keys_in_one_transaction(store: SharedStore) {
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

async fn a_leaked_last_master_key_can_still_be_blocked(store: SharedStore) {
    let only = store_key(&store, Permission::Master, None).await;
    let leaked = event(AuditAction::KeyReportedLeaked).for_key(&only);
    store.update_key(&only, Audited { value: &blocked(&only), event: &leaked }).await.unwrap();
    assert_eq!(store.get_key(&only.id).await.unwrap().unwrap().status, Status::Blocked);
}
