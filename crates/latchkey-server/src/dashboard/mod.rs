//! The web dashboard: the seeds' API Keys page for people. Server-rendered HTML served by
//! the same binary. A person signs in with an Admin or Master key (checked by the
//! service's one verification entry, on sign-in and on every request), and every page
//! calls the same service operations as the JSON API, so policy, audit and instant
//! revocation are shared, not re-implemented.
//!
//! One module per job: `sessions` (server-side sessions), `signed_in` (sign-in, sign-out,
//! the signed-in user, CSRF), `forms` (form fields → the service's domain types, with
//! each problem next to its field), `listing` (pages of keys and the pager), `names`
//! (ids → names), then one module per page (`keys_list`, `new_key`, `key_page`,
//! `key_actions`, `webhooks_page`, `webhook_page`, `audit_page`, `sites_page`), and the views: `views` (layout, widgets),
//! `key_form`, `charts`, `style`.

mod audit_page;
mod charts;
mod forms;
mod key_actions;
mod key_form;
mod key_page;
mod keys_list;
mod listing;
mod names;
mod new_key;
pub mod sessions;
mod signed_in;
mod sites_page;
mod style;
mod views;
mod webhook_page;
mod webhooks_page;

use crate::error::ApiError;
use crate::state::AppState;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use latchkey_service::ServiceError;
use maud::{html, Markup};
use serde::Deserialize;
use signed_in::Dashboard;
use views::{layout, notice, Nav, SignedIn};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/keys") }))
        .route("/login", get(signed_in::login_page).post(signed_in::login))
        .route("/logout", post(signed_in::logout))
        .route("/keys", get(keys_list::keys_page))
        .route("/keys/new", get(new_key::new_key_page).post(new_key::create_key))
        .route("/keys/{id}", get(key_page::key_page).post(key_page::update_key))
        .route("/keys/{id}/rotate", get(key_actions::rotate_page).post(key_actions::rotate_key))
        .route("/keys/{id}/unblock", post(key_actions::unblock_key))
        .route("/keys/{id}/block", get(key_actions::block_page).post(key_actions::block_key))
        .route("/keys/{id}/delete", get(key_actions::delete_page).post(key_actions::delete_key))
        .route("/webhooks", get(webhooks_page::webhooks_page).post(webhooks_page::register_webhook))
        .route("/webhooks/{id}", get(webhook_page::webhook_page).post(webhook_page::update_webhook))
        .route("/webhooks/{id}/test", post(webhook_page::test_webhook))
        .route("/webhooks/{id}/rotate-secret", get(webhook_page::rotate_secret_page).post(webhook_page::rotate_secret))
        .route("/webhooks/{id}/delete", get(webhook_page::delete_webhook_page).post(webhook_page::delete_webhook))
        .route("/audit", get(audit_page::audit_page))
        .route("/sites", get(sites_page::sites_page).post(sites_page::create_site))
        .route("/sites/{id}/rename", post(sites_page::rename_site))
        .route("/sites/{id}/delete", get(sites_page::delete_site_page).post(sites_page::delete_site))
}

/// An error shown as a readable page, never as raw JSON. Built from the same `ApiError`
/// as the JSON API, so both front-ends give the same status for the same failure.
pub struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl From<ServiceError> for PageError {
    fn from(error: ServiceError) -> Self {
        Self(error.into())
    }
}

impl From<latchkey_core::InvalidValue> for PageError {
    fn from(invalid: latchkey_core::InvalidValue) -> Self {
        Self(invalid.into())
    }
}

impl From<latchkey_core::Denied> for PageError {
    fn from(denied: latchkey_core::Denied) -> Self {
        Self(ServiceError::from(denied).into())
    }
}

/// An error as a dashboard page.
pub fn error_page(error: ApiError) -> Response {
    PageError(error).into_response()
}

/// A heading people understand for each kind of failure.
fn error_title(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::CONFLICT => "That cannot be done now",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests",
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => "That did not work",
        _ => "Something went wrong",
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (code, status) = self.0.code.describe();
        let message = capitalized(&self.0.message);
        let body = layout(
            views::Page { title: error_title(status), signed_in: None },
            html! {
                // The machine name too, for scripts and support requests.
                div data-error-code=(code) { (notice(&message, true)) }
                p { a href="javascript:history.back()" { "Go back" } " · " a href="/keys" { "API Keys" } }
            },
        );
        (status, Html(body.into_string())).into_response()
    }
}

type PageResult = Result<Response, PageError>;

/// A signed-in page, with the message the last action left (shown once).
fn page(title: &str, nav: Nav, user: &Dashboard, body: Markup) -> Response {
    page_with_status(StatusCode::OK, title, nav, user, body)
}

/// A signed-in page answering `status` (a refused form comes back as 422, with the form).
fn page_with_status(status: StatusCode, title: &str, nav: Nav, user: &Dashboard, body: Markup) -> Response {
    let level = capitalized(user.caller.permission.as_str());
    let signed_in = SignedIn {
        key_name: &user.key_name,
        level: &level,
        csrf: &user.session.csrf_token,
        is_master: user.caller.is_master(),
        current: nav,
        flash: user.session.take_flash(),
    };
    let html = layout(views::Page { title, signed_in: Some(signed_in) }, body).into_string();
    let mut response = (status, Html(html)).into_response();
    // Pages may show a fresh key or key metadata: never keep them in a cache.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Goes to `to`, where `message` says what was done.
async fn done(user: &Dashboard, to: &str, message: String) -> Result<Response, PageError> {
    user.session.set_flash(message).await?;
    Ok(Redirect::to(to).into_response())
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// A query string from pairs, encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs.iter().filter(|(_, value)| !value.is_empty()) {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

impl signed_in::CarriesCsrf for forms::RotateForm {
    fn csrf(&self) -> Option<&str> {
        self.confirm.csrf.as_deref()
    }
}

/// A form whose only field is the CSRF token (unblock, sign out).
#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

/// Each form names its CSRF field once, here.
macro_rules! carries_csrf {
    ($($form:ty),*) => {
        $(impl signed_in::CarriesCsrf for $form {
            fn csrf(&self) -> Option<&str> {
                self.csrf.as_deref()
            }
        })*
    };
}

carries_csrf!(
    CsrfForm,
    forms::KeyForm,
    forms::EditForm,
    forms::ConfirmForm,
    sites_page::SiteForm,
    webhooks_page::RegisterForm,
    webhook_page::EditWebhookForm
);
