//! Keys: the Forja seed's API Keys page as an API, plus `whoami`.

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiQuery, Authenticated, KeyManager};
use crate::routes::key_options::{
    parse_credits, parse_ip_allowlist, parse_metadata, parse_owner, parse_ratelimit, CreditsBody, KeyOptionsView,
    RateLimitBody,
};
use crate::routes::{nullable, rfc3339_time, IdPath, JsonResult, Page};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use latchkey_core::{Description, KeyEdit, KeyName, KeyOptions, KeyRecord, NewKey, Permission, Scopes, SiteId};
use latchkey_service::keys::{KeyQuery, UsageDay as DomainUsageDay};
use latchkey_service::sites::parse_site_filter;
use latchkey_service::PageRequest;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

/// A key as listed and shown: never the key itself, only its first characters.
#[derive(Serialize, ToSchema)]
pub struct KeyView {
    #[schema(example = "key_01JD2Z6M3X5Q7W9E1R3T5Y7U9I")]
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// The first 12 characters of the key, to recognise it.
    #[schema(example = "lk_3fZk9QaBc")]
    pub prefix: String,
    #[schema(example = "read")]
    pub permission: String,
    #[schema(example = json!(["flows:execute"]))]
    pub scopes: Vec<String>,
    /// `active`, `blocked` or `expired`.
    pub status: String,
    pub site_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub options: KeyOptionsView,
}

impl KeyView {
    pub fn of(key: &KeyRecord, now: DateTime<Utc>) -> Self {
        Self {
            id: key.id.to_string(),
            name: key.name.as_str().to_owned(),
            description: key.description.as_ref().map(|d| d.as_str().to_owned()),
            prefix: key.prefix.as_str().to_owned(),
            permission: key.permission.as_str().to_owned(),
            scopes: key.scopes.to_strings(),
            status: key.state_at(now).as_str().to_owned(),
            site_id: key.site_id.as_ref().map(SiteId::to_string),
            created_at: key.created_at,
            created_by: key.created_by.as_ref().map(ToString::to_string),
            updated_at: key.updated_at,
            last_used_at: key.last_used_at,
            expires_at: key.expires_at,
            options: KeyOptionsView::of(&key.options),
        }
    }
}

/// The create response: the key's metadata plus `key`, shown this once only.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub metadata: KeyView,
    /// The full key. Store it now: it is never shown again.
    pub key: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    /// 1 to 100 characters.
    pub name: String,
    /// `read`, `write`, `admin` or `master`; never above the caller's own level.
    pub permission: String,
    /// Required, except for a Master key, which belongs to no site.
    pub site_id: Option<String>,
    /// Fine-grained permissions, `resource:action`.
    pub scopes: Option<Vec<String>>,
    pub description: Option<String>,
    /// RFC 3339, in the future.
    pub expires_at: Option<String>,
    /// The platform's own user or customer id (1 to 255 characters).
    pub owner_id: Option<String>,
    /// A free JSON object, at most 4 KiB; returned by verify.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// Networks the key may be used from, e.g. `["10.0.0.0/8", "::1/128"]`.
    pub ip_allowlist: Option<Vec<String>>,
    pub ratelimit: Option<RateLimitBody>,
    pub credits: Option<CreditsBody>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyBody {
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    pub permission: Option<String>,
    pub scopes: Option<Vec<String>>,
    /// `null` removes the expiry.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Option<String>>,
    /// `null` removes the owner.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub owner_id: Option<Option<String>>,
    /// `null` removes the metadata.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<Map<String, Value>>>,
    /// `[]` removes the allowlist.
    pub ip_allowlist: Option<Vec<String>>,
    /// `null` removes the rate limit.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RateLimitBody>)]
    pub ratelimit: Option<Option<RateLimitBody>>,
    /// Sets the balance (and refill); `null` makes the key unlimited.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<CreditsBody>)]
    pub credits: Option<Option<CreditsBody>>,
    /// Refused: a key's value never changes (rotate it instead).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub key: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub prefix: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub hash: Option<IgnoredAny>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct KeyListQuery {
    /// Only this site's keys. Without it: every key the caller may manage.
    pub site: Option<String>,
    /// Only the keys of this owner.
    pub owner_id: Option<String>,
    /// Only keys not used for this many days (never-used keys count from creation).
    pub unused_for_days: Option<u32>,
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<u32>,
}

fn parse_permission(raw: &str) -> Result<Permission, ApiError> {
    Ok(raw.parse::<Permission>()?)
}

fn parse_site(raw: &str) -> Result<SiteId, ApiError> {
    // An id that cannot exist is a site nobody can see.
    SiteId::parse(raw).ok_or_else(|| ApiError::not_found("site"))
}

