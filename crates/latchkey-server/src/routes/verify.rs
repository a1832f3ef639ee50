//! Verification for the services that keys protect: `POST /verify` answers in JSON, and
//! `GET /auth` is a forward-auth endpoint for nginx `auth_request`, Traefik and Caddy.
//! Neither needs a key of its own: the key being checked is the credential.

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{client_ip, presented_key, refusal_error, throttled, ApiJson};
use crate::state::AppState;
use crate::verification::{KeyLookup, RefusalReason, VerifiedKey};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use latchkey_core::{Permission, Requirement, Scopes, SiteId, Unmet};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use utoipa::ToSchema;

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
}

/// The key's metadata, present whenever the key exists (even when refused).
#[derive(Serialize, ToSchema)]
pub struct VerifiedMetadata {
    pub key_id: String,
    pub name: String,
    pub site_id: Option<String>,
    pub permission: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct VerifyAnswer {
    pub valid: bool,
    /// `valid`, `not_found`, `blocked`, `expired`, `insufficient_permission`,
    /// `missing_scope` or `wrong_site`.
    pub code: &'static str,
    #[serde(flatten)]
    pub metadata: Option<VerifiedMetadata>,
}

impl VerifiedMetadata {
    fn of(key: &VerifiedKey) -> Self {
        Self {
            key_id: key.id().to_string(),
            name: key.name.to_string(),
            site_id: key.site_id().map(|id| id.to_string()),
            permission: key.permission.as_str().to_owned(),
            scopes: key.scopes.to_strings(),
            expires_at: key.expires_at(),
        }
    }
}

/// The outcome of checking a key against a requirement.
enum Verdict {
    Valid(std::sync::Arc<VerifiedKey>),
    Refused(RefusalReason, Option<std::sync::Arc<VerifiedKey>>),
    Unmet(Unmet, std::sync::Arc<VerifiedKey>),
}

/// Checks a key against a requirement and counts the request as allowed or refused.
async fn judge(state: &AppState, key: &str, requirement: &Requirement) -> Result<Verdict, ApiError> {
    let verdict = match state.verifier.check(key, state.clock.now()).await? {
        KeyLookup::Refused(reason, key) => Verdict::Refused(reason, key),
        KeyLookup::Usable(key) => match requirement.check(key.permission, key.site_ulid(), &key.scopes) {
            Ok(()) => Verdict::Valid(key),
            Err(unmet) => Verdict::Unmet(unmet, key),
        },
    };
    match &verdict {
        Verdict::Valid(key) => state.verifier.count_request(key, true),
        Verdict::Refused(_, Some(key)) | Verdict::Unmet(_, key) => state.verifier.count_request(key, false),
        Verdict::Refused(_, None) => {}
    }
    Ok(verdict)
}

fn unmet_code(unmet: Unmet) -> ErrorCode {
    match unmet {
        Unmet::InsufficientPermission => ErrorCode::InsufficientPermission,
        Unmet::MissingScope => ErrorCode::MissingScope,
        Unmet::WrongSite => ErrorCode::WrongSite,
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

/// Only unknown keys count towards throttling: they are what guessing produces, while a
/// blocked or expired key is a real key a service may legitimately keep seeing.
fn throttle_guess(state: &AppState, reason: RefusalReason, ip: Option<IpAddr>) -> Option<ApiError> {
    (reason == RefusalReason::NotFound).then(|| throttled(state, ip, state.clock.now())).flatten()
}

/// The client address as seen by this server (socket, or trusted proxy's X-Forwarded-For).
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts, state)))
    }
}

/// Checks a key. Always 200 for a well-formed request; `valid` says whether to let the
/// request through, `code` says why not. Counts as a use of the key.
#[utoipa::path(post, path = "/verify", tag = "verification", request_body = VerifyBody,
    responses((status = 200, body = VerifyAnswer), (status = 422, body = ErrorBody),
              (status = 429, body = ErrorBody, description = "too many failed verifications from this address")))]
