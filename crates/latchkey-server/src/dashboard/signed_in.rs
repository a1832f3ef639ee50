//! Signing in and out, and the signed-in user of every other page. The key pasted at
//! sign-in, and the session's key on every later request, go through the service's one
//! verification entry with the dashboard's requirement (Admin or Master) and the client's
//! address, so blocking, deleting, expiring or allowlisting a key holds here as on the API.

use super::sessions::{FormClaim, FormUse, Session};
use super::views::{self, layout, notice};
use super::{sessions, CsrfForm, PageError, PageResult};
use crate::error::{ApiError, ErrorCode};
use crate::extract::{client_ip, ClientIp, PeerAddr};
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use latchkey_core::{Actor, Caller, KeyRecord, Refusal, Requirement};
use latchkey_service::{Check, Presented, Verdict};
use maud::html;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

const SESSION_COOKIE: &str = "latchkey_session";
/// Login CSRF: the sign-in form carries a token that must match this cookie, so another
/// site cannot sign a browser in with the attacker's key (and watch what it does).
const LOGIN_COOKIE: &str = "latchkey_login";

/// The signed-in user of a dashboard request. The session's key is re-checked on every
/// request, so a blocked, expired or deleted key is signed out at once.
pub struct Dashboard {
    pub session: Arc<Session>,
    session_id: String,
    pub caller: Caller,
    /// The signed-in key's name, as the header shows it ("Signed in as CI deploy").
    pub key_name: String,
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
        let session_id =
            cookie_value(&parts.headers, SESSION_COOKIE).ok_or_else(|| Redirect::to("/login").into_response())?;
        // A page (GET) takes the message the last action left; a form post leaves it.
        let takes_flash = parts.method == axum::http::Method::GET;
        let session = match state.sessions.find(&session_id, takes_flash).await {
            Ok(Some(session)) => Arc::new(session),
            Ok(None) => return Err(to_login("expired_session")),
            Err(error) => return Err(PageError::from(error).into_response()),
        };
        let ip = client_ip(parts, state);
        let check = Check::any_valid_key(ip).requiring(Requirement::dashboard());
        let verdict = state
            .service
            .verify(Presented::Hash(&session.key_hash), &check)
            .await
            .map_err(|error| PageError::from(error).into_response())?;
        let key = match verdict {
            Verdict::Allowed { key, .. } => key,
            // Over a limit for now: refuse this page, keep the session.
            Verdict::Refused {
                refusal: refusal @ (Refusal::RateLimited { .. } | Refusal::Throttled { .. }), ..
            } => return Err(PageError(refusal.into()).into_response()),
            Verdict::Refused { refusal, .. } => {
                state.sessions.end(&session_id).await.map_err(|error| PageError::from(error).into_response())?;
                let reason = if refusal == Refusal::IpNotAllowed { "ip_not_allowed" } else { "key_revoked" };
                return Err(to_login(reason));
            }
        };
        let actor = Actor {
            key_id: Some(key.id()),
            key_prefix: Some(session.key_prefix.clone()),
            source_ip: ip.map(|ip| ip.to_string()),
        };
        Ok(Dashboard { caller: key.caller(actor), key_name: key.name().to_owned(), session, session_id })
    }
}

/// A state-changing form, posted by a signed-in user with the session's CSRF token: the
/// one way a dashboard handler receives a form, so none can forget the token check.
pub struct Submitted<T> {
    pub user: Dashboard,
    pub form: T,
}

/// A form that carries the CSRF token in its `csrf` field.
pub trait CarriesCsrf {
    fn csrf(&self) -> Option<&str>;
}

impl<T: DeserializeOwned + CarriesCsrf + Send> FromRequest<AppState> for Submitted<T> {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let user = Dashboard::from_request_parts(&mut parts, state).await?;
        let request = axum::extract::Request::from_parts(parts, body);
        let Form(form) = Form::<T>::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        user.check_csrf(form.csrf()).map_err(IntoResponse::into_response)?;
        Ok(Self { user, form })
    }
}

impl Dashboard {
    /// Forms that show a new key are single-use, so a reload cannot make a second key.
    pub async fn claim_form(&self, form_id: Option<&str>) -> Result<Result<FormClaim<'_>, FormUse>, PageError> {
        Ok(self.session.claim_form(form_id.unwrap_or_default()).await?)
    }

    /// Whether `key` is the one this user signed in with.
    pub fn owns(&self, key: &KeyRecord) -> bool {
        self.caller.actor.key_id.as_ref() == Some(&key.id)
    }

    /// Every state-changing form carries the session's CSRF token.
    fn check_csrf(&self, token: Option<&str>) -> Result<(), PageError> {
        match token {
            Some(token) if token == self.session.csrf_token => Ok(()),
            _ => Err(PageError(ApiError::new(
                ErrorCode::CsrfFailed,
                "This form is missing its security token or is out of date. Reload the page and try again.",
            ))),
        }
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    reason: Option<String>,
}

