//! Verification for the services that keys protect: `POST /verify` answers in JSON, and
//! `GET /auth` is a forward-auth endpoint for nginx `auth_request`, Traefik and Caddy.
//! Neither needs a key of its own: the key being checked is the credential.

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{presented_key, ApiJson, ApiQuery, ClientIp};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use latchkey_core::{Permission, Refusal, Requirement, Scopes, SiteId};
use latchkey_service::{Check, Presented, Verdict, VerifiedKey};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// The key to check, as the protected service received it.
    pub key: String,
    /// The least level the key must have.
    pub permission: Option<String>,
    /// Scopes the key must all hold.
    pub scopes: Option<Vec<String>>,
    /// The site the request is for; a Master key fits every site.
    pub site_id: Option<String>,
    /// The end client's address as the calling service saw it, for keys with an IP
    /// allowlist. Without it, the caller's own address is checked.
    pub ip: Option<String>,
    /// Credits this request spends, for keys with usage credits (default 1).
    pub cost: Option<u64>,
}

/// The key's metadata, present whenever the key exists (even when refused). Borrowed
/// from the cache entry and written straight into the response: no copies on the hot path.
/// No field is required in the schema: for an unknown key the answer has none of them.
#[derive(Serialize, ToSchema)]
pub struct VerifiedMetadata<'a> {
    #[schema(value_type = String, example = "key_01JD2Z6M3X5Q7W9E1R3T5Y7U9I", required = false)]
    pub key_id: PrefixedId,
    #[schema(required = false)]
    pub name: &'a str,
    #[schema(value_type = Option<String>)]
    pub site_id: Option<PrefixedId>,
    #[schema(required = false)]
    pub permission: &'static str,
    #[schema(value_type = Vec<String>, required = false)]
    pub scopes: &'a latchkey_core::Scopes,
    pub expires_at: Option<DateTime<Utc>>,
    pub owner_id: Option<&'a str>,
    /// The free JSON object stored with the key.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<&'a serde_json::value::RawValue>,
}

/// An id written as `<prefix><ULID>` without building a string first.
pub struct PrefixedId(&'static str, latchkey_core::Ulid);

impl Serialize for PrefixedId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}{}", self.0, self.1))
    }
}

#[derive(Serialize, ToSchema)]
pub struct VerifyAnswer<'a> {
    pub valid: bool,
    /// `valid`, or why not, in the error table's words: `invalid_api_key`, `key_blocked`,
    /// `key_expired`, `ip_not_allowed`, `insufficient_permission`, `missing_scope`,
    /// `wrong_site`, `rate_limited` or `usage_exceeded`. With `?codes=legacy` the first
    /// three are `not_found`, `blocked` and `expired`, as before version 0.2.
    pub code: &'static str,
    #[serde(flatten)]
    pub metadata: Option<VerifiedMetadata<'a>>,
    /// Credits left after this request, for keys with usage credits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// Where the key stands in its rate-limit window, for keys with a rate limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimit: Option<RateLimitStanding>,
}

#[derive(Serialize, ToSchema)]
pub struct RateLimitStanding {
    /// Verifications allowed per window.
    pub limit: u32,
    /// Verifications left in this window.
    pub remaining: u32,
    /// Seconds until the window ends and `remaining` is back to `limit`.
    pub reset: u64,
}

impl RateLimitStanding {
    fn after(verdict: &Verdict) -> Option<Self> {
        match verdict {
            Verdict::Allowed { key, window: Some(left), .. } => key.extras().ratelimit.map(|limit| RateLimitStanding {
                limit: limit.limit,
                remaining: left.remaining,
                reset: left.reset_seconds,
            }),
            Verdict::Refused { refusal: Refusal::RateLimited { retry_after_seconds, limit }, .. } => {
                Some(RateLimitStanding { limit: limit.limit, remaining: 0, reset: *retry_after_seconds })
            }
            _ => None,
        }
    }
}

impl<'a> VerifiedMetadata<'a> {
    fn of(key: &'a VerifiedKey) -> Self {
        let extras = key.extras();
        Self {
            key_id: PrefixedId(latchkey_core::KeyId::PREFIX, key.ulid()),
            name: key.name(),
            site_id: key.site_ulid().map(|site| PrefixedId(SiteId::PREFIX, site)),
            permission: key.permission().as_str(),
            scopes: key.scopes(),
            expires_at: key.expires_at(),
            owner_id: extras.owner_id.as_deref(),
            metadata: extras.metadata.as_deref().and_then(|m| serde_json::from_str(m).ok()),
        }
    }
}

