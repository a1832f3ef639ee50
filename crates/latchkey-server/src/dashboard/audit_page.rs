//! The Audit page: every change to the keys and sites the user may see, in words ("Key
//! created"), with keys, sites and actors by name; filtered by key (name, prefix or id),
//! action and site. A deleted key links to its own trail, never to an error page.

use super::forms::parse_site;
use super::listing::{filtered_keys, Pager};
use super::names::{key_link, KeyNames, KnownKey, SiteNames};
use super::signed_in::Dashboard;
use super::views::{exact_time, relative_time, Nav};
use super::{capitalized, page, PageResult};
use crate::state::AppState;
use axum::extract::{Query, State};
use latchkey_core::{AuditAction, AuditChange, AuditEvent, KeyId, KeyRecord, SiteId};
use latchkey_service::audit::AuditQuery;
use latchkey_service::{PageRequest, ServiceResult};
use maud::{html, Markup};
use serde::Deserialize;

const PAGE_SIZE: u32 = 50;

#[derive(Deserialize)]
pub struct AuditFilters {
    key: Option<String>,
    action: Option<String>,
    site: Option<String>,
    cursor: Option<String>,
    trail: Option<String>,
}

/// What the key filter's text stands for.
enum KeyChoice {
    Any,
    One(KeyId),
    /// Several keys answer to it: the user picks one.
    Several(Vec<(KeyId, KnownKey)>),
    Unknown,
}

/// "Key created", "Site renamed": what an action is called on the page.
pub fn action_words(action: AuditAction) -> String {
    match action {
        AuditAction::SiteUpdated => "Site renamed".to_owned(),
        AuditAction::KeyUpdated => "Key edited".to_owned(),
        AuditAction::KeyReportedLeaked => "Key reported as leaked".to_owned(),
        other => capitalized(&other.as_str().replace('_', " ")),
    }
}

pub async fn audit_page(
    State(state): State<AppState>,
    user: Dashboard,
    Query(query): Query<AuditFilters>,
) -> PageResult {
    let sites = state.service.sites().pickable(&user.caller).await?;
    let site_names = SiteNames::new(&sites);
    let site = query.site.as_deref().and_then(parse_site);
    let scope = user.caller.listing_scope(site.as_ref())?;
    let action = query.action.as_deref().and_then(|a| a.parse::<AuditAction>().ok());
    let key_text = query.key.as_deref().unwrap_or_default().trim().to_owned();
    let choice = resolve_key(&state, &user, scope.clone(), &key_text).await?;
    let known_keys = filtered_keys(&state.service, &user.caller, scope.clone(), None, None, 200).await?.keys;
    let pager = Pager::new(query.cursor.as_deref(), query.trail.as_deref());
    let (events, next) = match &choice {
        KeyChoice::Any | KeyChoice::One(_) => {
            let key = if let KeyChoice::One(id) = &choice { Some(id.clone()) } else { None };
            let filter = AuditQuery { site: scope.clone(), key, action };
            let request = PageRequest { cursor: pager.cursor.clone(), limit: Some(PAGE_SIZE) };
            let listed = state.service.audit().list(&user.caller, filter, &request).await?;
            (listed.items, listed.next_cursor)
        }
        KeyChoice::Several(_) | KeyChoice::Unknown => (Vec::new(), None),
    };
    let mut names = KeyNames::new(&state.service, &user.caller).knowing(&known_keys);
    let mut rows = Vec::with_capacity(events.len());
    for event in &events {
        rows.push(row(event, &mut names, &site_names, state.clock.now()).await?);
    }
    let site_param = site.as_ref().map(ToString::to_string).unwrap_or_default();
    let action_param = action.map(AuditAction::as_str).unwrap_or_default();
    let params = [("key", key_text.as_str()), ("action", action_param), ("site", site_param.as_str())];
    let body = html! {
        (filters(&user, &sites, site.as_ref(), action, &key_text, &known_keys))
        @match &choice {
            KeyChoice::Several(keys) => div.notice role="status" {
                "Several keys answer to “" (key_text) "”. Pick one:"
                ul { @for (id, known) in keys { li { (key_link(id, known, None)) " · " a href={ "/audit?key=" (id) } { "its audit trail" } } } }
            },
            KeyChoice::Unknown => div.notice role="status" { "No key you can see is named “" (key_text) "” or has a prefix starting with it." },
            _ => @if rows.is_empty() { div.notice role="status" { "No events match these filters." } },
        }
        @if !rows.is_empty() {
            table.cards {
                thead { tr { th { "When" } th { "Action" } th { "Key" } th { "Site" } th { "By" } th { "Changes" } th { "From" } } }
                tbody { @for row in &rows { (row) } }
            }
        }
        (pager.links("/audit", &params, next.as_deref(), "events"))
    };
    Ok(page("Audit", Nav::Audit, &user, body))
}

