//! A key's usage credits as their four columns.

use super::{corrupt, from_millis, millis};
use crate::StoreResult;
use latchkey_core::{Credits, Refill};

/// Credits as their four columns. `credits_remaining` is `NULL` for a key without
/// credits (unlimited).
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct CreditColumns {
    pub credits_remaining: Option<i64>,
    pub credits_refill_interval: Option<String>,
    pub credits_refill_amount: Option<i64>,
    pub credits_refilled_at: Option<i64>,
}

impl CreditColumns {
    pub fn of(credits: Option<&Credits>) -> Self {
        Self {
            credits_remaining: credits.map(|c| c.remaining as i64),
            credits_refill_interval: credits.and_then(|c| c.refill).map(|r| r.interval.as_str().to_owned()),
            credits_refill_amount: credits.and_then(|c| c.refill).map(|r| r.amount as i64),
            credits_refilled_at: credits.and_then(|c| c.refilled_at).map(millis),
        }
    }

    pub fn into_credits(self) -> StoreResult<Option<Credits>> {
        let Some(remaining) = self.credits_remaining else {
            return Ok(None);
        };
        let refill = match (self.credits_refill_interval, self.credits_refill_amount) {
            (Some(interval), Some(amount)) => {
                Some(Refill { interval: interval.parse().map_err(corrupt)?, amount: amount.max(0) as u64 })
            }
            _ => None,
        };
        Ok(Some(Credits {
            remaining: remaining.max(0) as u64,
            refill,
            refilled_at: self.credits_refilled_at.map(from_millis).transpose()?,
        }))
    }
}
