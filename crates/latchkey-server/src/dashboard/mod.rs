//! The web dashboard: the seeds' API Keys page for people. Server-rendered HTML served by
//! the same binary; it signs in with an Admin or Master key and then performs every
//! change through the same `management` operations as the API, so policy, audit and
//! instant revocation are shared, not re-implemented.

pub mod sessions;
mod views;

use crate::error::ApiError;
use crate::extract::{client_ip, Authenticated};
use crate::management::NewKey;
use crate::routes::keys::KeyView;
use crate::state::AppState;
use crate::verification::{KeyLookup, RefusalReason};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, NaiveDateTime, Utc};
use latchkey_core::key_format::DISPLAY_PREFIX_CHARS;
use latchkey_core::{
    Actor, AuditAction, Caller, Description, KeyName, KeyRecord, ParsedKey, Permission, Scopes, SiteId, SiteName,
    Status,
};
use latchkey_store::{AuditFilter, KeyFilter, Page};
use maud::{html, Markup};
use serde::Deserialize;
use sessions::Session;
use std::sync::Arc;
use views::{csrf_field, layout, notice, relative_time, SignedIn};

const SESSION_COOKIE: &str = "latchkey_session";
const PAGE_SIZE: u32 = 25;
/// The Forja seed: "if a key has not been used in a long time, consider revoking it".
const STALE_AFTER_DAYS: i64 = 90;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/keys") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/keys", get(keys_page))
        .route("/keys/new", get(new_key_page).post(create_key))
        .route("/keys/{id}", get(key_page).post(update_key))
        .route("/keys/{id}/block", post(block_key))
        .route("/keys/{id}/unblock", post(unblock_key))
        .route("/keys/{id}/rotate", post(rotate_key))
        .route("/keys/{id}/delete", get(delete_key_page).post(delete_key))
        .route("/audit", get(audit_page))
        .route("/sites", get(sites_page).post(create_site))
        .route("/sites/{id}/rename", post(rename_site))
        .route("/sites/{id}/delete", get(delete_site_page).post(delete_site))
}

/// An error shown as a readable page, never as raw JSON.
pub struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl From<latchkey_store::StoreError> for PageError {
    fn from(error: latchkey_store::StoreError) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let body = layout(
            views::Page { title: "Something went wrong", signed_in: None },
            html! {
                (notice(&self.0.message, true))
                p { a href="javascript:history.back()" { "Go back" } " · " a href="/keys" { "API Keys" } }
            },
        );
        (status, Html(body.into_string())).into_response()
    }
}

type PageResult = Result<Response, PageError>;

