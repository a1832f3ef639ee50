//! The batched writes of what verification counts in memory: last use and usage per
//! day. Multi-row statements: with many distinct keys a statement per key costs more CPU
//! than the requests that caused it.

use super::{commit, SqliteStore};
use chrono::{DateTime, Utc};
use latchkey_core::KeyId;
use latchkey_store::rows::{millis, UsageRow};
use latchkey_store::{StoreResult, UsageCount};
use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Sqlite};

/// Rows per statement (4 binds each, far below SQLite's variable limit).
const FLUSH_CHUNK: usize = 500;

pub(crate) async fn record_last_used(store: &SqliteStore, uses: &[(KeyId, DateTime<Utc>)]) -> StoreResult<()> {
    if uses.is_empty() {
        return Ok(());
    }
    let mut tx = store.begin().await?;
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
        query.build().execute(&mut *tx).await?;
    }
    commit(tx).await
}

pub(crate) async fn record_usage(store: &SqliteStore, counts: &[UsageCount]) -> StoreResult<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut tx = store.begin().await?;
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
        query.build().execute(&mut *tx).await?;
    }
    commit(tx).await
}

pub(crate) async fn usage(readers: &SqlitePool, keys: &[KeyId], since_day: i32) -> StoreResult<Vec<UsageCount>> {
    let mut counts = Vec::new();
    for key in keys {
        let rows: Vec<UsageRow> =
            sqlx::query_as("SELECT key_id, day, allowed, refused FROM key_usage WHERE key_id = ? AND day >= ?")
                .bind(key.as_str())
                .bind(since_day)
                .fetch_all(readers)
                .await?;
        for row in rows {
            counts.push(row.into_count()?);
        }
    }
    Ok(counts)
}
