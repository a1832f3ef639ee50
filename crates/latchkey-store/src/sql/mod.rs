//! What the two SQL backends share beyond rows: an engine is a pool that statements run
//! on, and the statements that read the same in SQLite's and PostgreSQL's SQL are written
//! here once, as [`Statement`]s (SQL and values, numbered in each dialect's style when
//! run). What is the same in both is implemented here once, for any [`SqlEngine`]:
//! dashboard sessions, and webhook endpoints, the outbox and the delivery log but for the
//! claiming and finishing of deliveries, which each backend does its own way
//! ([`DeliveryQueue`](crate::webhooks::DeliveryQueue)).

mod sessions;
mod webhooks;

pub use webhooks::{attempt_insert, claimed_delivery, record_event, select_endpoint, select_event};

use crate::rows::{BindsColumns, ColumnValue, Columns};
use sqlx::{Arguments, Database, Executor, FromRow, IntoArguments, Pool};

/// A SQL backend as the shared code sees it.
pub trait SqlEngine: Send + Sync + 'static {
    type Db: Database;

    /// Where writes go, and reads that must see the latest write (SQLite's one writer
    /// connection; PostgreSQL's pool).
    fn writes(&self) -> &Pool<Self::Db>;

    /// Where reads that may lag a write by a moment go (SQLite's readers).
    fn reads(&self) -> &Pool<Self::Db>;

    /// SQL run before an event is written, inside its transaction, so that events are
    /// numbered in commit order (PostgreSQL: an advisory lock; SQLite's single writer
    /// needs none).
    const EVENT_ORDER_LOCK: Option<&'static str>;

    /// How many rows a statement changed: each driver has its own result type.
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;
}

/// A statement: pieces of SQL with a value between each two, owned and of no dialect, so
/// that shared code can build it and hand it around (sqlx's `QueryBuilder` borrows for
/// its lifetime, which generic code cannot shorten). Run, it writes each value's
/// placeholder in the dialect's style (`?` or `$n`).
#[derive(Clone, Debug)]
pub struct Statement {
    /// One more piece than values: `sql[0] values[0] sql[1] values[1] … sql[n]`.
    sql: Vec<String>,
    values: Vec<ColumnValue>,
}

impl Statement {
    pub fn new(sql: &str) -> Self {
        Self { sql: vec![sql.to_owned()], values: Vec::new() }
    }

    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.last_mut().expect("a statement has a first piece").push_str(sql);
        self
    }

    pub fn value(&mut self, value: ColumnValue) -> &mut Self {
        self.values.push(value);
        self.sql.push(String::new());
        self
    }

    pub fn text(&mut self, value: impl Into<Option<String>>) -> &mut Self {
        self.value(ColumnValue::Text(value.into()))
    }

    pub fn integer(&mut self, value: impl Into<Option<i64>>) -> &mut Self {
        self.value(ColumnValue::Integer(value.into()))
    }

    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.value(ColumnValue::Bytes(value.to_vec()))
    }

    /// Appends another statement, SQL and values, where this one stands.
    pub fn append(&mut self, other: Statement) -> &mut Self {
        let mut pieces = other.sql.into_iter();
        self.push(&pieces.next().unwrap_or_default());
        self.sql.extend(pieces);
        self.values.extend(other.values);
        self
    }

    /// `value, …` in column order.
    pub fn values_of(&mut self, columns: Columns) -> &mut Self {
        for (index, value) in columns.values().enumerate() {
            self.push(if index > 0 { ", " } else { "" }).value(value);
        }
        self
    }

    /// `INSERT INTO table (column, …) VALUES (value, …)`.
    pub fn insert(table: &str, columns: Columns) -> Self {
        let names = columns.names().collect::<Vec<_>>().join(", ");
        let mut insert = Self::new(&format!("INSERT INTO {table} ({names}) VALUES ("));
        insert.values_of(columns).push(")");
        insert
    }

    /// `UPDATE table SET column = value, … WHERE id = id`.
    pub fn update(table: &str, columns: Columns, id: &str) -> Self {
        let mut update = Self::new(&format!("UPDATE {table} SET "));
        let names = columns.names().collect::<Vec<_>>();
        for (index, (name, value)) in names.into_iter().zip(columns.values()).enumerate() {
            update.push(if index > 0 { ", " } else { "" }).push(name).push(" = ").value(value);
        }
        update.push(" WHERE id = ").text(id.to_owned());
        update
    }

    /// The SQL with `DB`'s placeholders, and the values as `DB`'s arguments.
    fn into_parts<'q, DB: BindsColumns<'q>>(self) -> (String, DB::Arguments<'q>) {
        let mut arguments = DB::Arguments::default();
        let mut pieces = self.sql.into_iter();
        let mut sql = pieces.next().unwrap_or_default();
        for (value, piece) in self.values.into_iter().zip(pieces) {
            DB::add_value(&mut arguments, value);
            arguments.format_placeholder(&mut sql).expect("writing to a String");
            sql.push_str(&piece);
        }
        (sql, arguments)
    }

    pub async fn execute<'c, DB, E>(self, executor: E) -> Result<DB::QueryResult, sqlx::Error>
    where
        DB: Database + for<'a> BindsColumns<'a>,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
        E: Executor<'c, Database = DB>,
    {
        let (sql, arguments) = self.into_parts::<DB>();
        sqlx::query_with(&sql, arguments).execute(executor).await
    }

    /// The rows, as `O`s (a lookup by key: `.into_iter().next()`).
    pub async fn fetch_all<'c, DB, E, O>(self, executor: E) -> Result<Vec<O>, sqlx::Error>
    where
        DB: Database + for<'a> BindsColumns<'a>,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
        E: Executor<'c, Database = DB>,
        O: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
    {
        let (sql, arguments) = self.into_parts::<DB>();
        sqlx::query_as_with(&sql, arguments).fetch_all(executor).await
    }
}