fn page(title: &str, user: &Dashboard, body: Markup) -> Response {
    let signed_in = SignedIn {
        prefix: &user.session.key_prefix,
        csrf: &user.session.csrf_token,
        is_master: user.auth.caller.is_master(),
    };
    let mut response =
        Html(layout(views::Page { title, signed_in: Some(signed_in) }, body).into_string()).into_response();
    // Pages may show a fresh key or key metadata: never keep them in a cache.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The signed-in user of a dashboard request. Re-checks the session's key on every
/// request, so a blocked, expired or deleted key is signed out at once.
pub struct Dashboard {
    session: Arc<Session>,
    session_id: String,
    auth: Authenticated,
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

impl FromRequestParts<AppState> for Dashboard {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_login = |reason: &str| Redirect::to(&format!("/login?reason={reason}")).into_response();
        let session_id = cookie_value(&parts.headers, SESSION_COOKIE).ok_or_else(|| to_login("signed_out"))?;
        let session = state.sessions.find(&session_id).ok_or_else(|| to_login("expired_session"))?;
        let lookup = state
            .verifier
            .check_hash(session.key_hash, state.clock.now())
            .await
            .map_err(|e| PageError(e.into()).into_response())?;
        let key = match lookup {
            KeyLookup::Usable(key) if key.permission >= Permission::Admin => key,
            _ => {
                state.sessions.end(&session_id);
                return Err(to_login("key_revoked"));
            }
        };
        let caller = Caller { permission: key.permission, site_id: key.site_id() };
        let actor = Actor {
            key_id: Some(key.id()),
            key_prefix: Some(session.key_prefix.clone()),
            source_ip: client_ip(parts, state).map(|ip| ip.to_string()),
        };
        Ok(Dashboard { session, session_id, auth: Authenticated { key, caller, actor } })
    }
}

impl Dashboard {
    /// Forms that show a new key are single-use, so a reload cannot make a second key.
    fn check_single_use(&self, form_id: Option<&str>) -> Result<(), PageError> {
        if self.session.first_use_of_form(form_id.unwrap_or_default()) {
            Ok(())
        } else {
            Err(PageError(ApiError::new(
                crate::error::ErrorCode::Conflict,
                "This form was already submitted, so nothing was done twice. The key shown then cannot be shown again.",
            )))
        }
    }

    /// Every state-changing form carries the session's CSRF token.
    fn check_csrf(&self, token: Option<&str>) -> Result<(), PageError> {
        match token {
            Some(token) if token == self.session.csrf_token => Ok(()),
            _ => Err(PageError(ApiError::new(
                crate::error::ErrorCode::InsufficientPermission,
                "This form is missing its security token or is out of date. Reload the page and try again.",
            ))),
        }
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    reason: Option<String>,
}

async fn login_page(Query(query): Query<LoginQuery>) -> Response {
    let message = match query.reason.as_deref() {
        Some("key_revoked") => Some("Your key was blocked, deleted or has expired; you have been signed out."),
        Some("expired_session") => Some("Your session has ended. Sign in again."),
        Some("signed_out") => None,
        _ => None,
    };
    login_form(message, StatusCode::OK)
}

fn login_form(message: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        @if let Some(message) = message { (notice(message, status != StatusCode::OK)) }
        p { "Paste an Admin or Master API key. It is checked by the server and never stored in your browser." }
        form method="post" action="/login" {
            label for="key" { "API key" }
            input #key type="password" name="key" autocomplete="off" required;
            p { button type="submit" { "Sign in" } }
        }
    };
    (status, Html(layout(views::Page { title: "Sign in", signed_in: None }, body).into_string())).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    key: String,
}

fn is_https(parts_headers: &HeaderMap, state: &AppState, peer_trusted: bool) -> bool {
    peer_trusted
        && !state.config.trusted_proxies.is_empty()
        && parts_headers.get("x-forwarded-proto").is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"https"))
}

async fn login(
    State(state): State<AppState>,
    crate::routes::verify::ClientIp(ip): crate::routes::verify::ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let presented = form.key.trim();
    let refused = |message: &str| login_form(Some(message), StatusCode::UNAUTHORIZED);
    let Ok(parsed) = ParsedKey::parse(presented) else {
        return refused("That is not a valid API key.");
    };
    let lookup = match state.verifier.check(presented, state.clock.now()).await {
        Ok(lookup) => lookup,
        Err(error) => return PageError(error.into()).into_response(),
    };
    let key = match lookup {
        KeyLookup::Usable(key) => key,
        KeyLookup::Refused(RefusalReason::Blocked, _) => return refused("This key is blocked."),
        KeyLookup::Refused(RefusalReason::Expired, _) => return refused("This key has expired."),
        KeyLookup::Refused(RefusalReason::NotFound, _) => {
            let _ = crate::extract::throttled(&state, ip, state.clock.now());
            return refused("That is not a valid API key.");
        }
    };
    if key.permission < Permission::Admin {
        return (
            StatusCode::FORBIDDEN,
            login_form(
                Some("Read and Write keys cannot sign in: only Admin and Master keys may view and manage API keys."),
                StatusCode::FORBIDDEN,
            ),
        )
            .into_response();
    }
    let session_id = state.sessions.start(parsed.hash(), presented[..DISPLAY_PREFIX_CHARS].to_owned());
    let secure = if is_https(&headers, &state, ip.is_some_and(|ip| state.config.trusted_proxies.trusts(ip))) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{SESSION_COOKIE}={session_id}; HttpOnly; SameSite=Strict; Path=/{secure}");
    let mut response = Redirect::to("/keys").into_response();
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a valid cookie"));
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(State(state): State<AppState>, user: Dashboard, Form(form): Form<CsrfForm>) -> PageResult {
    user.check_csrf(form.csrf.as_deref())?;
    state.sessions.end(&user.session_id);
    let mut response = Redirect::to("/login?reason=signed_out").into_response();
    let expired = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&expired).expect("a valid cookie"));
    Ok(response)
}

