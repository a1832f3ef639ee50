//! The API Keys page: the Forja seed's table (Name, Key prefix, Permission, Status,
//! Created, Last used) for one site or for the Master keys (which belong to no site), with
//! a 30-day sparkline per key, a search by name or prefix, and pages both ways. On a
//! phone each row becomes a card, so no column is lost.

use super::forms::parse_site;
use super::listing::{filtered_keys, KeysPage, Pager};
use super::signed_in::Dashboard;
use super::views::{exact_time, relative_time, Nav};
use super::{capitalized, charts, page, PageResult};
use crate::state::AppState;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use latchkey_core::{KeyRecord, KeyState, Permission, Site, SiteId};
use latchkey_service::keys::UsageDay;
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;

const PAGE_SIZE: usize = 25;
/// The Forja seed: "if a key has not been used in a long time, consider revoking it".
const STALE_AFTER_DAYS: i64 = 90;
/// The site picker's entry for the keys that belong to no site.
pub const MASTER_KEYS: &str = "master";

#[derive(Deserialize)]
pub struct KeysQuery {
    site: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
    trail: Option<String>,
}

/// Which keys the page lists.
enum Shown {
    Site(SiteId),
    /// Master keys: system-wide, so no site lists them.
    MasterKeys,
}

impl Shown {
    fn param(&self) -> String {
        match self {
            Shown::Site(site) => site.to_string(),
            Shown::MasterKeys => MASTER_KEYS.to_owned(),
        }
    }
}

/// A key being replaced: it still works, until its grace period ends.
pub fn rotating_until(key: &KeyRecord, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match (&key.options.rotated_to, key.state_at(now)) {
        (Some(_), KeyState::Active) => key.expires_at,
        _ => None,
    }
}

pub async fn keys_page(State(state): State<AppState>, user: Dashboard, Query(query): Query<KeysQuery>) -> PageResult {
    let sites = state.service.sites().pickable(&user.caller).await?;
    let requested = query.site.as_deref().filter(|s| !s.is_empty());
    let fallback = || sites.first().map(|s| s.id.clone()).or_else(|| user.caller.site_id.clone());
    let shown = match requested {
        Some(MASTER_KEYS) if user.caller.is_master() => None,
        Some(raw) => parse_site(raw).or_else(fallback),
        None => fallback(),
    }
    .map_or(Shown::MasterKeys, Shown::Site);
    let scope = match &shown {
        Shown::Site(site) => user.caller.listing_scope(Some(site))?,
        Shown::MasterKeys => None,
    };
    let search = query.q.as_deref().map(str::trim).unwrap_or_default().to_owned();
    let pager = Pager::new(query.cursor.as_deref(), query.trail.as_deref());
    let only_masters = matches!(shown, Shown::MasterKeys);
    let keep = |key: &KeyRecord| (!only_masters || key.permission == Permission::Master) && matches(key, &search);
    let filter = (only_masters || !search.is_empty()).then_some(&keep as &(dyn Fn(&KeyRecord) -> bool + Sync));
    let listed = filtered_keys(&state.service, &user.caller, scope, filter, pager.cursor.clone(), PAGE_SIZE).await?;
    let usage = state.service.keys().usage_of(&user.caller, &listed.keys, 30).await?;
    let site_param = shown.param();
    let params = [("site", site_param.as_str()), ("q", search.as_str())];
    let body = html! {
        (toolbar(&user, &sites, &shown, &search))
        @if sites.is_empty() && user.caller.is_master() {
            div.notice role="status" {
                "There are no sites yet. Keys for your applications belong to a site: "
                a href="/sites" { "create one on the Sites page" } ". Master keys, which belong to no site, are listed below."
            }
        }
        (intro(&shown, &sites))
        @if listed.keys.is_empty() {
            div.notice role="status" { (empty_message(&shown, &search, &sites)) }
        } @else {
            (keys_table(&user, &listed, &usage, state.clock.now()))
        }
        @if listed.cut_short { p.muted { "Searched " (listed.keys.len()) " matches in the newest keys; the next page searches further." } }
        (pager.links("/keys", &params, listed.next.as_deref(), "keys"))
    };
    Ok(page("API Keys", Nav::Keys, &user, body))
}

/// A name containing the search (any case), or a prefix starting with it.
fn matches(key: &KeyRecord, search: &str) -> bool {
    search.is_empty()
        || key.name.as_str().to_lowercase().contains(&search.to_lowercase())
        || key.prefix.as_str().starts_with(search)
}

