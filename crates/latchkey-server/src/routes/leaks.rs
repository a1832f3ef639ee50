//! Leak reports: anyone who finds a key (a secret scanner, a stranger, GitHub's partner
//! program) can report it without a key of their own; a valid reported key is blocked at
//! once. The answer is the same 202 whatever matched, so it cannot test keys.

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::ApiJson;
use crate::routes::verify::ClientIp;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use latchkey_core::Actor;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const MAX_KEYS_PER_REPORT: usize = 100;
const MAX_SOURCE_CHARS: usize = 500;

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
    responses((status = 202, body = LeakReceipt), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn report_leak(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(report): ApiJson<LeakReport>,
) -> Result<(StatusCode, Json<LeakReceipt>), ApiError> {
    if let Some(retry_after) = state.leak_report_throttle.record_failure(ip, state.clock.now().timestamp()) {
        let mut error = ApiError::new(ErrorCode::RateLimited, "too many leak reports from this address; retry later");
        error.retry_after_seconds = Some(retry_after);
        return Err(error);
    }
    if report.keys.is_empty() || report.keys.len() > MAX_KEYS_PER_REPORT {
        return Err(ApiError::validation(format!("keys must hold 1 to {MAX_KEYS_PER_REPORT} keys")));
    }
    let source = report.source.trim();
    if source.is_empty() || source.chars().count() > MAX_SOURCE_CHARS {
        return Err(ApiError::validation(format!("source must be 1 to {MAX_SOURCE_CHARS} characters")));
    }
    // The reporter is not a key: the audit names the address the report came from.
    let reporter = Actor { key_id: None, key_prefix: None, source_ip: ip.map(|ip| ip.to_string()) };
    for key in &report.keys {
        state.block_leaked_key(key.trim(), source, &reporter).await?;
    }
    Ok((StatusCode::ACCEPTED, Json(LeakReceipt { received: report.keys.len() })))
}
