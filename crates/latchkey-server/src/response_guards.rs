//! One layer over every response, so no route can forget it: security headers (every
//! response says `nosniff`; HTML pages also refuse framing and leak no referrer), and the
//! error shape (an error that axum or a library wrote as plain text, such as a path that
//! is not UTF-8 or a body over the limit, becomes our JSON error on the API and a readable
//! page on the dashboard; a browser that asks for a page at an address that has none gets
//! a page too, not the API's JSON).

use crate::error::{ApiError, ErrorCode};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Error bodies read to be rewrapped are small; anything larger is cut.
const MAX_REWRAPPED_BYTES: usize = 4096;

pub async fn guard_responses(request: Request, next: Next) -> Response {
    let is_api = request.uri().path().starts_with("/api/");
    let wants_page = !is_api && accepts_html(&request);
    let mut response = next.run(request).await;
    let is_error = response.status().is_client_error() || response.status().is_server_error();
    if is_error && !has_content_type(&response, "application/json") && !has_content_type(&response, "text/html") {
        response = rewrap_error(response, is_api).await;
    }
    // A mistyped dashboard address opened in a browser gets a page, not the API's JSON.
    if wants_page && has_content_type(&response, "application/json") {
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
            let error = ApiError::new(code_for(status), page_message(status));
            response = crate::dashboard::error_page(error);
        }
    }
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if has_content_type_in(headers, "text/html") {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("frame-ancestors 'none'"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    response
}

/// A browser navigating asks for HTML first; API clients and scripts do not.
fn accepts_html(request: &Request) -> bool {
    request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"))
}

fn page_message(status: StatusCode) -> &'static str {
    if status == StatusCode::NOT_FOUND {
        "There is no page at this address. Check it for typos, or start again from the API Keys page."
    } else {
        "This address cannot be opened that way. Start again from the API Keys page."
    }
}

fn has_content_type(response: &Response, expected: &str) -> bool {
    has_content_type_in(response.headers(), expected)
}

fn has_content_type_in(headers: &axum::http::HeaderMap, expected: &str) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with(expected))
}

/// The code that a plain-text error of this status stands for.
fn code_for(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::ValidationFailed,
        _ => ErrorCode::Internal,
    }
}

async fn rewrap_error(response: Response, is_api: bool) -> Response {
    let status = response.status();
    let text = match axum::body::to_bytes(response.into_body(), MAX_REWRAPPED_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_owned() } else { text };
    let error = ApiError::new(code_for(status), message);
    let mut rewrapped = if is_api { error.into_response() } else { crate::dashboard::error_page(error) };
    // Keep the original status even when the code's own status differs (e.g. 500s).
    *rewrapped.status_mut() = status;
    rewrapped
}
