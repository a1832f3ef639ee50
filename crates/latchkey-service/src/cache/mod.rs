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
//! * Bookkeeping: a check updates atomics in the cached entry (the second it was last
//!   used, the requests allowed and refused) and queues the entry, once per flush period,
//!   for the next batched flush, which writes last-used and usage from the queue alone. No
//!   write per request, and nothing kept per key besides the entry and one queue slot.

mod entry;
mod reads;

use entry::QUEUED;
pub use entry::{KeyProfile, VerifiedExtras, VerifiedKey};

use crate::stats::{ServiceStats, StoreQuery};
use chrono::{DateTime, Utc};
use entry::ProfileInterner;
use latchkey_core::{KeyHash, KeyId, KeyRecord};
use latchkey_store::{SharedStore, StoreError, UsageCount};
use parking_lot::Mutex;
use reads::BatchedReads;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many keys one flush writes per store call.
const FLUSH_BATCH: usize = 4096;

/// The sum of two batches' written counts, or the first failure.
fn add_written(total: Result<usize, StoreError>, batch: Result<usize, StoreError>) -> Result<usize, StoreError> {
    Ok(total? + batch?)
}

/// The resolution of load times: 100 ms, so fractional staleness bounds hold to a tenth.
const TICK_MS: i64 = 100;

pub struct KeyCache {
    store: SharedStore,
    /// The store reads of misses and bypasses, batched.
    reads: Arc<BatchedReads>,
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
    /// Keys used since the last flush; each is pushed once per flush period.
    pending: Mutex<Vec<Arc<VerifiedKey>>>,
    profiles: ProfileInterner,
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
            reads: BatchedReads::new(store.clone()),
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
            pending: Mutex::new(Vec::new()),
            profiles: ProfileInterner::default(),
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
            return Ok(record.map(|r| Arc::new(VerifiedKey::from_record(&r, self.tick(now_ms), &self.profiles))));
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
                let key = Arc::new(VerifiedKey::from_record(&record, self.tick(now_ms), &self.profiles));
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
        let record = self.reads.find(*hash).await;
        self.stats.time_store_query(StoreQuery::FindKeyByHash, started.elapsed());
        record
    }

    /// Records that `key` was used at `now`, for last-used (kept to the second).
    pub(crate) fn record_use(&self, key: &VerifiedKey, now: DateTime<Utc>) {
        key.mark_used(now.timestamp().clamp(0, i64::from(u32::MAX)) as u32);
    }

    /// Counts one request made with `key`, allowed or refused, for the usage charts. Two
    /// atomic adds; the key joins the flush queue only on its first count of a period.
    pub(crate) fn count_request(&self, key: &Arc<VerifiedKey>, allowed: bool) {
        let counter = if allowed { &key.pending_allowed } else { &key.pending_refused };
        counter.fetch_add(1, Ordering::Relaxed);
        self.queue(key);
    }

    fn queue(&self, key: &Arc<VerifiedKey>) {
        let flags = &key.pending_refused;
        if flags.load(Ordering::Acquire) & QUEUED == 0 && flags.fetch_or(QUEUED, Ordering::AcqRel) & QUEUED == 0 {
            self.pending.lock().push(key.clone());
        }
    }

    /// Writes the queued keys' last-used times and their counted requests (attributed to
    /// `now`'s UTC day). Each write is tried even when the other fails; what a failed write
    /// would have written is kept for the next flush. Returns how many keys were written
    /// for last-used and for usage.
    pub async fn flush(&self, now: DateTime<Utc>) -> (Result<usize, StoreError>, Result<usize, StoreError>) {
        let queued = std::mem::take(&mut *self.pending.lock());
        let day = latchkey_store::day_number(now);
        let (mut last_used, mut usage) = (Ok(0), Ok(0));
        // In batches, so that what a flush builds stays small however many keys were used
        // (a million keys' rows at once would be ~160 MB, which the allocator keeps).
        for batch in queued.chunks(FLUSH_BATCH) {
            let (batch_last_used, batch_usage) = self.flush_batch(batch, day).await;
            last_used = add_written(last_used, batch_last_used);
            usage = add_written(usage, batch_usage);
        }
        (last_used, usage)
    }

    async fn flush_batch(
        &self,
        batch: &[Arc<VerifiedKey>],
        day: i32,
    ) -> (Result<usize, StoreError>, Result<usize, StoreError>) {
        let mut last_used = Vec::new();
        let mut usage = Vec::new();
        for key in batch {
            // Unqueued and the refusals taken in one swap, before the allowed count: a
            // request counted after it re-queues the key, so nothing counted is left behind.
            let refused = key.pending_refused.swap(0, Ordering::AcqRel) & !QUEUED;
            let allowed = key.pending_allowed.swap(0, Ordering::AcqRel);
            // Queued keys were checked since the last flush, so most were used: write the
            // second of the last use (again, for a key refused only since; MAX keeps it).
            let second = key.last_used_second.load(Ordering::Relaxed);
            if second > 0 {
                last_used.push((key, second));
            }
            if allowed + refused > 0 {
                usage.push((key, allowed, refused));
            }
        }
        let last_used_rows: Vec<(KeyId, DateTime<Utc>)> = last_used
            .iter()
            .filter_map(|(key, second)| Some((key.id(), DateTime::from_timestamp(i64::from(*second), 0)?)))
            .collect();
        let usage_rows: Vec<UsageCount> = usage
            .iter()
            .map(|(key, allowed, refused)| UsageCount {
                key_id: key.id(),
                day,
                allowed: u64::from(*allowed),
                refused: u64::from(*refused),
            })
            .collect();
        let last_used_written = self.write_last_used(&last_used_rows).await;
        if last_used_written.is_err() {
            // Queued again, the key's last use is written by the next flush.
            for (key, _) in last_used {
                self.queue(key);
            }
        }
        let started = Instant::now();
        let usage_written = self.store.record_usage(&usage_rows).await;
        self.stats.time_store_query(StoreQuery::RecordUsage, started.elapsed());
        if usage_written.is_err() {
            for (key, allowed, refused) in usage {
                key.pending_allowed.fetch_add(allowed, Ordering::Relaxed);
                key.pending_refused.fetch_add(refused, Ordering::Relaxed);
                self.queue(key);
            }
        }
        (last_used_written.map(|()| last_used_rows.len()), usage_written.map(|_| usage_rows.len()))
    }

    async fn write_last_used(&self, rows: &[(KeyId, DateTime<Utc>)]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let written = self.store.record_last_used(rows).await;
        self.stats.time_store_query(StoreQuery::RecordLastUsed, started.elapsed());
        written.map(|_| ())
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

    pub fn store_reads(&self) -> u64 {
        self.store_reads.load(Ordering::Relaxed)
    }

    /// How many store calls those reads took: concurrent misses share one.
    pub fn store_read_batches(&self) -> u64 {
        self.reads.batches()
    }

    pub fn cached_keys(&self) -> usize {
        self.known.len()
    }
}
