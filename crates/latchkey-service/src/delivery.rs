//! The delivery worker: sends due webhook deliveries in the Standard Webhooks format, and
//! schedules retries.
//!
//! * Headers `webhook-id` (the event's id, the same on every attempt), `webhook-timestamp`
//!   (seconds, the attempt's time on the service's clock) and `webhook-signature`
//!   (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per secret that signs, space
//!   separated), so any Standard Webhooks library verifies them.
//! * A 2xx answer delivers; anything else is retried after about 5 s, 1 min, 10 min, 1 h,
//!   6 h, then every 24 h, each ±10 % at random so that receivers coming back are not
//!   hit by every sender at once. Times come from the service's `Clock`: tests move a
//!   `ManualClock` instead of waiting. After [`FAILING_AFTER_ATTEMPTS`] failures in a row
//!   the endpoint is marked failing; its events wait, none is dropped.
//! * Each claim holds a delivery for `claim_timeout`: if this instance dies, another one
//!   (or this one restarted) sends it then. Delivery is therefore at least once; receivers
//!   de-duplicate on `webhook-id`.
//! * Redirects are not followed, and names are resolved through [`PublicOnly`], so a
//!   receiver cannot bounce the server to an internal address.

use crate::error::ServiceResult;
use crate::webhooks::{is_public, WebhookConfig};
use crate::Service;
use base64::Engine;
use chrono::{DateTime, Duration as TimeDelta, Utc};
use hmac::{Hmac, Mac};
use latchkey_store::webhooks::{Claim, ClaimedDelivery, DeliveryAttempt, DeliveryOutcome, FinishedAttempt};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Seconds before each retry: after the 1st failed attempt, the 2nd, …; the last repeats.
pub const RETRY_SCHEDULE_SECONDS: [i64; 6] = [5, 60, 600, 3600, 6 * 3600, 24 * 3600];
/// Failed attempts in a row after which an endpoint is shown as failing.
pub const FAILING_AFTER_ATTEMPTS: u32 = 3;
/// Deliveries claimed per round (each to a different endpoint).
const CLAIM_BATCH: u32 = 32;
/// How much of a receiver's error answer is kept in the delivery log.
const MAX_ERROR_CHARS: usize = 200;

/// The Standard Webhooks signature header for one event: `v1,<sig>` per secret.
pub fn signature_header(secrets: &[&str], id: &str, timestamp: i64, body: &str) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    secrets
        .iter()
        .filter_map(|secret| engine.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).ok())
        .map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
            mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
            format!("v1,{}", engine.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// When to try again after `failed_attempts` failures in a row, at `now`.
pub fn next_attempt_at(failed_attempts: u32, now: DateTime<Utc>) -> DateTime<Utc> {
    let index = (failed_attempts.max(1) as usize - 1).min(RETRY_SCHEDULE_SECONDS.len() - 1);
    let base_ms = RETRY_SCHEDULE_SECONDS[index] * 1000;
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("the OS random number generator works");
    // Uniform in [-10 %, +10 %].
    let jitter = (f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX)) * 0.2 - 0.1;
    now + TimeDelta::milliseconds(base_ms + (base_ms as f64 * jitter) as i64)
}

