//! `POST /keys/import`: keys made by another system, brought in by the SHA-256 of their
//! values so that their clients keep working (the migration path off other key services).
//! This module parses and shapes JSON; the rules are the service's (`Keys::import`).

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, Authenticated, KeyManager};
use crate::routes::key_options::{parse_metadata, parse_owner};
use crate::routes::rfc3339_time;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::Json;
use latchkey_core::key_changes::ImportedKey;
use latchkey_core::{KeyName, KeyOptions, NewKey, Permission, Scopes, SiteId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::{UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

/// The body limit of an import, instead of the API's 64 KiB: room for 10,000 entries of
/// about 800 bytes each (a typical entry without metadata is under 250).
pub const MAX_IMPORT_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The route with its own body limit; the innermost `DefaultBodyLimit` is the one that
/// holds, so this one overrides the application's.
pub fn route() -> UtoipaMethodRouter<AppState> {
    routes!(import_keys).layer(DefaultBodyLimit::max(MAX_IMPORT_BODY_BYTES))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// 1 to 10,000 keys, imported all or none.
    pub keys: Vec<ImportEntry>,
}

/// A key of another system. Its value never travels: only its SHA-256 does.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportEntry {
    /// 1 to 100 characters.
    pub name: String,
    /// `read`, `write`, `admin` or `master`; never above the caller's own level.
    pub permission: String,
    /// Required, except for a Master key, which belongs to no site.
    pub site_id: Option<String>,
    /// The SHA-256 of the full key as clients send it, as 64 hexadecimal digits.
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub sha256: String,
    /// What listings show to recognise the key: 1 to 12 printable ASCII characters without
    /// spaces, default `imported`. Shown to everyone who may list the key, so never more of
    /// the key than its public part.
    #[schema(example = "sk_live_")]
    pub prefix: Option<String>,
    /// Fine-grained permissions, `resource:action`.
    pub scopes: Option<Vec<String>>,
    /// RFC 3339, in the future.
    pub expires_at: Option<String>,
    /// The platform's own user or customer id (1 to 255 characters).
    pub owner_id: Option<String>,
    /// A free JSON object, at most 4 KiB; returned by verify.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportedKeys {
    pub imported: usize,
    /// The new keys' ids, in the order of the entries.
    #[schema(example = json!(["key_01JD2Z6M3X5Q7W9E1R3T5Y7U9I"]))]
    pub ids: Vec<String>,
}

/// An id that cannot exist is a site nobody can see, as when creating a key.
fn parse_site(raw: &str) -> Result<SiteId, ApiError> {
    SiteId::parse(raw).ok_or_else(|| ApiError::new(ErrorCode::NotFound, "site_id: no such site"))
}

impl ImportEntry {
    fn to_imported(&self) -> Result<ImportedKey, ApiError> {
        let key = NewKey {
            name: KeyName::parse(&self.name)?,
            description: None,
            permission: self.permission.parse::<Permission>()?,
            scopes: Scopes::parse(self.scopes.as_deref().unwrap_or_default())?,
            site_id: self.site_id.as_deref().map(parse_site).transpose()?,
            expires_at: self.expires_at.as_deref().map(|raw| rfc3339_time("expires_at", raw)).transpose()?,
            options: KeyOptions {
                owner_id: self.owner_id.as_deref().map(parse_owner).transpose()?,
                metadata: self.metadata.as_ref().map(parse_metadata).transpose()?,
                ..KeyOptions::default()
            },
        };
        let hash = ImportedKey::parse_hash(&self.sha256)?;
        let prefix = ImportedKey::parse_prefix(self.prefix.as_deref())?;
        Ok(ImportedKey { key, hash, prefix })
    }
}

/// Imports keys made elsewhere by the SHA-256 of their values, all or none: one refused
/// entry (named by its index and field) or one hash that is stored already imports
/// nothing. The rules are those of creating a key; each key is audited as `key_imported`.
#[utoipa::path(post, path = "/keys/import", tag = "keys", request_body = ImportBody,
    responses((status = 201, body = ImportedKeys), (status = 404, body = ErrorBody, description = "no such site"),
              (status = 409, body = ErrorBody, description = "a key with one of these hashes exists already")),
    security(("api_key" = [])))]
pub async fn import_keys(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    body: Result<ApiJson<ImportBody>, ApiError>,
) -> Result<(StatusCode, Json<ImportedKeys>), ApiError> {
    let ApiJson(body) = body.map_err(|error| match error.code {
        // The shared rejection names the API's usual limit, not this route's.
        ErrorCode::PayloadTooLarge => {
            let mib = MAX_IMPORT_BODY_BYTES / (1024 * 1024);
            ApiError::new(error.code, format!("the request body is larger than {mib} MiB"))
        }
        _ => error,
    })?;
    let entries = body.keys.iter().enumerate().map(|(at, entry)| {
        entry.to_imported().map_err(|error| ApiError::new(error.code, format!("keys[{at}]: {}", error.message)))
    });
    let keys = entries.collect::<Result<Vec<_>, _>>()?;
    let imported = state.service.keys().import(&auth.caller, keys).await?;
    let ids: Vec<String> = imported.iter().map(|key| key.id.to_string()).collect();
    Ok((StatusCode::CREATED, Json(ImportedKeys { imported: ids.len(), ids })))
}