fn parse_requirement(permission: Option<&str>, scopes: &[String], site: Option<&str>) -> Result<Requirement, ApiError> {
    Ok(Requirement {
        permission: permission.map(str::parse::<Permission>).transpose()?,
        scopes: Scopes::parse(scopes)?,
        site: site
            .map(|raw| {
                SiteId::parse(raw).map(|id| id.ulid()).ok_or_else(|| ApiError::validation("site_id is not a site id"))
            })
            .transpose()?,
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VerifyQuery {
    /// `legacy`: answer `not_found`, `blocked`, `expired` instead of `invalid_api_key`,
    /// `key_blocked`, `key_expired`, for clients written before the vocabulary was unified.
    pub codes: Option<String>,
}

/// Checks a key. Always 200 for a well-formed request; `valid` says whether to let the
/// request through, `code` says why not. Counts as a use of the key.
#[utoipa::path(post, path = "/verify", tag = "verification", request_body = VerifyBody, params(VerifyQuery),
    responses((status = 200, body = VerifyAnswer),
              (status = 429, body = ErrorBody, description = "too many failed verifications from this address")))]
pub async fn verify_key(
    State(state): State<AppState>,
    ClientIp(caller_ip): ClientIp,
    ApiQuery(query): ApiQuery<VerifyQuery>,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<Response, ApiError> {
    let legacy_codes = match query.codes.as_deref() {
        None => false,
        Some("legacy") => true,
        Some(_) => return Err(ApiError::new(ErrorCode::InvalidQuery, "codes must be legacy or absent")),
    };
    let requirement = parse_requirement(
        body.permission.as_deref(),
        body.scopes.as_deref().unwrap_or_default(),
        body.site_id.as_deref(),
    )?;
    let client_ip = match body.ip.as_deref() {
        Some(raw) => Some(raw.trim().parse::<IpAddr>().map_err(|_| ApiError::validation("ip is not an IP address"))?),
        None => caller_ip,
    };
    let cost = body.cost.unwrap_or(1);
    if cost > 1_000_000 {
        return Err(ApiError::validation("cost must be between 0 and 1000000"));
    }
    // Guessing is throttled on the address that asks, not on the end client it names.
    let check = Check { requirement, client_ip, throttle_ip: caller_ip, cost: Some(cost) };
    let verdict = state.service.verify(Presented::Key(&body.key), &check).await?;
    let ratelimit = RateLimitStanding::after(&verdict);
    let answer = match &verdict {
        Verdict::Allowed { key, remaining, .. } => {
            let metadata = Some(VerifiedMetadata::of(key));
            VerifyAnswer { valid: true, code: "valid", metadata, remaining: *remaining, ratelimit }.into_response()
        }
        Verdict::Refused { refusal: refusal @ Refusal::Throttled { .. }, .. } => return Err((*refusal).into()),
        Verdict::Refused { refusal, key } => {
            let code = if legacy_codes { refusal.legacy_code() } else { refusal.code() };
            let metadata = key.as_deref().map(VerifiedMetadata::of);
            VerifyAnswer { valid: false, code, metadata, remaining: None, ratelimit }.into_response()
        }
    };
    Ok(answer)
}

impl IntoResponse for VerifyAnswer<'_> {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

/// The level a forwarded request needs by default: the Forja seed's table, where reading
/// needs Read and anything that changes data needs Write.
/// Method names are case-sensitive (RFC 9110 §9.1): `get` is not GET, so it needs Write.
fn level_for_method(method: &str) -> Permission {
    if matches!(method, "GET" | "HEAD" | "OPTIONS") {
        Permission::Read
    } else {
        Permission::Write
    }
}

/// The headers that carry the original request's method: nginx's config sets
/// `X-Original-Method`; Traefik and Caddy set `X-Forwarded-Method` and pass every other
/// header through from the client.
const METHOD_HEADERS: [&str; 2] = ["x-original-method", "x-forwarded-method"];

struct AuthQuery {
    permission: Option<String>,
    site: Option<String>,
    scopes: Vec<String>,
    /// The one header the proxy sets itself (`?method_header=`); the others are ignored.
    method_header: Option<&'static str>,
    /// `?limit_status=403`: answer 403 instead of 429 when a limit is hit, for nginx,
    /// whose `auth_request` turns anything but 2xx, 401 and 403 into a 500.
    limits_as_forbidden: bool,
}

/// The original request's method. A client can add either method header through a proxy
/// that passes headers on, so: with `?method_header=` only that header counts; without
/// it, the headers present must agree, and a request whose headers disagree is refused.
fn original_method<'a>(
    headers: &'a axum::http::HeaderMap,
    only: Option<&'static str>,
    own: &'a Method,
) -> Result<&'a str, ApiError> {
    let mut method = None;
    for name in METHOD_HEADERS.into_iter().filter(|name| only.is_none_or(|only| only == *name)) {
        let mut values = headers.get_all(name).iter();
        let value = match (values.next(), values.next()) {
            (None, _) => continue,
            (Some(_), Some(_)) => return Err(conflicting_method("is sent twice")),
            (Some(value), None) => value.to_str().map_err(|_| conflicting_method("is not text"))?,
        };
        if method.is_some_and(|seen| seen != value) {
            return Err(conflicting_method("headers disagree"));
        }
        method = Some(value);
    }
    Ok(method.unwrap_or(own.as_str()))
}

fn conflicting_method(why: &str) -> ApiError {
    ApiError::new(ErrorCode::ConflictingMethod, format!("the original request's method {why}; refusing to guess"))
}

