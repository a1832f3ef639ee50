//! The verification cache: SHA-256 → what answering needs of a key, in memory, with the
//! store behind it; and the per-key bookkeeping (last used, usage counts) that verifying
//! does without writing to the database per request. [`crate::verify`] is the one entry
//! that uses it.
//!
//! * Known keys live in a bounded S3-FIFO cache (quick_cache). Concurrent misses for one
//!   hash coalesce on a placeholder, so a cold key costs one store read however many
//!   requests arrive at once.
//! * Unknown hashes are remembered for a short time, so a flood of random well-formed
//!   keys cannot turn into a flood of database reads.
//! * Revocation: every mutation calls [`KeyCache::forget`] after its commit and before
//!   its response. `forget` also removes an in-flight placeholder, so a load that read
//!   the old row before the commit cannot insert it afterwards; the next verification
//!   reads the committed row.
//! * Last-used: a successful check updates an atomic in the cached entry; only when the
//!   second changes is the key queued for the next batched flush. No write per request.

use crate::stats::{ServiceStats, StoreQuery};
use chrono::{DateTime, Utc};
use latchkey_core::{
    Actor, Caller, IpNetwork, KeyHash, KeyId, KeyRecord, KeyState, Permission, RateLimit, Scopes, SiteId, Status, Ulid,
};
use latchkey_store::{SharedStore, StoreError, UsageCount};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the verification path keeps of a key: only what answering needs, packed small
/// because a million of these may be resident (ids as 16 bytes with no 16-byte
/// alignment, the expiry as one integer, rarely used settings behind one pointer).
pub struct VerifiedKey {
    id: [u8; 16],
    site: Option<[u8; 16]>,
    pub permission: Permission,
    status: Status,
    /// Whether verifications spend credits (the balance itself lives in the store).
    pub has_credits: bool,
    /// Milliseconds since the epoch; `i64::MAX` for "never".
    expires_at_ms: i64,
    pub name: Box<str>,
    pub scopes: Scopes,
    /// Owner, metadata, IP allowlist, rate limit: `None` for most keys.
    extras: Option<Box<VerifiedExtras>>,
    /// When this entry was read from the store: tenths of a second since the cache's epoch
    /// on the service's clock. 4 bytes, not 8: with 8 the entry crosses the allocator's
    /// 128-byte size class and a million cached keys cost 30 MB more.
    loaded_at: u32,
    /// The last second (Unix) in which this key was recorded as used.
    last_used_second: AtomicU32,
    /// Requests counted since the last usage flush, and whether the key is queued for it.
    pending_allowed: AtomicU32,
    pending_refused: AtomicU32,
    queued_for_usage: AtomicBool,
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

impl VerifiedKey {
    fn from_record(record: &KeyRecord, loaded_at: u32) -> Self {
        let options = &record.options;
        let has_extras = options.owner_id.is_some()
            || options.metadata.is_some()
            || !options.ip_allowlist.is_empty()
            || options.ratelimit.is_some();
        Self {
            id: record.id.ulid().to_bytes(),
            site: record.site_id.as_ref().map(|site| site.ulid().to_bytes()),
            permission: record.permission,
            status: record.status,
            has_credits: options.credits.is_some(),
            expires_at_ms: record.expires_at.map_or(i64::MAX, |at| at.timestamp_millis()),
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
            loaded_at,
            last_used_second: AtomicU32::new(0),
            pending_allowed: AtomicU32::new(0),
            pending_refused: AtomicU32::new(0),
            queued_for_usage: AtomicBool::new(false),
        }
    }

    pub fn id(&self) -> KeyId {
        KeyId::from_ulid(self.ulid())
    }

    pub fn site_id(&self) -> Option<SiteId> {
        self.site_ulid().map(SiteId::from_ulid)
    }

    pub fn ulid(&self) -> Ulid {
        Ulid::from_bytes(self.id)
    }

    pub fn site_ulid(&self) -> Option<Ulid> {
        self.site.map(Ulid::from_bytes)
    }

    pub fn extras(&self) -> &VerifiedExtras {
        self.extras.as_deref().unwrap_or(&NO_EXTRAS)
    }

