//! Webhook endpoints: register, list, look at, edit, delete, rotate the signing secret,
//! send a test event, list delivery attempts. An Admin manages its own site's endpoints; a
//! Master those of any site, and endpoints of all sites (no `site_id`), which also receive
//! Master keys' events. Endpoints the caller may not manage are `NotFound`.
//!
//! A URL must be `http(s)`. Unless the operator allows it (`--webhook-allow-private`), it
//! may not point at a loopback, private, link-local or otherwise internal address, checked
//! here for literal addresses and again at every delivery for resolved names
//! (`delivery.rs`): otherwise a webhook is a way to make the server request internal
//! services (server-side request forgery).

use crate::error::{ServiceError, ServiceResult};
use crate::listing::{PageRequest, Paged};
use crate::Service;
use base64::Engine;
use chrono::Duration as TimeDelta;
use latchkey_core::{AuditAction, AuditChange, AuditEvent, Caller, SiteId};
use latchkey_store::outbox::{OutboxEvent, EVENT_TYPES, TEST_EVENT_TYPE};
use latchkey_store::webhooks::{DeliveryAttempt, WebhookEndpoint};
use latchkey_store::{truncate_to_millis, StoreError};
use serde_json::json;
use std::net::IpAddr;
use std::time::Duration;

/// How long the secret before a rotation keeps signing alongside the new one.
pub const SECRET_OVERLAP_HOURS: i64 = 24;
pub const MAX_URL_CHARS: usize = 2000;
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// What the webhooks need to be told; part of [`crate::ServiceConfig`].
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Allow endpoints on loopback, private and link-local addresses (`--webhook-allow-private`).
    pub allow_private_targets: bool,
    /// How often the delivery worker looks for due deliveries.
    pub poll_interval: Duration,
    /// How long a claimed delivery is held before another instance may take it over.
    pub claim_timeout: Duration,
    /// How long a receiver has to answer one delivery.
    pub request_timeout: Duration,
    /// How long delivered events (and attempts) are kept, for `GET /events` and the log.
    pub retention: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            poll_interval: Duration::from_secs(1),
            claim_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 86_400),
        }
    }
}

/// A signing secret, `whsec_<base64>`: shown once, when made. `Debug` never shows it.
pub struct WebhookSecret(String);

impl WebhookSecret {
    fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random number generator works");
        Self(format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// A new endpoint, as a front-end asks for it.
#[derive(Clone, Debug, Default)]
pub struct NewWebhook {
    pub url: String,
    /// `None`: the caller's own site for an Admin, every site for a Master.
    pub site_id: Option<SiteId>,
    /// `None`: every event type.
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
}

/// A change of an endpoint; `None` keeps a field.
#[derive(Clone, Debug, Default)]
pub struct WebhookEdit {
    pub url: Option<String>,
    /// `Some(None)`: every event type again.
    pub events: Option<Option<Vec<String>>>,
    /// `Some(None)`: no description.
    pub description: Option<Option<String>>,
}

/// The webhook operations; reached through [`Service::webhooks`].
pub struct Webhooks<'a> {
    pub(crate) service: &'a Service,
}

impl Webhooks<'_> {
    /// Registers an endpoint and returns it with its signing secret, shown this once.
    pub async fn create(&self, caller: &Caller, spec: NewWebhook) -> ServiceResult<(WebhookEndpoint, WebhookSecret)> {
        let site_id = caller.listing_scope(spec.site_id.as_ref())?;
        let now = truncate_to_millis(self.service.now());
        let secret = WebhookSecret::generate();
        let endpoint = WebhookEndpoint {
            id: format!("whk_{}", ulid::Ulid::new()),
            site_id,
            url: self.checked_url(&spec.url)?,
            description: checked_description(spec.description)?,
            events: checked_events(spec.events)?,
            secret: secret.expose().to_owned(),
            previous_secret: None,
            previous_secret_expires_at: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
        };
        let event = audit_event(caller, AuditAction::WebhookCreated, &endpoint, now, None);
        self.service.store.webhooks().create_webhook(&endpoint, &event).await.map_err(|error| match error {
            StoreError::NotFound => ServiceError::NotFound("site"),
            other => other.into(),
        })?;
        tracing::info!(webhook_id = %endpoint.id, url = %endpoint.url, actor = ?caller.actor.key_id, "webhook created");
        Ok((endpoint, secret))
    }

    /// Endpoints the caller may manage, newest first (`site`: only that site's).
    pub async fn list(
        &self,
        caller: &Caller,
        site: Option<SiteId>,
        page: &PageRequest,
    ) -> ServiceResult<Paged<WebhookEndpoint>> {
        let site = caller.listing_scope(site.as_ref())?;
        let (store_page, limit) = page.to_store_page()?;
        let endpoints = self.service.store.webhooks().list_webhooks(site.as_ref(), &store_page).await?;
        Ok(Paged::cut(endpoints, limit, |endpoint| endpoint.id.clone()))
    }

