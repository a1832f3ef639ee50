//! The key writes whose outcome depends on what is stored: replacing a key (update,
//! block, rotation), deleting keys, spending credits. Written once for every backend, so
//! that the order of read, check and write, the compare-and-swap ([`expect_version`]) and
//! the no-lockout rule ([`ensure_a_master_remains`]) cannot drift apart between them.
//! Both are decided on the row as read inside the transaction, never on the caller's copy.
//!
//! A backend supplies [`KeyRows`]: the SQL of each step inside its writing transaction,
//! and whatever makes the reads exact (SQLite's single writer connection; PostgreSQL's
//! row locks, and an advisory lock around the last-Master check).

use crate::rows::{Columns, CreditColumns, KeyRow};
use crate::{ensure_a_master_remains, Audited, CreditSpend, KeyChange, MasterKind, StoreError, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_core::{AuditEvent, KeyId, KeyRecord, SiteId};

/// Which rows of `keys` a write is about.
#[derive(Clone, Copy, Debug)]
pub enum RowsOf<'a> {
    Key(&'a KeyId),
    /// Every key of the site.
    Site(&'a SiteId),
}

impl RowsOf<'_> {
    /// The column that selects the rows, and the value it holds.
    pub fn column_and_value(&self) -> (&'static str, &str) {
        match self {
            RowsOf::Key(id) => ("id", id.as_str()),
            RowsOf::Site(site) => ("site_id", site.as_str()),
        }
    }
}

/// The steps of the key writes, each run inside one writing transaction of the backend.
#[async_trait]
pub trait KeyRows: Send {
    /// The rows, read so that no other transaction changes them before this one ends.
    async fn rows_for_update(&mut self, rows: RowsOf<'_>) -> StoreResult<Vec<KeyRow>>;

    /// Deletes the key's row and returns it as it was.
    async fn delete_row(&mut self, id: &KeyId) -> StoreResult<Option<KeyRow>>;

    /// Whether a Master key other than `key` of this kind exists at `at`, in a way no other
    /// transaction can change before this one ends.
    async fn another_master(&mut self, key: &KeyId, at: DateTime<Utc>, kind: MasterKind) -> StoreResult<bool>;

    /// Writes these columns of the key's row.
    async fn write_row(&mut self, id: &KeyId, columns: Columns) -> StoreResult<()>;
}

/// The compare-and-swap of [`Store::update_key`](crate::Store::update_key), decided on the
/// key as read inside the writing transaction: `NotFound` when it is gone, `Conflict` when
/// it is not the version the caller read, whose policy decision was then made on another.
pub fn expect_version(stored: Option<KeyRecord>, read: &KeyRecord) -> StoreResult<KeyRecord> {
    match stored {
        None => Err(StoreError::NotFound),
        Some(stored) if stored.updated_at != read.updated_at => {
            Err(StoreError::Conflict("the key changed while this request was processed; retry".into()))
        }
        Some(stored) => Ok(stored),
    }
}

/// Replaces `before` with `after` if `before` is the stored version, unless that takes
/// the last usable Master away; returns the key as it was stored.
pub async fn replace_key(
    rows: &mut impl KeyRows,
    before: &KeyRecord,
    after: &Audited<'_, KeyRecord>,
) -> StoreResult<KeyRecord> {
    let stored = rows.rows_for_update(RowsOf::Key(&before.id)).await?.pop().map(KeyRow::into_record).transpose()?;
    let stored = expect_version(stored, before)?;
    let at = after.event.at;
    let (id, others) = (&stored.id, &mut *rows);
    let another = move |kind| {
        let others = others;
        others.another_master(id, at, kind)
    };
    ensure_a_master_remains(&stored, KeyChange::Replace(after.value), after.event, another).await?;
    rows.write_row(&stored.id, KeyRow::update_columns(before, after.value)).await?;
    Ok(stored)
}

/// Deletes the key, unless it is the last usable Master, and returns it as it was stored.
/// Only the id is the caller's: the rule is decided on the deleted row. A refusal comes
/// after the deletion, which the backend's transaction then rolls back.
pub async fn delete_key(rows: &mut impl KeyRows, id: &KeyId, event: &AuditEvent) -> StoreResult<KeyRecord> {
    let deleted = rows.delete_row(id).await?.ok_or(StoreError::NotFound)?.into_record()?;
    let (id, at) = (&deleted.id, event.at);
    let another = move |kind| {
        let rows = rows;
        rows.another_master(id, at, kind)
    };
    ensure_a_master_remains(&deleted, KeyChange::Delete, event, another).await?;
    Ok(deleted)
}

/// The keys of a site that is about to be deleted (its keys go with it), read locked. A
/// Master key has no site (the schema's CHECK), so the rule never refuses here; it is
/// asked all the same, so that no key leaves without passing it.
pub async fn keys_of_deleted_site(
    rows: &mut impl KeyRows,
    site: &SiteId,
    event: &AuditEvent,
) -> StoreResult<Vec<KeyRecord>> {
    let keys = rows.rows_for_update(RowsOf::Site(site)).await?;
    let keys = keys.into_iter().map(KeyRow::into_record).collect::<StoreResult<Vec<_>>>()?;
    for key in &keys {
        let (id, at, others) = (&key.id, event.at, &mut *rows);
        let another = move |kind| {
            let others = others;
            others.another_master(id, at, kind)
        };
        ensure_a_master_remains(key, KeyChange::Delete, event, another).await?;
    }
    Ok(keys)
}

/// Spends `cost` of the key's credits at `now`, refilling first when a new period began,
/// by the core's rules. Exact because the row stays locked from the read to the write.
pub async fn spend_credits(
    rows: &mut impl KeyRows,
    key: &KeyId,
    cost: u64,
    now: DateTime<Utc>,
) -> StoreResult<CreditSpend> {
    let stored = rows.rows_for_update(RowsOf::Key(key)).await?.pop();
    // A key that is gone, or has no credits, is not limited.
    let Some(credits) = stored.map(|row| row.credits.into_credits()).transpose()?.flatten() else {
        return Ok(CreditSpend::NotLimited);
    };
    let Some(after) = credits.spend(cost, now) else {
        return Ok(CreditSpend::Exhausted);
    };
    rows.write_row(key, CreditColumns::of(Some(&after)).into_balance()).await?;
    Ok(CreditSpend::Spent { remaining: after.remaining })
}
