//! `Client`: where Latchkey is, which key to call it with, and the one way every call is
//! sent and its answer read (JSON in, JSON or `ClientError` out). The calls themselves
//! live with their subject: `sites.rs`, `keys.rs`, `audit.rs`, `verify.rs`, `leaks.rs`.

use crate::error::ClientError;
use crate::secret::ApiKey;
use reqwest::header::{HeaderValue, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// How long a call may take, connection included, unless another `reqwest::Client` is
/// given: a guarded route must not hang because Latchkey does.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one Latchkey server, optionally with the key that management calls are
/// made with. Cheap to clone (clones share one connection pool). `Debug` never shows the key.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    key: Option<ApiKey>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("base_url", &self.base.as_str()).field("key", &self.key).finish()
    }
}

/// One page of a listing, newest first; pass `next_cursor` back for the next page.
#[derive(Clone, Debug, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Which page of a listing to read.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PageRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// 1 to 200; Latchkey's default is 50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `GET /healthz`: `ok`, or `degraded` with what an operator must act on.
#[derive(Clone, Debug, Deserialize)]
pub struct Health {
    pub status: String,
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl Client {
    /// A client for the Latchkey at `base_url` (e.g. `http://127.0.0.1:8080`, or a path
    /// prefix behind a proxy), with [`DEFAULT_TIMEOUT`] and no key: enough for `verify`,
    /// `report_leaks` and `health`; add a key with [`Client::with_key`] for the rest.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder().timeout(DEFAULT_TIMEOUT).build()?;
        Self::with_http_client(base_url, http)
    }

    /// Like [`Client::new`], with a `reqwest::Client` of your own (timeouts, TLS, proxies).
    pub fn with_http_client(base_url: &str, http: reqwest::Client) -> Result<Self, ClientError> {
        let mut base = Url::parse(base_url).map_err(|error| ClientError::InvalidUrl(error.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ClientError::InvalidUrl(format!("{base_url} is not an http(s) URL")));
        }
        base.set_query(None);
        base.set_fragment(None);
        Ok(Self { http, base, key: None })
    }

    /// The same server, called with `key` (sent as `X-API-Key`).
    pub fn with_key(&self, key: impl Into<ApiKey>) -> Self {
        Self { key: Some(key.into()), ..self.clone() }
    }

    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// `GET /healthz`. Needs no key.
    pub async fn health(&self) -> Result<Health, ClientError> {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("checked in with_http_client").pop_if_empty().push("healthz");
        read_json(self.http.get(url).send().await?).await
    }

    /// A request to `/api/v1/<segments...>`, each segment escaped (an id cannot change the
    /// path), with the client's key if it has one.
    pub(crate) fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in with_http_client")
            .pop_if_empty()
            .extend(["api", "v1"])
            .extend(segments);
        let request = self.http.request(method, url);
        match &self.key {
            None => request,
            Some(key) => match HeaderValue::from_str(key.expose()) {
                Ok(mut value) => {
                    // Sensitive values print as "Sensitive" in the headers' Debug output.
                    value.set_sensitive(true);
                    request.header("x-api-key", value)
                }
                // A key no header can carry: reqwest reports it as a builder error when the
                // request is sent, and that error names no header value.
                Err(_) => request.header("x-api-key", key.expose()),
            },
        }
    }

    /// Sends a request whose answer is JSON.
    pub(crate) async fn call<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ClientError> {
        read_json(request.send().await?).await
    }

    /// Sends a request whose answer has no body worth reading (204, 202).
    pub(crate) async fn call_for_status(&self, request: RequestBuilder) -> Result<(), ClientError> {
        let response = request.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = retry_after(&response);
        Err(refused(status, retry_after, &response.bytes().await?))
    }
}

async fn read_json<T: DeserializeOwned>(response: Response) -> Result<T, ClientError> {
    let status = response.status();
    let retry_after = retry_after(&response);
    let body = response.bytes().await?;
    if !status.is_success() {
        return Err(refused(status, retry_after, &body));
    }
    serde_json::from_slice(&body).map_err(|error| unexpected(status, "the body is not the expected JSON", &error))
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// Latchkey's JSON error, or `UnexpectedResponse` when something else answered.
fn refused(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => ClientError::Api { status, code: error.code, message: error.message, retry_after },
        Err(error) => unexpected(status, "the error body is not Latchkey's JSON error", &error),
    }
}

/// Says where the JSON went wrong but never quotes it: serde's own message can quote a
/// value, and the body of a create or rotate answer holds a full key.
fn unexpected(status: StatusCode, what: &str, error: &serde_json::Error) -> ClientError {
    let reason = format!("{what} ({:?} error at line {}, column {})", error.classify(), error.line(), error.column());
    ClientError::UnexpectedResponse { status, reason }
}

/// `Retry-After` in seconds (Latchkey never sends the HTTP-date form).
fn retry_after(response: &Response) -> Option<Duration> {
    let seconds = response.headers().get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_debug_output_shows_where_but_never_the_key() {
        let client = Client::new("http://127.0.0.1:8080").unwrap().with_key("lk_thekeyvalue");
        let shown = format!("{client:?}");
        assert!(shown.contains("127.0.0.1:8080"), "{shown}");
        assert!(!shown.contains("thekeyvalue"), "{shown}");
    }

    #[test]
    fn ids_cannot_change_the_path_they_are_put_in() {
        let client = Client::new("http://latchkey.internal/prefix/").unwrap();
        let request = client.request(Method::GET, &["keys", "../sites?x=1"]).build().unwrap();
        assert_eq!(request.url().as_str(), "http://latchkey.internal/prefix/api/v1/keys/..%2Fsites%3Fx=1");
    }

    #[test]
    fn a_base_url_that_is_not_http_is_refused() {
        assert!(matches!(Client::new("mailto:ops@example.com"), Err(ClientError::InvalidUrl(_))));
        assert!(matches!(Client::new("not a url"), Err(ClientError::InvalidUrl(_))));
    }
}
