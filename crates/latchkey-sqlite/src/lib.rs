//! The embedded SQLite backend: one file, WAL mode, one writer connection.
//!
//! SQLite allows one writer at a time. Rather than let many connections race for the
//! write lock (and surface "database is locked"), every write goes through a pool of
//! exactly one connection, so writers queue in the pool; reads use a separate pool and
//! run concurrently thanks to WAL. `synchronous = FULL` makes an acknowledged write
//! survive a power cut, not only a process crash.
//!
//! The single writer is also what makes every read-then-write here exact (the version
//! check, the last-Master count, a credit spend): nothing else writes in between.
//! This file opens the database and routes each [`Store`] call; `keys.rs` holds the
//! keys' SQL, `flushes.rs` the batched writes of last use and usage counts.

mod flushes;
mod keys;
mod webhooks;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keys::KeyTx;
use latchkey_core::{AuditEvent, KeyHash, KeyId, KeyRecord, Site, SiteId, SiteName};
use latchkey_store::key_writes;
use latchkey_store::outbox;
use latchkey_store::rows::{millis, AuditRow, Columns, KeyRow, SiteRow, EVENT_COLUMNS, KEY_COLUMNS, SITE_COLUMNS};
use latchkey_store::sql::record_event;
use latchkey_store::{
    AuditFilter, Audited, AuditedKey, CreditSpend, ImportBatch, KeyFilter, Page, Store, StoreError, StoreResult,
    UsageCount,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, Transaction};
use std::str::FromStr;
use std::time::Duration;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

type Tx = Transaction<'static, Sqlite>;

pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at a file path or `sqlite://` URL and
    /// applies the embedded migrations.
    pub async fn open(location: &str) -> StoreResult<Self> {
        let path = location.strip_prefix("sqlite://").unwrap_or(location);
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(StoreError::unavailable)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(StoreError::unavailable)?;
        MIGRATIONS.run(&writer).await.map_err(StoreError::unavailable)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.read_only(true))
            .await
            .map_err(StoreError::unavailable)?;
        Ok(Self { writer, readers })
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.readers.close().await;
    }

    async fn begin(&self) -> StoreResult<Tx> {
        self.writer.begin().await.map_err(StoreError::unavailable)
    }
}

async fn commit(tx: Tx) -> StoreResult<()> {
    Ok(tx.commit().await?)
}

/// Inserts one row into `table`, whose columns `row` gives in the order of `columns`.
async fn insert(tx: &mut Tx, table: &str, columns: &str, row: Columns) -> Result<(), sqlx::Error> {
    let mut insert = QueryBuilder::new(format!("INSERT INTO {table} ({columns}) VALUES "));
    row.push_values(&mut insert);
    insert.build().execute(&mut **tx).await?;
    Ok(())
}

async fn insert_site(tx: &mut Tx, site: &Site) -> StoreResult<()> {
    insert(tx, "sites", SITE_COLUMNS, SiteRow::from_site(site).into_columns()).await.map_err(StoreError::from)
}

async fn insert_event(tx: &mut Tx, event: &AuditEvent) -> StoreResult<()> {
    insert(tx, "audit_events", EVENT_COLUMNS, AuditRow::from_event(event).into_columns())
        .await
        .map_err(StoreError::from)
}

fn page_limit(page: &Page) -> i64 {
    i64::from(page.limit.max(1))
}

#[async_trait]
impl Store for SqliteStore {
    async fn has_no_keys(&self) -> StoreResult<bool> {
        let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM keys LIMIT 1").fetch_optional(&self.readers).await?;
        Ok(any.is_none())
    }