/// Keys the caller may manage, newest first.
#[utoipa::path(get, path = "/keys", tag = "keys", params(KeyListQuery),
    responses((status = 200, body = Page<KeyView>)),
    security(("api_key" = [])))]
pub async fn list_keys(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    ApiQuery(query): ApiQuery<KeyListQuery>,
) -> JsonResult<Page<KeyView>> {
    let site = query.site.as_deref().map(parse_site_filter).transpose()?;
    let filter = KeyQuery { site, owner_id: query.owner_id, unused_for_days: query.unused_for_days };
    let page = PageRequest { cursor: query.cursor, limit: query.limit };
    let keys = state.service.keys().list(&auth.caller, filter, &page).await?;
    let now = state.clock.now();
    Ok(Page::of(keys, |key| KeyView::of(&key, now)))
}

/// Creates a key. The response is the only one that ever holds the full key.
#[utoipa::path(post, path = "/keys", tag = "keys", request_body = CreateKeyBody,
    responses((status = 201, body = CreatedKey), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    ApiJson(body): ApiJson<CreateKeyBody>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let now = state.clock.now();
    let spec = NewKey {
        name: KeyName::parse(&body.name)?,
        description: body.description.as_deref().map(Description::parse).transpose()?,
        permission: parse_permission(&body.permission)?,
        scopes: Scopes::parse(body.scopes.as_deref().unwrap_or_default())?,
        site_id: body.site_id.as_deref().map(parse_site).transpose()?,
        expires_at: body.expires_at.as_deref().map(|raw| rfc3339_time("expires_at", raw)).transpose()?,
        options: KeyOptions {
            owner_id: body.owner_id.as_deref().map(parse_owner).transpose()?,
            metadata: body.metadata.as_ref().map(parse_metadata).transpose()?,
            ip_allowlist: parse_ip_allowlist(body.ip_allowlist.as_deref().unwrap_or_default())?,
            ratelimit: body.ratelimit.as_ref().map(parse_ratelimit).transpose()?,
            credits: body.credits.as_ref().map(parse_credits).transpose()?.map(|c| c.applied_to(None, now)),
            rotated_from: None,
            rotated_to: None,
        },
    };
    let (record, secret) = state.service.keys().create(&auth.caller, spec).await?;
    let created = CreatedKey { metadata: KeyView::of(&record, now), key: secret.expose().to_owned() };
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 200, body = KeyView)),
    security(("api_key" = [])))]
pub async fn get_key(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    Path(id): IdPath,
) -> JsonResult<KeyView> {
    let key = state.service.keys().get(&auth.caller, &id).await?;
    Ok(Json(KeyView::of(&key, state.clock.now())))
}

impl UpdateKeyBody {
    /// The edit this body asks for, as the service's domain type.
    fn to_edit(&self) -> Result<KeyEdit, ApiError> {
        if self.key.is_some() || self.prefix.is_some() || self.hash.is_some() {
            return Err(ApiError::new(
                ErrorCode::ImmutableField,
                "a key's value, prefix and hash never change; create or rotate a key instead",
            ));
        }
        Ok(KeyEdit {
            name: self.name.as_deref().map(KeyName::parse).transpose()?,
            description: self
                .description
                .as_ref()
                .map(|d| d.as_deref().map(Description::parse).transpose())
                .transpose()?,
            permission: self.permission.as_deref().map(parse_permission).transpose()?,
            scopes: self.scopes.as_deref().map(Scopes::parse).transpose()?,
            expires_at: self
                .expires_at
                .as_ref()
                .map(|e| e.as_deref().map(|raw| rfc3339_time("expires_at", raw)).transpose())
                .transpose()?,
            owner_id: self.owner_id.as_ref().map(|o| o.as_deref().map(parse_owner).transpose()).transpose()?,
            metadata: self.metadata.as_ref().map(|m| m.as_ref().map(parse_metadata).transpose()).transpose()?,
            ip_allowlist: self.ip_allowlist.as_deref().map(parse_ip_allowlist).transpose()?,
            ratelimit: self.ratelimit.as_ref().map(|r| r.as_ref().map(parse_ratelimit).transpose()).transpose()?,
            credits: self.credits.as_ref().map(|c| c.as_ref().map(parse_credits).transpose()).transpose()?,
        })
    }
}

