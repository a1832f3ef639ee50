//! The one error type of the HTTP layer and the one table that maps each error code to
//! its status. Every handler returns `Result<_, ApiError>`; nothing else writes an error
//! response, so every error a client sees is `{"error": {"code", "message"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::{Denied, InvalidValue, Refusal};
use latchkey_service::ServiceError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    MalformedJson,
    BadRequest,
    InvalidQuery,
    ConflictingMethod,
    UnsupportedMediaType,
    ValidationFailed,
    ImmutableField,
    PayloadTooLarge,
    MissingApiKey,
    InvalidApiKey,
    KeyBlocked,
    KeyExpired,
    IpNotAllowed,
    InsufficientPermission,
    MissingScope,
    WrongSite,
    NotFound,
    MethodNotAllowed,
    Conflict,
    LastMaster,
    CsrfFailed,
    RateLimited,
    UsageExceeded,
    Internal,
    Unavailable,
}

impl ErrorCode {
    /// The table: a stable machine name and an HTTP status for every error.
    pub fn describe(self) -> (&'static str, StatusCode) {
        use ErrorCode::*;
        match self {
            MalformedJson => ("malformed_json", StatusCode::BAD_REQUEST),
            BadRequest => ("bad_request", StatusCode::BAD_REQUEST),
            InvalidQuery => ("invalid_query", StatusCode::BAD_REQUEST),
            ConflictingMethod => ("conflicting_method", StatusCode::BAD_REQUEST),
            UnsupportedMediaType => ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE),
            ValidationFailed => ("validation_failed", StatusCode::UNPROCESSABLE_ENTITY),
            ImmutableField => ("immutable_field", StatusCode::UNPROCESSABLE_ENTITY),
            PayloadTooLarge => ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE),
            MissingApiKey => ("missing_api_key", StatusCode::UNAUTHORIZED),
            InvalidApiKey => ("invalid_api_key", StatusCode::UNAUTHORIZED),
            KeyBlocked => ("key_blocked", StatusCode::UNAUTHORIZED),
            KeyExpired => ("key_expired", StatusCode::UNAUTHORIZED),
            IpNotAllowed => ("ip_not_allowed", StatusCode::UNAUTHORIZED),
            InsufficientPermission => ("insufficient_permission", StatusCode::FORBIDDEN),
            MissingScope => ("missing_scope", StatusCode::FORBIDDEN),
            WrongSite => ("wrong_site", StatusCode::FORBIDDEN),
            NotFound => ("not_found", StatusCode::NOT_FOUND),
            MethodNotAllowed => ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED),
            Conflict => ("conflict", StatusCode::CONFLICT),
            LastMaster => ("last_master", StatusCode::CONFLICT),
            CsrfFailed => ("csrf_failed", StatusCode::FORBIDDEN),
            RateLimited => ("rate_limited", StatusCode::TOO_MANY_REQUESTS),
            UsageExceeded => ("usage_exceeded", StatusCode::TOO_MANY_REQUESTS),
            Internal => ("internal_error", StatusCode::INTERNAL_SERVER_ERROR),
            Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_seconds: Option<u64>,
    /// For refusals by a limit: the limit, for the `RateLimit-Policy` and `RateLimit`
    /// fields (draft-ietf-httpapi-ratelimit-headers), named `key` or `failures`.
    pub exceeded_limit: Option<(&'static str, latchkey_core::RateLimit)>,
}

/// The JSON body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable name, e.g. `key_blocked`.
    #[schema(example = "insufficient_permission")]
    pub code: String,
    /// A human-readable explanation; never contains a key.
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: redact_keys(&message.into()), retry_after_seconds: None, exceeded_limit: None }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message)
    }

    pub fn status(&self) -> StatusCode {
        self.code.describe().1
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, status) = self.code.describe();
        if status.is_server_error() {
            tracing::error!(code, message = %self.message, "request failed");
        }
        let body = ErrorBody { error: ErrorDetail { code: code.to_owned(), message: self.message } };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            if let Some((policy, limit)) = self.exceeded_limit {
                let policy_field = format!("\"{policy}\";q={};w={}", limit.limit, limit.window_seconds);
                let standing = format!("\"{policy}\";r=0;t={seconds}");
                for (name, value) in [("ratelimit-policy", policy_field), ("ratelimit", standing)] {
                    if let Ok(value) = HeaderValue::from_str(&value) {
                        headers.insert(header::HeaderName::from_static(name), value);
                    }
                }
            }
        }
        response
    }
}