/// The sites this user can pick: all for Master, its own for Admin.
async fn visible_sites(state: &AppState, user: &Dashboard) -> Result<Vec<latchkey_core::Site>, PageError> {
    if user.auth.caller.is_master() {
        Ok(state.store.list_sites(&Page { after: None, limit: 500 }).await?)
    } else {
        let own = match &user.auth.caller.site_id {
            Some(id) => state.store.get_site(id).await?,
            None => None,
        };
        Ok(own.into_iter().collect())
    }
}

fn parse_site(raw: Option<&str>) -> Option<SiteId> {
    raw.filter(|s| !s.is_empty()).and_then(SiteId::parse)
}

#[derive(Deserialize)]
struct KeysQuery {
    site: Option<String>,
    cursor: Option<String>,
}

async fn keys_page(State(state): State<AppState>, user: Dashboard, Query(query): Query<KeysQuery>) -> PageResult {
    let sites = visible_sites(&state, &user).await?;
    let requested = parse_site(query.site.as_deref()).or_else(|| sites.first().map(|s| s.id.clone()));
    let site = user.auth.caller.listing_scope(requested.as_ref()).map_err(ApiError::from)?;
    let mut keys = state
        .store
        .list_keys(
            &KeyFilter { site: site.clone(), ..Default::default() },
            &Page { after: query.cursor.clone(), limit: PAGE_SIZE + 1 },
        )
        .await?;
    let next = crate::routes::next_cursor(&mut keys, PAGE_SIZE as usize, |k| k.id.to_string());
    let now = state.clock.now();
    let ids: Vec<latchkey_core::KeyId> = keys.iter().map(|k| k.id.clone()).collect();
    let usage = crate::routes::keys::usage_series(&state, &ids, 30).await?;
    let site_param = site.as_ref().map(|s| s.to_string()).unwrap_or_default();
    let body = html! {
        form.toolbar method="get" action="/keys" {
            div {
                label for="site" { "Site" }
                select #site name="site" {
                    @for s in &sites {
                        option value=(s.id) selected[Some(&s.id) == site.as_ref()] { (s.name.as_str()) }
                    }
                }
            }
            button.secondary type="submit" { "Show" }
            a.button href={ "/keys/new?site=" (site_param) } { "New API Key" }
        }
        @if keys.is_empty() {
            div.notice { "This site has no API keys yet. Create one with " strong { "New API Key" } "." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th { "Name" } th { "Key prefix" } th { "Permission" } th { "Status" } th.hide-narrow { "Created" } th { "Last used" } th.hide-narrow { "30 days" } } }
                    tbody {
                        @for key in &keys {
                            @let view = KeyView::of(key, now);
                            tr {
                                td { a href={ "/keys/" (key.id) } { (key.name.as_str()) } }
                                td { code { (key.prefix.as_str()) } }
                                td { (capitalized(&view.permission)) }
                                td class={ "status-" (view.status) } { (capitalized(&view.status)) }
                                td.hide-narrow { (relative_time(Some(key.created_at), now)) }
                                td {
                                    (relative_time(key.last_used_at, now))
                                    @if key.last_used_at.unwrap_or(key.created_at) < now - chrono::Duration::days(STALE_AFTER_DAYS) {
                                        " " span.stale title={ "Not used for more than " (STALE_AFTER_DAYS) " days; consider revoking it" } { "Stale" }
                                    }
                                }
                                td.hide-narrow { @if let Some(days) = usage.get(&key.id) { (views::sparkline(days)) } }
                            }
                        }
                    }
                }
            }
            @if let Some(cursor) = next {
                p { a href={ "/keys?site=" (site_param) "&cursor=" (cursor) } { "Older keys →" } }
            }
        }
    };
    Ok(page("API Keys", &user, body))
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[derive(Deserialize)]
struct NewKeyQuery {
    site: Option<String>,
}