pub async fn verify_key(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<Json<VerifyAnswer>, ApiError> {
    let requirement = parse_requirement(
        body.permission.as_deref(),
        body.scopes.as_deref().unwrap_or_default(),
        body.site_id.as_deref(),
    )?;
    let (code, key) = match judge(&state, &body.key, &requirement).await? {
        Verdict::Valid(key) => ("valid", Some(key)),
        Verdict::Refused(reason, key) => {
            if let Some(limited) = throttle_guess(&state, reason, ip) {
                return Err(limited);
            }
            let code = match reason {
                RefusalReason::NotFound => "not_found",
                RefusalReason::Blocked => "blocked",
                RefusalReason::Expired => "expired",
            };
            (code, key)
        }
        Verdict::Unmet(unmet, key) => (unmet_code(unmet).describe().0, Some(key)),
    };
    Ok(Json(VerifyAnswer { valid: code == "valid", code, metadata: key.as_deref().map(VerifiedMetadata::of) }))
}

/// The level a forwarded request needs by default: the Forja seed's table, where reading
/// needs Read and anything that changes data needs Write.
fn level_for_method(method: &str) -> Permission {
    match method.to_ascii_uppercase().as_str() {
        "GET" | "HEAD" | "OPTIONS" => Permission::Read,
        _ => Permission::Write,
    }
}

struct AuthQuery {
    permission: Option<String>,
    site: Option<String>,
    scopes: Vec<String>,
}

/// Parses `?permission=&site=&scope=&scope=` (repeatable `scope`, which serde's query
/// extractor cannot express). Unknown parameters are refused so typos don't weaken a check.
fn parse_auth_query(query: Option<&str>) -> Result<AuthQuery, ApiError> {
    let mut parsed = AuthQuery { permission: None, site: None, scopes: Vec::new() };
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "permission" => parsed.permission = Some(value.into_owned()),
            "site" => parsed.site = Some(value.into_owned()),
            "scope" => parsed.scopes.push(value.into_owned()),
            other => return Err(ApiError::new(ErrorCode::InvalidQuery, format!("unknown query parameter {other:?}"))),
        }
    }
    Ok(parsed)
}

/// Forward-auth: 204 with `X-Latchkey-*` headers for the proxy to pass upstream, or 401/403
/// with the JSON error. The required level comes from `?permission=`, else from the
/// original method (`X-Original-Method`, `X-Forwarded-Method`, or this request's own).
#[utoipa::path(get, path = "/auth", tag = "verification",
    params(
        ("permission" = Option<String>, Query, description = "Least level; default from the original method"),
        ("site" = Option<String>, Query, description = "The site the request is for"),
        ("scope" = Option<Vec<String>>, Query, description = "Required scope; repeatable"),
        ("X-API-Key" = Option<String>, Header, description = "The key, or use Authorization: Bearer"),
        ("X-Original-Method" = Option<String>, Header, description = "Method of the original request (nginx)"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "Method of the original request (Traefik, Caddy)"),
    ),
    responses((status = 204, description = "Allowed; X-Latchkey-Key-Id, X-Latchkey-Site, X-Latchkey-Permission, X-Latchkey-Scopes set"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn forward_auth(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    method: Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let query = parse_auth_query(uri.query())?;
    let original_method = ["x-original-method", "x-forwarded-method"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .unwrap_or(method.as_str());
    let permission = query.permission.clone().unwrap_or_else(|| level_for_method(original_method).as_str().to_owned());
    let requirement = parse_requirement(Some(&permission), &query.scopes, query.site.as_deref())?;
    let Some(presented) = presented_key(&headers).filter(|key| !key.is_empty()) else {
        return Err(ApiError::new(ErrorCode::MissingApiKey, "send the API key in the X-API-Key header"));
    };
    match judge(&state, presented, &requirement).await? {
        Verdict::Valid(key) => Ok(allowed(&key)),
        Verdict::Refused(reason, _) => Err(throttle_guess(&state, reason, ip).unwrap_or_else(|| refusal_error(reason))),
        Verdict::Unmet(unmet, _) => Err(ApiError::new(unmet_code(unmet), "this key may not make this request")),
    }
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
    set("x-latchkey-permission", key.permission.as_str().to_owned());
    set("x-latchkey-scopes", key.scopes.to_strings().join(" "));
    response
}
