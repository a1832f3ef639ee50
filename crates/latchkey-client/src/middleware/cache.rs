//! The layer's verification cache: Latchkey's recent verdicts, keyed by the SHA-256 of
//! the presented key (never the key) and the client's address, each served for at most
//! the staleness bound, counted from when Latchkey was asked. Bounded in entries;
//! concurrent misses for one key wait for one answer instead of each asking Latchkey.

use crate::verify::{Refusal, VerifiedKey};
use crate::ApiKey;
use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latchkey's verdict on one key for the layer's requirement.
#[derive(Clone, Debug)]
pub(super) enum Verdict {
    Allowed(Arc<VerifiedKey>),
    Refused {
        refusal: Refusal,
        /// When a rate-limited key may try again, if Latchkey said.
        retry_at: Option<Instant>,
    },
}

impl Verdict {
    /// False once a rate-limited key's window has ended, however fresh the answer.
    fn still_holds(&self) -> bool {
        match self {
            Verdict::Refused { retry_at: Some(at), .. } => Instant::now() < *at,
            _ => true,
        }
    }
}

/// A verdict as Latchkey gave it, and whether it may be served again without asking.
pub(super) struct Asked {
    pub verdict: Verdict,
    /// False for keys that Latchkey must see on every request: those with usage credits
    /// (each request spends) or a rate limit (each request counts).
    pub cacheable: bool,
}

/// What a cached answer depends on besides the requirement (fixed per layer): the key,
/// and the client's address (a key with an IP allowlist is allowed from some addresses only).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct CacheKey {
    key_sha256: [u8; 32],
    client_ip: Option<IpAddr>,
}

impl CacheKey {
    pub fn of(key: &ApiKey, client_ip: Option<IpAddr>) -> Self {
        Self { key_sha256: Sha256::digest(key.expose().as_bytes()).into(), client_ip }
    }
}

#[derive(Clone)]
struct Entry {
    /// When Latchkey was asked: the answer describes the key as it was at some moment
    /// after this, so its age is counted from here, never from its arrival.
    asked_at: Instant,
    /// `None`: ask Latchkey on every request until this entry is stale (a key with
    /// credits, or a failed call), without making concurrent requests wait on each other.
    verdict: Option<Verdict>,
}

impl Entry {
    fn is_fresh(&self, max_staleness: Duration) -> bool {
        self.asked_at.elapsed() < max_staleness && self.verdict.as_ref().is_none_or(Verdict::still_holds)
    }
}

pub(super) struct VerificationCache {
    /// `None` when caching is off (a zero staleness bound or capacity).
    entries: Option<Cache<CacheKey, Entry>>,
    max_staleness: Duration,
}

impl VerificationCache {
    pub fn new(capacity: usize, max_staleness: Duration) -> Self {
        let on = capacity > 0 && !max_staleness.is_zero();
        Self { entries: on.then(|| Cache::new(capacity)), max_staleness }
    }

    /// The cached verdict if it is fresh, else Latchkey's (through `ask`), cached if it may be.
    pub async fn verdict<E, F>(&self, key: CacheKey, ask: impl FnOnce() -> F) -> Result<Verdict, E>
    where
        F: Future<Output = Result<Asked, E>>,
    {
        let Some(entries) = &self.entries else {
            return ask().await.map(|asked| asked.verdict);
        };
        loop {
            match entries.get_value_or_guard_async(&key).await {
                Ok(entry) if entry.is_fresh(self.max_staleness) => match entry.verdict {
                    Some(verdict) => return Ok(verdict),
                    None => return ask().await.map(|asked| asked.verdict),
                },
                Ok(stale) => {
                    // Only this stale entry: a fresh one another request just put there stays.
                    entries.remove_if(&key, |entry| entry.asked_at == stale.asked_at);
                }
                Err(placeholder) => {
                    let asked_at = Instant::now();
                    let asked = ask().await;
                    let verdict = match &asked {
                        Ok(Asked { verdict, cacheable: true }) => Some(verdict.clone()),
                        _ => None,
                    };
                    // Fails only if the placeholder was evicted meanwhile; nothing to do then.
                    let _ = placeholder.insert(Entry { asked_at, verdict });
                    return asked.map(|asked| asked.verdict);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn refused(code: &str, cacheable: bool) -> Result<Asked, ()> {
        Ok(Asked { verdict: Verdict::Refused { refusal: Refusal::from_code(code), retry_at: None }, cacheable })
    }

    #[tokio::test]
    async fn a_verdict_is_served_from_the_cache_until_it_is_older_than_the_bound() {
        let cache = VerificationCache::new(10, Duration::from_millis(200));
        let asked = AtomicUsize::new(0);
        let key = CacheKey::of(&ApiKey::new("lk_a"), None);
        let ask = || async {
            asked.fetch_add(1, Ordering::SeqCst);
            refused("key_blocked", true)
        };
        cache.verdict(key.clone(), ask).await.unwrap();
        cache.verdict(key.clone(), ask).await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 1, "the second request is answered from the cache");
        tokio::time::sleep(Duration::from_millis(250)).await;
        cache.verdict(key, ask).await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 2, "a stale verdict is asked again");
    }

    #[tokio::test]
    async fn an_uncacheable_verdict_is_asked_for_on_every_request() {
        let cache = VerificationCache::new(10, Duration::from_secs(60));
        let asked = AtomicUsize::new(0);
        let key = CacheKey::of(&ApiKey::new("lk_a"), None);
        let ask = || async {
            asked.fetch_add(1, Ordering::SeqCst);
            refused("usage_exceeded", false)
        };
        for _ in 0..3 {
            cache.verdict(key.clone(), ask).await.unwrap();
        }
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_cache_key_holds_a_hash_of_the_key_and_not_the_key() {
        let key = CacheKey::of(&ApiKey::new("lk_a"), None);
        assert_eq!(key.key_sha256, <[u8; 32]>::from(Sha256::digest(b"lk_a")));
        assert_eq!(key, CacheKey::of(&ApiKey::new("lk_a"), None));
        assert_ne!(key, CacheKey::of(&ApiKey::new("lk_a"), Some(IpAddr::from([10, 0, 0, 1]))));
    }
}
