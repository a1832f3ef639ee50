//! Keys: `client.keys().list / get / create / update / block / unblock / delete / rotate /
//! usage`, `client.whoami()`, and the shapes they send and read.

use crate::client::{Client, Page};
use crate::error::ClientError;
use crate::secret::ApiKey;
use crate::sites::SiteId;
use chrono::{DateTime, NaiveDate, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::fmt;

/// A key's id, `key_...`: what to store, log and show. Not the key itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key's level: Read < Write < Admin < Master (the Forja seed's table; Master is
/// system-wide). Deliberately not ordered here: only Latchkey compares levels, so a
/// service asks it (a requirement on `/verify` or the layer) instead of comparing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
    Admin,
    Master,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
            Permission::Master => "master",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Blocked,
    Expired,
}

/// At most `limit` uses per fixed window of `window_seconds` (1 to 86400), per instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub limit: u32,
    pub window_seconds: u32,
}

/// Usage credits: each successful verification spends its cost; at zero the key is
/// refused as `usage_exceeded`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credits {
    pub remaining: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refill: Option<Refill>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refill {
    /// `daily` or `monthly` (UTC).
    pub interval: String,
    pub amount: u64,
}

/// A key as Latchkey lists and shows it: never the key itself, only its first characters.
#[derive(Clone, Debug, Deserialize)]
pub struct Key {
    pub id: KeyId,
    pub name: String,
    pub description: Option<String>,
    /// The first 12 characters of the key, to recognise it.
    pub prefix: String,
    pub permission: Permission,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub status: KeyStatus,
    /// `None` for a Master key, which belongs to no site.
    pub site_id: Option<SiteId>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub owner_id: Option<String>,
    pub metadata: Option<Value>,
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    pub ratelimit: Option<RateLimit>,
    pub credits: Option<Credits>,
    pub rotated_from: Option<KeyId>,
    pub rotated_to: Option<KeyId>,
}

/// The answer to create and rotate: the key's record and the full key, shown this once.
#[derive(Clone, Debug, Deserialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub record: Key,
    /// Store it now: Latchkey never shows it again. `Debug` redacts it.
    pub key: ApiKey,
}

/// What to create. Built with [`NewKey::new`] and the `with`/`for` methods, or by setting
/// the fields; nobody may create a key above their own level.
#[derive(Clone, Debug, Serialize)]
pub struct NewKey {
    pub name: String,
    pub permission: Permission,
    /// Required, except for a Master key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_id: Option<SiteId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// A free JSON object, at most 4 KiB, returned by verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_allowlist: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimit: Option<RateLimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<Credits>,
}

impl NewKey {
    pub fn new(name: impl Into<String>, permission: Permission) -> Self {
        Self {
            name: name.into(),
            permission,
            site_id: None,
            scopes: Vec::new(),
            description: None,
            expires_at: None,
            owner_id: None,
            metadata: None,
            ip_allowlist: Vec::new(),
            ratelimit: None,
            credits: None,
        }
    }

    pub fn for_site(self, site: &SiteId) -> Self {
        Self { site_id: Some(site.clone()), ..self }
    }

    pub fn with_scopes(self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { scopes: scopes.into_iter().map(Into::into).collect(), ..self }
    }

    pub fn with_description(self, description: impl Into<String>) -> Self {
        Self { description: Some(description.into()), ..self }
    }

    pub fn expiring_at(self, at: DateTime<Utc>) -> Self {
        Self { expires_at: Some(at), ..self }
    }

    pub fn owned_by(self, owner_id: impl Into<String>) -> Self {
        Self { owner_id: Some(owner_id.into()), ..self }
    }

    pub fn with_metadata(self, metadata: Map<String, Value>) -> Self {
        Self { metadata: Some(metadata), ..self }
    }

    pub fn with_ratelimit(self, limit: u32, window_seconds: u32) -> Self {
        Self { ratelimit: Some(RateLimit { limit, window_seconds }), ..self }
    }

    pub fn with_credits(self, credits: Credits) -> Self {
        Self { credits: Some(credits), ..self }
    }
}

/// A PATCH: `None` leaves a field as it is; for the `Option<Option<_>>` fields,
/// `Some(None)` clears it (sent as `null`). `ip_allowlist: Some(vec![])` clears the list.
/// A key's value never changes: rotate it instead.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KeyUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<Permission>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Option<Map<String, Value>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_allowlist: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimit: Option<Option<RateLimit>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<Option<Credits>>,
}

