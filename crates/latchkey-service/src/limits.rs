//! Where rate limits and failure throttling are counted: in this process's memory, or in
//! Redis so that every instance behind a load balancer enforces one limit per key and one
//! failure budget per client address. Each Redis check is one atomic script, one round
//! trip; a key without a rate limit never reaches this module.
//!
//! When Redis cannot be reached the configured [`RedisFailure`] decides: `Open` counts on
//! this instance alone until Redis is back (limits become per-instance, as without Redis,
//! and `/healthz` says so), `Closed` answers 503 for every check that needs a counter.

use crate::error::{ServiceError, ServiceResult};
use crate::ratelimit::{KeyRateLimiter, WindowLeft};
use crate::throttle::{FailureThrottle, ThrottleConfig};
use latchkey_core::{RateLimit, Ulid};
use redis::aio::ConnectionManager;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

/// What to do when Redis does not answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedisFailure {
    /// Keep answering, counting on this instance alone (the default: a Redis outage must
    /// not become a platform outage).
    #[default]
    Open,
    /// Refuse with 503 every check that needs a shared counter.
    Closed,
}

impl std::str::FromStr for RedisFailure {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        match raw {
            "open" => Ok(RedisFailure::Open),
            "closed" => Ok(RedisFailure::Closed),
            _ => Err("must be open or closed".to_owned()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SharedLimitsConfig {
    /// `redis://host:6379/0`; checked by [`SharedLimitsConfig::new`].
    url: String,
    pub on_failure: RedisFailure,
    /// Put before every Redis key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// The longest a check waits for Redis before the failure mode applies.
    pub timeout: Duration,
}

impl SharedLimitsConfig {
    /// Fails when `url` is not a Redis URL (nothing is connected yet).
    pub fn new(url: impl Into<String>) -> Result<Self, String> {
        let url = url.into();
        redis::Client::open(url.as_str()).map_err(|error| format!("not a Redis URL: {error}"))?;
        Ok(Self {
            url,
            on_failure: RedisFailure::Open,
            key_prefix: "latchkey".to_owned(),
            timeout: Duration::from_millis(250),
        })
    }
}

/// A sliding log per key: the times of the admitted requests of the last window, so that
/// no window of `window` milliseconds, wherever it starts, admits more than `limit`.
/// Returns {admitted (1/0), remaining, milliseconds until a slot frees}.
const KEY_WINDOW_SCRIPT: &str = r"
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {1, limit - count - 1, tonumber(oldest[2]) + window - now}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + window - now}
";

/// A fixed window per address: the failures counted in it, and its remaining time.
const FAILURE_WINDOW_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('PTTL', KEYS[1])}
";

pub(crate) struct Limits {
    keys: KeyRateLimiter,
    failures: FailureThrottle,
    shared: Option<RedisLimits>,
}

struct RedisLimits {
    config: SharedLimitsConfig,
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    key_window: redis::Script,
    failure_window: redis::Script,
    /// Set by a failed call, cleared by a successful one: what `/healthz` reports.
    unreachable: AtomicBool,
    /// After a failure Redis is left alone until then (clock milliseconds), so an outage
    /// costs one timeout a second, not one per request.
    rest_until_ms: AtomicI64,
    errors: AtomicU64,
}

impl Limits {
    pub(crate) fn new(failures: ThrottleConfig, shared: Option<SharedLimitsConfig>) -> Self {
        Self {
            keys: KeyRateLimiter::default(),
            failures: FailureThrottle::new(failures),
            shared: shared.map(RedisLimits::new),
        }
    }

    /// Counts one request of `key` at `now_ms`: what is left of its window, or
    /// `Err(Ok(retry_after_seconds))` when it is over its limit.
    pub(crate) async fn admit_key(
        &self,
        key: Ulid,
        limit: RateLimit,
        now_ms: i64,
    ) -> ServiceResult<Result<WindowLeft, u64>> {
        if let Some(shared) = self.shared.as_ref().filter(|shared| shared.worth_asking(now_ms)) {
            match shared.admit_key(key, limit, now_ms).await {
                Ok(answer) => return Ok(answer),
                Err(error) => shared.failed(error, now_ms)?,
            }
        } else if let Some(shared) = &self.shared {
            shared.failure_mode()?;
        }
        Ok(self.keys.admit(key, limit, now_ms.div_euclid(1000)))
    }

    /// Counts a failed verification from `ip`; `Some(retry_after_seconds)` when the address
    /// is over its budget.
    pub(crate) async fn record_failure(&self, ip: Option<IpAddr>, now_ms: i64) -> ServiceResult<Option<u64>> {
        if let (Some(shared), Some(ip), true) = (&self.shared, ip, self.failures.limit().limit > 0) {
            if !shared.worth_asking(now_ms) {
                shared.failure_mode()?;
            } else {
                match shared.record_failure(ip, self.failures.limit(), now_ms).await {
                    Ok(answer) => return Ok(answer),
                    Err(error) => shared.failed(error, now_ms)?,
                }
            }
        }
        Ok(self.failures.record_failure(ip, now_ms.div_euclid(1000)))
    }

    pub(crate) fn failure_limit(&self) -> RateLimit {
        self.failures.limit()
    }

