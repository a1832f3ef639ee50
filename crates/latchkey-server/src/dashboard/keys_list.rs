//! The API Keys page: the Forja seed's table (Name, Key prefix, Permission, Status,
//! Created, Last used) for one site, with a 30-day sparkline per key.

use super::forms::parse_site;
use super::signed_in::Dashboard;
use super::views::{self, relative_time};
use super::{capitalized, page, PageResult};
use crate::state::AppState;
use axum::extract::{Query, State};
use latchkey_service::keys::KeyQuery;
use latchkey_service::PageRequest;
use maud::html;
use serde::Deserialize;

const PAGE_SIZE: u32 = 25;
/// The Forja seed: "if a key has not been used in a long time, consider revoking it".
const STALE_AFTER_DAYS: i64 = 90;

#[derive(Deserialize)]
pub struct KeysQuery {
    site: Option<String>,
    cursor: Option<String>,
}

pub async fn keys_page(State(state): State<AppState>, user: Dashboard, Query(query): Query<KeysQuery>) -> PageResult {
    let sites = state.service.sites().pickable(&user.caller).await?;
    let requested = query.site.as_deref().and_then(parse_site).or_else(|| sites.first().map(|s| s.id.clone()));
    let site = user.caller.listing_scope(requested.as_ref())?;
    let listing = KeyQuery { site: site.clone(), ..KeyQuery::default() };
    let page_request = PageRequest { cursor: query.cursor.clone(), limit: Some(PAGE_SIZE) };
    let keys = state.service.keys().list(&user.caller, listing, &page_request).await?;
    let (next, keys) = (keys.next_cursor, keys.items);
    let now = state.clock.now();
    let usage = state.service.keys().usage_of(&user.caller, &keys, 30).await?;
    let site_param = site.as_ref().map(|s| s.to_string()).unwrap_or_default();
    let body = html! {
        form.toolbar method="get" action="/keys" {
            div {
                label for="site" { "Site" }
                select #site name="site" {
                    @for s in &sites {
                        option value=(s.id) selected[Some(&s.id) == site.as_ref()] { (s.name.as_str()) }
                    }
                }
            }
            button.secondary type="submit" { "Show" }
            a.button href={ "/keys/new?site=" (site_param) } { "New API Key" }
        }
        @if keys.is_empty() {
            div.notice { "This site has no API keys yet. Create one with " strong { "New API Key" } "." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th { "Name" } th { "Key prefix" } th { "Permission" } th { "Status" } th.hide-narrow { "Created" } th { "Last used" } th.hide-narrow { "30 days" } } }
                    tbody {
                        @for key in &keys {
                            @let status = key.state_at(now).as_str();
                            tr {
                                td { a href={ "/keys/" (key.id) } { (key.name.as_str()) } }
                                td { code { (key.prefix.as_str()) } }
                                td { (capitalized(key.permission.as_str())) }
                                td class={ "status-" (status) } { (capitalized(status)) }
                                td.hide-narrow { (relative_time(Some(key.created_at), now)) }
                                td {
                                    (relative_time(key.last_used_at, now))
                                    @if key.last_used_at.unwrap_or(key.created_at) < now - chrono::Duration::days(STALE_AFTER_DAYS) {
                                        " " span.stale title={ "Not used for more than " (STALE_AFTER_DAYS) " days; consider revoking it" } { "Stale" }
                                    }
                                }
                                td.hide-narrow { @if let Some(days) = usage.get(&key.id) { (views::sparkline(days)) } }
                            }
                        }
                    }
                }
            }
            @if let Some(cursor) = next {
                p { a href={ "/keys?site=" (site_param) "&cursor=" (cursor) } { "Older keys →" } }
            }
        }
    };
    Ok(page("API Keys", &user, body))
}
