//! What a caller may ask to change about keys: a new key's parts, and an edit of an
//! existing one. Both the JSON API and the dashboard's forms produce these types, so the
//! two front-ends can only ask for the same things, and the service applies them alike.

use crate::ids::SiteId;
use crate::options::{Credits, IpNetwork, KeyOptions, Metadata, OwnerId, RateLimit, Refill};
use crate::records::KeyRecord;
use crate::values::{Description, KeyName, Permission, Scopes};
use chrono::{DateTime, Utc};

/// What a new key is made of. The secret, id and times are the service's to choose.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub name: KeyName,
    pub description: Option<Description>,
    pub permission: Permission,
    pub scopes: Scopes,
    pub site_id: Option<SiteId>,
    pub expires_at: Option<DateTime<Utc>>,
    pub options: KeyOptions,
}

/// An edit of an existing key. `None` keeps a field; `Some(None)` clears an optional one.
/// The key's value, prefix and hash are not here: they never change (rotate instead).
#[derive(Clone, Debug, Default)]
pub struct KeyEdit {
    pub name: Option<KeyName>,
    pub description: Option<Option<Description>>,
    pub permission: Option<Permission>,
    pub scopes: Option<Scopes>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub owner_id: Option<Option<OwnerId>>,
    pub metadata: Option<Option<Metadata>>,
    pub ip_allowlist: Option<Vec<IpNetwork>>,
    pub ratelimit: Option<Option<RateLimit>>,
    pub credits: Option<Option<CreditsEdit>>,
}

/// A new credit balance, with a new refill plan or (`refill: None`) the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditsEdit {
    pub remaining: u64,
    pub refill: Option<Option<Refill>>,
}

impl CreditsEdit {
    /// The credits after this edit at `now`. Setting the balance it already has, with the
    /// refill unchanged, keeps the refill period too; anything else starts a new period
    /// now, so the first refill comes with the next one.
    pub fn applied_to(self, current: Option<Credits>, now: DateTime<Utc>) -> Credits {
        let refill = self.refill.unwrap_or_else(|| current.and_then(|c| c.refill));
        match current {
            Some(existing) if existing.remaining == self.remaining && existing.refill == refill => existing,
            _ => {
                Credits { remaining: self.remaining, refill, refilled_at: refill.map(|r| r.interval.period_start(now)) }
            }
        }
    }
}

/// `Some(value)` replaces the field; `None` keeps it.
fn overwrite<T: Clone>(field: &mut T, edit: &Option<T>) {
    if let Some(value) = edit {
        *field = value.clone();
    }
}

impl KeyEdit {
    /// The key as it would be after this edit at `now`. Policy is not decided here.
    pub fn applied_to(&self, before: &KeyRecord, now: DateTime<Utc>) -> KeyRecord {
        let mut after = before.clone();
        overwrite(&mut after.name, &self.name);
        overwrite(&mut after.description, &self.description);
        overwrite(&mut after.permission, &self.permission);
        overwrite(&mut after.scopes, &self.scopes);
        overwrite(&mut after.expires_at, &self.expires_at);
        let options = &mut after.options;
        overwrite(&mut options.owner_id, &self.owner_id);
        overwrite(&mut options.metadata, &self.metadata);
        overwrite(&mut options.ip_allowlist, &self.ip_allowlist);
        overwrite(&mut options.ratelimit, &self.ratelimit);
        if let Some(credits) = self.credits {
            options.credits = credits.map(|edit| edit.applied_to(options.credits, now));
        }
        after
    }

    /// The expiry this edit sets, if it sets one (for the "must be in the future" rule).
    pub fn new_expiry(&self) -> Option<DateTime<Utc>> {
        self.expires_at.flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::RefillInterval;
    use crate::records::fixtures::key;

    #[test]
    fn an_empty_edit_changes_nothing() {
        let before = key(Permission::Read, None);
        assert_eq!(KeyEdit::default().applied_to(&before, Utc::now()), before);
    }

    #[test]
    fn setting_the_same_balance_keeps_the_refill_period_and_a_new_one_restarts_it() {
        let now = Utc::now();
        let refill = Refill { interval: RefillInterval::Daily, amount: 10 };
        let mut before = key(Permission::Read, None);
        let old_period = now - chrono::Duration::days(3);
        before.options.credits = Some(Credits { remaining: 5, refill: Some(refill), refilled_at: Some(old_period) });
        let same = KeyEdit { credits: Some(Some(CreditsEdit { remaining: 5, refill: None })), ..KeyEdit::default() };
        assert_eq!(same.applied_to(&before, now).options.credits.unwrap().refilled_at, Some(old_period));
        let more = KeyEdit { credits: Some(Some(CreditsEdit { remaining: 7, refill: None })), ..KeyEdit::default() };
        let after = more.applied_to(&before, now).options.credits.unwrap();
        assert_eq!((after.remaining, after.refill), (7, Some(refill)));
        assert_eq!(after.refilled_at, Some(RefillInterval::Daily.period_start(now)));
        let cleared = KeyEdit { credits: Some(None), ..KeyEdit::default() };
        assert_eq!(cleared.applied_to(&before, now).options.credits, None);
    }
}
