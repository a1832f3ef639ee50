//! HTML for the dashboard, server-rendered with maud (escaped by construction). The CSS
//! and the little JavaScript (copy button) are compiled into the binary.

use chrono::{DateTime, SecondsFormat, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

const CSS: &str = r#"
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dde5; --accent:#2451c7; --bad:#b3261e; --ok:#1b7f3b; --bg:#f7f8fa; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui, sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; flex-wrap:wrap; gap:1rem; align-items:center; padding:.75rem 1.25rem; background:#fff; border-bottom:1px solid var(--line); }
header strong { margin-right:auto; }
nav a { margin-right:1rem; }
main { max-width:1100px; margin:0 auto; padding:1.25rem; }
a { color:var(--accent); }
table { width:100%; border-collapse:collapse; background:#fff; }
th, td { text-align:left; padding:.5rem .6rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-weight:600; color:var(--muted); font-size:.85rem; }
.table-wrap { overflow-x:auto; }
form.inline { display:inline; }
label { display:block; font-weight:600; margin:.75rem 0 .25rem; }
input[type=text], input[type=password], input[type=datetime-local], select, textarea { width:100%; max-width:32rem; padding:.45rem; border:1px solid var(--line); border-radius:4px; font:inherit; }
button, .button { display:inline-block; padding:.45rem .9rem; border:1px solid var(--accent); background:var(--accent); color:#fff; border-radius:4px; font:inherit; cursor:pointer; text-decoration:none; }
button.secondary { background:#fff; color:var(--accent); }
button.danger { background:var(--bad); border-color:var(--bad); }
button:focus-visible, a:focus-visible, input:focus-visible, select:focus-visible { outline:3px solid #f2b600; outline-offset:2px; }
.status-active { color:var(--ok); } .status-blocked, .status-expired { color:var(--bad); }
.notice { padding:.75rem 1rem; border-radius:4px; margin:1rem 0; background:#fff; border:1px solid var(--line); }
.error { border-color:var(--bad); color:var(--bad); }
.secret { font-family:ui-monospace, monospace; word-break:break-all; padding:.75rem; background:#fff; border:2px dashed var(--accent); }
.muted { color:var(--muted); }
.stale { font-size:.8rem; padding:0 .35rem; border-radius:3px; background:#fff3cd; color:#7a5b00; }
fieldset { border:1px solid var(--line); border-radius:4px; margin-top:1rem; max-width:34rem; }
.toolbar { display:flex; flex-wrap:wrap; gap:.75rem; align-items:end; margin:1rem 0; }
@media (max-width: 640px) { .hide-narrow { display:none; } main { padding:.75rem; } }
"#;

const COPY_SCRIPT: &str = r#"
document.querySelectorAll('[data-copy]').forEach(function (button) {
  button.addEventListener('click', function () {
    var text = document.getElementById(button.dataset.copy).textContent.trim();
    navigator.clipboard.writeText(text).then(function () { button.textContent = 'Copied'; });
  });
});
"#;

pub struct Page<'a> {
    pub title: &'a str,
    /// `None` on the sign-in page.
    pub signed_in: Option<SignedIn<'a>>,
}

pub struct SignedIn<'a> {
    pub prefix: &'a str,
    pub csrf: &'a str,
    pub is_master: bool,
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
                header {
                    strong { "Latchkey" }
                    @if let Some(user) = &page.signed_in {
                        nav aria-label="Main" {
                            a href="/keys" { "API Keys" }
                            a href="/audit" { "Audit" }
                            @if user.is_master { a href="/sites" { "Sites" } }
                        }
                        span.muted { "Signed in as " code { (user.prefix) "…" } }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(user.csrf);
                            button.secondary type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (page.title) } (body) }
                script { (PreEscaped(COPY_SCRIPT)) }
            }
        }
    }
}

pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

pub fn notice(message: &str, is_error: bool) -> Markup {
    html! { div.notice.error[is_error] role=(if is_error { "alert" } else { "status" }) { (message) } }
}

/// "3 minutes ago", with the exact time on hover; "Never" when there is none.
pub fn relative_time(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    let Some(at) = at else {
        return html! { span.muted { "Never" } };
    };
    let seconds = (now - at).num_seconds();
    let text = match seconds {
        s if s < 0 => format!("in {}", span_text(-s)),
        s if s < 60 => "just now".to_owned(),
        s => format!("{} ago", span_text(s)),
    };
    html! { time datetime=(at.to_rfc3339_opts(SecondsFormat::Secs, true)) title=(at.to_rfc3339_opts(SecondsFormat::Secs, true)) { (text) } }
}

fn span_text(seconds: i64) -> String {
    let (value, unit) = match seconds {
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    let value = value.max(1);
    format!("{value} {unit}{}", if value == 1 { "" } else { "s" })
}

/// A 30-day sparkline of all requests (allowed + refused), for the keys table.
pub fn sparkline(days: &[latchkey_service::keys::UsageDay]) -> Markup {
    let totals: Vec<u64> = days.iter().map(|d| d.allowed + d.refused).collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = 100.0 / (totals.len().max(2) - 1) as f64;
    let points: Vec<String> = totals
        .iter()
        .enumerate()
        .map(|(i, total)| format!("{:.1},{:.1}", i as f64 * step, 19.0 - (*total as f64 / max) * 18.0))
        .collect();
    let sum: u64 = totals.iter().sum();
    html! {
        svg width="100" height="20" viewBox="0 0 100 20" role="img" aria-label={ (sum) " requests in 30 days" } {
            title { (sum) " requests in 30 days" }
            polyline points=(points.join(" ")) fill="none" stroke="#2451c7" stroke-width="1.5" {}
        }
    }
}

/// Daily bars of allowed (green) and refused (red) requests, for the key detail page.
pub fn usage_chart(days: &[latchkey_service::keys::UsageDay]) -> Markup {
    let max = days.iter().map(|d| d.allowed.max(d.refused)).max().unwrap_or(0).max(1) as f64;
    let width = 12.0;
    let allowed: u64 = days.iter().map(|d| d.allowed).sum();
    let refused: u64 = days.iter().map(|d| d.refused).sum();
    html! {
        figure {
            svg width="100%" height="120" viewBox={ "0 0 " (days.len() as f64 * width) " 100" } preserveAspectRatio="none"
                role="img" aria-label={ (allowed) " allowed and " (refused) " refused requests in the last 30 days" } {
                @for (i, day) in days.iter().enumerate() {
                    @let x = i as f64 * width;
                    @let a = day.allowed as f64 / max * 100.0;
                    @let r = day.refused as f64 / max * 100.0;
                    rect x=(x + 1.0) y=(100.0 - a) width=(width / 2.0 - 1.0) height=(a) fill="#1b7f3b" {
                        title { (day.day) ": " (day.allowed) " allowed" }
                    }
                    rect x=(x + width / 2.0) y=(100.0 - r) width=(width / 2.0 - 1.0) height=(r) fill="#b3261e" {
                        title { (day.day) ": " (day.refused) " refused" }
                    }
                }
            }
            figcaption.muted { "Last 30 days: " (allowed) " allowed, " (refused) " refused (green: allowed, red: refused)." }
        }
    }
}

/// A page that asks before something that cannot be undone: the question, a red button
/// naming what goes, and a way back.
pub struct Confirmation<'a> {
    pub question: Markup,
    /// Where the confirming form posts.
    pub action: String,
    /// What is deleted, for the button ("Delete Blog").
    pub subject: &'a str,
    pub cancel: String,
}

impl Confirmation<'_> {
    pub fn render(self, user: &super::signed_in::Dashboard) -> Markup {
        html! {
            p { (self.question) }
            form method="post" action=(self.action) {
                (csrf_field(&user.session.csrf_token))
                button.danger type="submit" { "Delete " (self.subject) }
                " "
                a href=(self.cancel) { "Cancel" }
            }
        }
    }
}
