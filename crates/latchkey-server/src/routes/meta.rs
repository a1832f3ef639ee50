//! Routes about the service itself: health, the no-op baseline, the OpenAPI document.

use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when there are warnings.
    pub status: &'static str,
    /// What an operator must act on, e.g. no usable Master key left after a leak report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<&'static str>,
    /// Where rate limits and failure throttling are counted: `memory` (each instance
    /// alone), `redis (on failure: open)` or `redis (on failure: closed)`.
    pub limits: &'static str,
}

/// Liveness, and what needs an operator. Needs no key. Always 200 while the server runs
/// (a balancer should not drop instances for a warning); also the no-op baseline of the
/// benchmark harness.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let warnings = state.service.warnings();
    let status = if warnings.is_empty() { "ok" } else { "degraded" };
    Json(Health { status, warnings, limits: state.service.limits_mode() })
}
