//! What every handler can reach: the store, the verifier (cache), the clock, the config.

use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::dashboard::sessions::SessionStore;
use crate::throttle::FailureThrottle;
use crate::verification::Verifier;
use latchkey_store::SharedStore;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub store: SharedStore,
    pub verifier: Arc<Verifier>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ServerConfig>,
    pub throttle: Arc<FailureThrottle>,
    pub sessions: Arc<SessionStore>,
}

impl AppState {
    pub fn new(store: SharedStore, config: ServerConfig, clock: Arc<dyn Clock>) -> Self {
        let verifier = Arc::new(Verifier::new(
            store.clone(),
            config.cache_capacity,
            config.cache_max_staleness,
            config.negative_cache_ttl,
        ));
        let throttle = Arc::new(FailureThrottle::new(config.failure_throttle));
        let sessions = Arc::new(SessionStore::new(config.session_idle_timeout));
        Self { store, verifier, clock, config: Arc::new(config), throttle, sessions }
    }
}
