//! The Webhooks page: the endpoints the signed-in key may manage (an Admin its site's, a
//! Master every site's and those of all sites), each with its health (a failing endpoint's
//! events wait, and the page says how many); the form that registers one; and the one
//! page that ever shows a signing secret. The operations are the service's, as for the
//! JSON API (`service.webhooks()`), so policy, the address guard and the audit are shared.

use super::forms::{sentence, FieldErrors};
use super::signed_in::{Dashboard, Submitted};
use super::views::{csrf_field, field_error, form_problems, invalid, relative_time, Nav};
use super::{page, page_with_status, PageError, PageResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use latchkey_core::SiteId;
use latchkey_service::sites::parse_site_filter;
use latchkey_service::webhooks::{NewWebhook, WebhookEdit, WebhookSecret, MAX_DESCRIPTION_CHARS, MAX_URL_CHARS};
use latchkey_service::{PageRequest, ServiceError};
use latchkey_store::outbox::EVENT_TYPES;
use latchkey_store::webhooks::WebhookEndpoint;
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;

/// The `site_id` value that asks for an endpoint of every site (a Master's).
const ALL_SITES: &str = "all";
/// Event checkboxes are named `event:<type>`: a plain form cannot send a list under one
/// name to serde, so each type is its own field.
const EVENT_FIELD: &str = "event:";

/// The fields the register form and the edit form share, as typed.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct WebhookFields {
    pub url: String,
    pub description: String,
    /// The ticked event types (`event:key.blocked=on`), and nothing else.
    #[serde(flatten)]
    pub ticked: HashMap<String, String>,
}

impl WebhookFields {
    pub fn of(endpoint: &WebhookEndpoint) -> Self {
        let ticked = endpoint.events.iter().map(|event| (format!("{EVENT_FIELD}{event}"), "on".to_owned())).collect();
        Self { url: endpoint.url.clone(), description: endpoint.description.clone().unwrap_or_default(), ticked }
    }

    /// The ticked types; `None` when none is ticked, which means every type.
    fn events(&self) -> Option<Vec<String>> {
        let mut events: Vec<String> =
            self.ticked.keys().filter_map(|name| name.strip_prefix(EVENT_FIELD)).map(str::to_owned).collect();
        events.sort();
        (!events.is_empty()).then_some(events)
    }

    fn is_ticked(&self, event: &str) -> bool {
        self.ticked.contains_key(&format!("{EVENT_FIELD}{event}"))
    }

    fn description(&self) -> Option<String> {
        Some(self.description.trim()).filter(|text| !text.is_empty()).map(str::to_owned)
    }

    /// What the edit form asks for: every field as sent.
    pub fn edit(&self) -> WebhookEdit {
        WebhookEdit { url: Some(self.url.clone()), events: Some(self.events()), description: Some(self.description()) }
    }
}

#[derive(Deserialize)]
pub struct RegisterForm {
    pub csrf: Option<String>,
    form_id: Option<String>,
    #[serde(default)]
    site_id: String,
    #[serde(flatten)]
    fields: WebhookFields,
}

/// A refusal by the service, next to the field it is about. Its messages name the field
/// first ("url must be http or https"); the rest are the key forms' refusals.
pub fn webhook_refusal(error: ServiceError) -> Result<FieldErrors, PageError> {
    let ServiceError::Invalid(message) = &error else {
        return FieldErrors::from_service(error);
    };
    let mut errors = FieldErrors::default();
    match ["url", "events", "description"].into_iter().find(|field| message.starts_with(field)) {
        Some("url") => errors.add("url", sentence(&format!("the URL{}", &message["url".len()..]))),
        Some(field) => errors.add(field, sentence(message)),
        None => errors.add("", sentence(message)),
    }
    Ok(errors)
}

pub async fn webhooks_page(State(state): State<AppState>, user: Dashboard) -> PageResult {
    render(&state, &user, &RegisterForm::blank(), &FieldErrors::default()).await
}

impl RegisterForm {
    fn blank() -> Self {
        Self { csrf: None, form_id: None, site_id: String::new(), fields: WebhookFields::default() }
    }
}