async fn new_key_page(State(state): State<AppState>, user: Dashboard, Query(query): Query<NewKeyQuery>) -> PageResult {
    let sites = visible_sites(&state, &user).await?;
    let selected = parse_site(query.site.as_deref());
    let levels: Vec<Permission> = Permission::ALL.into_iter().filter(|p| *p <= user.auth.caller.permission).collect();
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
            @if user.auth.caller.is_master() { p.muted { "A Master key belongs to no site: the site is ignored for Master." } }
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

#[derive(Deserialize)]
struct KeyForm {
    csrf: Option<String>,
    form_id: Option<String>,
    name: String,
    permission: String,
    site_id: Option<String>,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    expires_at: String,
    #[serde(flatten)]
    options: OptionsForm,
}

/// The optional settings as form fields; empty means "none".
#[derive(Deserialize, Default)]
struct OptionsForm {
    #[serde(default)]
    owner_id: String,
    #[serde(default)]
    ip_allowlist: String,
    #[serde(default)]
    ratelimit_limit: String,
    #[serde(default)]
    ratelimit_window: String,
    #[serde(default)]
    credits_remaining: String,
}

fn number<T: std::str::FromStr>(field: &str, raw: &str) -> Result<Option<T>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| ApiError::validation(format!("{field} must be a whole number")))
}

impl OptionsForm {
    /// Applies the form to `options`, keeping what the form does not show (metadata,
    /// rotation links, refill).
    fn apply(&self, options: &mut latchkey_core::KeyOptions, now: DateTime<Utc>) -> Result<(), ApiError> {
        let owner = self.owner_id.trim();
        options.owner_id = if owner.is_empty() { None } else { Some(latchkey_core::OwnerId::parse(owner)?) };
        let networks: Vec<&str> = self.ip_allowlist.split([' ', ',', '\n']).filter(|s| !s.trim().is_empty()).collect();
        options.ip_allowlist = latchkey_core::options::parse_allowlist(&networks)?;
        options.ratelimit =
            match (number::<u32>("rate limit", &self.ratelimit_limit)?, number("window", &self.ratelimit_window)?) {
                (Some(limit), window) => Some(latchkey_core::RateLimit::new(limit, window.unwrap_or(60))?),
                (None, _) => None,
            };
        let remaining = number::<u64>("credits", &self.credits_remaining)?;
        options.credits = match (remaining, options.credits) {
            (None, _) => None,
            (Some(remaining), Some(existing)) if existing.remaining == remaining => Some(existing),
            (Some(remaining), existing) => {
                let refill = existing.and_then(|c| c.refill);
                Some(latchkey_core::Credits {
                    remaining,
                    refill,
                    refilled_at: refill.map(|r| r.interval.period_start(now)),
                })
            }
        };
        Ok(())
    }
}

fn options_fields(options: &latchkey_core::KeyOptions) -> Markup {
    let allowlist: Vec<String> = options.ip_allowlist.iter().map(ToString::to_string).collect();
    html! {
        fieldset {
            legend { "Limits and ownership (optional)" }
            label for="owner_id" { "Owner id (your user or customer id)" }
            input #owner_id type="text" name="owner_id" maxlength="255" value=(options.owner_id.as_ref().map(|o| o.as_str()).unwrap_or(""));
            label for="ip_allowlist" { "IP allowlist (CIDRs, space-separated; empty: anywhere)" }
            input #ip_allowlist type="text" name="ip_allowlist" placeholder="10.0.0.0/8 ::1/128" value=(allowlist.join(" "));
            label for="ratelimit_limit" { "Rate limit: verifications per window (empty: none)" }
            input #ratelimit_limit type="number" min="1" name="ratelimit_limit" value=(options.ratelimit.map(|r| r.limit.to_string()).unwrap_or_default());
            label for="ratelimit_window" { "Window, seconds" }
            input #ratelimit_window type="number" min="1" max="86400" name="ratelimit_window" value=(options.ratelimit.map(|r| r.window_seconds.to_string()).unwrap_or_else(|| "60".into()));
            label for="credits_remaining" { "Usage credits left (empty: unlimited)" }
            input #credits_remaining type="number" min="0" name="credits_remaining" value=(options.credits.map(|c| c.remaining.to_string()).unwrap_or_default());
        }
    }
}

