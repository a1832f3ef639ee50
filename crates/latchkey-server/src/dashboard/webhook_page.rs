//! One webhook endpoint: what it receives, whether it is healthy, its recent delivery
//! attempts (status or error, duration, next retry), a test event, the edit form, and
//! the confirmations before rotating its secret or deleting it.

use super::forms::FieldErrors;
use super::signed_in::{Dashboard, Submitted};
use super::views::{csrf_field, deadline, exact_time, form_problems, relative_time, Confirmation, Nav};
use super::webhooks_page::{events_summary, health, secret_shown_once, webhook_fields, webhook_refusal, WebhookFields};
use super::{done, page, page_with_status, CsrfForm, PageResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_service::webhooks::SECRET_OVERLAP_HOURS;
use latchkey_service::PageRequest;
use latchkey_store::webhooks::{DeliveryAttempt, WebhookEndpoint};
use maud::{html, Markup};
use serde::Deserialize;

/// How many attempts the page lists, newest first.
const ATTEMPTS_SHOWN: u32 = 50;

pub async fn webhook_page(State(state): State<AppState>, user: Dashboard, Path(id): Path<String>) -> PageResult {
    let endpoint = state.service.webhooks().get(&user.caller, &id).await?;
    let fields = WebhookFields::of(&endpoint);
    render(&state, &user, &endpoint, &fields, &FieldErrors::default()).await
}

async fn render(
    state: &AppState,
    user: &Dashboard,
    endpoint: &WebhookEndpoint,
    typed: &WebhookFields,
    errors: &FieldErrors,
) -> PageResult {
    let webhooks = state.service.webhooks();
    let (attempts, waiting) =
        webhooks.deliveries(&user.caller, &endpoint.id, &PageRequest::first(ATTEMPTS_SHOWN)).await?;
    let site = match &endpoint.site_id {
        None => "All sites (and Master keys)".to_owned(),
        Some(id) => state.service.sites().get(&user.caller, id.as_str()).await?.name.as_str().to_owned(),
    };
    let now = state.clock.now();
    let csrf = &user.session.csrf_token;
    let action = format!("/webhooks/{}", endpoint.id);
    let body = html! {
        dl.facts {
            dt { "URL" } dd { code { (endpoint.url) } }
            dt { "Site" } dd { (site) }
            dt { "Events" } dd { (events_summary(&endpoint.events)) }
            dt { "Status" } dd { (health(endpoint, waiting, now)) }
            dt { "Waiting" } dd { (waiting) " event" @if waiting != 1 { "s" } " to deliver" }
            @if let Some(description) = &endpoint.description { dt { "Description" } dd { (description) } }
            @if let Some(until) = endpoint.previous_secret_expires_at.filter(|until| *until > now) {
                dt { "Signing secret" } dd { "Rotated; the previous secret also signs until " (deadline(until, now)) }
            }
            dt { "Created" } dd { (relative_time(Some(endpoint.created_at), now)) }
        }
        @if endpoint.failing_since.is_some() {
            div.notice.warning role="status" {
                "Deliveries to this URL keep failing. Its events are kept and sent in order once it answers again; "
                "see the attempts below for what it answered."
            }
        }
        form.toolbar method="post" action={ (action) "/test" } {
            (csrf_field(csrf))
            button.secondary type="submit" { "Send a test event" }
        }
        h2 { "Recent deliveries" }
        (attempts_table(&attempts.items, now))
        details.panel open[!errors.is_empty()] {
            summary { "Edit" }
            (form_problems(errors, "The webhook was not saved."))
            form method="post" action=(action) {
                (csrf_field(csrf))
                (webhook_fields(typed, errors))
                p.toolbar { button type="submit" { "Save" } }
            }
        }
        section.danger-zone {
            h2 { "Danger zone" }
            div.action {
                p { "Rotate the signing secret. The current one keeps signing alongside the new one for " (SECRET_OVERLAP_HOURS) " hours." }
                a.button.danger-outline href={ (action) "/rotate-secret" } { "Rotate secret…" }
            }
            div.action {
                p { "Delete this webhook. Events not yet delivered to it are dropped." }
                a.button.danger-outline href={ (action) "/delete" } { "Delete…" }
            }
        }
    };
    let status = if errors.is_empty() { StatusCode::OK } else { errors.status() };
    Ok(page_with_status(status, "Webhook", Nav::Webhooks, user, body))
}

fn attempts_table(attempts: &[DeliveryAttempt], now: chrono::DateTime<chrono::Utc>) -> Markup {
    html! {
        @if attempts.is_empty() {
            p.muted { "Nothing was sent yet. Send a test event to try the receiver." }
        } @else {
            table.cards {
                thead { tr { th { "When" } th { "Event" } th { "Attempt" } th { "Result" } th { "Took" } th { "Next try" } } }
                tbody { @for attempt in attempts {
                    tr {
                        td data-label="When" { (relative_time(Some(attempt.at), now)) }
                        td data-label="Event" { code { (attempt.event_type) } }
                        td data-label="Attempt" { (attempt.attempt) }
                        td data-label="Result" { (result(attempt)) }
                        td data-label="Took" { (attempt.duration_ms) " ms" }
                        td data-label="Next try" {
                            @match attempt.next_retry_at {
                                Some(at) => time title=(exact_time(at)) { (super::views::relative_text(at, now)) },
                                None => span.muted { "—" },
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn result(attempt: &DeliveryAttempt) -> Markup {
    let delivered = attempt.error.is_none() && attempt.status_code.is_some_and(|code| (200..300).contains(&code));
    html! {
        @if delivered {
            span.status-active { "Delivered (" (attempt.status_code.unwrap_or_default()) ")" }
        } @else {
            span.status-blocked {
                @if let Some(code) = attempt.status_code { "HTTP " (code) } @else { "No answer" }
                @if let Some(error) = &attempt.error { ": " (error) }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct EditWebhookForm {
    pub csrf: Option<String>,
    #[serde(flatten)]
    fields: WebhookFields,
}

pub async fn update_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { user, form }: Submitted<EditWebhookForm>,
) -> PageResult {
    match state.service.webhooks().edit(&user.caller, &id, form.fields.edit()).await {
        Ok(endpoint) => done(&user, &format!("/webhooks/{}", endpoint.id), "Saved the webhook.".into()).await,
        Err(error) => {
            let errors = webhook_refusal(error)?;
            let endpoint = state.service.webhooks().get(&user.caller, &id).await?;
            render(&state, &user, &endpoint, &form.fields, &errors).await
        }
    }
}

pub async fn test_webhook(State(state): State<AppState>, Path(id): Path<String>, f: Submitted<CsrfForm>) -> PageResult {
    let event_id = state.service.webhooks().test(&f.user.caller, &id).await?;
    let message = format!("Queued the test event {event_id}; its delivery shows below within seconds.");
    done(&f.user, &format!("/webhooks/{id}"), message).await
}

pub async fn rotate_secret_page(State(state): State<AppState>, user: Dashboard, Path(id): Path<String>) -> PageResult {
    let endpoint = state.service.webhooks().get(&user.caller, &id).await?;
    let consequences = vec![
        html! { "A new secret is shown once, on the next page." },
        html! { "For " (SECRET_OVERLAP_HOURS) " hours each delivery is signed with both secrets, so the receiver can switch without missing one. Then only the new one signs." },
    ];
    let question = html! { "Rotate the signing secret of " code { (endpoint.url) } "?" };
    Ok(confirmation(&user, &endpoint, "rotate-secret", question, consequences, "Rotate secret"))
}

/// The page that asks before `action` (`rotate-secret`, `delete`) is done to the endpoint.
fn confirmation(
    user: &Dashboard,
    endpoint: &WebhookEndpoint,
    action: &str,
    question: Markup,
    consequences: Vec<Markup>,
    button: &str,
) -> axum::response::Response {
    let confirm = Confirmation {
        question,
        consequences,
        action: format!("/webhooks/{}/{action}", endpoint.id),
        hidden: Vec::new(),
        button: button.into(),
        cancel: format!("/webhooks/{}", endpoint.id),
        own_key: None,
        error: None,
    };
    page(button, Nav::Webhooks, user, confirm.render(&user.session.csrf_token))
}

pub async fn rotate_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: Submitted<CsrfForm>,
) -> PageResult {
    let (endpoint, secret) = state.service.webhooks().rotate_secret(&f.user.caller, &id).await?;
    let made = format!("Rotated the signing secret of {}.", endpoint.url);
    Ok(secret_shown_once(&f.user, &endpoint, &secret, made))
}

pub async fn delete_webhook_page(State(state): State<AppState>, user: Dashboard, Path(id): Path<String>) -> PageResult {
    let webhooks = state.service.webhooks();
    let endpoint = webhooks.get(&user.caller, &id).await?;
    let waiting = webhooks.waiting(&user.caller, &id).await?;
    let mut consequences = vec![html! { "Latchkey stops sending events to it at once." }];
    if waiting > 0 {
        consequences.push(
            html! { strong { (waiting) " undelivered event" @if waiting != 1 { "s" } } " waiting for it are dropped." },
        );
    }
    consequences.push(html! { "This cannot be undone." });
    let question = html! { "Delete the webhook " code { (endpoint.url) } "?" };
    Ok(confirmation(&user, &endpoint, "delete", question, consequences, "Delete webhook"))
}

pub async fn delete_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: Submitted<CsrfForm>,
) -> PageResult {
    let endpoint = state.service.webhooks().delete(&f.user.caller, &id).await?;
    done(&f.user, "/webhooks", format!("Deleted the webhook {}.", endpoint.url)).await
}
