//! The management operations behind the API: each one asks the core policy, writes
//! through the store (with its audit event, in one transaction), and drops the affected
//! keys from the verification cache before it returns, so a blocked or deleted key is
//! refused by the very next request.

use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use latchkey_core::{
    Actor, AuditAction, AuditChange, AuditEvent, Description, KeyId, KeyName, KeyOptions, KeyRecord, Permission,
    Scopes, SecretKey, Site, SiteId, SiteName, Status,
};
use latchkey_store::{next_version, truncate_to_millis, Audited};

/// What a new key is made of; validated before it gets here.
pub struct NewKey {
    pub name: KeyName,
    pub description: Option<Description>,
    pub permission: Permission,
    pub scopes: Scopes,
    pub site_id: Option<SiteId>,
    pub expires_at: Option<DateTime<Utc>>,
    pub options: KeyOptions,
}

impl AppState {
    /// Creates a key and returns it with its secret: the only time the secret exists
    /// outside the caller's hands. The caller has already passed `may_grant`.
    pub async fn issue_key(&self, actor: &Actor, spec: NewKey) -> Result<(KeyRecord, SecretKey), ApiError> {
        let secret = self.config.key_format.generate();
        let now = truncate_to_millis(self.clock.now());
        let record = KeyRecord {
            id: KeyId::generate(),
            site_id: spec.site_id,
            name: spec.name,
            description: spec.description,
            permission: spec.permission,
            scopes: spec.scopes,
            status: Status::Active,
            prefix: secret.display_prefix(),
            hash: secret.hash(),
            created_at: now,
            created_by: actor.key_id.clone(),
            updated_at: now,
            last_used_at: None,
            expires_at: spec.expires_at.map(truncate_to_millis),
            options: spec.options,
        };
        let event = AuditEvent::new(actor, AuditAction::KeyCreated, now)
            .for_key(&record)
            .with_changes(AuditChange::created(&record));
        self.store.create_key(Audited { value: &record, event: &event }).await.map_err(|error| match error {
            latchkey_store::StoreError::NotFound => ApiError::not_found("site"),
            other => other.into(),
        })?;
        self.verifier.forget(&record.hash);
        Ok((record, secret))
    }

    /// Loads a key the caller may manage; invisible keys are 404, as if they did not exist.
    pub async fn managed_key(&self, auth: &Authenticated, id: &str) -> Result<KeyRecord, ApiError> {
        auth.caller.may_manage_keys()?;
        let id = KeyId::parse(id).ok_or_else(|| ApiError::not_found("key"))?;
        let key = self.store.get_key(&id).await?.ok_or_else(|| ApiError::not_found("key"))?;
        auth.caller.may_manage_key(&key)?;
        Ok(key)
    }

    /// Applies `change` to a key the caller may manage, audits it as `action`, and
    /// evicts the key from the cache. A change that alters nothing writes nothing.
    pub async fn change_key(
        &self,
        auth: &Authenticated,
        id: &str,
        action: AuditAction,
        change: impl FnOnce(&KeyRecord) -> Result<KeyRecord, ApiError>,
    ) -> Result<KeyRecord, ApiError> {
        let before = self.managed_key(auth, id).await?;
        let mut after = change(&before)?;
        let changes = AuditChange::between(&before, &after);
        if changes.is_empty() {
            return Ok(before);
        }
        let now = self.clock.now();
        after.updated_at = next_version(before.updated_at, now);
        let event =
            AuditEvent::new(&auth.actor, action, truncate_to_millis(now)).for_key(&before).with_changes(changes);
        self.store.update_key(&before, Audited { value: &after, event: &event }).await?;
        self.verifier.forget(&before.hash);
        Ok(after)
    }

    pub async fn delete_key(&self, auth: &Authenticated, id: &str) -> Result<(), ApiError> {
        let key = self.managed_key(auth, id).await?;
        let event = AuditEvent::new(&auth.actor, AuditAction::KeyDeleted, truncate_to_millis(self.clock.now()))
            .for_key(&key)
            .with_changes(vec![AuditChange {
                field: "name".into(),
                before: Some(key.name.as_str().into()),
                after: None,
            }]);
        self.store.delete_key(Audited { value: &key, event: &event }).await?;
        self.verifier.forget(&key.hash);
        Ok(())
    }

    pub async fn create_site(&self, actor: &Actor, name: SiteName) -> Result<Site, ApiError> {
        let site = Site { id: SiteId::generate(), name, created_at: truncate_to_millis(self.clock.now()) };
        let event =
            AuditEvent::new(actor, AuditAction::SiteCreated, site.created_at).for_site(&site).with_changes(vec![
                AuditChange { field: "name".into(), before: None, after: Some(site.name.as_str().into()) },
            ]);
        self.store.create_site(Audited { value: &site, event: &event }).await?;
        Ok(site)
    }

    pub async fn rename_site(&self, actor: &Actor, id: &SiteId, name: SiteName) -> Result<Site, ApiError> {
        let before = self.store.get_site(id).await?.ok_or_else(|| ApiError::not_found("site"))?;
        let event = AuditEvent::new(actor, AuditAction::SiteUpdated, truncate_to_millis(self.clock.now()))
            .for_site(&before)
            .with_changes(vec![AuditChange::renamed("name", before.name.as_str(), name.as_str())]);
        Ok(self.store.rename_site(id, Audited { value: &name, event: &event }).await?)
    }

