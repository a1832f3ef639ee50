//! The outbox: what happened, as the events that webhooks deliver and `GET /events`
//! follows. A backend writes an event in the same transaction as the change and its audit
//! record ([`for_key`], [`for_site`]), so an acknowledged change always has its event and
//! a rolled-back one never does.
//!
//! The body's `data` is written here, at the moment of the change, because by the time it
//! is delivered the key may have changed again or be gone. It shows the key as the
//! management API does (`GET /keys/{id}`), never its value or hash; the integration tests
//! compare the two, so the shapes cannot drift apart.

use chrono::{DateTime, Utc};
use latchkey_core::{AuditAction, AuditEvent, KeyId, KeyRecord, Site, SiteId};
use serde_json::{json, Value};

/// Every event type a webhook endpoint may subscribe to.
pub const EVENT_TYPES: [&str; 13] = [
    "key.created",
    "key.updated",
    "key.blocked",
    "key.unblocked",
    "key.deleted",
    "key.rotated",
    "key.leaked",
    "key.expired",
    "key.expiring",
    "key.usage_exceeded",
    "key.rate_limited",
    "site.created",
    "site.deleted",
];

/// The type of the event sent by `POST /webhooks/{id}/test`, to that endpoint only.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// One event, as written to the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Unique; the `webhook-id` of every delivery attempt. An event whose id is stored
    /// already is not written again, which is what makes reminders once-only.
    pub id: String,
    pub event_type: String,
    pub at: DateTime<Utc>,
    /// The site it concerns: endpoints of that site and endpoints of all sites get it.
    /// `None` (a Master key): only endpoints of all sites.
    pub site_id: Option<SiteId>,
    pub key_id: Option<KeyId>,
    /// The JSON of the body's `data`.
    pub data: String,
}

/// An event as stored, with its place in the outbox's order (the `after` cursor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    pub event: OutboxEvent,
}

impl OutboxEvent {
    /// An event about a key, with the key as the management API shows it at `at`.
    pub fn about_key(id: String, event_type: &str, at: DateTime<Utc>, key: &KeyRecord, extra: Value) -> Self {
        let mut data = key_data(key, at);
        if let (Value::Object(data), Value::Object(extra)) = (&mut data, extra) {
            data.extend(extra);
        }
        Self {
            id,
            event_type: event_type.to_owned(),
            at,
            site_id: key.site_id.clone(),
            key_id: Some(key.id.clone()),
            data: data.to_string(),
        }
    }

    /// The whole body: `{"type", "timestamp", "data"}`.
    pub fn body(&self) -> String {
        let data: Value = serde_json::from_str(&self.data).unwrap_or(Value::Null);
        json!({ "type": self.event_type, "timestamp": self.at, "data": data }).to_string()
    }
}

/// The event a key's audit record stands for, if webhooks deliver that kind.
pub fn for_key(audit: &AuditEvent, key: &KeyRecord) -> Option<OutboxEvent> {
    let event_type = match audit.action {
        AuditAction::KeyCreated => "key.created",
        AuditAction::KeyUpdated => "key.updated",
        AuditAction::KeyBlocked => "key.blocked",
        AuditAction::KeyUnblocked => "key.unblocked",
        AuditAction::KeyDeleted => "key.deleted",
        AuditAction::KeyRotated => "key.rotated",
        AuditAction::KeyReportedLeaked => "key.leaked",
        // Imports bring up to 10,000 keys made elsewhere: not 10,000 webhooks. The rest
        // are not about a key.
        _ => return None,
    };
    Some(OutboxEvent::about_key(audit.id.to_string(), event_type, audit.at, key, json!({})))
}

/// The event a site's audit record stands for, if webhooks deliver that kind.
pub fn for_site(audit: &AuditEvent, site: &Site) -> Option<OutboxEvent> {
    let event_type = match audit.action {
        AuditAction::SiteCreated => "site.created",
        AuditAction::SiteDeleted => "site.deleted",
        _ => return None,
    };
    let data = json!({ "id": site.id.as_str(), "name": site.name.as_str(), "created_at": site.created_at });
    Some(OutboxEvent {
        id: audit.id.to_string(),
        event_type: event_type.to_owned(),
        at: audit.at,
        site_id: Some(site.id.clone()),
        key_id: None,
        data: data.to_string(),
    })
}

/// A key as `GET /keys/{id}` shows it at `at` (its status then): never the key or its hash.
pub fn key_data(key: &KeyRecord, at: DateTime<Utc>) -> Value {
    let options = &key.options;
    json!({
        "id": key.id.as_str(),
        "name": key.name.as_str(),
        "description": key.description.as_ref().map(|d| d.as_str()),
        "prefix": key.prefix.as_str(),
        "permission": key.permission.as_str(),
        "scopes": key.scopes.to_strings(),
        "status": key.state_at(at).as_str(),
        "site_id": key.site_id.as_ref().map(SiteId::as_str),
        "created_at": key.created_at,
        "created_by": key.created_by.as_ref().map(KeyId::as_str),
        "updated_at": key.updated_at,
        "last_used_at": key.last_used_at,
        "expires_at": key.expires_at,
        "owner_id": options.owner_id.as_ref().map(|o| o.as_str()),
        "metadata": options.metadata.as_ref().map(|m| serde_json::from_str::<Value>(m.as_str()).unwrap_or(Value::Null)),
        "ip_allowlist": options.ip_allowlist.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "ratelimit": options.ratelimit.map(|r| json!({ "limit": r.limit, "window_seconds": r.window_seconds })),
        "credits": options.credits.map(|c| json!({
            "remaining": c.remaining,
            "refill": c.refill.map(|r| json!({ "interval": r.interval.as_str(), "amount": r.amount })),
        })),
        "rotated_from": options.rotated_from.as_ref().map(KeyId::as_str),
        "rotated_to": options.rotated_to.as_ref().map(KeyId::as_str),
    })
}
