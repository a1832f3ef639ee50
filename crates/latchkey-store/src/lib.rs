//! The storage boundary. Every backend (SQLite, PostgreSQL) implements [`Store`]; the
//! HTTP layer only ever sees `Arc<dyn Store>`. SQL that reads the same in both engines
//! lives in [`sql`] (feature `sqlx`); what differs lives in the backends.
//!
//! Invariants every backend upholds (and [`conformance`] checks):
//! * a write is committed before the call returns, together with its audit event;
//! * no write may leave the system without a usable Master key (no lockout);
//! * updates are compare-and-swap on the version the caller read, so a policy decision
//!   taken on a record is never applied to a record that changed in between.
//!
//! The last two are decided here, once, on the key as the backend reads it inside its
//! writing transaction: [`key_writes`] runs those writes on every backend's SQL and asks
//! [`ensure_a_master_remains`] and [`key_writes::expect_version`].

pub mod conformance;
#[cfg(feature = "sqlx")]
mod from_sqlx;
pub mod key_writes;
mod last_master;
pub mod outbox;
pub mod rows;
pub mod sessions;
#[cfg(feature = "sqlx")]
pub mod sql;
pub mod webhooks;

pub use last_master::{ensure_a_master_remains, must_keep_a_master, KeyChange, MasterKind};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_core::{AuditAction, AuditEvent, KeyHash, KeyId, KeyRecord, Site, SiteId, SiteName};
use std::sync::Arc;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// The record changed between read and write, or a uniqueness rule was hit.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The write would leave no usable Master key.
    #[error("this is the last active Master key; create another Master key first")]
    LastMaster,
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub fn unavailable(error: impl std::fmt::Display) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Newest-first keyset pagination: `after` is the last id of the previous page.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub after: Option<String>,
    pub limit: u32,
}

/// Which keys a listing covers.
#[derive(Clone, Debug, Default)]
pub struct KeyFilter {
    /// `None`: every key, Master keys included (a Master's view).
    pub site: Option<SiteId>,
    /// Only keys of this owner.
    pub owner_id: Option<String>,
    /// Only keys not used since this time (never-used keys count from their creation).
    pub unused_since: Option<DateTime<Utc>>,
}

/// The outcome of spending a key's usage credits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditSpend {
    /// Spent; this many are left.
    Spent { remaining: u64 },
    /// The balance cannot cover the cost; nothing was spent.
    Exhausted,
    /// The key has no credits (unlimited) or no longer exists.
    NotLimited,
}

#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub site: Option<SiteId>,
    pub key: Option<KeyId>,
    pub action: Option<AuditAction>,
}

/// A key written with its audit event.
pub type AuditedKey<'a> = Audited<'a, KeyRecord>;

/// A change of existing data, with the audit event recorded in the same transaction.
pub struct Audited<'a, T> {
    pub value: &'a T,
    pub event: &'a AuditEvent,
}

