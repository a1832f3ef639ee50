//! The verification path: presented key → checksum → SHA-256 → in-memory cache → store.
//!
//! * A malformed key (bad shape or checksum) never reaches the cache or the store.
//! * Known keys live in a bounded S3-FIFO cache (quick_cache). Concurrent misses for one
//!   hash coalesce on a placeholder, so a cold key costs one store read however many
//!   requests arrive at once.
//! * Unknown hashes are remembered for a short time, so a flood of random well-formed
//!   keys cannot turn into a flood of database reads.
//! * Revocation: every mutation calls [`Verifier::forget`] after its commit and before
//!   its response. `forget` also removes an in-flight placeholder, so a load that read
//!   the old row before the commit cannot insert it afterwards; the next verification
//!   reads the committed row.
//! * Last-used: a successful check updates an atomic in the cached entry; only when the
//!   second changes is the key queued for the next batched flush. No write per request.

use chrono::{DateTime, Utc};
use latchkey_core::{KeyHash, KeyId, KeyRecord, KeyState, ParsedKey};
use latchkey_store::{SharedStore, StoreError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// Malformed, bad checksum, or unknown: deliberately indistinguishable.
    NotFound,
    Blocked,
    Expired,
}

pub enum KeyLookup {
    Usable(Arc<KeyRecord>),
    /// Refused, with the record when the key exists (for the verify API's metadata).
    Refused(RefusalReason, Option<Arc<KeyRecord>>),
}

struct CachedKey {
    record: Arc<KeyRecord>,
    loaded_at: Instant,
    /// The last second in which this key was recorded as used (Unix seconds).
    last_used_second: AtomicI64,
}

pub struct Verifier {
    store: SharedStore,
    known: quick_cache::sync::Cache<KeyHash, Arc<CachedKey>>,
    unknown: quick_cache::sync::Cache<KeyHash, Instant>,
    max_staleness: Duration,
    negative_ttl: Duration,
    pending_last_used: Mutex<HashMap<KeyId, DateTime<Utc>>>,
}

impl Verifier {
    pub fn new(
        store: SharedStore,
        capacity: usize,
        max_staleness: Duration,
        negative_ttl: Duration,
    ) -> Self {
        Self {
            store,
            known: quick_cache::sync::Cache::new(capacity.max(16)),
            // Bounded separately so that random keys can never evict real ones.
            unknown: quick_cache::sync::Cache::new((capacity / 4).clamp(16, 100_000)),
            max_staleness,
            negative_ttl,
            pending_last_used: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a presented key at `now`. A usable key is recorded as used.
    pub async fn check(
        &self,
        presented: &str,
        now: DateTime<Utc>,
    ) -> Result<KeyLookup, StoreError> {
        let Ok(parsed) = ParsedKey::parse(presented) else {
            return Ok(KeyLookup::Refused(RefusalReason::NotFound, None));
        };
        let Some(cached) = self.lookup(parsed.hash()).await? else {
            return Ok(KeyLookup::Refused(RefusalReason::NotFound, None));
        };
        let record = cached.record.clone();
        match record.state_at(now) {
            KeyState::Active => {
                self.record_use(&cached, now);
                Ok(KeyLookup::Usable(record))
            }
            KeyState::Blocked => Ok(KeyLookup::Refused(RefusalReason::Blocked, Some(record))),
            KeyState::Expired => Ok(KeyLookup::Refused(RefusalReason::Expired, Some(record))),
        }
    }

    async fn lookup(&self, hash: KeyHash) -> Result<Option<Arc<CachedKey>>, StoreError> {
        if let Some(cached) = self.known.get(&hash) {
            if cached.loaded_at.elapsed() < self.max_staleness {
                return Ok(Some(cached));
            }
            self.known.remove(&hash);
        }
        if self
            .unknown
            .get(&hash)
            .is_some_and(|since| since.elapsed() < self.negative_ttl)
        {
            return Ok(None);
        }
        let guard = match self.known.get_value_or_guard_async(&hash).await {
            Ok(cached) => return Ok(Some(cached)),
            Err(guard) => guard,
        };
        match self.store.find_key_by_hash(&hash).await? {
            Some(record) => {
                let cached = Arc::new(CachedKey {
                    record: Arc::new(record),
                    loaded_at: Instant::now(),
                    last_used_second: AtomicI64::new(i64::MIN),
                });
                // Err means `forget` ran meanwhile: serve this answer once, cache nothing.
                let _ = guard.insert(cached.clone());
                Ok(Some(cached))
            }
            None => {
                drop(guard);
                self.unknown.insert(hash, Instant::now());
                Ok(None)
            }
        }
    }

    fn record_use(&self, cached: &CachedKey, now: DateTime<Utc>) {
        let second = now.timestamp();
        if cached.last_used_second.fetch_max(second, Ordering::Relaxed) < second {
            let mut pending = self.pending_last_used.lock();
            let entry = pending.entry(cached.record.id.clone()).or_insert(now);
            *entry = (*entry).max(now);
        }
    }

    /// Drops a key from the cache. Call after the change is committed, before answering.
    pub fn forget(&self, hash: &KeyHash) {
        self.known.remove(hash);
        self.unknown.remove(hash);
    }

    /// Drops every cached answer (e.g. when cross-instance notifications were lost).
    pub fn forget_all(&self) {
        self.known.clear();
        self.unknown.clear();
    }

    /// Writes queued last-used times to the store. On failure they are queued again.
    pub async fn flush_last_used(&self) -> Result<usize, StoreError> {
        let batch: Vec<(KeyId, DateTime<Utc>)> =
            std::mem::take(&mut *self.pending_last_used.lock())
                .into_iter()
                .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        if let Err(error) = self.store.record_last_used(&batch).await {
            let mut pending = self.pending_last_used.lock();
            for (id, at) in batch {
                let entry = pending.entry(id).or_insert(at);
                *entry = (*entry).max(at);
            }
            return Err(error);
        }
        Ok(batch.len())
    }

    pub fn cached_keys(&self) -> usize {
        self.known.len()
    }
}
