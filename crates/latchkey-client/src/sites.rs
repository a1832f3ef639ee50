//! Sites, the unit keys belong to: `client.sites().list / get / create / rename / delete`.

use crate::client::{Client, Page, PageRequest};
use crate::error::ClientError;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::fmt;

/// A site's id, `site_...`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SiteId(String);

impl SiteId {
    /// An id known from elsewhere (configuration, say); Latchkey answers 404 or 403 for
    /// one that does not exist.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Site {
    pub id: SiteId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// The site calls; from [`Client::sites`].
pub struct Sites<'a> {
    client: &'a Client,
}

impl Client {
    pub fn sites(&self) -> Sites<'_> {
        Sites { client: self }
    }
}

impl Sites<'_> {
    /// Every site for a Master key; its own site for any other key.
    pub async fn list(&self, page: &PageRequest) -> Result<Page<Site>, ClientError> {
        self.client.call(self.client.request(Method::GET, &["sites"]).query(page)).await
    }

    /// Master, or a key of that site.
    pub async fn get(&self, id: &SiteId) -> Result<Site, ClientError> {
        self.client.call(self.client.request(Method::GET, &["sites", id.as_str()])).await
    }

    /// Master only. `name`: 1 to 100 characters.
    pub async fn create(&self, name: &str) -> Result<Site, ClientError> {
        self.client.call(self.client.request(Method::POST, &["sites"]).json(&json!({ "name": name }))).await
    }

    /// Master only.
    pub async fn rename(&self, id: &SiteId, name: &str) -> Result<Site, ClientError> {
        let request = self.client.request(Method::PATCH, &["sites", id.as_str()]).json(&json!({ "name": name }));
        self.client.call(request).await
    }

    /// Master only. Deletes the site and its keys, which stop working before this returns.
    pub async fn delete(&self, id: &SiteId) -> Result<(), ClientError> {
        self.client.call_for_status(self.client.request(Method::DELETE, &["sites", id.as_str()])).await
    }
}
