//! New API Key: the form, and the one page that ever shows a full key.

use super::forms::{options_fields, parse_site, KeyForm};
use super::sessions;
use super::signed_in::{Dashboard, Submitted};
use super::views::csrf_field;
use super::{capitalized, page, PageResult};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::response::Response;
use latchkey_core::{KeyRecord, SecretKey};
use maud::html;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct SitePick {
    site: Option<String>,
}

pub async fn new_key_page(State(state): State<AppState>, user: Dashboard, Query(query): Query<SitePick>) -> PageResult {
    let sites = state.service.sites().pickable(&user.caller).await?;
    let selected = query.site.as_deref().and_then(parse_site);
    let levels = user.caller.creatable_levels();
    let body = html! {
        form method="post" action="/keys/new" {
            (csrf_field(&user.session.csrf_token))
            input type="hidden" name="form_id" value=(sessions::random_token());
            label for="name" { "Name" }
            input #name type="text" name="name" maxlength="100" required placeholder="Astro blog frontend";
            label for="permission" { "Permission level" }
            select #permission name="permission" {
                @for level in &levels { option value=(level.as_str()) { (capitalized(level.as_str())) } }
            }
            label for="site_id" { "Site" }
            select #site_id name="site_id" {
                @for s in &sites { option value=(s.id) selected[Some(&s.id) == selected.as_ref()] { (s.name.as_str()) } }
            }
            @if user.caller.is_master() { p.muted { "A Master key belongs to no site: the site is ignored for Master." } }
            label for="scopes" { "Fine-grained scopes (optional)" }
            input #scopes type="text" name="scopes" placeholder="flows:execute logs:view";
            p.muted { "Space-separated, each resource:action." }
            label for="description" { "Description (optional)" }
            textarea #description name="description" maxlength="1000" rows="2" {}
            label for="expires_at" { "Expires at, UTC (optional)" }
            input #expires_at type="datetime-local" name="expires_at";
            (options_fields(&latchkey_core::KeyOptions::default()))
            p { button type="submit" { "Create" } }
        }
    };
    Ok(page("New API Key", &user, body))
}

pub async fn create_key(State(state): State<AppState>, Submitted { user, form }: Submitted<KeyForm>) -> PageResult {
    let spec = form.new_key(state.clock.now())?;
    // Checked before the single-use mark, so a refused grant can be corrected and resent.
    user.caller.may_grant(spec.permission, spec.site_id.as_ref())?;
    user.check_single_use(form.form_id.as_deref())?;
    let (record, secret) = state.service.keys().create(&user.caller, spec).await?;
    Ok(new_key_shown_once(&user, &record, &secret))
}

/// The only page that ever shows a full key. Not cached; a reload cannot show it again.
pub fn new_key_shown_once(user: &Dashboard, record: &KeyRecord, secret: &SecretKey) -> Response {
    let back = format!("/keys?site={}", record.site_id.as_ref().map(|s| s.to_string()).unwrap_or_default());
    let body = html! {
        div.notice role="alert" {
            strong { "Copy it now; you won't be able to see it again." }
            " Store it somewhere safe, such as a secrets manager."
        }
        p { "Your new key " strong { (record.name.as_str()) } " (" (capitalized(record.permission.as_str())) "):" }
        p.secret #new-key data-testid="new-key" { (secret.expose()) }
        p {
            button type="button" data-copy="new-key" { "Copy" }
            " "
            a.button.secondary href=(back) { "Done" }
        }
    };
    page("Your new API key", user, body)
}
