//! Rows as `(column, value)` pairs, the direction from records to SQL: what an INSERT or
//! an UPDATE writes, in one order per table. The backends write the statements around
//! them; with the `sqlx` feature [`Columns`] also binds itself into a `QueryBuilder`, so
//! neither backend lists a table's columns value by value.

use super::{AuditRow, CreditColumns, KeyRow, SiteRow};
use crate::sessions::SessionRecord;
use crate::webhooks::{DeliveryAttempt, EndpointRow};
use latchkey_core::KeyRecord;

/// The columns of `sites`, in the order [`SiteRow::into_columns`] gives them.
pub const SITE_COLUMNS: &str = "id, name, created_at";

/// The columns of `keys`, in the order [`KeyRow::into_columns`] gives them: first those
/// that never change, then those an update writes, then the credits.
pub const KEY_COLUMNS: &str = "id, site_id, prefix, hash, created_at, created_by, last_used_at, \
     name, description, permission, scopes, status, expires_at, updated_at, options, owner_id, \
     credits_remaining, credits_refill_interval, credits_refill_amount, credits_refilled_at";

/// The columns of `audit_events`, in the order [`AuditRow::into_columns`] gives them.
pub const EVENT_COLUMNS: &str =
    "id, at, actor_key_id, actor_prefix, action, target_key_id, site_id, source_ip, changes";

/// One column's value. `NULL` is `None`; a column that is never `NULL` is simply `Some`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnValue {
    Text(Option<String>),
    Integer(Option<i64>),
    Bytes(Vec<u8>),
}

/// A row, or the part of one a statement writes, as `(column, value)` pairs in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Columns(Vec<(&'static str, ColumnValue)>);

impl Columns {
    fn text(mut self, column: &'static str, value: impl Into<Option<String>>) -> Self {
        self.0.push((column, ColumnValue::Text(value.into())));
        self
    }

    fn integer(mut self, column: &'static str, value: impl Into<Option<i64>>) -> Self {
        self.0.push((column, ColumnValue::Integer(value.into())));
        self
    }

    fn bytes(mut self, column: &'static str, value: Vec<u8>) -> Self {
        self.0.push((column, ColumnValue::Bytes(value)));
        self
    }

    fn and(mut self, more: Columns) -> Self {
        self.0.extend(more.0);
        self
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().map(|(name, _)| *name)
    }

    pub fn values(self) -> impl Iterator<Item = ColumnValue> {
        self.0.into_iter().map(|(_, value)| value)
    }
}

impl SessionRecord {
    pub fn into_columns(self) -> Columns {
        Columns::default()
            .bytes("id_hash", self.id_hash.to_vec())
            .bytes("key_hash", self.key_hash.0.to_vec())
            .text("key_prefix", self.key_prefix)
            .text("csrf_token", self.csrf_token)
            .integer("created_at", super::millis(self.created_at))
            .integer("last_seen_at", super::millis(self.last_seen_at))
            .text("state", self.state)
            .integer("version", self.version)
    }
}

impl EndpointRow {
    pub fn into_columns(self) -> Columns {
        let (id, site_id, created_at, failing_since) =
            (self.id.clone(), self.site_id.clone(), self.created_at, self.failing_since);
        Columns::default()
            .text("id", id)
            .text("site_id", site_id)
            .and(self.into_changes())
            .integer("failing_since", failing_since)
            .integer("created_at", created_at)
    }

    /// What an edit of the endpoint writes.
    pub fn into_changes(self) -> Columns {
        Columns::default()
            .text("url", self.url)
            .text("description", self.description)
            .text("events", self.events)
            .text("secret", self.secret)
            .text("previous_secret", self.previous_secret)
            .integer("previous_secret_expires_at", self.previous_secret_expires_at)
            .integer("updated_at", self.updated_at)
    }
}

impl DeliveryAttempt {
    /// The attempt's columns but `id`, which the database assigns.
    pub fn into_columns(self) -> Columns {
        Columns::default()
            .text("endpoint_id", self.endpoint_id)
            .text("event_id", self.event_id)
            .text("event_type", self.event_type)
            .integer("attempt", i64::from(self.attempt))
            .integer("at", super::millis(self.at))
            .integer("status_code", self.status_code.map(i64::from))
            .text("error", self.error)
            .integer("duration_ms", i64::try_from(self.duration_ms).unwrap_or(i64::MAX))
            .integer("next_retry_at", self.next_retry_at.map(super::millis))
    }
}

