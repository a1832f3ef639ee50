//! `VerifiedKey` as an axum extractor: the key `LatchkeyLayer` verified for this request
//! (its id, site, level, scopes, owner). `Option<VerifiedKey>` for handlers that also
//! serve unguarded routes.

use super::error_response;
use crate::verify::VerifiedKey;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use std::convert::Infallible;

impl<S: Send + Sync> FromRequestParts<S> for VerifiedKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<VerifiedKey>().cloned().ok_or_else(|| {
            // A handler that needs a key on a route without the layer is a wiring bug;
            // failing closed is the only safe answer.
            tracing::error!(path = %parts.uri.path(), "VerifiedKey asked for on a route without LatchkeyLayer");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "this route is not guarded by Latchkey",
                None,
            )
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedKey {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<VerifiedKey>().cloned())
    }
}
