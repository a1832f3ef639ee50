//! The PostgreSQL backend: one database shared by several server instances.
//!
//! Differences from SQLite that shape this file:
//! * Writers really run concurrently (READ COMMITTED), so the "last usable Master key"
//!   rule serializes on a transaction-scoped advisory lock instead of relying on a single
//!   writer connection.
//! * Other instances cache keys too. Every write that can stop or alter a key sends
//!   `pg_notify` inside its transaction (delivered only if it commits); [`feed`] turns
//!   those notifications into [`Invalidation`]s for the cache.
//! * Listings build their SQL per filter combination instead of `(? IS NULL OR …)`, so
//!   PostgreSQL's cached generic plans can still use the right index.

mod feed;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_core::{AuditEvent, KeyHash, KeyId, KeyRecord, Permission, Site, SiteId, SiteName};
use latchkey_store::rows::{
    millis, plan_credit_spend, AuditRow, CreditColumns, CreditPlan, KeyRow, SiteRow, KEY_COLUMNS,
};
use latchkey_store::{
    must_keep_a_master, AuditFilter, Audited, CreditSpend, ImportBatch, Invalidation, KeyFilter, Page, Store,
    StoreError, StoreResult, UsageCount,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, PgConnection, Postgres, QueryBuilder, Row, Transaction};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// sqlx's PostgreSQL migrator holds a database-wide advisory lock while it runs, so
/// instances starting together apply each migration once and wait for each other.
static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const EVENT_COLUMNS: &str = "id, at, actor_key_id, actor_prefix, action, target_key_id, site_id, source_ip, changes";

/// Per instance. Several instances share the server's `max_connections`, so stay modest.
const MAX_CONNECTIONS: u32 = 10;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows per statement in `import`: arrays of this size stay far below the protocol's
/// message limits while a million keys still take only a hundred round trips.
const IMPORT_CHUNK: usize = 10_000;
/// Enough to absorb a burst (a site deletion with many keys) while the cache catches up.
const FEED_CAPACITY: usize = 1024;

/// Advisory locks in the two-integer key space, which never collides with sqlx's
/// single-bigint migration lock. The second integer is a hash of the schema, so stores in
/// different schemas of one database do not wait for each other.
const LAST_MASTER_LOCK: i32 = 0x4c4b_0001;
const CREATE_SCHEMA_LOCK: i32 = 0x4c4b_0002;

/// PostgreSQL truncates identifiers and `application_name` to this many bytes.
const MAX_NAME_BYTES: usize = 63;

pub struct PostgresStore {
    pool: PgPool,
    /// `LISTEN`/`NOTIFY` channel, `latchkey_keys_<schema>`: stores in different schemas
    /// of one database (tests running in parallel) never see each other's invalidations.
    channel: String,
    listener_options: PgConnectOptions,
    listener_application_name: String,
    shutdown: watch::Sender<bool>,
    feeds: Mutex<Vec<JoinHandle<()>>>,
}

impl PostgresStore {
    /// Connects to the database at a `postgres://` URL (tables in the connection's
    /// default `search_path`) and applies the embedded migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        Self::connect(url, None).await
    }

    /// Like [`open`](Self::open), but keeps every table in `schema`, creating it if
    /// needed: each pooled connection gets `search_path` set to it.
    pub async fn open_in_schema(url: &str, schema: &str) -> StoreResult<Self> {
        if schema.is_empty() || schema.contains('\0') {
            return Err(StoreError::Unavailable(format!("invalid schema name {schema:?}")));
        }
        Self::connect(url, Some(schema)).await
    }

    async fn connect(url: &str, schema: Option<&str>) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::unavailable)?;
        let mut pool_options = PgPoolOptions::new().max_connections(MAX_CONNECTIONS).acquire_timeout(ACQUIRE_TIMEOUT);
        if let Some(schema) = schema {
            create_schema(&options, schema).await?;
            let set_search_path = format!("SET search_path TO {}", quote_ident(schema));
            pool_options = pool_options.after_connect(move |conn, _meta| {
                let set_search_path = set_search_path.clone();
                Box::pin(async move {
                    conn.execute(set_search_path.as_str()).await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options.connect_with(options.clone()).await.map_err(StoreError::unavailable)?;
        migrate(&pool).await?;

        // Named after the schema the tables really live in, however it was chosen (this
        // call, or `options=-c search_path=…` in the URL): instances sharing tables must
        // share the channel, and instances in other schemas must not.
        let tables_schema: Option<String> =
            sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.map_err(StoreError::unavailable)?;
        let tables_schema =
            tables_schema.ok_or_else(|| StoreError::Unavailable("no schema on the search_path".into()))?;
        let channel = truncate(format!("latchkey_keys_{tables_schema}"));
        let listener_application_name = truncate(printable(&format!("latchkey-listener-{tables_schema}")));
        Ok(Self {
            pool,
            channel,
            listener_options: options.application_name(&listener_application_name),
            listener_application_name,
            shutdown: watch::channel(false).0,
            feeds: Mutex::new(Vec::new()),
        })
    }

    /// The `application_name` of this store's `LISTEN` connections,
    /// `latchkey-listener-<schema>`, by which they can be found in `pg_stat_activity`.
    pub fn listener_application_name(&self) -> &str {
        &self.listener_application_name
    }

    /// Stops the invalidation feeds and closes every connection.
    pub async fn close(&self) {
        self.shutdown.send_replace(true);
        let feeds = std::mem::take(&mut *self.feeds.lock().unwrap_or_else(|p| p.into_inner()));
        for feed in feeds {
            let _ = feed.await;
        }
        self.pool.close().await;
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(StoreError::unavailable)
    }

    /// Queues an invalidation for each key, sent by PostgreSQL when `tx` commits.
    async fn notify(&self, tx: &mut Transaction<'_, Postgres>, hashes: &[KeyHash]) -> StoreResult<()> {
        if hashes.is_empty() {
            return Ok(());
        }
        let payloads: Vec<String> = hashes.iter().map(feed::hash_hex).collect();
        sqlx::query("SELECT pg_notify($1, payload) FROM UNNEST($2::text[]) AS payload")
            .bind(&self.channel)
            .bind(payloads)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Feeds hold their own connections; without this they would outlive the store
        // until their receivers are dropped.
        self.shutdown.send_replace(true);
    }
}

/// `CREATE SCHEMA IF NOT EXISTS` is not safe against itself (two sessions can both
/// decide to create), so concurrent openers serialize on an advisory lock.
async fn create_schema(options: &PgConnectOptions, schema: &str) -> StoreResult<()> {
    let mut conn = PgConnection::connect_with(options).await.map_err(StoreError::unavailable)?;
    let result = async {
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, 0)").bind(CREATE_SCHEMA_LOCK).execute(&mut *tx).await?;
        tx.execute(format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)).as_str()).await?;
        tx.commit().await
    }
    .await;
    let _ = conn.close().await;
    result.map_err(StoreError::unavailable)
}

