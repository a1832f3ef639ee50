//! What the key page's buttons do, each asked first on a page of its own: Block, Delete
//! and Rotate say what will happen (until when an old key keeps working), and on the key
//! one is signed in with they say so and want a box ticked. Unblock needs no question.

use super::forms::{ConfirmForm, RotateForm};
use super::new_key::{already_sent, key_shown_once, origin, Replaced, ShownOnce};
use super::sessions;
use super::signed_in::{Dashboard, Submitted};
use super::views::{deadline, Confirmation, Nav};
use super::{done, page_with_status, CsrfForm, PageResult};
use crate::extract::PeerAddr;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use latchkey_core::KeyRecord;
use latchkey_service::keys::MAX_ROTATION_GRACE_SECONDS;
use maud::html;
use serde::Deserialize;

const NOT_TICKED: &str = "Tick the box to confirm: this is the key you are signed in with.";

fn ticked(understood: Option<&str>) -> bool {
    understood == Some("yes")
}

/// Answers a confirmation page: 200 when asked, 422 when sent without the box ticked.
fn ask(user: &Dashboard, title: &str, confirmation: Confirmation<'_>) -> PageResult {
    let status = if confirmation.error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let body = confirmation.render(&user.session.csrf_token);
    Ok(page_with_status(status, title, Nav::Keys, user, body))
}

fn named(key: &KeyRecord) -> maud::Markup {
    html! { "the key " strong { (key.name.as_str()) } " (" code.prefix { (key.prefix.as_str()) "…" } ")" }
}

/// Block and Delete: each asked on a page of its own, with a title, a question, what
/// follows, and what it means for the key one is signed in with.
struct Asked {
    action: Irreversible,
    title: &'static str,
    verb: &'static str,
    consequences: [&'static str; 2],
    own_key: &'static str,
}

#[derive(Clone, Copy)]
enum Irreversible {
    Block,
    Delete,
}

const BLOCK: Asked = Asked {
    action: Irreversible::Block,
    title: "Block API key",
    verb: "Block",
    consequences: [
        "Every request made with it is refused from now on: API calls, verifications, forward-auth and dashboard sign-ins.",
        "The key stays listed, and can be unblocked later.",
    ],
    own_key: "Blocking it signs you out at once, and it cannot sign in again until another Admin or Master key unblocks it.",
};

const DELETE: Asked = Asked {
    action: Irreversible::Delete,
    title: "Delete API key",
    verb: "Delete",
    consequences: ["Anything using it stops working immediately.", "This cannot be undone; its audit trail stays."],
    own_key: "Deleting it signs you out at once, and it can never sign in again.",
};

impl Asked {
    fn question(&self, user: &Dashboard, key: &KeyRecord, error: Option<&'static str>) -> Confirmation<'static> {
        let path = match self.action {
            Irreversible::Block => "block",
            Irreversible::Delete => "delete",
        };
        Confirmation {
            question: html! { (self.verb) " " (named(key)) "?" },
            consequences: self.consequences.iter().map(|line| html! { (line) }).collect(),
            action: format!("/keys/{}/{path}", key.id),
            hidden: Vec::new(),
            button: format!("{} {}", self.verb, key.name.as_str()),
            cancel: format!("/keys/{}", key.id),
            own_key: user.owns(key).then_some(self.own_key),
            error,
        }
    }

    async fn show(&self, state: &AppState, user: &Dashboard, id: &str) -> PageResult {
        let key = state.service.keys().get(&user.caller, id).await?;
        ask(user, self.title, self.question(user, &key, None))
    }

    /// Does it once confirmed; on one's own key with the box not ticked, asks again.
    async fn carry_out(&self, state: &AppState, user: &Dashboard, id: &str, form: &ConfirmForm) -> PageResult {
        let key = state.service.keys().get(&user.caller, id).await?;
        if user.owns(&key) && !ticked(form.understood.as_deref()) {
            return ask(user, self.title, self.question(user, &key, Some(NOT_TICKED)));
        }
        let (to, message) = match self.action {
            Irreversible::Block => {
                let key = state.service.keys().block(&user.caller, id).await?;
                let message =
                    format!("Blocked “{}”: requests made with it are refused from now on.", key.name.as_str());
                (format!("/keys/{}", key.id), message)
            }
            Irreversible::Delete => {
                let key = state.service.keys().delete(&user.caller, id).await?;
                let site = key
                    .site_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| super::keys_list::MASTER_KEYS.into());
                (format!("/keys?site={site}"), format!("Deleted the key “{}”.", key.name.as_str()))
            }
        };
        done(user, &to, message).await
    }
}

pub async fn block_page(State(state): State<AppState>, user: Dashboard, Path(id): Path<String>) -> PageResult {
    BLOCK.show(&state, &user, &id).await
}

pub async fn block_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { user, form }: Submitted<ConfirmForm>,
) -> PageResult {
    BLOCK.carry_out(&state, &user, &id, &form).await
}