    /// Deletes a site and all its keys; each stops working before this returns.
    pub async fn delete_site(&self, actor: &Actor, id: &SiteId) -> Result<(), ApiError> {
        let site = self.store.get_site(id).await?.ok_or_else(|| ApiError::not_found("site"))?;
        let event = AuditEvent::new(actor, AuditAction::SiteDeleted, truncate_to_millis(self.clock.now()))
            .for_site(&site)
            .with_changes(vec![AuditChange {
                field: "name".into(),
                before: Some(site.name.as_str().into()),
                after: None,
            }]);
        let deleted_keys = self.store.delete_site(id, &event).await?;
        for key in &deleted_keys {
            self.verifier.forget(&key.hash);
        }
        Ok(())
    }
}

impl AppState {
    /// On an empty database, creates the first Master key, named `bootstrap`, and returns
    /// it so the operator can be shown it once. Returns `None` when keys already exist.
    pub async fn ensure_bootstrap_key(&self) -> Result<Option<SecretKey>, ApiError> {
        if !self.store.has_no_keys().await? {
            return Ok(None);
        }
        self.issue_bootstrap_key().await.map(Some)
    }

    /// Creates a new Master key named `bootstrap`, whatever the database holds.
    pub async fn issue_bootstrap_key(&self) -> Result<SecretKey, ApiError> {
        let spec = NewKey {
            name: KeyName::parse("bootstrap").expect("a valid name"),
            description: Some(Description::parse("Created by latchkey on first start").expect("valid")),
            permission: Permission::Master,
            scopes: Scopes::default(),
            site_id: None,
            expires_at: None,
            options: KeyOptions::default(),
        };
        Ok(self.issue_key(&Actor::system(), spec).await?.1)
    }
}

impl AppState {
    /// Rotation: a new key with the old one's site, name, level, scopes, description and
    /// settings, linked both ways; the old key expires after `grace` (or at once).
    pub async fn rotate_key(
        &self,
        auth: &Authenticated,
        id: &str,
        grace: chrono::Duration,
    ) -> Result<(KeyRecord, SecretKey), ApiError> {
        let old = self.managed_key(auth, id).await?;
        if old.status == Status::Blocked {
            return Err(ApiError::new(
                crate::error::ErrorCode::Conflict,
                "a blocked key cannot be rotated; unblock it first or create a new key",
            ));
        }
        let now = truncate_to_millis(self.clock.now());
        let secret = self.config.key_format.generate();
        let mut options = old.options.clone();
        options.rotated_from = Some(old.id.clone());
        options.rotated_to = None;
        let new = KeyRecord {
            id: KeyId::generate(),
            prefix: secret.display_prefix(),
            hash: secret.hash(),
            created_at: now,
            created_by: auth.actor.key_id.clone(),
            updated_at: now,
            last_used_at: None,
            expires_at: None,
            options,
            ..old.clone()
        };
        let mut old_after = old.clone();
        old_after.options.rotated_to = Some(new.id.clone());
        let grace_ends = now + grace;
        old_after.expires_at = Some(old.expires_at.map_or(grace_ends, |expiry| expiry.min(grace_ends)));
        old_after.updated_at = next_version(old.updated_at, now);
        let rotated = AuditEvent::new(&auth.actor, AuditAction::KeyRotated, now)
            .for_key(&old)
            .with_changes(AuditChange::between(&old, &old_after));
        let created = AuditEvent::new(&auth.actor, AuditAction::KeyCreated, now)
            .for_key(&new)
            .with_changes(AuditChange::created(&new));
        self.store
            .rotate_key(&old, Audited { value: &old_after, event: &rotated }, Audited { value: &new, event: &created })
            .await?;
        self.verifier.forget(&old.hash);
        Ok((new, secret))
    }

    /// Blocks a key reported as leaked, if it exists and is not blocked already, and
    /// records where the report came from. Never says which reported keys matched.
    pub async fn block_leaked_key(&self, presented: &str, source: &str, reporter: &Actor) -> Result<(), ApiError> {
        let Ok(parsed) = latchkey_core::ParsedKey::parse(presented) else {
            return Ok(());
        };
        let Some(key) = self.store.find_key_by_hash(&parsed.hash()).await? else {
            return Ok(());
        };
        if key.status == Status::Blocked {
            return Ok(());
        }
        let now = self.clock.now();
        let after = KeyRecord { status: Status::Blocked, updated_at: next_version(key.updated_at, now), ..key.clone() };
        let mut changes = AuditChange::between(&key, &after);
        changes.push(AuditChange { field: "source".into(), before: None, after: Some(source.to_owned()) });
        let event = AuditEvent::new(reporter, AuditAction::KeyReportedLeaked, truncate_to_millis(now))
            .for_key(&key)
            .with_changes(changes);
        self.store.update_key(&key, Audited { value: &after, event: &event }).await?;
        self.verifier.forget(&key.hash);
        Ok(())
    }
}
