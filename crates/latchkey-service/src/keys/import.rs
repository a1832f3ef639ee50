//! Import of keys made by another system (`POST /keys/import`), by the SHA-256 of their
//! values, so that a platform moving to Latchkey keeps its clients' keys. The rules are
//! those of creating a key, entry by entry; the batch is written in one transaction with
//! one `key_imported` event per key, and any refusal imports nothing.

use super::{must_be_future, Keys};
use crate::error::{ServiceError, ServiceResult};
use chrono::{DateTime, Utc};
use latchkey_core::key_changes::ImportedKey;
use latchkey_core::{AuditAction, AuditChange, AuditEvent, Caller, KeyHash, KeyRecord, NewKey};
use latchkey_store::{truncate_to_millis, ImportBatch, StoreError};
use std::collections::HashMap;

/// The most keys one import may bring: the whole batch is one transaction, held in
/// memory and on the single SQLite writer while it runs.
pub const MAX_IMPORTED_KEYS: usize = 10_000;

impl Keys<'_> {
    /// Imports `keys`, all or none, and returns their records in the order given. Each
    /// entry is judged as a key created by `caller` would be (an Admin imports into its own
    /// site, up to Admin; only a Master imports Master keys); a refusal names the entry.
    /// A hash that is stored already, for a native or an imported key, is a conflict.
    pub async fn import(&self, caller: &Caller, keys: Vec<ImportedKey>) -> ServiceResult<Vec<KeyRecord>> {
        caller.may_manage_keys()?;
        if !(1..=MAX_IMPORTED_KEYS).contains(&keys.len()) {
            return Err(ServiceError::invalid(format!(
                "keys: an import holds 1 to {MAX_IMPORTED_KEYS} keys, not {}",
                keys.len()
            )));
        }
        let now = self.service.now();
        let mut first_with_hash: HashMap<KeyHash, usize> = HashMap::with_capacity(keys.len());
        for (at, entry) in keys.iter().enumerate() {
            let spec = &entry.key;
            caller.may_grant(spec.permission, spec.site_id.as_ref()).map_err(|denied| in_entry(at, denied.into()))?;
            must_be_future(spec.expires_at, now).map_err(|error| in_entry(at, error))?;
            if let Some(first) = first_with_hash.insert(entry.hash, at) {
                return Err(in_entry(at, ServiceError::invalid(format!("sha256: the same hash as keys[{first}]"))));
            }
        }
        let batch = imported_batch(caller, keys, truncate_to_millis(now));
        match self.service.store.import(&batch).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(ServiceError::NotFound("site")),
            Err(StoreError::Conflict(_)) => return Err(self.hash_conflict(&batch.keys).await),
            Err(other) => return Err(other.into()),
        }
        // A hash presented before its import may be cached as unknown.
        for key in &batch.keys {
            self.service.cache.forget(&key.hash);
        }
        Ok(batch.keys)
    }

    /// The conflict of an import that hit a stored hash, naming the first entry whose hash
    /// is stored (the store only says that one is). Only refused imports pay these reads.
    async fn hash_conflict(&self, keys: &[KeyRecord]) -> ServiceError {
        for (at, key) in keys.iter().enumerate() {
            match self.service.store.find_key_by_hash(&key.hash).await {
                Ok(Some(_)) => return conflict_in(&format!("keys[{at}]: a key with this sha256")),
                Ok(None) => {}
                Err(error) => return error.into(),
            }
        }
        // Gone again since (deleted meanwhile): the import was refused all the same.
        conflict_in("one of these keys' sha256: a key with it")
    }
}

fn conflict_in(what: &str) -> ServiceError {
    ServiceError::Conflict(format!("{what} exists already; nothing was imported"))
}

/// A refusal of one entry, naming it: `keys[3]: expires_at must be in the future`.
/// Denials keep their own answer (403), which names no entry.
fn in_entry(at: usize, error: ServiceError) -> ServiceError {
    match error {
        ServiceError::Invalid(message) => ServiceError::Invalid(format!("keys[{at}]: {message}")),
        other => other,
    }
}

