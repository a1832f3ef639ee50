//! Plain column values of each table, and their conversion to and from domain records.
//! Shared by every backend so that "what a column holds" is written down once; the
//! backends only move these values in and out of their SQL.

use crate::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use latchkey_core::{
    AuditChange, AuditEvent, Description, EventId, KeyHash, KeyId, KeyName, KeyPrefix, KeyRecord, Permission, Scopes,
    Site, SiteId, SiteName, Status,
};

pub fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub fn from_millis(ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt("time out of range"))
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("stored data is not valid: {what}"))
}

pub struct SiteRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

impl SiteRow {
    pub fn into_site(self) -> StoreResult<Site> {
        Ok(Site {
            id: SiteId::parse(&self.id).ok_or_else(|| corrupt("site id"))?,
            name: SiteName::parse(&self.name).map_err(corrupt)?,
            created_at: from_millis(self.created_at)?,
        })
    }
}

pub struct KeyRow {
    pub id: String,
    pub site_id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub permission: String,
    pub scopes: String,
    pub status: String,
    pub prefix: String,
    pub hash: Vec<u8>,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub updated_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
}

impl KeyRow {
    pub fn from_record(key: &KeyRecord) -> Self {
        Self {
            id: key.id.to_string(),
            site_id: key.site_id.as_ref().map(SiteId::to_string),
            name: key.name.as_str().to_owned(),
            description: key.description.as_ref().map(|d| d.as_str().to_owned()),
            permission: key.permission.as_str().to_owned(),
            scopes: key.scopes.to_strings().join(" "),
            status: key.status.as_str().to_owned(),
            prefix: key.prefix.as_str().to_owned(),
            hash: key.hash.0.to_vec(),
            created_at: millis(key.created_at),
            created_by: key.created_by.as_ref().map(KeyId::to_string),
            updated_at: millis(key.updated_at),
            last_used_at: key.last_used_at.map(millis),
            expires_at: key.expires_at.map(millis),
        }
    }

    pub fn into_record(self) -> StoreResult<KeyRecord> {
        let scopes: Vec<&str> = self.scopes.split_whitespace().collect();
        Ok(KeyRecord {
            id: KeyId::parse(&self.id).ok_or_else(|| corrupt("key id"))?,
            site_id: self.site_id.as_deref().map(|s| SiteId::parse(s).ok_or_else(|| corrupt("site id"))).transpose()?,
            name: KeyName::parse(&self.name).map_err(corrupt)?,
            description: self.description.as_deref().map(Description::parse).transpose().map_err(corrupt)?,
            permission: self.permission.parse::<Permission>().map_err(corrupt)?,
            scopes: Scopes::parse(&scopes).map_err(corrupt)?,
            status: self.status.parse::<Status>().map_err(corrupt)?,
            prefix: KeyPrefix::from_stored(self.prefix),
            hash: KeyHash::from_slice(&self.hash).ok_or_else(|| corrupt("hash"))?,
            created_at: from_millis(self.created_at)?,
            created_by: self.created_by.as_deref().and_then(KeyId::parse),
            updated_at: from_millis(self.updated_at)?,
            last_used_at: self.last_used_at.map(from_millis).transpose()?,
            expires_at: self.expires_at.map(from_millis).transpose()?,
        })
    }
}

pub struct AuditRow {
    pub id: String,
    pub at: i64,
    pub actor_key_id: Option<String>,
    pub actor_prefix: Option<String>,
    pub action: String,
    pub target_key_id: Option<String>,
    pub site_id: Option<String>,
    pub source_ip: Option<String>,
    pub changes: String,
}

impl AuditRow {
    pub fn from_event(event: &AuditEvent) -> Self {
        Self {
            id: event.id.to_string(),
            at: millis(event.at),
            actor_key_id: event.actor_key_id.as_ref().map(KeyId::to_string),
            actor_prefix: event.actor_prefix.clone(),
            action: event.action.as_str().to_owned(),
            target_key_id: event.target_key_id.as_ref().map(KeyId::to_string),
            site_id: event.site_id.as_ref().map(SiteId::to_string),
            source_ip: event.source_ip.clone(),
            changes: serde_json::to_string(&event.changes).expect("changes serialize"),
        }
    }

    pub fn into_event(self) -> StoreResult<AuditEvent> {
        Ok(AuditEvent {
            id: EventId::parse(&self.id).ok_or_else(|| corrupt("event id"))?,
            at: from_millis(self.at)?,
            actor_key_id: self.actor_key_id.as_deref().and_then(KeyId::parse),
            actor_prefix: self.actor_prefix,
            action: self.action.parse().map_err(|_| corrupt("audit action"))?,
            target_key_id: self.target_key_id.as_deref().and_then(KeyId::parse),
            site_id: self.site_id.as_deref().and_then(SiteId::parse),
            source_ip: self.source_ip,
            changes: serde_json::from_str::<Vec<AuditChange>>(&self.changes).map_err(corrupt)?,
        })
    }
}
