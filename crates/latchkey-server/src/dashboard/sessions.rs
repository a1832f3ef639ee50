//! Dashboard sessions, kept server-side: the browser holds only a random session id in
//! an HttpOnly, SameSite=Strict cookie, never the key. A session remembers the key's
//! hash, and every request re-checks that hash through the service's verification entry,
//! so blocking or deleting the key ends its sessions at once. Idle time is measured on
//! the service's `Clock`, so tests move time instead of waiting.

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use latchkey_core::KeyHash;
use latchkey_service::Clock;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

pub struct Session {
    pub key_hash: KeyHash,
    /// The signed-in key's first characters, for the audit trail.
    pub key_prefix: String,
    /// Every state-changing form must carry this token.
    pub csrf_token: String,
    last_seen: Mutex<DateTime<Utc>>,
    /// Create forms already submitted, so a reload cannot create a second key.
    used_forms: Mutex<HashSet<String>>,
}

impl Session {
    /// Returns false if `form_id` was used before (and marks it used).
    pub fn first_use_of_form(&self, form_id: &str) -> bool {
        self.used_forms.lock().insert(form_id.to_owned())
    }
}

pub struct SessionStore {
    sessions: DashMap<String, Arc<Session>>,
    idle_timeout: chrono::Duration,
    clock: Arc<dyn Clock>,
}

pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SessionStore {
    pub fn new(idle_timeout: Duration, clock: Arc<dyn Clock>) -> Self {
        let idle_timeout = chrono::Duration::from_std(idle_timeout).unwrap_or(chrono::Duration::MAX);
        Self { sessions: DashMap::new(), idle_timeout, clock }
    }

    /// Starts a session for a key; returns the session id for the cookie.
    pub fn start(&self, key_hash: KeyHash, key_prefix: String) -> String {
        let id = random_token();
        let session = Session {
            key_hash,
            key_prefix,
            csrf_token: random_token(),
            last_seen: Mutex::new(self.clock.now()),
            used_forms: Mutex::new(HashSet::new()),
        };
        self.sessions.insert(id.clone(), Arc::new(session));
        id
    }

    fn is_idle(&self, last_seen: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now.signed_duration_since(last_seen) > self.idle_timeout
    }

    /// The live session with this id, touching its idle timer; expired ones are removed.
    pub fn find(&self, id: &str) -> Option<Arc<Session>> {
        let session = self.sessions.get(id)?.clone();
        let now = self.clock.now();
        let mut last_seen = session.last_seen.lock();
        if self.is_idle(*last_seen, now) {
            drop(last_seen);
            self.sessions.remove(id);
            return None;
        }
        *last_seen = now;
        drop(last_seen);
        Some(session)
    }

    pub fn end(&self, id: &str) {
        self.sessions.remove(id);
    }

    /// Drops sessions idle for longer than the timeout (run periodically).
    pub fn prune(&self) {
        let now = self.clock.now();
        self.sessions.retain(|_, session| !self.is_idle(*session.last_seen.lock(), now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_service::ManualClock;

    #[test]
    fn a_session_ends_after_its_idle_timeout_on_the_clock() {
        let clock = Arc::new(ManualClock::starting_now());
        let sessions = SessionStore::new(Duration::from_secs(60), clock.clone());
        let hash = latchkey_core::KeyFormat::default().generate().hash();
        let id = sessions.start(hash, "lk_test".into());
        clock.advance(chrono::Duration::seconds(59));
        assert!(sessions.find(&id).is_some(), "59 s idle is within the timeout");
        clock.advance(chrono::Duration::seconds(61));
        assert!(sessions.find(&id).is_none(), "61 s idle ends the session");
    }
}
