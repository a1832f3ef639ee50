//! Dashboard sessions, kept server-side in the store: the browser holds only a random
//! session id in an HttpOnly, SameSite=Strict cookie, never the key, and the store holds
//! only the id's SHA-256. A session remembers the key's hash, and every request re-checks
//! that hash through the service's verification entry, so blocking or deleting the key
//! ends its sessions at once on every instance. Because sessions live in the store they
//! survive a restart, and any instance behind a load balancer serves them. Idle time is
//! measured on the service's `Clock`, so tests move time instead of waiting.
//!
//! A session also carries what must survive one redirect: a message for the next page
//! ("Saved", "Blocked") and the single-use forms it has sent. Both live in the row's small
//! JSON `state`, changed only by compare-and-set on the row's version, so two instances
//! can never both accept one form.

use chrono::{DateTime, Utc};
use latchkey_core::{KeyHash, KeyId};
use latchkey_service::{Clock, Service, ServiceResult};
use latchkey_store::sessions::{SessionChange, SessionRecord};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// How many single-use forms a session remembers (the oldest are forgotten first).
const REMEMBERED_FORMS: usize = 64;

/// A session as one request sees it: read from the store when the request began.
pub struct Session {
    id_hash: [u8; 32],
    pub key_hash: KeyHash,
    /// The signed-in key's first characters, for the audit trail.
    pub key_prefix: String,
    /// Every state-changing form must carry this token.
    pub csrf_token: String,
    /// The message left for this page, taken when a page (GET) was requested.
    flash: Mutex<Option<String>>,
    service: Service,
    clock: Arc<dyn Clock>,
}

/// What a session keeps besides who it is: the dashboard's own JSON in the store.
#[derive(Default, Serialize, Deserialize)]
struct SessionState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flash: Option<String>,
    /// Single-use forms sent, oldest first: the id of the key or webhook each created, or
    /// `None` while in flight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    forms: Vec<(String, Option<String>)>,
}

/// What became of a single-use form already sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormUse {
    /// Sent, and its answer is not there yet (a double click).
    InFlight,
    /// It created this key.
    Created(KeyId),
    /// It registered this webhook endpoint (`whk_…`).
    CreatedWebhook(String),
}

impl FormUse {
    /// What a stored id says the form made: webhook ids are `whk_…`, key ids parse.
    fn made(id: &str) -> Self {
        if id.starts_with("whk_") {
            return FormUse::CreatedWebhook(id.to_owned());
        }
        KeyId::parse(id).map_or(FormUse::InFlight, FormUse::Created)
    }
}

/// A single-use form claimed for one submission. Dropped without `created`, the claim is
/// released: a submission that failed created nothing, so the same form may be sent again.
pub struct FormClaim<'a> {
    session: &'a Session,
    form_id: String,
    settled: bool,
}

impl FormClaim<'_> {
    /// Records what the form made (a key's or a webhook's id), so sending it again says so.
    pub async fn created(mut self, made: impl std::fmt::Display) {
        self.settled = true;
        let form_id = std::mem::take(&mut self.form_id);
        let recorded = self
            .session
            .change(|state| {
                state.forms.retain(|(id, _)| *id != form_id);
                state.forms.push((form_id.clone(), Some(made.to_string())));
                Ok::<_, FormUse>(())
            })
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, "could not record which key a dashboard form created");
        }
    }
}

impl Drop for FormClaim<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // Drop cannot wait: the release is written by a task of its own.
        let (service, clock, id_hash, form_id) =
            (self.session.service.clone(), self.session.clock.clone(), self.session.id_hash, self.form_id.clone());
        tokio::spawn(async move {
            let released = change(&service, &*clock, &id_hash, |state| {
                state.forms.retain(|(id, _)| *id != form_id);
                Ok::<_, FormUse>(())
            });
            if let Err(error) = released.await {
                tracing::warn!(%error, "could not release a dashboard form");
            }
        });
    }
}

/// Applies `edit` to the stored state of the session, retrying when another request
/// changed it meanwhile. `Ok(Err(..))`: `edit` refused, nothing was written.
async fn change<T, E>(
    service: &Service,
    clock: &dyn Clock,
    id_hash: &[u8; 32],
    edit: impl Fn(&mut SessionState) -> Result<T, E>,
) -> ServiceResult<Result<T, E>> {
    loop {
        let Some(record) = service.sessions().find(id_hash).await? else {
            return Err(latchkey_service::ServiceError::NotFound("session"));
        };
        let mut state: SessionState = serde_json::from_str(&record.state).unwrap_or_default();
        let outcome = match edit(&mut state) {
            Ok(outcome) => outcome,
            Err(refused) => return Ok(Err(refused)),
        };
        let excess = state.forms.len().saturating_sub(REMEMBERED_FORMS);
        state.forms.drain(..excess);
        let text = serde_json::to_string(&state).expect("the state serializes");
        if service
            .sessions()
            .update(id_hash, SessionChange { version: record.version, state: &text, last_seen_at: clock.now() })
            .await?
        {
            return Ok(Ok(outcome));
        }
    }
}

