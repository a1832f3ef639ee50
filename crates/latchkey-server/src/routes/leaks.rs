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

/// GitHub's answer format for one reported token.
#[derive(Serialize, ToSchema)]
pub struct GithubTokenLabel {
    /// SHA-256 of the token, in hex (the answer never holds a key).
    pub token_hash: String,
    pub token_type: String,
    /// `true_positive` (a real key: now blocked) or `false_positive`.
    #[schema(example = "true_positive")]
    pub label: String,
}

/// A report in GitHub's secret-scanning partner format (`[{"token", "type", "url",
/// "source"}]`), signed by GitHub (`Github-Public-Key-Identifier`,
/// `Github-Public-Key-Signature`: ECDSA P-256 over the body). Refused (403) unless the
/// signature verifies against the keys the operator configured; then real keys are
/// blocked as by `POST /leaks`, and each token is labelled.
#[utoipa::path(post, path = "/leaks/github", tag = "verification",
    request_body(content = String, description = "GitHub's JSON array of {token, type, url, source}",
                 content_type = "application/json"),
    params(("Github-Public-Key-Identifier" = String, Header), ("Github-Public-Key-Signature" = String, Header)),
    responses((status = 200, body = Vec<GithubTokenLabel>), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn report_github_leak(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Vec<GithubTokenLabel>>, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    let (key_identifier, signature) = (header("github-public-key-identifier"), header("github-public-key-signature"));
    let labels = state.service.report_github_leaks(&body, &key_identifier, &signature).await?;
    Ok(Json(
        labels
            .into_iter()
            .map(|label| GithubTokenLabel {
                token_hash: label.token_hash,
                token_type: label.token_type,
                label: label.label.to_owned(),
            })
            .collect(),
    ))
}
