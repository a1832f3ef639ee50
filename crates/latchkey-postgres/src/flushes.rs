//! The batched writes of what verification counts in memory (last use, usage per day),
//! one statement per batch, and the usage read back for the dashboard.

use chrono::{DateTime, Utc};
use latchkey_core::KeyId;
use latchkey_store::rows::{millis, UsageRow};
use latchkey_store::{StoreResult, UsageCount};
use sqlx::postgres::PgPool;

pub(crate) async fn record_last_used(pool: &PgPool, uses: &[(KeyId, DateTime<Utc>)]) -> StoreResult<()> {
    if uses.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = uses.iter().map(|(id, _)| id.as_str()).collect();
    let ats: Vec<i64> = uses.iter().map(|(_, at)| millis(*at)).collect();
    // MAX per id: a batch may name a key twice, and an UPDATE … FROM would apply an
    // arbitrary one of the two. GREATEST: batches from several flushes and instances may
    // arrive out of order. Rows are locked in id order so two instances flushing
    // overlapping batches cannot deadlock.
    sqlx::query(
        "WITH uses AS (
             SELECT id, MAX(at) AS at FROM UNNEST($1::text[], $2::int8[]) AS u(id, at)
              GROUP BY id
         ), locked AS MATERIALIZED (
             SELECT keys.id, uses.at FROM keys JOIN uses ON uses.id = keys.id
              ORDER BY keys.id FOR UPDATE OF keys
         )
         UPDATE keys SET last_used_at = GREATEST(COALESCE(keys.last_used_at, 0), locked.at)
           FROM locked WHERE keys.id = locked.id",
    )
    .bind(ids)
    .bind(ats)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn record_usage(pool: &PgPool, counts: &[UsageCount]) -> StoreResult<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = counts.iter().map(|c| c.key_id.as_str()).collect();
    let days: Vec<i32> = counts.iter().map(|c| c.day).collect();
    let allowed: Vec<i64> = counts.iter().map(|c| c.allowed as i64).collect();
    let refused: Vec<i64> = counts.iter().map(|c| c.refused as i64).collect();
    // The join on keys skips keys deleted since they were counted, and the GROUP BY folds
    // repeats so ON CONFLICT sees each row once.
    sqlx::query(
        "INSERT INTO key_usage (key_id, day, allowed, refused)
         SELECT u.id, u.day, SUM(u.allowed), SUM(u.refused)
           FROM UNNEST($1::text[], $2::int4[], $3::int8[], $4::int8[]) AS u(id, day, allowed, refused)
           JOIN keys ON keys.id = u.id
          GROUP BY u.id, u.day
          ORDER BY u.id, u.day
         ON CONFLICT (key_id, day) DO UPDATE
            SET allowed = key_usage.allowed + EXCLUDED.allowed, refused = key_usage.refused + EXCLUDED.refused",
    )
    .bind(ids)
    .bind(days)
    .bind(allowed)
    .bind(refused)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn usage(pool: &PgPool, keys: &[KeyId], since_day: i32) -> StoreResult<Vec<UsageCount>> {
    let ids: Vec<&str> = keys.iter().map(KeyId::as_str).collect();
    let rows: Vec<UsageRow> = sqlx::query_as(
        "SELECT key_id, day, allowed, refused FROM key_usage WHERE key_id = ANY($1::text[]) AND day >= $2",
    )
    .bind(ids)
    .bind(since_day)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(UsageRow::into_count).collect()
}
