//! Webhook endpoints and their deliveries: the records, and [`WebhookStore`], the part
//! of the storage boundary that the delivery worker, the events feed and the reminders use.
//!
//! Delivery is a queue per endpoint. Writing an event (see [`crate::outbox`]) adds one
//! delivery for each endpoint that wants it, in the same transaction. The worker claims
//! only the *oldest* pending delivery of each endpoint (so an endpoint receives its events
//! in order, and a failing one holds its later events back rather than losing them), for a
//! limited time: a claim left by an instance that died is taken over when it runs out.

use crate::outbox::{OutboxEvent, StoredEvent};
use crate::rows::{corrupt, from_millis, millis};
use crate::{Page, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_core::{AuditEvent, KeyId, KeyRecord, SiteId};

/// A registered receiver of events.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// `whk_<ULID>`.
    pub id: String,
    /// The site whose events it receives; `None`: every site's, and Master keys' (only a
    /// Master may register such an endpoint).
    pub site_id: Option<SiteId>,
    pub url: String,
    pub description: Option<String>,
    /// The event types it wants; empty: all of them.
    pub events: Vec<String>,
    /// `whsec_<base64>`: the signing secret. Stored as it is, since signing needs it.
    pub secret: String,
    /// The secret before the last rotation, which keeps signing alongside the new one
    /// until `previous_secret_expires_at`.
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Since when deliveries keep failing; `None` once one succeeds.
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for WebhookEndpoint {
    // Never print a secret, even in a test failure or a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("id", &self.id)
            .field("site_id", &self.site_id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("failing_since", &self.failing_since)
            .finish_non_exhaustive()
    }
}

impl WebhookEndpoint {
    /// Whether the endpoint wants events of this type.
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|wanted| wanted == event_type)
    }

    /// The secrets that sign a delivery at `now`: the current one, and the previous one
    /// during its overlap.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_secret_expires_at) {
            if now < until {
                secrets.push(previous);
            }
        }
        secrets
    }
}

/// The space-separated form of an endpoint's event types, as the backends store it
/// (`''`: all). Matching is `(' ' || events || ' ') LIKE '% type %'` in SQL.
pub fn events_column(events: &[String]) -> String {
    events.join(" ")
}

pub fn events_from_column(column: &str) -> Vec<String> {
    column.split_whitespace().map(str::to_owned).collect()
}

/// A delivery a worker has claimed: the endpoint, the event, and how many attempts
/// came before this one.
#[derive(Clone, Debug)]
pub struct ClaimedDelivery {
    pub endpoint: WebhookEndpoint,
    pub event: StoredEvent,
    pub attempts: u32,
}

/// One attempt to deliver an event, as `GET /webhooks/{id}/deliveries` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// Assigned by the store (the listing's cursor); 0 before it is stored.
    pub id: i64,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub at: DateTime<Utc>,
    /// The receiver's answer, if it answered.
    pub status_code: Option<u16>,
    /// Why it failed, when it did (a status that is not 2xx, a timeout, a refused address).
    pub error: Option<String>,
    pub duration_ms: u64,
    /// When it will be tried again; `None` once delivered.
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// One attempt at a claimed delivery, and what became of the delivery.
#[derive(Clone, Debug)]
pub struct FinishedAttempt {
    pub attempt: DeliveryAttempt,
    pub outcome: DeliveryOutcome,
}

/// What became of a claimed delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Received (2xx): the delivery is done and the endpoint is not failing.
    Delivered,
    /// Try again at `at`; `failing` marks the endpoint as failing (from `now`, unless it
    /// was already).
    Retry { at: DateTime<Utc>, failing: bool },
}

/// What a worker asks of the queue: up to `limit` deliveries due at `now`, held for it
/// until `until` (after which another worker may take them over).
#[derive(Clone, Copy, Debug)]
pub struct Claim {
    pub now: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub limit: u32,
}

/// How deliveries are claimed and finished: the part of [`WebhookStore`] that each SQL
/// backend does its own way (the rest is shared, see [`crate::sql`]).
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Claims up to `claim.limit` deliveries due at `claim.now`, each the oldest pending
    /// one of its endpoint and not claimed by anyone else (or whose claim ran out), until
    /// `claim.until`. With several instances, each delivery is claimed by one.
    async fn claim_deliveries(&self, claim: Claim) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records the attempt and its outcome, and releases the claim.
    async fn finish_delivery(&self, delivery: &ClaimedDelivery, finished: &FinishedAttempt) -> StoreResult<()>;
}

#[async_trait]
pub trait WebhookStore: DeliveryQueue + Send + Sync {
    /// Each change to an endpoint writes its audit event in the same transaction.
    async fn create_webhook(&self, endpoint: &WebhookEndpoint, event: &AuditEvent) -> StoreResult<()>;
    async fn get_webhook(&self, id: &str) -> StoreResult<Option<WebhookEndpoint>>;
    /// Endpoints, newest first; `site`: only the endpoints of that site (not those of all
    /// sites); `None`: every endpoint.
    async fn list_webhooks(&self, site: Option<&SiteId>, page: &Page) -> StoreResult<Vec<WebhookEndpoint>>;
    /// Replaces the endpoint's mutable fields; `NotFound` when it is gone.
    async fn update_webhook(&self, endpoint: &WebhookEndpoint, event: &AuditEvent) -> StoreResult<()>;
    /// Deletes the endpoint with its pending deliveries and attempts; `NotFound` when gone.
    async fn delete_webhook(&self, id: &str, event: &AuditEvent) -> StoreResult<()>;

