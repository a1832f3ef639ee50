//! The PostgreSQL backend: one database shared by several server instances.
//!
//! Differences from SQLite that shape this crate:
//! * Writers really run concurrently (READ COMMITTED), so a read-then-write locks its row
//!   and the "last usable Master key" check serializes on a transaction-scoped advisory
//!   lock (`keys.rs`) instead of relying on a single writer connection.
//! * Other instances cache keys too. Every write that can stop or alter a key sends
//!   `pg_notify` inside its transaction (delivered only if it commits); `feed.rs` turns
//!   those notifications into [`Invalidation`]s for the cache.
//! * Listings build their SQL per filter combination instead of `(? IS NULL OR …)`, so
//!   PostgreSQL's cached generic plans can still use the right index.
//! * Inserts send columns as arrays (`import.rs`), so a million keys take a hundred round
//!   trips.
//!
//! This file routes each [`Store`] call; `schema.rs` connects and migrates, `flushes.rs`
//! holds the batched writes of last use and usage counts.

mod feed;
mod flushes;
mod import;
mod keys;
mod schema;
mod webhooks;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keys::KeyTx;
use latchkey_core::{AuditEvent, KeyHash, KeyId, KeyRecord, Site, SiteId, SiteName};
use latchkey_store::key_writes;
use latchkey_store::outbox;
use latchkey_store::rows::{AuditRow, SiteRow, EVENT_COLUMNS, SITE_COLUMNS};
use latchkey_store::sql::record_event;
use latchkey_store::{
    AuditFilter, Audited, AuditedKey, CreditSpend, ImportBatch, Invalidation, KeyFilter, Page, Store, StoreError,
    StoreResult, UsageCount,
};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{Postgres, QueryBuilder, Transaction};
use std::slice;
use std::sync::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

type Tx = Transaction<'static, Postgres>;

pub struct PostgresStore {
    pool: PgPool,
    /// `LISTEN`/`NOTIFY` channel, `latchkey_keys_<schema>`: stores in different schemas
    /// of one database (tests running in parallel) never see each other's invalidations.
    channel: String,
    listener_options: PgConnectOptions,
    listener_application_name: String,
    shutdown: watch::Sender<bool>,
    feeds: Mutex<Vec<JoinHandle<()>>>,
}

impl PostgresStore {
    /// The `application_name` of this store's `LISTEN` connections,
    /// `latchkey-listener-<schema>`, by which they can be found in `pg_stat_activity`.
    pub fn listener_application_name(&self) -> &str {
        &self.listener_application_name
    }

    /// Stops the invalidation feeds and closes every connection.
    pub async fn close(&self) {
        self.shutdown.send_replace(true);
        let feeds = std::mem::take(&mut *self.feeds.lock().unwrap_or_else(|p| p.into_inner()));
        for feed in feeds {
            let _ = feed.await;
        }
        self.pool.close().await;
    }

    async fn begin(&self) -> StoreResult<Tx> {
        self.pool.begin().await.map_err(StoreError::unavailable)
    }

    /// Queues an invalidation for each key, sent by PostgreSQL when `tx` commits.
    async fn notify(&self, tx: &mut Tx, hashes: &[KeyHash]) -> StoreResult<()> {
        if hashes.is_empty() {
            return Ok(());
        }
        let payloads: Vec<String> = hashes.iter().map(feed::hash_hex).collect();
        sqlx::query("SELECT pg_notify($1, payload) FROM UNNEST($2::text[]) AS payload")
            .bind(&self.channel)
            .bind(payloads)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Feeds hold their own connections; without this they would outlive the store
        // until their receivers are dropped.
        self.shutdown.send_replace(true);
    }
}

async fn commit(tx: Tx) -> StoreResult<()> {
    Ok(tx.commit().await?)
}

async fn insert_event(tx: &mut Tx, event: &AuditEvent) -> StoreResult<()> {
    import::insert_events(tx, slice::from_ref(event)).await
}

/// Appends `AND <column> <op> $n` for a filter that is set; nothing otherwise.
fn push_filter<'a>(query: &mut QueryBuilder<'a, Postgres>, column: &str, op: &str, value: Option<&'a str>) {
    if let Some(value) = value {
        query.push(format_args!(" AND {column} {op} ")).push_bind(value);
    }
}

/// Newest first, from the page's cursor on (see [`push_filter`] for the cursor).
fn push_page(query: &mut QueryBuilder<'_, Postgres>, page: &Page) {
    query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(page.limit.max(1)));
}

#[async_trait]
impl Store for PostgresStore {
    fn shared_by_instances(&self) -> bool {
        true
    }

