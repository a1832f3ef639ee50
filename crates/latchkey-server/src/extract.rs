//! Extractors that turn every rejection into our JSON error (axum's plain-text
//! rejections never reach a client), and the authentication of the calling key.

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::verification::{KeyLookup, RefusalReason, VerifiedKey};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use latchkey_core::key_format::DISPLAY_PREFIX_CHARS;
use latchkey_core::{Actor, Caller};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// `axum::Json`, with rejections mapped to 400 / 413 / 415 / 422 JSON errors.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let code = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::ValidationFailed,
        _ => ErrorCode::MalformedJson,
    };
    let message = match code {
        ErrorCode::PayloadTooLarge => "the request body is larger than 64 KiB".to_owned(),
        ErrorCode::UnsupportedMediaType => "the request body must be JSON (Content-Type: application/json)".to_owned(),
        _ => rejection.body_text(),
    };
    ApiError::new(code, message)
}

/// `axum::extract::Query`, with rejections mapped to a 400 JSON error.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| ApiError::new(ErrorCode::InvalidQuery, rejection.body_text()))
    }
}

/// The key presented with a request: `X-API-Key`, or `Authorization: Bearer`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get("x-api-key") {
        return value.to_str().ok().map(str::trim);
    }
    let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The address of the client: the socket peer, or the right-most untrusted address of
/// `X-Forwarded-For` when the peer is one of the proxies named by `--trust-proxy`.
pub fn client_ip(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip())?;
    Some(state.config.trusted_proxies.client_ip(peer, &parts.headers))
}

/// The authenticated key making a management request.
pub struct Authenticated {
    pub key: Arc<VerifiedKey>,
    pub caller: Caller,
    pub actor: Actor,
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = presented_key(&parts.headers)
            .filter(|key| !key.is_empty())
            .ok_or_else(|| ApiError::new(ErrorCode::MissingApiKey, "send the API key in the X-API-Key header"))?;
        let now = state.clock.now();
        let key = match state.verifier.check(presented, now).await? {
            KeyLookup::Usable(key) => key,
            KeyLookup::Refused(RefusalReason::NotFound, _) => {
                let ip = client_ip(parts, state);
                let refused = refusal_error(RefusalReason::NotFound);
                return Err(throttled(state, ip, now).unwrap_or(refused));
            }
            KeyLookup::Refused(reason, key) => {
                if let Some(key) = &key {
                    state.verifier.count_request(key, false);
                }
                return Err(refusal_error(reason));
            }
        };
        let ip = client_ip(parts, state);
        if !key.allows_ip(ip) {
            state.verifier.count_request(&key, false);
            return Err(ApiError::new(ErrorCode::IpNotAllowed, "this key may not be used from this address"));
        }
        state.verifier.count_request(&key, true);
        let caller = Caller { permission: key.permission, site_id: key.site_id() };
        let actor = Actor {
            key_id: Some(key.id()),
            // The presented key passed its checksum, so it has more than 12 ASCII characters.
            key_prefix: Some(presented[..DISPLAY_PREFIX_CHARS].to_owned()),
            source_ip: ip.map(|ip| ip.to_string()),
        };
        Ok(Authenticated { key, caller, actor })
    }
}

pub fn refusal_error(reason: RefusalReason) -> ApiError {
    match reason {
        RefusalReason::NotFound => ApiError::new(ErrorCode::InvalidApiKey, "the API key is not valid"),
        RefusalReason::Blocked => ApiError::new(ErrorCode::KeyBlocked, "the API key is blocked"),
        RefusalReason::Expired => ApiError::new(ErrorCode::KeyExpired, "the API key has expired"),
    }
}

/// Counts a failed verification from `ip`; returns the 429 to answer instead when the
/// address is over its limit.
pub fn throttled(state: &AppState, ip: Option<IpAddr>, now: chrono::DateTime<chrono::Utc>) -> Option<ApiError> {
    let retry_after = state.throttle.record_failure(ip, now.timestamp())?;
    let mut error =
        ApiError::new(ErrorCode::RateLimited, "too many failed verifications from this address; retry later");
    error.retry_after_seconds = Some(retry_after);
    Some(error)
}
