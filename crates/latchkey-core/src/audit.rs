//! Audit events: who did what to which key or site, and what changed. An event names a
//! key by id and displayable prefix only; it never holds a key or a hash.

use crate::ids::{EventId, KeyId, SiteId};
use crate::records::{KeyRecord, Site};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    SiteCreated,
    SiteUpdated,
    SiteDeleted,
    KeyCreated,
    KeyUpdated,
    KeyBlocked,
    KeyUnblocked,
    KeyDeleted,
    KeyRotated,
    KeyReportedLeaked,
    /// A key made elsewhere, brought in by its hash (`POST /keys/import`).
    KeyImported,
    WebhookCreated,
    WebhookUpdated,
    WebhookDeleted,
    /// A webhook's signing secret was replaced (the old one signs alongside for a while).
    WebhookSecretRotated,
}

impl AuditAction {
    pub const ALL: [AuditAction; 15] = [
        AuditAction::SiteCreated,
        AuditAction::SiteUpdated,
        AuditAction::SiteDeleted,
        AuditAction::KeyCreated,
        AuditAction::KeyUpdated,
        AuditAction::KeyBlocked,
        AuditAction::KeyUnblocked,
        AuditAction::KeyDeleted,
        AuditAction::KeyRotated,
        AuditAction::KeyReportedLeaked,
        AuditAction::KeyImported,
        AuditAction::WebhookCreated,
        AuditAction::WebhookUpdated,
        AuditAction::WebhookDeleted,
        AuditAction::WebhookSecretRotated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::SiteCreated => "site_created",
            AuditAction::SiteUpdated => "site_updated",
            AuditAction::SiteDeleted => "site_deleted",
            AuditAction::KeyCreated => "key_created",
            AuditAction::KeyUpdated => "key_updated",
            AuditAction::KeyBlocked => "key_blocked",
            AuditAction::KeyUnblocked => "key_unblocked",
            AuditAction::KeyDeleted => "key_deleted",
            AuditAction::KeyRotated => "key_rotated",
            AuditAction::KeyReportedLeaked => "key_reported_leaked",
            AuditAction::KeyImported => "key_imported",
            AuditAction::WebhookCreated => "webhook_created",
            AuditAction::WebhookUpdated => "webhook_updated",
            AuditAction::WebhookDeleted => "webhook_deleted",
            AuditAction::WebhookSecretRotated => "webhook_secret_rotated",
        }
    }
}

impl FromStr for AuditAction {
    type Err = ();

    fn from_str(raw: &str) -> Result<Self, ()> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == raw).ok_or(())
    }
}

/// One field's value before and after a change, as display strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Who acted, from where. Built by the HTTP layer from the authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub key_id: Option<KeyId>,
    pub key_prefix: Option<String>,
    pub source_ip: Option<String>,
}

impl Actor {
    /// The server itself, e.g. when it creates the bootstrap key.
    pub fn system() -> Self {
        Self { key_id: None, key_prefix: None, source_ip: None }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: EventId,
    pub at: DateTime<Utc>,
    pub actor_key_id: Option<KeyId>,
    pub actor_prefix: Option<String>,
    pub action: AuditAction,
    pub target_key_id: Option<KeyId>,
    pub site_id: Option<SiteId>,
    pub source_ip: Option<String>,
    pub changes: Vec<AuditChange>,
}

impl AuditEvent {
    pub fn new(actor: &Actor, action: AuditAction, at: DateTime<Utc>) -> Self {
        Self {
            id: EventId::generate(),
            at,
            actor_key_id: actor.key_id.clone(),
            actor_prefix: actor.key_prefix.clone(),
            action,
            target_key_id: None,
            site_id: None,
            source_ip: actor.source_ip.clone(),
            changes: Vec::new(),
        }
    }

    pub fn for_key(mut self, key: &KeyRecord) -> Self {
        self.target_key_id = Some(key.id.clone());
        self.site_id = key.site_id.clone();
        self
    }

