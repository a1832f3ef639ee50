//! Sites: the Forja seed's unit that keys belong to.

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Authenticated, SiteManager};
use crate::routes::{IdPath, JsonResult, Page};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use latchkey_core::{Site, SiteName};
use latchkey_service::PageRequest;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct SiteView {
    #[schema(example = "site_01JD2Z6M3X5Q7W9E1R3T5Y7U9I")]
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<Site> for SiteView {
    fn from(site: Site) -> Self {
        Self { id: site.id.to_string(), name: site.name.as_str().to_owned(), created_at: site.created_at }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteBody {
    /// 1 to 100 characters.
    pub name: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SiteListQuery {
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<u32>,
}

/// Sites the calling key can see: all for a Master key, its own for any other key.
#[utoipa::path(get, path = "/sites", tag = "sites", params(SiteListQuery),
    responses((status = 200, body = Page<SiteView>)),
    security(("api_key" = [])))]
pub async fn list_sites(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(query): ApiQuery<SiteListQuery>,
) -> JsonResult<Page<SiteView>> {
    let page = PageRequest { cursor: query.cursor, limit: query.limit };
    let sites = state.service.sites().list(&auth.caller, &page).await?;
    Ok(Page::of(sites, SiteView::from))
}

#[utoipa::path(post, path = "/sites", tag = "sites", request_body = SiteBody,
    responses((status = 201, body = SiteView)),
    security(("api_key" = [])))]
pub async fn create_site(
    State(state): State<AppState>,
    auth: Authenticated<SiteManager>,
    ApiJson(body): ApiJson<SiteBody>,
) -> Result<(StatusCode, Json<SiteView>), ApiError> {
    let site = state.service.sites().create(&auth.caller, SiteName::parse(&body.name)?).await?;
    Ok((StatusCode::CREATED, Json(site.into())))
}

#[utoipa::path(get, path = "/sites/{id}", tag = "sites", params(("id" = String, Path)),
    responses((status = 200, body = SiteView)),
    security(("api_key" = [])))]
pub async fn get_site(State(state): State<AppState>, auth: Authenticated, Path(id): IdPath) -> JsonResult<SiteView> {
    Ok(Json(state.service.sites().get(&auth.caller, &id).await?.into()))
}

#[utoipa::path(patch, path = "/sites/{id}", tag = "sites", params(("id" = String, Path)), request_body = SiteBody,
    responses((status = 200, body = SiteView)),
    security(("api_key" = [])))]
pub async fn update_site(
    State(state): State<AppState>,
    auth: Authenticated<SiteManager>,
    Path(id): IdPath,
    ApiJson(body): ApiJson<SiteBody>,
) -> JsonResult<SiteView> {
    let site = state.service.sites().rename(&auth.caller, &id, SiteName::parse(&body.name)?).await?;
    Ok(Json(site.into()))
}

/// Deletes the site and its keys, which stop working before this returns.
#[utoipa::path(delete, path = "/sites/{id}", tag = "sites", params(("id" = String, Path)),
    responses((status = 204)),
    security(("api_key" = [])))]
pub async fn delete_site(
    State(state): State<AppState>,
    auth: Authenticated<SiteManager>,
    Path(id): IdPath,
) -> Result<StatusCode, ApiError> {
    state.service.sites().delete(&auth.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