async fn migrate(pool: &PgPool) -> StoreResult<()> {
    let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
    let result = MIGRATIONS.run(&mut *conn).await;
    if result.is_err() {
        // The migrator's session-level lock is not released when it fails midway; never
        // hand that connection to anyone else.
        conn.close_on_drop();
    }
    result.map_err(StoreError::unavailable)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What PostgreSQL would keep of an over-long name, cut at a character boundary.
fn truncate(mut name: String) -> String {
    if name.len() > MAX_NAME_BYTES {
        let mut end = MAX_NAME_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// PostgreSQL rewrites non-ASCII characters of `application_name`; do it first so the
/// name we report is the name it shows.
fn printable(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_graphic() { c } else { '_' }).collect()
}

fn db_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
        _ => StoreError::unavailable(error),
    }
}

/// For key inserts: the only foreign key is the site, so a violation means "no such site".
fn key_insert_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => db_error(error),
    }
}

fn site_from_row(row: PgRow) -> StoreResult<Site> {
    SiteRow { id: row.get("id"), name: row.get("name"), created_at: row.get("created_at") }.into_site()
}

fn key_from_row(row: PgRow) -> StoreResult<KeyRecord> {
    KeyRow {
        id: row.get("id"),
        site_id: row.get("site_id"),
        name: row.get("name"),
        description: row.get("description"),
        permission: row.get("permission"),
        scopes: row.get("scopes"),
        status: row.get("status"),
        prefix: row.get("prefix"),
        hash: row.get("hash"),
        created_at: row.get("created_at"),
        created_by: row.get("created_by"),
        updated_at: row.get("updated_at"),
        last_used_at: row.get("last_used_at"),
        expires_at: row.get("expires_at"),
        options: row.get("options"),
        owner_id: row.get("owner_id"),
        credits_remaining: row.get("credits_remaining"),
        credits_refill_interval: row.get("credits_refill_interval"),
        credits_refill_amount: row.get("credits_refill_amount"),
        credits_refilled_at: row.get("credits_refilled_at"),
    }
    .into_record()
}

fn event_from_row(row: PgRow) -> StoreResult<AuditEvent> {
    AuditRow {
        id: row.get("id"),
        at: row.get("at"),
        actor_key_id: row.get("actor_key_id"),
        actor_prefix: row.get("actor_prefix"),
        action: row.get("action"),
        target_key_id: row.get("target_key_id"),
        site_id: row.get("site_id"),
        source_ip: row.get("source_ip"),
        changes: row.get("changes"),
    }
    .into_event()
}

