//! The records Latchkey keeps: sites and keys. A `KeyRecord` holds the key's hash and
//! displayable prefix, never the key itself.

use crate::ids::{KeyId, SiteId};
use crate::key_changes::{ImportedKey, NewKey};
use crate::key_format::{KeyHash, KeyPrefix, SecretKey};
use crate::options::KeyOptions;
use crate::values::{Description, KeyName, Permission, Scopes, SiteName, Status};
use chrono::{DateTime, Utc};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub id: SiteId,
    pub name: SiteName,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    /// `None` only for Master keys, which belong to no site and reach every site.
    pub site_id: Option<SiteId>,
    pub name: KeyName,
    pub description: Option<Description>,
    pub permission: Permission,
    pub scopes: Scopes,
    pub status: Status,
    pub prefix: KeyPrefix,
    pub hash: KeyHash,
    pub created_at: DateTime<Utc>,
    /// The key that created this one; `None` for the bootstrap key.
    pub created_by: Option<KeyId>,
    pub updated_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Owner, metadata, limits, allowlist, rotation links: all optional.
    pub options: KeyOptions,
}

/// What a key is at a given moment: status plus expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    Active,
    Blocked,
    Expired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Blocked => "blocked",
            KeyState::Expired => "expired",
        }
    }
}

impl KeyRecord {
    /// A new, active key made of `spec`, for `secret` (of which it keeps only the hash and
    /// the displayable prefix), created at `now` by `created_by`.
    pub fn issued(spec: NewKey, secret: &SecretKey, created_by: Option<KeyId>, now: DateTime<Utc>) -> Self {
        Self::made_of(spec, secret.display_prefix(), secret.hash(), created_by, now)
    }

    /// A new, active key made elsewhere, known by its hash only, imported at `now` by
    /// `created_by`.
    pub fn imported(imported: ImportedKey, created_by: Option<KeyId>, now: DateTime<Utc>) -> Self {
        Self::made_of(imported.key, imported.prefix, imported.hash, created_by, now)
    }

    fn made_of(spec: NewKey, prefix: KeyPrefix, hash: KeyHash, created_by: Option<KeyId>, now: DateTime<Utc>) -> Self {
        KeyRecord {
            id: KeyId::generate(),
            site_id: spec.site_id,
            name: spec.name,
            description: spec.description,
            permission: spec.permission,
            scopes: spec.scopes,
            status: Status::Active,
            prefix,
            hash,
            created_at: now,
            created_by,
            updated_at: now,
            last_used_at: None,
            expires_at: spec.expires_at,
            options: spec.options,
        }
    }

    /// Blocked wins over expired: unblocking an expired key must not make it look usable.
    pub fn state_at(&self, now: DateTime<Utc>) -> KeyState {
        if self.status == Status::Blocked {
            KeyState::Blocked
        } else if self.expires_at.is_some_and(|expiry| expiry <= now) {
            KeyState::Expired
        } else {
            KeyState::Active
        }
    }

    /// Counts towards the "never leave the system without an active Master key" rule.
    pub fn is_usable_master_at(&self, now: DateTime<Utc>) -> bool {
        self.permission == Permission::Master && self.state_at(now) == KeyState::Active
    }

    /// A Master key that stays usable: active, never expiring, and usable from anywhere. A
    /// Master with an expiry or an IP allowlist works today but can lock everyone out
    /// tomorrow (or from the wrong network), so it does not count as the one that remains.
    pub fn is_lasting_master_at(&self, now: DateTime<Utc>) -> bool {
        self.is_usable_master_at(now) && self.expires_at.is_none() && self.options.ip_allowlist.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::key_format::KeyFormat;

    pub fn key(permission: Permission, site: Option<&SiteId>) -> KeyRecord {
        let spec = NewKey::plain(KeyName::parse("fixture").unwrap(), permission, site.cloned());
        KeyRecord::issued(spec, &KeyFormat::default().generate(), None, Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::key;
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_key_expires_at_its_expiry_second_and_blocked_wins() {
        let now = Utc::now();
        let mut record = key(Permission::Read, None);
        record.expires_at = Some(now);
        assert_eq!(record.state_at(now - Duration::seconds(1)), KeyState::Active);
        assert_eq!(record.state_at(now), KeyState::Expired);
        record.status = Status::Blocked;
        assert_eq!(record.state_at(now), KeyState::Blocked);
    }
}
