//! The naive baseline: the verification endpoint people hand-roll, run by the harness as
//! its own process (`latchkey-bench naive-server`) so it gets the same treatment as
//! `latchkey serve`. It hashes the presented key with SHA-256 and asks SQLite on every
//! request: no checksum pre-check, no cache.
//!
//! This file is the one place outside the storage backends with SQL: it is the baseline
//! being compared against, not Latchkey.

use anyhow::{Context, Result};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::str::FromStr;

#[derive(Args, Debug)]
pub struct NaiveArgs {
    /// The SQLite file seeded for Latchkey (same schema, same rows).
    #[arg(long)]
    database: String,
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
}

#[derive(Deserialize)]
struct VerifyBody {
    key: String,
}

#[derive(Serialize)]
struct VerifyAnswer {
    valid: bool,
}

pub fn run(args: NaiveArgs) -> Result<()> {
    // The same runtime `#[tokio::main]` gives `latchkey serve`: one worker per core.
    tokio::runtime::Runtime::new()?.block_on(serve(args))
}

async fn serve(args: NaiveArgs) -> Result<()> {
    // Read-only WAL readers, as many as Latchkey's own reader pool (8): the fair setup.
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", args.database))?
        .journal_mode(SqliteJournalMode::Wal)
        .read_only(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .with_context(|| format!("open {}", args.database))?;
    let app = Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route("/verify", post(verify))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    axum::serve(listener, app).with_graceful_shutdown(terminated()).await?;
    Ok(())
}

async fn verify(
    State(pool): State<SqlitePool>,
    Json(body): Json<VerifyBody>,
) -> Result<Json<VerifyAnswer>, (axum::http::StatusCode, String)> {
    let hash = Sha256::digest(body.key.as_bytes());
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT id, permission, status FROM keys WHERE hash = ?")
            .bind(&hash[..])
            .fetch_optional(&pool)
            .await
            .map_err(|e| (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let valid = row.is_some_and(|(_, _, status)| status == "active");
    Ok(Json(VerifyAnswer { valid }))
}

async fn terminated() {
    if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        signal.recv().await;
    } else {
        std::future::pending::<()>().await;
    }
}