impl SiteRow {
    pub fn into_columns(self) -> Columns {
        Columns::default().text("id", self.id).text("name", self.name).integer("created_at", self.created_at)
    }
}

impl KeyRow {
    /// Every column, in [`KEY_COLUMNS`] order: what an insert writes.
    pub fn into_columns(mut self) -> Columns {
        let changes = self.take_changes();
        Columns::default()
            .text("id", self.id)
            .text("site_id", self.site_id)
            .text("prefix", self.prefix)
            .bytes("hash", self.hash)
            .integer("created_at", self.created_at)
            .text("created_by", self.created_by)
            .integer("last_used_at", self.last_used_at)
            .and(changes)
            .and(self.credits.into_columns())
    }

    /// What an update from the caller's `before` to `after` writes. Never the identity
    /// (id, site, hash, creation), nor `last_used_at` (only `record_last_used` moves it).
    /// The credits only when the change is about them: `before` is what the caller read,
    /// and a spend committed since then would otherwise be undone.
    pub fn update_columns(before: &KeyRecord, after: &KeyRecord) -> Columns {
        let mut row = KeyRow::from_record(after);
        let changes = row.take_changes();
        if before.options.credits == after.options.credits {
            changes
        } else {
            changes.and(row.credits.into_columns())
        }
    }

    /// Moves out the fields an update writes, leaving the others to the caller.
    fn take_changes(&mut self) -> Columns {
        Columns::default()
            .text("name", std::mem::take(&mut self.name))
            .text("description", self.description.take())
            .text("permission", std::mem::take(&mut self.permission))
            .text("scopes", std::mem::take(&mut self.scopes))
            .text("status", std::mem::take(&mut self.status))
            .integer("expires_at", self.expires_at)
            .integer("updated_at", self.updated_at)
            .text("options", std::mem::take(&mut self.options))
            .text("owner_id", self.owner_id.take())
    }
}

impl CreditColumns {
    pub fn into_columns(self) -> Columns {
        Columns::default()
            .integer("credits_remaining", self.credits_remaining)
            .text("credits_refill_interval", self.credits_refill_interval)
            .integer("credits_refill_amount", self.credits_refill_amount)
            .integer("credits_refilled_at", self.credits_refilled_at)
    }

    /// What a spend writes: the balance and when it was last refilled. The refill rule
    /// itself is the key's setting, which a spend never changes.
    pub fn into_balance(self) -> Columns {
        Columns::default()
            .integer("credits_remaining", self.credits_remaining)
            .integer("credits_refilled_at", self.credits_refilled_at)
    }
}

impl AuditRow {
    pub fn into_columns(self) -> Columns {
        Columns::default()
            .text("id", self.id)
            .integer("at", self.at)
            .text("actor_key_id", self.actor_key_id)
            .text("actor_prefix", self.actor_prefix)
            .text("action", self.action)
            .text("target_key_id", self.target_key_id)
            .text("site_id", self.site_id)
            .text("source_ip", self.source_ip)
            .text("changes", self.changes)
    }
}

#[cfg(feature = "sqlx")]
mod binding {
    use super::{ColumnValue, Columns};
    use sqlx::{Arguments, Database, Encode, QueryBuilder, Type};

