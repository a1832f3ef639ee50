//! `ClientError`: the one error of every call. Either Latchkey answered with its JSON
//! error (`{"error": {"code", "message"}}`, kept with the status and any `Retry-After`),
//! or it could not be asked, or it answered something that is not Latchkey's.

use reqwest::StatusCode;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Latchkey refused the call and said why, in its error table's words.
    #[error("latchkey answered {status} {code}: {message}")]
    Api {
        status: StatusCode,
        /// The stable machine name, e.g. `insufficient_permission`, `not_found`, `last_master`.
        code: String,
        /// A sentence for people; Latchkey never puts a key in it.
        message: String,
        /// From `Retry-After`, on `rate_limited` answers.
        retry_after: Option<Duration>,
    },
    /// Latchkey could not be reached, or the connection failed or timed out.
    #[error("could not reach latchkey: {0}")]
    Transport(#[from] reqwest::Error),
    /// An answer Latchkey does not send: a proxy's error page, or a body of another shape.
    #[error("unexpected answer from latchkey ({status}): {reason}")]
    UnexpectedResponse { status: StatusCode, reason: String },
    /// The base URL given to `Client::new` cannot be used.
    #[error("invalid latchkey URL: {0}")]
    InvalidUrl(String),
}

impl ClientError {
    /// The HTTP status Latchkey (or whatever answered) gave, if there was an answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } | ClientError::UnexpectedResponse { status, .. } => Some(*status),
            ClientError::Transport(error) => error.status(),
            ClientError::InvalidUrl(_) => None,
        }
    }

    /// Latchkey's error code, when it answered with its JSON error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// How long to wait before retrying, when Latchkey said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