impl Session {
    async fn change<T, E>(&self, edit: impl Fn(&mut SessionState) -> Result<T, E>) -> ServiceResult<Result<T, E>> {
        change(&self.service, &*self.clock, &self.id_hash, edit).await
    }

    /// Claims a single-use form for this submission, or says what its earlier one did.
    pub async fn claim_form(&self, form_id: &str) -> ServiceResult<Result<FormClaim<'_>, FormUse>> {
        let claimed = self
            .change(|state| match state.forms.iter().find(|(id, _)| id == form_id) {
                Some((_, None)) => Err(FormUse::InFlight),
                Some((_, Some(made))) => Err(FormUse::made(made)),
                None => {
                    state.forms.push((form_id.to_owned(), None));
                    Ok(())
                }
            })
            .await?;
        Ok(claimed.map(|()| FormClaim { session: self, form_id: form_id.to_owned(), settled: false }))
    }

    /// Keeps `message` for the next page this session is shown.
    pub async fn set_flash(&self, message: String) -> ServiceResult<()> {
        self.change(|state| {
            state.flash = Some(message.clone());
            Ok::<_, FormUse>(())
        })
        .await
        .map(|_| ())
    }

    /// The message left for this page, once.
    pub fn take_flash(&self) -> Option<String> {
        self.flash.lock().take()
    }
}

/// Starts, finds and ends sessions; the store holds them.
pub struct SessionStore {
    service: Service,
    idle_timeout: chrono::Duration,
    clock: Arc<dyn Clock>,
}

pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The store keeps only this: a leaked table holds no session a browser could use.
fn id_hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl SessionStore {
    pub fn new(service: Service, idle_timeout: Duration, clock: Arc<dyn Clock>) -> Self {
        let idle_timeout = chrono::Duration::from_std(idle_timeout).unwrap_or(chrono::Duration::MAX);
        Self { service, idle_timeout, clock }
    }

    /// Starts a session for a key; returns the session id for the cookie.
    pub async fn start(&self, key_hash: KeyHash, key_prefix: String) -> ServiceResult<String> {
        let id = random_token();
        let now = self.clock.now();
        let record = SessionRecord {
            id_hash: id_hash(&id),
            key_hash,
            key_prefix,
            csrf_token: random_token(),
            created_at: latchkey_store::truncate_to_millis(now),
            last_seen_at: latchkey_store::truncate_to_millis(now),
            state: "{}".to_owned(),
            version: 0,
        };
        self.service.sessions().start(&record).await?;
        Ok(id)
    }

    fn is_idle(&self, last_seen: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now.signed_duration_since(last_seen) > self.idle_timeout
    }

    /// The live session with this id, touching its idle timer; an expired one is removed.
    /// A page request (`takes_flash`) also takes the message left for it.
    pub async fn find(&self, id: &str, takes_flash: bool) -> ServiceResult<Option<Session>> {
        let hash = id_hash(id);
        let Some(record) = self.service.sessions().find(&hash).await? else { return Ok(None) };
        let now = self.clock.now();
        if self.is_idle(record.last_seen_at, now) {
            self.service.sessions().end(&hash).await?;
            return Ok(None);
        }
        let mut state: SessionState = serde_json::from_str(&record.state).unwrap_or_default();
        let flash = if takes_flash { state.flash.take() } else { None };
        let text = serde_json::to_string(&state).expect("the state serializes");
        // Touching is best effort: if another request changed the session meanwhile, it
        // touched it too (and a message taken twice at once is shown twice, never lost).
        self.service
            .sessions()
            .update(&hash, SessionChange { version: record.version, state: &text, last_seen_at: now })
            .await?;
        Ok(Some(Session {
            id_hash: hash,
            key_hash: record.key_hash,
            key_prefix: record.key_prefix,
            csrf_token: record.csrf_token,
            flash: Mutex::new(flash),
            service: self.service.clone(),
            clock: self.clock.clone(),
        }))
    }

    pub async fn end(&self, id: &str) -> ServiceResult<()> {
        self.service.sessions().end(&id_hash(id)).await
    }

    /// Deletes sessions idle for longer than the timeout (run periodically).
    pub async fn prune(&self) -> ServiceResult<u64> {
        let idle_since = self.clock.now().checked_sub_signed(self.idle_timeout).unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.service.sessions().prune(idle_since).await
    }
}
