//! The door to the dashboard's stored sessions. What a session holds and how its single-use
//! forms and messages work is the dashboard's business (`latchkey-server`); this only
//! keeps the store private to the service, as for every other operation.

use crate::error::ServiceResult;
use crate::Service;
use chrono::{DateTime, Utc};
use latchkey_store::sessions::{SessionChange, SessionRecord};

pub struct Sessions<'a> {
    pub(crate) service: &'a Service,
}

impl Sessions<'_> {
    pub async fn start(&self, session: &SessionRecord) -> ServiceResult<()> {
        Ok(self.service.store.insert_session(session).await?)
    }

    pub async fn find(&self, id_hash: &[u8; 32]) -> ServiceResult<Option<SessionRecord>> {
        Ok(self.service.store.find_session(id_hash).await?)
    }

    /// Compare-and-set: `false` when another request changed the session since `version`.
    pub async fn update(&self, id_hash: &[u8; 32], change: SessionChange<'_>) -> ServiceResult<bool> {
        Ok(self.service.store.update_session(id_hash, change).await?)
    }

    pub async fn end(&self, id_hash: &[u8; 32]) -> ServiceResult<()> {
        Ok(self.service.store.delete_session(id_hash).await?)
    }

    /// Deletes sessions idle since before `idle_since`; returns how many.
    pub async fn prune(&self, idle_since: DateTime<Utc>) -> ServiceResult<u64> {
        Ok(self.service.store.prune_sessions(idle_since).await?)
    }
}
