//! Checks on the no-lockout rule: the last usable Master key is kept.

use super::new_key;
use super::support::{blocked, event, store_key};
use crate::{truncate_to_millis, Audited, SharedStore, StoreError};
use chrono::{Duration, Utc};
use latchkey_core::{AuditAction, Permission, Status};

pub async fn the_last_usable_master_key_cannot_be_blocked_or_deleted(store: SharedStore) {
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

pub async fn a_leaked_last_master_key_can_still_be_blocked(store: SharedStore) {
    let only = store_key(&store, Permission::Master, None).await;
    let leaked = event(AuditAction::KeyReportedLeaked).for_key(&only);
    store.update_key(&only, Audited { value: &blocked(&only), event: &leaked }).await.unwrap();
    assert_eq!(store.get_key(&only.id).await.unwrap().unwrap().status, Status::Blocked);
}
