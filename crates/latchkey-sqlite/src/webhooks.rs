//! How SQLite claims and finishes webhook deliveries, and writes events; the rest of the
//! webhook tables is shared with PostgreSQL ([`latchkey_store::sql`]). Every write runs on
//! the one writer connection, so a claim is exact without row locks: nothing else writes
//! between its read and its update.

use super::{commit, SqliteStore};
use async_trait::async_trait;
use latchkey_store::rows::millis;
use latchkey_store::sql::{attempt_insert, claimed_delivery, select_endpoint};
use latchkey_store::webhooks::{Claim, ClaimedDelivery, DeliveryOutcome, DeliveryQueue, EndpointRow, FinishedAttempt};
use latchkey_store::{StoreError, StoreResult};

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn claim_deliveries(&self, claim: Claim) -> StoreResult<Vec<ClaimedDelivery>> {
        let Claim { now, until, limit } = claim;
        let mut tx = self.begin().await?;
        // Only the oldest pending delivery of each endpoint: the endpoint's order.
        let claimed: Vec<(String, i64, i64)> = sqlx::query_as(
            "UPDATE webhook_deliveries SET claimed_until = ?2
              WHERE (endpoint_id, event_seq) IN (
                    SELECT d.endpoint_id, d.event_seq FROM webhook_deliveries d
                     WHERE d.event_seq = (SELECT MIN(h.event_seq) FROM webhook_deliveries h
                                           WHERE h.endpoint_id = d.endpoint_id)
                       AND d.next_attempt_at <= ?1 AND (d.claimed_until IS NULL OR d.claimed_until <= ?1)
                     ORDER BY d.next_attempt_at LIMIT ?3)
              RETURNING endpoint_id, event_seq, attempts",
        )
        .bind(millis(now))
        .bind(millis(until))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut deliveries = Vec::with_capacity(claimed.len());
        for (endpoint_id, seq, attempts) in claimed {
            let endpoint: Option<EndpointRow> =
                select_endpoint(&endpoint_id).fetch_all(&mut *tx).await?.into_iter().next();
            let endpoint = endpoint.ok_or(StoreError::NotFound)?.into_endpoint()?;
            deliveries.push(claimed_delivery(&mut *tx, endpoint, seq, attempts).await?);
        }
        commit(tx).await?;
        Ok(deliveries)
    }

    async fn finish_delivery(&self, delivery: &ClaimedDelivery, finished: &FinishedAttempt) -> StoreResult<()> {
        let FinishedAttempt { attempt, outcome } = finished;
        let outcome = *outcome;
        let (endpoint, seq) = (delivery.endpoint.id.as_str(), delivery.event.seq);
        let mut tx = self.begin().await?;
        attempt_insert(attempt).execute(&mut *tx).await?;
        match outcome {
            DeliveryOutcome::Delivered => {
                sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = ? AND event_seq = ?")
                    .bind(endpoint)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ?")
                    .bind(endpoint)
                    .execute(&mut *tx)
                    .await?;
            }
            DeliveryOutcome::Retry { at, failing } => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?, claimed_until = NULL
                      WHERE endpoint_id = ? AND event_seq = ?",
                )
                .bind(millis(at))
                .bind(endpoint)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
                if failing {
                    sqlx::query("UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, ?) WHERE id = ?")
                        .bind(millis(attempt.at))
                        .bind(endpoint)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        commit(tx).await
    }
}
