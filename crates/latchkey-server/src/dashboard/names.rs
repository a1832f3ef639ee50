//! Names instead of ids: the dashboard shows "CI deploy (lk_3fZk9QaBc…)" where the records
//! hold `key_01J…`. A key that no longer exists is named from its audit trail (its
//! deletion records the name it had), so links to it can lead to that trail instead of an
//! error page.

use latchkey_core::{AuditAction, Caller, KeyId, KeyRecord, Site, SiteId};
use latchkey_service::audit::AuditQuery;
use latchkey_service::{PageRequest, Service, ServiceError, ServiceResult};
use maud::{html, Markup};
use std::collections::HashMap;

/// What the dashboard knows of a key named in a record.
#[derive(Clone)]
pub enum KnownKey {
    /// It exists and the user may see it.
    Live { name: String, prefix: String },
    /// It was deleted; its last name, if the user may see the deletion.
    Deleted { name: String },
    /// Not visible to this user (another site's, or a Master key for an Admin), or gone
    /// without a trace the user may read.
    Hidden,
}

/// Looks keys up once per page, however often they are named on it.
pub struct KeyNames<'a> {
    service: &'a Service,
    caller: &'a Caller,
    known: HashMap<KeyId, KnownKey>,
}

impl<'a> KeyNames<'a> {
    pub fn new(service: &'a Service, caller: &'a Caller) -> Self {
        Self { service, caller, known: HashMap::new() }
    }

    /// Remembers keys already read (a list's own keys).
    pub fn knowing(mut self, keys: &[KeyRecord]) -> Self {
        for key in keys {
            self.known.insert(key.id.clone(), live(key));
        }
        self
    }

    pub async fn look_up(&mut self, id: &KeyId) -> ServiceResult<KnownKey> {
        if let Some(known) = self.known.get(id) {
            return Ok(known.clone());
        }
        let found = match self.service.keys().get(self.caller, id.as_str()).await {
            Ok(key) => live(&key),
            Err(ServiceError::NotFound(_)) => self.deleted_name(id).await?,
            Err(other) => return Err(other),
        };
        self.known.insert(id.clone(), found.clone());
        Ok(found)
    }

    async fn deleted_name(&self, id: &KeyId) -> ServiceResult<KnownKey> {
        let query =
            AuditQuery { key: Some(id.clone()), action: Some(AuditAction::KeyDeleted), ..AuditQuery::default() };
        let events = self.service.audit().list(self.caller, query, &PageRequest::first(1)).await?.items;
        let name = events.first().and_then(|event| event.changes.iter().find(|c| c.field == "name"));
        Ok(match name.and_then(|change| change.before.clone()) {
            Some(name) => KnownKey::Deleted { name },
            None => KnownKey::Hidden,
        })
    }

    /// A link to the key, or to the audit trail of a deleted one, or its prefix alone.
    pub async fn link(&mut self, id: &KeyId, prefix: Option<&str>) -> ServiceResult<Markup> {
        Ok(key_link(id, &self.look_up(id).await?, prefix))
    }
}

fn live(key: &KeyRecord) -> KnownKey {
    KnownKey::Live { name: key.name.as_str().to_owned(), prefix: key.prefix.as_str().to_owned() }
}

/// How a key named in a record is shown: its name and prefix, linked to its page; a
/// deleted key links to its audit trail; an invisible one shows only what the record has.
pub fn key_link(id: &KeyId, known: &KnownKey, prefix: Option<&str>) -> Markup {
    html! {
        @match known {
            KnownKey::Live { name, prefix } => {
                a href={ "/keys/" (id) } { (name) } " " span.muted.small { code.prefix { (prefix) "…" } }
            }
            KnownKey::Deleted { name } => {
                a href={ "/audit?key=" (id) } title="This key was deleted: see its audit trail" { (name) }
                " " span.muted.small { "(deleted)" }
            }
            KnownKey::Hidden => {
                span.muted { "a key you cannot see" @if let Some(prefix) = prefix { " (" code.prefix { (prefix) "…" } ")" } }
            }
        }
    }
}

/// Site names by id, for every site the user may see.
pub struct SiteNames(HashMap<SiteId, String>);

impl SiteNames {
    pub fn new(sites: &[Site]) -> Self {
        Self(sites.iter().map(|site| (site.id.clone(), site.name.as_str().to_owned())).collect())
    }

    /// The site's name, "All sites" for Master keys (which belong to none), or a note
    /// that it was deleted.
    pub fn show(&self, site: Option<&SiteId>) -> Markup {
        html! {
            @match site {
                None => span.muted { "All sites (Master)" },
                Some(id) => @match self.0.get(id) {
                    Some(name) => a href={ "/keys?site=" (id) } { (name) },
                    None => span.muted { "a deleted site" },
                },
            }
        }
    }

    pub fn name(&self, site: &SiteId) -> Option<&str> {
        self.0.get(site).map(String::as_str)
    }
}
