//! The Sites page, for Master keys: create, rename and delete sites.

use super::signed_in::{Dashboard, Submitted};
use super::views::csrf_field;
use super::views::Confirmation;
use super::{page, CsrfForm, PageResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use latchkey_core::SiteName;
use maud::html;
use serde::Deserialize;

pub async fn sites_page(State(state): State<AppState>, user: Dashboard) -> PageResult {
    user.caller.may_manage_sites()?;
    let sites = state.service.sites().pickable(&user.caller).await?;
    let csrf = &user.session.csrf_token;
    let body = html! {
        form.toolbar method="post" action="/sites" {
            (csrf_field(csrf))
            div { label for="new-site" { "New site name" } input #new-site type="text" name="name" maxlength="100" required; }
            button type="submit" { "Create site" }
        }
        div.table-wrap { table {
            thead { tr { th { "Name" } th { "Rename" } th { "" } } }
            tbody { @for site in &sites { tr {
                td { a href={ "/keys?site=" (site.id) } { (site.name.as_str()) } }
                td { form.inline method="post" action={ "/sites/" (site.id) "/rename" } {
                    (csrf_field(csrf))
                    label.muted for={ "rename-" (site.id) } { "New name for " (site.name.as_str()) }
                    input id={ "rename-" (site.id) } type="text" name="name" maxlength="100" required value=(site.name.as_str());
                    button.secondary type="submit" { "Rename" }
                } }
                td { a href={ "/sites/" (site.id) "/delete" } { "Delete…" } }
            } } }
        } }
    };
    Ok(page("Sites", &user, body))
}

#[derive(Deserialize)]
pub struct SiteForm {
    pub csrf: Option<String>,
    name: String,
}

pub async fn create_site(State(state): State<AppState>, Submitted { user, form }: Submitted<SiteForm>) -> PageResult {
    state.service.sites().create(&user.caller, SiteName::parse(&form.name)?).await?;
    Ok(Redirect::to("/sites").into_response())
}

pub async fn rename_site(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { user, form }: Submitted<SiteForm>,
) -> PageResult {
    state.service.sites().rename(&user.caller, &id, SiteName::parse(&form.name)?).await?;
    Ok(Redirect::to("/sites").into_response())
}

pub async fn delete_site_page(State(state): State<AppState>, user: Dashboard, Path(id): Path<String>) -> PageResult {
    user.caller.may_manage_sites()?;
    let site = state.service.sites().get(&user.caller, &id).await?;
    let question = html! {
        "Delete the site " strong { (site.name.as_str()) } " and all its API keys? Every one of them stops working immediately."
    };
    let action = format!("/sites/{}/delete", site.id);
    let confirm = Confirmation { question, action, subject: site.name.as_str(), cancel: "/sites".into() };
    Ok(page("Delete site", &user, confirm.render(&user)))
}

pub async fn delete_site(State(state): State<AppState>, Path(id): Path<String>, f: Submitted<CsrfForm>) -> PageResult {
    let user = f.user;
    state.service.sites().delete(&user.caller, &id).await?;
    Ok(Redirect::to("/sites").into_response())
}