/// Parses `?permission=&site=&scope=&scope=` (repeatable `scope`, which serde's query
/// extractor cannot express). Unknown parameters are refused so typos don't weaken a check.
fn parse_auth_query(query: Option<&str>) -> Result<AuthQuery, ApiError> {
    let mut parsed =
        AuthQuery { permission: None, site: None, scopes: Vec::new(), method_header: None, limits_as_forbidden: false };
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "permission" => parsed.permission = Some(value.into_owned()),
            "site" => parsed.site = Some(value.into_owned()),
            "scope" => parsed.scopes.push(value.into_owned()),
            "method_header" => {
                let name = value.to_ascii_lowercase();
                let known = METHOD_HEADERS.into_iter().find(|header| *header == name);
                parsed.method_header = Some(known.ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidQuery,
                        "method_header must be X-Original-Method or X-Forwarded-Method",
                    )
                })?);
            }
            "limit_status" if value == "403" => parsed.limits_as_forbidden = true,
            "limit_status" if value == "429" => parsed.limits_as_forbidden = false,
            "limit_status" => return Err(ApiError::new(ErrorCode::InvalidQuery, "limit_status must be 403 or 429")),
            other => return Err(ApiError::new(ErrorCode::InvalidQuery, format!("unknown query parameter {other:?}"))),
        }
    }
    Ok(parsed)
}

/// Forward-auth: 204 with `X-Latchkey-*` headers for the proxy to pass upstream, or 401/403
/// with the JSON error. The required level comes from `?permission=`, else from the
/// original method: the header named by `?method_header=`, else `X-Original-Method` and
/// `X-Forwarded-Method`, which must agree when both are sent, else this request's own.
#[utoipa::path(get, path = "/auth", tag = "verification",
    params(
        ("permission" = Option<String>, Query, description = "Least level; default from the original method"),
        ("site" = Option<String>, Query, description = "The site the request is for"),
        ("scope" = Option<Vec<String>>, Query, description = "Required scope; repeatable"),
        ("limit_status" = Option<String>, Query, description = "403: answer limits (rate_limited, usage_exceeded) with 403 instead of 429, for nginx auth_request"),
        ("method_header" = Option<String>, Query, description = "The one header that carries the original method: X-Original-Method (nginx) or X-Forwarded-Method (Traefik, Caddy)"),
        ("X-API-Key" = Option<String>, Header, description = "The key, or use Authorization: Bearer"),
        ("X-Original-Method" = Option<String>, Header, description = "Method of the original request (nginx)"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "Method of the original request (Traefik, Caddy)"),
    ),
    responses((status = 204, description = "Allowed; X-Latchkey-Key-Id, X-Latchkey-Site, X-Latchkey-Permission, X-Latchkey-Scopes set"),
              (status = 400, body = ErrorBody, description = "bad query, or method headers that disagree"),
              (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn forward_auth(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    method: Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let query = parse_auth_query(uri.query())?;
    let original_method = original_method(&headers, query.method_header, &method)?;
    let mut requirement = parse_requirement(query.permission.as_deref(), &query.scopes, query.site.as_deref())?;
    requirement.permission.get_or_insert_with(|| level_for_method(original_method));
    let check = Check { requirement, client_ip: ip, throttle_ip: ip, cost: Some(1) };
    match state.service.verify(presented_key(&headers), &check).await?.allowed() {
        Ok(key) => Ok(allowed(&key)),
        Err(refusal) => Ok(refused(refusal, query.limits_as_forbidden)),
    }
}

/// The JSON error, plus the refusal in headers that a proxy can read when it drops the
/// body (nginx's `auth_request`): `X-Latchkey-Error` (the code), `X-Latchkey-Error-Message`
/// and, for limits, `Retry-After`.
fn refused(refusal: Refusal, limits_as_forbidden: bool) -> Response {
    let mut response = ApiError::from(refusal).into_response();
    if limits_as_forbidden && response.status() == StatusCode::TOO_MANY_REQUESTS {
        *response.status_mut() = StatusCode::FORBIDDEN;
    }
    let headers = response.headers_mut();
    headers.insert(HeaderName::from_static("x-latchkey-error"), HeaderValue::from_static(refusal.code()));
    headers.insert(HeaderName::from_static("x-latchkey-error-message"), HeaderValue::from_static(refusal.message()));
    response
}

fn allowed(key: &VerifiedKey) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set("x-latchkey-key-id", key.id().to_string());
    set("x-latchkey-site", key.site_id().map(|id| id.to_string()).unwrap_or_default());
    set("x-latchkey-permission", key.permission().as_str().to_owned());
    set("x-latchkey-scopes", key.scopes().to_strings().join(" "));
    // Always sent, empty when the key has no owner: proxies that copy it (Caddy 2.6's
    // copy_headers) would otherwise pass a client's forged value or a placeholder on.
    set("x-latchkey-owner", key.extras().owner_id.as_deref().unwrap_or_default().to_owned());
    response
}