fn form_scopes(raw: &str) -> Result<Scopes, ApiError> {
    let parts: Vec<&str> = raw.split(|c: char| c.is_whitespace() || c == ',').filter(|s| !s.is_empty()).collect();
    Ok(Scopes::parse(&parts)?)
}

fn form_description(raw: &str) -> Result<Option<Description>, ApiError> {
    let trimmed = raw.trim();
    Ok(if trimmed.is_empty() { None } else { Some(Description::parse(trimmed)?) })
}

/// `datetime-local` values carry no zone; the form says they are UTC.
fn form_expiry(raw: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ApiError> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let parsed = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| ApiError::validation("the expiry is not a date and time"))?
        .and_utc();
    if parsed <= now {
        return Err(ApiError::validation("the expiry must be in the future"));
    }
    Ok(Some(parsed))
}

async fn create_key(State(state): State<AppState>, user: Dashboard, Form(form): Form<KeyForm>) -> PageResult {
    user.check_csrf(form.csrf.as_deref())?;
    let permission: Permission = form.permission.parse().map_err(ApiError::from)?;
    let site_id = if permission == Permission::Master { None } else { parse_site(form.site_id.as_deref()) };
    user.auth.caller.may_grant(permission, site_id.as_ref()).map_err(ApiError::from)?;
    user.check_single_use(form.form_id.as_deref())?;
    let now = state.clock.now();
    let spec = NewKey {
        name: KeyName::parse(&form.name).map_err(ApiError::from)?,
        description: form_description(&form.description)?,
        permission,
        scopes: form_scopes(&form.scopes)?,
        site_id: site_id.clone(),
        expires_at: form_expiry(&form.expires_at, now)?,
        options: {
            let mut options = latchkey_core::KeyOptions::default();
            form.options.apply(&mut options, now)?;
            options
        },
    };
    let (record, secret) = state.issue_key(&user.auth.actor, spec).await?;
    Ok(new_key_shown_once(&user, &record, &secret))
}

