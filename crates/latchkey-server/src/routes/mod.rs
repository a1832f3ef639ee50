//! The JSON API's routes, one module per subject. Each handler parses its input into the
//! service's domain types, calls one operation with the authenticated `Caller`, and
//! shapes the JSON answer. No handler decides policy.

pub mod audit;
pub mod events;
pub mod import;
pub mod key_options;
pub mod keys;
pub mod leaks;
pub mod meta;
pub mod sites;
pub mod verify;
pub mod webhooks;

use crate::error::ApiError;
use axum::extract::Path;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// One page of a list, and the cursor of the next (`None` on the last page).
#[derive(Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> Page<T> {
    /// The service's page of `items`, each shown as the API shows it.
    pub fn of<I>(paged: latchkey_service::Paged<I>, view: impl FnMut(I) -> T) -> Json<Self> {
        Json(Page { data: paged.items.into_iter().map(view).collect(), next_cursor: paged.next_cursor })
    }
}

/// What most handlers answer: a JSON body, or the one error type.
pub type JsonResult<T> = Result<Json<T>, ApiError>;

/// The `{id}` of a route, as sent (the service parses it: an id that cannot exist is 404).
pub type IdPath = Path<String>;

/// Parses an RFC 3339 time (the service decides whether it must lie in the future).
pub fn rfc3339_time(field: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| ApiError::validation(format!("{field} must be an RFC 3339 time, e.g. 2030-01-31T12:00:00Z")))
}

/// For PATCH fields where `null` (clear) differs from absent (keep): absent is `None`,
/// `null` is `Some(None)`.
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
