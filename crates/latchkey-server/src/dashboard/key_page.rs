//! One key's page: what it is (site, level, scopes, description, who made it, by name),
//! its usage chart, the Edit form (folded away until wanted; never the value), Rotate, and
//! a red danger zone with Block and Delete, each confirmed on a page of its own
//! (`key_actions.rs`).

use super::forms::{EditForm, FieldErrors, KeyFields};
use super::key_form::key_fields;
use super::keys_list::rotating_until;
use super::names::{KeyNames, SiteNames};
use super::signed_in::{Dashboard, Submitted};
use super::views::{csrf_field, deadline, form_problems, relative_time, Nav};
use super::{capitalized, charts, done, page_with_status, PageResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use latchkey_core::{KeyId, KeyRecord, KeyState};
use latchkey_service::ServiceError;
use maud::{html, Markup};

/// Grace periods offered for a rotation, in words people use.
const GRACE_CHOICES: [(u64, &str); 5] = [
    (0, "Stops at once"),
    (3600, "1 hour"),
    (86_400, "1 day"),
    (7 * 86_400, "7 days"),
    (30 * 86_400, "30 days (the longest)"),
];

/// The Edit form as it was sent, with its problems, when a save was refused.
struct RefusedEdit<'a> {
    fields: &'a KeyFields,
    errors: FieldErrors,
}

pub async fn key_page(State(state): State<AppState>, user: Dashboard, Path(id): Path<String>) -> PageResult {
    match state.service.keys().get(&user.caller, &id).await {
        Ok(key) => render(&state, &user, &key, None).await,
        Err(ServiceError::NotFound(_)) => missing_key_page(&state, &user, &id).await,
        Err(other) => Err(other.into()),
    }
}

pub async fn update_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { user, form }: Submitted<EditForm>,
) -> PageResult {
    let key = state.service.keys().get(&user.caller, &id).await?;
    let refusal = match form.edit(state.clock.now()) {
        Ok(edit) => match state.service.keys().edit(&user.caller, &id, &edit).await {
            Ok(updated) => {
                let message = format!("Saved the changes to “{}”.", updated.name.as_str());
                return done(&user, &format!("/keys/{}", updated.id), message).await;
            }
            Err(error) => FieldErrors::from_service(error)?,
        },
        Err(errors) => errors,
    };
    render(&state, &user, &key, Some(RefusedEdit { fields: &form.fields, errors: refusal })).await
}

/// A key that is not there: deleted (named, with a link to what happened) or never seen.
async fn missing_key_page(state: &AppState, user: &Dashboard, id: &str) -> PageResult {
    let known = match KeyId::parse(id) {
        Some(id) => Some((KeyNames::new(&state.service, &user.caller).look_up(&id).await?, id)),
        None => None,
    };
    let body = html! {
        div.notice.error role="alert" data-error-code="not_found" {
            @match &known {
                Some((super::names::KnownKey::Deleted { name }, _)) => { "The key “" (name) "” was deleted." }
                _ => { "There is no key at this address that you can see. It may have been deleted." }
            }
        }
        p {
            @if let Some((_, id)) = &known { a href={ "/audit?key=" (id) } { "What happened to it (audit trail)" } " · " }
            a href="/keys" { "API Keys" }
        }
    };
    Ok(page_with_status(StatusCode::NOT_FOUND, "Key not found", Nav::Keys, user, body))
}

async fn render(state: &AppState, user: &Dashboard, key: &KeyRecord, refused: Option<RefusedEdit<'_>>) -> PageResult {
    let now = state.clock.now();
    let status = refused.as_ref().map_or(StatusCode::OK, |refused| refused.errors.status());
    let usage = state.service.keys().usage(&user.caller, key.id.as_str(), 30).await?;
    let sites = SiteNames::new(&state.service.sites().pickable(&user.caller).await?);
    let mut names = KeyNames::new(&state.service, &user.caller).knowing(std::slice::from_ref(key));
    let created_by = match &key.created_by {
        Some(id) => names.link(id, None).await?,
        None => html! { "Latchkey itself (the first Master key)" },
    };
    let replaces = match &key.options.rotated_from {
        Some(id) => Some(names.link(id, None).await?),
        None => None,
    };
    let replaced_by = match &key.options.rotated_to {
        Some(id) => Some(names.link(id, None).await?),
        None => None,
    };
    let body = html! {
        @if let (Some(until), Some(new)) = (rotating_until(key, now), &replaced_by) {
            div.notice.warning role="status" data-testid="rotating" {
                strong { "Being replaced." } " This key keeps working until " (deadline(until, now)) ", then stops. Its replacement: " (new) "."
            }
        }
        @if user.owns(key) { div.notice role="status" { "This is the key you are signed in with." } }
        (facts(key, &sites, created_by, replaces, replaced_by, now))
        h2 { "Usage" }
        (charts::usage_chart(&usage))
        (edit_panel(user, key, refused))
        (rotate_panel(key, now))
        (danger_zone(user, key))
        p { a href={ "/audit?key=" (key.id) } { "Audit trail of this key" } }
    };
    Ok(page_with_status(status, key.name.as_str(), Nav::Keys, user, body))
}

