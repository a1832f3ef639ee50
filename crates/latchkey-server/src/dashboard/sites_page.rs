//! The Sites page, for Master keys: create, rename and delete sites. Names are unique, so
//! a site picker never offers two alike; deleting says how many keys go with the site.

use super::forms::FieldErrors;
use super::signed_in::{Dashboard, Submitted};
use super::views::{count, csrf_field, field_error, invalid, relative_time, Confirmation, Nav};
use super::{done, page, page_with_status, CsrfForm, PageResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_core::SiteName;
use latchkey_service::ServiceError;
use maud::html;
use serde::Deserialize;

/// A refused create or rename: which form, what was typed, and why.
struct Refused<'a> {
    /// `None`: the create form; else the site being renamed.
    site: Option<&'a str>,
    typed: &'a str,
    errors: FieldErrors,
}

pub async fn sites_page(State(state): State<AppState>, user: Dashboard) -> PageResult {
    render(&state, &user, None).await
}

async fn render(state: &AppState, user: &Dashboard, refused: Option<Refused<'_>>) -> PageResult {
    user.caller.may_manage_sites()?;
    let sites = state.service.sites().pickable(&user.caller).await?;
    let csrf = &user.session.csrf_token;
    let now = state.clock.now();
    let no_errors = FieldErrors::default();
    let (create_typed, create_errors) = match &refused {
        Some(Refused { site: None, typed, errors }) => (*typed, errors),
        _ => ("", &no_errors),
    };
    let (bad, described) = invalid(create_errors, "name");
    let body = html! {
        p.muted { "Keys belong to sites. A site's Admin keys manage only that site's keys." }
        form.toolbar method="post" action="/sites" {
            (csrf_field(csrf))
            div {
                label for="new-site" { "New site name" }
                input #new-site type="text" name="name" maxlength="100" required value=(create_typed)
                    aria-invalid=[bad] aria-describedby=[described.map(|_| "new-site-error")];
                @if let Some(message) = create_errors.get("name") { p.field-error #new-site-error { (message) } }
            }
            button type="submit" { "Create site" }
        }
        @if sites.is_empty() {
            div.notice role="status" { "There are no sites yet. Create the first one above, then give it keys from the API Keys page." }
        } @else {
            table.cards {
                thead { tr { th { "Name" } th { "Created" } th { "Rename" } th { "Delete" } } }
                tbody { @for site in &sites {
                    @let id = site.id.to_string();
                    @let (typed, errors) = match &refused {
                        Some(Refused { site: Some(s), typed, errors }) if *s == id => (*typed, errors),
                        _ => (site.name.as_str(), &no_errors),
                    };
                    @let (bad, _) = invalid(errors, "name");
                    tr {
                        td data-label="Name" { a href={ "/keys?site=" (site.id) } { (site.name.as_str()) } }
                        td data-label="Created" { (relative_time(Some(site.created_at), now)) }
                        td data-label="Rename" { form.rename method="post" action={ "/sites/" (site.id) "/rename" } {
                            (csrf_field(csrf))
                            label.visually-hidden for={ "rename-" (site.id) } { "New name for " (site.name.as_str()) }
                            input id={ "rename-" (site.id) } type="text" name="name" maxlength="100" required value=(typed)
                                aria-invalid=[bad];
                            button.secondary type="submit" { "Rename" }
                            (field_error(errors, "name"))
                        } }
                        td data-label="Delete" { a.button.danger-outline href={ "/sites/" (site.id) "/delete" } { "Delete…" } }
                    }
                } }
            }
        }
    };
    let status = refused.as_ref().map_or(StatusCode::OK, |refused| refused.errors.status());
    Ok(page_with_status(status, "Sites", Nav::Sites, user, body))
}

#[derive(Deserialize)]
pub struct SiteForm {
    pub csrf: Option<String>,
    #[serde(default)]
    name: String,
}

/// The name typed, or why it cannot be one.
fn site_name(typed: &str) -> Result<SiteName, FieldErrors> {
    SiteName::parse(typed).map_err(|invalid| {
        let mut errors = FieldErrors::default();
        errors.add("name", format!("The name {}.", invalid.message));
        errors
    })
}

/// A refusal the form can show next to its name field; others stay error pages.
fn name_refusal(error: ServiceError) -> Result<FieldErrors, super::PageError> {
    match error {
        ServiceError::Conflict(message) => {
            let mut errors = FieldErrors::default();
            errors.add("name", format!("{}; pick another name.", super::capitalized(&message)));
            Ok(errors.with_status(StatusCode::CONFLICT))
        }
        other => Err(other.into()),
    }
}

pub async fn create_site(State(state): State<AppState>, Submitted { user, form }: Submitted<SiteForm>) -> PageResult {
    let errors = match site_name(&form.name) {
        Ok(name) => match state.service.sites().create_unique(&user.caller, name).await {
            Ok(site) => return done(&user, "/sites", format!("Created the site {}.", site.name.as_str())).await,
            Err(error) => name_refusal(error)?,
        },
        Err(errors) => errors,
    };
    render(&state, &user, Some(Refused { site: None, typed: &form.name, errors })).await
}

pub async fn rename_site(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { user, form }: Submitted<SiteForm>,
) -> PageResult {
    let errors = match site_name(&form.name) {
        Ok(name) => match state.service.sites().rename_unique(&user.caller, &id, name).await {
            Ok(site) => return done(&user, "/sites", format!("Renamed the site to {}.", site.name.as_str())).await,
            Err(error) => name_refusal(error)?,
        },
        Err(errors) => errors,
    };
    render(&state, &user, Some(Refused { site: Some(&id), typed: &form.name, errors })).await
}

pub async fn delete_site_page(State(state): State<AppState>, user: Dashboard, Path(id): Path<String>) -> PageResult {
    user.caller.may_manage_sites()?;
    let site = state.service.sites().get(&user.caller, &id).await?;
    let keys = state.service.sites().key_count(&user.caller, &id).await?;
    let question = html! { "Delete the site " strong { (site.name.as_str()) } "?" };
    let consequences = if keys == 0 {
        vec![html! { "It has no API keys." }, html! { "This cannot be undone." }]
    } else {
        vec![
            html! { "Its " strong { (count(keys, "API key", "API keys")) } " are deleted with it, and every one of them stops working immediately." },
            html! { "This cannot be undone." },
        ]
    };
    let confirm = Confirmation {
        question,
        consequences,
        action: format!("/sites/{}/delete", site.id),
        hidden: Vec::new(),
        button: format!("Delete {}", site.name.as_str()),
        cancel: "/sites".into(),
        own_key: None,
        error: None,
    };
    Ok(page("Delete site", Nav::Sites, &user, confirm.render(&user.session.csrf_token)))
}

pub async fn delete_site(State(state): State<AppState>, Path(id): Path<String>, f: Submitted<CsrfForm>) -> PageResult {
    let user = f.user;
    let (site, keys) = state.service.sites().delete_counting_keys(&user.caller, &id).await?;
    let gone = if keys == 0 { String::new() } else { format!(" and its {}", count(keys, "API key", "API keys")) };
    done(&user, "/sites", format!("Deleted the site {}{gone}.", site.name.as_str())).await
}