/// The site names the page shows, by id.
async fn site_names(state: &AppState, user: &Dashboard) -> Result<Vec<(SiteId, String)>, PageError> {
    let sites = state.service.sites().pickable(&user.caller).await?;
    Ok(sites.into_iter().map(|site| (site.id, site.name.as_str().to_owned())).collect())
}

fn site_label(names: &[(SiteId, String)], site: Option<&SiteId>) -> String {
    match site {
        None => "All sites".to_owned(),
        Some(id) => {
            names.iter().find(|(known, _)| known == id).map_or_else(|| id.to_string(), |(_, name)| name.clone())
        }
    }
}

async fn render(state: &AppState, user: &Dashboard, typed: &RegisterForm, errors: &FieldErrors) -> PageResult {
    let webhooks = state.service.webhooks();
    let listed = webhooks.list(&user.caller, None, &PageRequest::first(200)).await?;
    let mut waiting = Vec::with_capacity(listed.items.len());
    for endpoint in &listed.items {
        let failing = endpoint.failing_since.is_some();
        waiting.push(if failing { webhooks.waiting(&user.caller, &endpoint.id).await? } else { 0 });
    }
    let names = site_names(state, user).await?;
    let now = state.clock.now();
    let body = html! {
        p.muted {
            "Latchkey sends each event (a key created, blocked, rotated, leaked, about to expire…) to these URLs, "
            "signed in the Standard Webhooks format. An endpoint that keeps failing is marked Failing; its events wait for it."
        }
        @if listed.items.is_empty() {
            div.notice role="status" { "No webhooks yet. Register the first one below." }
        } @else {
            table.cards {
                thead { tr { th { "URL" } th { "Site" } th { "Events" } th { "Status" } th { "Created" } } }
                tbody { @for (endpoint, waiting) in listed.items.iter().zip(&waiting) {
                    tr {
                        td data-label="URL" { a href={ "/webhooks/" (endpoint.id) } { (endpoint.url) } }
                        td data-label="Site" { (site_label(&names, endpoint.site_id.as_ref())) }
                        td data-label="Events" { (events_summary(&endpoint.events)) }
                        td data-label="Status" { (health(endpoint, *waiting, now)) }
                        td data-label="Created" { (relative_time(Some(endpoint.created_at), now)) }
                    }
                } }
            }
            @if listed.next_cursor.is_some() { p.muted { "The first 200 endpoints are shown." } }
        }
        h2 { "Register a webhook" }
        (form_problems(errors, "The webhook was not registered."))
        form method="post" action="/webhooks" {
            (csrf_field(&user.session.csrf_token))
            input type="hidden" name="form_id" value=(super::sessions::random_token());
            @if user.caller.is_master() {
                label for="site_id" { "Site" }
                select #site_id name="site_id" {
                    option value=(ALL_SITES) selected[typed.site_id.is_empty() || typed.site_id == ALL_SITES] { "All sites (and Master keys)" }
                    @for (id, name) in &names { option value=(id) selected[id.as_str() == typed.site_id] { (name) } }
                }
                p.hint { "An endpoint of one site receives that site's events only." }
            } @else {
                p.hint { "It receives the events of your site, " strong { (site_label(&names, user.caller.site_id.as_ref())) } "." }
            }
            (webhook_fields(&typed.fields, errors))
            p.toolbar { button type="submit" { "Register webhook" } }
        }
    };
    let status = if errors.is_empty() { StatusCode::OK } else { errors.status() };
    Ok(page_with_status(status, "Webhooks", Nav::Webhooks, user, body))
}

/// "All events", or the chosen types.
pub fn events_summary(events: &[String]) -> Markup {
    html! {
        @if events.is_empty() { span.muted { "All events" } }
        // One element, so a phone's card lays the list out as one value, not as columns.
        @else { span { @for (i, event) in events.iter().enumerate() { @if i > 0 { ", " } code { (event) } } } }
    }
}

