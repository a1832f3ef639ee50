//! Webhook endpoints: register (the signing secret is shown once), list, look at, edit,
//! delete, rotate the secret, send a test event, and the log of delivery attempts.

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Authenticated, KeyManager};
use crate::routes::{nullable, IdPath, JsonResult, Page};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use latchkey_core::SiteId;
use latchkey_service::sites::parse_site_filter;
use latchkey_service::webhooks::{NewWebhook, WebhookEdit, WebhookSecret};
use latchkey_service::PageRequest;
use latchkey_store::webhooks::{DeliveryAttempt, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// An endpoint as listed and shown: never its secret.
#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    #[schema(example = "whk_01JD2Z6M3X5Q7W9E1R3T5Y7U9I")]
    pub id: String,
    pub url: String,
    /// `null`: every site's events (a Master's endpoint).
    pub site_id: Option<String>,
    pub description: Option<String>,
    /// The event types it receives; `null`: all of them.
    #[schema(example = json!(["key.blocked", "key.leaked"]))]
    pub events: Option<Vec<String>>,
    /// `active`, or `failing` while deliveries keep failing (its events wait meanwhile).
    pub status: String,
    pub failing_since: Option<DateTime<Utc>>,
    /// Until when the secret before the last rotation still signs alongside the new one.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookView {
    pub fn of(endpoint: &WebhookEndpoint, now: DateTime<Utc>) -> Self {
        Self {
            id: endpoint.id.clone(),
            url: endpoint.url.clone(),
            site_id: endpoint.site_id.as_ref().map(SiteId::to_string),
            description: endpoint.description.clone(),
            events: (!endpoint.events.is_empty()).then(|| endpoint.events.clone()),
            status: if endpoint.failing_since.is_some() { "failing" } else { "active" }.to_owned(),
            failing_since: endpoint.failing_since,
            previous_secret_expires_at: endpoint.previous_secret_expires_at.filter(|until| *until > now),
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
        }
    }
}

/// The create and rotate-secret responses: the endpoint plus `secret`, shown this once.
#[derive(Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_<base64>`: verify deliveries with it (any Standard Webhooks library). Store
    /// it now: it is never shown again.
    pub secret: String,
}