    /// Who is acting when this key makes a request: what the policy and the audit need.
    pub fn caller(&self, actor: Actor) -> Caller {
        Caller { permission: self.permission, site_id: self.site_id(), actor }
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
        if self.status == Status::Blocked {
            KeyState::Blocked
        } else if self.expires_at_ms <= now.timestamp_millis() {
            KeyState::Expired
        } else {
            KeyState::Active
        }
    }
}

/// The resolution of load times: 100 ms, so fractional staleness bounds hold to a tenth.
const TICK_MS: i64 = 100;

pub struct KeyCache {
    store: SharedStore,
    /// Clock milliseconds that load times count from.
    epoch_ms: i64,
    known: quick_cache::sync::Cache<KeyHash, Arc<VerifiedKey>>,
    /// Unknown hashes, with when (clock milliseconds) the store last said so.
    unknown: quick_cache::sync::Cache<KeyHash, i64>,
    /// `None`: cached answers never go stale (a single instance sees every change).
    max_staleness: Option<Duration>,
    negative_ttl: Duration,
    /// Set while cross-instance notifications may be missing: every check reads the store.
    bypass_cache: AtomicBool,
    /// How many times a check read the store (misses, bypasses): what a flood costs.
    store_reads: AtomicU64,
    stats: Arc<ServiceStats>,
    pending_last_used: Mutex<HashMap<Ulid, DateTime<Utc>>>,
    /// Keys with counts not yet flushed; each is pushed once per flush period.
    pending_usage: Mutex<Vec<Arc<VerifiedKey>>>,
}

impl KeyCache {
    /// `epoch` is the clock's time now: load times are counted from it.
    pub fn new(
        store: SharedStore,
        capacity: usize,
        max_staleness: Option<Duration>,
        negative_ttl: Duration,
        epoch: DateTime<Utc>,
        stats: Arc<ServiceStats>,
    ) -> Self {
        Self {
            store,
            epoch_ms: epoch.timestamp_millis(),
            known: quick_cache::sync::Cache::new(capacity.max(16)),
            // Bounded separately so that random keys can never evict real ones.
            unknown: quick_cache::sync::Cache::new((capacity / 4).clamp(16, 100_000)),
            max_staleness,
            negative_ttl,
            bypass_cache: AtomicBool::new(false),
            store_reads: AtomicU64::new(0),
            stats,
            pending_last_used: Mutex::new(HashMap::new()),
            pending_usage: Mutex::new(Vec::new()),
        }
    }

    /// The key with this hash, if it exists, from the cache or the store.
    pub(crate) async fn key(&self, hash: KeyHash, now: DateTime<Utc>) -> Result<Option<Arc<VerifiedKey>>, StoreError> {
        self.lookup(hash, now.timestamp_millis()).await
    }

    /// `now_ms` as the cache stores load times: tenths of a second since its epoch.
    fn tick(&self, now_ms: i64) -> u32 {
        (now_ms.saturating_sub(self.epoch_ms) / TICK_MS).clamp(0, i64::from(u32::MAX)) as u32
    }

    /// Whether an entry read at `loaded_at` may still be served at `now_ms`. Compared in
    /// milliseconds, so a fractional `--cache-max-staleness` means what it says.
    fn is_fresh(&self, loaded_at: u32, now_ms: i64) -> bool {
        // The load time is rounded down to its tick, so an entry can only look older than it
        // is (by under 100 ms), never fresher.
        let loaded_at_ms = self.epoch_ms + i64::from(loaded_at) * TICK_MS;
        self.max_staleness
            .is_none_or(|max_age| (now_ms.saturating_sub(loaded_at_ms) as i128) < max_age.as_millis() as i128)
    }

    async fn lookup(&self, hash: KeyHash, now_ms: i64) -> Result<Option<Arc<VerifiedKey>>, StoreError> {
        if self.bypass_cache.load(Ordering::Acquire) {
            let record = self.read_store(&hash).await?;
            return Ok(record.map(|r| Arc::new(VerifiedKey::from_record(&r, self.tick(now_ms)))));
        }
        if let Some(cached) = self.known.get(&hash) {
            if self.is_fresh(cached.loaded_at, now_ms) {
                return Ok(Some(cached));
            }
            self.known.remove(&hash);
        }
        let negative_ttl_ms = self.negative_ttl.as_millis() as i64;
        if self.unknown.get(&hash).is_some_and(|since| now_ms.saturating_sub(since) < negative_ttl_ms) {
            return Ok(None);
        }
        let guard = match self.known.get_value_or_guard_async(&hash).await {
            Ok(cached) => return Ok(Some(cached)),
            Err(guard) => guard,
        };
        match self.read_store(&hash).await? {
            Some(record) => {
                let key = Arc::new(VerifiedKey::from_record(&record, self.tick(now_ms)));
                // Err means `forget` ran meanwhile: serve this answer once, cache nothing.
                let _ = guard.insert(key.clone());
                Ok(Some(key))
            }
            None => {
                drop(guard);
                self.unknown.insert(hash, now_ms);
                Ok(None)
            }
        }
    }

    async fn read_store(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        self.store_reads.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let record = self.store.find_key_by_hash(hash).await;
        self.stats.time_store_query(StoreQuery::FindKeyByHash, started.elapsed());
        record
    }

