//! New API Key: the form, which comes back filled in with each problem beside its field
//! when it is refused, and the one page that ever shows a full key.

use super::forms::{FieldErrors, KeyFields, KeyForm};
use super::key_form::key_fields;
use super::keys_list::MASTER_KEYS;
use super::names::KeyNames;
use super::sessions::{self, FormUse};
use super::signed_in::{is_https, Dashboard, Submitted};
use super::views::{csrf_field, deadline, field_error, form_problems, invalid, Nav};
use super::{capitalized, page, page_with_status, PageResult};
use crate::extract::PeerAddr;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use latchkey_core::{KeyRecord, Permission, SecretKey};
use maud::html;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct SitePick {
    site: Option<String>,
}

pub async fn new_key_page(State(state): State<AppState>, user: Dashboard, Query(pick): Query<SitePick>) -> PageResult {
    // Coming from the Master keys list, the form starts as a Master key.
    let for_master = pick.site.as_deref() == Some(MASTER_KEYS) && user.caller.is_master();
    let site = if for_master { String::new() } else { pick.site.unwrap_or_default() };
    let level = if for_master { Permission::Master } else { Permission::Read };
    let fields = KeyFields { permission: level.as_str().to_owned(), ..KeyFields::default() };
    new_key_form(&state, &user, &site, &fields, &FieldErrors::default()).await
}

/// The form, with what was typed and what was wrong with it. Each showing carries a fresh
/// single-use id, so a corrected form can be sent while the refused one created nothing.
async fn new_key_form(
    state: &AppState,
    user: &Dashboard,
    site_id: &str,
    fields: &KeyFields,
    errors: &FieldErrors,
) -> PageResult {
    let sites = state.service.sites().pickable(&user.caller).await?;
    let levels = user.caller.creatable_levels();
    let (site_bad, site_error) = invalid(errors, "site_id");
    let body = html! {
        (form_problems(errors, "The key was not created."))
        form method="post" action="/keys/new" {
            (csrf_field(&user.session.csrf_token))
            input type="hidden" name="form_id" value=(sessions::random_token());
            label for="site_id" { "Site" }
            select #site_id name="site_id" aria-invalid=[site_bad] aria-describedby=[site_error] {
                option value="" selected[site_id.is_empty()] { "Choose a site…" }
                @for site in &sites { option value=(site.id) selected[site.id.as_str() == site_id] { (site.name.as_str()) } }
            }
            @if sites.is_empty() && user.caller.is_master() {
                p.hint { "There are no sites yet: " a href="/sites" { "create one" } ", or create a Master key, which needs none." }
            } @else if user.caller.is_master() {
                p.hint { "A key works only for its site. A Master key belongs to no site: for Master, leave this empty." }
            } @else {
                p.hint { "A key works only for its site." }
            }
            (field_error(errors, "site_id"))
            (key_fields(fields, errors, &levels))
            p.toolbar { button type="submit" { "Create key" } a href="/keys" { "Cancel" } }
        }
    };
    let status = if errors.is_empty() { StatusCode::OK } else { errors.status() };
    Ok(page_with_status(status, "New API Key", Nav::Keys, user, body))
}

pub async fn create_key(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    Submitted { user, form }: Submitted<KeyForm>,
) -> PageResult {
    let spec = match form.new_key(state.clock.now()) {
        Ok(spec) => spec,
        Err(errors) => return new_key_form(&state, &user, &form.site_id, &form.fields, &errors).await,
    };
    let claim = match user.claim_form(form.form_id.as_deref()).await? {
        Ok(claim) => claim,
        Err(earlier) => return already_sent(&state, &user, earlier).await,
    };
    let refusal = match state.service.keys().create(&user.caller, spec).await {
        Ok((record, secret)) => {
            claim.created(record.id.clone()).await;
            let site = match &record.site_id {
                Some(id) => {
                    state.service.sites().get(&user.caller, id.as_str()).await.ok().map(|s| s.name.as_str().to_owned())
                }
                None => None,
            };
            let level = capitalized(record.permission.as_str());
            let made = match site {
                Some(site) => format!("Created the {level} key “{}” for the site {site}.", record.name.as_str()),
                None => format!("Created the {level} key “{}”.", record.name.as_str()),
            };
            let shown = ShownOnce { record: &record, secret: &secret, origin: origin(&headers, &state, peer), made };
            return Ok(key_shown_once(&user, shown, None));
        }
        Err(error) => error,
    };
    drop(claim);
    let errors = FieldErrors::from_service(refusal)?;
    new_key_form(&state, &user, &form.site_id, &form.fields, &errors).await
}

