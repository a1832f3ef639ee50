//! What a caller may ask to change about keys: a new key's parts, a key made elsewhere
//! that is imported by its hash, and an edit of an existing one. Both the JSON API and the
//! dashboard's forms produce these types, so the front-ends can only ask for the same
//! things, and the service applies them alike.

use crate::ids::SiteId;
use crate::key_format::{KeyHash, KeyPrefix, DISPLAY_PREFIX_CHARS};
use crate::options::{Credits, IpNetwork, KeyOptions, Metadata, OwnerId, RateLimit, Refill};
use crate::records::KeyRecord;
use crate::values::{Description, InvalidValue, KeyName, Permission, Scopes};
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

impl NewKey {
    /// A key with a name, a level and a site, and nothing else: no description, scopes,
    /// expiry or options. Others are set with struct update syntax.
    pub fn plain(name: KeyName, permission: Permission, site_id: Option<SiteId>) -> Self {
        NewKey {
            name,
            description: None,
            permission,
            scopes: Scopes::default(),
            site_id,
            expires_at: None,
            options: KeyOptions::default(),
        }
    }
}

/// A key made by another system, brought in by the SHA-256 of its full value (the hash
/// Latchkey stores for its own keys), so its clients keep working unchanged. Latchkey never
/// sees the value: the hash, and the prefix shown in listings, come with the key.
#[derive(Clone, Debug)]
pub struct ImportedKey {
    pub key: NewKey,
    pub hash: KeyHash,
    pub prefix: KeyPrefix,
}

/// What listings show as the prefix of an imported key whose import named none.
pub const DEFAULT_IMPORTED_PREFIX: &str = "imported";

impl ImportedKey {
    /// A SHA-256 written as 64 hexadecimal digits, in either case.
    pub fn parse_hash(raw: &str) -> Result<KeyHash, InvalidValue> {
        let invalid = || InvalidValue {
            field: "sha256",
            message: "must be 64 hexadecimal characters: the SHA-256 of the full key".to_owned(),
        };
        let digits = raw.as_bytes();
        if digits.len() != 64 {
            return Err(invalid());
        }
        let mut hash = [0u8; 32];
        for (byte, pair) in hash.iter_mut().zip(digits.chunks_exact(2)) {
            let digit = |d: u8| char::from(d).to_digit(16);
            let (Some(high), Some(low)) = (digit(pair[0]), digit(pair[1])) else {
                return Err(invalid());
            };
            *byte = (high * 16 + low) as u8;
        }
        Ok(KeyHash(hash))
    }

    /// The prefix listings show: 1 to [`DISPLAY_PREFIX_CHARS`] printable ASCII characters
    /// without spaces, as long as a native key's, or [`DEFAULT_IMPORTED_PREFIX`]. Nothing
    /// checks it against the key (Latchkey never sees it), so it is only a label.
    pub fn parse_prefix(raw: Option<&str>) -> Result<KeyPrefix, InvalidValue> {
        let prefix = raw.unwrap_or(DEFAULT_IMPORTED_PREFIX);
        if prefix.is_empty() || prefix.len() > DISPLAY_PREFIX_CHARS || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue {
                field: "prefix",
                message: format!("must be 1 to {DISPLAY_PREFIX_CHARS} printable ASCII characters without spaces"),
            });
        }
        Ok(KeyPrefix::from_stored(prefix.to_owned()))
    }
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
    use sha2::Digest;

    #[test]
    fn an_imported_hash_is_64_hex_digits_in_either_case() {
        let expected: [u8; 32] = sha2::Sha256::digest(b"abc").into();
        let lower = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(ImportedKey::parse_hash(lower).unwrap().0, expected);
        assert_eq!(ImportedKey::parse_hash(&lower.to_uppercase()).unwrap().0, expected);
        for bad in ["", &lower[..63], &format!("{lower}0"), &lower.replace('b', "g"), &lower.replace("ba", "é")] {
            assert_eq!(ImportedKey::parse_hash(bad).unwrap_err().field, "sha256", "{bad:?}");
        }
    }

    #[test]
    fn an_imported_prefix_is_a_short_printable_label_with_a_default() {
        assert_eq!(ImportedKey::parse_prefix(None).unwrap().as_str(), "imported");
        assert_eq!(ImportedKey::parse_prefix(Some("sk_live_4eC3")).unwrap().as_str(), "sk_live_4eC3");
        for bad in ["", "sk_live_4eC39", "has space", "tab\t", "ключ"] {
            assert_eq!(ImportedKey::parse_prefix(Some(bad)).unwrap_err().field, "prefix", "{bad:?}");
        }
    }

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