fn filters(
    user: &Dashboard,
    sites: &[latchkey_core::Site],
    site: Option<&SiteId>,
    action: Option<AuditAction>,
    key_text: &str,
    known_keys: &[KeyRecord],
) -> Markup {
    html! {
        form.toolbar method="get" action="/audit" role="search" {
            div {
                label for="key" { "Key (name, prefix or id)" }
                input #key type="search" name="key" list="key-names" value=(key_text) placeholder="e.g. CI deploy";
                datalist #key-names { @for key in known_keys { option value=(key.name.as_str()) {} } }
            }
            div {
                label for="action" { "Action" }
                select #action name="action" {
                    option value="" { "Any action" }
                    @for each in AuditAction::ALL {
                        option value=(each.as_str()) selected[action == Some(each)] { (action_words(each)) }
                    }
                }
            }
            @if user.caller.is_master() {
                div {
                    label for="site" { "Site" }
                    select #site name="site" {
                        option value="" { "All sites" }
                        @for s in sites { option value=(s.id) selected[Some(&s.id) == site] { (s.name.as_str()) } }
                    }
                }
            }
            button.secondary type="submit" { "Filter" }
            @if !key_text.is_empty() || action.is_some() || site.is_some() { a href="/audit" { "Clear filters" } }
        }
    }
}

/// The key the filter names: an id as it is, else a live key by exact name (any case) or
/// prefix, else a deleted one by the name its deletion recorded.
async fn resolve_key(
    state: &AppState,
    user: &Dashboard,
    scope: Option<SiteId>,
    text: &str,
) -> ServiceResult<KeyChoice> {
    if text.is_empty() {
        return Ok(KeyChoice::Any);
    }
    if let Some(id) = KeyId::parse(text) {
        return Ok(KeyChoice::One(id));
    }
    let wanted = text.to_lowercase();
    let keep = |key: &KeyRecord| key.name.as_str().to_lowercase() == wanted || key.prefix.as_str().starts_with(text);
    let filter: &(dyn Fn(&KeyRecord) -> bool + Sync) = &keep;
    let live = filtered_keys(&state.service, &user.caller, scope.clone(), Some(filter), None, 20).await?.keys;
    let mut found: Vec<(KeyId, KnownKey)> = live
        .iter()
        .map(|key| {
            let known = KnownKey::Live { name: key.name.as_str().to_owned(), prefix: key.prefix.as_str().to_owned() };
            (key.id.clone(), known)
        })
        .collect();
    if found.is_empty() {
        let deletions = AuditQuery { site: scope, action: Some(AuditAction::KeyDeleted), key: None };
        let events = state.service.audit().list(&user.caller, deletions, &PageRequest::first(200)).await?.items;
        for event in events {
            let name = event.changes.iter().find(|c| c.field == "name").and_then(|c| c.before.clone());
            if let (Some(id), Some(name)) = (event.target_key_id, name) {
                if name.to_lowercase() == wanted && !found.iter().any(|(seen, _)| *seen == id) {
                    found.push((id, KnownKey::Deleted { name }));
                }
            }
        }
    }
    Ok(match found.len() {
        0 => KeyChoice::Unknown,
        1 => KeyChoice::One(found.remove(0).0),
        _ => KeyChoice::Several(found),
    })
}

