//! Webhook endpoints, the outbox and the delivery log on either SQL engine. Two things
//! differ between the engines: how a delivery is claimed and finished, which each backend
//! implements as its [`DeliveryQueue`] (SQLite's single writer makes a claim exact;
//! PostgreSQL's instances share the table, so a claim locks rows and skips locked ones),
//! and what numbers events in commit order ([`SqlEngine::EVENT_ORDER_LOCK`]).

use super::{SqlEngine, Statement};
use crate::outbox::{OutboxEvent, StoredEvent};
use crate::rows::{millis, AuditRow, BindsColumns, KeyRow, KEY_COLUMNS};
use crate::webhooks::{
    event_type_pattern, AttemptRow, ClaimedDelivery, DeliveryAttempt, DeliveryQueue, EndpointRow, EventRow,
    WebhookEndpoint, WebhookStore, ATTEMPT_COLUMNS, ENDPOINT_COLUMNS, OUTBOX_COLUMNS,
};
use crate::{Page, StoreError, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_core::{AuditEvent, KeyRecord, SiteId};
use sqlx::{Database, Executor, FromRow, IntoArguments};

/// `SELECT` of one endpoint by id.
pub fn select_endpoint(id: &str) -> Statement {
    let mut select = Statement::new(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = "));
    select.text(id.to_owned());
    select
}

/// `SELECT` of one event by its number.
pub fn select_event(seq: i64) -> Statement {
    let mut select = Statement::new(&format!("SELECT {OUTBOX_COLUMNS} FROM events WHERE seq = "));
    select.integer(seq);
    select
}

/// A claimed delivery of event `seq` to `endpoint`, with the event read on `executor`.
pub async fn claimed_delivery<'c, DB, E>(
    executor: E,
    endpoint: WebhookEndpoint,
    seq: i64,
    attempts: i64,
) -> StoreResult<ClaimedDelivery>
where
    DB: Database + for<'a> BindsColumns<'a>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    E: Executor<'c, Database = DB>,
    EventRow: for<'r> FromRow<'r, DB::Row>,
{
    let event: Option<EventRow> = select_event(seq).fetch_all(executor).await?.into_iter().next();
    let event = event.ok_or(StoreError::NotFound)?.into_event()?;
    Ok(ClaimedDelivery { endpoint, event, attempts: u32::try_from(attempts).unwrap_or(u32::MAX) })
}

/// The insert of `attempt`, made only while its endpoint exists (it may have been
/// deleted during the attempt: then there is nothing to record).
pub fn attempt_insert(attempt: &DeliveryAttempt) -> Statement {
    let columns = attempt.clone().into_columns();
    let names = columns.names().collect::<Vec<_>>().join(", ");
    let mut insert = Statement::new(&format!("INSERT INTO webhook_attempts ({names}) SELECT "));
    insert.values_of(columns);
    insert
        .push(" WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = ")
        .text(attempt.endpoint_id.clone())
        .push(")");
    insert
}

/// Writes `event` (if any) with a delivery for every endpoint that wants it, or only for
/// `only_to`, on `connection`: inside the transaction of the change it describes. False
/// when there is none, or an event with its id exists already (nothing is written then).
pub async fn record_event<E>(
    connection: &mut <E::Db as Database>::Connection,
    event: Option<&OutboxEvent>,
    only_to: Option<&str>,
) -> StoreResult<bool>
where
    E: SqlEngine,
    E::Db: for<'a> BindsColumns<'a>,
    for<'c> &'c mut <E::Db as Database>::Connection: Executor<'c, Database = E::Db>,
    for<'q> <E::Db as Database>::Arguments<'q>: IntoArguments<'q, E::Db>,
    (i64,): for<'r> FromRow<'r, <E::Db as Database>::Row>,
{
    let Some(event) = event else {
        return Ok(false);
    };
    if let Some(lock) = E::EVENT_ORDER_LOCK {
        Statement::new(lock).execute(&mut *connection).await?;
    }
    let mut insert = Statement::new("INSERT INTO events (id, type, at, site_id, key_id, data, only_to) VALUES (");
    insert.text(event.id.clone()).push(", ").text(event.event_type.clone()).push(", ").integer(millis(event.at));
    insert.push(", ").text(event.site_id.as_ref().map(|site| site.as_str().to_owned()));
    insert.push(", ").text(event.key_id.as_ref().map(|key| key.as_str().to_owned()));
    insert.push(", ").text(event.data.clone()).push(", ").text(only_to.map(str::to_owned));
    insert.push(") ON CONFLICT (id) DO NOTHING RETURNING seq");
    let seq: Option<(i64,)> = insert.fetch_all(&mut *connection).await?.into_iter().next();
    let Some((seq,)) = seq else {
        return Ok(false);
    };
    let mut fan_out =
        Statement::new("INSERT INTO webhook_deliveries (endpoint_id, event_seq, next_attempt_at) SELECT id, ");
    fan_out.integer(seq).push(", ").integer(millis(event.at)).push(" FROM webhook_endpoints WHERE ");
    match only_to {
        Some(endpoint) => fan_out.push("id = ").text(endpoint.to_owned()),
        // An event of no site (a Master key) goes only to endpoints of all sites.
        None => fan_out
            .push("(site_id IS NULL OR site_id = ")
            .text(event.site_id.as_ref().map(|site| site.as_str().to_owned()))
            .push(") AND (events = '' OR (' ' || events || ' ') LIKE ")
            .text(event_type_pattern(&event.event_type))
            .push(")"),
    };
    fan_out.execute(&mut *connection).await?;
    Ok(true)
}

/// `(value IS NULL OR column op value)`: a filter that a `None` turns off.
fn push_optional_filter(query: &mut Statement, column_and_operator: &str, value: crate::rows::ColumnValue) {
    query.push("(").value(value.clone()).push(" IS NULL OR ").push(column_and_operator).value(value).push(")");
}

fn text_of(value: Option<&str>) -> crate::rows::ColumnValue {
    crate::rows::ColumnValue::Text(value.map(str::to_owned))
}

fn page_limit(page: &Page) -> i64 {
    i64::from(page.limit.max(1))
}

#[async_trait]
impl<E> WebhookStore for E
where
    E: SqlEngine + DeliveryQueue,
    E::Db: for<'a> BindsColumns<'a>,
    for<'c> &'c mut <E::Db as Database>::Connection: Executor<'c, Database = E::Db>,
    for<'q> <E::Db as Database>::Arguments<'q>: IntoArguments<'q, E::Db>,
    (i64,): for<'r> FromRow<'r, <E::Db as Database>::Row>,
    EndpointRow: for<'r> FromRow<'r, <E::Db as Database>::Row>,
    EventRow: for<'r> FromRow<'r, <E::Db as Database>::Row>,
    AttemptRow: for<'r> FromRow<'r, <E::Db as Database>::Row>,
    KeyRow: for<'r> FromRow<'r, <E::Db as Database>::Row>,
{
    async fn create_webhook(&self, endpoint: &WebhookEndpoint, event: &AuditEvent) -> StoreResult<()> {
        let mut tx = self.writes().begin().await.map_err(StoreError::unavailable)?;
        audit(&mut *tx, event).await?;
        let insert = Statement::insert("webhook_endpoints", EndpointRow::from_endpoint(endpoint).into_columns());
        insert.execute(&mut *tx).await.map_err(|error| match &error {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => error.into(),
        })?;
        Ok(tx.commit().await?)
    }

    async fn get_webhook(&self, id: &str) -> StoreResult<Option<WebhookEndpoint>> {
        let row: Option<EndpointRow> = select_endpoint(id).fetch_all(self.reads()).await?.into_iter().next();
        row.map(EndpointRow::into_endpoint).transpose()
    }

    async fn list_webhooks(&self, site: Option<&SiteId>, page: &Page) -> StoreResult<Vec<WebhookEndpoint>> {
        let mut list = Statement::new(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE "));
        push_optional_filter(&mut list, "site_id = ", text_of(site.map(SiteId::as_str)));
        list.push(" AND ");
        push_optional_filter(&mut list, "id < ", text_of(page.after.as_deref()));
        list.push(" ORDER BY id DESC LIMIT ").integer(page_limit(page));
        let rows: Vec<EndpointRow> = list.fetch_all(self.reads()).await?;
        rows.into_iter().map(EndpointRow::into_endpoint).collect()
    }

    async fn update_webhook(&self, endpoint: &WebhookEndpoint, event: &AuditEvent) -> StoreResult<()> {
        let mut tx = self.writes().begin().await.map_err(StoreError::unavailable)?;
        audit(&mut *tx, event).await?;
        let changes = EndpointRow::from_endpoint(endpoint).into_changes();
        let updated = Statement::update("webhook_endpoints", changes, &endpoint.id).execute(&mut *tx).await?;
        if E::rows_affected(&updated) == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(tx.commit().await?)
    }

    async fn delete_webhook(&self, id: &str, event: &AuditEvent) -> StoreResult<()> {
        let mut tx = self.writes().begin().await.map_err(StoreError::unavailable)?;
        audit(&mut *tx, event).await?;
        let mut delete = Statement::new("DELETE FROM webhook_endpoints WHERE id = ");
        delete.text(id.to_owned());
        let deleted = delete.execute(&mut *tx).await?;
        if E::rows_affected(&deleted) == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(tx.commit().await?)
    }

    async fn enqueue_event(&self, event: &OutboxEvent, only_to: Option<&str>) -> StoreResult<bool> {
        let mut tx = self.writes().begin().await.map_err(StoreError::unavailable)?;
        let written = record_event::<E>(&mut tx, Some(event), only_to).await?;
        tx.commit().await?;
        Ok(written)
    }

    async fn list_attempts(&self, endpoint_id: &str, page: &Page) -> StoreResult<Vec<DeliveryAttempt>> {
        let after: Option<i64> = page.after.as_deref().and_then(|raw| raw.parse().ok());
        let mut list = Statement::new(&format!("SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE endpoint_id = "));
        list.text(endpoint_id.to_owned()).push(" AND ");
        push_optional_filter(&mut list, "id < ", crate::rows::ColumnValue::Integer(after));
        list.push(" ORDER BY id DESC LIMIT ").integer(page_limit(page));
        let rows: Vec<AttemptRow> = list.fetch_all(self.reads()).await?;
        rows.into_iter().map(AttemptRow::into_attempt).collect()
    }

    async fn pending_deliveries(&self, endpoint_id: &str) -> StoreResult<u64> {
        let mut count = Statement::new("SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = ");
        count.text(endpoint_id.to_owned());
        let (count,): (i64,) = count.fetch_all(self.reads()).await?.into_iter().next().unwrap_or_default();
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn events_after(&self, after: i64, site: Option<&SiteId>, limit: u32) -> StoreResult<Vec<StoredEvent>> {
        let mut list = Statement::new(&format!("SELECT {OUTBOX_COLUMNS} FROM events WHERE seq > "));
        list.integer(after).push(" AND only_to IS NULL AND ");
        push_optional_filter(&mut list, "site_id = ", text_of(site.map(SiteId::as_str)));
        list.push(" ORDER BY seq LIMIT ").integer(i64::from(limit));
        let rows: Vec<EventRow> = list.fetch_all(self.reads()).await?;
        rows.into_iter().map(EventRow::into_event).collect()
    }

    async fn keys_expiring(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> StoreResult<Vec<KeyRecord>> {
        let mut list =
            Statement::new(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE status = 'active' AND expires_at >= "));
        list.integer(millis(from)).push(" AND expires_at < ").integer(millis(until));
        let rows: Vec<KeyRow> = list.fetch_all(self.reads()).await?;
        rows.into_iter().map(KeyRow::into_record).collect()
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.writes().begin().await.map_err(StoreError::unavailable)?;
        let mut events = Statement::new("DELETE FROM events WHERE at < ");
        events.integer(millis(before));
        events.push(" AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = events.seq)");
        let pruned = events.execute(&mut *tx).await?;
        let mut attempts = Statement::new("DELETE FROM webhook_attempts WHERE at < ");
        attempts.integer(millis(before));
        attempts.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(E::rows_affected(&pruned))
    }
}

/// Writes the audit event of a change to an endpoint, in the change's transaction.
async fn audit<DB>(connection: &mut DB::Connection, event: &AuditEvent) -> StoreResult<()>
where
    DB: Database + for<'a> BindsColumns<'a>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    Statement::insert("audit_events", AuditRow::from_event(event).into_columns()).execute(connection).await?;
    Ok(())
}
