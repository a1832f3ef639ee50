//! The audit trail: `client.audit().list(&filter)`, every change to a key or site, newest
//! first. Needs an Admin key of the site, or Master.

use crate::client::{Client, Page};
use crate::error::ClientError;
use crate::keys::KeyId;
use crate::sites::SiteId;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    pub at: DateTime<Utc>,
    /// e.g. `key_created`, `key_blocked`, `key_rotated`, `key_reported_leaked`.
    pub action: String,
    pub actor_key_id: Option<KeyId>,
    pub actor_prefix: Option<String>,
    pub target_key_id: Option<KeyId>,
    pub site_id: Option<SiteId>,
    pub source_ip: Option<String>,
    #[serde(default)]
    pub changes: Vec<AuditChange>,
}

/// One field an event changed, before and after, as text.
#[derive(Clone, Debug, Deserialize)]
pub struct AuditChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyId>,
    /// An action name, e.g. `key_blocked`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// The audit call; from [`Client::audit`].
pub struct Audit<'a> {
    client: &'a Client,
}

impl Client {
    pub fn audit(&self) -> Audit<'_> {
        Audit { client: self }
    }
}

impl Audit<'_> {
    pub async fn list(&self, filter: &AuditFilter) -> Result<Page<AuditEvent>, ClientError> {
        self.client.call(self.client.request(Method::GET, &["audit"]).query(filter)).await
    }
}
