//! The embedded SQLite backend: one file, WAL mode, one writer connection.
//!
//! SQLite allows one writer at a time. Rather than let many connections race for the
//! write lock (and surface "database is locked"), every write goes through a pool of
//! exactly one connection, so writers queue in the pool; reads use a separate pool and
//! run concurrently thanks to WAL. `synchronous = FULL` makes an acknowledged write
//! survive a power cut, not only a process crash.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_core::{AuditEvent, KeyHash, KeyId, KeyRecord, Site, SiteId, SiteName};
use latchkey_store::rows::{
    millis, plan_credit_spend, AuditRow, CreditColumns, CreditPlan, KeyRow, SiteRow, KEY_COLUMNS,
};
use latchkey_store::{
    must_keep_a_master, AuditFilter, Audited, CreditSpend, ImportBatch, KeyFilter, Page, Store, StoreError,
    StoreResult, UsageCount,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use std::str::FromStr;
use std::time::Duration;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

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

    async fn begin(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.writer.begin().await.map_err(StoreError::unavailable)
    }
}

fn db_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
        _ => StoreError::unavailable(error),
    }
}

fn site_from_row(row: SqliteRow) -> StoreResult<Site> {
    SiteRow { id: row.get("id"), name: row.get("name"), created_at: row.get("created_at") }.into_site()
}

fn key_from_row(row: SqliteRow) -> StoreResult<KeyRecord> {
    KeyRow {
        id: row.get("id"),
        site_id: row.get("site_id"),
        name: row.get("name"),
        description: row.get("description"),
        permission: row.get("permission"),
        scopes: row.get("scopes"),
        status: row.get("status"),
        prefix: row.get("prefix"),
        hash: row.get("hash"),
        created_at: row.get("created_at"),
        created_by: row.get("created_by"),
        updated_at: row.get("updated_at"),
        last_used_at: row.get("last_used_at"),
        expires_at: row.get("expires_at"),
        options: row.get("options"),
        owner_id: row.get("owner_id"),
        credits_remaining: row.get("credits_remaining"),
        credits_refill_interval: row.get("credits_refill_interval"),
        credits_refill_amount: row.get("credits_refill_amount"),
        credits_refilled_at: row.get("credits_refilled_at"),
    }
    .into_record()
}

fn event_from_row(row: SqliteRow) -> StoreResult<AuditEvent> {
    AuditRow {
        id: row.get("id"),
        at: row.get("at"),
        actor_key_id: row.get("actor_key_id"),
        actor_prefix: row.get("actor_prefix"),
        action: row.get("action"),
        target_key_id: row.get("target_key_id"),
        site_id: row.get("site_id"),
        source_ip: row.get("source_ip"),
        changes: row.get("changes"),
    }
    .into_event()
}

async fn insert_key(tx: &mut Transaction<'_, Sqlite>, key: &KeyRecord) -> StoreResult<()> {
    let row = KeyRow::from_record(key);
    sqlx::query(&format!(
        "INSERT INTO keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(row.id)
    .bind(row.site_id)
    .bind(row.name)
    .bind(row.description)
    .bind(row.permission)
    .bind(row.scopes)
    .bind(row.status)
    .bind(row.prefix)
    .bind(row.hash)
    .bind(row.created_at)
    .bind(row.created_by)
    .bind(row.updated_at)
    .bind(row.last_used_at)
    .bind(row.expires_at)
    .bind(row.options)
    .bind(row.owner_id)
    .bind(row.credits_remaining)
    .bind(row.credits_refill_interval)
    .bind(row.credits_refill_amount)
    .bind(row.credits_refilled_at)
    .execute(&mut **tx)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => db_error(error),
    })?;
    Ok(())
}