async fn insert_sites(tx: &mut Transaction<'_, Postgres>, sites: &[Site]) -> StoreResult<()> {
    for chunk in sites.chunks(IMPORT_CHUNK) {
        let ids: Vec<&str> = chunk.iter().map(|s| s.id.as_str()).collect();
        let names: Vec<&str> = chunk.iter().map(|s| s.name.as_str()).collect();
        let created: Vec<i64> = chunk.iter().map(|s| millis(s.created_at)).collect();
        sqlx::query(
            "INSERT INTO sites (id, name, created_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[])",
        )
        .bind(ids)
        .bind(names)
        .bind(created)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

/// One statement per chunk: each column travels as an array and `UNNEST` zips them back
/// into rows, so the statement text (and its cached plan) is the same for any size.
async fn insert_keys(tx: &mut Transaction<'_, Postgres>, keys: &[KeyRecord]) -> StoreResult<()> {
    for chunk in keys.chunks(IMPORT_CHUNK) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut site_ids = Vec::with_capacity(chunk.len());
        let mut names = Vec::with_capacity(chunk.len());
        let mut descriptions = Vec::with_capacity(chunk.len());
        let mut permissions = Vec::with_capacity(chunk.len());
        let mut scopes = Vec::with_capacity(chunk.len());
        let mut statuses = Vec::with_capacity(chunk.len());
        let mut prefixes = Vec::with_capacity(chunk.len());
        let mut hashes = Vec::with_capacity(chunk.len());
        let mut created_ats = Vec::with_capacity(chunk.len());
        let mut created_bys = Vec::with_capacity(chunk.len());
        let mut updated_ats = Vec::with_capacity(chunk.len());
        let mut last_used_ats = Vec::with_capacity(chunk.len());
        let mut expires_ats = Vec::with_capacity(chunk.len());
        let mut options = Vec::with_capacity(chunk.len());
        let mut owner_ids = Vec::with_capacity(chunk.len());
        let mut credits_remaining = Vec::with_capacity(chunk.len());
        let mut credits_intervals = Vec::with_capacity(chunk.len());
        let mut credits_amounts = Vec::with_capacity(chunk.len());
        let mut credits_refilled = Vec::with_capacity(chunk.len());
        for key in chunk {
            let row = KeyRow::from_record(key);
            ids.push(row.id);
            site_ids.push(row.site_id);
            names.push(row.name);
            descriptions.push(row.description);
            permissions.push(row.permission);
            scopes.push(row.scopes);
            statuses.push(row.status);
            prefixes.push(row.prefix);
            hashes.push(row.hash);
            created_ats.push(row.created_at);
            created_bys.push(row.created_by);
            updated_ats.push(row.updated_at);
            last_used_ats.push(row.last_used_at);
            expires_ats.push(row.expires_at);
            options.push(row.options);
            owner_ids.push(row.owner_id);
            credits_remaining.push(row.credits_remaining);
            credits_intervals.push(row.credits_refill_interval);
            credits_amounts.push(row.credits_refill_amount);
            credits_refilled.push(row.credits_refilled_at);
        }
        sqlx::query(&format!(
            "INSERT INTO keys ({KEY_COLUMNS})
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::text[], $9::bytea[], $10::int8[],
                                  $11::text[], $12::int8[], $13::int8[], $14::int8[], $15::text[],
                                  $16::text[], $17::int8[], $18::text[], $19::int8[], $20::int8[])"
        ))
        .bind(ids)
        .bind(site_ids)
        .bind(names)
        .bind(descriptions)
        .bind(permissions)
        .bind(scopes)
        .bind(statuses)
        .bind(prefixes)
        .bind(hashes)
        .bind(created_ats)
        .bind(created_bys)
        .bind(updated_ats)
        .bind(last_used_ats)
        .bind(expires_ats)
        .bind(options)
        .bind(owner_ids)
        .bind(credits_remaining)
        .bind(credits_intervals)
        .bind(credits_amounts)
        .bind(credits_refilled)
        .execute(&mut **tx)
        .await
        .map_err(key_insert_error)?;
    }
    Ok(())
}

async fn insert_events(tx: &mut Transaction<'_, Postgres>, events: &[AuditEvent]) -> StoreResult<()> {
    for chunk in events.chunks(IMPORT_CHUNK) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut ats = Vec::with_capacity(chunk.len());
        let mut actor_key_ids = Vec::with_capacity(chunk.len());
        let mut actor_prefixes = Vec::with_capacity(chunk.len());
        let mut actions = Vec::with_capacity(chunk.len());
        let mut target_key_ids = Vec::with_capacity(chunk.len());
        let mut site_ids = Vec::with_capacity(chunk.len());
        let mut source_ips = Vec::with_capacity(chunk.len());
        let mut changes = Vec::with_capacity(chunk.len());
        for event in chunk {
            let row = AuditRow::from_event(event);
            ids.push(row.id);
            ats.push(row.at);
            actor_key_ids.push(row.actor_key_id);
            actor_prefixes.push(row.actor_prefix);
            actions.push(row.action);
            target_key_ids.push(row.target_key_id);
            site_ids.push(row.site_id);
            source_ips.push(row.source_ip);
            changes.push(row.changes);
        }
        sqlx::query(&format!(
            "INSERT INTO audit_events ({EVENT_COLUMNS})
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::text[], $9::text[])"
        ))
        .bind(ids)
        .bind(ats)
        .bind(actor_key_ids)
        .bind(actor_prefixes)
        .bind(actions)
        .bind(target_key_ids)
        .bind(site_ids)
        .bind(source_ips)
        .bind(changes)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

async fn insert_key(tx: &mut Transaction<'_, Postgres>, key: &KeyRecord) -> StoreResult<()> {
    let row = KeyRow::from_record(key);
    sqlx::query(&format!(
        "INSERT INTO keys ({KEY_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
    ))
    .bind(row.id)
    .bind(row.site_id)
    .bind(row.name)
    .bind(row.description)
    .bind(row.permission)
    .bind(row.scopes)
    .bind(row.status)
    .bind(row.prefix)
    .bind(row.hash)
    .bind(row.created_at)
    .bind(row.created_by)
    .bind(row.updated_at)
    .bind(row.last_used_at)
    .bind(row.expires_at)
    .bind(row.options)
    .bind(row.owner_id)
    .bind(row.credits_remaining)
    .bind(row.credits_refill_interval)
    .bind(row.credits_refill_amount)
    .bind(row.credits_refilled_at)
    .execute(&mut **tx)
    .await
    .map_err(key_insert_error)?;
    Ok(())
}

