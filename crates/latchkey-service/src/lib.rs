//! Latchkey's operations behind one door. Every front-end (the JSON API, the dashboard,
//! the CLI, later webhooks and people's accounts) turns its request into a `Caller` and a
//! domain value, and calls an operation here; the operation asks the core's policy, writes
//! through the store with its audit event, and updates the verification cache before it
//! returns. Nothing here knows HTTP: errors are [`ServiceError`], not status codes, and
//! the crate does not depend on any web framework, so the compiler keeps it that way.
//!
//! The operations, by subject: [`Service::keys`], [`Service::sites`], [`Service::audit`],
//! [`Service::leaks`]; the one verification entry is [`Service::verify`].

pub mod audit;
pub mod cache;
pub mod clock;
pub mod delivery;
pub mod error;
pub mod events;
pub mod github_leaks;
pub mod keys;
pub mod leaks;
pub mod limits;
pub mod listing;
pub mod ratelimit;
pub mod sessions;
pub mod sites;
pub mod stats;
pub mod throttle;
pub mod verify;
pub mod webhooks;

pub use cache::{VerifiedExtras, VerifiedKey};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ServiceError, ServiceResult};
pub use listing::{PageRequest, Paged};
pub use throttle::ThrottleConfig;
pub use verify::{Check, Presented, Verdict};

use cache::KeyCache;
use chrono::{DateTime, Utc};
use latchkey_core::KeyFormat;
use latchkey_store::{Invalidation, SharedStore};
use limits::{Limits, SharedLimitsConfig};
use stats::ServiceStats;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use throttle::FailureThrottle;

/// The staleness bound on a database shared by several instances, unless configured.
pub const DEFAULT_SHARED_STALENESS: Duration = Duration::from_secs(5);

/// What the operations need to be told; the binary builds it from flags.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub key_format: KeyFormat,
    /// How many verified keys stay in memory.
    pub cache_capacity: usize,
    /// The longest a cached answer is served before it is re-read from the store.
    /// `None`: the engine's default, [`DEFAULT_SHARED_STALENESS`] on a database shared by
    /// several instances, unbounded where every change goes through this process.
    pub cache_max_staleness: Option<Duration>,
    /// How long an unknown key is remembered as unknown (flood protection for the store).
    pub negative_cache_ttl: Duration,
    /// Throttling of repeated failed verifications per client address.
    pub failure_throttle: ThrottleConfig,
    /// Count rate limits and throttling in Redis, shared by every instance; `None`: in
    /// this process's memory.
    pub shared_limits: Option<SharedLimitsConfig>,
    /// Webhook delivery: which targets are allowed, polling, claims, retention.
    pub webhooks: webhooks::WebhookConfig,
    /// GitHub's secret-scanning public keys; empty: GitHub-format reports are refused.
    pub github_secret_scanning_keys: github_leaks::SecretScanningKeys,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            key_format: KeyFormat::default(),
            cache_capacity: 1_000_000,
            cache_max_staleness: None,
            negative_cache_ttl: Duration::from_secs(2),
            failure_throttle: ThrottleConfig::default(),
            shared_limits: None,
            webhooks: webhooks::WebhookConfig::default(),
            github_secret_scanning_keys: github_leaks::SecretScanningKeys::default(),
        }
    }
}

/// The door. Cheap to clone: one reference count, since the server clones its state
/// (and so the service) for every request, and a dozen counts (plus the key format's
/// string) bumped by both cores on every request showed up in profiles. Every clone
/// shares the same cache and counters.
#[derive(Clone)]
pub struct Service(Arc<ServiceParts>);

impl std::ops::Deref for Service {
    type Target = ServiceParts;

    fn deref(&self) -> &ServiceParts {
        &self.0
    }
}

/// What a [`Service`] holds; its fields are the crate's own.
pub struct ServiceParts {
    store: SharedStore,
    cache: Arc<KeyCache>,
    clock: Arc<dyn Clock>,
    key_format: KeyFormat,
    /// Keys' rate limits and the failure throttle, in memory or in Redis.
    limits: Arc<Limits>,
    /// Limits reports to the leak endpoint, which needs no key, per client address.
    leak_report_throttle: Arc<FailureThrottle>,
    /// Set when a leak report blocked the last usable Master key; cleared by a new one.
    no_usable_master: Arc<AtomicBool>,
    stats: Arc<ServiceStats>,
    webhook_config: Arc<webhooks::WebhookConfig>,
    webhook_client: reqwest::Client,
    recent_alerts: Arc<events::RecentAlerts>,
    github_keys: Arc<github_leaks::SecretScanningKeys>,
}