pub async fn login_page(Query(query): Query<LoginQuery>) -> Response {
    let message = match query.reason.as_deref() {
        Some("signed_out") => Some(Message::Success("You have signed out.")),
        Some("key_revoked") => {
            Some(Message::Problem("Your key was blocked, deleted or has expired; you have been signed out."))
        }
        Some("ip_not_allowed") => {
            Some(Message::Problem("Your key may not be used from this address; you have been signed out."))
        }
        Some("expired_session") => Some(Message::Problem("Your session has ended. Sign in again.")),
        _ => None,
    };
    login_form(message, StatusCode::OK)
}

/// What the sign-in page says above its form.
enum Message {
    Success(&'static str),
    Problem(&'static str),
}

/// The sign-in page, with a fresh login token in the form and in a cookie.
fn login_form(message: Option<Message>, status: StatusCode) -> Response {
    let token = sessions::random_token();
    let body = html! {
        @match message {
            Some(Message::Success(text)) => (views::success(text)),
            Some(Message::Problem(text)) => (notice(text, true)),
            None => {},
        }
        p { "Paste an Admin or Master API key. It is checked by the server and never stored in your browser." }
        form method="post" action="/login" {
            input type="hidden" name="login_token" value=(token);
            label for="key" { "API key" }
            input #key type="password" name="key" autocomplete="off" required;
            p { button type="submit" { "Sign in" } }
        }
    };
    let mut response =
        (status, Html(layout(views::Page { title: "Sign in", signed_in: None }, body).into_string())).into_response();
    let cookie = format!("{LOGIN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a valid cookie"));
    response
}

/// Why a pasted key cannot sign in, in plain words, with the status to answer.
fn sign_in_refusal(refusal: Refusal) -> (StatusCode, &'static str) {
    match refusal {
        Refusal::MissingKey | Refusal::InvalidKey => (StatusCode::UNAUTHORIZED, "That is not a valid API key."),
        Refusal::Blocked => (StatusCode::UNAUTHORIZED, "This key is blocked."),
        Refusal::Expired => (StatusCode::UNAUTHORIZED, "This key has expired."),
        Refusal::IpNotAllowed => (StatusCode::UNAUTHORIZED, "This key may not be used from this address."),
        Refusal::InsufficientPermission => (
            StatusCode::FORBIDDEN,
            "Read and Write keys cannot sign in: only Admin and Master keys may view and manage API keys.",
        ),
        Refusal::Throttled { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, "Too many failed sign-ins from this address. Wait a minute and try again.")
        }
        Refusal::RateLimited { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, "This key is over its rate limit. Wait a moment and try again.")
        }
        other => (StatusCode::FORBIDDEN, other.message()),
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    key: String,
    #[serde(default)]
    login_token: String,
}

/// The cookie is `Secure` only when a trusted proxy says the browser used https.
pub(super) fn is_https(headers: &HeaderMap, state: &AppState, peer: Option<SocketAddr>) -> bool {
    peer.is_some_and(|peer| state.config.trusted_proxies.trusts(peer.ip()))
        && headers.get("x-forwarded-proto").is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"https"))
}

pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie_value(&headers, LOGIN_COOKIE);
    if form.login_token.is_empty() || expected.as_deref() != Some(form.login_token.as_str()) {
        let page =
            login_form(Some(Message::Problem("This sign-in form is out of date. Try again.")), StatusCode::FORBIDDEN);
        return with_error_code(page, ErrorCode::CsrfFailed);
    }
    let presented = Presented::from_header(Some(&form.key));
    let check = Check::any_valid_key(ip).requiring(Requirement::dashboard());
    let refusal = match state.service.verify(presented, &check).await {
        Ok(Verdict::Allowed { .. }) => None,
        Ok(Verdict::Refused { refusal, .. }) => Some(refusal),
        Err(error) => return PageError::from(error).into_response(),
    };
    let hash = match (refusal, presented) {
        (None, Presented::Key(raw)) => latchkey_core::key_format::lookup_hash(raw).ok(),
        _ => None,
    };
    // A key imported from another system has no prefix to show: it is named instead.
    let prefix = presented.display_prefix().unwrap_or_else(|| "an imported key".to_owned());
    let Some(hash) = hash else {
        let (status, message) = sign_in_refusal(refusal.unwrap_or(Refusal::InvalidKey));
        return login_form(Some(Message::Problem(message)), status);
    };
    let session_id = match state.sessions.start(hash, prefix).await {
        Ok(id) => id,
        Err(error) => return PageError::from(error).into_response(),
    };
    let secure = if is_https(&headers, &state, peer) { "; Secure" } else { "" };
    let cookie = format!("{SESSION_COOKIE}={session_id}; HttpOnly; SameSite=Strict; Path=/{secure}");
    let mut response = Redirect::to("/keys").into_response();
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a valid cookie"));
    response
}

pub async fn logout(State(state): State<AppState>, Submitted { user, .. }: Submitted<CsrfForm>) -> PageResult {
    state.sessions.end(&user.session_id).await?;
    let mut response = Redirect::to("/login?reason=signed_out").into_response();
    let expired = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&expired).expect("a valid cookie"));
    Ok(response)
}

/// Names the machine code of a refused sign-in, as error pages do.
fn with_error_code(mut response: Response, code: ErrorCode) -> Response {
    let value = HeaderValue::from_static(code.describe().0);
    response.headers_mut().insert(axum::http::HeaderName::from_static("x-latchkey-error"), value);
    response
}
