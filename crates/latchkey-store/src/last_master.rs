//! The no-lockout rule, "no write leaves the system without a usable Master key", decided
//! in one place. Each backend reads the key inside its writing transaction and asks
//! [`ensure_a_master_remains`]; only the counting (and what serializes it) is theirs.

use crate::{StoreError, StoreResult};
use latchkey_core::{AuditAction, AuditEvent, KeyRecord};
use std::future::Future;

/// Which other Master keys would keep the system reachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasterKind {
    /// Active and not expired now.
    Usable,
    /// Usable, with no expiry and no IP allowlist (`KeyRecord::is_lasting_master_at`).
    Lasting,
}

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
/// away, or the last lasting one (giving it an expiry or an IP allowlist, blocking or
/// deleting it) when no other lasting Master remains.
///
/// `stored` is the key as read *inside* the writing transaction, once writes to it are
/// serialized (SQLite's single writer, PostgreSQL's row lock); never the caller's copy,
/// which may be stale, or wrong about the key's level, status or expiry. Usability is
/// judged at `event.at`, the moment the change is recorded as made.
///
/// `another_master` says, from the same transaction, whether a Master key other than
/// `stored` of the given kind exists at `event.at`. It is called only when the change does
/// take a Master away, so a backend pays for the query (and for whatever makes it exact)
/// only then.
pub async fn ensure_a_master_remains<F: Future<Output = StoreResult<bool>>>(
    stored: &KeyRecord,
    change: KeyChange<'_>,
    event: &AuditEvent,
    another_master: impl FnOnce(MasterKind) -> F,
) -> StoreResult<()> {
    let at = event.at;
    let (usable_after, lasting_after) = match change {
        KeyChange::Replace(after) => (after.is_usable_master_at(at), after.is_lasting_master_at(at)),
        KeyChange::Delete => (false, false),
    };
    let needed = if stored.is_lasting_master_at(at) && !lasting_after {
        MasterKind::Lasting
    } else if stored.is_usable_master_at(at) && !usable_after {
        MasterKind::Usable
    } else {
        return Ok(());
    };
    if !must_keep_a_master(event) || another_master(needed).await? {
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
        let result = ensure_a_master_remains(&master, KeyChange::Delete, &deleted, |_| ready(Ok(false))).await;
        assert!(matches!(result, Err(StoreError::LastMaster)), "{result:?}");
        let block = event(AuditAction::KeyBlocked);
        let result = ensure_a_master_remains(&master, KeyChange::Replace(&blocked), &block, |_| ready(Ok(false))).await;
        assert!(matches!(result, Err(StoreError::LastMaster)), "{result:?}");
        let result = ensure_a_master_remains(&master, KeyChange::Delete, &deleted, |_| ready(Ok(true))).await;
        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn a_change_that_keeps_the_master_usable_or_touches_no_usable_master_asks_nothing() {
        let master = new_key(Permission::Master, None);
        let renamed = KeyRecord { description: None, ..master.clone() };
        let update = event(AuditAction::KeyUpdated);
        ensure_a_master_remains(&master, KeyChange::Replace(&renamed), &update, |_| never_asked()).await.unwrap();
        let read = new_key(Permission::Read, None);
        ensure_a_master_remains(&read, KeyChange::Delete, &update, |_| never_asked()).await.unwrap();
        let blocked = KeyRecord { status: Status::Blocked, ..master.clone() };
        ensure_a_master_remains(&blocked, KeyChange::Delete, &update, |_| never_asked()).await.unwrap();
    }

    #[tokio::test]
    async fn an_expiry_set_to_the_moment_of_the_change_takes_the_master_away() {
        let master = new_key(Permission::Master, None);
        let update = event(AuditAction::KeyUpdated);
        let expiring = KeyRecord { expires_at: Some(update.at), ..master.clone() };
        let result =
            ensure_a_master_remains(&master, KeyChange::Replace(&expiring), &update, |_| ready(Ok(false))).await;
        assert!(matches!(result, Err(StoreError::LastMaster)), "{result:?}");
    }

    #[tokio::test]
    async fn an_expiry_or_an_allowlist_on_the_last_lasting_master_is_refused() {
        let master = new_key(Permission::Master, None);
        let update = event(AuditAction::KeyUpdated);
        let later = KeyRecord { expires_at: Some(update.at + Duration::days(30)), ..master.clone() };
        let mut fenced = master.clone();
        fenced.options.ip_allowlist = latchkey_core::options::parse_allowlist(&["10.0.0.0/8"]).unwrap();
        for after in [&later, &fenced] {
            let asked_for = |kind| {
                assert_eq!(kind, MasterKind::Lasting, "another lasting Master is what would keep the system reachable");
                ready(Ok(false))
            };
            let result = ensure_a_master_remains(&master, KeyChange::Replace(after), &update, asked_for).await;
            assert!(matches!(result, Err(StoreError::LastMaster)), "{result:?}");
            let result =
                ensure_a_master_remains(&master, KeyChange::Replace(after), &update, |_| ready(Ok(true))).await;
            assert!(result.is_ok(), "another lasting Master remains: {result:?}");
        }
    }

    #[tokio::test]
    async fn a_leaked_last_master_may_be_blocked() {
        let master = new_key(Permission::Master, None);
        let blocked = KeyRecord { status: Status::Blocked, ..master.clone() };
        let leaked = event(AuditAction::KeyReportedLeaked);
        ensure_a_master_remains(&master, KeyChange::Replace(&blocked), &leaked, |_| never_asked()).await.unwrap();
    }
}
