//! Dashboard sessions on either SQL engine: every statement reads the same in both dialects.

use super::{SqlEngine, Statement};
use crate::rows::{millis, BindsColumns};
use crate::sessions::{SessionChange, SessionRecord, SessionRow, SessionRows};
use crate::StoreResult;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Database, Executor, FromRow, IntoArguments};

#[async_trait]
impl<E> SessionRows for E
where
    E: SqlEngine,
    E::Db: for<'a> BindsColumns<'a>,
    for<'c> &'c mut <E::Db as Database>::Connection: Executor<'c, Database = E::Db>,
    for<'q> <E::Db as Database>::Arguments<'q>: IntoArguments<'q, E::Db>,
    SessionRow: for<'r> FromRow<'r, <E::Db as Database>::Row>,
{
    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()> {
        Statement::insert("dashboard_sessions", session.clone().into_columns()).execute(self.writes()).await?;
        Ok(())
    }

    async fn find_session(&self, id_hash: &[u8; 32]) -> StoreResult<Option<SessionRecord>> {
        // The writes' pool: a session changed a moment ago (a claimed form) must be read
        // as it is now.
        let mut find = Statement::new("SELECT * FROM dashboard_sessions WHERE id_hash = ");
        find.bytes(id_hash);
        let row: Option<SessionRow> = find.fetch_all(self.writes()).await?.into_iter().next();
        row.map(SessionRow::into_record).transpose()
    }

    async fn update_session(&self, id_hash: &[u8; 32], change: SessionChange<'_>) -> StoreResult<bool> {
        let SessionChange { version, state, last_seen_at } = change;
        let mut update = Statement::new("UPDATE dashboard_sessions SET state = ");
        update.text(state.to_owned()).push(", last_seen_at = ").integer(millis(last_seen_at));
        update.push(", version = version + 1 WHERE id_hash = ").bytes(id_hash).push(" AND version = ").integer(version);
        let updated = update.execute(self.writes()).await?;
        Ok(E::rows_affected(&updated) == 1)
    }

    async fn delete_session(&self, id_hash: &[u8; 32]) -> StoreResult<()> {
        let mut delete = Statement::new("DELETE FROM dashboard_sessions WHERE id_hash = ");
        delete.bytes(id_hash);
        delete.execute(self.writes()).await?;
        Ok(())
    }

    async fn prune_sessions(&self, idle_since: DateTime<Utc>) -> StoreResult<u64> {
        let mut prune = Statement::new("DELETE FROM dashboard_sessions WHERE last_seen_at < ");
        prune.integer(millis(idle_since));
        let pruned = prune.execute(self.writes()).await?;
        Ok(E::rows_affected(&pruned))
    }
}