async fn insert_site(tx: &mut Transaction<'_, Sqlite>, site: &Site) -> StoreResult<()> {
    sqlx::query("INSERT INTO sites (id, name, created_at) VALUES (?, ?, ?)")
        .bind(site.id.as_str())
        .bind(site.name.as_str())
        .bind(millis(site.created_at))
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

async fn insert_event(tx: &mut Transaction<'_, Sqlite>, event: &AuditEvent) -> StoreResult<()> {
    let row = AuditRow::from_event(event);
    sqlx::query(
        "INSERT INTO audit_events (id, at, actor_key_id, actor_prefix, action, target_key_id, site_id, source_ip, changes)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(row.id)
    .bind(row.at)
    .bind(row.actor_key_id)
    .bind(row.actor_prefix)
    .bind(row.action)
    .bind(row.target_key_id)
    .bind(row.site_id)
    .bind(row.source_ip)
    .bind(row.changes)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Refuses a change that takes `key` out of the usable Master keys when it is the last
/// one. Runs inside the writing transaction; with a single writer connection nothing can
/// change the count between this check and the commit.
async fn ensure_other_master(tx: &mut Transaction<'_, Sqlite>, key: &KeyId, now: DateTime<Utc>) -> StoreResult<()> {
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM keys WHERE permission = 'master' AND status = 'active'
           AND (expires_at IS NULL OR expires_at > ?) AND id <> ?",
    )
    .bind(millis(now))
    .bind(key.as_str())
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?;
    if others == 0 {
        Err(StoreError::LastMaster)
    } else {
        Ok(())
    }
}

/// Replaces the mutable fields of `before` with those of `after` if the row still has
/// `before`'s version (compare-and-swap), keeping the no-lockout rule. Credits are only
/// written when the change is about them, so a concurrent spend is never undone.
async fn replace_key(
    tx: &mut Transaction<'_, Sqlite>,
    before: &KeyRecord,
    after: &Audited<'_, KeyRecord>,
) -> StoreResult<()> {
    let at = after.event.at;
    if before.is_usable_master_at(at) && !after.value.is_usable_master_at(at) && must_keep_a_master(after.event) {
        ensure_other_master(tx, &before.id, at).await?;
    }
    let row = KeyRow::from_record(after.value);
    let updated = sqlx::query(
        "UPDATE keys SET name = ?, description = ?, permission = ?, scopes = ?, status = ?,
                expires_at = ?, updated_at = ?, options = ?, owner_id = ?
          WHERE id = ? AND updated_at = ?",
    )
    .bind(row.name)
    .bind(row.description)
    .bind(row.permission)
    .bind(row.scopes)
    .bind(row.status)
    .bind(row.expires_at)
    .bind(row.updated_at)
    .bind(row.options)
    .bind(row.owner_id)
    .bind(before.id.as_str())
    .bind(millis(before.updated_at))
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    if updated.rows_affected() == 0 {
        return Err(missing_or_changed(tx, &before.id).await);
    }
    if before.options.credits != after.value.options.credits {
        sqlx::query(
            "UPDATE keys SET credits_remaining = ?, credits_refill_interval = ?, credits_refill_amount = ?,
                    credits_refilled_at = ? WHERE id = ?",
        )
        .bind(row.credits_remaining)
        .bind(row.credits_refill_interval)
        .bind(row.credits_refill_amount)
        .bind(row.credits_refilled_at)
        .bind(before.id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

/// Rows per statement in the batched last-used and usage writes (4 binds each, far
/// below SQLite's variable limit).
const FLUSH_CHUNK: usize = 500;

fn page_limit(page: &Page) -> i64 {
    i64::from(page.limit.max(1))
}

#[async_trait]
impl Store for SqliteStore {
    async fn has_no_keys(&self) -> StoreResult<bool> {
        let any: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM keys LIMIT 1").fetch_optional(&self.readers).await.map_err(db_error)?;
        Ok(any.is_none())
    }

    async fn create_site(&self, site: Audited<'_, Site>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_site(&mut tx, site.value).await?;
        insert_event(&mut tx, site.event).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn get_site(&self, id: &SiteId) -> StoreResult<Option<Site>> {
        sqlx::query("SELECT id, name, created_at FROM sites WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.readers)
            .await
            .map_err(db_error)?
            .map(site_from_row)
            .transpose()
    }

    async fn list_sites(&self, page: &Page) -> StoreResult<Vec<Site>> {
        sqlx::query("SELECT id, name, created_at FROM sites WHERE (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?")
            .bind(page.after.as_deref())
            .bind(page.after.as_deref())
            .bind(page_limit(page))
            .fetch_all(&self.readers)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(site_from_row)
            .collect()
    }

    async fn rename_site(&self, id: &SiteId, name: Audited<'_, SiteName>) -> StoreResult<Site> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("UPDATE sites SET name = ? WHERE id = ? RETURNING id, name, created_at")
            .bind(name.value.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        insert_event(&mut tx, name.event).await?;
        tx.commit().await.map_err(db_error)?;
        site_from_row(row)
    }

    async fn delete_site(&self, id: &SiteId, event: &AuditEvent) -> StoreResult<Vec<KeyRecord>> {
        let mut tx = self.begin().await?;
        let keys = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE site_id = ?"))
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(key_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let deleted = sqlx::query("DELETE FROM sites WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        insert_event(&mut tx, event).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(keys)
    }

    async fn create_key(&self, key: Audited<'_, KeyRecord>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_key(&mut tx, key.value).await?;
        insert_event(&mut tx, key.event).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn import(&self, batch: &ImportBatch) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for site in &batch.sites {
            insert_site(&mut tx, site).await?;
        }
        for key in &batch.keys {
            insert_key(&mut tx, key).await?;
        }
        for event in &batch.events {
            insert_event(&mut tx, event).await?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn get_key(&self, id: &KeyId) -> StoreResult<Option<KeyRecord>> {
        sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = ?"))
            .bind(id.as_str())
            .fetch_optional(&self.readers)
            .await
            .map_err(db_error)?
            .map(key_from_row)
            .transpose()
    }

    async fn find_key_by_hash(&self, hash: &KeyHash) -> StoreResult<Option<KeyRecord>> {
        sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE hash = ?"))
            .bind(&hash.0[..])
            .fetch_optional(&self.readers)
            .await
            .map_err(db_error)?
            .map(key_from_row)
            .transpose()
    }

    async fn list_keys(&self, filter: &KeyFilter, page: &Page) -> StoreResult<Vec<KeyRecord>> {
        let site = filter.site.as_ref().map(SiteId::as_str);
        let unused_since = filter.unused_since.map(millis);
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM keys
              WHERE (?1 IS NULL OR site_id = ?1) AND (?2 IS NULL OR id < ?2) AND (?3 IS NULL OR owner_id = ?3)
                AND (?4 IS NULL OR COALESCE(last_used_at, created_at) < ?4)
              ORDER BY id DESC LIMIT ?5"
        ))
        .bind(site)
        .bind(page.after.as_deref())
        .bind(filter.owner_id.as_deref())
        .bind(unused_since)
        .bind(page_limit(page))
        .fetch_all(&self.readers)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(key_from_row)
        .collect()
    }

    async fn update_key(&self, before: &KeyRecord, after: Audited<'_, KeyRecord>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        replace_key(&mut tx, before, &after).await?;
        insert_event(&mut tx, after.event).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn rotate_key(
        &self,
        old: &KeyRecord,
        old_after: Audited<'_, KeyRecord>,
        new: Audited<'_, KeyRecord>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        replace_key(&mut tx, old, &old_after).await?;
        insert_key(&mut tx, new.value).await?;
        insert_event(&mut tx, old_after.event).await?;
        insert_event(&mut tx, new.event).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn spend_credits(&self, key: &KeyId, cost: u64, now: DateTime<Utc>) -> StoreResult<CreditSpend> {
        // The single writer connection serialises spends, so read-then-write is exact.
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "SELECT credits_remaining, credits_refill_interval, credits_refill_amount, credits_refilled_at
               FROM keys WHERE id = ?",
        )
        .bind(key.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let stored = row.map(|row| CreditColumns {
            remaining: row.get("credits_remaining"),
            refill_interval: row.get("credits_refill_interval"),
            refill_amount: row.get("credits_refill_amount"),
            refilled_at: row.get("credits_refilled_at"),
        });
        let (remaining, columns) = match plan_credit_spend(stored, cost, now)? {
            CreditPlan::NotLimited => return Ok(CreditSpend::NotLimited),
            CreditPlan::Exhausted => return Ok(CreditSpend::Exhausted),
            CreditPlan::Write { remaining, columns } => (remaining, columns),
        };
        sqlx::query("UPDATE keys SET credits_remaining = ?, credits_refilled_at = ? WHERE id = ?")
            .bind(columns.remaining)
            .bind(columns.refilled_at)
            .bind(key.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(CreditSpend::Spent { remaining })
    }

    async fn delete_key(&self, key: Audited<'_, KeyRecord>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        if key.value.is_usable_master_at(key.event.at) && must_keep_a_master(key.event) {
            ensure_other_master(&mut tx, &key.value.id, key.event.at).await?;
        }
        let deleted = sqlx::query("DELETE FROM keys WHERE id = ?")
            .bind(key.value.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        insert_event(&mut tx, key.event).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn record_last_used(&self, uses: &[(KeyId, DateTime<Utc>)]) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        // Multi-row statements: with many distinct keys a statement per key costs more
        // CPU than the requests that caused it.
        let mut tx = self.begin().await?;
        for chunk in uses.chunks(FLUSH_CHUNK) {
            let mut query = QueryBuilder::<Sqlite>::new(
                "UPDATE keys SET last_used_at = MAX(COALESCE(last_used_at, 0), used.at)
                   FROM (SELECT column1 AS id, column2 AS at FROM (",
            );
            query.push_values(chunk, |mut row, (key, at)| {
                row.push_bind(key.as_str()).push_bind(millis(*at));
            });
            // MAX: batches from several flushes may arrive out of order.
            query.push(")) AS used WHERE keys.id = used.id");
            query.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn record_usage(&self, counts: &[UsageCount]) -> StoreResult<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for chunk in counts.chunks(FLUSH_CHUNK) {
            let mut query = QueryBuilder::<Sqlite>::new(
                "INSERT INTO key_usage (key_id, day, allowed, refused)
                 SELECT column1, column2, column3, column4 FROM (",
            );
            query.push_values(chunk, |mut row, count| {
                row.push_bind(count.key_id.as_str())
                    .push_bind(count.day)
                    .push_bind(count.allowed as i64)
                    .push_bind(count.refused as i64);
            });
            // WHERE EXISTS: a key deleted since it was counted is skipped instead of
            // failing the batch on the foreign key.
            query.push(
                ") AS counted WHERE EXISTS (SELECT 1 FROM keys WHERE keys.id = counted.column1)
                 ON CONFLICT (key_id, day) DO UPDATE
                    SET allowed = allowed + excluded.allowed, refused = refused + excluded.refused",
            );
            query.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn usage(&self, keys: &[KeyId], since_day: i32) -> StoreResult<Vec<UsageCount>> {
        let mut rows = Vec::new();
        for key in keys {
            let found = sqlx::query("SELECT day, allowed, refused FROM key_usage WHERE key_id = ? AND day >= ?")
                .bind(key.as_str())
                .bind(since_day)
                .fetch_all(&self.readers)
                .await
                .map_err(db_error)?;
            rows.extend(found.into_iter().map(|row| UsageCount {
                key_id: key.clone(),
                day: row.get("day"),
                allowed: row.get::<i64, _>("allowed") as u64,
                refused: row.get::<i64, _>("refused") as u64,
            }));
        }
        Ok(rows)
    }

    async fn list_audit(&self, filter: &AuditFilter, page: &Page) -> StoreResult<Vec<AuditEvent>> {
        let site = filter.site.as_ref().map(SiteId::as_str);
        let key = filter.key.as_ref().map(KeyId::as_str);
        let action = filter.action.map(|a| a.as_str());
        sqlx::query(
            "SELECT id, at, actor_key_id, actor_prefix, action, target_key_id, site_id, source_ip, changes
               FROM audit_events
              WHERE (? IS NULL OR site_id = ?) AND (? IS NULL OR target_key_id = ?)
                AND (? IS NULL OR action = ?) AND (? IS NULL OR id < ?)
              ORDER BY id DESC LIMIT ?",
        )
        .bind(site)
        .bind(site)
        .bind(key)
        .bind(key)
        .bind(action)
        .bind(action)
        .bind(page.after.as_deref())
        .bind(page.after.as_deref())
        .bind(page_limit(page))
        .fetch_all(&self.readers)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(event_from_row)
        .collect()
    }
}

async fn missing_or_changed(tx: &mut Transaction<'_, Sqlite>, id: &KeyId) -> StoreError {
    let exists: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT 1 FROM keys WHERE id = ?").bind(id.as_str()).fetch_optional(&mut **tx).await;
    match exists {
        Ok(Some(_)) => StoreError::Conflict("the key changed while this request was processed; retry".into()),
        Ok(None) => StoreError::NotFound,
        Err(error) => db_error(error),
    }
}

#[cfg(test)]
mod tests;
