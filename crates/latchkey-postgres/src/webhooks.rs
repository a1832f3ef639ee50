//! The outbox, webhook endpoints and deliveries on PostgreSQL (see
//! [`latchkey_store::webhooks`]). Several instances claim deliveries at once: a claim
//! locks its rows with `FOR UPDATE SKIP LOCKED`, so each delivery goes to one instance,
//! and a claim that runs out (its instance died) is taken over by the next one.
//! Events are numbered under an advisory lock, so `seq` follows commit order.

use super::{commit, PostgresStore, Tx};

/// Held from an event's insert to its commit, so events are numbered in commit order: a
/// follower of `GET /events?after=` never passes a number whose event commits later.
/// In the two-integer advisory lock space, like `LAST_MASTER_LOCK` (see `keys.rs`).
const OUTBOX_LOCK: i32 = 0x4c4b_0005;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_core::{AuditEvent, KeyRecord, SiteId};
use latchkey_store::outbox::{OutboxEvent, StoredEvent};
use latchkey_store::rows::{millis, KeyRow, KEY_COLUMNS};
use latchkey_store::webhooks::{
    event_type_pattern, events_column, AttemptRow, ClaimedDelivery, DeliveryAttempt, DeliveryOutcome, EndpointRow,
    EventRow, WebhookEndpoint, WebhookStore, ATTEMPT_COLUMNS, ENDPOINT_COLUMNS, OUTBOX_COLUMNS,
};
use latchkey_store::{Page, StoreError, StoreResult};

/// Writes `event` (if any) with a delivery for every endpoint that wants it, or only for
/// `only_to`, inside `tx`: the transaction of the change it describes. False when an
/// event with its id exists already (nothing is written then).
pub(crate) async fn record(tx: &mut Tx, event: Option<&OutboxEvent>, only_to: Option<&str>) -> StoreResult<bool> {
    let Some(event) = event else {
        return Ok(false);
    };
    sqlx::query("SELECT pg_advisory_xact_lock($1, 0)").bind(OUTBOX_LOCK).execute(&mut **tx).await?;
    let seq: Option<i64> = sqlx::query_scalar(
        "INSERT INTO events (id, type, at, site_id, key_id, data, only_to) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO NOTHING RETURNING seq",
    )
    .bind(&event.id)
    .bind(&event.event_type)
    .bind(millis(event.at))
    .bind(event.site_id.as_ref().map(SiteId::as_str))
    .bind(event.key_id.as_ref().map(|k| k.as_str()))
    .bind(&event.data)
    .bind(only_to)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(seq) = seq else {
        return Ok(false);
    };
    let fan_out = match only_to {
        Some(endpoint) => sqlx::query(
            "INSERT INTO webhook_deliveries (endpoint_id, event_seq, next_attempt_at)
             SELECT id, $1, $2 FROM webhook_endpoints WHERE id = $3",
        )
        .bind(seq)
        .bind(millis(event.at))
        .bind(endpoint),
        // An event of no site (a Master key) goes only to endpoints of all sites.
        None => sqlx::query(
            "INSERT INTO webhook_deliveries (endpoint_id, event_seq, next_attempt_at)
             SELECT id, $1, $2 FROM webhook_endpoints
              WHERE (site_id IS NULL OR site_id = $3) AND (events = '' OR (' ' || events || ' ') LIKE $4)",
        )
        .bind(seq)
        .bind(millis(event.at))
        .bind(event.site_id.as_ref().map(SiteId::as_str))
        .bind(event_type_pattern(&event.event_type)),
    };
    fan_out.execute(&mut **tx).await?;
    Ok(true)
}

/// The attempt columns but `id`, which the database assigns.
fn attempt_columns_without_id() -> &'static str {
    ATTEMPT_COLUMNS.trim_start_matches("id, ")
}

