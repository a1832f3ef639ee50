//! Latchkey guarding a service's routes: `LatchkeyLayer` reads the key a request presents
//! (`X-API-Key`, else `Authorization: Bearer`), asks Latchkey's `POST /verify` whether it
//! meets the route's requirement (through a short cache), and either answers 401/403/429
//! with Latchkey's JSON error or hands the handler a `VerifiedKey`.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use latchkey_client::{Client, LatchkeyLayer, Permission, VerifiedKey};
//!
//! async fn list(key: VerifiedKey) -> String {
//!     format!("hello, {}", key.id)
//! }
//!
//! # fn build() -> Result<Router, latchkey_client::ClientError> {
//! let latchkey = Client::new("http://127.0.0.1:8080")?;
//! let app = Router::new().route("/articles", get(list)).route_layer(LatchkeyLayer::new(latchkey).require(Permission::Read));
//! # Ok(app) }
//! ```

mod cache;
mod extract;

use crate::client::Client;
use crate::error::ClientError;
use crate::keys::Permission;
use crate::secret::ApiKey;
use crate::sites::SiteId;
use crate::verify::{Refusal, VerifiedKey, VerifyRequest};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cache::{Asked, CacheKey, Verdict, VerificationCache};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The longest the layer serves an answer without asking Latchkey again: a key blocked
/// in Latchkey is refused by the layer at most this long after the block.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(1);

/// How many (key, client address) answers the layer keeps, by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// Latchkey's keys are at most 66 characters (a 16-character prefix, `_`, 49 more); a
/// much longer header is refused here instead of being sent on.
const LONGEST_PLAUSIBLE_KEY: usize = 256;

/// A tower layer that guards routes with Latchkey. Apply it with axum's `route_layer`, one
/// per requirement (e.g. Read for GET routes, Write for POST routes). Clones share one cache.
///
/// Answers served from the cache are not seen by Latchkey, so they do not appear in the
/// key's usage. A key with usage credits is never let through from the cache (every
/// request spends), nor is one with a rate limit when Latchkey reports the key's window
/// (every request counts; Latchkey versions that do not report it see a cached key's
/// requests only once per staleness bound).
#[derive(Clone)]
pub struct LatchkeyLayer {
    guard: Arc<Guard>,
}

#[derive(Clone)]
struct Settings {
    client: Client,
    permission: Option<Permission>,
    scopes: Vec<String>,
    site_id: Option<SiteId>,
    max_staleness: Duration,
    cache_capacity: usize,
}

struct Guard {
    settings: Settings,
    cache: VerificationCache,
}

impl fmt::Debug for LatchkeyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.guard.settings;
        f.debug_struct("LatchkeyLayer")
            .field("latchkey", &settings.client.base_url())
            .field("permission", &settings.permission)
            .field("scopes", &settings.scopes)
            .field("site_id", &settings.site_id)
            .field("max_staleness", &settings.max_staleness)
            .finish()
    }
}

impl LatchkeyLayer {
    /// Any valid key passes; narrow it with `require`, `require_scopes` and `for_site`.
    /// `client` needs no key of its own (`/verify` takes none).
    pub fn new(client: Client) -> Self {
        Self::with(Settings {
            client,
            permission: None,
            scopes: Vec::new(),
            site_id: None,
            max_staleness: DEFAULT_MAX_STALENESS,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        })
    }

    /// The least level a key needs (Read < Write < Admin < Master; Latchkey compares).
    pub fn require(self, permission: Permission) -> Self {
        self.changed(|settings| settings.permission = Some(permission))
    }

    /// Scopes a key must all hold, e.g. `flows:execute`.
    pub fn require_scopes(self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let scopes = scopes.into_iter().map(Into::into).collect();
        self.changed(|settings| settings.scopes = scopes)
    }

    /// Only keys of this site (and Master keys, which fit every site).
    pub fn for_site(self, site: &SiteId) -> Self {
        self.changed(|settings| settings.site_id = Some(site.clone()))
    }

    /// The longest an answer is served without asking Latchkey again, refusals included
    /// (default [`DEFAULT_MAX_STALENESS`]); zero asks on every request.
    pub fn max_staleness(self, max_staleness: Duration) -> Self {
        self.changed(|settings| settings.max_staleness = max_staleness)
    }

    /// How many answers to keep (default [`DEFAULT_CACHE_CAPACITY`]); zero turns caching off.
    pub fn cache_capacity(self, capacity: usize) -> Self {
        self.changed(|settings| settings.cache_capacity = capacity)
    }

    /// A new cache with every change: answers were given for the old requirement.
    fn changed(&self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.guard.settings.clone();
        change(&mut settings);
        Self::with(settings)
    }

    fn with(settings: Settings) -> Self {
        let cache = VerificationCache::new(settings.cache_capacity, settings.max_staleness);
        Self { guard: Arc::new(Guard { settings, cache }) }
    }
}

impl<S> tower::Layer<S> for LatchkeyLayer {
    type Service = LatchkeyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LatchkeyService { inner, guard: self.guard.clone() }
    }
}

