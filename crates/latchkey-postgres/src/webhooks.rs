//! How PostgreSQL claims and finishes webhook deliveries, and writes events; the rest of
//! the webhook tables is shared with SQLite ([`latchkey_store::sql`]). Several instances
//! claim deliveries at once: a claim locks its rows with `FOR UPDATE SKIP LOCKED`, so each
//! delivery goes to one instance, and a claim that runs out (its instance died) is taken
//! over by the next one. Events are numbered under an advisory lock, so `seq` follows
//! commit order.

use super::PostgresStore;
use async_trait::async_trait;
use latchkey_store::rows::millis;
use latchkey_store::sql::{attempt_insert, claimed_delivery};
use latchkey_store::webhooks::{Claim, ClaimedDelivery, DeliveryOutcome, DeliveryQueue, FinishedAttempt, WebhookStore};
use latchkey_store::StoreResult;

#[async_trait]
impl DeliveryQueue for PostgresStore {
    // Each write below is one statement, with no transaction held open across round trips:
    // a worker stopped mid-way (a process exiting, a test ending) leaves no lock behind.
    async fn claim_deliveries(&self, claim: Claim) -> StoreResult<Vec<ClaimedDelivery>> {
        let Claim { now, until, limit } = claim;
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
            deliveries.push(claimed_delivery(&self.pool, endpoint, seq, attempts).await?);
        }
        Ok(deliveries)
    }

    async fn finish_delivery(&self, delivery: &ClaimedDelivery, finished: &FinishedAttempt) -> StoreResult<()> {
        let FinishedAttempt { attempt, outcome } = finished;
        let outcome = *outcome;
        // The attempt (unless the endpoint is gone), the delivery (done, or rescheduled),
        // and the endpoint's failing mark, in one statement: PostgreSQL runs every
        // data-modifying `WITH` part once, whatever the main statement does.
        let (endpoint, seq) = (delivery.endpoint.id.as_str(), delivery.event.seq);
        let finish = attempt_insert(attempt);
        // The attempt's insert becomes the first part of a `WITH`.
        let mut statement = latchkey_store::sql::Statement::new("WITH attempt AS (");
        statement.append(finish);
        match outcome {
            DeliveryOutcome::Delivered => {
                statement
                    .push("), done AS (DELETE FROM webhook_deliveries WHERE endpoint_id = ")
                    .text(endpoint.to_owned());
                statement.push(" AND event_seq = ").integer(seq);
                statement
                    .push(") UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ")
                    .text(endpoint.to_owned());
            }
            DeliveryOutcome::Retry { at, failing } => {
                statement
                    .push("), retried AS (UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ");
                statement
                    .integer(millis(at))
                    .push(", claimed_until = NULL WHERE endpoint_id = ")
                    .text(endpoint.to_owned());
                statement.push(" AND event_seq = ").integer(seq);
                statement.push(") UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, ");
                statement.integer(millis(attempt.at)).push(") WHERE id = ").text(endpoint.to_owned());
                statement.push(if failing { "" } else { " AND FALSE" });
            }
        }
        statement.execute(&self.pool).await?;
        Ok(())
    }
}