/// The only page that ever shows a full key. Not cached; a reload cannot show it again.
fn new_key_shown_once(user: &Dashboard, record: &KeyRecord, secret: &latchkey_core::SecretKey) -> Response {
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

#[derive(Deserialize)]
struct RotateForm {
    csrf: Option<String>,
    form_id: Option<String>,
    #[serde(default)]
    grace_seconds: String,
}

async fn rotate_key(
    State(state): State<AppState>,
    user: Dashboard,
    Path(id): Path<String>,
    Form(form): Form<RotateForm>,
) -> PageResult {
    user.check_csrf(form.csrf.as_deref())?;
    user.check_single_use(form.form_id.as_deref())?;
    let grace = number::<i64>("grace period", &form.grace_seconds)?.unwrap_or(0);
    if !(0..=30 * 86_400).contains(&grace) {
        return Err(PageError(ApiError::validation("the grace period must be between 0 and 2592000 seconds")));
    }
    let (record, secret) = state.rotate_key(&user.auth, &id, chrono::Duration::seconds(grace)).await?;
    Ok(new_key_shown_once(&user, &record, &secret))
}

async fn managed(state: &AppState, user: &Dashboard, id: &str) -> Result<KeyRecord, PageError> {
    Ok(state.managed_key(&user.auth, id).await?)
}

async fn key_page(State(state): State<AppState>, user: Dashboard, Path(id): Path<String>) -> PageResult {
    let key = managed(&state, &user, &id).await?;
    let now = state.clock.now();
    let view = KeyView::of(&key, now);
    let levels: Vec<Permission> = Permission::ALL
        .into_iter()
        .filter(|p| *p <= user.auth.caller.permission && (*p == Permission::Master) == key.site_id.is_none())
        .collect();
    let expiry_value = key.expires_at.map(|t| t.format("%Y-%m-%dT%H:%M").to_string()).unwrap_or_default();
    let csrf = &user.session.csrf_token;
    let usage = crate::routes::keys::usage_series(&state, std::slice::from_ref(&key.id), 30).await?;
    let body = html! {
        h2 { "Usage" }
        @if let Some(days) = usage.get(&key.id) { (views::usage_chart(days)) }
        h2 { "Details" }
        table {
            tbody {
                tr { th { "Key prefix" } td { code { (key.prefix.as_str()) } } }
                tr { th { "Status" } td class={ "status-" (view.status) } { (capitalized(&view.status)) } }
                tr { th { "Permission" } td { (capitalized(&view.permission)) } }
                tr { th { "Created" } td { (relative_time(Some(key.created_at), now)) " by " code { (view.created_by.as_deref().unwrap_or("the server")) } } }
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

#[derive(Deserialize)]
struct EditForm {
    csrf: Option<String>,
    name: String,
    permission: String,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    expires_at: String,
    #[serde(flatten)]
    options: OptionsForm,
}

async fn update_key(
    State(state): State<AppState>,
    user: Dashboard,
    Path(id): Path<String>,
    Form(form): Form<EditForm>,
) -> PageResult {
    user.check_csrf(form.csrf.as_deref())?;
    let now = state.clock.now();
    let caller = user.auth.caller.clone();
    let updated = state
        .change_key(&user.auth, &id, AuditAction::KeyUpdated, |before| {
            let mut after = before.clone();
            after.name = KeyName::parse(&form.name)?;
            after.permission = form.permission.parse()?;
            if after.permission != before.permission {
                caller.may_grant(after.permission, after.site_id.as_ref())?;
            }
            after.scopes = form_scopes(&form.scopes)?;
            after.description = form_description(&form.description)?;
            let unchanged_expiry =
                before.expires_at.map(|t| t.format("%Y-%m-%dT%H:%M").to_string()).unwrap_or_default();
            if form.expires_at != unchanged_expiry {
                after.expires_at = form_expiry(&form.expires_at, now)?;
            }
            form.options.apply(&mut after.options, now)?;
            Ok(after)
        })
        .await?;
    Ok(Redirect::to(&format!("/keys/{}", updated.id)).into_response())
}

async fn set_status(state: &AppState, user: &Dashboard, id: &str, csrf: Option<&str>, status: Status) -> PageResult {
    user.check_csrf(csrf)?;
    let action = if status == Status::Blocked { AuditAction::KeyBlocked } else { AuditAction::KeyUnblocked };
    state.change_key(&user.auth, id, action, |before| Ok(KeyRecord { status, ..before.clone() })).await?;
    Ok(Redirect::to(&format!("/keys/{id}")).into_response())
}

async fn block_key(
    State(state): State<AppState>,
    user: Dashboard,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    set_status(&state, &user, &id, form.csrf.as_deref(), Status::Blocked).await
}

async fn unblock_key(
    State(state): State<AppState>,
    user: Dashboard,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    set_status(&state, &user, &id, form.csrf.as_deref(), Status::Active).await
}

async fn delete_key_page(State(state): State<AppState>, user: Dashboard, Path(id): Path<String>) -> PageResult {
    let key = managed(&state, &user, &id).await?;
    let body = html! {
        p { "Delete the key " strong { (key.name.as_str()) } " (" code { (key.prefix.as_str()) } ")? Anything using it stops working immediately. This cannot be undone." }
        form method="post" action={ "/keys/" (key.id) "/delete" } {
            (csrf_field(&user.session.csrf_token))
            button.danger type="submit" { "Delete " (key.name.as_str()) }
            " "
            a href={ "/keys/" (key.id) } { "Cancel" }
        }
    };
    Ok(page("Delete API key", &user, body))
}

async fn delete_key(
    State(state): State<AppState>,
    user: Dashboard,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    user.check_csrf(form.csrf.as_deref())?;
    let key = managed(&state, &user, &id).await?;
    state.delete_key(&user.auth, &id).await?;
    let site = key.site_id.map(|s| s.to_string()).unwrap_or_default();
    Ok(Redirect::to(&format!("/keys?site={site}")).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    key: Option<String>,
    action: Option<String>,
    site: Option<String>,
}

async fn audit_page(State(state): State<AppState>, user: Dashboard, Query(query): Query<AuditQuery>) -> PageResult {
    let site = user.auth.caller.listing_scope(parse_site(query.site.as_deref()).as_ref()).map_err(ApiError::from)?;
    let filter = AuditFilter {
        site,
        key: query.key.as_deref().filter(|k| !k.is_empty()).and_then(latchkey_core::KeyId::parse),
        action: query.action.as_deref().filter(|a| !a.is_empty()).and_then(|a| a.parse().ok()),
    };
    let events = state.store.list_audit(&filter, &Page { after: None, limit: 100 }).await?;
    let now = state.clock.now();
    let body = html! {
        form.toolbar method="get" action="/audit" {
            div { label for="key" { "Key id" } input #key type="text" name="key" value=(query.key.clone().unwrap_or_default()); }
            div {
                label for="action" { "Action" }
                select #action name="action" {
                    option value="" { "Any" }
                    @for action in AuditAction::ALL {
                        option value=(action.as_str()) selected[query.action.as_deref() == Some(action.as_str())] { (action.as_str()) }
                    }
                }
            }
            button.secondary type="submit" { "Filter" }
        }
        @if events.is_empty() { div.notice { "No events match." } } @else {
            div.table-wrap { table {
                thead { tr { th { "When" } th { "Action" } th { "By" } th { "Key" } th.hide-narrow { "Changes" } th.hide-narrow { "From" } } }
                tbody { @for event in &events { tr {
                    td { (relative_time(Some(event.at), now)) }
                    td { (event.action.as_str()) }
                    td { code { (event.actor_prefix.as_deref().unwrap_or("server")) } }
                    td { @if let Some(key) = &event.target_key_id { a href={ "/keys/" (key) } { (key) } } }
                    td.hide-narrow { @for change in &event.changes {
                        div { (change.field) ": " (change.before.as_deref().unwrap_or("—")) " → " (change.after.as_deref().unwrap_or("—")) }
                    } }
                    td.hide-narrow { (event.source_ip.as_deref().unwrap_or("")) }
                } } }
            } }
        }
    };
    Ok(page("Audit", &user, body))
}

async fn sites_page(State(state): State<AppState>, user: Dashboard) -> PageResult {
    user.auth.caller.may_manage_sites().map_err(ApiError::from)?;
    let sites = visible_sites(&state, &user).await?;
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
struct SiteForm {
    csrf: Option<String>,
    name: String,
}

async fn create_site(State(state): State<AppState>, user: Dashboard, Form(form): Form<SiteForm>) -> PageResult {
    user.check_csrf(form.csrf.as_deref())?;
    user.auth.caller.may_manage_sites().map_err(ApiError::from)?;
    state.create_site(&user.auth.actor, SiteName::parse(&form.name).map_err(ApiError::from)?).await?;
    Ok(Redirect::to("/sites").into_response())
}

fn site_id(raw: &str) -> Result<SiteId, PageError> {
    SiteId::parse(raw).ok_or_else(|| PageError(ApiError::not_found("site")))
}

async fn rename_site(
    State(state): State<AppState>,
    user: Dashboard,
    Path(id): Path<String>,
    Form(form): Form<SiteForm>,
) -> PageResult {
    user.check_csrf(form.csrf.as_deref())?;
    user.auth.caller.may_manage_sites().map_err(ApiError::from)?;
    state.rename_site(&user.auth.actor, &site_id(&id)?, SiteName::parse(&form.name).map_err(ApiError::from)?).await?;
    Ok(Redirect::to("/sites").into_response())
}

async fn delete_site_page(State(state): State<AppState>, user: Dashboard, Path(id): Path<String>) -> PageResult {
    user.auth.caller.may_manage_sites().map_err(ApiError::from)?;
    let site = state.store.get_site(&site_id(&id)?).await?.ok_or_else(|| PageError(ApiError::not_found("site")))?;
    let body = html! {
        p { "Delete the site " strong { (site.name.as_str()) } " and all its API keys? Every one of them stops working immediately." }
        form method="post" action={ "/sites/" (site.id) "/delete" } {
            (csrf_field(&user.session.csrf_token))
            button.danger type="submit" { "Delete " (site.name.as_str()) }
            " " a href="/sites" { "Cancel" }
        }
    };
    Ok(page("Delete site", &user, body))
}

async fn delete_site(
    State(state): State<AppState>,
    user: Dashboard,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    user.check_csrf(form.csrf.as_deref())?;
    user.auth.caller.may_manage_sites().map_err(ApiError::from)?;
    state.delete_site(&user.auth.actor, &site_id(&id)?).await?;
    Ok(Redirect::to("/sites").into_response())
}
