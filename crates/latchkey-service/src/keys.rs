//! Operations on keys: create, look at, list, edit, block, unblock, delete, rotate, import
//! (`keys/import.rs`), and the usage counts. Each takes the acting `Caller`, asks the
//! core's policy itself (no caller is trusted to have asked first), writes through the
//! store with its audit event in one transaction, and evicts the key from the verification
//! cache after the commit and before returning, so a blocked or deleted key is refused by
//! the very next request.

use crate::error::{ServiceError, ServiceResult};
use crate::listing::{PageRequest, Paged};
use crate::Service;
use chrono::{DateTime, NaiveDate, Utc};
use latchkey_core::{
    Actor, AuditAction, AuditChange, AuditEvent, Caller, Credits, Description, KeyEdit, KeyId, KeyName, KeyRecord,
    KeyState, NewKey, Permission, SecretKey, SiteId, Status,
};
use latchkey_store::{day_number, next_version, truncate_to_millis, Audited, KeyFilter, StoreError};
use std::collections::HashMap;

mod import;
pub use import::MAX_IMPORTED_KEYS;

/// The longest grace period a rotation may give the old key.
pub const MAX_ROTATION_GRACE_SECONDS: u64 = 30 * 86_400;
/// The longest usage history one request may ask for.
pub const MAX_USAGE_DAYS: u32 = 90;
/// The longest "unused for" a stale-key listing may ask for (ten years).
pub const MAX_UNUSED_DAYS: u32 = 3650;

/// Which keys a listing covers, besides the caller's own limits.
#[derive(Clone, Debug, Default)]
pub struct KeyQuery {
    /// Only this site's keys; without it, every key the caller may manage.
    pub site: Option<SiteId>,
    /// Only the keys of this owner.
    pub owner_id: Option<String>,
    /// Only keys not used for this many days (never-used keys count from creation).
    pub unused_for_days: Option<u32>,
}

/// Requests made with a key on one UTC day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageDay {
    pub day: NaiveDate,
    pub allowed: u64,
    pub refused: u64,
}

/// The key operations; reached through [`Service::keys`].
pub struct Keys<'a> {
    pub(crate) service: &'a Service,
}

/// An id that cannot exist is a key nobody can see.
pub fn parse_key_id(raw: &str) -> ServiceResult<KeyId> {
    KeyId::parse(raw).ok_or(ServiceError::NotFound("key"))
}

/// The stores keep balances as signed 64-bit integers: a larger number would come back
/// negative, so it is refused here rather than stored wrong.
pub const MAX_CREDITS: u64 = i64::MAX as u64;

fn must_fit_credits(remaining: u64, refill_amount: Option<u64>) -> ServiceResult<()> {
    if remaining > MAX_CREDITS || refill_amount.is_some_and(|amount| amount > MAX_CREDITS) {
        return Err(ServiceError::invalid(format!(
            "credits: remaining and refill.amount must be at most {MAX_CREDITS}"
        )));
    }
    Ok(())
}

fn must_be_future(expiry: Option<DateTime<Utc>>, now: DateTime<Utc>) -> ServiceResult<()> {
    match expiry {
        Some(at) if at <= now => Err(ServiceError::invalid("expires_at must be in the future")),
        _ => Ok(()),
    }
}

