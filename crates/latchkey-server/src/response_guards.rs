//! One layer over every response, so no route can forget it: security headers (every
//! response says `nosniff`; HTML pages also refuse framing and leak no referrer), and the
//! error shape (an error that axum or a library wrote as plain text, such as a path that
//! is not UTF-8 or a body over the limit, becomes our JSON error on the API and a readable
//! page on the dashboard; a browser that asks for a page at an address that has none gets
//! a page too, not the API's JSON).

use crate::error::{ApiError, ErrorCode};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Error bodies read to be rewrapped are small; anything larger is cut.
const MAX_REWRAPPED_BYTES: usize = 4096;

/// The guards as a layer. Hand-written rather than `axum::middleware::from_fn`, which boxes
/// the inner service and the future and rebuilds the request on every call: most answers
/// need no rewrapping, and those pay nothing for it.
#[derive(Clone, Copy, Default)]
pub struct GuardLayer;

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner }
    }
}

#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
}

impl<S: tower::Service<Request, Response = Response>> tower::Service<Request> for Guard<S> {
    type Response = Response;
    type Error = S::Error;
    type Future = Guarded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let is_api = request.uri().path().starts_with("/api/");
        let wants_page = !is_api && accepts_html(&request);
        Guarded::Answering { inner: self.inner.call(request), is_api, wants_page }
    }
}

pin_project_lite::pin_project! {
    /// The inner answer; then, only for an error that is neither JSON nor HTML, reading
    /// its text to rewrap it.
    #[project = GuardedState]
    pub enum Guarded<F> {
        Answering { #[pin] inner: F, is_api: bool, wants_page: bool },
        Rewrapping { rewrap: Pin<Box<dyn Future<Output = Response> + Send>>, wants_page: bool },
    }
}

impl<F, E> Future for Guarded<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                GuardedState::Answering { inner, is_api, wants_page } => {
                    let (is_api, wants_page) = (*is_api, *wants_page);
                    let response = match inner.poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                        Poll::Ready(Ok(response)) => response,
                    };
                    let is_error = response.status().is_client_error() || response.status().is_server_error();
                    if is_error
                        && !has_content_type(&response, "application/json")
                        && !has_content_type(&response, "text/html")
                    {
                        let rewrap = Box::pin(rewrap_error(response, is_api));
                        self.set(Guarded::Rewrapping { rewrap, wants_page });
                        continue;
                    }
                    return Poll::Ready(Ok(guarded(response, wants_page)));
                }
                GuardedState::Rewrapping { rewrap, wants_page } => {
                    let wants_page = *wants_page;
                    return rewrap.as_mut().poll(cx).map(|response| Ok(guarded(response, wants_page)));
                }
            }
        }
    }
}

/// The answer with the security headers, and as a page where a browser wanted one.
fn guarded(mut response: Response, wants_page: bool) -> Response {
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