    pub(crate) fn prune(&self, now_seconds: i64) {
        self.keys.prune(now_seconds);
        self.failures.prune(now_seconds);
    }

    /// Where limits are counted, for `/healthz`: `memory`, `redis (on failure: open)`…
    pub(crate) fn describe(&self) -> &'static str {
        match self.shared.as_ref().map(|shared| shared.config.on_failure) {
            None => "memory",
            Some(RedisFailure::Open) => "redis (on failure: open)",
            Some(RedisFailure::Closed) => "redis (on failure: closed)",
        }
    }

    /// While Redis does not answer: what that means, for `/healthz`.
    pub(crate) fn warning(&self) -> Option<&'static str> {
        let shared = self.shared.as_ref().filter(|shared| shared.unreachable.load(Ordering::Relaxed))?;
        Some(match shared.config.on_failure {
            RedisFailure::Open => "Redis does not answer: rate limits and failure throttling are counted on each instance alone until it does",
            RedisFailure::Closed => "Redis does not answer: requests that need a rate limit or the failure throttle are refused with 503 until it does",
        })
    }

    /// How many calls to Redis have failed since the start (`None` without Redis).
    pub fn redis_errors(&self) -> Option<u64> {
        self.shared.as_ref().map(|shared| shared.errors.load(Ordering::Relaxed))
    }
}

impl RedisLimits {
    fn new(config: SharedLimitsConfig) -> Self {
        let client = redis::Client::open(config.url.as_str()).expect("checked by SharedLimitsConfig::new");
        Self {
            config,
            client,
            connection: OnceCell::new(),
            key_window: redis::Script::new(KEY_WINDOW_SCRIPT),
            failure_window: redis::Script::new(FAILURE_WINDOW_SCRIPT),
            unreachable: AtomicBool::new(false),
            rest_until_ms: AtomicI64::new(i64::MIN),
            errors: AtomicU64::new(0),
        }
    }

    /// One connection, multiplexed by every check and re-established by the manager after
    /// a failure; made on first use so that a Redis down at start does not stop the server.
    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let timeout = self.config.timeout;
        let connect = || async {
            let settings = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout)
                .set_number_of_retries(1);
            ConnectionManager::new_with_config(self.client.clone(), settings).await
        };
        self.connection.get_or_try_init(connect).await.cloned()
    }

    async fn admit_key(&self, key: Ulid, limit: RateLimit, now_ms: i64) -> redis::RedisResult<Result<WindowLeft, u64>> {
        let mut connection = self.connection().await?;
        let window_ms = i64::from(limit.window_seconds.max(1)) * 1000;
        // Random, not a counter: two instances must never add the same member at one instant.
        let member = Ulid::new().to_string();
        let (admitted, remaining, free_in_ms): (i64, i64, i64) = self
            .key_window
            .key(format!("{}:ratelimit:{key}", self.config.key_prefix))
            .arg(now_ms)
            .arg(window_ms)
            .arg(limit.limit)
            .arg(member)
            .invoke_async(&mut connection)
            .await?;
        self.succeeded();
        let seconds = (free_in_ms.max(1) as u64).div_ceil(1000);
        Ok(if admitted == 1 {
            Ok(WindowLeft { remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32, reset_seconds: seconds })
        } else {
            Err(seconds)
        })
    }

    async fn record_failure(&self, ip: IpAddr, budget: RateLimit, now_ms: i64) -> redis::RedisResult<Option<u64>> {
        let mut connection = self.connection().await?;
        let window_ms = i64::from(budget.window_seconds.max(1)) * 1000;
        // The window's number is in the key, so every instance counts in the same window.
        let window = now_ms.div_euclid(window_ms);
        let (count, ttl_ms): (i64, i64) = self
            .failure_window
            .key(format!("{}:failures:{ip}:{window}", self.config.key_prefix))
            .arg(window_ms)
            .invoke_async(&mut connection)
            .await?;
        self.succeeded();
        Ok((count > i64::from(budget.limit)).then(|| (ttl_ms.max(1) as u64).div_ceil(1000)))
    }

    fn succeeded(&self) {
        if self.unreachable.load(Ordering::Relaxed) {
            self.unreachable.store(false, Ordering::Relaxed);
            tracing::warn!("Redis answers again: limits are shared across instances again");
        }
    }

    fn worth_asking(&self, now_ms: i64) -> bool {
        now_ms >= self.rest_until_ms.load(Ordering::Relaxed)
    }

    /// Counts the failure, rests a second, and applies the failure mode.
    fn failed(&self, error: redis::RedisError, now_ms: i64) -> ServiceResult<()> {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.rest_until_ms.store(now_ms + 1000, Ordering::Relaxed);
        if !self.unreachable.swap(true, Ordering::Relaxed) {
            tracing::error!(%error, mode = ?self.config.on_failure, "Redis does not answer: rate limits and throttling are not shared");
        }
        self.failure_mode()
    }

    /// `Ok` to count on this instance (open), `Err` to refuse (closed).
    fn failure_mode(&self) -> ServiceResult<()> {
        match self.config.on_failure {
            RedisFailure::Open => Ok(()),
            RedisFailure::Closed => {
                Err(ServiceError::Unavailable("the rate-limit store (Redis) does not answer".to_owned()))
            }
        }
    }
}
