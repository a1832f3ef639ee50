//! The one error type of the operations: what went wrong in domain terms. Front-ends
//! translate it once each: the JSON API into its error table, the dashboard into a page.

use latchkey_core::{Denied, InvalidValue};
use latchkey_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The policy refuses this caller this action.
    #[error("denied: {0:?}")]
    Denied(Denied),
    /// The request is well-formed but breaks a rule (a bad value, an expiry in the past).
    #[error("{0}")]
    Invalid(String),
    /// The target does not exist (or must look as if it did not).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The target changed meanwhile, or is in a state that forbids the action.
    #[error("{0}")]
    Conflict(String),
    /// The change would leave the system without a Master key that stays usable (active,
    /// never expiring, usable from anywhere).
    #[error(
        "this is the last Master key that stays usable (active, no expiry, no IP allowlist); create another one first"
    )]
    LastMaster,
    /// Too many requests of this kind from this client; retry after this many seconds.
    #[error("too many requests; retry in {retry_after_seconds} s")]
    TooManyRequests { retry_after_seconds: u64 },
    /// The store cannot answer; nothing was changed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ServiceError::Invalid(message.into())
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => ServiceError::NotFound("resource"),
            StoreError::Conflict(message) => ServiceError::Conflict(message),
            StoreError::LastMaster => ServiceError::LastMaster,
            StoreError::Unavailable(message) => ServiceError::Unavailable(message),
        }
    }
}

impl From<Denied> for ServiceError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::NotVisible => ServiceError::NotFound("key"),
            Denied::Invalid(why) => ServiceError::Invalid(why.to_owned()),
            other => ServiceError::Denied(other),
        }
    }
}

impl From<InvalidValue> for ServiceError {
    fn from(invalid: InvalidValue) -> Self {
        ServiceError::Invalid(invalid.to_string())
    }
}
