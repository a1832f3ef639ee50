//! The Audit page: every change to the keys and sites the user may see, filtered by key
//! and action.

use super::forms::parse_site;
use super::signed_in::Dashboard;
use super::views::relative_time;
use super::{page, PageResult};
use crate::state::AppState;
use axum::extract::{Query, State};
use latchkey_core::AuditAction;
use latchkey_service::audit::AuditQuery;
use latchkey_service::PageRequest;
use maud::html;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct AuditFilters {
    key: Option<String>,
    action: Option<String>,
    site: Option<String>,
}

pub async fn audit_page(
    State(state): State<AppState>,
    user: Dashboard,
    Query(query): Query<AuditFilters>,
) -> PageResult {
    let filter = AuditQuery {
        site: query.site.as_deref().and_then(parse_site),
        key: query.key.as_deref().filter(|k| !k.is_empty()).and_then(latchkey_core::KeyId::parse),
        action: query.action.as_deref().filter(|a| !a.is_empty()).and_then(|a| a.parse().ok()),
    };
    let events = state.service.audit().list(&user.caller, filter, &PageRequest::first(100)).await?.items;
    let now = state.clock.now();
    let body = html! {
        form.toolbar method="get" action="/audit" {
            div { label for="key" { "Key id" } input #key type="text" name="key" value=(query.key.clone().unwrap_or_default()); }
            div {
                label for="action" { "Action" }
                select #action name="action" {
                    option value="" { "Any" }
                    @for action in AuditAction::ALL {
                        option value=(action.as_str()) selected[query.action.as_deref() == Some(action.as_str())] { (action.as_str()) }
                    }
                }
            }
            button.secondary type="submit" { "Filter" }
        }
        @if events.is_empty() { div.notice { "No events match." } } @else {
            div.table-wrap { table {
                thead { tr { th { "When" } th { "Action" } th { "By" } th { "Key" } th.hide-narrow { "Changes" } th.hide-narrow { "From" } } }
                tbody { @for event in &events { tr {
                    td { (relative_time(Some(event.at), now)) }
                    td { (event.action.as_str()) }
                    td { code { (event.actor_prefix.as_deref().unwrap_or("server")) } }
                    td { @if let Some(key) = &event.target_key_id { a href={ "/keys/" (key) } { (key) } } }
                    td.hide-narrow { @for change in &event.changes {
                        div { (change.field) ": " (change.before.as_deref().unwrap_or("—")) " → " (change.after.as_deref().unwrap_or("—")) }
                    } }
                    td.hide-narrow { (event.source_ip.as_deref().unwrap_or("")) }
                } } }
            } }
        }
    };
    Ok(page("Audit", &user, body))
}