async fn insert_event(tx: &mut Transaction<'_, Postgres>, event: &AuditEvent) -> StoreResult<()> {
    let row = AuditRow::from_event(event);
    sqlx::query(&format!("INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
        .bind(row.id)
        .bind(row.at)
        .bind(row.actor_key_id)
        .bind(row.actor_prefix)
        .bind(row.action)
        .bind(row.target_key_id)
        .bind(row.site_id)
        .bind(row.source_ip)
        .bind(row.changes)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Serializes every transaction that may take a usable Master key away. Taken before
/// the count and held until commit: under READ COMMITTED each statement sees what was
/// committed before it started, so the second of two such transactions counts after
/// the first has committed and cannot also conclude "there is another one".
async fn lock_masters(tx: &mut Transaction<'_, Postgres>) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
        .bind(LAST_MASTER_LOCK)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Refuses when no Master key other than `key` is usable at `now`. Only meaningful after
/// [`lock_masters`] in the same transaction.
async fn ensure_other_master(tx: &mut Transaction<'_, Postgres>, key: &KeyId, now: DateTime<Utc>) -> StoreResult<()> {
    let others: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM keys WHERE permission = 'master' AND status = 'active'
                          AND (expires_at IS NULL OR expires_at > $1) AND id <> $2)",
    )
    .bind(millis(now))
    .bind(key.as_str())
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?;
    if others {
        Ok(())
    } else {
        Err(StoreError::LastMaster)
    }
}

async fn missing_or_changed(tx: &mut Transaction<'_, Postgres>, id: &KeyId) -> StoreError {
    let exists: Result<Option<i32>, _> =
        sqlx::query_scalar("SELECT 1 FROM keys WHERE id = $1").bind(id.as_str()).fetch_optional(&mut **tx).await;
    match exists {
        Ok(Some(_)) => StoreError::Conflict("the key changed while this request was processed; retry".into()),
        Ok(None) => StoreError::NotFound,
        Err(error) => db_error(error),
    }
}

fn page_limit(page: &Page) -> i64 {
    i64::from(page.limit.max(1))
}

/// Appends `AND <column> <op> $n` for a filter that is set; nothing otherwise.
/// Replaces the mutable fields of `before` with those of `after` if the row still has
/// `before`'s version (compare-and-swap), keeping the no-lockout rule; returns the key's
/// hash for the notification. Credits are written only when the change is about them,
/// so a concurrent spend is never undone.
async fn replace_key(
    tx: &mut Transaction<'_, Postgres>,
    before: &KeyRecord,
    after: &Audited<'_, KeyRecord>,
) -> StoreResult<KeyHash> {
    let at = after.event.at;
    // `before` is the stored version whenever the compare-and-swap below succeeds, so
    // deciding on it is deciding on the row that gets replaced.
    if before.is_usable_master_at(at) && !after.value.is_usable_master_at(at) && must_keep_a_master(after.event) {
        lock_masters(tx).await?;
        ensure_other_master(tx, &before.id, at).await?;
    }
    let row = KeyRow::from_record(after.value);
    let updated: Option<Vec<u8>> = sqlx::query_scalar(
        "UPDATE keys SET name = $1, description = $2, permission = $3, scopes = $4,
                status = $5, expires_at = $6, updated_at = $7, options = $8, owner_id = $9
          WHERE id = $10 AND updated_at = $11
      RETURNING hash",
    )
    .bind(row.name)
    .bind(row.description)
    .bind(row.permission)
    .bind(row.scopes)
    .bind(row.status)
    .bind(row.expires_at)
    .bind(row.updated_at)
    .bind(row.options)
    .bind(row.owner_id)
    .bind(before.id.as_str())
    .bind(millis(before.updated_at))
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?;
    let Some(hash) = updated else {
        return Err(missing_or_changed(tx, &before.id).await);
    };
    if before.options.credits != after.value.options.credits {
        sqlx::query(
            "UPDATE keys SET credits_remaining = $1, credits_refill_interval = $2, credits_refill_amount = $3,
                    credits_refilled_at = $4 WHERE id = $5",
        )
        .bind(row.credits_remaining)
        .bind(row.credits_refill_interval)
        .bind(row.credits_refill_amount)
        .bind(row.credits_refilled_at)
        .bind(before.id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    KeyHash::from_slice(&hash).ok_or_else(|| StoreError::Unavailable("stored data is not valid: hash".into()))
}

fn push_filter<'a>(query: &mut QueryBuilder<'a, Postgres>, column: &str, op: &str, value: Option<&'a str>) {
    if let Some(value) = value {
        query.push(format_args!(" AND {column} {op} ")).push_bind(value);
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn shared_by_instances(&self) -> bool {
        true
    }

    async fn has_no_keys(&self) -> StoreResult<bool> {
        sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM keys)").fetch_one(&self.pool).await.map_err(db_error)
    }

    async fn create_site(&self, site: Audited<'_, Site>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_sites(&mut tx, std::slice::from_ref(site.value)).await?;
        insert_event(&mut tx, site.event).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn get_site(&self, id: &SiteId) -> StoreResult<Option<Site>> {
        sqlx::query("SELECT id, name, created_at FROM sites WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .map(site_from_row)
            .transpose()
    }

    async fn list_sites(&self, page: &Page) -> StoreResult<Vec<Site>> {
        let mut query = QueryBuilder::new("SELECT id, name, created_at FROM sites WHERE TRUE");
        push_filter(&mut query, "id", "<", page.after.as_deref());
        query.push(" ORDER BY id DESC LIMIT ").push_bind(page_limit(page));
        query.build().fetch_all(&self.pool).await.map_err(db_error)?.into_iter().map(site_from_row).collect()
    }

    async fn rename_site(&self, id: &SiteId, name: Audited<'_, SiteName>) -> StoreResult<Site> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("UPDATE sites SET name = $1 WHERE id = $2 RETURNING id, name, created_at")
            .bind(name.value.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        insert_event(&mut tx, name.event).await?;
        tx.commit().await.map_err(db_error)?;
        site_from_row(row)
    }

    async fn delete_site(&self, id: &SiteId, event: &AuditEvent) -> StoreResult<Vec<KeyRecord>> {
        let mut tx = self.begin().await?;
        // Locking the site first blocks new keys for it (their foreign-key check waits),
        // so the keys read next are exactly the keys the cascade deletes.
        sqlx::query("SELECT 1 FROM sites WHERE id = $1 FOR UPDATE")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)?;
        // In id order, like `record_last_used`, so the two cannot deadlock.
        let keys = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE site_id = $1 ORDER BY id FOR UPDATE"))
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(key_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        sqlx::query("DELETE FROM sites WHERE id = $1").bind(id.as_str()).execute(&mut *tx).await.map_err(db_error)?;
        let hashes: Vec<KeyHash> = keys.iter().map(|key| key.hash).collect();
        self.notify(&mut tx, &hashes).await?;
        insert_event(&mut tx, event).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(keys)
    }

    async fn create_key(&self, key: Audited<'_, KeyRecord>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_key(&mut tx, key.value).await?;
        insert_event(&mut tx, key.event).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn import(&self, batch: &ImportBatch) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_sites(&mut tx, &batch.sites).await?;
        insert_keys(&mut tx, &batch.keys).await?;
        insert_events(&mut tx, &batch.events).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn get_key(&self, id: &KeyId) -> StoreResult<Option<KeyRecord>> {
        sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .map(key_from_row)
            .transpose()
    }

    async fn find_key_by_hash(&self, hash: &KeyHash) -> StoreResult<Option<KeyRecord>> {
        sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE hash = $1"))
            .bind(&hash.0[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .map(key_from_row)
            .transpose()
    }

    async fn list_keys(&self, filter: &KeyFilter, page: &Page) -> StoreResult<Vec<KeyRecord>> {
        let mut query = QueryBuilder::new(format!("SELECT {KEY_COLUMNS} FROM keys WHERE TRUE"));
        push_filter(&mut query, "site_id", "=", filter.site.as_ref().map(SiteId::as_str));
        push_filter(&mut query, "id", "<", page.after.as_deref());
        push_filter(&mut query, "owner_id", "=", filter.owner_id.as_deref());
        if let Some(since) = filter.unused_since {
            query.push(" AND COALESCE(last_used_at, created_at) < ").push_bind(millis(since));
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(page_limit(page));
        query.build().fetch_all(&self.pool).await.map_err(db_error)?.into_iter().map(key_from_row).collect()
    }

    async fn update_key(&self, before: &KeyRecord, after: Audited<'_, KeyRecord>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let hash = replace_key(&mut tx, before, &after).await?;
        self.notify(&mut tx, &[hash]).await?;
        insert_event(&mut tx, after.event).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn rotate_key(
        &self,
        old: &KeyRecord,
        old_after: Audited<'_, KeyRecord>,
        new: Audited<'_, KeyRecord>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let hash = replace_key(&mut tx, old, &old_after).await?;
        insert_keys(&mut tx, std::slice::from_ref(new.value)).await?;
        self.notify(&mut tx, &[hash]).await?;
        insert_event(&mut tx, old_after.event).await?;
        insert_event(&mut tx, new.event).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn spend_credits(&self, key: &KeyId, cost: u64, now: DateTime<Utc>) -> StoreResult<CreditSpend> {
        let mut tx = self.begin().await?;
        // FOR UPDATE: concurrent spends from any instance queue on the row, so the balance
        // is read and written as one step and never goes below zero.
        let row = sqlx::query(
            "SELECT credits_remaining, credits_refill_interval, credits_refill_amount, credits_refilled_at
               FROM keys WHERE id = $1 FOR UPDATE",
        )
        .bind(key.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let stored = row.map(|row| CreditColumns {
            remaining: row.get("credits_remaining"),
            refill_interval: row.get("credits_refill_interval"),
            refill_amount: row.get("credits_refill_amount"),
            refilled_at: row.get("credits_refilled_at"),
        });
        let (remaining, columns) = match plan_credit_spend(stored, cost, now)? {
            CreditPlan::NotLimited => return Ok(CreditSpend::NotLimited),
            CreditPlan::Exhausted => return Ok(CreditSpend::Exhausted),
            CreditPlan::Write { remaining, columns } => (remaining, columns),
        };
        sqlx::query("UPDATE keys SET credits_remaining = $1, credits_refilled_at = $2 WHERE id = $3")
            .bind(columns.remaining)
            .bind(columns.refilled_at)
            .bind(key.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(CreditSpend::Spent { remaining })
    }

    async fn delete_key(&self, key: Audited<'_, KeyRecord>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // Whether a key is Master never changes (the schema ties it to having no site),
        // so the caller's copy tells reliably whether the lock is needed. Always before
        // the row lock, in the same order as `update_key`.
        let master = key.value.permission == Permission::Master;
        if master {
            lock_masters(&mut tx).await?;
        }
        // Decided on the deleted row rather than on the caller's copy, which carries no
        // version here and may be stale.
        let deleted = sqlx::query(&format!("DELETE FROM keys WHERE id = $1 RETURNING {KEY_COLUMNS}"))
            .bind(key.value.id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .ok_or(StoreError::NotFound)
            .and_then(key_from_row)?;
        if master && deleted.is_usable_master_at(key.event.at) && must_keep_a_master(key.event) {
            // Dropping `tx` on error rolls the deletion back.
            ensure_other_master(&mut tx, &deleted.id, key.event.at).await?;
        }
        self.notify(&mut tx, &[deleted.hash]).await?;
        insert_event(&mut tx, key.event).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn record_last_used(&self, uses: &[(KeyId, DateTime<Utc>)]) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = uses.iter().map(|(id, _)| id.as_str()).collect();
        let ats: Vec<i64> = uses.iter().map(|(_, at)| millis(*at)).collect();
        // One statement for the batch. MAX per id: a batch may name a key twice, and an
        // UPDATE … FROM would apply an arbitrary one of the two. GREATEST: batches from
        // several flushes and instances may arrive out of order. Rows are locked in id
        // order so two instances flushing overlapping batches cannot deadlock.
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
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn record_usage(&self, counts: &[UsageCount]) -> StoreResult<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = counts.iter().map(|c| c.key_id.as_str()).collect();
        let days: Vec<i32> = counts.iter().map(|c| c.day).collect();
        let allowed: Vec<i64> = counts.iter().map(|c| c.allowed as i64).collect();
        let refused: Vec<i64> = counts.iter().map(|c| c.refused as i64).collect();
        // One statement per batch; the join on keys skips keys deleted since they were
        // counted, and the GROUP BY folds repeats so ON CONFLICT sees each row once.
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
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn usage(&self, keys: &[KeyId], since_day: i32) -> StoreResult<Vec<UsageCount>> {
        let ids: Vec<&str> = keys.iter().map(KeyId::as_str).collect();
        let rows = sqlx::query(
            "SELECT key_id, day, allowed, refused FROM key_usage WHERE key_id = ANY($1::text[]) AND day >= $2",
        )
        .bind(ids)
        .bind(since_day)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|row| {
                let key_id: String = row.get("key_id");
                Ok(UsageCount {
                    key_id: KeyId::parse(&key_id).ok_or_else(|| StoreError::Unavailable("stored key id".into()))?,
                    day: row.get("day"),
                    allowed: row.get::<i64, _>("allowed") as u64,
                    refused: row.get::<i64, _>("refused") as u64,
                })
            })
            .collect()
    }

    async fn list_audit(&self, filter: &AuditFilter, page: &Page) -> StoreResult<Vec<AuditEvent>> {
        let mut query = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE TRUE"));
        push_filter(&mut query, "site_id", "=", filter.site.as_ref().map(SiteId::as_str));
        push_filter(&mut query, "target_key_id", "=", filter.key.as_ref().map(KeyId::as_str));
        push_filter(&mut query, "action", "=", filter.action.map(|a| a.as_str()));
        push_filter(&mut query, "id", "<", page.after.as_deref());
        query.push(" ORDER BY id DESC LIMIT ").push_bind(page_limit(page));
        query.build().fetch_all(&self.pool).await.map_err(db_error)?.into_iter().map(event_from_row).collect()
    }

    /// Returns once `LISTEN` is in place: every change committed afterwards by another
    /// instance is delivered, or a `Lost` precedes the gap.
    async fn watch_invalidations(&self) -> StoreResult<Option<mpsc::Receiver<Invalidation>>> {
        let shutdown = self.shutdown.subscribe();
        if *shutdown.borrow() || self.pool.is_closed() {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        // A pool of one only so that `PgListener` can reconnect; a connection that leaves
        // the listener is closed, never reused with stale LISTEN state.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_release(|_conn, _meta| Box::pin(async { Ok(false) }))
            .connect_lazy_with(self.listener_options.clone());
        let listener = match feed::listen(&pool, &self.channel).await {
            Ok(listener) => listener,
            Err(error) => {
                pool.close().await;
                return Err(StoreError::unavailable(error));
            }
        };
        let (sender, receiver) = mpsc::channel(FEED_CAPACITY);
        let task = tokio::spawn(feed::run(pool, listener, self.channel.clone(), sender, shutdown));
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        feeds.retain(|feed| !feed.is_finished());
        feeds.push(task);
        Ok(Some(receiver))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::{Actor, AuditAction, Status};
    use latchkey_store::conformance::{new_key, new_site};
    use latchkey_store::{next_version, truncate_to_millis, SharedStore};
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Instant;

    const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
    /// Generous: the machine may be busy compiling; only a failure waits this long.
    const PATIENCE: Duration = Duration::from_secs(20);

    fn test_url() -> String {
        std::env::var("LATCHKEY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
    }

    /// A schema of the test's own, so tests run in parallel on one database. Dropped
    /// (with everything in it) when the value is, even if the test panicked.
    struct TestSchema {
        url: String,
        name: String,
    }

    impl TestSchema {
        async fn new() -> Self {
            Self::at(test_url()).await
        }

        /// Refuses to go on without a server: a skipped backend test would read as a pass.
        async fn at(url: String) -> Self {
            let reached = tokio::time::timeout(PATIENCE, PgConnection::connect(&url)).await;
            match reached {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                }
                Ok(Err(error)) => panic!(
                    "PostgreSQL is not reachable at {url}; start it or set \
                     LATCHKEY_TEST_POSTGRES_URL ({error})"
                ),
                Err(_) => panic!(
                    "PostgreSQL is not reachable at {url}; start it or set \
                     LATCHKEY_TEST_POSTGRES_URL (no answer within {PATIENCE:?})"
                ),
            }
            let mut random = [0u8; 8];
            getrandom::fill(&mut random).expect("the OS provides randomness");
            let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
            Self { url, name: format!("test_{hex}") }
        }

        /// The same schema chosen the other way: by `search_path` in the URL, through
        /// [`PostgresStore::open`]. Only after [`open`](Self::open) created the schema.
        async fn open_by_url(&self) -> Arc<PostgresStore> {
            let separator = if self.url.contains('?') { '&' } else { '?' };
            let url = format!("{}{separator}options=-csearch_path%3D{}", self.url, self.name);
            Arc::new(PostgresStore::open(&url).await.expect("opening a store through search_path"))
        }

        async fn open(&self) -> Arc<PostgresStore> {
            Arc::new(
                PostgresStore::open_in_schema(&self.url, &self.name).await.expect("opening a store in a fresh schema"),
            )
        }
    }

    impl Drop for TestSchema {
        fn drop(&mut self) {
            let url = self.url.clone();
            let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(&self.name));
            // `drop` cannot await, and the test's runtime may be the current thread:
            // run the cleanup on a thread with a runtime of its own.
            let dropped = std::thread::spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime for cleanup");
                runtime.block_on(async move {
                    let mut conn = PgConnection::connect(&url).await?;
                    conn.execute(sql.as_str()).await?;
                    conn.close().await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test schema {}: {dropped:?}", self.name);
            }
        }
    }

    fn event(action: AuditAction) -> AuditEvent {
        AuditEvent::new(&Actor::system(), action, truncate_to_millis(Utc::now()))
    }

    fn blocked(key: &KeyRecord) -> KeyRecord {
        KeyRecord { status: Status::Blocked, updated_at: next_version(key.updated_at, Utc::now()), ..key.clone() }
    }

    async fn store_key(store: &PostgresStore, key: KeyRecord) -> KeyRecord {
        store
            .create_key(Audited { value: &key, event: &event(AuditAction::KeyCreated).for_key(&key) })
            .await
            .expect("creating a key");
        key
    }

    async fn store_site(store: &PostgresStore) -> Site {
        let site = new_site("feed");
        store
            .create_site(Audited { value: &site, event: &event(AuditAction::SiteCreated).for_site(&site) })
            .await
            .expect("creating a site");
        site
    }

    async fn block(store: &PostgresStore, key: &KeyRecord) -> StoreResult<()> {
        let after = blocked(key);
        store.update_key(key, Audited { value: &after, event: &event(AuditAction::KeyBlocked).for_key(key) }).await
    }

    async fn next(feed: &mut mpsc::Receiver<Invalidation>) -> Invalidation {
        tokio::time::timeout(PATIENCE, feed.recv())
            .await
            .unwrap_or_else(|_| panic!("no invalidation within {PATIENCE:?}"))
            .expect("the feed ended")
    }

    async fn usable_masters(store: &PostgresStore) -> Vec<KeyId> {
        let page = Page { after: None, limit: 1000 };
        let now = Utc::now();
        store
            .list_keys(&KeyFilter::default(), &page)
            .await
            .unwrap()
            .into_iter()
            .filter(|key| key.is_usable_master_at(now))
            .map(|key| key.id)
            .collect()
    }

    /// Runs `check` on a fresh store in a schema of its own. On a task of its own, so that
    /// the store is closed even when the check panics; the panic then fails the test.
    async fn run_check<F>(check: impl FnOnce(SharedStore) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let schema = TestSchema::new().await;
        let store = schema.open().await;
        let outcome = tokio::spawn(check(store.clone())).await;
        store.close().await;
        if let Err(error) = outcome {
            match error.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(error) => panic!("the check did not finish: {error}"),
            }
        }
    }

    mod conformance {
        latchkey_store::conformance_tests!(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            super::run_check
        );
    }

    /// Two instances each take away one of the last two usable Master keys at the same
    /// moment. Without the advisory lock both would count the other key and succeed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_two_concurrent_removals_of_the_last_two_masters_exactly_one_succeeds() {
        let schema = TestSchema::new().await;
        let (left, right) = (schema.open().await, schema.open().await);
        let mut survivor = store_key(&left, new_key(Permission::Master, None)).await;
        for round in 0..12 {
            let fresh = store_key(&left, new_key(Permission::Master, None)).await;
            let start = Arc::new(tokio::sync::Barrier::new(2));
            // Odd rounds race a deletion against a block, even rounds two blocks.
            let delete_fresh = round % 2 == 1;
            let racers = [(left.clone(), survivor.clone(), false), (right.clone(), fresh.clone(), delete_fresh)].map(
                |(store, key, delete)| {
                    let start = start.clone();
                    tokio::spawn(async move {
                        start.wait().await;
                        let outcome = if delete {
                            let event = event(AuditAction::KeyDeleted).for_key(&key);
                            store.delete_key(Audited { value: &key, event: &event }).await
                        } else {
                            block(&store, &key).await
                        };
                        (key, outcome)
                    })
                },
            );
            let mut refused = Vec::new();
            let mut succeeded = 0;
            for racer in racers {
                match racer.await.expect("a racer panicked") {
                    (_, Ok(())) => succeeded += 1,
                    (key, Err(StoreError::LastMaster)) => refused.push(key),
                    (_, Err(error)) => panic!("round {round}: unexpected {error:?}"),
                }
            }
            assert_eq!(succeeded, 1, "round {round}: exactly one may succeed");
            survivor = refused.pop().expect("the other was refused");
            assert_eq!(usable_masters(&left).await, [survivor.id.clone()]);
        }
        left.close().await;
        right.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_feed_delivers_changes_made_by_another_instance() {
        let schema = TestSchema::new().await;
        let watcher = schema.open().await;
        // Opened the other way on purpose: both must agree on the channel.
        let writer = schema.open_by_url().await;
        assert_eq!(writer.listener_application_name(), watcher.listener_application_name());
        let mut feed = watcher.watch_invalidations().await.unwrap().expect("PostgreSQL has an invalidation feed");
        let master = store_key(&writer, new_key(Permission::Master, None)).await;
        let site = store_site(&writer).await;
        let [first, second, third] = [(); 3].map(|()| new_key(Permission::Read, Some(&site.id)));
        for key in [&first, &second, &third] {
            store_key(&writer, key.clone()).await;
        }

        // Refused: rolled back, so it notifies nobody. Notifications arrive in commit
        // order, so the next message proves nothing came from this one.
        assert!(matches!(block(&writer, &master).await, Err(StoreError::LastMaster)));
        block(&writer, &first).await.unwrap();
        assert_eq!(next(&mut feed).await, Invalidation::Key(first.hash));

        let deletion = event(AuditAction::KeyDeleted).for_key(&second);
        writer.delete_key(Audited { value: &second, event: &deletion }).await.unwrap();
        assert_eq!(next(&mut feed).await, Invalidation::Key(second.hash));

        let deleted = writer.delete_site(&site.id, &event(AuditAction::SiteDeleted).for_site(&site)).await.unwrap();
        assert_eq!(deleted.len(), 2);
        let mut invalidated = HashSet::new();
        for _ in 0..2 {
            match next(&mut feed).await {
                Invalidation::Key(hash) => invalidated.insert(hash),
                other => panic!("expected a key, got {other:?}"),
            };
        }
        assert_eq!(invalidated, HashSet::from([first.hash, third.hash]));

        drop(feed);
        watcher.close().await;
        writer.close().await;
    }

    async fn listener_pids(admin: &mut PgConnection, store: &PostgresStore) -> Vec<i32> {
        sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity
              WHERE application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind(store.listener_application_name())
        .fetch_all(admin)
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_listener_reports_lost_then_resumed_and_keeps_delivering() {
        let schema = TestSchema::new().await;
        let (watcher, writer) = (schema.open().await, schema.open().await);
        let mut feed = watcher.watch_invalidations().await.unwrap().unwrap();
        let mut admin = PgConnection::connect(&schema.url).await.unwrap();

        let killed = listener_pids(&mut admin, &watcher).await;
        assert_eq!(killed.len(), 1, "one listener connection, already listening");
        let terminated: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind(watcher.listener_application_name())
        .fetch_all(&mut admin)
        .await
        .unwrap();
        assert_eq!(terminated, [true]);

        assert_eq!(next(&mut feed).await, Invalidation::Lost);
        assert_eq!(next(&mut feed).await, Invalidation::Resumed);

        // A new backend is listening: poll, since the old one may linger in the view
        // for a moment after it was told to exit.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let pids = listener_pids(&mut admin, &watcher).await;
            if pids.len() == 1 && !killed.contains(&pids[0]) {
                break;
            }
            assert!(Instant::now() < deadline, "listener pids stayed {pids:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let master = store_key(&writer, new_key(Permission::Master, None)).await;
        store_key(&writer, new_key(Permission::Master, None)).await;
        block(&writer, &master).await.unwrap();
        assert_eq!(next(&mut feed).await, Invalidation::Key(master.hash));

        let _ = admin.close().await;
        drop(feed);
        watcher.close().await;
        writer.close().await;
    }

    #[tokio::test]
    async fn a_last_used_batch_keeps_the_latest_time_per_key() {
        let schema = TestSchema::new().await;
        let store = schema.open().await;
        let one = store_key(&store, new_key(Permission::Master, None)).await;
        let two = store_key(&store, new_key(Permission::Master, None)).await;
        let now = truncate_to_millis(Utc::now());
        let minutes = |n| now - chrono::Duration::minutes(n);
        store
            .record_last_used(&[
                (one.id.clone(), minutes(1)),
                (two.id.clone(), now),
                (one.id.clone(), now),
                (one.id.clone(), minutes(2)),
                (KeyId::generate(), now),
            ])
            .await
            .unwrap();
        store.record_last_used(&[(one.id.clone(), minutes(5)), (two.id.clone(), minutes(5))]).await.unwrap();
        for key in [&one, &two] {
            let stored = store.get_key(&key.id).await.unwrap().unwrap();
            assert_eq!(stored.last_used_at, Some(now));
        }
        store.close().await;
    }

    #[tokio::test]
    async fn an_import_spanning_several_statements_is_all_or_nothing() {
        let schema = TestSchema::new().await;
        let store = schema.open().await;
        let sites: Vec<Site> = (0..3).map(|_| new_site("imported")).collect();
        let keys: Vec<KeyRecord> =
            (0..IMPORT_CHUNK * 2 + 7).map(|i| new_key(Permission::Read, Some(&sites[i % sites.len()].id))).collect();
        let events: Vec<AuditEvent> =
            keys.iter().take(IMPORT_CHUNK + 1).map(|key| event(AuditAction::KeyCreated).for_key(key)).collect();

        // The last key's site is missing: the whole batch, earlier chunks included, is
        // rolled back.
        let mut broken = ImportBatch { sites: sites.clone(), keys: keys.clone(), events: events.clone() };
        broken.keys.push(new_key(Permission::Read, Some(&SiteId::generate())));
        let result = store.import(&broken).await;
        assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
        assert!(store.has_no_keys().await.unwrap());
        assert_eq!(store.get_site(&sites[0].id).await.unwrap(), None);

        let batch = ImportBatch { sites, keys, events };
        store.import(&batch).await.unwrap();
        let count = |table: &str| {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            let pool = store.pool.clone();
            async move { sqlx::query_scalar::<_, i64>(&sql).fetch_one(&pool).await.unwrap() }
        };
        assert_eq!(count("sites").await, 3);
        assert_eq!(count("keys").await, batch.keys.len() as i64);
        assert_eq!(count("audit_events").await, batch.events.len() as i64);
        let last = batch.keys.last().unwrap();
        assert_eq!(store.find_key_by_hash(&last.hash).await.unwrap().as_ref(), Some(last));
        let again = store.import(&batch).await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        store.close().await;
    }

    #[tokio::test]
    #[should_panic(expected = "PostgreSQL is not reachable at")]
    async fn an_unreachable_server_fails_the_tests_loudly() {
        TestSchema::at("postgres://postgres@127.0.0.1:1/test".to_owned()).await;
    }
}
