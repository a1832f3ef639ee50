//! Routes about the service itself: health, the no-op baseline, the OpenAPI document.

use axum::http::StatusCode;
use axum::Json;

/// Liveness. Needs no key. Also the no-op baseline of the benchmark harness.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, description = "The server is up")))]
pub async fn healthz() -> (StatusCode, Json<serde_json::Value>) {
    (StatusCode::OK, Json(serde_json::json!({ "status": "ok" })))
}