fn facts(
    key: &KeyRecord,
    sites: &SiteNames,
    created_by: Markup,
    replaces: Option<Markup>,
    replaced_by: Option<Markup>,
    now: DateTime<Utc>,
) -> Markup {
    let state = key.state_at(now).as_str();
    let options = &key.options;
    html! {
        dl.facts {
            dt { "Site" } dd { (sites.show(key.site_id.as_ref())) }
            dt { "Key prefix" } dd { code.prefix { (key.prefix.as_str()) "…" } }
            dt { "Status" } dd class={ "status-" (state) } { (capitalized(state)) }
            dt { "Permission" } dd { (capitalized(key.permission.as_str())) }
            dt { "Scopes" } dd {
                @if key.scopes.is_empty() { span.muted { "None: the level alone decides" } }
                @for scope in key.scopes.iter() { code { (scope.as_str()) } " " }
            }
            dt { "Description" } dd {
                @match &key.description { Some(d) => (d.as_str()), None => span.muted { "None" } }
            }
            dt { "Created" } dd { (relative_time(Some(key.created_at), now)) " by " (created_by) }
            dt { "Last used" } dd { (relative_time(key.last_used_at, now)) }
            dt { "Expires" } dd {
                @match key.expires_at { Some(at) => (deadline(at, now)), None => span.muted { "Never" } }
            }
            @if let Some(owner) = &options.owner_id { dt { "Owner" } dd { (owner.as_str()) } }
            @if let Some(metadata) = &options.metadata { dt { "Metadata" } dd { code { (metadata.as_str()) } } }
            @if !options.ip_allowlist.is_empty() {
                dt { "IP allowlist" } dd { @for net in &options.ip_allowlist { code { (net) } " " } }
            }
            @if let Some(limit) = options.ratelimit {
                dt { "Rate limit" } dd { (limit.limit) " requests per " (limit.window_seconds) " s" }
            }
            @if let Some(credits) = &options.credits { dt { "Credits left" } dd { (credits.remaining) } }
            @if let Some(from) = replaces { dt { "Replaces" } dd { (from) } }
            @if let Some(to) = replaced_by { dt { "Replaced by" } dd { (to) } }
        }
    }
}

/// The Edit form, folded away unless a save was just refused.
fn edit_panel(user: &Dashboard, key: &KeyRecord, refused: Option<RefusedEdit<'_>>) -> Markup {
    let current = KeyFields::of(key);
    let (fields, errors) = match &refused {
        Some(refused) => (refused.fields, &refused.errors),
        None => (&current, &FieldErrors::default()),
    };
    let levels = user.caller.grantable_levels(key.site_id.as_ref());
    html! {
        details.panel #edit open[refused.is_some()] {
            summary { "Edit name, level, scopes, expiry and limits" }
            (form_problems(errors, "Nothing was saved."))
            p.hint { "The key's value never changes here; to get a new value, rotate the key (below)." }
            form method="post" action={ "/keys/" (key.id) } {
                (csrf_field(&user.session.csrf_token))
                (key_fields(fields, errors, &levels))
                input type="hidden" name="expires_at_was" value=(current.expires_at);
                p { button type="submit" { "Save changes" } }
            }
        }
    }
}

fn rotate_panel(key: &KeyRecord, now: DateTime<Utc>) -> Markup {
    html! {
        section.panel aria-labelledby="rotate-heading" {
            h2 #rotate-heading { "Rotate: get a new value" }
            @match key.state_at(now) {
                KeyState::Active => {
                    p { "Rotation creates a new key with the same name, level, scopes and settings, shown once. The old value keeps working for the time you pick, so you can replace it without downtime." }
                    form.toolbar method="get" action={ "/keys/" (key.id) "/rotate" } {
                        div {
                            label for="grace" { "The old key keeps working for" }
                            select #grace name="grace" {
                                @for (seconds, words) in GRACE_CHOICES { option value=(seconds) selected[seconds == 3600] { (words) } }
                            }
                        }
                        button.secondary type="submit" { "Rotate…" }
                    }
                }
                KeyState::Blocked => p { "A blocked key cannot be rotated. Unblock it first (below), or create a new key." },
                KeyState::Expired => p { "An expired key cannot be rotated. Create a new key instead." },
            }
        }
    }
}

fn danger_zone(user: &Dashboard, key: &KeyRecord) -> Markup {
    let blocked = key.status == latchkey_core::Status::Blocked;
    html! {
        section.danger-zone aria-labelledby="danger-heading" {
            h2 #danger-heading { "Danger zone" }
            div.action {
                @if blocked {
                    p { strong { "Unblock" } ": let this key work again, everywhere, at once." }
                    form.inline method="post" action={ "/keys/" (key.id) "/unblock" } {
                        (csrf_field(&user.session.csrf_token))
                        button.danger-outline type="submit" { "Unblock" }
                    }
                } @else {
                    p { strong { "Block" } ": every request made with this key is refused at once. You can unblock it later." }
                    a.button.danger href={ "/keys/" (key.id) "/block" } { "Block…" }
                }
            }
            div.action {
                p { strong { "Delete" } ": the key is gone for good; anything using it stops working. This cannot be undone." }
                a.button.danger href={ "/keys/" (key.id) "/delete" } { "Delete…" }
            }
        }
    }
}
