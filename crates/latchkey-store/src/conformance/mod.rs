//! The conformance suite: written once against [`Store`](crate::Store), run by every
//! backend's tests (see `latchkey-sqlite` and `latchkey-postgres`). A backend is done
//! when it passes all.
//!
//! The checks and `conformance_tests!` are behind the
//! `conformance` feature, which only the backends' dev-dependencies turn on, so the
//! server never compiles them. [`new_site`] and [`new_key`] are not: benchmarks and the
//! migration tests build records with them.

use chrono::Utc;
use latchkey_core::{KeyFormat, KeyName, KeyRecord, Permission, Scopes, Site, SiteId, SiteName};

#[cfg(feature = "conformance")]
pub mod import_and_audit;
#[cfg(feature = "conformance")]
pub mod keys;
#[cfg(feature = "conformance")]
pub mod masters;
#[cfg(feature = "conformance")]
pub mod sessions;
#[cfg(feature = "conformance")]
pub mod usage;
#[cfg(feature = "conformance")]
pub mod webhooks;

/// A site that is not stored yet.
pub fn new_site(name: &str) -> Site {
    Site {
        id: SiteId::generate(),
        name: SiteName::parse(name).unwrap(),
        created_at: crate::truncate_to_millis(Utc::now()),
    }
}

/// A key that is not stored yet: active, never used, no options, a fresh secret.
pub fn new_key(permission: Permission, site: Option<&SiteId>) -> KeyRecord {
    let spec = latchkey_core::NewKey {
        scopes: Scopes::parse(&["flows:execute"]).unwrap(),
        ..latchkey_core::NewKey::plain(KeyName::parse("conformance").unwrap(), permission, site.cloned())
    };
    KeyRecord::issued(spec, &KeyFormat::default().generate(), None, crate::truncate_to_millis(Utc::now()))
}

/// Expands to one `#[tokio::test]` per conformance check, named after the check, so a
/// failure names what broke. In a backend's tests:
///
/// ```text
/// mod conformance {
///     latchkey_store::conformance_tests!(super::run_check);
/// }
/// ```
///
/// `run_check(check)` runs `check`, an `FnOnce(SharedStore) -> impl Future<Output = ()>
/// + Send + 'static`, on a fresh, empty store of the backend (and cleans up after it). A
/// test attribute may come first to choose the runtime, e.g.
/// `#[tokio::test(flavor = "multi_thread")] super::run_check`.
#[cfg(feature = "conformance")]
#[macro_export]
macro_rules! conformance_tests {
    (@checks #[$test:meta] $run:path; $($module:ident :: $check:ident),* $(,)?) => {
        $(
            #[$test]
            async fn $check() {
                $run($crate::conformance::$module::$check).await;
            }
        )*
    };
    (#[$test:meta] $run:path) => {
        $crate::conformance_tests!(@checks #[$test] $run;
            keys::a_created_key_is_found_by_id_and_by_hash,
            keys::keys_are_found_by_many_hashes_at_once,
            keys::keys_list_newest_first_with_a_cursor_and_by_site,
            keys::an_update_applies_only_to_the_version_that_was_read,
            keys::deleting_a_site_deletes_its_keys_and_returns_them,
            keys::thirty_two_concurrent_creators_all_succeed,
            keys::key_options_round_trip_and_owner_and_stale_filters_work,
            keys::a_rotation_links_both_keys_in_one_transaction,
            masters::the_last_usable_master_key_cannot_be_blocked_or_deleted,
            masters::deleting_the_last_master_is_refused_whatever_the_callers_copy_says,
            masters::blocking_the_last_master_is_refused_whatever_the_callers_copy_says,
            masters::a_change_decided_on_another_version_of_the_last_master_is_a_conflict,
            masters::a_leaked_last_master_key_can_still_be_blocked,
            masters::the_last_lasting_master_cannot_be_given_an_expiry_or_an_allowlist,
            masters::the_only_master_key_can_be_rotated_without_grace,
            sessions::a_session_is_found_by_its_id_hash_and_deleted,
            sessions::a_session_changes_only_from_the_version_that_was_read,
            sessions::idle_sessions_are_pruned_and_active_ones_kept,
            usage::last_used_only_moves_forward,
            usage::usage_counts_add_up_per_key_and_day,
            usage::credits_are_spent_exactly_under_concurrency_and_refilled,
            import_and_audit::audit_events_are_filtered_by_site_key_and_action,
            import_and_audit::an_import_keeps_ids_hashes_and_times,
            import_and_audit::an_import_writes_nothing_when_one_key_cannot_be_stored,
            webhooks::a_change_writes_its_event_for_the_endpoints_that_want_it,
            webhooks::a_refused_change_writes_no_event,
            webhooks::deliveries_are_claimed_once_in_order_and_retried_when_due,
            webhooks::a_claim_that_runs_out_is_taken_over,
            webhooks::an_event_id_is_written_once_and_test_events_go_to_one_endpoint,
        );
    };
    ($run:path) => {
        $crate::conformance_tests!(#[tokio::test] $run);
    };
}

/// What the checks share: storing records the way the server does, with their events.
#[cfg(feature = "conformance")]
mod support {
    use super::{new_key, new_site};
    use crate::{next_version, truncate_to_millis, Audited, SharedStore};
    use chrono::Utc;
    use latchkey_core::{Actor, AuditAction, AuditEvent, KeyRecord, Permission, Site, SiteId, Status};

    pub fn event(action: AuditAction) -> AuditEvent {
        AuditEvent::new(&Actor::system(), action, truncate_to_millis(Utc::now()))
    }

    pub async fn store_site(store: &SharedStore, name: &str) -> Site {
        let site = new_site(name);
        let created = event(AuditAction::SiteCreated).for_site(&site);
        store.create_site(Audited { value: &site, event: &created }).await.unwrap();
        site
    }

    pub async fn store_key(store: &SharedStore, permission: Permission, site: Option<&SiteId>) -> KeyRecord {
        let key = new_key(permission, site);
        store.create_key(Audited { value: &key, event: &event(AuditAction::KeyCreated).for_key(&key) }).await.unwrap();
        key
    }

    /// The next version of `key`, blocked.
    pub fn blocked(key: &KeyRecord) -> KeyRecord {
        KeyRecord { status: Status::Blocked, updated_at: next_version(key.updated_at, Utc::now()), ..key.clone() }
    }
}