    /// An endpoint the caller may manage; others are `NotFound`, as if they did not exist.
    pub async fn get(&self, caller: &Caller, id: &str) -> ServiceResult<WebhookEndpoint> {
        caller.may_manage_keys()?;
        let endpoint = self.service.store.webhooks().get_webhook(id).await?.ok_or(ServiceError::NotFound("webhook"))?;
        // An Admin sees its own site's endpoints only, not those of all sites.
        match caller.listing_scope(endpoint.site_id.as_ref()) {
            Ok(scope) if scope == endpoint.site_id => Ok(endpoint),
            _ => Err(ServiceError::NotFound("webhook")),
        }
    }

    pub async fn edit(&self, caller: &Caller, id: &str, edit: WebhookEdit) -> ServiceResult<WebhookEndpoint> {
        let mut endpoint = self.get(caller, id).await?;
        let before = endpoint.clone();
        if let Some(url) = &edit.url {
            endpoint.url = self.checked_url(url)?;
        }
        if let Some(events) = edit.events {
            endpoint.events = checked_events(events)?;
        }
        if let Some(description) = edit.description {
            endpoint.description = checked_description(description)?;
        }
        endpoint.updated_at = truncate_to_millis(self.service.now());
        let event = audit_event(caller, AuditAction::WebhookUpdated, &endpoint, endpoint.updated_at, Some(&before));
        self.service.store.webhooks().update_webhook(&endpoint, &event).await?;
        tracing::info!(webhook_id = %endpoint.id, url = %endpoint.url, actor = ?caller.actor.key_id, "webhook updated");
        Ok(endpoint)
    }

    /// Deletes the endpoint; its pending deliveries go with it.
    pub async fn delete(&self, caller: &Caller, id: &str) -> ServiceResult<WebhookEndpoint> {
        let endpoint = self.get(caller, id).await?;
        let now = truncate_to_millis(self.service.now());
        let event = audit_event(caller, AuditAction::WebhookDeleted, &endpoint, now, None);
        self.service.store.webhooks().delete_webhook(&endpoint.id, &event).await?;
        tracing::info!(webhook_id = %endpoint.id, actor = ?caller.actor.key_id, "webhook deleted");
        Ok(endpoint)
    }

    /// A new signing secret, shown once; the old one keeps signing alongside it for 24 h
    /// (Standard Webhooks receivers accept any of the signatures), so receivers can
    /// switch without losing a delivery.
    pub async fn rotate_secret(&self, caller: &Caller, id: &str) -> ServiceResult<(WebhookEndpoint, WebhookSecret)> {
        let mut endpoint = self.get(caller, id).await?;
        let now = truncate_to_millis(self.service.now());
        let secret = WebhookSecret::generate();
        endpoint.previous_secret = Some(std::mem::replace(&mut endpoint.secret, secret.expose().to_owned()));
        endpoint.previous_secret_expires_at = Some(now + TimeDelta::hours(SECRET_OVERLAP_HOURS));
        endpoint.updated_at = now;
        let event = audit_event(caller, AuditAction::WebhookSecretRotated, &endpoint, now, None);
        self.service.store.webhooks().update_webhook(&endpoint, &event).await?;
        tracing::info!(webhook_id = %endpoint.id, actor = ?caller.actor.key_id, "webhook secret rotated");
        Ok((endpoint, secret))
    }

    /// Queues a `webhook.test` event for this endpoint only; returns the event's id.
    pub async fn test(&self, caller: &Caller, id: &str) -> ServiceResult<String> {
        let endpoint = self.get(caller, id).await?;
        let now = truncate_to_millis(self.service.now());
        let event = OutboxEvent {
            id: format!("evt_{}", ulid::Ulid::new()),
            event_type: TEST_EVENT_TYPE.to_owned(),
            at: now,
            site_id: endpoint.site_id.clone(),
            key_id: None,
            data: json!({ "webhook_id": endpoint.id }).to_string(),
        };
        self.service.store.webhooks().enqueue_event(&event, Some(&endpoint.id)).await?;
        Ok(event.id)
    }