impl Service {
    pub fn new(store: SharedStore, config: ServiceConfig, clock: Arc<dyn Clock>) -> Self {
        let staleness = config.cache_max_staleness.or(store.shared_by_instances().then_some(DEFAULT_SHARED_STALENESS));
        let stats = Arc::new(ServiceStats::new(clock.now().timestamp_millis()));
        let cache = KeyCache::new(
            store.clone(),
            config.cache_capacity,
            staleness,
            config.negative_cache_ttl,
            clock.now(),
            stats.clone(),
        );
        Self(Arc::new(ServiceParts {
            store,
            cache: Arc::new(cache),
            clock,
            key_format: config.key_format,
            limits: Arc::new(Limits::new(config.failure_throttle, config.shared_limits)),
            leak_report_throttle: Arc::new(FailureThrottle::new(ThrottleConfig {
                max_failures: 10,
                window_seconds: 60,
            })),
            no_usable_master: Arc::default(),
            stats,
            webhook_client: delivery::http_client(&config.webhooks),
            webhook_config: Arc::new(config.webhooks),
            recent_alerts: Arc::default(),
            github_keys: Arc::new(config.github_secret_scanning_keys),
        }))
    }

    pub fn keys(&self) -> keys::Keys<'_> {
        keys::Keys { service: self }
    }

    pub fn sites(&self) -> sites::Sites<'_> {
        sites::Sites { service: self }
    }

    pub fn audit(&self) -> audit::Audit<'_> {
        audit::Audit { service: self }
    }

    pub fn leaks(&self) -> leaks::Leaks<'_> {
        leaks::Leaks { service: self }
    }

    /// The dashboard's stored sessions.
    pub fn sessions(&self) -> sessions::Sessions<'_> {
        sessions::Sessions { service: self }
    }

    pub fn webhooks(&self) -> webhooks::Webhooks<'_> {
        webhooks::Webhooks { service: self }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// What an operator must know about this instance now, in plain words; empty when all
    /// is well. (`/healthz` shows it.)
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        warnings.extend(self.limits.warning());
        if self.no_usable_master.load(Ordering::Relaxed) {
            warnings.push(
                "no usable Master key: the last one was reported leaked and blocked; \
                 run `latchkey bootstrap` where the database is to issue a new one",
            );
        }
        warnings
    }

    /// Where rate limits and throttling are counted: `memory`, or `redis (on failure: open)`.
    pub fn limits_mode(&self) -> &'static str {
        self.limits.describe()
    }

    /// How many calls to Redis have failed since the start (`None` without Redis).
    pub fn redis_errors(&self) -> Option<u64> {
        self.limits.redis_errors()
    }

    /// What verifying has counted since the start, for `/metrics`.
    pub fn stats(&self) -> Arc<ServiceStats> {
        self.stats.clone()
    }

    /// How many times verifying has read the store since the start (cache misses).
    pub fn store_reads(&self) -> u64 {
        self.cache.store_reads()
    }

    /// How many store calls those reads took: misses that arrive together are read
    /// together (`cache/reads.rs`).
    pub fn store_read_batches(&self) -> u64 {
        self.cache.store_read_batches()
    }

    /// How many keys the verification cache holds (for benchmarks and health).
    pub fn cached_keys(&self) -> usize {
        self.cache.cached_keys()
    }

    /// Writes what verifying counted in memory (last-used times, usage counts), forgets
    /// expired throttling and rate-limit windows, and re-checks a standing warning. Run
    /// about once a second, and at shutdown.
    pub async fn write_bookkeeping(&self) -> ServiceResult<()> {
        let now = self.clock.now();
        self.limits.prune(now.timestamp());
        self.leak_report_throttle.prune(now.timestamp());
        // Each write is tried even when another fails: a lost write is retried next time.
        let (last_used, usage) = self.cache.flush(now).await;
        // A Master key issued meanwhile by `latchkey bootstrap` (another process) ends the warning.
        if self.no_usable_master.load(Ordering::Relaxed) && self.store.has_usable_master(now).await? {
            self.no_usable_master.store(false, Ordering::Relaxed);
        }
        last_used?;
        usage?;
        self.stats.bookkeeping_written(self.clock.now().timestamp_millis());
        Ok(())
    }

    /// Follows changes made by other instances sharing the database (PostgreSQL
    /// `LISTEN/NOTIFY`) for as long as the process runs, evicting what they change from
    /// this instance's cache. While the feed is down the cache is bypassed: a lost
    /// notification must never leave a blocked key cached as usable.
    pub async fn follow_other_instances(&self) -> ServiceResult<()> {
        let Some(mut feed) = self.store.watch_invalidations().await? else {
            return Ok(());
        };
        let cache = self.cache.clone();
        tokio::spawn(async move {
            while let Some(message) = feed.recv().await {
                match message {
                    Invalidation::Key(hash) => cache.forget(&hash),
                    Invalidation::Lost => {
                        tracing::warn!("lost the invalidation feed; serving from the database until it is back");
                        cache.bypass_cache_until_resumed();
                    }
                    Invalidation::Resumed => {
                        tracing::info!("invalidation feed is back; caching again");
                        cache.resume_caching();
                    }
                }
            }
            // The feed ended for good: never trust the cache again in this process.
            cache.bypass_cache_until_resumed();
        });
        Ok(())
    }
}
