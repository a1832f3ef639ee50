//! Checks on the no-lockout rule: the last usable Master key is kept, whatever the
//! caller believes about it.

use super::new_key;
use super::support::{blocked, event, store_key, store_site};
use crate::{truncate_to_millis, Audited, SharedStore, StoreError};
use chrono::{Duration, Utc};
use latchkey_core::{AuditAction, KeyRecord, Permission, SiteId, Status};

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

/// Copies of `key` at its stored version that are wrong about it: one says it is a Read
/// key of a site, one that it is blocked, one that it expired an hour ago.
fn misstated_copies(key: &KeyRecord, site: &SiteId) -> [KeyRecord; 3] {
    let an_hour_ago = truncate_to_millis(Utc::now() - Duration::hours(1));
    [
        KeyRecord { permission: Permission::Read, site_id: Some(site.clone()), ..key.clone() },
        KeyRecord { status: Status::Blocked, ..key.clone() },
        KeyRecord { expires_at: Some(an_hour_ago), ..key.clone() },
    ]
}

/// Only the id is taken from the caller's copy: the rule is decided on the row that the
/// deletion removes.
pub async fn deleting_the_last_master_is_refused_whatever_the_callers_copy_says(store: SharedStore) {
    let only = store_key(&store, Permission::Master, None).await;
    let site = store_site(&store, "elsewhere").await;
    for copy in misstated_copies(&only, &site.id) {
        let deleted = event(AuditAction::KeyDeleted).for_key(&copy);
        let result = store.delete_key(Audited { value: &copy, event: &deleted }).await;
        assert!(matches!(result, Err(StoreError::LastMaster)), "{copy:?}: {result:?}");
    }
    assert_eq!(store.get_key(&only.id).await.unwrap(), Some(only));
}

/// At the stored version, an update is decided on the stored row, not on the caller's
/// account of it.
pub async fn blocking_the_last_master_is_refused_whatever_the_callers_copy_says(store: SharedStore) {
    let only = store_key(&store, Permission::Master, None).await;
    let site = store_site(&store, "elsewhere").await;
    let after = blocked(&only);
    for copy in misstated_copies(&only, &site.id) {
        let block = event(AuditAction::KeyBlocked).for_key(&copy);
        let result = store.update_key(&copy, Audited { value: &after, event: &block }).await;
        assert!(matches!(result, Err(StoreError::LastMaster)), "{copy:?}: {result:?}");
    }
    assert_eq!(store.get_key(&only.id).await.unwrap(), Some(only));
}

/// The compare-and-swap comes first: a change decided on another version than the stored
/// one is a `Conflict` even when it would also take the last Master away. The caller reads
/// the key again, and the rule then refuses the change on the fresh version.
pub async fn a_change_decided_on_another_version_of_the_last_master_is_a_conflict(store: SharedStore) {
    let only = store_key(&store, Permission::Master, None).await;
    let older = KeyRecord { updated_at: only.updated_at - Duration::milliseconds(1), ..only.clone() };
    // Also a version that was never stored: a change that did not commit.
    let unseen = blocked(&only);
    for copy in [older, unseen] {
        let block = event(AuditAction::KeyBlocked).for_key(&copy);
        let result = store.update_key(&copy, Audited { value: &blocked(&copy), event: &block }).await;
        assert!(matches!(result, Err(StoreError::Conflict(_))), "{copy:?}: {result:?}");
    }
    assert_eq!(store.get_key(&only.id).await.unwrap(), Some(only));
}

/// An expiry or an IP allowlist on the last lasting Master key would lock everyone out
/// later (or from the wrong network): refused until another lasting Master exists; a
/// Master with an expiry or an allowlist does not count as one.
pub async fn the_last_lasting_master_cannot_be_given_an_expiry_or_an_allowlist(store: SharedStore) {
    let only = store_key(&store, Permission::Master, None).await;
    let in_a_month =
        KeyRecord { expires_at: Some(truncate_to_millis(Utc::now() + Duration::days(30))), ..only.clone() };
    let mut fenced = only.clone();
    fenced.options.ip_allowlist = latchkey_core::options::parse_allowlist(&["10.0.0.0/8"]).unwrap();
    let mut fenced_other = new_key(Permission::Master, None);
    fenced_other.options.ip_allowlist = fenced.options.ip_allowlist.clone();
    store.create_key(Audited { value: &fenced_other, event: &event(AuditAction::KeyCreated) }).await.unwrap();
    for after in [&in_a_month, &fenced] {
        let update = event(AuditAction::KeyUpdated).for_key(&only);
        let result = store.update_key(&only, Audited { value: after, event: &update }).await;
        assert!(matches!(result, Err(StoreError::LastMaster)), "{after:?}: {result:?}");
    }
    store_key(&store, Permission::Master, None).await;
    let update = event(AuditAction::KeyUpdated).for_key(&only);
    store.update_key(&only, Audited { value: &in_a_month, event: &update }).await.unwrap();
}

/// The replacement is written before the old key's expiry is judged, so the only Master
/// key can be rotated with no grace period.
pub async fn the_only_master_key_can_be_rotated_without_grace(store: SharedStore) {
    let only = store_key(&store, Permission::Master, None).await;
    let now = truncate_to_millis(Utc::now());
    let new = new_key(Permission::Master, None);
    let mut old_after = only.clone();
    old_after.expires_at = Some(now);
    old_after.options.rotated_to = Some(new.id.clone());
    old_after.updated_at = crate::next_version(only.updated_at, now);
    let rotated = event(AuditAction::KeyRotated).for_key(&only);
    let created = event(AuditAction::KeyCreated).for_key(&new);
    let result = store
        .rotate_key(&only, Audited { value: &old_after, event: &rotated }, Audited { value: &new, event: &created })
        .await;
    assert!(result.is_ok(), "{result:?}");
    assert!(store.get_key(&new.id).await.unwrap().is_some_and(|key| key.is_lasting_master_at(Utc::now())));
}