/// The records and their `key_imported` events (no hash in them: an event's changes are
/// the key's audited fields), all made at `now` by the caller.
fn imported_batch(caller: &Caller, keys: Vec<ImportedKey>, now: DateTime<Utc>) -> ImportBatch {
    let records: Vec<KeyRecord> = keys
        .into_iter()
        .map(|entry| {
            let key = NewKey { expires_at: entry.key.expires_at.map(truncate_to_millis), ..entry.key };
            KeyRecord::imported(ImportedKey { key, ..entry }, caller.actor.key_id.clone(), now)
        })
        .collect();
    let events = records
        .iter()
        .map(|record| {
            AuditEvent::new(&caller.actor, AuditAction::KeyImported, now)
                .for_key(record)
                .with_changes(AuditChange::created(record))
        })
        .collect();
    ImportBatch { sites: Vec::new(), keys: records, events }
}

#[cfg(test)]
mod tests {
    //! The policy of import, on a real SQLite store: who may import what, where, and that
    //! every refusal leaves the store as it was.

    use super::*;
    use crate::{ManualClock, PageRequest, Service, ServiceConfig};
    use chrono::Duration;
    use latchkey_core::{Actor, Denied, KeyFormat, KeyName, KeyPrefix, Permission, Site, SiteName};
    use std::sync::Arc;

    struct World {
        service: Service,
        site: Site,
        other_site: Site,
        _dir: tempfile::TempDir,
    }

    impl World {
        async fn new() -> World {
            let dir = tempfile::tempdir().unwrap();
            let store = latchkey_sqlite::SqliteStore::open(dir.path().join("import.db").to_str().unwrap()).await;
            let clock = Arc::new(ManualClock::starting_now());
            let service = Service::new(Arc::new(store.unwrap()), ServiceConfig::default(), clock);
            service.ensure_bootstrap_key().await.unwrap();
            let sites = service.sites();
            let site = sites.create(&Caller::system(), SiteName::parse("Blog").unwrap()).await.unwrap();
            let other_site = sites.create(&Caller::system(), SiteName::parse("Shop").unwrap()).await.unwrap();
            World { service, site, other_site, _dir: dir }
        }

        fn admin_of(&self, site: &Site) -> Caller {
            let actor = Actor { key_id: None, key_prefix: None, source_ip: None };
            Caller { permission: Permission::Admin, site_id: Some(site.id.clone()), actor }
        }

        async fn stored_key_count(&self) -> usize {
            let keys = self.service.keys().list(&Caller::system(), Default::default(), &PageRequest::first(200)).await;
            keys.unwrap().items.len()
        }
    }

    /// An entry with a fresh random hash, as another system's key would have (a generated
    /// key's hash is as random as any).
    fn entry(permission: Permission, site: Option<&Site>) -> ImportedKey {
        ImportedKey {
            key: NewKey::plain(KeyName::parse("legacy").unwrap(), permission, site.map(|s| s.id.clone())),
            hash: KeyFormat::default().generate().hash(),
            prefix: KeyPrefix::from_stored("old_".into()),
        }
    }