/// The service's domain errors, in HTTP terms. The dashboard shows the same error as a
/// page built from this, so both front-ends say the same thing.
impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Denied(Denied::InsufficientPermission(why)) => {
                ApiError::new(ErrorCode::InsufficientPermission, why)
            }
            ServiceError::Denied(Denied::SiteNotVisible) => {
                ApiError::new(ErrorCode::InsufficientPermission, "this key cannot access that site")
            }
            ServiceError::Denied(Denied::NotVisible) => ApiError::not_found("key"),
            ServiceError::Denied(Denied::Invalid(why)) => ApiError::validation(why),
            ServiceError::Invalid(message) => ApiError::validation(message),
            ServiceError::NotFound(what) => ApiError::not_found(what),
            ServiceError::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
            ServiceError::LastMaster => ApiError::new(ErrorCode::LastMaster, ServiceError::LastMaster.to_string()),
            ServiceError::TooManyRequests { retry_after_seconds } => {
                let mut error =
                    ApiError::new(ErrorCode::RateLimited, "too many requests from this address; retry later");
                error.retry_after_seconds = Some(retry_after_seconds);
                error
            }
            ServiceError::Unavailable(message) => {
                tracing::error!(%message, "storage error");
                ApiError::new(ErrorCode::Unavailable, "storage is unavailable; retry later")
            }
        }
    }
}

/// A policy refusal asked of the core directly (before a body is read, say).
impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        ServiceError::from(denied).into()
    }
}

/// A presented key refused by the one verification entry: the same word as `/verify`'s `code`.
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let code = match refusal {
            Refusal::MissingKey => ErrorCode::MissingApiKey,
            Refusal::InvalidKey => ErrorCode::InvalidApiKey,
            Refusal::Blocked => ErrorCode::KeyBlocked,
            Refusal::Expired => ErrorCode::KeyExpired,
            Refusal::IpNotAllowed => ErrorCode::IpNotAllowed,
            Refusal::InsufficientPermission => ErrorCode::InsufficientPermission,
            Refusal::MissingScope => ErrorCode::MissingScope,
            Refusal::WrongSite => ErrorCode::WrongSite,
            Refusal::RateLimited { .. } | Refusal::Throttled { .. } => ErrorCode::RateLimited,
            Refusal::UsageExceeded => ErrorCode::UsageExceeded,
        };
        debug_assert_eq!(code.describe().0, refusal.code(), "one vocabulary for refusals");
        let mut error = ApiError::new(code, refusal.message());
        error.retry_after_seconds = refusal.retry_after_seconds();
        error.exceeded_limit = refusal.exceeded_limit().map(|(_, limit)| {
            let policy = if matches!(refusal, Refusal::Throttled { .. }) { "failures" } else { "key" };
            (policy, limit)
        });
        error
    }
}

impl From<InvalidValue> for ApiError {
    fn from(invalid: InvalidValue) -> Self {
        ApiError::validation(invalid.to_string())
    }
}

/// Replaces anything shaped like a key (`<prefix>_<49 base62 chars>`) with a marker, so
/// that even a message built from client input cannot carry a key into a response or log.
pub fn redact_keys(text: &str) -> String {
    const TAIL: usize = latchkey_core::key_format::SECRET_CHARS + latchkey_core::key_format::CHECKSUM_CHARS;
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' && i > 0 && bytes[i - 1].is_ascii_alphanumeric() {
            let run = bytes[i + 1..].iter().take_while(|b| b.is_ascii_alphanumeric()).count();
            if run >= TAIL {
                let start = (0..i).rev().take_while(|&j| bytes[j].is_ascii_alphanumeric()).last().unwrap_or(i);
                out.push_str(&text[copied..start]);
                out.push_str("[redacted key]");
                i += 1 + run;
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_the_same_code_in_the_error_table() {
        for refusal in Refusal::EVERY_KIND {
            let error = ApiError::from(refusal);
            assert_eq!(error.code.describe().0, refusal.code());
            assert_eq!(error.retry_after_seconds, refusal.retry_after_seconds());
        }
    }

    #[test]
    fn keys_are_redacted_from_messages() {
        let key = latchkey_core::KeyFormat::default().generate();
        let message = format!("invalid type: string \"{}\", expected u32", key.expose());
        let redacted = redact_keys(&message);
        assert!(!redacted.contains(key.expose()));
        assert_eq!(redacted, "invalid type: string \"[redacted key]\", expected u32");
        assert_eq!(redact_keys("nothing_here"), "nothing_here");
    }
}
