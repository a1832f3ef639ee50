//! One key's page: usage chart, details, the Edit form (never the value), Rotate, Block or
//! Unblock, and Delete with a confirmation naming the key.

use super::forms::{expiry_field_value, options_fields, EditForm, RotateForm};
use super::new_key::new_key_shown_once;
use super::sessions;
use super::signed_in::{Dashboard, Submitted};
use super::views::Confirmation;
use super::views::{self, csrf_field, relative_time};
use super::{capitalized, page, CsrfForm, PageError, PageResult};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use latchkey_core::Status;
use maud::html;

pub async fn key_page(State(state): State<AppState>, user: Dashboard, Path(id): Path<String>) -> PageResult {
    let key = state.service.keys().get(&user.caller, &id).await?;
    let now = state.clock.now();
    let status = key.state_at(now).as_str();
    let levels = user.caller.grantable_levels(key.site_id.as_ref());
    let expiry_value = expiry_field_value(key.expires_at);
    let csrf = &user.session.csrf_token;
    let usage = state.service.keys().usage_of(&user.caller, std::slice::from_ref(&key), 30).await?;
    let created_by = key.created_by.as_ref().map(ToString::to_string);
    let body = html! {
        h2 { "Usage" }
        @if let Some(days) = usage.get(&key.id) { (views::usage_chart(days)) }
        h2 { "Details" }
        table {
            tbody {
                tr { th { "Key prefix" } td { code { (key.prefix.as_str()) } } }
                tr { th { "Status" } td class={ "status-" (status) } { (capitalized(status)) } }
                tr { th { "Permission" } td { (capitalized(key.permission.as_str())) } }
                tr { th { "Created" } td { (relative_time(Some(key.created_at), now)) " by " code { (created_by.as_deref().unwrap_or("the server")) } } }
                tr { th { "Last used" } td { (relative_time(key.last_used_at, now)) } }
                tr { th { "Expires" } td { (relative_time(key.expires_at, now)) } }
                @if let Some(owner) = &key.options.owner_id { tr { th { "Owner" } td { (owner.as_str()) } } }
                @if let Some(metadata) = &key.options.metadata { tr { th { "Metadata" } td { code { (metadata.as_str()) } } } }
                @if let Some(from) = &key.options.rotated_from { tr { th { "Replaces" } td { a href={ "/keys/" (from) } { (from) } } } }
                @if let Some(to) = &key.options.rotated_to { tr { th { "Replaced by" } td { a href={ "/keys/" (to) } { (to) } } } }
                @if let Some(credits) = &key.options.credits { tr { th { "Credits left" } td { (credits.remaining) } } }
            }
        }
        h2 { "Edit" }
        p.muted { "The key's value never changes. To get a new value, create a new key and delete this one." }
        form method="post" action={ "/keys/" (key.id) } {
            (csrf_field(csrf))
            label for="name" { "Name" }
            input #name type="text" name="name" maxlength="100" required value=(key.name.as_str());
            label for="permission" { "Permission level" }
            select #permission name="permission" {
                @for level in &levels { option value=(level.as_str()) selected[*level == key.permission] { (capitalized(level.as_str())) } }
            }
            label for="scopes" { "Fine-grained scopes" }
            input #scopes type="text" name="scopes" value=(key.scopes.to_strings().join(" "));
            label for="description" { "Description" }
            textarea #description name="description" maxlength="1000" rows="2" { (key.description.as_ref().map(|d| d.as_str()).unwrap_or("")) }
            label for="expires_at" { "Expires at, UTC (empty: never)" }
            input #expires_at type="datetime-local" name="expires_at" value=(expiry_value);
            input type="hidden" name="expires_at_was" value=(expiry_value);
            (options_fields(&key.options))
            p { button type="submit" { "Save" } }
        }
        h2 { "Rotate" }
        @if key.status != Status::Blocked {
            form.toolbar method="post" action={ "/keys/" (key.id) "/rotate" } {
                (csrf_field(csrf))
                input type="hidden" name="form_id" value=(sessions::random_token());
                div {
                    label for="grace_seconds" { "Old key keeps working for (seconds)" }
                    input #grace_seconds type="number" min="0" max="2592000" name="grace_seconds" value="0";
                }
                button.secondary type="submit" { "Rotate" }
            }
        }
        h2 { "Block or delete" }
        div.toolbar {
            @if key.status == Status::Blocked {
                form.inline method="post" action={ "/keys/" (key.id) "/unblock" } { (csrf_field(csrf)) button.secondary type="submit" { "Unblock" } }
            } @else {
                form.inline method="post" action={ "/keys/" (key.id) "/block" } { (csrf_field(csrf)) button.secondary type="submit" { "Block" } }
            }
            a.button href={ "/keys/" (key.id) "/delete" } { "Delete…" }
        }
        p { a href={ "/audit?key=" (key.id) } { "Audit trail of this key" } }
    };
    Ok(page(key.name.as_str(), &user, body))
}

pub async fn update_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { user, form }: Submitted<EditForm>,
) -> PageResult {
    let updated = state.service.keys().edit(&user.caller, &id, &form.edit()?).await?;
    Ok(Redirect::to(&format!("/keys/{}", updated.id)).into_response())
}

/// `POST /keys/{id}/block` and `/keys/{id}/unblock` (the other actions have routes of their own).
pub async fn block_or_unblock_key(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    Submitted { user, .. }: Submitted<CsrfForm>,
) -> PageResult {
    let keys = state.service.keys();
    let key = match action.as_str() {
        "block" => keys.block(&user.caller, &id).await?,
        "unblock" => keys.unblock(&user.caller, &id).await?,
        _ => return Err(PageError::from(ApiError::new(ErrorCode::NotFound, "no such page"))),
    };
    Ok(Redirect::to(&format!("/keys/{}", key.id)).into_response())
}

pub async fn rotate_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { user, form }: Submitted<RotateForm>,
) -> PageResult {
    let grace_seconds = form.grace_seconds()?;
    user.check_single_use(form.form_id.as_deref())?;
    let (record, secret) = state.service.keys().rotate(&user.caller, &id, grace_seconds).await?;
    Ok(new_key_shown_once(&user, &record, &secret))
}

pub async fn delete_key_page(State(state): State<AppState>, user: Dashboard, Path(id): Path<String>) -> PageResult {
    let key = state.service.keys().get(&user.caller, &id).await?;
    let question = html! {
        "Delete the key " strong { (key.name.as_str()) } " (" code { (key.prefix.as_str()) } ")? Anything using it stops working immediately. This cannot be undone."
    };
    let back = format!("/keys/{}", key.id);
    let confirm = Confirmation { question, action: format!("{back}/delete"), subject: key.name.as_str(), cancel: back };
    Ok(page("Delete API key", &user, confirm.render(&user)))
}

pub async fn delete_key(State(state): State<AppState>, Path(id): Path<String>, f: Submitted<CsrfForm>) -> PageResult {
    let user = f.user;
    let key = state.service.keys().delete(&user.caller, &id).await?;
    let site = key.site_id.map(|s| s.to_string()).unwrap_or_default();
    Ok(Redirect::to(&format!("/keys?site={site}")).into_response())
}