async fn endpoint(executor: &mut sqlx::PgConnection, id: &str) -> StoreResult<Option<WebhookEndpoint>> {
    let row: Option<EndpointRow> =
        sqlx::query_as(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"))
            .bind(id)
            .fetch_optional(executor)
            .await?;
    row.map(EndpointRow::into_endpoint).transpose()
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn create_webhook(&self, endpoint: &WebhookEndpoint, event: &AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        super::insert_event(&mut tx, event).await?;
        let row = EndpointRow::from_endpoint(endpoint);
        sqlx::query(&format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(row.id)
        .bind(row.site_id)
        .bind(row.url)
        .bind(row.description)
        .bind(row.events)
        .bind(row.secret)
        .bind(row.previous_secret)
        .bind(row.previous_secret_expires_at)
        .bind(row.failing_since)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => error.into(),
        })?;
        commit(tx).await
    }

    async fn get_webhook(&self, id: &str) -> StoreResult<Option<WebhookEndpoint>> {
        let mut conn = self.pool.acquire().await.map_err(StoreError::unavailable)?;
        endpoint(&mut conn, id).await
    }

    async fn list_webhooks(&self, site: Option<&SiteId>, page: &Page) -> StoreResult<Vec<WebhookEndpoint>> {
        let rows: Vec<EndpointRow> = sqlx::query_as(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
              WHERE ($1 IS NULL OR site_id = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(site.map(SiteId::as_str))
        .bind(page.after.as_deref())
        .bind(i64::from(page.limit.max(1)))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(EndpointRow::into_endpoint).collect()
    }

    async fn update_webhook(&self, endpoint: &WebhookEndpoint, event: &AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        super::insert_event(&mut tx, event).await?;
        let row = EndpointRow::from_endpoint(endpoint);
        let updated = sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, description = $2, events = $3, secret = $4, previous_secret = $5,
                    previous_secret_expires_at = $6, updated_at = $7 WHERE id = $8",
        )
        .bind(row.url)
        .bind(row.description)
        .bind(events_column(&endpoint.events))
        .bind(row.secret)
        .bind(row.previous_secret)
        .bind(row.previous_secret_expires_at)
        .bind(row.updated_at)
        .bind(row.id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        commit(tx).await
    }

    async fn delete_webhook(&self, id: &str, event: &AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        super::insert_event(&mut tx, event).await?;
        let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        commit(tx).await
    }

    async fn enqueue_event(&self, event: &OutboxEvent, only_to: Option<&str>) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let written = record(&mut tx, Some(event), only_to).await?;
        commit(tx).await.map(|()| written)
    }

    // Each write below is one statement, with no transaction held open across round trips:
    // a worker stopped mid-way (a process exiting, a test ending) leaves no lock behind.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        // Only the oldest pending delivery of each endpoint: the endpoint's order. A row
        // another instance is claiming is skipped; once it commits, its claim excludes the
        // row (PostgreSQL re-checks the condition on the row's newest version).
        let claimed: Vec<(String, i64, i64)> = sqlx::query_as(
            "WITH due AS (
                  SELECT d.endpoint_id, d.event_seq FROM webhook_deliveries d
                   WHERE d.event_seq = (SELECT MIN(h.event_seq) FROM webhook_deliveries h
                                         WHERE h.endpoint_id = d.endpoint_id)
                     AND d.next_attempt_at <= $1 AND (d.claimed_until IS NULL OR d.claimed_until <= $1)
                   ORDER BY d.next_attempt_at LIMIT $3
                   FOR UPDATE OF d SKIP LOCKED)
             UPDATE webhook_deliveries w SET claimed_until = $2 FROM due
              WHERE w.endpoint_id = due.endpoint_id AND w.event_seq = due.event_seq
             RETURNING w.endpoint_id, w.event_seq, w.attempts",
        )
        .bind(millis(now))
        .bind(millis(until))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut deliveries = Vec::with_capacity(claimed.len());
        for (endpoint_id, seq, attempts) in claimed {
            // Deleted since the claim: its deliveries went with it.
            let Some(endpoint) = self.get_webhook(&endpoint_id).await? else { continue };
            let event: EventRow = sqlx::query_as(&format!("SELECT {OUTBOX_COLUMNS} FROM events WHERE seq = $1"))
                .bind(seq)
                .fetch_one(&self.pool)
                .await?;
            let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
            deliveries.push(ClaimedDelivery { endpoint, event: event.into_event()?, attempts });
        }
        Ok(deliveries)
    }

    async fn finish_delivery(
        &self,
        delivery: &ClaimedDelivery,
        attempt: &DeliveryAttempt,
        outcome: DeliveryOutcome,
    ) -> StoreResult<()> {
        let (next_attempt_at, failing, delivered) = match outcome {
            DeliveryOutcome::Delivered => (None, false, true),
            DeliveryOutcome::Retry { at, failing } => (Some(millis(at)), failing, false),
        };
        // The attempt (unless the endpoint is gone), the delivery (done, or rescheduled),
        // and the endpoint's failing mark, in one statement.
        sqlx::query(&format!(
            "WITH attempt AS (
                  INSERT INTO webhook_attempts ({})
                  SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $1)),
              done AS (
                  DELETE FROM webhook_deliveries WHERE $11 AND endpoint_id = $1 AND event_seq = $10),
              retried AS (
                  UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $9, claimed_until = NULL
                   WHERE NOT $11 AND endpoint_id = $1 AND event_seq = $10)
             UPDATE webhook_endpoints
                SET failing_since = CASE WHEN $11 THEN NULL WHEN $12 THEN COALESCE(failing_since, $5)
                                         ELSE failing_since END
              WHERE id = $1",
            attempt_columns_without_id()
        ))
        .bind(delivery.endpoint.id.as_str())
        .bind(&attempt.event_id)
        .bind(&attempt.event_type)
        .bind(i64::from(attempt.attempt))
        .bind(millis(attempt.at))
        .bind(attempt.status_code.map(i64::from))
        .bind(attempt.error.as_deref())
        .bind(i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX))
        .bind(next_attempt_at)
        .bind(delivery.event.seq)
        .bind(delivered)
        .bind(failing)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_attempts(&self, endpoint_id: &str, page: &Page) -> StoreResult<Vec<DeliveryAttempt>> {
        let after: Option<i64> = page.after.as_deref().and_then(|raw| raw.parse().ok());
        let rows: Vec<AttemptRow> = sqlx::query_as(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts
              WHERE endpoint_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(endpoint_id)
        .bind(after)
        .bind(i64::from(page.limit.max(1)))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AttemptRow::into_attempt).collect()
    }

    async fn pending_deliveries(&self, endpoint_id: &str) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1")
            .bind(endpoint_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn events_after(&self, after: i64, site: Option<&SiteId>, limit: u32) -> StoreResult<Vec<StoredEvent>> {
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM events
              WHERE seq > $1 AND only_to IS NULL AND ($2 IS NULL OR site_id = $2) ORDER BY seq LIMIT $3"
        ))
        .bind(after)
        .bind(site.map(SiteId::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(EventRow::into_event).collect()
    }

    async fn keys_expiring(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> StoreResult<Vec<KeyRecord>> {
        let rows: Vec<KeyRow> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM keys WHERE status = 'active' AND expires_at >= $1 AND expires_at < $2"
        ))
        .bind(millis(from))
        .bind(millis(until))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(KeyRow::into_record).collect()
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let pruned = sqlx::query(
            "DELETE FROM events WHERE at < $1
                AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = events.seq)",
        )
        .bind(millis(before))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM webhook_attempts WHERE at < $1").bind(millis(before)).execute(&mut *tx).await?;
        commit(tx).await?;
        Ok(pruned.rows_affected())
    }
}