impl Keys<'_> {
    /// Creates a key and returns it with its secret: the only time the secret exists
    /// outside the caller's hands.
    pub async fn create(&self, caller: &Caller, spec: NewKey) -> ServiceResult<(KeyRecord, SecretKey)> {
        caller.may_grant(spec.permission, spec.site_id.as_ref())?;
        must_be_future(spec.expires_at, self.service.now())?;
        if let Some(credits) = &spec.options.credits {
            must_fit_credits(credits.remaining, credits.refill.map(|r| r.amount))?;
        }
        self.issue(&caller.actor, spec).await
    }

    async fn issue(&self, actor: &Actor, spec: NewKey) -> ServiceResult<(KeyRecord, SecretKey)> {
        let secret = self.service.key_format.generate();
        let now = truncate_to_millis(self.service.now());
        let expires_at = spec.expires_at.map(truncate_to_millis);
        let record = KeyRecord::issued(NewKey { expires_at, ..spec }, &secret, actor.key_id.clone(), now);
        let event = AuditEvent::new(actor, AuditAction::KeyCreated, now)
            .for_key(&record)
            .with_changes(AuditChange::created(&record));
        self.service.store.create_key(Audited { value: &record, event: &event }).await.map_err(
            |error| match error {
                StoreError::NotFound => ServiceError::NotFound("site"),
                other => other.into(),
            },
        )?;
        self.service.cache.forget(&record.hash);
        Ok((record, secret))
    }

    /// A key the caller may manage; invisible keys are `NotFound`, as if they did not exist.
    pub async fn get(&self, caller: &Caller, id: &str) -> ServiceResult<KeyRecord> {
        caller.may_manage_keys()?;
        let id = parse_key_id(id)?;
        let key = self.service.store.get_key(&id).await?.ok_or(ServiceError::NotFound("key"))?;
        caller.may_manage_key(&key)?;
        Ok(key)
    }

    /// The caller's own key, whatever its level.
    pub async fn own(&self, caller: &Caller) -> ServiceResult<KeyRecord> {
        let id = caller.actor.key_id.as_ref().ok_or(ServiceError::NotFound("key"))?;
        // The cache holds only what verification needs; the full record comes from the store.
        self.service.store.get_key(id).await?.ok_or(ServiceError::NotFound("key"))
    }

    /// Keys the caller may manage, newest first.
    pub async fn list(&self, caller: &Caller, query: KeyQuery, page: &PageRequest) -> ServiceResult<Paged<KeyRecord>> {
        let site = caller.listing_scope(query.site.as_ref())?;
        let (store_page, limit) = page.to_store_page()?;
        let unused_since = match query.unused_for_days {
            Some(days @ 1..=MAX_UNUSED_DAYS) => Some(self.service.now() - chrono::Duration::days(i64::from(days))),
            Some(_) => {
                return Err(ServiceError::invalid(format!("unused_for_days must be between 1 and {MAX_UNUSED_DAYS}")))
            }
            None => None,
        };
        let filter = KeyFilter { site, owner_id: query.owner_id, unused_since };
        let keys = self.service.store.list_keys(&filter, &store_page).await?;
        Ok(Paged::cut(keys, limit, |key| key.id.to_string()))
    }

    /// Edits a key (never its value). Changing the level is a grant like creating one.
    pub async fn edit(&self, caller: &Caller, id: &str, edit: &KeyEdit) -> ServiceResult<KeyRecord> {
        let now = self.service.now();
        must_be_future(edit.new_expiry(), now)?;
        if let Some(Some(credits)) = &edit.credits {
            must_fit_credits(credits.remaining, credits.refill.flatten().map(|r| r.amount))?;
        }
        self.change(caller, id, AuditAction::KeyUpdated, |before| {
            let after = edit.applied_to(before, now);
            if edit.permission.is_some() {
                caller.may_grant(after.permission, after.site_id.as_ref())?;
            }
            Ok(after)
        })
        .await
    }

    /// Blocks a key: it stops working before this returns; the record stays.
    pub async fn block(&self, caller: &Caller, id: &str) -> ServiceResult<KeyRecord> {
        self.set_status(caller, id, Status::Blocked).await
    }

    pub async fn unblock(&self, caller: &Caller, id: &str) -> ServiceResult<KeyRecord> {
        self.set_status(caller, id, Status::Active).await
    }

    async fn set_status(&self, caller: &Caller, id: &str, status: Status) -> ServiceResult<KeyRecord> {
        let action = if status == Status::Blocked { AuditAction::KeyBlocked } else { AuditAction::KeyUnblocked };
        self.change(caller, id, action, |before| Ok(KeyRecord { status, ..before.clone() })).await
    }

    /// Applies `change` to a key the caller may manage, audits it as `action`, and evicts
    /// the key from the cache. A change that alters nothing writes nothing.
    async fn change(
        &self,
        caller: &Caller,
        id: &str,
        action: AuditAction,
        change: impl FnOnce(&KeyRecord) -> ServiceResult<KeyRecord>,
    ) -> ServiceResult<KeyRecord> {
        let before = self.get(caller, id).await?;
        let mut after = change(&before)?;
        let changes = AuditChange::between(&before, &after);
        if changes.is_empty() {
            return Ok(before);
        }
        let now = self.service.now();
        after.updated_at = next_version(before.updated_at, now);
        let event =
            AuditEvent::new(&caller.actor, action, truncate_to_millis(now)).for_key(&before).with_changes(changes);
        self.service.store.update_key(&before, Audited { value: &after, event: &event }).await?;
        self.service.cache.forget(&before.hash);
        Ok(after)
    }

    /// Deletes a key for good: it stops working before this returns. Returns what it was.
    pub async fn delete(&self, caller: &Caller, id: &str) -> ServiceResult<KeyRecord> {
        let key = self.get(caller, id).await?;
        let event = AuditEvent::new(&caller.actor, AuditAction::KeyDeleted, truncate_to_millis(self.service.now()))
            .for_key(&key)
            .with_changes(vec![AuditChange::removed(key.name.as_str())]);
        self.service.store.delete_key(Audited { value: &key, event: &event }).await?;
        self.service.cache.forget(&key.hash);
        Ok(key)
    }

    /// Rotation: a new key with the old one's site, name, level, scopes, description and
    /// settings, linked both ways; the old key expires after `grace_seconds` (or at once).
    pub async fn rotate(&self, caller: &Caller, id: &str, grace_seconds: u64) -> ServiceResult<(KeyRecord, SecretKey)> {
        if grace_seconds > MAX_ROTATION_GRACE_SECONDS {
            return Err(ServiceError::invalid(format!(
                "grace_seconds must be between 0 and {MAX_ROTATION_GRACE_SECONDS} (30 days)"
            )));
        }
        let old = self.get(caller, id).await?;
        let now = truncate_to_millis(self.service.now());
        match old.state_at(now) {
            KeyState::Active => {}
            KeyState::Blocked => {
                return Err(ServiceError::Conflict(
                    "a blocked key cannot be rotated; unblock it first or create a new key".into(),
                ))
            }
            // Rotation must not turn a key that has run out into a fresh one.
            KeyState::Expired => {
                return Err(ServiceError::Conflict("an expired key cannot be rotated; create a new key".into()))
            }
        }
        let secret = self.service.key_format.generate();
        let mut options = old.options.clone();
        options.rotated_from = Some(old.id.clone());
        options.rotated_to = None;
        // The balance moves to the new key: copying it would let the two keys spend it twice
        // during the grace period. The old key keeps its refill plan off and nothing to spend.
        let moved_credits = old.options.credits.map(|credits| Credits { remaining: 0, refill: None, ..credits });
        let new = KeyRecord {
            id: KeyId::generate(),
            prefix: secret.display_prefix(),
            hash: secret.hash(),
            created_at: now,
            created_by: caller.actor.key_id.clone(),
            updated_at: now,
            last_used_at: None,
            // A replacement lives no longer than the key it replaces.
            expires_at: old.expires_at,
            options,
            ..old.clone()
        };
        let mut old_after = old.clone();
        old_after.options.rotated_to = Some(new.id.clone());
        old_after.options.credits = moved_credits;
        let grace_ends = now + chrono::Duration::seconds(grace_seconds as i64);
        old_after.expires_at = Some(old.expires_at.map_or(grace_ends, |expiry| expiry.min(grace_ends)));
        old_after.updated_at = next_version(old.updated_at, now);
        let rotated = AuditEvent::new(&caller.actor, AuditAction::KeyRotated, now)
            .for_key(&old)
            .with_changes(AuditChange::between(&old, &old_after));
        let created = AuditEvent::new(&caller.actor, AuditAction::KeyCreated, now)
            .for_key(&new)
            .with_changes(AuditChange::created(&new));
        self.service
            .store
            .rotate_key(&old, Audited { value: &old_after, event: &rotated }, Audited { value: &new, event: &created })
            .await?;
        self.service.cache.forget(&old.hash);
        Ok((new, secret))
    }

    /// Requests per UTC day made with a key, allowed vs refused, oldest first, zeros
    /// included. Counted in memory and written in batches, so the last second may be missing.
    pub async fn usage(&self, caller: &Caller, id: &str, days: u32) -> ServiceResult<Vec<UsageDay>> {
        let key = self.get(caller, id).await?;
        let mut series = self.usage_of(caller, std::slice::from_ref(&key), days).await?;
        Ok(series.remove(&key.id).unwrap_or_default())
    }

    /// The usage of several keys the caller may manage (a listing's sparklines).
    pub async fn usage_of(
        &self,
        caller: &Caller,
        keys: &[KeyRecord],
        days: u32,
    ) -> ServiceResult<HashMap<KeyId, Vec<UsageDay>>> {
        if !(1..=MAX_USAGE_DAYS).contains(&days) {
            return Err(ServiceError::invalid(format!("days must be between 1 and {MAX_USAGE_DAYS}")));
        }
        for key in keys {
            caller.may_manage_key(key)?;
        }
        let today = day_number(self.service.now());
        let first = today - days as i32 + 1;
        let ids: Vec<KeyId> = keys.iter().map(|key| key.id.clone()).collect();
        let rows = self.service.store.usage(&ids, first).await?;
        let mut series = HashMap::new();
        for id in ids {
            let mut daily: Vec<UsageDay> =
                (first..=today).map(|day| UsageDay { day: date_of_day(day), allowed: 0, refused: 0 }).collect();
            for row in rows.iter().filter(|row| row.key_id == id && (first..=today).contains(&row.day)) {
                let slot = &mut daily[(row.day - first) as usize];
                slot.allowed += row.allowed;
                slot.refused += row.refused;
            }
            series.insert(id, daily);
        }
        Ok(series)
    }
}

fn date_of_day(day: i32) -> NaiveDate {
    DateTime::from_timestamp(i64::from(day) * 86_400, 0).map(|at| at.date_naive()).unwrap_or_default()
}

impl Service {
    /// On an empty database, creates the first Master key, named `bootstrap`, and returns
    /// it so the operator can be shown it once. Returns `None` when keys already exist.
    pub async fn ensure_bootstrap_key(&self) -> ServiceResult<Option<SecretKey>> {
        if !self.store.has_no_keys().await? {
            return Ok(None);
        }
        self.issue_bootstrap_key().await.map(Some)
    }

    /// Creates a new Master key named `bootstrap`, whatever the database holds. Only the
    /// operator on the database host can ask for this (`latchkey bootstrap`).
    pub async fn issue_bootstrap_key(&self) -> ServiceResult<SecretKey> {
        let spec = NewKey {
            description: Some(Description::parse("Created by latchkey on first start").expect("valid")),
            ..NewKey::plain(KeyName::parse("bootstrap").expect("a valid name"), Permission::Master, None)
        };
        let secret = self.keys().issue(&Actor::system(), spec).await?.1;
        self.no_usable_master.store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(secret)
    }
}
