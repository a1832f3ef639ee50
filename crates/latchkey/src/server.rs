//! `serve` and `bootstrap`: their flags, the `ServerConfig` built from them, the store they
//! open, and the graceful stop.

use anyhow::Context;
use clap::Args;
use latchkey_core::KeyFormat;
use latchkey_server::config::{ConnectionLimits, TrustedProxies};
use latchkey_server::state::AppState;
use latchkey_server::throttle::ThrottleConfig;
use latchkey_server::{ServerConfig, SystemClock};
use latchkey_service::github_leaks::SecretScanningKeys;
use latchkey_service::limits::{RedisFailure, SharedLimitsConfig};
use latchkey_service::webhooks::WebhookConfig;
use latchkey_service::ServiceConfig;
use latchkey_store::SharedStore;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct DatabaseArgs {
    /// A file path or `sqlite://` URL (embedded SQLite), or a `postgres://` URL.
    // The variable's value stays out of `--help`: a PostgreSQL URL may hold a password.
    #[arg(long, env = "LATCHKEY_DATABASE", default_value = "latchkey.db", hide_env_values = true)]
    pub database: String,
    /// With PostgreSQL: keep Latchkey's tables in this schema (created if missing).
    #[arg(long, env = "LATCHKEY_POSTGRES_SCHEMA")]
    pub postgres_schema: Option<String>,
    /// The prefix of every key this deployment issues (`lk_...`).
    #[arg(long, env = "LATCHKEY_KEY_PREFIX", default_value = "lk")]
    pub key_prefix: String,
}

/// Every flag except `--config` and `--print-config` may also come from its `LATCHKEY_*`
/// variable or the TOML file (`config_file.rs`); docs/CONFIGURATION.md lists them, and
/// tests/config.rs keeps that list equal to this one.
#[derive(Args)]
pub struct ServeArgs {
    /// A TOML file of settings, keyed by flag name with `_` for `-` (e.g. `cache_capacity
    /// = 5000`). A flag or a `LATCHKEY_*` variable beats the file; the file beats the default.
    #[arg(long, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective settings, each with where it came from (flag, env, file or
    /// default), as TOML, and exit without opening the database.
    #[arg(long)]
    pub print_config: bool,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The address and port to accept connections on.
    #[arg(long, env = "LATCHKEY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Proxies whose X-Forwarded-For is believed, comma-separated IPs or CIDRs.
    #[arg(long, env = "LATCHKEY_TRUST_PROXY", default_value = "")]
    pub trust_proxy: String,
    /// How many keys the verification cache holds.
    #[arg(long, env = "LATCHKEY_CACHE_CAPACITY", default_value_t = 1_000_000)]
    pub cache_capacity: usize,
    /// The longest a cached answer is served without re-reading the store, in seconds.
    /// Default: 5 on PostgreSQL (several instances), unbounded on SQLite.
    #[arg(long, env = "LATCHKEY_CACHE_MAX_STALENESS")]
    pub cache_max_staleness: Option<f64>,
    /// Failed verifications (unknown keys) allowed per client address and window; 0 = off.
    #[arg(long, env = "LATCHKEY_FAILURE_LIMIT", default_value_t = 60)]
    pub failure_limit: u32,
    /// The throttling window, in seconds.
    #[arg(long, env = "LATCHKEY_FAILURE_WINDOW", default_value_t = 60)]
    pub failure_window: u32,
    /// Connections served at once; more wait until one closes.
    #[arg(long, env = "LATCHKEY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (also the longest a kept-alive
    /// connection may stay idle).
    #[arg(long, env = "LATCHKEY_HEADER_TIMEOUT", default_value_t = 10.0)]
    pub header_timeout: f64,
    /// Serve `GET /metrics` on this address only, instead of on the API's (e.g. an
    /// address that only the monitoring network reaches).
    #[arg(long, env = "LATCHKEY_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Count rate limits and failure throttling in this Redis, shared by every instance
    /// (`redis://host:6379/0`). Without it, each instance counts alone.
    #[arg(long, env = "LATCHKEY_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// With --redis, what to do while Redis does not answer: `open` counts on each
    /// instance alone (and warns on /healthz), `closed` refuses with 503 every request that
    /// needs a rate limit or the failure throttle.
    #[arg(long, env = "LATCHKEY_REDIS_FAILURE", default_value = "open")]
    pub redis_failure: RedisFailure,
    /// With --redis, the prefix of Latchkey's Redis keys (deployments sharing a Redis
    /// need different ones).
    #[arg(long, env = "LATCHKEY_REDIS_PREFIX", default_value = "latchkey")]
    pub redis_prefix: String,
    /// `text` for people, `json` (one object per line) for log shippers.
    #[arg(long, env = "LATCHKEY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// `true` lets webhook endpoints point at loopback, private and link-local addresses.
    /// Off by default: a webhook could otherwise make the server call internal services.
    #[arg(long, env = "LATCHKEY_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,
    /// Seconds a claimed webhook delivery is held before another instance (or this one,
    /// restarted) may send it again: the longest a delivery waits after a crash.
    #[arg(long, env = "LATCHKEY_WEBHOOK_CLAIM_TIMEOUT", default_value_t = 60)]
    pub webhook_claim_timeout: u64,
    /// Days that delivered events (and their delivery attempts) are kept, for `GET
    /// /api/v1/events` and the deliveries log, before they are pruned. Events not yet
    /// delivered are never pruned.
    #[arg(long, env = "LATCHKEY_WEBHOOK_RETENTION_DAYS", default_value_t = 7)]
    pub webhook_retention_days: u32,
    /// Seconds between the delivery worker's looks for due deliveries (fractions allowed):
    /// the longest an event waits before its first attempt.
    #[arg(long, env = "LATCHKEY_WEBHOOK_POLL_INTERVAL", default_value_t = 1.0)]
    pub webhook_poll_interval: f64,
    /// GitHub's secret-scanning public keys (the JSON document GitHub publishes at
    /// https://api.github.com/meta/public_keys/secret_scanning, saved to a file): enables
    /// `POST /api/v1/leaks/github`.
    #[arg(long, env = "LATCHKEY_GITHUB_SECRET_SCANNING_KEYS", value_name = "FILE")]
    pub github_secret_scanning_keys: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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

impl ServeArgs {
    fn webhooks(&self) -> anyhow::Result<WebhookConfig> {
        if self.webhook_claim_timeout == 0 {
            anyhow::bail!("--webhook-claim-timeout must be a positive number of seconds");
        }
        if !(1..=3650).contains(&self.webhook_retention_days) {
            anyhow::bail!("--webhook-retention-days must be 1 to 3650");
        }
        if !(0.01..=60.0).contains(&self.webhook_poll_interval) {
            anyhow::bail!("--webhook-poll-interval must be 0.01 to 60 seconds");
        }
        Ok(WebhookConfig {
            allow_private_targets: self.webhook_allow_private,
            claim_timeout: Duration::from_secs(self.webhook_claim_timeout),
            retention: Duration::from_secs(u64::from(self.webhook_retention_days) * 86_400),
            poll_interval: Duration::from_secs_f64(self.webhook_poll_interval),
            ..WebhookConfig::default()
        })
    }

