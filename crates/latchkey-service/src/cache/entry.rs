//! What the cache keeps of a key, packed small because a million of these may be
//! resident. Measured per cached key at a million keys (docs/PERFORMANCE.md, "Memory per
//! cached key"): the entry is one 64-byte allocation (48 bytes and the `Arc`'s two
//! counts: mimalloc's 64-byte size class); what many keys share (site, level, status,
//! name, scopes) is one interned [`KeyProfile`] that they point to.

use chrono::{DateTime, Utc};
use latchkey_core::{
    Actor, Caller, IpNetwork, KeyId, KeyRecord, KeyState, Permission, RateLimit, Scopes, SiteId, Status, Ulid,
};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// A cached key: what is the key's own (id, expiry) and its bookkeeping since the last
/// flush, plus a pointer to what it shares with other keys. Every field counts: one byte
/// more and a million entries cost 16 MB more (the next size class).
pub struct VerifiedKey {
    id: [u8; 16],
    /// Milliseconds since the epoch; `i64::MAX` for "never".
    expires_at_ms: i64,
    profile: Arc<KeyProfile>,
    /// When this entry was read from the store: tenths of a second since the cache's epoch
    /// on the service's clock (4 bytes, not 8).
    pub(super) loaded_at: u32,
    /// The last second (Unix) in which this key was used; 0 for not since it was loaded.
    pub(super) last_used_second: AtomicU32,
    /// Requests allowed since the last flush.
    pub(super) pending_allowed: AtomicU32,
    /// Requests refused since the last flush, and in [`QUEUED`] whether the key is queued
    /// for the next one: one swap takes both, so no count is left behind unqueued.
    pub(super) pending_refused: AtomicU32,
}

/// The bit of `pending_refused` that says the key is in the flush queue. The count below it
/// would need 2^31 refusals between two flushes to reach it.
pub(super) const QUEUED: u32 = 1 << 31;

/// What a key shares with others that were issued alike: its site, level, status, name,
/// scopes, whether it spends credits, and its rare settings. Interned when it has no rare settings
/// (an owner or metadata is usually one key's own), so a million keys issued by one
/// integration point to a handful of these.
pub struct KeyProfile {
    site: Option<[u8; 16]>,
    permission: Permission,
    status: Status,
    has_credits: bool,
    name: Box<str>,
    scopes: Scopes,
    /// Owner, metadata, IP allowlist, rate limit: `None` for most keys.
    extras: Option<Box<VerifiedExtras>>,
}

#[derive(Default)]
pub struct VerifiedExtras {
    pub owner_id: Option<Box<str>>,
    /// A JSON object, as text.
    pub metadata: Option<Box<str>>,
    pub ip_allowlist: Vec<IpNetwork>,
    pub ratelimit: Option<RateLimit>,
}

static NO_EXTRAS: VerifiedExtras =
    VerifiedExtras { owner_id: None, metadata: None, ip_allowlist: Vec::new(), ratelimit: None };

// Only profiles without extras are interned, so equality ignores them.
impl PartialEq for KeyProfile {
    fn eq(&self, other: &Self) -> bool {
        (self.site, self.permission, self.status, self.has_credits, &self.name, &self.scopes)
            == (other.site, other.permission, other.status, other.has_credits, &other.name, &other.scopes)
    }
}

impl Eq for KeyProfile {}

impl Hash for KeyProfile {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.site, self.permission, self.status, self.has_credits, &self.name, &self.scopes).hash(state);
    }
}

impl KeyProfile {
    fn of(record: &KeyRecord) -> Self {
        let options = &record.options;
        let has_extras = options.owner_id.is_some()
            || options.metadata.is_some()
            || !options.ip_allowlist.is_empty()
            || options.ratelimit.is_some();
        Self {
            site: record.site_id.as_ref().map(|site| site.ulid().to_bytes()),
            permission: record.permission,
            status: record.status,
            has_credits: options.credits.is_some(),
            name: record.name.as_str().into(),
            scopes: record.scopes.clone(),
            extras: has_extras.then(|| {
                Box::new(VerifiedExtras {
                    owner_id: options.owner_id.as_ref().map(|o| o.as_str().into()),
                    metadata: options.metadata.as_ref().map(|m| m.as_str().into()),
                    ip_allowlist: options.ip_allowlist.clone(),
                    ratelimit: options.ratelimit,
                })
            }),
        }
    }
}