/// Edits name, description, permission, scopes, expiry and settings. Never the key value.
#[utoipa::path(patch, path = "/keys/{id}", tag = "keys", params(("id" = String, Path)), request_body = UpdateKeyBody,
    responses((status = 200, body = KeyView),
              (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update_key(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    Path(id): IdPath,
    ApiJson(body): ApiJson<UpdateKeyBody>,
) -> JsonResult<KeyView> {
    let edit = body.to_edit()?;
    let updated = state.service.keys().edit(&auth.caller, &id, &edit).await?;
    Ok(Json(KeyView::of(&updated, state.clock.now())))
}

/// Blocks a key: it stops working before this returns; the record stays.
#[utoipa::path(post, path = "/keys/{id}/block", tag = "keys", params(("id" = String, Path)),
    responses((status = 200, body = KeyView), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn block_key(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    Path(id): IdPath,
) -> JsonResult<KeyView> {
    let blocked = state.service.keys().block(&auth.caller, &id).await?;
    Ok(Json(KeyView::of(&blocked, state.clock.now())))
}

#[utoipa::path(post, path = "/keys/{id}/unblock", tag = "keys", params(("id" = String, Path)),
    responses((status = 200, body = KeyView)),
    security(("api_key" = [])))]
pub async fn unblock_key(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    Path(id): IdPath,
) -> JsonResult<KeyView> {
    let unblocked = state.service.keys().unblock(&auth.caller, &id).await?;
    Ok(Json(KeyView::of(&unblocked, state.clock.now())))
}

/// Deletes a key for good: it stops working before this returns.
#[utoipa::path(delete, path = "/keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 204), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_key(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    Path(id): IdPath,
) -> Result<StatusCode, ApiError> {
    state.service.keys().delete(&auth.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The calling key's own metadata. Any valid key may ask.
#[utoipa::path(get, path = "/whoami", tag = "keys",
    responses((status = 200, body = KeyView)),
    security(("api_key" = [])))]
pub async fn whoami(State(state): State<AppState>, auth: Authenticated) -> JsonResult<KeyView> {
    let key = state.service.keys().own(&auth.caller).await?;
    Ok(Json(KeyView::of(&key, state.clock.now())))
}

/// One day of a key's usage.
#[derive(Serialize, ToSchema)]
pub struct UsageDay {
    #[schema(example = "2026-11-27")]
    pub date: String,
    pub allowed: u64,
    pub refused: u64,
}

impl From<&DomainUsageDay> for UsageDay {
    fn from(day: &DomainUsageDay) -> Self {
        Self { date: day.day.format("%Y-%m-%d").to_string(), allowed: day.allowed, refused: day.refused }
    }
}

#[derive(Serialize, ToSchema)]
pub struct KeyUsage {
    pub key_id: String,
    /// Oldest first, one entry per UTC day, zeros included.
    pub days: Vec<UsageDay>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// 1 to 90, default 30.
    pub days: Option<u32>,
}

/// Requests per UTC day made with this key, allowed vs refused (counted in memory and
/// written in batches, so the current second may not be included yet).
#[utoipa::path(get, path = "/keys/{id}/usage", tag = "keys", params(("id" = String, Path), UsageQuery),
    responses((status = 200, body = KeyUsage)),
    security(("api_key" = [])))]
pub async fn key_usage(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    Path(id): IdPath,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> JsonResult<KeyUsage> {
    let days = state.service.keys().usage(&auth.caller, &id, query.days.unwrap_or(30)).await?;
    let key_id = latchkey_service::keys::parse_key_id(&id)?;
    Ok(Json(KeyUsage { key_id: key_id.to_string(), days: days.iter().map(UsageDay::from).collect() }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old key keeps working, 0 (default) to 2592000 (30 days).
    pub grace_seconds: Option<u64>,
}

/// Issues a replacement key with the same site, name, level, scopes, description and
/// settings; the old key keeps working for `grace_seconds`, then fails as `key_expired`.
/// The response holds the new key, once.
#[utoipa::path(post, path = "/keys/{id}/rotate", tag = "keys", params(("id" = String, Path)), request_body = RotateBody,
    responses((status = 201, body = CreatedKey),
              (status = 409, body = ErrorBody, description = "the key is blocked")),
    security(("api_key" = [])))]
pub async fn rotate_key(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    Path(id): IdPath,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    // The body is optional (`curl -X POST .../rotate` rotates without grace).
    let body: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| match error.classify() {
            serde_json::error::Category::Data => ApiError::validation(error.to_string()),
            _ => ApiError::new(ErrorCode::MalformedJson, error.to_string()),
        })?
    };
    let grace = body.grace_seconds.unwrap_or(0);
    let (record, secret) = state.service.keys().rotate(&auth.caller, &id, grace).await?;
    let created = CreatedKey { metadata: KeyView::of(&record, state.clock.now()), key: secret.expose().to_owned() };
    Ok((StatusCode::CREATED, Json(created)))
}
