//! Checks on the audit trail and on bulk import, which copies records as they are.

use super::support::{blocked, event, store_key, store_site};
use super::{new_key, new_site};
use crate::{truncate_to_millis, AuditFilter, Audited, ImportBatch, Page, SharedStore, StoreError};
use chrono::{Duration, Utc};
use latchkey_core::{AuditAction, AuditChange, KeyId, KeyRecord, Permission, SiteId};

pub async fn audit_events_are_filtered_by_site_key_and_action(store: SharedStore) {
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

pub async fn an_import_keeps_ids_hashes_and_times(store: SharedStore) {
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

/// `POST /keys/import` promises all or nothing: one key that cannot be stored (its hash is
/// stored already, or repeated in the batch; its site does not exist) writes no site, no
/// key and no event of the batch, whatever was inserted before it.
pub async fn an_import_writes_nothing_when_one_key_cannot_be_stored(store: SharedStore) {
    let site = store_site(&store, "native").await;
    let native = store_key(&store, Permission::Read, Some(&site.id)).await;
    let everything = Page { after: None, limit: 100 };
    let audit_before = store.list_audit(&AuditFilter::default(), &everything).await.unwrap();
    let fresh = new_key(Permission::Write, Some(&site.id));
    let imported = |keys: Vec<KeyRecord>| {
        let events = keys.iter().map(|key| event(AuditAction::KeyImported).for_key(key)).collect();
        ImportBatch { sites: vec![new_site("never stored")], keys, events }
    };
    let stored_hash =
        KeyRecord { id: KeyId::generate(), hash: native.hash, ..new_key(Permission::Read, Some(&site.id)) };
    let repeated_hash = KeyRecord { id: KeyId::generate(), ..fresh.clone() };
    let no_such_site = new_key(Permission::Read, Some(&SiteId::generate()));
    for (last, refusal) in [(stored_hash, "conflict"), (repeated_hash, "conflict"), (no_such_site, "not found")] {
        // The key that fails comes last, after others that could be written.
        let batch = imported(vec![fresh.clone(), last]);
        let result = store.import(&batch).await;
        let refused = match &result {
            Err(StoreError::Conflict(_)) => "conflict",
            Err(StoreError::NotFound) => "not found",
            _ => "something else",
        };
        assert_eq!(refused, refusal, "{result:?}");
        assert_eq!(store.get_key(&fresh.id).await.unwrap(), None);
        assert_eq!(store.get_site(&batch.sites[0].id).await.unwrap(), None);
        assert_eq!(store.list_audit(&AuditFilter::default(), &everything).await.unwrap(), audit_before);
    }
    assert_eq!(store.find_key_by_hash(&native.hash).await.unwrap(), Some(native));
    store.import(&imported(vec![fresh.clone()])).await.unwrap();
    assert_eq!(store.find_key_by_hash(&fresh.hash).await.unwrap(), Some(fresh));
}
