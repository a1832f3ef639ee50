//! Pages of a listing: newest first, keyset cursors, one extra row asked of the store so
//! a listing knows whether another page follows. Shared by every listing operation.

use crate::error::{ServiceError, ServiceResult};
use latchkey_store::Page;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 200;

/// Which page a caller asks for.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    /// The last id of the previous page.
    pub cursor: Option<String>,
    /// 1 to 200; default 50.
    pub limit: Option<u32>,
}

/// One page of results and the cursor of the next, if there is one.
#[derive(Clone, Debug)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl PageRequest {
    pub fn first(limit: u32) -> Self {
        Self { cursor: None, limit: Some(limit) }
    }

    /// The store page (one row more than asked) and the number of rows to keep.
    pub(crate) fn to_store_page(&self) -> ServiceResult<(Page, usize)> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if limit == 0 || limit > MAX_PAGE_SIZE {
            return Err(ServiceError::invalid(format!("limit must be between 1 and {MAX_PAGE_SIZE}")));
        }
        Ok((Page { after: self.cursor.clone(), limit: limit + 1 }, limit as usize))
    }
}

impl<T> Paged<T> {
    /// Cuts the extra row off and keeps the cursor of the next page.
    pub(crate) fn cut(mut rows: Vec<T>, limit: usize, id_of: impl Fn(&T) -> String) -> Self {
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(id_of)
        } else {
            None
        };
        Self { items: rows, next_cursor }
    }
}
