//! The keys' SQL on SQLite. The writes whose outcome depends on what is stored run
//! through [`latchkey_store::key_writes`] on [`KeyTx`]; every statement there runs inside
//! the caller's transaction on the one writer connection, so nothing else writes between
//! a read and the write that follows it, and plain reads are exact.

use super::Tx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_core::{KeyHash, KeyId, KeyRecord};
use latchkey_store::key_writes::{KeyRows, RowsOf};
use latchkey_store::rows::{millis, Columns, KeyRow, KEY_COLUMNS};
use latchkey_store::{MasterKind, StoreError, StoreResult};
use sqlx::{Encode, Executor, QueryBuilder, Sqlite, SqlitePool, Type};

/// A writing transaction, for the key writes.
pub(crate) struct KeyTx<'t>(pub(crate) &'t mut Tx);

pub(crate) async fn insert(tx: &mut Tx, key: &KeyRecord) -> StoreResult<()> {
    let row = KeyRow::from_record(key).into_columns();
    super::insert(tx, "keys", KEY_COLUMNS, row).await.map_err(StoreError::from_key_insert)
}

/// The keys whose `column` holds `value`: on the readers, or inside the writing
/// transaction, where a plain read is exact (nothing else writes until it ends).
pub(crate) async fn select<'e, 'v, E, T>(executor: E, column: &str, value: T) -> StoreResult<Vec<KeyRow>>
where
    E: Executor<'e, Database = Sqlite>,
    T: 'v + Encode<'v, Sqlite> + Type<Sqlite> + Send,
{
    let mut query = QueryBuilder::new(format!("SELECT {KEY_COLUMNS} FROM keys WHERE {column} = "));
    query.push_bind(value);
    Ok(query.build_query_as().fetch_all(executor).await?)
}

/// The keys whose hash is one of `hashes`, in one statement on the readers (an `IN` list:
/// SQLite has no array parameter; each list length is its own cached statement).
pub(crate) async fn with_hashes(readers: &SqlitePool, hashes: &[KeyHash]) -> StoreResult<Vec<KeyRecord>> {
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = QueryBuilder::new(format!("SELECT {KEY_COLUMNS} FROM keys WHERE hash IN ("));
    let mut list = query.separated(", ");
    for hash in hashes {
        list.push_bind(hash.0.to_vec());
    }
    query.push(")");
    let rows: Vec<KeyRow> = query.build_query_as().fetch_all(readers).await?;
    rows.into_iter().map(KeyRow::into_record).collect()
}

/// The one key of a lookup by a unique column.
pub(crate) fn one(mut rows: Vec<KeyRow>) -> StoreResult<Option<KeyRecord>> {
    rows.pop().map(KeyRow::into_record).transpose()
}

#[async_trait]
impl KeyRows for KeyTx<'_> {
    async fn rows_for_update(&mut self, rows: RowsOf<'_>) -> StoreResult<Vec<KeyRow>> {
        let (column, value) = rows.column_and_value();
        select(&mut **self.0, column, value).await
    }

    async fn another_master(&mut self, key: &KeyId, at: DateTime<Utc>, kind: MasterKind) -> StoreResult<bool> {
        // A lasting Master: no expiry, no IP allowlist (absent from `options` when empty).
        let lasting = match kind {
            MasterKind::Usable => "",
            MasterKind::Lasting => "AND expires_at IS NULL AND json_extract(options, '$.ip_allowlist') IS NULL",
        };
        let sql = format!(
            "SELECT COUNT(*) FROM keys WHERE permission = 'master' AND status = 'active'
               AND (expires_at IS NULL OR expires_at > ?) AND id <> ? {lasting}"
        );
        let others: i64 = sqlx::query_scalar(&sql).bind(millis(at)).bind(key.as_str()).fetch_one(&mut **self.0).await?;
        Ok(others > 0)
    }

    async fn delete_row(&mut self, id: &KeyId) -> StoreResult<Option<KeyRow>> {
        let sql = format!("DELETE FROM keys WHERE id = ? RETURNING {KEY_COLUMNS}");
        Ok(sqlx::query_as(&sql).bind(id.as_str()).fetch_optional(&mut **self.0).await?)
    }

    async fn write_row(&mut self, id: &KeyId, columns: Columns) -> StoreResult<()> {
        columns.key_update(id.as_str()).build().execute(&mut **self.0).await.map(drop).map_err(Into::into)
    }
}
