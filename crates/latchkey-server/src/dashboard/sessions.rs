//! Dashboard sessions, kept server-side: the browser holds only a random session id in
//! an HttpOnly, SameSite=Strict cookie, never the key. A session remembers the key's
//! hash, and every request re-checks that hash through the service's verification entry,
//! so blocking or deleting the key ends its sessions at once. Idle time is measured on
//! the service's `Clock`, so tests move time instead of waiting. A session also carries
//! what must survive one redirect: the single-use forms it has sent, and a message for the
//! next page ("Saved", "Blocked").

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use latchkey_core::{KeyHash, KeyId};
use latchkey_service::Clock;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub struct Session {
    pub key_hash: KeyHash,
    /// The signed-in key's first characters, for the audit trail.
    pub key_prefix: String,
    /// Every state-changing form must carry this token.
    pub csrf_token: String,
    last_seen: Mutex<DateTime<Utc>>,
    /// Forms that create a key (New API Key, Rotate), by their single-use id, so a reload
    /// or a second click cannot create a second key.
    forms: Mutex<HashMap<String, FormUse>>,
    /// A message for the next page shown, set before a redirect.
    flash: Mutex<Option<String>>,
}

/// What became of a single-use form already sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormUse {
    /// Sent, and its answer is not there yet (a double click).
    InFlight,
    /// It created this key.
    Created(KeyId),
}

/// A single-use form claimed for one submission. Dropped without `created`, the claim is
/// released: a submission that failed created nothing, so the same form may be sent again.
pub struct FormClaim<'a> {
    session: &'a Session,
    form_id: String,
    created: bool,
}

impl FormClaim<'_> {
    pub fn created(mut self, key: KeyId) {
        self.session.forms.lock().insert(self.form_id.clone(), FormUse::Created(key));
        self.created = true;
    }
}

impl Drop for FormClaim<'_> {
    fn drop(&mut self) {
        if !self.created {
            self.session.forms.lock().remove(&self.form_id);
        }
    }
}

impl Session {
    /// Claims a single-use form for this submission, or says what its earlier one did.
    pub fn claim_form(&self, form_id: &str) -> Result<FormClaim<'_>, FormUse> {
        let mut forms = self.forms.lock();
        if let Some(earlier) = forms.get(form_id) {
            return Err(earlier.clone());
        }
        forms.insert(form_id.to_owned(), FormUse::InFlight);
        Ok(FormClaim { session: self, form_id: form_id.to_owned(), created: false })
    }

    /// Keeps `message` for the next page this session is shown.
    pub fn set_flash(&self, message: impl Into<String>) {
        *self.flash.lock() = Some(message.into());
    }

    pub fn take_flash(&self) -> Option<String> {
        self.flash.lock().take()
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
            forms: Mutex::new(HashMap::new()),
            flash: Mutex::new(None),
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

    #[test]
    fn a_single_use_form_that_failed_can_be_sent_again_and_one_that_created_a_key_cannot() {
        let sessions = SessionStore::new(Duration::from_secs(60), Arc::new(ManualClock::starting_now()));
        let hash = latchkey_core::KeyFormat::default().generate().hash();
        let session = sessions.find(&sessions.start(hash, "lk_test".into())).unwrap();
        let claim = session.claim_form("form-1").unwrap();
        assert_eq!(session.claim_form("form-1").err(), Some(FormUse::InFlight), "a double click is refused");
        drop(claim);
        let key = KeyId::generate();
        session.claim_form("form-1").expect("a failed submission frees the form").created(key.clone());
        assert_eq!(session.claim_form("form-1").err(), Some(FormUse::Created(key)));
    }
}
