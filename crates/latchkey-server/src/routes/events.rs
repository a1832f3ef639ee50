//! The event feed, for collectors (a SIEM) that follow everything without a webhook:
//! `GET /events?after=<cursor>` answers the events after the cursor, or waits for some.

use crate::extract::{ApiQuery, Authenticated, KeyManager};
use crate::routes::JsonResult;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// The `next_after` of the previous answer; omitted: from the oldest event kept.
    pub after: Option<String>,
    /// Seconds to wait when there is nothing new yet, 0 to 30 (default 30).
    pub wait: Option<u64>,
}

/// One event: the same body webhooks receive, with its id.
#[derive(Serialize, ToSchema)]
pub struct EventView {
    /// The `webhook-id` of its deliveries.
    pub id: String,
    #[schema(example = "key.blocked")]
    #[serde(rename = "type")]
    pub event_type: String,
    pub timestamp: DateTime<Utc>,
    /// The key (as `GET /keys/{id}` shows it) or site the event is about.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
}

#[derive(Serialize, ToSchema)]
pub struct EventsPage {
    /// Oldest first.
    pub data: Vec<EventView>,
    /// Ask with `after=` this next time (the same cursor when nothing came).
    pub next_after: String,
}

/// Events after the cursor that the caller may see (Admin: its site's; Master: all),
/// oldest first; waits up to `wait` seconds when there are none yet (long polling).
#[utoipa::path(get, path = "/events", tag = "audit", params(EventsQuery),
    responses((status = 200, body = EventsPage)),
    security(("api_key" = [])))]
pub async fn follow_events(
    State(state): State<AppState>,
    auth: Authenticated<KeyManager>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> JsonResult<EventsPage> {
    let wait = Duration::from_secs(query.wait.unwrap_or(30).min(30));
    let page = state.service.events().follow(&auth.caller, query.after.as_deref(), wait).await?;
    let data = page
        .events
        .into_iter()
        .map(|stored| EventView {
            id: stored.event.id,
            event_type: stored.event.event_type,
            timestamp: stored.event.at,
            data: RawValue::from_string(stored.event.data).unwrap_or_else(|_| RawValue::NULL.to_owned()),
        })
        .collect();
    Ok(Json(EventsPage { data, next_after: page.next_after }))
}
