//! The no-lockout rule, "no write leaves the system without a usable Master key", decided
//! in one place. Each backend reads the key inside its writing transaction and asks
//! [`ensure_a_master_remains`]; only the counting (and what serializes it) is theirs.

use crate::{StoreError, StoreResult};
use latchkey_core::{AuditAction, AuditEvent, KeyRecord};
use std::future::Future;

/// What a write does to one stored key.
#[derive(Clone, Copy, Debug)]
pub enum KeyChange<'a> {
    /// Replaced by this version: an update, a block, the old side of a rotation.
    Replace(&'a KeyRecord),
    /// Deleted, alone or with its site.
    Delete,
}

/// Whether a change must leave at least one usable Master key. Every change must, except
/// blocking a key reported as leaked: a leaked Master key is worse than a lockout, which
/// `latchkey bootstrap` (run on the database host) undoes.
pub fn must_keep_a_master(event: &AuditEvent) -> bool {
    event.action != AuditAction::KeyReportedLeaked
}

/// Refuses with [`StoreError::LastMaster`] a change that takes the last usable Master key
/// away.
///
/// `stored` is the key as read *inside* the writing transaction, once writes to it are
/// serialized (SQLite's single writer, PostgreSQL's row lock); never the caller's copy,
/// which may be stale, or wrong about the key's level, status or expiry. Usability is
/// judged at `event.at`, the moment the change is recorded as made.
///
/// `another_usable_master` says, from the same transaction, whether a Master key other
/// than `stored` is usable at `event.at`. It is awaited only when the change does take a
/// usable Master away, so a backend pays for the query (and for whatever makes it exact)
/// only then.
pub async fn ensure_a_master_remains(
    stored: &KeyRecord,
    change: KeyChange<'_>,
    event: &AuditEvent,
    another_usable_master: impl Future<Output = StoreResult<bool>>,
) -> StoreResult<()> {
    let at = event.at;
    let takes_one_away = stored.is_usable_master_at(at)
        && match change {
            KeyChange::Replace(after) => !after.is_usable_master_at(at),
            KeyChange::Delete => true,
        };
    if !takes_one_away || !must_keep_a_master(event) {
        return Ok(());
    }
    if another_usable_master.await? {
        Ok(())
    } else {
        Err(StoreError::LastMaster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::new_key;
    use crate::truncate_to_millis;
    use chrono::{Duration, Utc};
    use latchkey_core::{Actor, Permission, Status};
    use std::future::ready;

    fn event(action: AuditAction) -> AuditEvent {
        AuditEvent::new(&Actor::system(), action, truncate_to_millis(Utc::now()))
    }

    /// A query that must not be needed: the rule answers without it.
    async fn never_asked() -> StoreResult<bool> {
        panic!("the rule looked for another Master key for a change that takes none away")
    }

    #[tokio::test]
    async fn deleting_or_blocking_the_last_usable_master_is_refused() {
        let master = new_key(Permission::Master, None);
        let blocked = KeyRecord { status: Status::Blocked, ..master.clone() };
        let deleted = event(AuditAction::KeyDeleted);
        let result = ensure_a_master_remains(&master, KeyChange::Delete, &deleted, ready(Ok(false))).await;
        assert!(matches!(result, Err(StoreError::LastMaster)), "{result:?}");
        let block = event(AuditAction::KeyBlocked);
        let result = ensure_a_master_remains(&master, KeyChange::Replace(&blocked), &block, ready(Ok(false))).await;
        assert!(matches!(result, Err(StoreError::LastMaster)), "{result:?}");
        let result = ensure_a_master_remains(&master, KeyChange::Delete, &deleted, ready(Ok(true))).await;
        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn a_change_that_keeps_the_master_usable_or_touches_no_usable_master_asks_nothing() {
        let master = new_key(Permission::Master, None);
        let renamed = KeyRecord { description: None, ..master.clone() };
        let update = event(AuditAction::KeyUpdated);
        ensure_a_master_remains(&master, KeyChange::Replace(&renamed), &update, never_asked()).await.unwrap();
        let read = new_key(Permission::Read, None);
        ensure_a_master_remains(&read, KeyChange::Delete, &update, never_asked()).await.unwrap();
        let blocked = KeyRecord { status: Status::Blocked, ..master.clone() };
        ensure_a_master_remains(&blocked, KeyChange::Delete, &update, never_asked()).await.unwrap();
    }

    #[tokio::test]
    async fn an_expiry_set_to_the_moment_of_the_change_takes_the_master_away() {
        let master = new_key(Permission::Master, None);
        let update = event(AuditAction::KeyUpdated);
        let expiring = KeyRecord { expires_at: Some(update.at), ..master.clone() };
        let result = ensure_a_master_remains(&master, KeyChange::Replace(&expiring), &update, ready(Ok(false))).await;
        assert!(matches!(result, Err(StoreError::LastMaster)), "{result:?}");
        let later = KeyRecord { expires_at: Some(update.at + Duration::seconds(1)), ..master.clone() };
        ensure_a_master_remains(&master, KeyChange::Replace(&later), &update, never_asked()).await.unwrap();
    }

    #[tokio::test]
    async fn a_leaked_last_master_may_be_blocked() {
        let master = new_key(Permission::Master, None);
        let blocked = KeyRecord { status: Status::Blocked, ..master.clone() };
        let leaked = event(AuditAction::KeyReportedLeaked);
        ensure_a_master_remains(&master, KeyChange::Replace(&blocked), &leaked, never_asked()).await.unwrap();
    }
}
