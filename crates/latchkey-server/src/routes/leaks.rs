//! Leak reports over HTTP: anyone who finds a key can report it without a key of their
//! own. The answer is the same 202 whatever matched, so it cannot test keys.

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ClientIp};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeakReport {
    /// The leaked keys, 1 to 100.
    pub keys: Vec<String>,
    /// Where they were found, e.g. a URL (up to 500 characters).
    pub source: String,
}

#[derive(Serialize, ToSchema)]
pub struct LeakReceipt {
    /// How many keys the report held; says nothing about which were real.
    pub received: usize,
}

/// Blocks every reported key that is valid and records `key_reported_leaked` with the
/// source. Rate-limited per client address (10 reports a minute).
#[utoipa::path(post, path = "/leaks", tag = "verification", request_body = LeakReport,
    responses((status = 202, body = LeakReceipt), (status = 429, body = ErrorBody)))]
pub async fn report_leak(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(report): ApiJson<LeakReport>,
) -> Result<(StatusCode, Json<LeakReceipt>), ApiError> {
    let received = state.service.leaks().report(&report.keys, &report.source, ip).await?;
    Ok((StatusCode::ACCEPTED, Json(LeakReceipt { received })))
}
