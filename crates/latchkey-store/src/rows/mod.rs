//! Plain column values of each table, and their conversion to and from domain records.
//! Shared by every backend so that "what a column holds" is written down once; the
//! backends only move these values in and out of their SQL.
//!
//! With the `sqlx` feature the row types derive `sqlx::FromRow` (fields are named after
//! their columns), so a backend reads a row with `query_as` and never maps a column by
//! hand; [`Columns`] is the other direction, a row as `(column, value)` pairs to bind.

mod columns;
mod credits;

#[cfg(feature = "sqlx")]
pub use columns::BindsColumns;
pub use columns::{ColumnValue, Columns, EVENT_COLUMNS, KEY_COLUMNS, SITE_COLUMNS};
pub use credits::CreditColumns;

use crate::{StoreError, StoreResult, UsageCount};
use chrono::{DateTime, Utc};
use latchkey_core::options::parse_allowlist;
use latchkey_core::{
    AuditChange, AuditEvent, Description, EventId, KeyHash, KeyId, KeyName, KeyOptions, KeyPrefix, KeyRecord, Metadata,
    OwnerId, Permission, RateLimit, Scopes, Site, SiteId, SiteName, Status,
};

pub fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub fn from_millis(ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt("time out of range"))
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("stored data is not valid: {what}"))
}

#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct SiteRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

impl SiteRow {
    pub fn from_site(site: &Site) -> Self {
        Self { id: site.id.to_string(), name: site.name.as_str().to_owned(), created_at: millis(site.created_at) }
    }

    pub fn into_site(self) -> StoreResult<Site> {
        Ok(Site {
            id: SiteId::parse(&self.id).ok_or_else(|| corrupt("site id"))?,
            name: SiteName::parse(&self.name).map_err(corrupt)?,
            created_at: from_millis(self.created_at)?,
        })
    }
}

#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
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
    /// JSON: metadata, ip_allowlist, ratelimit, rotated_from, rotated_to.
    pub options: String,
    pub owner_id: Option<String>,
    #[cfg_attr(feature = "sqlx", sqlx(flatten))]
    pub credits: CreditColumns,
}

/// The JSON shape of the `options` column.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct StoredOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ip_allowlist: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ratelimit: Option<(u32, u32)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotated_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotated_to: Option<String>,
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
            options: options_json(&key.options),
            owner_id: key.options.owner_id.as_ref().map(|o| o.as_str().to_owned()),
            credits: CreditColumns::of(key.options.credits.as_ref()),
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
            options: {
                let stored: StoredOptions = serde_json::from_str(&self.options).map_err(corrupt)?;
                KeyOptions {
                    owner_id: self.owner_id.as_deref().map(OwnerId::parse).transpose().map_err(corrupt)?,
                    metadata: stored.metadata.as_deref().map(Metadata::parse).transpose().map_err(corrupt)?,
                    ip_allowlist: parse_allowlist(&stored.ip_allowlist).map_err(corrupt)?,
                    ratelimit: stored.ratelimit.map(|(limit, window)| RateLimit { limit, window_seconds: window }),
                    credits: self.credits.into_credits()?,
                    rotated_from: stored.rotated_from.as_deref().and_then(KeyId::parse),
                    rotated_to: stored.rotated_to.as_deref().and_then(KeyId::parse),
                }
            },
        })
    }
}

fn options_json(options: &KeyOptions) -> String {
    let stored = StoredOptions {
        metadata: options.metadata.as_ref().map(|m| m.as_str().to_owned()),
        ip_allowlist: options.ip_allowlist.iter().map(ToString::to_string).collect(),
        ratelimit: options.ratelimit.map(|r| (r.limit, r.window_seconds)),
        rotated_from: options.rotated_from.as_ref().map(ToString::to_string),
        rotated_to: options.rotated_to.as_ref().map(ToString::to_string),
    };
    serde_json::to_string(&stored).expect("options serialize")
}

#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
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

/// A row of `key_usage`.
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct UsageRow {
    pub key_id: String,
    pub day: i32,
    pub allowed: i64,
    pub refused: i64,
}

impl UsageRow {
    pub fn into_count(self) -> StoreResult<UsageCount> {
        Ok(UsageCount {
            key_id: KeyId::parse(&self.key_id).ok_or_else(|| corrupt("key id"))?,
            day: self.day,
            allowed: self.allowed as u64,
            refused: self.refused as u64,
        })
    }
}