fn toolbar(user: &Dashboard, sites: &[Site], shown: &Shown, search: &str) -> Markup {
    let new_key = format!("/keys/new?site={}", shown.param());
    html! {
        form.toolbar method="get" action="/keys" role="search" {
            div {
                label for="site" { "Site" }
                select #site name="site" data-autosubmit {
                    @if user.caller.is_master() {
                        option value=(MASTER_KEYS) selected[matches!(shown, Shown::MasterKeys)] { "Master keys (all sites)" }
                    }
                    @for site in sites {
                        option value=(site.id) selected[matches!(shown, Shown::Site(s) if *s == site.id)] { (site.name.as_str()) }
                    }
                }
            }
            div {
                label for="q" { "Name or key prefix" }
                input #q type="search" name="q" value=(search) placeholder="e.g. frontend or lk_3fZk";
            }
            button.secondary type="submit" { "Show" }
            a.button href=(new_key) { "New API Key" }
        }
    }
}

fn intro(shown: &Shown, sites: &[Site]) -> Markup {
    html! {
        @match shown {
            Shown::MasterKeys => p.muted { "Master keys belong to no site and can do everything on every site, including managing sites and other Master keys." },
            Shown::Site(id) => @if let Some(site) = sites.iter().find(|s| s.id == *id) {
                p.muted { "Keys of the site " strong { (site.name.as_str()) } "." }
            },
        }
    }
}

fn empty_message(shown: &Shown, search: &str, sites: &[Site]) -> Markup {
    let site_name = match shown {
        Shown::Site(id) => sites.iter().find(|s| s.id == *id).map(|s| s.name.as_str()).unwrap_or("this site"),
        Shown::MasterKeys => "the Master keys",
    };
    html! {
        @if !search.is_empty() {
            "No key in " (site_name) " has a name containing “" (search) "” or a prefix starting with it."
        } @else if matches!(shown, Shown::MasterKeys) {
            "There are no Master keys you can see."
        } @else {
            "This site has no API keys yet. Create one with " strong { "New API Key" } "."
        }
    }
}

fn keys_table(
    user: &Dashboard,
    listed: &KeysPage,
    usage: &HashMap<latchkey_core::KeyId, Vec<UsageDay>>,
    now: DateTime<Utc>,
) -> Markup {
    let rotating: HashMap<&latchkey_core::KeyId, &KeyRecord> =
        listed.keys.iter().filter(|k| rotating_until(k, now).is_some()).map(|k| (&k.id, k)).collect();
    html! {
        table.cards {
            thead { tr { th { "Name" } th { "Key prefix" } th { "Permission" } th { "Status" } th { "Created" } th { "Last used" } th { "30 days" } } }
            tbody {
                @for key in &listed.keys {
                    @let status = key.state_at(now).as_str();
                    tr {
                        td data-label="Name" {
                            span {
                                a href={ "/keys/" (key.id) } { (key.name.as_str()) }
                                @if user.owns(key) { " " span.badge.you { "Your key" } }
                                @if let Some(old) = key.options.rotated_from.as_ref().and_then(|id| rotating.get(id)) {
                                    br; span.small.muted { "replaces " code.prefix { (old.prefix.as_str()) "…" } }
                                }
                            }
                        }
                        td data-label="Key prefix" { code.prefix { (key.prefix.as_str()) "…" } }
                        td data-label="Permission" { (capitalized(key.permission.as_str())) }
                        td data-label="Status" {
                            @if let Some(until) = rotating_until(key, now) {
                                span {
                                    span.badge.rotating { "Rotating" }
                                    br; span.small { "old key works until " time datetime=(until.to_rfc3339()) { (exact_time(until)) } }
                                }
                            } @else {
                                span class={ "status-" (status) } { (capitalized(status)) }
                            }
                        }
                        td data-label="Created" { (relative_time(Some(key.created_at), now)) }
                        td data-label="Last used" {
                            span {
                                (relative_time(key.last_used_at, now))
                                @if key.last_used_at.unwrap_or(key.created_at) < now - chrono::Duration::days(STALE_AFTER_DAYS) {
                                    " " span.badge.stale title={ "Not used for more than " (STALE_AFTER_DAYS) " days; consider revoking it" } { "Stale" }
                                }
                            }
                        }
                        td data-label="30 days" { @if let Some(days) = usage.get(&key.id) { (charts::sparkline(days)) } }
                    }
                }
            }
        }
    }
}
