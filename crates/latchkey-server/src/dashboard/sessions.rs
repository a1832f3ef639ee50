//! Dashboard sessions, kept server-side: the browser holds only a random session id in
//! an HttpOnly, SameSite=Strict cookie, never the key. A session remembers the key's
//! hash, and every request re-checks that hash through the verifier, so blocking or
//! deleting the key ends its sessions at once.

use dashmap::DashMap;
use latchkey_core::KeyHash;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::time::{Duration, Instant};

pub struct Session {
    pub key_hash: KeyHash,
    /// The signed-in key's first characters, for the audit trail.
    pub key_prefix: String,
    /// Every state-changing form must carry this token.
    pub csrf_token: String,
    last_seen: Mutex<Instant>,
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
    sessions: DashMap<String, std::sync::Arc<Session>>,
    idle_timeout: Duration,
}

pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SessionStore {
    pub fn new(idle_timeout: Duration) -> Self {
        Self { sessions: DashMap::new(), idle_timeout }
    }

    /// Starts a session for a key; returns the session id for the cookie.
    pub fn start(&self, key_hash: KeyHash, key_prefix: String) -> String {
        let id = random_token();
        let session = Session {
            key_hash,
            key_prefix,
            csrf_token: random_token(),
            last_seen: Mutex::new(Instant::now()),
            used_forms: Mutex::new(HashSet::new()),
        };
        self.sessions.insert(id.clone(), std::sync::Arc::new(session));
        id
    }

    /// The live session with this id, touching its idle timer; expired ones are removed.
    pub fn find(&self, id: &str) -> Option<std::sync::Arc<Session>> {
        let session = self.sessions.get(id)?.clone();
        let mut last_seen = session.last_seen.lock();
        if last_seen.elapsed() > self.idle_timeout {
            drop(last_seen);
            self.sessions.remove(id);
            return None;
        }
        *last_seen = Instant::now();
        drop(last_seen);
        Some(session)
    }

    pub fn end(&self, id: &str) {
        self.sessions.remove(id);
    }

    /// Drops sessions idle for longer than the timeout (run periodically).
    pub fn prune(&self) {
        self.sessions.retain(|_, session| session.last_seen.lock().elapsed() <= self.idle_timeout);
    }
}
