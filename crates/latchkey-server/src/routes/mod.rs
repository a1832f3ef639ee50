//! The HTTP routes, one module per subject. Each handler parses its input into domain
//! types, asks the policy (through `management` or `Caller`), and shapes the JSON answer.

pub mod audit;
pub mod key_options;
pub mod keys;
pub mod leaks;
pub mod meta;
pub mod sites;
pub mod verify;

use crate::error::ApiError;
use chrono::{DateTime, Utc};
use latchkey_store::Page;
use serde::{Deserialize, Deserializer};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 200;

/// Turns `cursor` and `limit` query parameters into a store page that asks for one extra
/// row, so the handler knows whether there is a next page.
pub fn page(cursor: Option<String>, limit: Option<u32>) -> Result<(Page, usize), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(ApiError::validation(format!("limit must be between 1 and {MAX_PAGE_SIZE}")));
    }
    Ok((Page { after: cursor, limit: limit + 1 }, limit as usize))
}

/// Cuts the extra row off and returns the cursor of the next page, if any.
pub fn next_cursor<T>(rows: &mut Vec<T>, limit: usize, id_of: impl Fn(&T) -> String) -> Option<String> {
    if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(id_of)
    } else {
        None
    }
}

/// Parses an RFC 3339 time that must lie in the future.
pub fn future_time(field: &str, raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let at = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| ApiError::validation(format!("{field} must be an RFC 3339 time, e.g. 2030-01-31T12:00:00Z")))?
        .with_timezone(&Utc);
    if at <= now {
        return Err(ApiError::validation(format!("{field} must be in the future")));
    }
    Ok(at)
}

/// For PATCH fields where `null` (clear) differs from absent (keep): absent is `None`,
/// `null` is `Some(None)`.
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
