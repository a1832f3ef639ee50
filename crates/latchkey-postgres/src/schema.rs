//! Connecting, and where the tables live: the pool, the embedded migrations, and the
//! schema chosen by `--postgres-schema` (or by `search_path` in the URL), which also
//! names the invalidation channel.

use super::PostgresStore;
use latchkey_store::{StoreError, StoreResult};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// sqlx's PostgreSQL migrator holds a database-wide advisory lock while it runs, so
/// instances starting together apply each migration once and wait for each other.
static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Per instance. Several instances share the server's `max_connections`, so stay modest.
const MAX_CONNECTIONS: u32 = 10;
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// In the two-integer advisory lock space, like `LAST_MASTER_LOCK` (see `keys.rs`).
const CREATE_SCHEMA_LOCK: i32 = 0x4c4b_0002;

/// PostgreSQL truncates identifiers and `application_name` to this many bytes.
const MAX_NAME_BYTES: usize = 63;

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

pub(crate) fn quote_ident(name: &str) -> String {
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
