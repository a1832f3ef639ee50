//! The dashboard's forms and what they mean: each turns its fields into the service's
//! domain types (`NewKey`, `KeyEdit`), the same ones the JSON API builds, so both
//! front-ends ask the service for the same things.

use super::PageError;
use crate::error::ApiError;
use chrono::{DateTime, NaiveDateTime, Utc};
use latchkey_core::options::parse_allowlist;
use latchkey_core::{
    CreditsEdit, Description, KeyEdit, KeyName, KeyOptions, NewKey, OwnerId, Permission, RateLimit, Scopes, SiteId,
};
use maud::{html, Markup};
use serde::Deserialize;

/// The fields that the New API Key form and the Edit form share.
#[derive(Deserialize)]
struct KeyFields {
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

/// New API Key.
#[derive(Deserialize)]
pub struct KeyForm {
    pub csrf: Option<String>,
    pub form_id: Option<String>,
    site_id: Option<String>,
    #[serde(flatten)]
    fields: KeyFields,
}

/// The key page's Edit form: the shared fields, and the expiry as the page showed it (to
/// the minute), since an unchanged expiry means "keep".
#[derive(Deserialize)]
pub struct EditForm {
    #[serde(flatten)]
    fields: KeyFields,
    #[serde(default)]
    expires_at_was: String,
    pub csrf: Option<String>,
}

/// The key page's Rotate form.
#[derive(Deserialize)]
pub struct RotateForm {
    pub csrf: Option<String>,
    pub form_id: Option<String>,
    #[serde(default)]
    grace_seconds: String,
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
    /// The balance as the page showed it. Unchanged means "keep": the real balance may
    /// have moved since (each verification spends), and a rename must not reset it.
    #[serde(default)]
    credits_was: String,
}

impl KeyForm {
    /// The key this form asks for. A Master key belongs to no site, whatever was picked.
    pub fn new_key(&self, now: DateTime<Utc>) -> Result<NewKey, PageError> {
        let fields = &self.fields;
        let permission: Permission = fields.permission.parse()?;
        let site_id =
            if permission == Permission::Master { None } else { self.site_id.as_deref().and_then(parse_site) };
        let edit = fields.options.edit()?;
        let options = KeyOptions {
            owner_id: edit.owner_id.flatten(),
            ip_allowlist: edit.ip_allowlist.unwrap_or_default(),
            ratelimit: edit.ratelimit.flatten(),
            credits: edit.credits.flatten().map(|credits| credits.applied_to(None, now)),
            ..KeyOptions::default()
        };
        Ok(NewKey {
            name: KeyName::parse(&fields.name)?,
            description: form_description(&fields.description)?,
            permission,
            scopes: form_scopes(&fields.scopes)?,
            site_id,
            expires_at: form_expiry(&fields.expires_at)?,
            options,
        })
    }
}

impl EditForm {
    /// The edit this form asks for. It shows every field but metadata, refill and the
    /// rotation links, which it keeps.
    pub fn edit(&self) -> Result<KeyEdit, PageError> {
        let fields = &self.fields;
        let expiry_changed = fields.expires_at.trim() != self.expires_at_was.trim();
        Ok(KeyEdit {
            name: Some(KeyName::parse(&fields.name)?),
            description: Some(form_description(&fields.description)?),
            permission: Some(fields.permission.parse()?),
            scopes: Some(form_scopes(&fields.scopes)?),
            expires_at: if expiry_changed { Some(form_expiry(&fields.expires_at)?) } else { None },
            ..fields.options.edit()?
        })
    }
}

impl RotateForm {
    pub fn grace_seconds(&self) -> Result<u64, PageError> {
        Ok(number("grace period", &self.grace_seconds)?.unwrap_or(0))
    }
}

impl OptionsForm {
    /// The settings this form shows, as an edit; what it does not show stays as it is.
    fn edit(&self) -> Result<KeyEdit, PageError> {
        let owner = self.owner_id.trim();
        let networks: Vec<&str> = self.ip_allowlist.split([' ', ',', '\n']).filter(|s| !s.trim().is_empty()).collect();
        let ratelimit =
            match (number::<u32>("rate limit", &self.ratelimit_limit)?, number("window", &self.ratelimit_window)?) {
                (Some(limit), window) => Some(RateLimit::new(limit, window.unwrap_or(60))?),
                (None, _) => None,
            };
        let credits_changed = self.credits_remaining.trim() != self.credits_was.trim();
        let credits =
            number::<u64>("credits", &self.credits_remaining)?.map(|remaining| CreditsEdit { remaining, refill: None });
        Ok(KeyEdit {
            owner_id: Some(if owner.is_empty() { None } else { Some(OwnerId::parse(owner)?) }),
            ip_allowlist: Some(parse_allowlist(&networks)?),
            ratelimit: Some(ratelimit),
            credits: if credits_changed { Some(credits) } else { None },
            ..KeyEdit::default()
        })
    }
}

/// The optional settings' fields, filled with `options`.
pub fn options_fields(options: &KeyOptions) -> Markup {
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
            input type="hidden" name="credits_was" value=(options.credits.map(|c| c.remaining.to_string()).unwrap_or_default());
        }
    }
}

/// A site picked in a form or a filter; empty means none.
pub fn parse_site(raw: &str) -> Option<SiteId> {
    Some(raw).filter(|s| !s.is_empty()).and_then(SiteId::parse)
}

/// How a `datetime-local` field shows an expiry (to the minute, UTC).
pub fn expiry_field_value(expiry: Option<DateTime<Utc>>) -> String {
    expiry.map(|t| t.format("%Y-%m-%dT%H:%M").to_string()).unwrap_or_default()
}

fn number<T: std::str::FromStr>(field: &str, raw: &str) -> Result<Option<T>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| ApiError::validation(format!("{field} must be a whole number")))
}

fn form_scopes(raw: &str) -> Result<Scopes, PageError> {
    let parts: Vec<&str> = raw.split(|c: char| c.is_whitespace() || c == ',').filter(|s| !s.is_empty()).collect();
    Ok(Scopes::parse(&parts)?)
}

fn form_description(raw: &str) -> Result<Option<Description>, PageError> {
    let trimmed = raw.trim();
    Ok(if trimmed.is_empty() { None } else { Some(Description::parse(trimmed)?) })
}

/// `datetime-local` values carry no zone; the form says they are UTC. The service
/// decides whether the time lies in the future.
fn form_expiry(raw: &str) -> Result<Option<DateTime<Utc>>, PageError> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let parsed = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| ApiError::validation("the expiry is not a date and time"))?;
    Ok(Some(parsed.and_utc()))
}
