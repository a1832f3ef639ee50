//! Dashboard sessions, stored so that they survive a restart and any instance behind a
//! load balancer serves them. A row holds the SHA-256 of the session id (the cookie's
//! value is a bearer secret; the table never holds a usable one), the signed-in key's hash
//! (every request re-verifies it, so blocking the key ends its sessions everywhere), and a
//! small `state` the dashboard owns (a message for the next page, its single-use forms)
//! changed by compare-and-set on `version`, so two instances never both claim one form.

use crate::StoreResult;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_core::KeyHash;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session id that the browser holds.
    pub id_hash: [u8; 32],
    pub key_hash: KeyHash,
    /// The signed-in key's first characters, for the audit trail.
    pub key_prefix: String,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The dashboard's own JSON; the store only keeps it.
    pub state: String,
    /// Bumped by every update: what a compare-and-set compares.
    pub version: i64,
}

/// What an update writes, if the stored version is still `version`.
#[derive(Clone, Copy, Debug)]
pub struct SessionChange<'a> {
    pub version: i64,
    pub state: &'a str,
    pub last_seen_at: DateTime<Utc>,
}

#[async_trait]
pub trait SessionRows: Send + Sync {
    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()>;

    async fn find_session(&self, id_hash: &[u8; 32]) -> StoreResult<Option<SessionRecord>>;

    /// Writes the change's `state` and `last_seen_at` and bumps the version, if the stored
    /// version is still the change's; `false` when another request changed the session first.
    async fn update_session(&self, id_hash: &[u8; 32], change: SessionChange<'_>) -> StoreResult<bool>;

    async fn delete_session(&self, id_hash: &[u8; 32]) -> StoreResult<()>;

    /// Deletes the sessions idle since before `idle_since`; returns how many.
    async fn prune_sessions(&self, idle_since: DateTime<Utc>) -> StoreResult<u64>;
}

/// A session as its columns hold it; the backends read rows into this.
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct SessionRow {
    pub id_hash: Vec<u8>,
    pub key_hash: Vec<u8>,
    pub key_prefix: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub state: String,
    pub version: i64,
}

impl SessionRow {
    pub fn into_record(self) -> StoreResult<SessionRecord> {
        let hash = |bytes: Vec<u8>, what: &str| -> StoreResult<[u8; 32]> {
            bytes.try_into().map_err(|_| crate::rows::corrupt(format!("{what} is not 32 bytes")))
        };
        Ok(SessionRecord {
            id_hash: hash(self.id_hash, "a session's id hash")?,
            key_hash: KeyHash(hash(self.key_hash, "a session's key hash")?),
            key_prefix: self.key_prefix,
            csrf_token: self.csrf_token,
            created_at: crate::rows::from_millis(self.created_at)?,
            last_seen_at: crate::rows::from_millis(self.last_seen_at)?,
            state: self.state,
            version: self.version,
        })
    }
}