/// Active, or failing since when with how many events waiting.
pub fn health(endpoint: &WebhookEndpoint, waiting: u64, now: chrono::DateTime<chrono::Utc>) -> Markup {
    html! {
        @match endpoint.failing_since {
            None => span.status-active { "Active" },
            Some(since) => span.status-blocked data-testid="failing" {
                "Failing since " (relative_time(Some(since), now)) " · " (waiting) " waiting"
            },
        }
    }
}

/// URL, events and description: the fields that registering and editing share.
pub fn webhook_fields(fields: &WebhookFields, errors: &FieldErrors) -> Markup {
    let (url_bad, url_error) = invalid(errors, "url");
    let (description_bad, description_error) = invalid(errors, "description");
    html! {
        label for="url" { "URL" }
        input #url type="text" name="url" inputmode="url" maxlength=(MAX_URL_CHARS) required value=(fields.url)
            placeholder="https://example.com/latchkey-events" aria-invalid=[url_bad] aria-describedby=[url_error];
        p.hint { "http or https. Addresses on this server's own network are refused unless the operator allows them." }
        (field_error(errors, "url"))
        fieldset {
            legend { "Events" }
            p.hint { "Tick none to receive every event, including kinds added later." }
            @for event in EVENT_TYPES {
                label.check {
                    input type="checkbox" name={ (EVENT_FIELD) (event) } checked[fields.is_ticked(event)];
                    code { (event) }
                }
            }
            (field_error(errors, "events"))
        }
        label for="description" { "Description (optional)" }
        textarea #description name="description" maxlength=(MAX_DESCRIPTION_CHARS) rows="2"
            aria-invalid=[description_bad] aria-describedby=[description_error] { (fields.description) }
        (field_error(errors, "description"))
    }
}

pub async fn register_webhook(
    State(state): State<AppState>,
    Submitted { user, form }: Submitted<RegisterForm>,
) -> PageResult {
    let site_id = match form.site_id.as_str() {
        "" | ALL_SITES => None,
        id => Some(parse_site_filter(id)?),
    };
    let spec = NewWebhook {
        url: form.fields.url.clone(),
        site_id,
        events: form.fields.events(),
        description: form.fields.description(),
    };
    let claim = match user.claim_form(form.form_id.as_deref()).await? {
        Ok(claim) => claim,
        Err(earlier) => return super::new_key::already_sent(&state, &user, earlier).await,
    };
    match state.service.webhooks().create(&user.caller, spec).await {
        Ok((endpoint, secret)) => {
            claim.created(&endpoint.id).await;
            let made = format!("Registered the webhook {}.", endpoint.url);
            Ok(secret_shown_once(&user, &endpoint, &secret, made))
        }
        Err(error) => {
            drop(claim);
            let errors = webhook_refusal(error)?;
            render(&state, &user, &form, &errors).await
        }
    }
}

/// The only page that ever shows a signing secret. Not cached (every dashboard page is
/// `no-store`); a reload cannot show it again.
pub fn secret_shown_once(
    user: &Dashboard,
    endpoint: &WebhookEndpoint,
    secret: &WebhookSecret,
    made: String,
) -> Response {
    let body = html! {
        div.notice.success role="status" { (made) }
        div.notice.warning role="alert" {
            strong { "Copy this signing secret now: it is shown only this once." }
            p { "Your receiver needs it to check that each delivery comes from Latchkey. If it is lost, rotate the secret to get a new one." }
        }
        p.secret #new-secret data-testid="new-secret" { (secret.expose()) }
        p.toolbar {
            button type="button" data-copy="new-secret" data-copy-status="copy-status" { "Copy secret" }
            a.button.secondary href={ "/webhooks/" (endpoint.id) } { "Done" }
        }
        p #copy-status role="status" aria-live="polite" {}
        h2 { "Checking deliveries" }
        p {
            "Each delivery carries the headers " code { "webhook-id" } ", " code { "webhook-timestamp" } " and "
            code { "webhook-signature" } ". Verify them with any Standard Webhooks library and this secret, and "
            "reject deliveries whose timestamp is more than 5 minutes old. A retry carries the same "
            code { "webhook-id" } ": use it to ignore repeats."
        }
    };
    page("Your webhook's signing secret", Nav::Webhooks, user, body)
}