    pub fn for_site(mut self, site: &Site) -> Self {
        self.site_id = Some(site.id.clone());
        self
    }

    pub fn with_changes(mut self, changes: Vec<AuditChange>) -> Self {
        self.changes = changes;
        self
    }
}

fn time_text(at: Option<DateTime<Utc>>) -> Option<String> {
    at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn scope_text(key: &KeyRecord) -> Option<String> {
    Some(key.scopes.to_strings().join(" "))
}

/// The fields of a key that an audit record shows, as display strings.
fn audited_fields(key: &KeyRecord) -> [(&'static str, Option<String>); 14] {
    let options = &key.options;
    [
        ("name", Some(key.name.as_str().to_owned())),
        ("description", key.description.as_ref().map(|d| d.as_str().to_owned())),
        ("permission", Some(key.permission.as_str().to_owned())),
        ("scopes", scope_text(key)),
        ("status", Some(key.status.as_str().to_owned())),
        ("expires_at", time_text(key.expires_at)),
        ("owner_id", options.owner_id.as_ref().map(|o| o.as_str().to_owned())),
        ("metadata", options.metadata.as_ref().map(|m| m.as_str().to_owned())),
        (
            "ip_allowlist",
            (!options.ip_allowlist.is_empty())
                .then(|| options.ip_allowlist.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")),
        ),
        ("ratelimit", options.ratelimit.map(|r| format!("{} per {} s", r.limit, r.window_seconds))),
        ("credits", options.credits.map(|c| c.remaining.to_string())),
        (
            "credits_refill",
            options.credits.and_then(|c| c.refill).map(|r| format!("{} {}", r.amount, r.interval.as_str())),
        ),
        ("rotated_from", options.rotated_from.as_ref().map(ToString::to_string)),
        ("rotated_to", options.rotated_to.as_ref().map(ToString::to_string)),
    ]
}

impl AuditChange {
    /// The audited fields that differ between two versions of a key.
    pub fn between(before: &KeyRecord, after: &KeyRecord) -> Vec<AuditChange> {
        audited_fields(before)
            .into_iter()
            .zip(audited_fields(after))
            .filter(|((_, old), (_, new))| old != new)
            .map(|((field, before), (_, after))| AuditChange { field: field.to_owned(), before, after })
            .collect()
    }

    /// A created key's fields, each as a change from nothing.
    pub fn created(key: &KeyRecord) -> Vec<AuditChange> {
        audited_fields(key)
            .into_iter()
            .filter(|(_, value)| value.is_some())
            .map(|(field, after)| AuditChange { field: field.to_owned(), before: None, after })
            .collect()
    }

    /// A new record that has only a name worth recording (a site).
    pub fn created_named(name: &str) -> Vec<AuditChange> {
        vec![AuditChange { field: "name".to_owned(), before: None, after: Some(name.to_owned()) }]
    }

    /// A record that is gone, named by what it was called.
    pub fn removed(name: &str) -> AuditChange {
        AuditChange { field: "name".to_owned(), before: Some(name.to_owned()), after: None }
    }

    pub fn renamed(field: &str, before: &str, after: &str) -> AuditChange {
        AuditChange { field: field.to_owned(), before: Some(before.to_owned()), after: Some(after.to_owned()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::fixtures::key;
    use crate::values::{KeyName, Permission, Status};

    #[test]
    fn changes_list_only_the_fields_that_differ() {
        let before = key(Permission::Read, None);
        let mut after = before.clone();
        after.name = KeyName::parse("renamed").unwrap();
        after.status = Status::Blocked;
        let changes = AuditChange::between(&before, &after);
        let fields: Vec<_> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["name", "status"]);
        assert_eq!(changes[1].before.as_deref(), Some("active"));
        assert_eq!(changes[1].after.as_deref(), Some("blocked"));
    }
}