    /// Records that `key` was used at `now`, for last-used. Plain loads first: the write
    /// (and the shared cache line) happens at most once a second per key.
    pub(crate) fn record_use(&self, key: &VerifiedKey, now: DateTime<Utc>) {
        let second = now.timestamp().clamp(0, i64::from(u32::MAX)) as u32;
        if key.last_used_second.load(Ordering::Relaxed) < second
            && key.last_used_second.fetch_max(second, Ordering::Relaxed) < second
        {
            let mut pending = self.pending_last_used.lock();
            let entry = pending.entry(key.ulid()).or_insert(now);
            *entry = (*entry).max(now);
        }
    }

    /// Counts one request made with `key`, allowed or refused, for the usage charts. Two
    /// atomic adds; the key joins the flush queue only on its first count of a period.
    pub(crate) fn count_request(&self, key: &Arc<VerifiedKey>, allowed: bool) {
        let counter = if allowed { &key.pending_allowed } else { &key.pending_refused };
        counter.fetch_add(1, Ordering::Relaxed);
        if !key.queued_for_usage.load(Ordering::Acquire) && !key.queued_for_usage.swap(true, Ordering::AcqRel) {
            self.pending_usage.lock().push(key.clone());
        }
    }

    /// Adds the counted requests to the store, attributed to `now`'s UTC day.
    pub async fn flush_usage(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let queued = std::mem::take(&mut *self.pending_usage.lock());
        let day = latchkey_store::day_number(now);
        let mut counts = Vec::with_capacity(queued.len());
        for key in &queued {
            // Unqueue before taking the counts: a request counted after this re-queues the key.
            key.queued_for_usage.store(false, Ordering::Release);
            let allowed = key.pending_allowed.swap(0, Ordering::AcqRel);
            let refused = key.pending_refused.swap(0, Ordering::AcqRel);
            if allowed + refused > 0 {
                counts.push((key, allowed, refused));
            }
        }
        let rows: Vec<UsageCount> = counts
            .iter()
            .map(|(key, allowed, refused)| UsageCount {
                key_id: key.id(),
                day,
                allowed: u64::from(*allowed),
                refused: u64::from(*refused),
            })
            .collect();
        let started = Instant::now();
        let written = self.store.record_usage(&rows).await;
        self.stats.time_store_query(StoreQuery::RecordUsage, started.elapsed());
        if let Err(error) = written {
            for (key, allowed, refused) in counts {
                key.pending_allowed.fetch_add(allowed, Ordering::Relaxed);
                key.pending_refused.fetch_add(refused, Ordering::Relaxed);
                if !key.queued_for_usage.swap(true, Ordering::AcqRel) {
                    self.pending_usage.lock().push(key.clone());
                }
            }
            return Err(error);
        }
        Ok(rows.len())
    }

    /// Drops a key from the cache. Call after the change is committed, before answering.
    pub fn forget(&self, hash: &KeyHash) {
        self.known.remove(hash);
        self.unknown.remove(hash);
    }

    /// Notifications from other instances may be lost from now on: drop every cached
    /// answer and read the store on every check until `resume_caching`.
    pub fn bypass_cache_until_resumed(&self) {
        self.bypass_cache.store(true, Ordering::Release);
        self.known.clear();
        self.unknown.clear();
    }

    /// Notifications flow again. Anything cached before the gap is already gone; clear
    /// once more for loads that raced with the gap.
    pub fn resume_caching(&self) {
        self.known.clear();
        self.unknown.clear();
        self.bypass_cache.store(false, Ordering::Release);
    }

    /// Writes queued last-used times to the store. On failure they are queued again.
    pub async fn flush_last_used(&self) -> Result<usize, StoreError> {
        let taken: Vec<(Ulid, DateTime<Utc>)> =
            std::mem::take(&mut *self.pending_last_used.lock()).into_iter().collect();
        let batch: Vec<(KeyId, DateTime<Utc>)> = taken.iter().map(|(id, at)| (KeyId::from_ulid(*id), *at)).collect();
        if batch.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        let written = self.store.record_last_used(&batch).await;
        self.stats.time_store_query(StoreQuery::RecordLastUsed, started.elapsed());
        if let Err(error) = written {
            let mut pending = self.pending_last_used.lock();
            for (id, at) in taken {
                let entry = pending.entry(id).or_insert(at);
                *entry = (*entry).max(at);
            }
            return Err(error);
        }
        Ok(batch.len())
    }

    pub fn store_reads(&self) -> u64 {
        self.store_reads.load(Ordering::Relaxed)
    }

    pub fn cached_keys(&self) -> usize {
        self.known.len()
    }
}