    fn message(error: ServiceError) -> String {
        match error {
            ServiceError::Invalid(message) | ServiceError::Conflict(message) => message,
            other => panic!("expected a refusal with a message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_admin_imports_only_into_its_own_site_and_only_up_to_admin() {
        let world = World::new().await;
        let admin = world.admin_of(&world.site);
        let keys = world.service.keys();
        let before = world.stored_key_count().await;
        let into_other_site =
            vec![entry(Permission::Read, Some(&world.site)), entry(Permission::Read, Some(&world.other_site))];
        let refused = keys.import(&admin, into_other_site).await.unwrap_err();
        assert!(matches!(refused, ServiceError::Denied(Denied::SiteNotVisible)), "{refused:?}");
        let a_master = vec![entry(Permission::Read, Some(&world.site)), entry(Permission::Master, None)];
        let refused = keys.import(&admin, a_master).await.unwrap_err();
        assert!(matches!(refused, ServiceError::Denied(Denied::InsufficientPermission(_))), "{refused:?}");
        assert_eq!(world.stored_key_count().await, before, "a refused import stored keys");
        let own = vec![entry(Permission::Admin, Some(&world.site)), entry(Permission::Write, Some(&world.site))];
        let imported = keys.import(&admin, own).await.unwrap();
        assert_eq!(imported.iter().map(|k| k.permission).collect::<Vec<_>>(), [Permission::Admin, Permission::Write]);
        assert_eq!(world.stored_key_count().await, before + 2);
    }

    #[tokio::test]
    async fn read_and_write_keys_cannot_import_and_a_master_imports_master_keys() {
        let world = World::new().await;
        for level in [Permission::Read, Permission::Write] {
            let caller = Caller { permission: level, ..world.admin_of(&world.site) };
            let refused = world.service.keys().import(&caller, vec![entry(Permission::Read, Some(&world.site))]).await;
            assert!(matches!(refused, Err(ServiceError::Denied(Denied::InsufficientPermission(_)))), "{refused:?}");
        }
        let imported = world.service.keys().import(&Caller::system(), vec![entry(Permission::Master, None)]).await;
        assert_eq!(imported.unwrap()[0].site_id, None);
    }

    #[tokio::test]
    async fn a_refused_entry_is_named_by_its_index_and_nothing_is_imported() {
        let world = World::new().await;
        let master = Caller::system();
        let before = world.stored_key_count().await;
        let good = || entry(Permission::Read, Some(&world.site));
        let mut past = good();
        past.key.expires_at = Some(world.service.now() - Duration::seconds(1));
        let refused = world.service.keys().import(&master, vec![good(), past]).await.unwrap_err();
        assert_eq!(message(refused), "keys[1]: expires_at must be in the future");
        let master_in_a_site = entry(Permission::Master, Some(&world.site));
        let refused = world.service.keys().import(&master, vec![good(), good(), master_in_a_site]).await.unwrap_err();
        assert!(message(refused).starts_with("keys[2]: a Master key belongs to no site"));
        let first = good();
        let twin = ImportedKey { hash: first.hash, ..good() };
        let refused = world.service.keys().import(&master, vec![first, good(), twin]).await.unwrap_err();
        assert_eq!(message(refused), "keys[2]: sha256: the same hash as keys[0]");
        assert_eq!(world.stored_key_count().await, before);
    }

    #[tokio::test]
    async fn an_import_holds_one_to_ten_thousand_keys() {
        let world = World::new().await;
        let refused = world.service.keys().import(&Caller::system(), Vec::new()).await.unwrap_err();
        assert_eq!(message(refused), "keys: an import holds 1 to 10000 keys, not 0");
        let too_many = (0..=MAX_IMPORTED_KEYS).map(|_| entry(Permission::Read, Some(&world.site))).collect();
        let refused = world.service.keys().import(&Caller::system(), too_many).await.unwrap_err();
        assert_eq!(message(refused), "keys: an import holds 1 to 10000 keys, not 10001");
    }

    #[tokio::test]
    async fn a_hash_stored_already_is_a_conflict_naming_the_entry() {
        let world = World::new().await;
        let (native, secret) = world
            .service
            .keys()
            .create(&Caller::system(), entry(Permission::Read, Some(&world.site)).key)
            .await
            .unwrap();
        assert_eq!(native.hash, secret.hash());
        let before = world.stored_key_count().await;
        let clash = ImportedKey { hash: native.hash, ..entry(Permission::Read, Some(&world.site)) };
        let batch = vec![entry(Permission::Read, Some(&world.site)), clash];
        let refused = world.service.keys().import(&Caller::system(), batch).await.unwrap_err();
        assert_eq!(message(refused), "keys[1]: a key with this sha256 exists already; nothing was imported");
        assert_eq!(world.stored_key_count().await, before);
    }

    #[tokio::test]
    async fn each_imported_key_is_audited_as_key_imported_by_its_importer_without_its_hash() {
        let world = World::new().await;
        let actor = Actor { key_id: None, key_prefix: Some("lk_importer0".into()), source_ip: Some("10.0.0.7".into()) };
        let admin = Caller { actor, ..world.admin_of(&world.site) };
        let imported = world.service.keys().import(&admin, vec![entry(Permission::Read, Some(&world.site))]).await;
        let key = imported.unwrap().remove(0);
        let query = crate::audit::AuditQuery { key: Some(key.id.clone()), ..Default::default() };
        let events = world.service.audit().list(&admin, query, &PageRequest::first(10)).await.unwrap().items;
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.action, AuditAction::KeyImported);
        assert_eq!(
            (event.actor_prefix.as_deref(), event.source_ip.as_deref()),
            (Some("lk_importer0"), Some("10.0.0.7"))
        );
        let hex: String = key.hash.0.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!format!("{event:?}").to_lowercase().contains(&hex), "the hash is in the audit event");
    }
}
