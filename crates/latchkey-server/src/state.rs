//! What every handler can reach: the service (the one door to the operations), the
//! server's configuration, the dashboard's sessions, and the clock they all share.

use crate::config::ServerConfig;
use crate::dashboard::sessions::SessionStore;
use crate::observe::HttpStats;
use latchkey_service::{Clock, Service};
use latchkey_store::SharedStore;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ServerConfig>,
    pub sessions: Arc<SessionStore>,
    pub http_stats: Arc<HttpStats>,
}

impl AppState {
    pub fn new(store: SharedStore, config: ServerConfig, clock: Arc<dyn Clock>) -> Self {
        let service = Service::new(store, config.service.clone(), clock.clone());
        let sessions = Arc::new(SessionStore::new(service.clone(), config.session_idle_timeout, clock.clone()));
        Self { service, clock, config: Arc::new(config), sessions, http_stats: Arc::default() }
    }
}