    async fn has_usable_master(&self, at: DateTime<Utc>) -> StoreResult<bool> {
        let sql = "SELECT EXISTS (SELECT 1 FROM keys WHERE permission = 'master' AND status = 'active'
                     AND (expires_at IS NULL OR expires_at > ?))";
        Ok(sqlx::query_scalar(sql).bind(millis(at)).fetch_one(&self.readers).await?)
    }

    async fn create_site(&self, site: Audited<'_, Site>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_site(&mut tx, site.value).await?;
        insert_event(&mut tx, site.event).await?;
        record_event::<Self>(&mut tx, outbox::for_site(site.event, site.value).as_ref(), None).await?;
        commit(tx).await
    }

    async fn get_site(&self, id: &SiteId) -> StoreResult<Option<Site>> {
        let row: Option<SiteRow> = sqlx::query_as(&format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = ?"))
            .bind(id.as_str())
            .fetch_optional(&self.readers)
            .await?;
        row.map(SiteRow::into_site).transpose()
    }

    async fn list_sites(&self, page: &Page) -> StoreResult<Vec<Site>> {
        let rows: Vec<SiteRow> = sqlx::query_as(&format!(
            "SELECT {SITE_COLUMNS} FROM sites WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2"
        ))
        .bind(page.after.as_deref())
        .bind(page_limit(page))
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(SiteRow::into_site).collect()
    }

    async fn rename_site(&self, id: &SiteId, name: Audited<'_, SiteName>) -> StoreResult<Site> {
        let mut tx = self.begin().await?;
        let row: SiteRow = sqlx::query_as(&format!("UPDATE sites SET name = ? WHERE id = ? RETURNING {SITE_COLUMNS}"))
            .bind(name.value.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        insert_event(&mut tx, name.event).await?;
        commit(tx).await?;
        row.into_site()
    }

    async fn delete_site(&self, id: &SiteId, event: &AuditEvent) -> StoreResult<Vec<KeyRecord>> {
        let mut tx = self.begin().await?;
        let keys = key_writes::keys_of_deleted_site(&mut KeyTx(&mut tx), id, event).await?;
        let deleted: SiteRow = sqlx::query_as(&format!("DELETE FROM sites WHERE id = ? RETURNING {SITE_COLUMNS}"))
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        insert_event(&mut tx, event).await?;
        record_event::<Self>(&mut tx, outbox::for_site(event, &deleted.into_site()?).as_ref(), None).await?;
        commit(tx).await?;
        Ok(keys)
    }

    async fn create_key(&self, key: Audited<'_, KeyRecord>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        keys::insert(&mut tx, key.value).await?;
        insert_event(&mut tx, key.event).await?;
        record_event::<Self>(&mut tx, outbox::for_key(key.event, key.value).as_ref(), None).await?;
        commit(tx).await
    }

    async fn import(&self, batch: &ImportBatch) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for site in &batch.sites {
            insert_site(&mut tx, site).await?;
        }
        for key in &batch.keys {
            keys::insert(&mut tx, key).await?;
        }
        for event in &batch.events {
            insert_event(&mut tx, event).await?;
        }
        commit(tx).await
    }

    async fn get_key(&self, id: &KeyId) -> StoreResult<Option<KeyRecord>> {
        keys::one(keys::select(&self.readers, "id", id.as_str()).await?)
    }

    async fn find_key_by_hash(&self, hash: &KeyHash) -> StoreResult<Option<KeyRecord>> {
        keys::one(keys::select(&self.readers, "hash", &hash.0[..]).await?)
    }

    async fn find_keys_by_hashes(&self, hashes: &[KeyHash]) -> StoreResult<Vec<KeyRecord>> {
        keys::with_hashes(&self.readers, hashes).await
    }

    async fn list_keys(&self, filter: &KeyFilter, page: &Page) -> StoreResult<Vec<KeyRecord>> {
        let rows: Vec<KeyRow> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM keys
              WHERE (?1 IS NULL OR site_id = ?1) AND (?2 IS NULL OR id < ?2) AND (?3 IS NULL OR owner_id = ?3)
                AND (?4 IS NULL OR COALESCE(last_used_at, created_at) < ?4)
              ORDER BY id DESC LIMIT ?5"
        ))
        .bind(filter.site.as_ref().map(SiteId::as_str))
        .bind(page.after.as_deref())
        .bind(filter.owner_id.as_deref())
        .bind(filter.unused_since.map(millis))
        .bind(page_limit(page))
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(KeyRow::into_record).collect()
    }

    async fn update_key(&self, before: &KeyRecord, after: Audited<'_, KeyRecord>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        key_writes::replace_key(&mut KeyTx(&mut tx), before, &after).await?;
        insert_event(&mut tx, after.event).await?;
        record_event::<Self>(&mut tx, outbox::for_key(after.event, after.value).as_ref(), None).await?;
        commit(tx).await
    }

    async fn rotate_key(&self, old: &KeyRecord, old_after: AuditedKey<'_>, new: AuditedKey<'_>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // The new key first: rotating the only Master key leaves its replacement, which
        // the last-Master rule must see when it judges the old key's expiry.
        keys::insert(&mut tx, new.value).await?;
        key_writes::replace_key(&mut KeyTx(&mut tx), old, &old_after).await?;
        insert_event(&mut tx, old_after.event).await?;
        insert_event(&mut tx, new.event).await?;
        record_event::<Self>(&mut tx, outbox::for_key(old_after.event, old_after.value).as_ref(), None).await?;
        record_event::<Self>(&mut tx, outbox::for_key(new.event, new.value).as_ref(), None).await?;
        commit(tx).await
    }

    async fn spend_credits(&self, key: &KeyId, cost: u64, now: DateTime<Utc>) -> StoreResult<CreditSpend> {
        let mut tx = self.begin().await?;
        let spent = key_writes::spend_credits(&mut KeyTx(&mut tx), key, cost, now).await?;
        commit(tx).await.map(|()| spent)
    }

    async fn delete_key(&self, key: Audited<'_, KeyRecord>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let deleted = key_writes::delete_key(&mut KeyTx(&mut tx), &key.value.id, key.event).await?;
        insert_event(&mut tx, key.event).await?;
        record_event::<Self>(&mut tx, outbox::for_key(key.event, &deleted).as_ref(), None).await?;
        commit(tx).await
    }

    async fn record_last_used(&self, uses: &[(KeyId, DateTime<Utc>)]) -> StoreResult<()> {
        flushes::record_last_used(self, uses).await
    }

    async fn record_usage(&self, counts: &[UsageCount]) -> StoreResult<()> {
        flushes::record_usage(self, counts).await
    }

    async fn usage(&self, keys: &[KeyId], since_day: i32) -> StoreResult<Vec<UsageCount>> {
        flushes::usage(&self.readers, keys, since_day).await
    }

    fn webhooks(&self) -> &dyn latchkey_store::webhooks::WebhookStore {
        self
    }

    async fn list_audit(&self, filter: &AuditFilter, page: &Page) -> StoreResult<Vec<AuditEvent>> {
        let site = filter.site.as_ref().map(SiteId::as_str);
        let key = filter.key.as_ref().map(KeyId::as_str);
        let action = filter.action.map(|a| a.as_str());
        let rows: Vec<AuditRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events
              WHERE (?1 IS NULL OR site_id = ?1) AND (?2 IS NULL OR target_key_id = ?2)
                AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR id < ?4)
              ORDER BY id DESC LIMIT ?5"
        ))
        .bind(site)
        .bind(key)
        .bind(action)
        .bind(page.after.as_deref())
        .bind(page_limit(page))
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(AuditRow::into_event).collect()
    }
}

#[cfg(test)]
mod tests;

/// The statements shared with PostgreSQL (dashboard sessions, webhooks; see
/// [`latchkey_store::sql`]) run here: writes on the single writer, reads on the readers.
impl latchkey_store::sql::SqlEngine for SqliteStore {
    type Db = sqlx::Sqlite;

    fn writes(&self) -> &sqlx::SqlitePool {
        &self.writer
    }

    fn reads(&self) -> &sqlx::SqlitePool {
        &self.readers
    }

    /// The single writer commits events in the order it numbers them.
    const EVENT_ORDER_LOCK: Option<&'static str> = None;

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}