/// The set of shared profiles. Profiles no cached key points to any more are swept out
/// whenever the set has doubled since the last sweep, so it stays within twice the number
/// of profiles in use, at a cost per insert that is constant on average.
#[derive(Default)]
pub(super) struct ProfileInterner {
    inner: Mutex<InternerState>,
}

#[derive(Default)]
struct InternerState {
    profiles: HashSet<Arc<KeyProfile>>,
    sweep_at: usize,
}

/// Below this many profiles the set is never swept.
const SWEEP_FLOOR: usize = 1024;

impl ProfileInterner {
    fn intern(&self, profile: KeyProfile) -> Arc<KeyProfile> {
        if profile.extras.is_some() {
            return Arc::new(profile);
        }
        let mut state = self.inner.lock();
        if let Some(shared) = state.profiles.get(&profile) {
            return shared.clone();
        }
        if state.profiles.len() >= state.sweep_at.max(SWEEP_FLOOR) {
            state.profiles.retain(|shared| Arc::strong_count(shared) > 1);
            state.sweep_at = 2 * state.profiles.len();
        }
        let shared = Arc::new(profile);
        state.profiles.insert(shared.clone());
        shared
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.inner.lock().profiles.len()
    }
}

impl VerifiedKey {
    pub(super) fn from_record(record: &KeyRecord, loaded_at: u32, profiles: &ProfileInterner) -> Self {
        Self {
            id: record.id.ulid().to_bytes(),
            expires_at_ms: record.expires_at.map_or(i64::MAX, |at| at.timestamp_millis()),
            profile: profiles.intern(KeyProfile::of(record)),
            loaded_at,
            last_used_second: AtomicU32::new(0),
            pending_allowed: AtomicU32::new(0),
            pending_refused: AtomicU32::new(0),
        }
    }

    pub fn id(&self) -> KeyId {
        KeyId::from_ulid(self.ulid())
    }

    pub fn ulid(&self) -> Ulid {
        Ulid::from_bytes(self.id)
    }

    pub fn site_id(&self) -> Option<SiteId> {
        self.site_ulid().map(SiteId::from_ulid)
    }

    pub fn site_ulid(&self) -> Option<Ulid> {
        self.profile.site.map(Ulid::from_bytes)
    }

    pub fn permission(&self) -> Permission {
        self.profile.permission
    }

    pub fn name(&self) -> &str {
        &self.profile.name
    }

    pub fn scopes(&self) -> &Scopes {
        &self.profile.scopes
    }

    /// Whether verifications spend credits (the balance itself lives in the store).
    pub fn has_credits(&self) -> bool {
        self.profile.has_credits
    }

    pub fn extras(&self) -> &VerifiedExtras {
        self.profile.extras.as_deref().unwrap_or(&NO_EXTRAS)
    }

    /// Who is acting when this key makes a request: what the policy and the audit need.
    pub fn caller(&self, actor: Actor) -> Caller {
        Caller { permission: self.permission(), site_id: self.site_id(), actor }
    }

