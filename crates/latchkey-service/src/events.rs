//! Events that no audited change carries, and the feed of all events.
//!
//! * `key.rate_limited` and `key.usage_exceeded` come from verification. At most one per
//!   key and window (the key's rate-limit window; an hour for credits), so a flood of
//!   refused requests is one event, not a webhook flood: this instance remembers what it
//!   sent, and the event's id names the window, so other instances' copies are not stored.
//!   Written off the request's path: verification never waits for it.
//! * `key.expiring` (7 days and 1 day before `expires_at`) and `key.expired` come from
//!   one scheduler ([`Service::send_reminders`]). Each reminder's id names the key, the
//!   reminder and the expiry, so every instance may run it and each is stored once; it
//!   looks at every key in the window, so it catches up after downtime.
//! * `GET /events?after=` follows the outbox ([`Events::follow`]).

use crate::cache::VerifiedKey;
use crate::error::ServiceResult;
use crate::Service;
use chrono::{DateTime, Duration as TimeDelta, Utc};
use dashmap::DashMap;
use latchkey_core::{Caller, KeyRecord, RateLimit};
use latchkey_store::outbox::{OutboxEvent, StoredEvent};
use serde_json::json;
use std::time::{Duration, Instant};

/// The longest a follower may wait for new events in one call.
pub const MAX_FOLLOW_WAIT: Duration = Duration::from_secs(30);
/// Events per answer of the feed.
pub const FOLLOW_BATCH: u32 = 100;
/// How often a waiting follower looks again (other instances write too).
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Expired keys this recent still get their `key.expired` (after downtime, say).
const EXPIRED_LOOKBACK_DAYS: i64 = 30;
/// The window of `key.usage_exceeded`: one per key per hour.
const USAGE_EXCEEDED_WINDOW_SECONDS: i64 = 3600;

/// What this instance has already queued, per key and kind: the window (its number, and
/// when it ends, in seconds) of the last event.
#[derive(Default)]
pub(crate) struct RecentAlerts(DashMap<(ulid::Ulid, &'static str), (i64, i64)>);

impl RecentAlerts {
    /// True the first time for this key, kind and window.
    fn first(&self, key: ulid::Ulid, kind: &'static str, window: i64, ends: i64) -> bool {
        let previous = self.0.insert((key, kind), (window, ends));
        previous.map(|(number, _)| number) != Some(window)
    }

    /// Forgets windows that have ended.
    pub(crate) fn prune(&self, now_seconds: i64) {
        self.0.retain(|_, (_, ends)| *ends > now_seconds);
    }
}

/// One page of the feed, and the cursor to ask for the next.
#[derive(Clone, Debug)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    pub next_after: String,
}

/// The feed; reached through [`Service::events`].
pub struct Events<'a> {
    pub(crate) service: &'a Service,
}

impl Events<'_> {
    /// The events after the cursor that the caller may see (an Admin: its site's; a
    /// Master: all), oldest first. When there are none yet, waits up to `wait` (at most
    /// 30 s) for some.
    pub async fn follow(&self, caller: &Caller, after: Option<&str>, wait: Duration) -> ServiceResult<EventPage> {
        let site = caller.listing_scope(None)?;
        let after = match after {
            None => 0,
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|seq| *seq >= 0)
                .ok_or_else(|| crate::ServiceError::invalid("after must be a cursor that this feed gave"))?,
        };
        let deadline = Instant::now() + wait.min(MAX_FOLLOW_WAIT);
        loop {
            let events = self.service.store.webhooks().events_after(after, site.as_ref(), FOLLOW_BATCH).await?;
            if !events.is_empty() || Instant::now() >= deadline {
                let next_after = events.last().map_or(after, |event| event.seq).to_string();
                return Ok(EventPage { events, next_after });
            }
            tokio::time::sleep(FOLLOW_POLL.min(deadline - Instant::now())).await;
        }
    }
}

impl Service {
    pub fn events(&self) -> Events<'_> {
        Events { service: self }
    }

    /// A key was refused for its rate limit: `key.rate_limited`, once per window.
    pub(crate) fn key_rate_limited(&self, key: &VerifiedKey, limit: RateLimit, now: DateTime<Utc>) {
        let length = i64::from(limit.window_seconds.max(1));
        let extra = json!({ "limit": limit.limit, "window_seconds": limit.window_seconds });
        self.alert_once(key, "key.rate_limited", length, extra, now);
    }

    /// A key's credits could not cover a request: `key.usage_exceeded`, once an hour.
    pub(crate) fn key_usage_exceeded(&self, key: &VerifiedKey, now: DateTime<Utc>) {
        self.alert_once(key, "key.usage_exceeded", USAGE_EXCEEDED_WINDOW_SECONDS, json!({}), now);
    }

    fn alert_once(
        &self,
        key: &VerifiedKey,
        kind: &'static str,
        length: i64,
        extra: serde_json::Value,
        at: DateTime<Utc>,
    ) {
        let window = at.timestamp().div_euclid(length);
        if !self.recent_alerts.first(key.ulid(), kind, window, (window + 1) * length) {
            return;
        }
        let (service, id) = (self.clone(), key.id());
        tokio::spawn(async move {
            let written = async {
                let Some(record) = service.store.get_key(&id).await? else {
                    return Ok(());
                };
                let event_id = format!("evt_{}_{}_{window}", kind.trim_start_matches("key."), id.ulid());
                let event = OutboxEvent::about_key(event_id, kind, at, &record, extra);
                service.store.webhooks().enqueue_event(&event, None).await.map(|_| ())
            };
            if let Err(error) = written.await {
                tracing::warn!(%error, event = kind, "could not queue an event");
            }
        });
    }

    /// Queues the expiry reminders due now: `key.expiring` 7 days and 1 day before a
    /// key's expiry, and `key.expired` after it, each once per key and expiry.
    pub async fn send_reminders(&self) -> ServiceResult<usize> {
        let now = self.now();
        let webhooks = self.store.webhooks();
        let mut queued = 0;
        for key in webhooks.keys_expiring(now, now + TimeDelta::days(7)).await? {
            let Some(expiry) = key.expires_at else { continue };
            let days = if expiry - now <= TimeDelta::days(1) { 1 } else { 7 };
            let id = reminder_id(&format!("expiring{days}d"), &key, expiry);
            let event = OutboxEvent::about_key(id, "key.expiring", now, &key, json!({ "days_left": days }));
            queued += usize::from(webhooks.enqueue_event(&event, None).await?);
        }
        for key in webhooks.keys_expiring(now - TimeDelta::days(EXPIRED_LOOKBACK_DAYS), now).await? {
            let Some(expiry) = key.expires_at else { continue };
            let event =
                OutboxEvent::about_key(reminder_id("expired", &key, expiry), "key.expired", now, &key, json!({}));
            queued += usize::from(webhooks.enqueue_event(&event, None).await?);
        }
        Ok(queued)
    }
}

/// The same reminder of the same key and expiry always has the same id, so it is stored
/// once however many instances (or restarts) queue it.
fn reminder_id(reminder: &str, key: &KeyRecord, expiry: DateTime<Utc>) -> String {
    format!("evt_{reminder}_{}_{}", key.id.ulid(), expiry.timestamp_millis())
}
