//! Dashboard sessions on PostgreSQL: one row each, so every instance on the database serves every session.

use super::PostgresStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_store::rows::millis;
use latchkey_store::sessions::{SessionRecord, SessionRow, SessionRows};
use latchkey_store::StoreResult;

#[async_trait]
impl SessionRows for PostgresStore {
    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO dashboard_sessions
             (id_hash, key_hash, key_prefix, csrf_token, created_at, last_seen_at, state, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&session.id_hash[..])
        .bind(&session.key_hash.0[..])
        .bind(&session.key_prefix)
        .bind(&session.csrf_token)
        .bind(millis(session.created_at))
        .bind(millis(session.last_seen_at))
        .bind(&session.state)
        .bind(session.version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_session(&self, id_hash: &[u8; 32]) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query_as::<_, SessionRow>("SELECT * FROM dashboard_sessions WHERE id_hash = $1")
            .bind(&id_hash[..])
            .fetch_optional(&self.pool)
            .await?;
        row.map(SessionRow::into_record).transpose()
    }

    async fn update_session(
        &self,
        id_hash: &[u8; 32],
        version: i64,
        state: &str,
        last_seen_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE dashboard_sessions SET state = $1, last_seen_at = $2, version = version + 1
             WHERE id_hash = $3 AND version = $4",
        )
        .bind(state)
        .bind(millis(last_seen_at))
        .bind(&id_hash[..])
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn delete_session(&self, id_hash: &[u8; 32]) -> StoreResult<()> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = $1").bind(&id_hash[..]).execute(&self.pool).await?;
        Ok(())
    }

    async fn prune_sessions(&self, idle_since: DateTime<Utc>) -> StoreResult<u64> {
        let pruned = sqlx::query("DELETE FROM dashboard_sessions WHERE last_seen_at < $1")
            .bind(millis(idle_since))
            .execute(&self.pool)
            .await?;
        Ok(pruned.rows_affected())
    }
}
