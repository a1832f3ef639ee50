//! The `latchkey` binary: parses flags and environment, opens the store, and runs a
//! subcommand. No business logic lives here.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use latchkey_core::KeyFormat;
use latchkey_server::config::{ConnectionLimits, TrustedProxies};
use latchkey_server::state::AppState;
use latchkey_server::throttle::ThrottleConfig;
use latchkey_server::{ServerConfig, SystemClock};
use latchkey_service::ServiceConfig;
use latchkey_store::SharedStore;
use std::sync::Arc;
use std::time::Duration;

mod migrate;

/// mimalloc: the verification path allocates small, short-lived objects on every worker
/// thread, and a million cached entries must not fragment into glibc's per-thread arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "latchkey", version, about = "Self-hosted API key management")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. On an empty database, prints a new Master key once.
    Serve(ServeArgs),
    /// Create the database if needed and print a new Master key (only the key) on stdout.
    Bootstrap(DatabaseArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// Copy everything (sites, keys with their hashes, audit) from one database to
    /// another, e.g. from SQLite to PostgreSQL, without re-issuing a single key.
    Migrate(MigrateArgs),
}

#[derive(Args)]
struct MigrateArgs {
    /// The source database: a file path, `sqlite://` or `postgres://` URL.
    #[arg(long)]
    from: String,
    /// The target database; must be empty unless `--force`.
    #[arg(long)]
    to: String,
    /// Copy into a target that already holds data.
    #[arg(long)]
    force: bool,
    /// With PostgreSQL: the schema holding Latchkey's tables (either side).
    #[arg(long, env = "LATCHKEY_POSTGRES_SCHEMA")]
    postgres_schema: Option<String>,
}

#[derive(Args)]
struct DatabaseArgs {
    /// A file path or `sqlite://` URL (embedded SQLite), or a `postgres://` URL.
    #[arg(long, env = "LATCHKEY_DATABASE", default_value = "latchkey.db")]
    database: String,
    /// With PostgreSQL: keep Latchkey's tables in this schema (created if missing).
    #[arg(long, env = "LATCHKEY_POSTGRES_SCHEMA")]
    postgres_schema: Option<String>,
    /// The prefix of every key this deployment issues (`lk_...`).
    #[arg(long, env = "LATCHKEY_KEY_PREFIX", default_value = "lk")]
    key_prefix: String,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[arg(long, env = "LATCHKEY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Proxies whose X-Forwarded-For is believed, comma-separated IPs or CIDRs.
    #[arg(long, env = "LATCHKEY_TRUST_PROXY", default_value = "")]
    trust_proxy: String,
    /// How many keys the verification cache holds.
    #[arg(long, env = "LATCHKEY_CACHE_CAPACITY", default_value_t = 1_000_000)]
    cache_capacity: usize,
    /// The longest a cached answer is served without re-reading the store, in seconds.
    /// Default: 5 on PostgreSQL (several instances), unbounded on SQLite.
    #[arg(long, env = "LATCHKEY_CACHE_MAX_STALENESS")]
    cache_max_staleness: Option<f64>,
    /// Failed verifications (unknown keys) allowed per client address and window; 0 = off.
    #[arg(long, env = "LATCHKEY_FAILURE_LIMIT", default_value_t = 60)]
    failure_limit: u32,
    /// The throttling window, in seconds.
    #[arg(long, env = "LATCHKEY_FAILURE_WINDOW", default_value_t = 60)]
    failure_window: u32,
    /// Connections served at once; more wait until one closes.
    #[arg(long, env = "LATCHKEY_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers (also the longest a kept-alive
    /// connection may stay idle).
    #[arg(long, env = "LATCHKEY_HEADER_TIMEOUT", default_value_t = 10.0)]
    header_timeout: f64,
}

impl DatabaseArgs {
    async fn open(&self) -> anyhow::Result<SharedStore> {
        open_store(&self.database, self.postgres_schema.as_deref()).await
    }

    fn key_format(&self) -> anyhow::Result<KeyFormat> {
        KeyFormat::new(&self.key_prefix)
            .map_err(|_| anyhow::anyhow!("--key-prefix must be 1-16 characters of [a-z0-9], starting with a letter"))
    }
}

/// Picks the backend from the location: `postgres://` (or `postgresql://`) URLs go to
/// PostgreSQL, anything else is an SQLite file.
async fn open_store(location: &str, postgres_schema: Option<&str>) -> anyhow::Result<SharedStore> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        let store = match postgres_schema {
            Some(schema) => latchkey_postgres::PostgresStore::open_in_schema(location, schema).await,
            None => latchkey_postgres::PostgresStore::open(location).await,
        };
        return Ok(Arc::new(store.context("could not open PostgreSQL")?));
    }
    let store = latchkey_sqlite::SqliteStore::open(location)
        .await
        .with_context(|| format!("could not open the SQLite database {location:?}"))?;
    Ok(Arc::new(store))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LATCHKEY_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Bootstrap(args) => bootstrap(args).await,
        Command::Migrate(args) => {
            let from = open_store(&args.from, args.postgres_schema.as_deref()).await?;
            let to = open_store(&args.to, args.postgres_schema.as_deref()).await?;
            migrate::copy_everything(from.as_ref(), to.as_ref(), args.force).await
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&latchkey_server::openapi_document())?);
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig {
        service: ServiceConfig {
            key_format: args.database.key_format()?,
            cache_capacity: args.cache_capacity,
            cache_max_staleness: args.cache_max_staleness.map(Duration::from_secs_f64),
            failure_throttle: ThrottleConfig { max_failures: args.failure_limit, window_seconds: args.failure_window },
            ..ServiceConfig::default()
        },
        trusted_proxies: args.trust_proxy.parse::<TrustedProxies>().map_err(anyhow::Error::msg)?,
        connections: ConnectionLimits {
            max_connections: args.max_connections,
            header_read_timeout: Duration::try_from_secs_f64(args.header_timeout)
                .ok()
                .filter(|timeout| !timeout.is_zero())
                .context("--header-timeout must be a positive number of seconds")?,
            ..ConnectionLimits::default()
        },
        ..ServerConfig::default()
    };
    let state = AppState::new(args.database.open().await?, config, Arc::new(SystemClock));
    if let Some(key) = state.service.ensure_bootstrap_key().await? {
        eprintln!("Created the first Master key. It is shown this once; store it now:");
        println!("{}", key.expose());
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, database = %args.database.database, "latchkey is listening");
    latchkey_server::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn bootstrap(args: DatabaseArgs) -> anyhow::Result<()> {
    let state = AppState::new(
        args.open().await?,
        ServerConfig {
            service: ServiceConfig { key_format: args.key_format()?, ..Default::default() },
            ..Default::default()
        },
        Arc::new(SystemClock),
    );
    let key = state.service.issue_bootstrap_key().await?;
    println!("{}", key.expose());
    Ok(())
}

/// Ctrl-C or SIGTERM: stop accepting, finish requests, flush last-used, exit.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