async fn row(
    event: &AuditEvent,
    names: &mut KeyNames<'_>,
    sites: &SiteNames,
    now: chrono::DateTime<chrono::Utc>,
) -> ServiceResult<Markup> {
    let key = match &event.target_key_id {
        Some(id) => names.link(id, None).await?,
        None => html! { span.muted { "—" } },
    };
    let by = match &event.actor_key_id {
        Some(id) => names.link(id, event.actor_prefix.as_deref()).await?,
        None => html! { span.muted { "Latchkey itself" } },
    };
    let mut changes = Vec::with_capacity(event.changes.len());
    for change in &event.changes {
        changes.extend(change_line(change, names).await?);
    }
    Ok(html! {
        tr {
            td data-label="When" { (relative_time(Some(event.at), now)) }
            td data-label="Action" { strong { (action_words(event.action)) } }
            td data-label="Key" { span { (key) } }
            td data-label="Site" { span { (site_cell(event, sites)) } }
            td data-label="By" { span { (by) } }
            td data-label="Changes" { div { @for line in &changes { div { (line) } } } }
            td data-label="From" { span { (event.source_ip.as_deref().unwrap_or("—")) } }
        }
    })
}

/// The site's name; a deleted site is named by its own deletion when this is it.
fn site_cell(event: &AuditEvent, sites: &SiteNames) -> Markup {
    let site_action =
        matches!(event.action, AuditAction::SiteCreated | AuditAction::SiteUpdated | AuditAction::SiteDeleted);
    match &event.site_id {
        Some(id) if sites.name(id).is_none() && site_action => {
            let name =
                event.changes.iter().find(|c| c.field == "name").and_then(|c| c.before.clone().or(c.after.clone()));
            html! { (name.unwrap_or_default()) " " span.muted.small { "(deleted)" } }
        }
        site => sites.show(site.as_ref()),
    }
}

fn field_words(field: &str) -> String {
    match field {
        "permission" => "Level".to_owned(),
        "expires_at" => "Expires".to_owned(),
        "owner_id" => "Owner".to_owned(),
        "ip_allowlist" => "IP allowlist".to_owned(),
        "ratelimit" => "Rate limit".to_owned(),
        "credits_refill" => "Credit refill".to_owned(),
        "rotated_from" => "Replaces".to_owned(),
        "rotated_to" => "Replaced by".to_owned(),
        other => capitalized(&other.replace('_', " ")),
    }
}

/// One changed field in words: "Level: Read → Admin", with times and key ids made readable.
async fn change_line(change: &AuditChange, names: &mut KeyNames<'_>) -> ServiceResult<Option<Markup>> {
    let mut shown = Vec::with_capacity(2);
    for value in [&change.before, &change.after] {
        shown.push(match value.as_deref().filter(|text| !text.is_empty()) {
            None => None,
            Some(text) if matches!(change.field.as_str(), "permission" | "status") => {
                Some(html! { (capitalized(text)) })
            }
            Some(text) if change.field.starts_with("rotated_") => match KeyId::parse(text) {
                Some(id) => Some(names.link(&id, None).await?),
                None => Some(html! { (text) }),
            },
            Some(text) if change.field == "expires_at" => Some(match chrono::DateTime::parse_from_rfc3339(text) {
                Ok(at) => html! { (exact_time(at.with_timezone(&chrono::Utc))) },
                Err(_) => html! { (text) },
            }),
            Some(text) => Some(html! { (text) }),
        });
    }
    let label = field_words(&change.field);
    Ok(match (&shown[0], &shown[1]) {
        (None, Some(after)) => Some(html! { (label) ": " (after) }),
        (Some(before), None) => Some(html! { (label) ": " (before) " " span.muted { "(removed)" } }),
        (Some(before), Some(after)) => Some(html! { (label) ": " (before) " → " (after) }),
        // Nothing either side (no scopes before or after): nothing worth a line.
        (None, None) => None,
    })
}
