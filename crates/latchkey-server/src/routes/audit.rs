//! The audit trail: every change to a key or site, newest first.

use crate::error::ApiError;
use crate::extract::{ApiQuery, Authenticated, KeyManager};
use crate::routes::{JsonResult, Page};
use crate::state::AppState;
use axum::extract::State;
use chrono::{DateTime, Utc};
use latchkey_core::{AuditEvent, KeyId};
use latchkey_service::sites::parse_site_filter;
use latchkey_service::PageRequest;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct AuditChangeView {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventView {
    pub id: String,
    pub at: DateTime<Utc>,
    #[schema(example = "key_created")]
    pub action: String,
    pub actor_key_id: Option<String>,
    pub actor_prefix: Option<String>,
    pub target_key_id: Option<String>,
    pub site_id: Option<String>,
    pub source_ip: Option<String>,
    pub changes: Vec<AuditChangeView>,
}

impl From<AuditEvent> for AuditEventView {
    fn from(event: AuditEvent) -> Self {
        Self {
            id: event.id.to_string(),
            at: event.at,
            action: event.action.as_str().to_owned(),
            actor_key_id: event.actor_key_id.map(|id| id.to_string()),
            actor_prefix: event.actor_prefix,
            target_key_id: event.target_key_id.map(|id| id.to_string()),
            site_id: event.site_id.map(|id| id.to_string()),
            source_ip: event.source_ip,
            changes: event
                .changes
                .into_iter()
                .map(|c| AuditChangeView { field: c.field, before: c.before, after: c.after })
                .collect(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub site: Option<String>,
    pub key: Option<String>,
    /// e.g. `key_blocked`.
    pub action: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditEventView>)),
    security(("api_key" = [])))]
pub async fn list_audit(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> JsonResult<Page<AuditEventView>> {
    let filter = latchkey_service::audit::AuditQuery {
        site: query.site.as_deref().map(parse_site_filter).transpose()?,
        key: match query.key.as_deref() {
            Some(raw) => Some(KeyId::parse(raw).ok_or_else(|| ApiError::validation("key is not a key id"))?),
            None => None,
        },
        action: match query.action.as_deref() {
            Some(raw) => Some(raw.parse().map_err(|_| ApiError::validation("action is not a known audit action"))?),
            None => None,
        },
    };
    let page = PageRequest { cursor: query.cursor, limit: query.limit };
    let events = state.service.audit().list(&auth.caller, filter, &page).await?;
    Ok(Page::of(events, AuditEventView::from))
}