    /// No allowlist: usable from anywhere; otherwise only from a listed network.
    pub fn allows_ip(&self, ip: Option<std::net::IpAddr>) -> bool {
        latchkey_core::options::allows_ip(&self.extras().ip_allowlist, ip)
    }

    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        (self.expires_at_ms != i64::MAX).then(|| DateTime::from_timestamp_millis(self.expires_at_ms)).flatten()
    }

    /// Blocked wins over expired, as in `KeyRecord::state_at`.
    pub fn state_at(&self, now: DateTime<Utc>) -> KeyState {
        if self.profile.status == Status::Blocked {
            KeyState::Blocked
        } else if self.expires_at_ms <= now.timestamp_millis() {
            KeyState::Expired
        } else {
            KeyState::Active
        }
    }

    /// Marks the key as used in `second`. Plain load first: the write (and the shared
    /// cache line) happens at most once a second per key.
    pub(super) fn mark_used(&self, second: u32) {
        if self.last_used_second.load(Ordering::Relaxed) < second {
            self.last_used_second.fetch_max(second, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::key_format::KeyFormat;
    use latchkey_core::{KeyName, KeyOptions, NewKey, OwnerId};

    fn record(name: &str, site: Option<&SiteId>, options: KeyOptions) -> KeyRecord {
        let spec = NewKey { options, ..NewKey::plain(KeyName::parse(name).unwrap(), Permission::Read, site.cloned()) };
        KeyRecord::issued(spec, &KeyFormat::default().generate(), None, Utc::now())
    }

    fn entry(record: &KeyRecord, profiles: &ProfileInterner) -> VerifiedKey {
        VerifiedKey::from_record(record, 0, profiles)
    }

    #[test]
    fn an_entry_fits_the_allocators_64_byte_class() {
        // 48 bytes and the Arc's strong and weak counts.
        assert_eq!(std::mem::size_of::<VerifiedKey>(), 48);
    }

    #[test]
    fn keys_issued_alike_share_one_profile_and_others_get_their_own() {
        let profiles = ProfileInterner::default();
        let (blog, shop) = (SiteId::generate(), SiteId::generate());
        let first = entry(&record("frontend", Some(&blog), KeyOptions::default()), &profiles);
        let second = entry(&record("frontend", Some(&blog), KeyOptions::default()), &profiles);
        let renamed = entry(&record("backend", Some(&blog), KeyOptions::default()), &profiles);
        let elsewhere = entry(&record("frontend", Some(&shop), KeyOptions::default()), &profiles);
        assert!(Arc::ptr_eq(&first.profile, &second.profile));
        assert!(!Arc::ptr_eq(&first.profile, &renamed.profile));
        assert!(!Arc::ptr_eq(&first.profile, &elsewhere.profile));
        assert_ne!(first.id, second.id, "the key's own fields stay its own");
        assert_eq!((second.name(), second.site_id()), ("frontend", Some(blog)));
        assert_eq!(profiles.len(), 3);
    }

    #[test]
    fn a_key_with_an_owner_keeps_its_settings_to_itself() {
        let profiles = ProfileInterner::default();
        let options = KeyOptions { owner_id: Some(OwnerId::parse("user_1").unwrap()), ..KeyOptions::default() };
        let owned = entry(&record("frontend", None, options.clone()), &profiles);
        let again = entry(&record("frontend", None, options), &profiles);
        assert!(!Arc::ptr_eq(&owned.profile, &again.profile));
        assert_eq!(owned.extras().owner_id.as_deref(), Some("user_1"));
        assert_eq!(profiles.len(), 0, "profiles with settings of their own are not interned");
    }

    #[test]
    fn profiles_no_key_points_to_are_swept_once_the_set_doubles() {
        let profiles = ProfileInterner::default();
        let kept = entry(&record("kept", None, KeyOptions::default()), &profiles);
        for n in 1..SWEEP_FLOOR {
            drop(entry(&record(&format!("gone {n}"), None, KeyOptions::default()), &profiles));
        }
        assert_eq!(profiles.len(), SWEEP_FLOOR, "no sweep below the floor");
        let _next = entry(&record("next", None, KeyOptions::default()), &profiles);
        assert_eq!(profiles.len(), 2, "the sweep kept only the profiles in use, then added the new one");
        let again = entry(&record("kept", None, KeyOptions::default()), &profiles);
        assert!(Arc::ptr_eq(&kept.profile, &again.profile), "a profile in use survives the sweep");
    }
}
