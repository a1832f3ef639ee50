//! The keys' SQL on PostgreSQL, where the writers of several instances really run at
//! once (READ COMMITTED). The writes whose outcome depends on what is stored run through
//! [`latchkey_store::key_writes`] on [`KeyTx`], which locks every row it reads
//! (`FOR UPDATE`), so the row a decision is made on is the row then written, and counts
//! the Master keys under an advisory lock.

use super::{push_filter, push_page, Tx};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_core::{KeyHash, KeyId, KeyRecord, SiteId};
use latchkey_store::key_writes::{KeyRows, RowsOf};
use latchkey_store::rows::{millis, Columns, KeyRow, KEY_COLUMNS};
use latchkey_store::{KeyFilter, MasterKind, Page, StoreResult};
use sqlx::postgres::PgPool;
use sqlx::{Encode, Postgres, QueryBuilder, Type};

/// Advisory locks in the two-integer key space, which never collides with sqlx's
/// single-bigint migration lock. The second integer is a hash of the schema, so stores in
/// different schemas of one database do not wait for each other.
const LAST_MASTER_LOCK: i32 = 0x4c4b_0001;

/// The key whose `column` (`id` or `hash`, both unique) holds `value`.
pub(crate) async fn find<'a, T>(pool: &PgPool, column: &str, value: T) -> StoreResult<Option<KeyRecord>>
where
    T: 'a + Encode<'a, Postgres> + Type<Postgres> + Send,
{
    let mut query = QueryBuilder::new(format!("SELECT {KEY_COLUMNS} FROM keys WHERE {column} = "));
    query.push_bind(value);
    let row: Option<KeyRow> = query.build_query_as().fetch_optional(pool).await?;
    row.map(KeyRow::into_record).transpose()
}

/// The keys whose hash is one of `hashes`: one statement, the hashes as one `bytea[]`.
pub(crate) async fn with_hashes(pool: &PgPool, hashes: &[KeyHash]) -> StoreResult<Vec<KeyRecord>> {
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes: Vec<&[u8]> = hashes.iter().map(|hash| &hash.0[..]).collect();
    let rows: Vec<KeyRow> = sqlx::query_as(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE hash = ANY($1)"))
        .bind(hashes)
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(KeyRow::into_record).collect()
}

pub(crate) async fn list(pool: &PgPool, filter: &KeyFilter, page: &Page) -> StoreResult<Vec<KeyRecord>> {
    let mut query = QueryBuilder::new(format!("SELECT {KEY_COLUMNS} FROM keys WHERE TRUE"));
    push_filter(&mut query, "site_id", "=", filter.site.as_ref().map(SiteId::as_str));
    push_filter(&mut query, "id", "<", page.after.as_deref());
    push_filter(&mut query, "owner_id", "=", filter.owner_id.as_deref());
    if let Some(since) = filter.unused_since {
        query.push(" AND COALESCE(last_used_at, created_at) < ").push_bind(millis(since));
    }
    push_page(&mut query, page);
    let rows: Vec<KeyRow> = query.build_query_as().fetch_all(pool).await?;
    rows.into_iter().map(KeyRow::into_record).collect()
}

/// A writing transaction, for the key writes.
pub(crate) struct KeyTx<'t>(pub(crate) &'t mut Tx);

#[async_trait]
impl KeyRows for KeyTx<'_> {
    /// Locked until commit: changes to these keys from any instance queue here. In id
    /// order, like `record_last_used`, so that the two cannot deadlock.
    async fn rows_for_update(&mut self, rows: RowsOf<'_>) -> StoreResult<Vec<KeyRow>> {
        let (column, value) = rows.column_and_value();
        let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE {column} = $1 ORDER BY id FOR UPDATE");
        Ok(sqlx::query_as(&sql).bind(value).fetch_all(&mut **self.0).await?)
    }

    /// Row locks cannot make this exact: two transactions each taking a *different*
    /// Master away would each find the other's still there. So the query runs under a
    /// transaction-scoped advisory lock, held until commit: under READ COMMITTED the
    /// query, a statement that starts once the lock is granted, sees what the previous
    /// holder committed. The caller holds its key's row lock already; a holder of this
    /// lock waits for no other row (it writes only the rows it locked, or inserts a new
    /// one), so taking the two in this order cannot deadlock.
    async fn another_master(&mut self, key: &KeyId, at: DateTime<Utc>, kind: MasterKind) -> StoreResult<bool> {
        let conn = &mut **self.0;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
            .bind(LAST_MASTER_LOCK)
            .execute(&mut *conn)
            .await?;
        // A lasting Master: no expiry, no IP allowlist (absent from `options` when empty).
        let lasting = match kind {
            MasterKind::Usable => "",
            MasterKind::Lasting => "AND expires_at IS NULL AND (options::jsonb -> 'ip_allowlist') IS NULL",
        };
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM keys WHERE permission = 'master' AND status = 'active'
                              AND (expires_at IS NULL OR expires_at > $1) AND id <> $2 {lasting})"
        );
        Ok(sqlx::query_scalar(&sql).bind(millis(at)).bind(key.as_str()).fetch_one(conn).await?)
    }

    async fn delete_row(&mut self, id: &KeyId) -> StoreResult<Option<KeyRow>> {
        let sql = format!("DELETE FROM keys WHERE id = $1 RETURNING {KEY_COLUMNS}");
        Ok(sqlx::query_as(&sql).bind(id.as_str()).fetch_optional(&mut **self.0).await?)
    }

    async fn write_row(&mut self, id: &KeyId, columns: Columns) -> StoreResult<()> {
        columns.key_update(id.as_str()).build().execute(&mut **self.0).await.map(drop).map_err(Into::into)
    }
}