#[async_trait]
pub trait Store: sessions::SessionRows + Send + Sync + 'static {
    /// True when no key exists yet: the server then creates the bootstrap Master key.
    async fn has_no_keys(&self) -> StoreResult<bool>;

    /// Whether some Master key is usable at `at` (active, not expired). False only after a
    /// leak report blocked the last one: nobody can manage keys until `latchkey bootstrap`.
    async fn has_usable_master(&self, at: DateTime<Utc>) -> StoreResult<bool>;

    async fn create_site(&self, site: Audited<'_, Site>) -> StoreResult<()>;
    async fn get_site(&self, id: &SiteId) -> StoreResult<Option<Site>>;
    async fn list_sites(&self, page: &Page) -> StoreResult<Vec<Site>>;
    async fn rename_site(&self, id: &SiteId, name: Audited<'_, SiteName>) -> StoreResult<Site>;
    /// Deletes the site and its keys; returns the deleted keys so caches can drop them.
    async fn delete_site(&self, id: &SiteId, event: &AuditEvent) -> StoreResult<Vec<KeyRecord>>;

    async fn create_key(&self, key: Audited<'_, KeyRecord>) -> StoreResult<()>;
    async fn get_key(&self, id: &KeyId) -> StoreResult<Option<KeyRecord>>;
    async fn find_key_by_hash(&self, hash: &KeyHash) -> StoreResult<Option<KeyRecord>>;
    /// The keys with any of these hashes, in no particular order; a hash no key has is
    /// simply absent. The verification cache reads its concurrent misses with one call:
    /// one round trip to the database (and, on SQLite, one hand-off to a reader thread)
    /// for the lot. Callers keep `hashes` to a few dozen.
    async fn find_keys_by_hashes(&self, hashes: &[KeyHash]) -> StoreResult<Vec<KeyRecord>>;
    async fn list_keys(&self, filter: &KeyFilter, page: &Page) -> StoreResult<Vec<KeyRecord>>;
    /// Replaces the mutable fields of `before` with those of `after`, if the stored key
    /// still has `before.updated_at`; otherwise `Conflict`. The no-lockout rule is then
    /// decided on the stored key, not on `before`.
    async fn update_key(&self, before: &KeyRecord, after: Audited<'_, KeyRecord>) -> StoreResult<()>;
    /// Deletes the key with `key.value.id`. Only the id is taken from the caller's copy:
    /// the no-lockout rule is decided on the row that gets deleted.
    async fn delete_key(&self, key: Audited<'_, KeyRecord>) -> StoreResult<()>;
    /// Rotation in one transaction: `old` becomes `old_after` (compare-and-swap as in
    /// `update_key`) and `new` is created; both events are recorded.
    async fn rotate_key(&self, old: &KeyRecord, old_after: AuditedKey<'_>, new: AuditedKey<'_>) -> StoreResult<()>;
    /// Atomically spends `cost` credits of a key at `now`, refilling first when a new
    /// refill period began. Exact under concurrency: the balance never goes below zero.
    async fn spend_credits(&self, key: &KeyId, cost: u64, now: DateTime<Utc>) -> StoreResult<CreditSpend>;
    /// Moves `last_used_at` forward (never backwards) for a batch of keys.
    async fn record_last_used(&self, uses: &[(KeyId, DateTime<Utc>)]) -> StoreResult<()>;

    async fn list_audit(&self, filter: &AuditFilter, page: &Page) -> StoreResult<Vec<AuditEvent>>;

    /// Adds request counts per key and day (keys deleted meanwhile are skipped).
    async fn record_usage(&self, counts: &[UsageCount]) -> StoreResult<()>;
    /// The counts of these keys from `since_day` (days since the Unix epoch, UTC) on.
    async fn usage(&self, keys: &[KeyId], since_day: i32) -> StoreResult<Vec<UsageCount>>;

    /// Bulk insert, in one transaction per call: `latchkey migrate` and benchmark seeding
    /// copy records as they are (ids, hashes, times kept) with no events of their own;
    /// `POST /keys/import` brings keys made elsewhere, with one event each. All or
    /// nothing: a hash that is stored already (or twice in the batch) is a `Conflict`, a
    /// key of a site that does not exist is `NotFound`, and then nothing is written.
    async fn import(&self, batch: &ImportBatch) -> StoreResult<()>;

    /// Changes made by *other* instances sharing this database, for backends that have
    /// several (PostgreSQL `LISTEN/NOTIFY`). `None` for single-instance backends.
    async fn watch_invalidations(&self) -> StoreResult<Option<tokio::sync::mpsc::Receiver<Invalidation>>> {
        Ok(None)
    }

    /// Webhook endpoints, the outbox and deliveries (see [`webhooks`]).
    fn webhooks(&self) -> &dyn webhooks::WebhookStore;

    /// True when other processes may change keys behind this one's back (several
    /// instances on one database), so cached answers need a staleness bound.
    fn shared_by_instances(&self) -> bool {
        false
    }
}

/// Requests made with one key on one UTC day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageCount {
    pub key_id: KeyId,
    /// Days since 1970-01-01, UTC.
    pub day: i32,
    pub allowed: u64,
    pub refused: u64,
}

pub fn day_number(at: DateTime<Utc>) -> i32 {
    at.timestamp().div_euclid(86_400) as i32
}

#[derive(Clone, Debug, Default)]
pub struct ImportBatch {
    pub sites: Vec<Site>,
    pub keys: Vec<KeyRecord>,
    pub events: Vec<AuditEvent>,
}

/// A message from the invalidation feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// This key changed or was deleted somewhere: drop it from the cache.
    Key(KeyHash),
    /// The feed's connection was lost: notifications may be missing until `Resumed`, so
    /// every cached answer must be dropped and the cache bypassed meanwhile.
    Lost,
    /// The feed is listening again; caching may resume.
    Resumed,
}

pub type SharedStore = Arc<dyn Store>;

/// The next `updated_at` for a change: now, but strictly after the previous version so
/// that the compare-and-swap in [`Store::update_key`] can never mistake two versions.
pub fn next_version(previous: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let now = truncate_to_millis(now);
    if now > previous {
        now
    } else {
        previous + chrono::Duration::milliseconds(1)
    }
}

/// Backends store times as milliseconds; records carry the same precision.
pub fn truncate_to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).expect("a valid time stays valid")
}