impl WebhookWithSecret {
    fn of(endpoint: &WebhookEndpoint, secret: WebhookSecret, now: DateTime<Utc>) -> Json<Self> {
        Json(Self { webhook: WebhookView::of(endpoint, now), secret: secret.expose().to_owned() })
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookBody {
    /// `http(s)`; private and loopback addresses only with `--webhook-allow-private`.
    pub url: String,
    /// An Admin: its own site (the default). A Master: any site, or none for all sites.
    pub site_id: Option<String>,
    /// The event types to receive; omitted: all.
    pub events: Option<Vec<String>>,
    /// Up to 500 characters.
    pub description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookBody {
    pub url: Option<String>,
    /// `null`: all event types.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    pub events: Option<Option<Vec<String>>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WebhookListQuery {
    /// Only this site's endpoints.
    pub site: Option<String>,
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<u32>,
}

/// One attempt to deliver an event.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    /// The event's id: the `webhook-id` header, the same on every attempt.
    pub event_id: String,
    #[schema(example = "key.blocked")]
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub at: DateTime<Utc>,
    /// The receiver's status code, when it answered.
    pub status_code: Option<u16>,
    /// Why the attempt failed; `null` when delivered.
    pub error: Option<String>,
    pub duration_ms: u64,
    /// When it is tried again; `null` once delivered.
    pub next_retry_at: Option<DateTime<Utc>>,
}

impl From<DeliveryAttempt> for DeliveryView {
    fn from(attempt: DeliveryAttempt) -> Self {
        Self {
            event_id: attempt.event_id,
            event_type: attempt.event_type,
            attempt: attempt.attempt,
            at: attempt.at,
            status_code: attempt.status_code,
            error: attempt.error,
            duration_ms: attempt.duration_ms,
            next_retry_at: attempt.next_retry_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveriesPage {
    /// Newest first.
    pub data: Vec<DeliveryView>,
    pub next_cursor: Option<String>,
    /// Deliveries still to be made (waiting for a retry, or behind one).
    pub pending: u64,
}

#[derive(Serialize, ToSchema)]
pub struct TestEventReceipt {
    /// The `webhook-id` the test delivery will carry.
    pub event_id: String,
}

fn parse_site(raw: &str) -> Result<SiteId, ApiError> {
    SiteId::parse(raw).ok_or_else(|| ApiError::not_found("site"))
}

/// Registers an endpoint. The response is the only one that holds its signing secret.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = CreateWebhookBody,
    responses((status = 201, body = WebhookWithSecret), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_webhook(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    ApiJson(body): ApiJson<CreateWebhookBody>,
) -> Result<(StatusCode, Json<WebhookWithSecret>), ApiError> {
    let spec = NewWebhook {
        url: body.url,
        site_id: body.site_id.as_deref().map(parse_site).transpose()?,
        events: body.events,
        description: body.description,
    };
    let (endpoint, secret) = state.service.webhooks().create(&auth.caller, spec).await?;
    Ok((StatusCode::CREATED, WebhookWithSecret::of(&endpoint, secret, state.clock.now())))
}

/// Endpoints the caller may manage, newest first.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", params(WebhookListQuery),
    responses((status = 200, body = Page<WebhookView>)),
    security(("api_key" = [])))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    ApiQuery(query): ApiQuery<WebhookListQuery>,
) -> JsonResult<Page<WebhookView>> {
    let site = query.site.as_deref().map(parse_site_filter).transpose()?;
    let page = PageRequest { cursor: query.cursor, limit: query.limit };
    let endpoints = state.service.webhooks().list(&auth.caller, site, &page).await?;
    let now = state.clock.now();
    Ok(Page::of(endpoints, |endpoint| WebhookView::of(&endpoint, now)))
}

#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_webhook(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    Path(id): IdPath,
) -> JsonResult<WebhookView> {
    let endpoint = state.service.webhooks().get(&auth.caller, &id).await?;
    Ok(Json(WebhookView::of(&endpoint, state.clock.now())))
}

/// Changes the URL, the event types or the description (never the secret: rotate it).
#[utoipa::path(patch, path = "/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    request_body = UpdateWebhookBody,
    responses((status = 200, body = WebhookView), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update_webhook(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    Path(id): IdPath,
    ApiJson(body): ApiJson<UpdateWebhookBody>,
) -> JsonResult<WebhookView> {
    let edit = WebhookEdit { url: body.url, events: body.events, description: body.description };
    let endpoint = state.service.webhooks().edit(&auth.caller, &id, edit).await?;
    Ok(Json(WebhookView::of(&endpoint, state.clock.now())))
}

/// Deletes the endpoint and the deliveries still waiting for it.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    Path(id): IdPath,
) -> Result<StatusCode, ApiError> {
    state.service.webhooks().delete(&auth.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret, shown once; the old one keeps signing alongside it for 24 hours.
#[utoipa::path(post, path = "/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = WebhookWithSecret), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    Path(id): IdPath,
) -> JsonResult<WebhookWithSecret> {
    let (endpoint, secret) = state.service.webhooks().rotate_secret(&auth.caller, &id).await?;
    Ok(WebhookWithSecret::of(&endpoint, secret, state.clock.now()))
}

/// Sends a `webhook.test` event to this endpoint only.
#[utoipa::path(post, path = "/webhooks/{id}/test", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 202, body = TestEventReceipt), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn test_webhook(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    Path(id): IdPath,
) -> Result<(StatusCode, Json<TestEventReceipt>), ApiError> {
    let event_id = state.service.webhooks().test(&auth.caller, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(TestEventReceipt { event_id })))
}

/// The endpoint's delivery attempts, newest first.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path), DeliveriesQuery),
    responses((status = 200, body = DeliveriesPage), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    Path(id): IdPath,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> JsonResult<DeliveriesPage> {
    let page = PageRequest { cursor: query.cursor, limit: query.limit };
    let (attempts, pending) = state.service.webhooks().deliveries(&auth.caller, &id, &page).await?;
    Ok(Json(DeliveriesPage {
        data: attempts.items.into_iter().map(DeliveryView::from).collect(),
        next_cursor: attempts.next_cursor,
        pending,
    }))
}
