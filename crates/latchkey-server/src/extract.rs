//! Extractors that turn every rejection into our JSON error (axum's plain-text
//! rejections never reach a client), the client's address, and the authentication of
//! the calling key through the service's one verification entry.

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use latchkey_core::{Actor, Caller, Requirement};
use latchkey_service::{Check, Presented, VerifiedKey};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
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

/// The key presented with a request: `X-API-Key`, or else `Authorization: Bearer` (so a
/// client may send its own bearer token on to the API that Latchkey protects). Two
/// `X-API-Key` headers are refused rather than guessed between: which one a proxy or an
/// upstream would read differs from one to the next.
pub fn presented_key(headers: &HeaderMap) -> Presented<'_> {
    let mut api_keys = headers.get_all("x-api-key").iter();
    match (api_keys.next(), api_keys.next()) {
        (Some(_), Some(_)) => Presented::Ambiguous,
        (Some(value), None) => Presented::from_header(Some(value.to_str().unwrap_or_default())),
        (None, _) => {
            let bearer = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            });
            Presented::from_header(bearer)
        }
    }
}

/// The address of the client: the socket peer, or the right-most untrusted address of
/// `X-Forwarded-For` when the peer is one of the proxies named by `--trust-proxy`.
pub fn client_ip(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip())?;
    Some(state.config.trusted_proxies.client_ip(peer, &parts.headers))
}

/// The client address as seen by this server (socket, or trusted proxy's X-Forwarded-For).
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts, state)))
    }
}

/// The socket peer (the proxy, when there is one), when the server was started with it.
pub struct PeerAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0)))
    }
}

/// What a route demands of the calling key before its operation runs. Checked inside the
/// one verification entry, so a key refused here is counted as refused in its usage.
pub trait RouteNeeds: Send + Sync + 'static {
    fn requirement() -> Requirement;
}

/// Any valid key (`/sites`, `/whoami`).
pub struct AnyKey;
/// Admin or Master: the keys and the audit trail.
pub struct KeyManager;
/// Master: creating, renaming and deleting sites.
pub struct SiteManager;

impl RouteNeeds for AnyKey {
    fn requirement() -> Requirement {
        Requirement::default()
    }
}

impl RouteNeeds for KeyManager {
    fn requirement() -> Requirement {
        Requirement::manages_keys()
    }
}

impl RouteNeeds for SiteManager {
    fn requirement() -> Requirement {
        Requirement::manages_sites()
    }
}

/// The key making a management request, verified through the one verification entry
/// against what the route needs (so allowlists, rate limits and counting apply as on every
/// other path), and the `Caller` that the operations take. The operation still asks the
/// policy about its target (another site, a Master key).
pub struct Authenticated<Needs: RouteNeeds = AnyKey> {
    pub key: Arc<VerifiedKey>,
    pub caller: Caller,
    needs: PhantomData<Needs>,
}

impl<Needs: RouteNeeds> FromRequestParts<AppState> for Authenticated<Needs> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = presented_key(&parts.headers);
        let ip = client_ip(parts, state);
        let check = Check::any_valid_key(ip).requiring(Needs::requirement());
        let key = state.service.verify(presented, &check).await?.allowed()?;
        let actor = Actor {
            key_id: Some(key.id()),
            key_prefix: presented.display_prefix(),
            source_ip: ip.map(|ip| ip.to_string()),
        };
        let caller = key.caller(actor);
        Ok(Authenticated { key, caller, needs: PhantomData })
    }
}
