//! HTML for the dashboard, server-rendered with maud (escaped by construction): the layout
//! every page shares (skip link, navigation, who is signed in, the message left by the
//! last action) and the small widgets pages are made of. Charts are in `charts.rs`, the
//! stylesheet and script in `style.rs`.

use super::forms::FieldErrors;
use super::style::{CSS, SCRIPT};
use chrono::{DateTime, SecondsFormat, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

pub struct Page<'a> {
    pub title: &'a str,
    /// `None` on the sign-in page and on error pages shown before sign-in.
    pub signed_in: Option<SignedIn<'a>>,
}

/// The navigation's pages, so the current one can be marked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Keys,
    Webhooks,
    Audit,
    Sites,
}

pub struct SignedIn<'a> {
    pub key_name: &'a str,
    pub level: &'a str,
    pub csrf: &'a str,
    pub is_master: bool,
    pub current: Nav,
    /// What the last action did ("Saved"), shown once.
    pub flash: Option<String>,
}

pub fn layout(page: Page<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (page.title) " · Latchkey" }
                style { (PreEscaped(CSS)) }
            }
            body {
                a.skip-link href="#main" { "Skip to main content" }
                header {
                    a.brand href="/keys" { "Latchkey" }
                    @if let Some(user) = &page.signed_in {
                        nav aria-label="Main" {
                            (nav_link("/keys", "API Keys", user.current == Nav::Keys))
                            (nav_link("/webhooks", "Webhooks", user.current == Nav::Webhooks))
                            (nav_link("/audit", "Audit", user.current == Nav::Audit))
                            @if user.is_master { (nav_link("/sites", "Sites", user.current == Nav::Sites)) }
                        }
                        span.whoami { "Signed in as " strong { (user.key_name) } " (" (user.level) ")" }
                        form.inline method="post" action="/logout" {
                            (csrf_field(user.csrf))
                            button.secondary type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (page.title) }
                    @if let Some(message) = page.signed_in.as_ref().and_then(|user| user.flash.as_deref()) {
                        (success(message))
                    }
                    (body)
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

fn nav_link(href: &str, text: &str, current: bool) -> Markup {
    html! { a href=(href) aria-current=[current.then_some("page")] { (text) } }
}

pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

pub fn notice(message: &str, is_error: bool) -> Markup {
    html! { div.notice.error[is_error] role=(if is_error { "alert" } else { "status" }) { (message) } }
}

/// What an action did, in green.
pub fn success(message: &str) -> Markup {
    html! { div.notice.success role="status" data-testid="flash" { (message) } }
}

/// The message under a field that was refused, tied to it for screen readers.
pub fn field_error(errors: &FieldErrors, field: &str) -> Markup {
    html! {
        @if let Some(message) = errors.get(field) {
            p.field-error id={ (field) "-error" } { (message) }
        }
    }
}

/// The attributes a refused field carries: `aria-invalid` and the id of its message.
pub fn invalid(errors: &FieldErrors, field: &str) -> (Option<&'static str>, Option<String>) {
    match errors.get(field) {
        Some(_) => (Some("true"), Some(format!("{field}-error"))),
        None => (None, None),
    }
}

/// The form's own problems (not about one field) and a summary when fields were refused.
pub fn form_problems(errors: &FieldErrors, what_failed: &str) -> Markup {
    html! {
        @if !errors.is_empty() {
            div.notice.error role="alert" data-error-code="validation_failed" {
                strong { (what_failed) }
                @if let Some(message) = errors.get("") { p { (message) } }
                @if errors.has_field_errors() { p { "Fix the fields marked below and send the form again." } }
            }
        }
    }
}

/// "29 Nov 2026, 14:00 UTC": the server does not know the reader's time zone, so it says
/// which one it uses.
pub fn exact_time(at: DateTime<Utc>) -> String {
    at.format("%-d %b %Y, %H:%M UTC").to_string()
}

fn machine_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// "3 minutes ago", with the exact time on hover; "Never" when there is none.
pub fn relative_time(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    let Some(at) = at else {
        return html! { span.muted { "Never" } };
    };
    html! { time datetime=(machine_time(at)) title=(exact_time(at)) { (relative_text(at, now)) } }
}

/// "29 Nov 2026, 14:00 UTC (in 1 hour)": a moment people must act before.
pub fn deadline(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! { time datetime=(machine_time(at)) { (exact_time(at)) } " (" (relative_text(at, now)) ")" }
}

pub fn relative_text(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    match (now - at).num_seconds() {
        s if s < 0 => format!("in {}", span_text(-s)),
        s if s < 60 => "just now".to_owned(),
        s => format!("{} ago", span_text(s)),
    }
}

/// Rounded to the nearest unit, so a grace period of a day, read a second later, still
/// says "in 1 day".
fn span_text(seconds: i64) -> String {
    let nearest = |unit: i64| (seconds + unit / 2) / unit;
    let (value, unit) = match seconds {
        s if s < 3570 => (nearest(60), "minute"),
        s if s < 84_600 => (nearest(3600), "hour"),
        _ => (nearest(86_400), "day"),
    };
    let value = value.max(1);
    format!("{value} {unit}{}", if value == 1 { "" } else { "s" })
}

/// "2 keys", "1 key".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A page that asks before something people may regret: what will happen, a red button
/// naming it, and a way back. On one's own key it says so, and the box must be ticked.
pub struct Confirmation<'a> {
    pub question: Markup,
    /// What follows, one sentence per item.
    pub consequences: Vec<Markup>,
    /// Where the confirming form posts.
    pub action: String,
    /// Extra fields the confirming form sends (a grace period, a single-use id).
    pub hidden: Vec<(&'static str, String)>,
    /// The button's text ("Delete Frontend").
    pub button: String,
    pub cancel: String,
    /// Set when the key is the signed-in one: what the user loses.
    pub own_key: Option<&'a str>,
    /// Why the last try was refused (the box was not ticked).
    pub error: Option<&'a str>,
}

impl Confirmation<'_> {
    pub fn render(self, csrf: &str) -> Markup {
        html! {
            p { (self.question) }
            @if !self.consequences.is_empty() {
                ul { @for item in &self.consequences { li { (item) } } }
            }
            form method="post" action=(self.action) {
                (csrf_field(csrf))
                @for (name, value) in &self.hidden { input type="hidden" name=(name) value=(value); }
                @if let Some(loss) = self.own_key {
                    div.notice.error role="alert" {
                        strong { "This is the key you are signed in with." }
                        p { (loss) }
                    }
                    label.check {
                        input #understood type="checkbox" name="understood" value="yes" required
                            aria-invalid=[self.error.map(|_| "true")] aria-describedby=[self.error.map(|_| "understood-error")];
                        span { "I understand that this affects my own session." }
                    }
                    @if let Some(error) = self.error { p.field-error #understood-error { (error) } }
                }
                p.toolbar {
                    button.danger type="submit" { (self.button) }
                    a href=(self.cancel) { "Cancel" }
                }
            }
        }
    }
}
