//! The dashboard's forms and what they mean: each turns its fields into the service's
//! domain types (`NewKey`, `KeyEdit`), the same ones the JSON API builds, so both
//! front-ends ask the service for the same things. A refused form is not an error page:
//! each problem is kept next to the field it is about, in plain words, with what was
//! typed, so the page can come back with the form filled in.

use super::PageError;
use crate::error::ApiError;
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDateTime, Utc};
use latchkey_core::options::parse_allowlist;
use latchkey_core::{
    CreditsEdit, Denied, Description, KeyEdit, KeyName, KeyOptions, KeyRecord, NewKey, OwnerId, Permission, RateLimit,
    Scopes, SiteId,
};
use latchkey_service::ServiceError;
use serde::Deserialize;

/// What was wrong with a sent form: one plain message per field (by the field's `name`);
/// the field `""` is the form as a whole.
#[derive(Debug, Default)]
pub struct FieldErrors {
    problems: Vec<(&'static str, String)>,
    /// The status the JSON API answers for the same refusal; 422 when unset.
    status: Option<StatusCode>,
}

impl FieldErrors {
    /// Records a problem; the first one found for a field is the one shown.
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        if self.get(field).is_none() {
            self.problems.push((field, message.into()));
        }
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.problems.iter().find(|(name, _)| *name == field).map(|(_, message)| message.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn has_field_errors(&self) -> bool {
        self.problems.iter().any(|(name, _)| !name.is_empty())
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// The refused form's status: the one the JSON API gives the same refusal, so both
    /// front-ends answer alike (403 for a level above one's own, 409 for a conflict).
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or(StatusCode::UNPROCESSABLE_ENTITY)
    }

    /// The value, or `None` with its problem recorded next to `field`.
    fn keep<T>(&mut self, field: &'static str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.add(field, message)).ok()
    }

    /// A refusal by the service, put next to the field it is about. Refusals that no
    /// field can fix (the key is gone, the store is down) stay error pages. An invalid
    /// value is told by its message, which names the field first: `ServiceError::Invalid`
    /// carries no field of its own.
    pub fn from_service(error: ServiceError) -> Result<Self, PageError> {
        let mut errors = Self::default();
        match &error {
            ServiceError::Invalid(message) if message.starts_with("expires_at") => {
                errors.add("expires_at", "The expiry must be in the future.")
            }
            ServiceError::Invalid(message) if message.starts_with("credits") => {
                errors.add("credits_remaining", "That is more credits than Latchkey can count; enter a smaller number.")
            }
            ServiceError::Invalid(message) => errors.add("", sentence(message)),
            ServiceError::NotFound("site") => errors.add("site_id", "That site no longer exists; pick another."),
            ServiceError::Denied(Denied::InsufficientPermission(_)) => {
                errors.add("permission", "You cannot give a key a higher level than your own.")
            }
            ServiceError::Denied(Denied::SiteNotVisible) => {
                errors.add("site_id", "Your key cannot manage keys of that site.")
            }
            ServiceError::Denied(Denied::Invalid(why)) => errors.add("", sentence(why)),
            ServiceError::LastMaster => errors.add("", sentence(&error.to_string())),
            ServiceError::Conflict(message) => errors.add("", sentence(message)),
            _ => return Err(error.into()),
        }
        errors.status = Some(ApiError::from(error).status());
        Ok(errors)
    }
}

/// Service messages are sentences but for the capital and the full stop.
pub fn sentence(message: &str) -> String {
    let mut text = super::capitalized(message.trim());
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// The fields that the New API Key form and the Edit form share, as typed.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct KeyFields {
    pub name: String,
    pub permission: String,
    pub scopes: String,
    pub description: String,
    pub expires_at: String,
    #[serde(flatten)]
    pub options: OptionsFields,
}

/// The optional settings as typed; empty means "none".
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct OptionsFields {
    pub owner_id: String,
    pub ip_allowlist: String,
    pub ratelimit_limit: String,
    pub ratelimit_window: String,
    pub credits_remaining: String,
    /// The balance as the page showed it. Unchanged means "keep": the real balance may
    /// have moved since (each verification spends), and a rename must not reset it.
    pub credits_was: String,
}

/// New API Key.
#[derive(Deserialize)]
pub struct KeyForm {
    pub csrf: Option<String>,
    pub form_id: Option<String>,
    #[serde(default)]
    pub site_id: String,
    #[serde(flatten)]
    pub fields: KeyFields,
}

/// The key page's Edit form: the shared fields, and the expiry as the page showed it (to
/// the minute), since an unchanged expiry means "keep".
#[derive(Deserialize)]
pub struct EditForm {
    #[serde(flatten)]
    pub fields: KeyFields,
    #[serde(default)]
    pub expires_at_was: String,
    pub csrf: Option<String>,
}

/// Block and Delete confirmations: on one's own key, the box must be ticked.
#[derive(Deserialize)]
pub struct ConfirmForm {
    pub csrf: Option<String>,
    pub understood: Option<String>,
}

/// The Rotate confirmation's form: a confirmation with the grace period, and an id so
/// that a reload cannot rotate twice.
#[derive(Deserialize)]
pub struct RotateForm {
    #[serde(flatten)]
    pub confirm: ConfirmForm,
    pub form_id: Option<String>,
    #[serde(default)]
    pub grace_seconds: String,
}

impl KeyForm {
    /// The key this form asks for, or every problem with it. A Master key belongs to no
    /// site, whatever was picked.
    pub fn new_key(&self, now: DateTime<Utc>) -> Result<NewKey, FieldErrors> {
        let mut errors = FieldErrors::default();
        let fields = &self.fields;
        let permission = errors.keep("permission", parse_permission(&fields.permission));
        let site_id = match permission {
            Some(Permission::Master) => None,
            _ => errors
                .keep("site_id", parse_site(&self.site_id).ok_or_else(|| "Pick the site this key is for.".to_owned())),
        };
        let name = errors.keep("name", KeyName::parse(&fields.name).map_err(|e| plain("The name", &e.message)));
        let description = errors.keep("description", form_description(&fields.description));
        let scopes = errors.keep("scopes", form_scopes(&fields.scopes));
        let expires_at = errors.keep("expires_at", form_expiry(&fields.expires_at, now));
        let edit = fields.options.edit(&mut errors);
        match (name, description, permission, scopes, expires_at) {
            (Some(name), Some(description), Some(permission), Some(scopes), Some(expires_at)) if errors.is_empty() => {
                let options = KeyOptions {
                    owner_id: edit.owner_id.flatten(),
                    ip_allowlist: edit.ip_allowlist.unwrap_or_default(),
                    ratelimit: edit.ratelimit.flatten(),
                    credits: edit.credits.flatten().map(|credits| credits.applied_to(None, now)),
                    ..KeyOptions::default()
                };
                Ok(NewKey { name, description, permission, scopes, site_id, expires_at, options })
            }
            _ => Err(errors),
        }
    }
}

impl EditForm {
    /// The edit this form asks for, or every problem with it. It shows every field but
    /// metadata, refill and the rotation links, which it keeps.
    pub fn edit(&self, now: DateTime<Utc>) -> Result<KeyEdit, FieldErrors> {
        let mut errors = FieldErrors::default();
        let fields = &self.fields;
        let name = errors.keep("name", KeyName::parse(&fields.name).map_err(|e| plain("The name", &e.message)));
        let description = errors.keep("description", form_description(&fields.description));
        let permission = errors.keep("permission", parse_permission(&fields.permission));
        let scopes = errors.keep("scopes", form_scopes(&fields.scopes));
        let expiry_changed = fields.expires_at.trim() != self.expires_at_was.trim();
        let expires_at =
            if expiry_changed { errors.keep("expires_at", form_expiry(&fields.expires_at, now)) } else { None };
        let options = fields.options.edit(&mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(KeyEdit { name, description, permission, scopes, expires_at, ..options })
    }
}

impl KeyFields {
    /// A key's current values, as the Edit form starts.
    pub fn of(key: &KeyRecord) -> Self {
        let options = &key.options;
        let credits = options.credits.map(|c| c.remaining.to_string()).unwrap_or_default();
        Self {
            name: key.name.as_str().to_owned(),
            permission: key.permission.as_str().to_owned(),
            scopes: key.scopes.to_strings().join(" "),
            description: key.description.as_ref().map(|d| d.as_str().to_owned()).unwrap_or_default(),
            expires_at: expiry_field_value(key.expires_at),
            options: OptionsFields {
                owner_id: options.owner_id.as_ref().map(|o| o.as_str().to_owned()).unwrap_or_default(),
                ip_allowlist: options.ip_allowlist.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
                ratelimit_limit: options.ratelimit.map(|r| r.limit.to_string()).unwrap_or_default(),
                ratelimit_window: options.ratelimit.map(|r| r.window_seconds.to_string()).unwrap_or_default(),
                credits_remaining: credits.clone(),
                credits_was: credits,
            },
        }
    }
}

impl RotateForm {
    pub fn grace_seconds(&self) -> Result<u64, PageError> {
        number(&self.grace_seconds, "Pick how long the old key keeps working.")
            .map(Option::unwrap_or_default)
            .map_err(|message| PageError::from(ApiError::validation(message)))
    }
}

impl OptionsFields {
    /// The settings this form shows, as an edit; what it does not show stays as it is.
    fn edit(&self, errors: &mut FieldErrors) -> KeyEdit {
        let owner = self.owner_id.trim();
        let owner_id = if owner.is_empty() {
            Some(None)
        } else {
            errors.keep("owner_id", OwnerId::parse(owner).map(Some).map_err(|e| plain("The owner id", &e.message)))
        };
        let networks: Vec<&str> = self.ip_allowlist.split([' ', ',', '\n']).filter(|s| !s.trim().is_empty()).collect();
        let ip_allowlist = errors.keep(
            "ip_allowlist",
            parse_allowlist(&networks).map_err(|e| {
                plain("The allowlist", &format!("{}; write networks such as 10.0.0.0/8 or ::1/128", e.message))
            }),
        );
        let limit = errors.keep(
            "ratelimit_limit",
            number::<u32>(&self.ratelimit_limit, "Enter a whole number of requests, or leave it empty for no limit."),
        );
        let window = errors.keep(
            "ratelimit_window",
            number::<u32>(&self.ratelimit_window, "Enter the window as a whole number of seconds."),
        );
        let ratelimit = match (limit.flatten(), window.flatten()) {
            (Some(0), _) => errors.keep("ratelimit_limit", Err("The rate limit must be at least 1.".into())),
            (Some(limit), window) => errors.keep(
                "ratelimit_window",
                RateLimit::new(limit, window.unwrap_or(60))
                    .map(Some)
                    .map_err(|_| "The window must be between 1 and 86,400 seconds (a day).".into()),
            ),
            (None, _) => Some(None),
        };
        let credits_changed = self.credits_remaining.trim() != self.credits_was.trim();
        let credits = errors.keep(
            "credits_remaining",
            number::<u64>(&self.credits_remaining, "Enter a whole number of credits, or leave it empty for unlimited."),
        );
        KeyEdit {
            owner_id,
            ip_allowlist,
            ratelimit,
            credits: if credits_changed {
                credits.map(|remaining| remaining.map(|remaining| CreditsEdit { remaining, refill: None }))
            } else {
                None
            },
            ..KeyEdit::default()
        }
    }
}

/// "The name" + "must not be empty" → "The name must not be empty."
fn plain(subject: &str, message: &str) -> String {
    sentence(&format!("{subject} {message}"))
}

fn parse_permission(raw: &str) -> Result<Permission, String> {
    raw.parse().map_err(|_| "Pick a permission level.".to_owned())
}

/// A site picked in a form or a filter; empty means none.
pub fn parse_site(raw: &str) -> Option<SiteId> {
    Some(raw).filter(|s| !s.is_empty()).and_then(SiteId::parse)
}

/// How a `datetime-local` field shows an expiry (to the minute, UTC).
pub fn expiry_field_value(expiry: Option<DateTime<Utc>>) -> String {
    expiry.map(|t| t.format("%Y-%m-%dT%H:%M").to_string()).unwrap_or_default()
}

fn number<T: std::str::FromStr>(raw: &str, problem: &str) -> Result<Option<T>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| problem.to_owned())
}

/// Scopes separated by spaces or commas; a wrong one is named, with what a scope looks like.
fn form_scopes(raw: &str) -> Result<Scopes, String> {
    let parts: Vec<&str> = raw.split(|c: char| c.is_whitespace() || c == ',').filter(|s| !s.is_empty()).collect();
    if let Some(wrong) = parts.iter().find(|part| Scopes::parse(&[part]).is_err()) {
        return Err(format!(
            "\"{wrong}\" is not a scope. A scope is a resource and an action joined by a colon, in lowercase \
             letters, digits, \"-\" or \"_\", such as flows:execute."
        ));
    }
    Scopes::parse(&parts).map_err(|e| plain("A key has", &e.message))
}

fn form_description(raw: &str) -> Result<Option<Description>, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    Description::parse(trimmed).map(Some).map_err(|e| plain("The description", &e.message))
}

/// `datetime-local` values carry no zone; the form says they are UTC.
fn form_expiry(raw: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, String> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let parsed = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| "Enter a date and time (UTC), or leave it empty for a key that never expires.".to_owned())?
        .and_utc();
    if parsed <= now {
        return Err("The expiry must be in the future.".to_owned());
    }
    Ok(Some(parsed))
}