    fn github_keys(&self) -> anyhow::Result<SecretScanningKeys> {
        let Some(path) = &self.github_secret_scanning_keys else { return Ok(SecretScanningKeys::default()) };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--github-secret-scanning-keys: could not read {}", path.display()))?;
        SecretScanningKeys::from_github_json(&text)
            .map_err(|error| anyhow::anyhow!("--github-secret-scanning-keys: {}: {error}", path.display()))
    }

    fn shared_limits(&self) -> anyhow::Result<Option<SharedLimitsConfig>> {
        let Some(url) = &self.redis else { return Ok(None) };
        let mut limits = SharedLimitsConfig::new(url).map_err(|error| anyhow::anyhow!("--redis: {error}"))?;
        limits.on_failure = self.redis_failure;
        limits.key_prefix = self.redis_prefix.clone();
        Ok(Some(limits))
    }

    /// The configuration value the server runs with; fails on values that parse as flags
    /// but mean nothing (a bad prefix, a zero timeout).
    fn server_config(&self) -> anyhow::Result<ServerConfig> {
        Ok(ServerConfig {
            service: ServiceConfig {
                key_format: self.database.key_format()?,
                cache_capacity: self.cache_capacity,
                cache_max_staleness: self.cache_max_staleness.map(Duration::from_secs_f64),
                failure_throttle: ThrottleConfig {
                    max_failures: self.failure_limit,
                    window_seconds: self.failure_window,
                },
                shared_limits: self.shared_limits()?,
                webhooks: self.webhooks()?,
                github_secret_scanning_keys: self.github_keys()?,
                ..ServiceConfig::default()
            },
            trusted_proxies: self.trust_proxy.parse::<TrustedProxies>().map_err(anyhow::Error::msg)?,
            connections: ConnectionLimits {
                max_connections: self.max_connections,
                header_read_timeout: Duration::try_from_secs_f64(self.header_timeout)
                    .ok()
                    .filter(|timeout| !timeout.is_zero())
                    .context("--header-timeout must be a positive number of seconds")?,
                ..ConnectionLimits::default()
            },
            metrics_on_api_listener: self.metrics_listen.is_none(),
            ..ServerConfig::default()
        })
    }
}

/// Picks the backend from the location: `postgres://` (or `postgresql://`) URLs go to
/// PostgreSQL, anything else is an SQLite file.
pub async fn open_store(location: &str, postgres_schema: Option<&str>) -> anyhow::Result<SharedStore> {
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

/// Runs the server until Ctrl-C or SIGTERM. `effective_settings` is what `--print-config`
/// prints, after the values have been checked.
pub async fn serve(args: ServeArgs, effective_settings: &str) -> anyhow::Result<()> {
    let config = args.server_config()?;
    if args.print_config {
        print!("{effective_settings}");
        return Ok(());
    }
    if let Some(file) = &args.config {
        tracing::info!(file = %file.display(), "settings read from a config file");
    }
    let state = AppState::new(args.database.open().await?, config, Arc::new(SystemClock));
    if let Some(key) = state.service.ensure_bootstrap_key().await? {
        eprintln!("Created the first Master key. It is shown this once; store it now:");
        println!("{}", key.expose());
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, database = %args.database.database, "latchkey is listening");
    if let Some(address) = &args.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("could not listen on {address} for metrics"))?;
        tracing::info!(address = %metrics.local_addr()?, "metrics are served here only");
        tokio::spawn(latchkey_server::serve_metrics(metrics, state.clone()));
    }
    latchkey_server::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

pub async fn bootstrap(args: DatabaseArgs) -> anyhow::Result<()> {
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