    /// The endpoint's delivery attempts, newest first, and how many deliveries wait.
    pub async fn deliveries(
        &self,
        caller: &Caller,
        id: &str,
        page: &PageRequest,
    ) -> ServiceResult<(Paged<DeliveryAttempt>, u64)> {
        let endpoint = self.get(caller, id).await?;
        if page.cursor.as_deref().is_some_and(|cursor| cursor.parse::<i64>().is_err()) {
            return Err(ServiceError::invalid("cursor is not one this listing gave"));
        }
        let (store_page, limit) = page.to_store_page()?;
        let webhooks = self.service.store.webhooks();
        let attempts = webhooks.list_attempts(&endpoint.id, &store_page).await?;
        let pending = webhooks.pending_deliveries(&endpoint.id).await?;
        Ok((Paged::cut(attempts, limit, |attempt| attempt.id.to_string()), pending))
    }

    /// How many deliveries wait for the endpoint (those of a failing one pile up).
    pub async fn waiting(&self, caller: &Caller, id: &str) -> ServiceResult<u64> {
        let endpoint = self.get(caller, id).await?;
        Ok(self.service.store.webhooks().pending_deliveries(&endpoint.id).await?)
    }

    fn checked_url(&self, raw: &str) -> ServiceResult<String> {
        let raw = raw.trim();
        if raw.is_empty() || raw.chars().count() > MAX_URL_CHARS {
            return Err(ServiceError::invalid(format!("url must be 1 to {MAX_URL_CHARS} characters")));
        }
        let url = reqwest::Url::parse(raw).map_err(|_| ServiceError::invalid("url is not a valid URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ServiceError::invalid("url must be http or https"));
        }
        let host = url.host().ok_or_else(|| ServiceError::invalid("url must name a host"))?;
        if !self.service.webhook_config.allow_private_targets {
            let internal = match host {
                url::Host::Ipv4(ip) => !is_public(IpAddr::V4(ip)),
                url::Host::Ipv6(ip) => !is_public(IpAddr::V6(ip)),
                url::Host::Domain(name) => {
                    let name = name.trim_end_matches('.').to_ascii_lowercase();
                    name == "localhost" || name.ends_with(".localhost") || name.ends_with(".internal")
                }
            };
            if internal {
                return Err(ServiceError::invalid(
                    "url points at a loopback, private or internal address; the operator can allow that with \
                     --webhook-allow-private",
                ));
            }
        }
        Ok(url.to_string())
    }
}

fn checked_description(description: Option<String>) -> ServiceResult<Option<String>> {
    match description {
        Some(text) if text.chars().count() > MAX_DESCRIPTION_CHARS => {
            Err(ServiceError::invalid(format!("description must be at most {MAX_DESCRIPTION_CHARS} characters")))
        }
        other => Ok(other),
    }
}

fn checked_events(events: Option<Vec<String>>) -> ServiceResult<Vec<String>> {
    let Some(mut events) = events else {
        return Ok(Vec::new());
    };
    if events.is_empty() {
        return Err(ServiceError::invalid("events must name at least one event type; omit it for all"));
    }
    if let Some(unknown) = events.iter().find(|event| !EVENT_TYPES.contains(&event.as_str())) {
        return Err(ServiceError::invalid(format!(
            "events: {unknown:?} is not an event type; known: {}",
            EVENT_TYPES.join(", ")
        )));
    }
    events.sort();
    events.dedup();
    Ok(events)
}

/// Whether an address is on the public internet: not loopback, private, link-local,
/// shared (CGNAT), documentation, multicast, unspecified, or an IPv6 form of those.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// The audit record of a change to an endpoint: which one, where it delivers, and (for an
/// edit) what changed. Never its secret.
fn audit_event(
    caller: &Caller,
    action: AuditAction,
    endpoint: &WebhookEndpoint,
    at: chrono::DateTime<chrono::Utc>,
    before: Option<&WebhookEndpoint>,
) -> AuditEvent {
    let shown = |endpoint: &WebhookEndpoint| {
        [
            ("url", Some(endpoint.url.clone())),
            ("events", Some(if endpoint.events.is_empty() { "all".to_owned() } else { endpoint.events.join(" ") })),
            ("description", endpoint.description.clone()),
        ]
    };
    let mut changes = vec![AuditChange { field: "webhook".into(), before: None, after: Some(endpoint.id.clone()) }];
    let after = shown(endpoint);
    match before.map(shown) {
        Some(before) => changes.extend(
            before.into_iter().zip(after).filter(|(b, a)| b.1 != a.1).map(|((field, b), (_, a))| AuditChange {
                field: field.into(),
                before: b,
                after: a,
            }),
        ),
        None if action == AuditAction::WebhookCreated => {
            changes.extend(after.into_iter().filter(|(_, value)| value.is_some()).map(|(field, value)| AuditChange {
                field: field.into(),
                before: None,
                after: value,
            }))
        }
        None => {}
    }
    let mut event = AuditEvent::new(&caller.actor, action, at).with_changes(changes);
    event.site_id = endpoint.site_id.clone();
    event
}
