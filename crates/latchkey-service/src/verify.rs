//! The one verification entry. Every path that accepts a key (the management API's
//! `X-API-Key`, `POST /verify`, forward-auth, dashboard sign-in and every dashboard
//! request, the CLI, the middleware) calls [`Service::verify`], so one sequence of checks
//! and one vocabulary of refusals holds everywhere:
//!
//! 1. shape and checksum (a malformed key never reaches the cache or the store);
//! 2. the key itself: exists, not blocked, not expired (counted as a use: last-used);
//! 3. where it is used from (IP allowlist);
//! 4. what the request requires (site, level, scopes), decided by the core's `Requirement`;
//! 5. its rate limit, then its usage credits (spent only when everything else passed).
//!
//! Unknown keys count towards the caller address's failure throttle; every request made
//! with a real key is counted for the usage charts, allowed or refused.

use crate::cache::VerifiedKey;
use crate::error::ServiceResult;
use crate::ratelimit::WindowLeft;
use crate::Service;
use latchkey_core::{KeyHash, Refusal, Requirement};
use latchkey_store::CreditSpend;
use std::net::IpAddr;
use std::sync::Arc;

/// The credential a request presents.
#[derive(Clone, Copy, Debug)]
pub enum Presented<'a> {
    /// Nothing (no header, or an empty one).
    Nothing,
    /// A key as the client sent it.
    Key(&'a str),
    /// A key known by its hash only: a dashboard session, which never holds the key.
    Hash(&'a KeyHash),
    /// More than one key in one request: refused as invalid, never guessed between.
    Ambiguous,
}

impl<'a> Presented<'a> {
    /// An optional, possibly blank header value.
    pub fn from_header(value: Option<&'a str>) -> Self {
        match value.map(str::trim) {
            Some(key) if !key.is_empty() => Presented::Key(key),
            _ => Presented::Nothing,
        }
    }

    /// The first characters of a presented key in Latchkey's own format, for the audit
    /// trail (never the key). `None` for keys imported from another system: their public
    /// part is unknown, and 12 characters of a 16-character key would be most of it.
    pub fn display_prefix(&self) -> Option<String> {
        match self {
            Presented::Key(raw) if latchkey_core::key_format::has_native_shape(raw) => {
                raw.get(..latchkey_core::key_format::DISPLAY_PREFIX_CHARS).map(str::to_owned)
            }
            _ => None,
        }
    }
}

/// What the request that presents the key demands, and where it comes from.
#[derive(Clone, Debug, Default)]
pub struct Check {
    pub requirement: Requirement,
    /// The end client's address, for IP allowlists (`None`: unknown, which no allowlist admits).
    pub client_ip: Option<IpAddr>,
    /// The address that failures are throttled on: the one that sent this request to us
    /// (for `/verify`, the calling service's end client may be someone else).
    pub throttle_ip: Option<IpAddr>,
    /// Usage credits this request spends, for keys that have credits. `None`: a request
    /// that credits do not apply to (Latchkey's own management API and dashboard).
    pub cost: Option<u64>,
}

impl Check {
    /// A request that needs a valid key and nothing more, from `ip`, spending nothing:
    /// Latchkey's own management API and dashboard.
    pub fn any_valid_key(ip: Option<IpAddr>) -> Self {
        Self { client_ip: ip, throttle_ip: ip, ..Self::default() }
    }

    pub fn requiring(mut self, requirement: Requirement) -> Self {
        self.requirement = requirement;
        self
    }
}

/// The answer about one presented key for one request.
#[derive(Clone)]
pub enum Verdict {
    Allowed {
        key: Arc<VerifiedKey>,
        /// Credits left after this request, for keys with credits.
        remaining: Option<u64>,
        /// What is left of the key's rate-limit window, for keys with a rate limit.
        window: Option<WindowLeft>,
    },
    Refused {
        refusal: Refusal,
        /// The key, when it exists (for `/verify`'s metadata); never for unknown keys.
        key: Option<Arc<VerifiedKey>>,
    },
}

impl Verdict {
    fn refused(refusal: Refusal, key: Option<&Arc<VerifiedKey>>) -> Self {
        Verdict::Refused { refusal, key: key.cloned() }
    }

    /// The allowed key, or the refusal.
    pub fn allowed(self) -> Result<Arc<VerifiedKey>, Refusal> {
        match self {
            Verdict::Allowed { key, .. } => Ok(key),
            Verdict::Refused { refusal, .. } => Err(refusal),
        }
    }
}

impl Service {
    /// Decides `presented` against `check` at the clock's now, and counts it. See the
    /// module documentation for the order of the checks.
    pub async fn verify(&self, presented: Presented<'_>, check: &Check) -> ServiceResult<Verdict> {
        let verdict = self.decide(presented, check).await?;
        self.stats.count_verdict(match &verdict {
            Verdict::Allowed { .. } => None,
            Verdict::Refused { refusal, .. } => Some(*refusal),
        });
        Ok(verdict)
    }

    async fn decide(&self, presented: Presented<'_>, check: &Check) -> ServiceResult<Verdict> {
        let now = self.clock.now();
        let hash = match presented {
            Presented::Nothing => return Ok(Verdict::refused(Refusal::MissingKey, None)),
            Presented::Ambiguous => return self.unknown_key(check, now).await,
            Presented::Hash(hash) => *hash,
            Presented::Key(raw) => match latchkey_core::key_format::lookup_hash(raw) {
                Ok(hash) => hash,
                Err(_) => return self.unknown_key(check, now).await,
            },
        };
        self.stats.count_cache_lookup();
        let Some(key) = self.cache.key(hash, now).await? else {
            return self.unknown_key(check, now).await;
        };
        let verdict = match key.state_at(now) {
            latchkey_core::KeyState::Blocked => Verdict::refused(Refusal::Blocked, Some(&key)),
            latchkey_core::KeyState::Expired => Verdict::refused(Refusal::Expired, Some(&key)),
            latchkey_core::KeyState::Active => {
                self.cache.record_use(&key, now);
                self.judge_usable_key(&key, check, now).await?
            }
        };
        self.cache.count_request(&key, matches!(verdict, Verdict::Allowed { .. }));
        Ok(verdict)
    }

    /// Where from, what for, how fast, how much: the checks on a key that is usable.
    async fn judge_usable_key(
        &self,
        key: &Arc<VerifiedKey>,
        check: &Check,
        now: chrono::DateTime<chrono::Utc>,
    ) -> ServiceResult<Verdict> {
        if !key.allows_ip(check.client_ip) {
            return Ok(Verdict::refused(Refusal::IpNotAllowed, Some(key)));
        }
        if let Err(unmet) = check.requirement.check(key.permission(), key.site_ulid(), key.scopes()) {
            return Ok(Verdict::refused(unmet.into(), Some(key)));
        }
        let window = match key.extras().ratelimit {
            Some(limit) => match self.limits.admit_key(key.ulid(), limit, now.timestamp_millis()).await? {
                Ok(left) => Some(left),
                Err(retry_after_seconds) => {
                    self.key_rate_limited(key, limit, now);
                    return Ok(Verdict::refused(Refusal::RateLimited { retry_after_seconds, limit }, Some(key)));
                }
            },
            None => None,
        };
        let cost = match check.cost {
            Some(cost) if key.has_credits() => cost,
            _ => return Ok(Verdict::Allowed { key: key.clone(), remaining: None, window }),
        };
        let started = std::time::Instant::now();
        let spent = self.store.spend_credits(&key.id(), cost, now).await;
        self.stats.time_store_query(crate::stats::StoreQuery::SpendCredits, started.elapsed());
        Ok(match spent? {
            CreditSpend::Spent { remaining } => {
                Verdict::Allowed { key: key.clone(), remaining: Some(remaining), window }
            }
            CreditSpend::Exhausted => {
                self.key_usage_exceeded(key, now);
                Verdict::refused(Refusal::UsageExceeded, Some(key))
            }
            CreditSpend::NotLimited => Verdict::Allowed { key: key.clone(), remaining: None, window },
        })
    }

    /// Only unknown keys count towards throttling: they are what guessing produces, while
    /// a blocked or expired key is a real key a service may legitimately keep seeing.
    async fn unknown_key(&self, check: &Check, now: chrono::DateTime<chrono::Utc>) -> ServiceResult<Verdict> {
        let refusal = match self.limits.record_failure(check.throttle_ip, now.timestamp_millis()).await? {
            Some(retry_after_seconds) => Refusal::Throttled { retry_after_seconds, limit: self.limits.failure_limit() },
            None => Refusal::InvalidKey,
        };
        Ok(Verdict::refused(refusal, None))
    }
}