/// Which keys to list: every filter is optional; newest first.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KeyFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// Only keys not used for this many days (never-used keys count from creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unused_for_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// 1 to 200; Latchkey's default is 50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Requests per UTC day made with a key, oldest first, zeros included.
#[derive(Clone, Debug, Deserialize)]
pub struct KeyUsage {
    pub key_id: KeyId,
    pub days: Vec<UsageDay>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct UsageDay {
    pub date: NaiveDate,
    pub allowed: u64,
    pub refused: u64,
}

/// The key calls; from [`Client::keys`]. All need an Admin key of the key's site, or Master.
pub struct Keys<'a> {
    client: &'a Client,
}

impl Client {
    pub fn keys(&self) -> Keys<'_> {
        Keys { client: self }
    }

    /// The calling key's own record. Any valid key may ask.
    pub async fn whoami(&self) -> Result<Key, ClientError> {
        self.call(self.request(Method::GET, &["whoami"])).await
    }
}

impl Keys<'_> {
    pub async fn list(&self, filter: &KeyFilter) -> Result<Page<Key>, ClientError> {
        self.client.call(self.client.request(Method::GET, &["keys"]).query(filter)).await
    }

    pub async fn get(&self, id: &KeyId) -> Result<Key, ClientError> {
        self.client.call(self.client.request(Method::GET, &["keys", id.as_str()])).await
    }

    /// The answer is the only one that ever holds the full key.
    pub async fn create(&self, key: &NewKey) -> Result<CreatedKey, ClientError> {
        self.client.call(self.client.request(Method::POST, &["keys"]).json(key)).await
    }

    pub async fn update(&self, id: &KeyId, update: &KeyUpdate) -> Result<Key, ClientError> {
        self.client.call(self.client.request(Method::PATCH, &["keys", id.as_str()]).json(update)).await
    }

    /// The key stops working before this returns; the record stays.
    pub async fn block(&self, id: &KeyId) -> Result<Key, ClientError> {
        self.client.call(self.client.request(Method::POST, &["keys", id.as_str(), "block"])).await
    }

    pub async fn unblock(&self, id: &KeyId) -> Result<Key, ClientError> {
        self.client.call(self.client.request(Method::POST, &["keys", id.as_str(), "unblock"])).await
    }

    /// Gone for good: the key stops working before this returns.
    pub async fn delete(&self, id: &KeyId) -> Result<(), ClientError> {
        self.client.call_for_status(self.client.request(Method::DELETE, &["keys", id.as_str()])).await
    }

    /// A replacement with the same site, name, level, scopes and settings; the old key
    /// keeps working for `grace_seconds` (at most 30 days), then fails as `key_expired`.
    pub async fn rotate(&self, id: &KeyId, grace_seconds: u64) -> Result<CreatedKey, ClientError> {
        let request = self.client.request(Method::POST, &["keys", id.as_str(), "rotate"]);
        self.client.call(request.json(&json!({ "grace_seconds": grace_seconds }))).await
    }

    /// The last `days` (1 to 90) UTC days of use, allowed vs refused.
    pub async fn usage(&self, id: &KeyId, days: u32) -> Result<KeyUsage, ClientError> {
        let request = self.client.request(Method::GET, &["keys", id.as_str(), "usage"]).query(&[("days", days)]);
        self.client.call(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_sends_only_what_it_changes_and_null_for_what_it_clears() {
        let update = KeyUpdate { name: Some("renamed".into()), description: Some(None), ..KeyUpdate::default() };
        assert_eq!(serde_json::to_value(&update).unwrap(), json!({ "name": "renamed", "description": null }));
    }

    #[test]
    fn a_created_key_debug_output_never_shows_the_key() {
        let answer = json!({
            "id": "key_1", "name": "n", "description": null, "prefix": "lk_abc", "permission": "read",
            "scopes": [], "status": "active", "site_id": "site_1", "created_at": "2030-01-01T00:00:00Z",
            "created_by": null, "updated_at": "2030-01-01T00:00:00Z", "last_used_at": null, "expires_at": null,
            "owner_id": null, "metadata": null, "ip_allowlist": [], "ratelimit": null, "credits": null,
            "rotated_from": null, "rotated_to": null, "a_field_from_a_newer_server": true,
            "key": "lk_thewholesecret",
        });
        let created: CreatedKey = serde_json::from_value(answer).unwrap();
        assert_eq!(created.key.expose(), "lk_thewholesecret");
        assert!(!format!("{created:?}").contains("thewholesecret"));
    }
}
