//! Checks on the audit trail and on bulk import, which copies records as they are.

use super::support::{blocked, event, store_key, store_site};
use super::{new_key, new_site};
use crate::{truncate_to_millis, AuditFilter, Audited, ImportBatch, Page, SharedStore};
use chrono::{Duration, Utc};
use latchkey_core::{AuditAction, AuditChange, Permission};

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