    /// Writes an event that no audited change carries (reminders, rate limits, credits,
    /// tests), with a delivery for each endpoint that wants it, or only for `only_to`.
    /// Returns false, writing nothing, when an event with this id exists already.
    async fn enqueue_event(&self, event: &OutboxEvent, only_to: Option<&str>) -> StoreResult<bool>;

    /// An endpoint's attempts, newest first (`page.after`: the last attempt id seen).
    async fn list_attempts(&self, endpoint_id: &str, page: &Page) -> StoreResult<Vec<DeliveryAttempt>>;
    /// How many deliveries of this endpoint are still to be made.
    async fn pending_deliveries(&self, endpoint_id: &str) -> StoreResult<u64>;

    /// Events after `after` in outbox order (oldest first), of one site or all;
    /// test events are not in it.
    async fn events_after(&self, after: i64, site: Option<&SiteId>, limit: u32) -> StoreResult<Vec<StoredEvent>>;
    /// Active keys whose expiry falls in `[from, until)`: what the reminders look at.
    async fn keys_expiring(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> StoreResult<Vec<KeyRecord>>;
    /// Deletes events older than `before` that no delivery waits for, and attempts older
    /// than `before`. Returns how many events went.
    async fn prune_events(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

/// The columns of `webhook_endpoints`, in [`EndpointRow`]'s order.
pub const ENDPOINT_COLUMNS: &str = "id, site_id, url, description, events, secret, previous_secret, \
                                    previous_secret_expires_at, failing_since, created_at, updated_at";
/// The columns of `events` as [`EventRow`] reads them.
pub const OUTBOX_COLUMNS: &str = "seq, id, type AS event_type, at, site_id, key_id, data";
/// The columns of `webhook_attempts`, in [`AttemptRow`]'s order.
pub const ATTEMPT_COLUMNS: &str =
    "id, endpoint_id, event_id, event_type, attempt, at, status_code, error, duration_ms, next_retry_at";

#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct EndpointRow {
    pub id: String,
    pub site_id: Option<String>,
    pub url: String,
    pub description: Option<String>,
    pub events: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

fn site_of(raw: Option<String>) -> StoreResult<Option<SiteId>> {
    raw.map(|id| SiteId::parse(&id).ok_or_else(|| corrupt("site id"))).transpose()
}

fn time_of(raw: Option<i64>) -> StoreResult<Option<DateTime<Utc>>> {
    raw.map(from_millis).transpose()
}

impl EndpointRow {
    pub fn from_endpoint(endpoint: &WebhookEndpoint) -> Self {
        Self {
            id: endpoint.id.clone(),
            site_id: endpoint.site_id.as_ref().map(|s| s.as_str().to_owned()),
            url: endpoint.url.clone(),
            description: endpoint.description.clone(),
            events: events_column(&endpoint.events),
            secret: endpoint.secret.clone(),
            previous_secret: endpoint.previous_secret.clone(),
            previous_secret_expires_at: endpoint.previous_secret_expires_at.map(millis),
            failing_since: endpoint.failing_since.map(millis),
            created_at: millis(endpoint.created_at),
            updated_at: millis(endpoint.updated_at),
        }
    }

    pub fn into_endpoint(self) -> StoreResult<WebhookEndpoint> {
        Ok(WebhookEndpoint {
            id: self.id,
            site_id: site_of(self.site_id)?,
            url: self.url,
            description: self.description,
            events: events_from_column(&self.events),
            secret: self.secret,
            previous_secret: self.previous_secret,
            previous_secret_expires_at: time_of(self.previous_secret_expires_at)?,
            failing_since: time_of(self.failing_since)?,
            created_at: from_millis(self.created_at)?,
            updated_at: from_millis(self.updated_at)?,
        })
    }
}

#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct EventRow {
    pub seq: i64,
    pub id: String,
    pub event_type: String,
    pub at: i64,
    pub site_id: Option<String>,
    pub key_id: Option<String>,
    pub data: String,
}

impl EventRow {
    pub fn into_event(self) -> StoreResult<StoredEvent> {
        Ok(StoredEvent {
            seq: self.seq,
            event: OutboxEvent {
                id: self.id,
                event_type: self.event_type,
                at: from_millis(self.at)?,
                site_id: site_of(self.site_id)?,
                key_id: self.key_id.map(|id| KeyId::parse(&id).ok_or_else(|| corrupt("key id"))).transpose()?,
                data: self.data,
            },
        })
    }
}

#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct AttemptRow {
    pub id: i64,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub attempt: i64,
    pub at: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub next_retry_at: Option<i64>,
}

impl AttemptRow {
    pub fn into_attempt(self) -> StoreResult<DeliveryAttempt> {
        Ok(DeliveryAttempt {
            id: self.id,
            endpoint_id: self.endpoint_id,
            event_id: self.event_id,
            event_type: self.event_type,
            attempt: u32::try_from(self.attempt).map_err(corrupt)?,
            at: from_millis(self.at)?,
            status_code: self.status_code.map(|code| u16::try_from(code).map_err(corrupt)).transpose()?,
            error: self.error,
            duration_ms: u64::try_from(self.duration_ms).map_err(corrupt)?,
            next_retry_at: time_of(self.next_retry_at)?,
        })
    }
}

/// The `LIKE` pattern that finds `event_type` in an endpoint's `' ' || events || ' '`.
pub fn event_type_pattern(event_type: &str) -> String {
    format!("% {event_type} %")
}