    async fn has_no_keys(&self) -> StoreResult<bool> {
        Ok(sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM keys)").fetch_one(&self.pool).await?)
    }

    async fn has_usable_master(&self, at: DateTime<Utc>) -> StoreResult<bool> {
        let sql = "SELECT EXISTS (SELECT 1 FROM keys WHERE permission = 'master' AND status = 'active'
                     AND (expires_at IS NULL OR expires_at > $1))";
        Ok(sqlx::query_scalar(sql).bind(latchkey_store::rows::millis(at)).fetch_one(&self.pool).await?)
    }

    async fn create_site(&self, site: Audited<'_, Site>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        import::insert_sites(&mut tx, slice::from_ref(site.value)).await?;
        insert_event(&mut tx, site.event).await?;
        record_event::<Self>(&mut tx, outbox::for_site(site.event, site.value).as_ref(), None).await?;
        commit(tx).await
    }

    async fn get_site(&self, id: &SiteId) -> StoreResult<Option<Site>> {
        let sql = format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = $1");
        let row: Option<SiteRow> = sqlx::query_as(&sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.map(SiteRow::into_site).transpose()
    }

    async fn list_sites(&self, page: &Page) -> StoreResult<Vec<Site>> {
        let mut query = QueryBuilder::new(format!("SELECT {SITE_COLUMNS} FROM sites WHERE TRUE"));
        push_filter(&mut query, "id", "<", page.after.as_deref());
        push_page(&mut query, page);
        let rows: Vec<SiteRow> = query.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(SiteRow::into_site).collect()
    }

    async fn rename_site(&self, id: &SiteId, name: Audited<'_, SiteName>) -> StoreResult<Site> {
        let mut tx = self.begin().await?;
        let sql = format!("UPDATE sites SET name = $1 WHERE id = $2 RETURNING {SITE_COLUMNS}");
        let row: Option<SiteRow> =
            sqlx::query_as(&sql).bind(name.value.as_str()).bind(id.as_str()).fetch_optional(&mut *tx).await?;
        let site = row.ok_or(StoreError::NotFound)?.into_site()?;
        insert_event(&mut tx, name.event).await?;
        commit(tx).await?;
        Ok(site)
    }

    async fn delete_site(&self, id: &SiteId, event: &AuditEvent) -> StoreResult<Vec<KeyRecord>> {
        let mut tx = self.begin().await?;
        // Locking the site first blocks new keys for it (their foreign-key check waits),
        // so the keys read next are exactly the keys the cascade deletes.
        let sql = format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = $1 FOR UPDATE");
        let site: Option<SiteRow> = sqlx::query_as(&sql).bind(id.as_str()).fetch_optional(&mut *tx).await?;
        let site = site.ok_or(StoreError::NotFound)?.into_site()?;
        let keys = key_writes::keys_of_deleted_site(&mut KeyTx(&mut tx), id, event).await?;
        sqlx::query("DELETE FROM sites WHERE id = $1").bind(id.as_str()).execute(&mut *tx).await?;
        let hashes: Vec<KeyHash> = keys.iter().map(|key| key.hash).collect();
        self.notify(&mut tx, &hashes).await?;
        insert_event(&mut tx, event).await?;
        record_event::<Self>(&mut tx, outbox::for_site(event, &site).as_ref(), None).await?;
        commit(tx).await?;
        Ok(keys)
    }

    async fn create_key(&self, key: Audited<'_, KeyRecord>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        import::insert_keys(&mut tx, slice::from_ref(key.value)).await?;
        insert_event(&mut tx, key.event).await?;
        record_event::<Self>(&mut tx, outbox::for_key(key.event, key.value).as_ref(), None).await?;
        commit(tx).await
    }

    async fn import(&self, batch: &ImportBatch) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        import::insert_sites(&mut tx, &batch.sites).await?;
        import::insert_keys(&mut tx, &batch.keys).await?;
        import::insert_events(&mut tx, &batch.events).await?;
        commit(tx).await
    }

    async fn get_key(&self, id: &KeyId) -> StoreResult<Option<KeyRecord>> {
        keys::find(&self.pool, "id", id.as_str()).await
    }

    async fn find_key_by_hash(&self, hash: &KeyHash) -> StoreResult<Option<KeyRecord>> {
        keys::find(&self.pool, "hash", &hash.0[..]).await
    }

    async fn find_keys_by_hashes(&self, hashes: &[KeyHash]) -> StoreResult<Vec<KeyRecord>> {
        keys::with_hashes(&self.pool, hashes).await
    }

    async fn list_keys(&self, filter: &KeyFilter, page: &Page) -> StoreResult<Vec<KeyRecord>> {
        keys::list(&self.pool, filter, page).await
    }

    async fn update_key(&self, before: &KeyRecord, after: Audited<'_, KeyRecord>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let stored = key_writes::replace_key(&mut KeyTx(&mut tx), before, &after).await?;
        self.notify(&mut tx, &[stored.hash]).await?;
        insert_event(&mut tx, after.event).await?;
        record_event::<Self>(&mut tx, outbox::for_key(after.event, after.value).as_ref(), None).await?;
        commit(tx).await
    }

    async fn rotate_key(&self, old: &KeyRecord, old_after: AuditedKey<'_>, new: AuditedKey<'_>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // The new key first: rotating the only Master key leaves its replacement, which
        // the last-Master rule must see when it judges the old key's expiry.
        import::insert_keys(&mut tx, slice::from_ref(new.value)).await?;
        let stored = key_writes::replace_key(&mut KeyTx(&mut tx), old, &old_after).await?;
        self.notify(&mut tx, &[stored.hash]).await?;
        // Both events in one statement: one round trip fewer.
        import::insert_events(&mut tx, &[old_after.event.clone(), new.event.clone()]).await?;
        record_event::<Self>(&mut tx, outbox::for_key(old_after.event, old_after.value).as_ref(), None).await?;
        record_event::<Self>(&mut tx, outbox::for_key(new.event, new.value).as_ref(), None).await?;
        commit(tx).await
    }

    async fn delete_key(&self, key: Audited<'_, KeyRecord>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let deleted = key_writes::delete_key(&mut KeyTx(&mut tx), &key.value.id, key.event).await?;
        self.notify(&mut tx, &[deleted.hash]).await?;
        insert_event(&mut tx, key.event).await?;
        record_event::<Self>(&mut tx, outbox::for_key(key.event, &deleted).as_ref(), None).await?;
        commit(tx).await
    }

    async fn record_last_used(&self, uses: &[(KeyId, DateTime<Utc>)]) -> StoreResult<()> {
        flushes::record_last_used(&self.pool, uses).await
    }

    async fn spend_credits(&self, key: &KeyId, cost: u64, now: DateTime<Utc>) -> StoreResult<CreditSpend> {
        let mut tx = self.begin().await?;
        let spent = key_writes::spend_credits(&mut KeyTx(&mut tx), key, cost, now).await?;
        commit(tx).await.map(|()| spent)
    }

    async fn record_usage(&self, counts: &[UsageCount]) -> StoreResult<()> {
        flushes::record_usage(&self.pool, counts).await
    }

    async fn usage(&self, keys: &[KeyId], since_day: i32) -> StoreResult<Vec<UsageCount>> {
        flushes::usage(&self.pool, keys, since_day).await
    }

    async fn list_audit(&self, filter: &AuditFilter, page: &Page) -> StoreResult<Vec<AuditEvent>> {
        let mut query = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE TRUE"));
        push_filter(&mut query, "site_id", "=", filter.site.as_ref().map(SiteId::as_str));
        push_filter(&mut query, "target_key_id", "=", filter.key.as_ref().map(KeyId::as_str));
        push_filter(&mut query, "action", "=", filter.action.map(|a| a.as_str()));
        push_filter(&mut query, "id", "<", page.after.as_deref());
        push_page(&mut query, page);
        let rows: Vec<AuditRow> = query.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(AuditRow::into_event).collect()
    }

    fn webhooks(&self) -> &dyn latchkey_store::webhooks::WebhookStore {
        self
    }

    async fn watch_invalidations(&self) -> StoreResult<Option<mpsc::Receiver<Invalidation>>> {
        feed::watch(self).await.map(Some)
    }
}

#[cfg(test)]
mod tests;

/// The statements shared with SQLite (dashboard sessions, webhooks; see
/// [`latchkey_store::sql`]) run on the one pool, so every instance on the database serves
/// every session.
impl latchkey_store::sql::SqlEngine for PostgresStore {
    type Db = sqlx::Postgres;

    fn writes(&self) -> &sqlx::PgPool {
        &self.pool
    }

    fn reads(&self) -> &sqlx::PgPool {
        &self.pool
    }

    /// Held from an event's insert to its commit, so events are numbered in commit order: a
    /// follower of `GET /events?after=` never passes a number whose event commits later.
    /// In the two-integer advisory lock space, like `LAST_MASTER_LOCK` (see `keys.rs`):
    /// 0x4c4b_0005.
    const EVENT_ORDER_LOCK: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(1279983621, 0)");

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }
}