/// A single-use form sent again: say what its first sending did, truthfully.
pub async fn already_sent(state: &AppState, user: &Dashboard, earlier: FormUse) -> PageResult {
    let (nav, what) = match &earlier {
        FormUse::Created(id) => {
            let key = KeyNames::new(&state.service, &user.caller).link(id, None).await?;
            let what = html! {
                "This form was already sent, and it created the key " (key) ". Nothing was created twice."
                p { "A key's value is shown only once. If it was not copied, rotate the key to get a new value." }
            };
            (Nav::Keys, what)
        }
        FormUse::CreatedWebhook(id) => {
            let what = html! {
                "This form was already sent, and it registered the webhook " a href={ "/webhooks/" (id) } { code { (id) } }
                ". Nothing was registered twice."
                p { "A signing secret is shown only once. If it was not copied, rotate the webhook's secret to get a new one." }
            };
            (Nav::Webhooks, what)
        }
        FormUse::InFlight => (
            Nav::Keys,
            html! { "This form is being sent already. Wait a moment, then look for what it made in the list." },
        ),
    };
    let body = html! {
        div.notice.error role="alert" data-error-code="conflict" { (what) }
        p { a href="/keys" { "API Keys" } " · " a href="/webhooks" { "Webhooks" } }
    };
    Ok(page_with_status(StatusCode::CONFLICT, "This form was already sent", nav, user, body))
}

/// Where this Latchkey answers, for the usage example: as the browser reached it.
pub fn origin(headers: &HeaderMap, state: &AppState, peer: Option<std::net::SocketAddr>) -> String {
    let scheme = if is_https(headers, state, peer) { "https" } else { "http" };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost:8080");
    format!("{scheme}://{host}")
}

/// What the one-time page shows.
pub struct ShownOnce<'a> {
    pub record: &'a KeyRecord,
    pub secret: &'a SecretKey,
    pub origin: String,
    /// What was done, in a sentence.
    pub made: String,
}

/// The old key of a rotation and until when it works.
pub struct Replaced<'a> {
    pub old: &'a KeyRecord,
    pub now: DateTime<Utc>,
}

/// The only page that ever shows a full key. Not cached; a reload cannot show it again.
pub fn key_shown_once(user: &Dashboard, shown: ShownOnce<'_>, replaced: Option<Replaced<'_>>) -> Response {
    let record = shown.record;
    let key = shown.secret.expose();
    let back = format!(
        "/keys?site={}",
        record.site_id.as_ref().map(|s| s.to_string()).unwrap_or_else(|| MASTER_KEYS.to_owned())
    );
    let body = html! {
        div.notice.success role="status" { (shown.made) }
        div.notice.warning role="alert" {
            strong { "Copy this key now: it is shown only this once." }
            p { "Latchkey keeps only a fingerprint (SHA-256) of it, so nobody can show it again, not even an administrator. If it is lost, rotate the key to get a new one." }
        }
        @if record.permission == Permission::Master {
            div.notice.error data-testid="master-caution" {
                strong { "This is a Master key." }
                p { "It can create, block and delete every key of every site and manage the sites. Keep it in a password manager or secrets vault, use it only to manage Latchkey, and never put it in an application, a repository or a browser." }
            }
        }
        @if let Some(Replaced { old, now }) = replaced {
            div.notice.warning data-testid="grace" {
                @match old.expires_at.filter(|until| *until > now) {
                    Some(until) => {
                        "The old key " code.prefix { (old.prefix.as_str()) "…" } " keeps working until " (deadline(until, now))
                        ", then stops. Replace it everywhere before then."
                    }
                    None => { "The old key " code.prefix { (old.prefix.as_str()) "…" } " has stopped working." }
                }
            }
        }
        p { "The new key " strong { (record.name.as_str()) } " (" (capitalized(record.permission.as_str())) "):" }
        p.secret #new-key data-testid="new-key" { (key) }
        p.toolbar {
            button type="button" data-copy="new-key" data-copy-status="copy-status" { "Copy key" }
            a.button.secondary href=(back) { "Done" }
        }
        p #copy-status role="status" aria-live="polite" {}
        h2 { "Using it" }
        p { "Send it in the " code { "X-API-Key" } " header (or as " code { "Authorization: Bearer" } ") with each request. To check that it works:" }
        pre.snippet { code { "curl -H \"X-API-Key: " (key) "\" " (shown.origin) "/api/v1/whoami" } }
    };
    page("Your new API key", Nav::Keys, user, body)
}
