//! What every handler can reach: the store, the verifier (cache), the clock, the config.

use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::dashboard::sessions::SessionStore;
use crate::ratelimit::KeyRateLimiter;
use crate::throttle::{FailureThrottle, ThrottleConfig};
use crate::verification::Verifier;
use latchkey_store::SharedStore;
use std::sync::Arc;

/// The staleness bound on a database shared by several instances, unless configured.
pub const DEFAULT_SHARED_STALENESS: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
pub struct AppState {
    pub store: SharedStore,
    pub verifier: Arc<Verifier>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ServerConfig>,
    pub throttle: Arc<FailureThrottle>,
    pub sessions: Arc<SessionStore>,
    pub key_rate_limiter: Arc<KeyRateLimiter>,
    /// Limits reports to `POST /leaks`, which needs no key, per client address.
    pub leak_report_throttle: Arc<FailureThrottle>,
}

impl AppState {
    pub fn new(store: SharedStore, config: ServerConfig, clock: Arc<dyn Clock>) -> Self {
        let verifier = Arc::new(Verifier::new(
            store.clone(),
            config.cache_capacity,
            config.cache_max_staleness.or(store.shared_by_instances().then_some(DEFAULT_SHARED_STALENESS)),
            config.negative_cache_ttl,
        ));
        let throttle = Arc::new(FailureThrottle::new(config.failure_throttle));
        let sessions = Arc::new(SessionStore::new(config.session_idle_timeout));
        let leak_report_throttle =
            Arc::new(FailureThrottle::new(ThrottleConfig { max_failures: 10, window_seconds: 60 }));
        Self {
            store,
            verifier,
            clock,
            config: Arc::new(config),
            throttle,
            sessions,
            key_rate_limiter: Arc::default(),
            leak_report_throttle,
        }
    }
}