/// Resolves names to public addresses only (unless private ones are allowed), so that a
/// name pointing at an internal address (or re-pointed after it was registered) is refused.
pub(crate) struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.filter(|address| is_public(address.ip())).collect();
            if addresses.is_empty() {
                let refused = std::io::Error::other(format!("{host} resolves to no public address"));
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client deliveries go out with.
pub(crate) fn http_client(config: &WebhookConfig) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Latchkey-Webhooks/", env!("CARGO_PKG_VERSION")));
    if !config.allow_private_targets {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder.build().expect("the webhook HTTP client builds")
}

impl Service {
    /// Claims the deliveries due now and sends them, one per endpoint, concurrently;
    /// returns how many were attempted. The worker calls this every `poll_interval`.
    pub async fn deliver_due_webhooks(&self) -> ServiceResult<usize> {
        let now = self.now();
        let hold = TimeDelta::from_std(self.webhook_config.claim_timeout).unwrap_or(TimeDelta::seconds(60));
        let claimed =
            self.store.webhooks().claim_deliveries(Claim { now, until: now + hold, limit: CLAIM_BATCH }).await?;
        let count = claimed.len();
        let mut sends = tokio::task::JoinSet::new();
        for delivery in claimed {
            let service = self.clone();
            sends.spawn(async move { service.deliver(delivery).await });
        }
        while let Some(sent) = sends.join_next().await {
            if let Ok(Err(error)) = sent {
                tracing::warn!(%error, "could not record a webhook delivery; it will be retried after its claim runs out");
            }
        }
        Ok(count)
    }

    async fn deliver(&self, delivery: ClaimedDelivery) -> ServiceResult<()> {
        let event = &delivery.event.event;
        let body = event.body();
        let now = self.now();
        let timestamp = now.timestamp();
        let signature = signature_header(&delivery.endpoint.signing_secrets(now), &event.id, timestamp, &body);
        let started = Instant::now();
        let answer = self
            .webhook_client
            .post(&delivery.endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status_code, error) = match answer {
            Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
            Ok(response) => (Some(response.status().as_u16()), Some(format!("answered {}", response.status()))),
            Err(error) => (None, Some(describe(&error))),
        };
        let attempt_number = delivery.attempts + 1;
        let finished = self.now();
        let outcome = match &error {
            None => DeliveryOutcome::Delivered,
            Some(_) => DeliveryOutcome::Retry {
                at: next_attempt_at(attempt_number, finished),
                failing: attempt_number >= FAILING_AFTER_ATTEMPTS,
            },
        };
        if let Some(error) = &error {
            tracing::info!(webhook_id = %delivery.endpoint.id, event_id = %event.id, attempt = attempt_number, %error,
                "webhook delivery failed; will retry");
        }
        let attempt = DeliveryAttempt {
            id: 0,
            endpoint_id: delivery.endpoint.id.clone(),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            attempt: attempt_number,
            at: now,
            status_code,
            error,
            duration_ms,
            next_retry_at: match outcome {
                DeliveryOutcome::Retry { at, .. } => Some(at),
                DeliveryOutcome::Delivered => None,
            },
        };
        Ok(self.store.webhooks().finish_delivery(&delivery, &FinishedAttempt { attempt, outcome }).await?)
    }

    /// Runs the worker until `stopped` says so: deliveries every `poll_interval`, and
    /// about once a minute (by the service's clock) the reminders and the outbox's pruning.
    pub async fn run_webhook_worker(self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.webhook_config.poll_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping_due = self.now();
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped.changed() => return,
            }
            let now = self.now();
            if now >= housekeeping_due {
                // Due again a minute after the time it ran for (not after it finished), so
                // a clock that moved meanwhile is looked at on the next tick.
                housekeeping_due = now + TimeDelta::seconds(60);
                self.recent_alerts.prune(now.timestamp());
                if let Err(error) = self.send_reminders().await {
                    tracing::warn!(%error, "could not queue key reminders; will retry");
                }
                if let Err(error) = self.prune_outbox().await {
                    tracing::warn!(%error, "could not prune delivered events; will retry");
                }
            }
            if let Err(error) = self.deliver_due_webhooks().await {
                tracing::warn!(%error, "could not claim webhook deliveries; will retry");
            }
        }
    }

    async fn prune_outbox(&self) -> ServiceResult<()> {
        let retention = TimeDelta::from_std(self.webhook_config.retention).unwrap_or(TimeDelta::days(7));
        self.store.webhooks().prune_events(self.now() - retention).await?;
        Ok(())
    }
}

/// A delivery error in a few words, without the URL's query (which may hold a token).
fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    let text = if detail.is_empty() { what } else { format!("{what}: {detail}") };
    text.chars().take(MAX_ERROR_CHARS).collect()
}