/// The service [`LatchkeyLayer`] wraps a route in.
#[derive(Clone)]
pub struct LatchkeyService<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S> tower::Service<Request<Body>> for LatchkeyService<S>
where
    S: tower::Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The clone that was polled ready is the one to call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        let presented = presented_key(request.headers());
        let client_ip = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        Box::pin(async move {
            match guard.check(presented, client_ip).await {
                Ok(key) => {
                    request.extensions_mut().insert(key);
                    inner.call(request).await
                }
                Err(refused) => Ok(refused),
            }
        })
    }
}

/// The key a request presents, read as Latchkey itself reads it.
enum Presented {
    Nothing,
    Key(ApiKey),
    /// Two `X-API-Key` headers, or one no key could be: refused, never guessed between.
    Unusable,
}

fn presented_key(headers: &HeaderMap) -> Presented {
    let mut api_keys = headers.get_all("x-api-key").iter();
    let value = match (api_keys.next(), api_keys.next()) {
        (Some(_), Some(_)) => return Presented::Unusable,
        (Some(value), None) => value.to_str().unwrap_or_default(),
        (None, _) => headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .unwrap_or_default(),
    };
    match value.trim() {
        "" => Presented::Nothing,
        key if key.len() > LONGEST_PLAUSIBLE_KEY => Presented::Unusable,
        key => Presented::Key(ApiKey::new(key)),
    }
}

impl Guard {
    /// The verified key, or the answer to send instead of calling the handler.
    async fn check(&self, presented: Presented, client_ip: Option<IpAddr>) -> Result<VerifiedKey, Response> {
        let key = match presented {
            // No round trip for what Latchkey would refuse unseen.
            Presented::Nothing => return Err(self.refused(&Refusal::from_code("missing_api_key"), None)),
            Presented::Unusable => return Err(self.refused(&Refusal::from_code("invalid_api_key"), None)),
            Presented::Key(key) => key,
        };
        let cache_key = CacheKey::of(&key, client_ip);
        match self.cache.verdict(cache_key, || self.ask(key, client_ip)).await {
            Ok(Verdict::Allowed(verified)) => Ok(VerifiedKey::clone(&verified)),
            Ok(Verdict::Refused { refusal, retry_at }) => Err(self.refused(&refusal, retry_at)),
            Err(unanswered) => Err(unanswered),
        }
    }

    async fn ask(&self, key: ApiKey, client_ip: Option<IpAddr>) -> Result<Asked, Response> {
        let settings = &self.settings;
        let request = VerifyRequest {
            key,
            permission: settings.permission,
            scopes: settings.scopes.clone(),
            site_id: settings.site_id.clone(),
            ip: client_ip,
            cost: None,
        };
        let answer = settings.client.verify(&request).await.map_err(|error| unanswered(&error))?;
        // A refusal spends and counts nothing, so it is served again until it is stale.
        let cacheable = !answer.valid || (answer.remaining.is_none() && answer.ratelimit.is_none());
        let verdict = match (answer.refusal(), answer.key) {
            (Some(refusal), _) => {
                let retry_at = answer.ratelimit.map(|window| Instant::now() + Duration::from_secs(window.reset));
                Verdict::Refused { refusal, retry_at }
            }
            (None, Some(key)) => Verdict::Allowed(Arc::new(key)),
            (None, None) => {
                tracing::warn!("latchkey said valid without naming the key; refusing the request");
                return Err(unavailable());
            }
        };
        Ok(Asked { verdict, cacheable })
    }

    /// A refusal in Latchkey's words. A rate-limited key is told when its window ends, or,
    /// from a Latchkey that does not say, the staleness bound: by then the layer asks again.
    fn refused(&self, refusal: &Refusal, retry_at: Option<Instant>) -> Response {
        let retry_after = (refusal.code() == "rate_limited").then(|| {
            let wait = retry_at.map_or(self.settings.max_staleness, |at| at.saturating_duration_since(Instant::now()));
            wait.as_secs_f64().ceil().max(1.0) as u64
        });
        error_response(refusal.status(), refusal.code(), refusal.message(), retry_after)
    }
}

/// When Latchkey gives no verdict. Its own 429 (too many unknown keys from this service's
/// address) is passed on as it came; a requirement Latchkey rejects is this service's
/// bug (500); anything else means the key could not be checked (503), never allowed.
fn unanswered(error: &ClientError) -> Response {
    match error {
        ClientError::Api { status: StatusCode::TOO_MANY_REQUESTS, code, message, retry_after } => {
            let retry_after = retry_after.map(|wait| wait.as_secs().max(1));
            error_response(StatusCode::TOO_MANY_REQUESTS, code, message, retry_after)
        }
        ClientError::Api { status, code, message, .. } if status.is_client_error() => {
            tracing::error!(%status, code, message, "latchkey rejected this route's requirement");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "this route's key requirement is misconfigured",
                None,
            )
        }
        other => {
            tracing::warn!(error = %other, "could not check an API key with latchkey");
            unavailable()
        }
    }
}

fn unavailable() -> Response {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the API key could not be checked; retry later",
        None,
    )
}

/// Latchkey's error shape, `{"error": {"code", "message"}}`, so a client of the guarded
/// service reads the same errors as a client of Latchkey.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str, retry_after: Option<u64>) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    let mut response = (status, Json(body)).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