pub async fn unblock_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { user, .. }: Submitted<CsrfForm>,
) -> PageResult {
    let key = state.service.keys().unblock(&user.caller, &id).await?;
    let message = format!("Unblocked “{}”: it works again.", key.name.as_str());
    done(&user, &format!("/keys/{}", key.id), message).await
}

pub async fn delete_page(State(state): State<AppState>, user: Dashboard, Path(id): Path<String>) -> PageResult {
    DELETE.show(&state, &user, &id).await
}

pub async fn delete_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { user, form }: Submitted<ConfirmForm>,
) -> PageResult {
    DELETE.carry_out(&state, &user, &id, &form).await
}

#[derive(Deserialize)]
pub struct GracePick {
    grace: Option<String>,
}

/// When the old key stops: after the grace period, or at its own expiry if that is sooner.
fn old_key_stops(key: &KeyRecord, grace_seconds: u64, now: DateTime<Utc>) -> DateTime<Utc> {
    let after_grace = now + chrono::Duration::seconds(grace_seconds as i64);
    key.expires_at.map_or(after_grace, |expiry| expiry.min(after_grace))
}

fn rotate_question<'a>(
    user: &Dashboard,
    key: &KeyRecord,
    grace_seconds: u64,
    now: DateTime<Utc>,
    error: Option<&'a str>,
) -> Confirmation<'a> {
    let stops = old_key_stops(key, grace_seconds, now);
    let at_once = stops <= now;
    Confirmation {
        question: html! { "Rotate " (named(key)) "?" },
        consequences: vec![
            html! { "A new key with the same name, level, scopes and settings is created now and shown once." },
            if at_once {
                html! { "The old key stops working at once." }
            } else {
                html! { "The old key keeps working until " strong { (deadline(stops, now)) } ", then stops. Replace it everywhere before then." }
            },
        ],
        action: format!("/keys/{}/rotate", key.id),
        hidden: vec![("grace_seconds", grace_seconds.to_string()), ("form_id", sessions::random_token())],
        button: format!("Rotate {}", key.name.as_str()),
        cancel: format!("/keys/{}", key.id),
        own_key: user.owns(key).then_some(if at_once {
            "Your session ends at once: sign in again with the new key."
        } else {
            "Your session ends when the old key stops working: sign in again with the new key before then."
        }),
        error,
    }
}

pub async fn rotate_page(
    State(state): State<AppState>,
    user: Dashboard,
    Path(id): Path<String>,
    Query(pick): Query<GracePick>,
) -> PageResult {
    let key = state.service.keys().get(&user.caller, &id).await?;
    let grace = pick.grace.and_then(|g| g.parse().ok()).unwrap_or(3600).min(MAX_ROTATION_GRACE_SECONDS);
    ask(&user, "Rotate API key", rotate_question(&user, &key, grace, state.clock.now(), None))
}

pub async fn rotate_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    Submitted { user, form }: Submitted<RotateForm>,
) -> PageResult {
    let grace_seconds = form.grace_seconds()?;
    let key = state.service.keys().get(&user.caller, &id).await?;
    let now = state.clock.now();
    if user.owns(&key) && !ticked(form.confirm.understood.as_deref()) {
        return ask(&user, "Rotate API key", rotate_question(&user, &key, grace_seconds, now, Some(NOT_TICKED)));
    }
    let claim = match user.claim_form(form.form_id.as_deref()).await? {
        Ok(claim) => claim,
        Err(earlier) => return already_sent(&state, &user, earlier).await,
    };
    let (record, secret) = state.service.keys().rotate(&user.caller, &id, grace_seconds).await?;
    claim.created(record.id.clone()).await;
    // Read again: the rotation set the old key's end, which the page states.
    let old = state.service.keys().get(&user.caller, &id).await.unwrap_or(key);
    let made = format!("Rotated “{}”: this is its new key.", record.name.as_str());
    let shown = ShownOnce { record: &record, secret: &secret, origin: origin(&headers, &state, peer), made };
    Ok(key_shown_once(&user, shown, Some(Replaced { old: &old, now })))
}
