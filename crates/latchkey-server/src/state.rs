//! What every handler can reach: the service (the one door to the operations), the
//! server's configuration, the dashboard's sessions, and the clock they all share.

use crate::config::ServerConfig;
use crate::dashboard::sessions::SessionStore;
use crate::observe::HttpStats;
use latchkey_service::{Clock, Service};
use latchkey_store::SharedStore;
use std::sync::Arc;

/// Cloned by axum for every request, so it is one reference count (see [`Service`]).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

pub struct AppParts {
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
        Self(Arc::new(AppParts { service, clock, config: Arc::new(config), sessions, http_stats: Arc::default() }))
    }
}