    /// A database whose driver binds every kind of [`ColumnValue`]: SQLite and PostgreSQL
    /// both do. One bound for the helpers below instead of a `where` list on each.
    pub trait BindsColumns<'args>: Database {
        fn push_value(query: &mut QueryBuilder<'args, Self>, value: ColumnValue);

        /// Adds the value to a statement's arguments (see [`crate::sql::Statement`]).
        fn add_value(arguments: &mut Self::Arguments<'args>, value: ColumnValue);
    }

    impl<'args, DB: Database> BindsColumns<'args> for DB
    where
        Option<String>: Encode<'args, DB> + Type<DB>,
        Option<i64>: Encode<'args, DB> + Type<DB>,
        Vec<u8>: Encode<'args, DB> + Type<DB>,
    {
        fn push_value(query: &mut QueryBuilder<'args, DB>, value: ColumnValue) {
            match value {
                ColumnValue::Text(text) => query.push_bind(text),
                ColumnValue::Integer(number) => query.push_bind(number),
                ColumnValue::Bytes(bytes) => query.push_bind(bytes),
            };
        }

        fn add_value(arguments: &mut DB::Arguments<'args>, value: ColumnValue) {
            // Text, integers and bytes encode in both drivers whatever their value.
            let added = match value {
                ColumnValue::Text(text) => arguments.add(text),
                ColumnValue::Integer(number) => arguments.add(number),
                ColumnValue::Bytes(bytes) => arguments.add(bytes),
            };
            added.expect("a text, integer or bytes value always encodes");
        }
    }

    impl Columns {
        /// `(value, …)`: one row of an INSERT's `VALUES`, in column order.
        pub fn push_values<'args, DB: BindsColumns<'args>>(self, query: &mut QueryBuilder<'args, DB>) {
            query.push("(");
            for (index, value) in self.values().enumerate() {
                if index > 0 {
                    query.push(", ");
                }
                DB::push_value(query, value);
            }
            query.push(")");
        }

        /// `UPDATE keys SET column = value, … WHERE id = ?`: the one statement that reads the
        /// same in both dialects, so it is built once (the backends run it).
        pub fn key_update<'args, DB: BindsColumns<'args>>(self, id: &'args str) -> QueryBuilder<'args, DB>
        where
            &'args str: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
        {
            let mut update = QueryBuilder::new("UPDATE keys SET ");
            self.push_assignments(&mut update);
            update.push(" WHERE id = ").push_bind(id);
            update
        }

        /// `column = value, …`: the assignments of an UPDATE's `SET`.
        pub fn push_assignments<'args, DB: BindsColumns<'args>>(self, query: &mut QueryBuilder<'args, DB>) {
            for (index, (column, value)) in self.0.into_iter().enumerate() {
                query.push(if index > 0 { ", " } else { "" }).push(column).push(" = ");
                DB::push_value(query, value);
            }
        }
    }
}

#[cfg(feature = "sqlx")]
pub use binding::BindsColumns;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{new_key, new_site};
    use latchkey_core::{Actor, AuditAction, AuditEvent, Permission};

    fn listed(list: &str) -> Vec<&str> {
        list.split(',').map(str::trim).collect()
    }

    #[test]
    fn every_row_gives_its_columns_in_the_order_of_the_column_list() {
        let site = new_site("columns");
        let key = new_key(Permission::Read, Some(&site.id));
        let event = AuditEvent::new(&Actor::system(), AuditAction::KeyCreated, key.created_at);
        let names = |columns: Columns| columns.names().collect::<Vec<_>>();
        assert_eq!(names(SiteRow::from_site(&site).into_columns()), listed(SITE_COLUMNS));
        assert_eq!(names(KeyRow::from_record(&key).into_columns()), listed(KEY_COLUMNS));
        assert_eq!(names(AuditRow::from_event(&event).into_columns()), listed(EVENT_COLUMNS));
        let credits = names(CreditColumns::of(None).into_columns());
        assert_eq!(credits, listed(KEY_COLUMNS)[listed(KEY_COLUMNS).len() - 4..]);
    }

    #[test]
    fn an_update_writes_the_credits_only_when_the_change_is_about_them() {
        let before = new_key(Permission::Read, None);
        let renamed = KeyRecord { description: None, ..before.clone() };
        let mut limited = before.clone();
        limited.options.credits = Some(latchkey_core::Credits { remaining: 5, refill: None, refilled_at: None });
        let names = |after: &KeyRecord| KeyRow::update_columns(&before, after).names().collect::<Vec<_>>();
        let plain = names(&renamed);
        assert!(!plain.iter().any(|name| name.starts_with("credits_")), "{plain:?}");
        assert!(!plain.contains(&"id") && !plain.contains(&"last_used_at"), "{plain:?}");
        assert_eq!(names(&limited).len(), plain.len() + 4);
    }
}
