//! Inserts on PostgreSQL, of one row or of a million (`latchkey migrate`, benchmark
//! seeding, `POST /keys/import`): every column travels as an array and `UNNEST` zips them
//! back into rows, so the statement text (and its cached plan) is the same for any number
//! of rows, and a million keys take a hundred round trips.

use super::Tx;
use latchkey_core::{AuditEvent, KeyRecord, Site};
use latchkey_store::rows::{AuditRow, ColumnValue, Columns, KeyRow, SiteRow, EVENT_COLUMNS, KEY_COLUMNS, SITE_COLUMNS};
use latchkey_store::{StoreError, StoreResult};

/// Rows per statement: arrays of this size stay far below the protocol's message limits.
pub(crate) const IMPORT_CHUNK: usize = 10_000;

pub(crate) async fn insert_sites(tx: &mut Tx, sites: &[Site]) -> StoreResult<()> {
    let row = |site: &Site| SiteRow::from_site(site).into_columns();
    Ok(insert_rows(tx, "sites", SITE_COLUMNS, sites, row).await?)
}

pub(crate) async fn insert_keys(tx: &mut Tx, keys: &[KeyRecord]) -> StoreResult<()> {
    let row = |key: &KeyRecord| KeyRow::from_record(key).into_columns();
    insert_rows(tx, "keys", KEY_COLUMNS, keys, row).await.map_err(StoreError::from_key_insert)
}

pub(crate) async fn insert_events(tx: &mut Tx, events: &[AuditEvent]) -> StoreResult<()> {
    let row = |event: &AuditEvent| AuditRow::from_event(event).into_columns();
    Ok(insert_rows(tx, "audit_events", EVENT_COLUMNS, events, row).await?)
}

/// Inserts a row into `table` for each record; `row` gives its values in the order of
/// `columns`.
async fn insert_rows<T: Sync>(
    tx: &mut Tx,
    table: &str,
    columns: &str,
    records: &[T],
    row: fn(&T) -> Columns,
) -> Result<(), sqlx::Error> {
    for chunk in records.chunks(IMPORT_CHUNK) {
        let arrays = ColumnArray::of_rows(chunk.iter().map(row), chunk.len());
        let unnest: Vec<String> =
            arrays.iter().enumerate().map(|(at, array)| format!("${}::{}", at + 1, array.sql_type())).collect();
        let sql = format!("INSERT INTO {table} ({columns}) SELECT * FROM UNNEST({})", unnest.join(", "));
        let mut insert = sqlx::query(&sql);
        for array in arrays {
            insert = match array {
                ColumnArray::Text(texts) => insert.bind(texts),
                ColumnArray::Integer(numbers) => insert.bind(numbers),
                ColumnArray::Bytes(bytes) => insert.bind(bytes),
            };
        }
        insert.execute(&mut **tx).await?;
    }
    Ok(())
}

/// One column of a chunk of rows.
enum ColumnArray {
    Text(Vec<Option<String>>),
    Integer(Vec<Option<i64>>),
    Bytes(Vec<Vec<u8>>),
}

impl ColumnArray {
    /// The rows, column by column.
    fn of_rows(rows: impl Iterator<Item = Columns>, count: usize) -> Vec<ColumnArray> {
        let mut arrays: Vec<ColumnArray> = Vec::new();
        for row in rows {
            for (at, value) in row.values().enumerate() {
                match arrays.get_mut(at) {
                    Some(array) => array.push(value),
                    None => arrays.push(ColumnArray::starting_with(value, count)),
                }
            }
        }
        arrays
    }

    /// The array of a column whose first value is `value`.
    fn starting_with(value: ColumnValue, capacity: usize) -> Self {
        let mut array = match value {
            ColumnValue::Text(_) => ColumnArray::Text(Vec::with_capacity(capacity)),
            ColumnValue::Integer(_) => ColumnArray::Integer(Vec::with_capacity(capacity)),
            ColumnValue::Bytes(_) => ColumnArray::Bytes(Vec::with_capacity(capacity)),
        };
        array.push(value);
        array
    }

    fn push(&mut self, value: ColumnValue) {
        match (self, value) {
            (ColumnArray::Text(texts), ColumnValue::Text(text)) => texts.push(text),
            (ColumnArray::Integer(numbers), ColumnValue::Integer(number)) => numbers.push(number),
            (ColumnArray::Bytes(all), ColumnValue::Bytes(bytes)) => all.push(bytes),
            _ => unreachable!("every row of a table gives the same kind of value in each column"),
        }
    }

    fn sql_type(&self) -> &'static str {
        match self {
            ColumnArray::Text(_) => "text[]",
            ColumnArray::Integer(_) => "int8[]",
            ColumnArray::Bytes(_) => "bytea[]",
        }
    }
}
