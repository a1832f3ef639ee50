//! A key's fields as a form, shared by New API Key and the key page's Edit form: each
//! field with its label, the value as typed (or as stored), and its problem beneath it.

use super::capitalized;
use super::forms::{FieldErrors, KeyFields, OptionsFields};
use super::views::{field_error, invalid};
use latchkey_core::Permission;
use maud::{html, Markup};

/// Name, level, scopes, description, expiry and the optional settings.
pub fn key_fields(values: &KeyFields, errors: &FieldErrors, levels: &[Permission]) -> Markup {
    let (name_bad, name_error) = invalid(errors, "name");
    let (level_bad, level_error) = invalid(errors, "permission");
    let (scopes_bad, scopes_error) = invalid(errors, "scopes");
    let (description_bad, description_error) = invalid(errors, "description");
    let (expiry_bad, expiry_error) = invalid(errors, "expires_at");
    html! {
        label for="name" { "Name" }
        input #name type="text" name="name" maxlength="100" required placeholder="Astro blog frontend"
            value=(values.name) aria-invalid=[name_bad] aria-describedby=[name_error];
        (field_error(errors, "name"))
        label for="permission" { "Permission level" }
        select #permission name="permission" aria-invalid=[level_bad] aria-describedby=[level_error] {
            @for level in levels {
                option value=(level.as_str()) selected[values.permission == level.as_str()] { (capitalized(level.as_str())) }
            }
        }
        p.hint { "Read and Write keys are for your applications; Admin keys manage one site's keys; Master keys manage everything." }
        (field_error(errors, "permission"))
        label for="scopes" { "Fine-grained scopes (optional)" }
        input #scopes type="text" name="scopes" placeholder="flows:execute logs:view" value=(values.scopes)
            aria-invalid=[scopes_bad] aria-describedby=[scopes_error];
        p.hint { "Separated by spaces. Each is a resource and an action, such as flows:execute." }
        (field_error(errors, "scopes"))
        label for="description" { "Description (optional)" }
        textarea #description name="description" maxlength="1000" rows="2"
            aria-invalid=[description_bad] aria-describedby=[description_error] { (values.description) }
        (field_error(errors, "description"))
        label for="expires_at" { "Expires at, UTC (optional; empty: never)" }
        input #expires_at type="datetime-local" name="expires_at" value=(values.expires_at)
            aria-invalid=[expiry_bad] aria-describedby=[expiry_error];
        (field_error(errors, "expires_at"))
        (options_fields(&values.options, errors))
    }
}

/// The optional settings.
fn options_fields(options: &OptionsFields, errors: &FieldErrors) -> Markup {
    let fields: [(&str, &str, &str, &str, &str); 5] = [
        ("owner_id", "Owner id (your user or customer id)", "text", &options.owner_id, "customer-42"),
        (
            "ip_allowlist",
            "IP allowlist (networks, space-separated; empty: anywhere)",
            "text",
            &options.ip_allowlist,
            "10.0.0.0/8 ::1/128",
        ),
        ("ratelimit_limit", "Rate limit: requests per window (empty: none)", "number", &options.ratelimit_limit, ""),
        ("ratelimit_window", "Window, in seconds", "number", &options.ratelimit_window, "60"),
        ("credits_remaining", "Usage credits left (empty: unlimited)", "number", &options.credits_remaining, ""),
    ];
    html! {
        fieldset {
            legend { "Limits and ownership (optional)" }
            @for (name, label, kind, value, placeholder) in fields {
                @let (bad, described) = invalid(errors, name);
                label for=(name) { (label) }
                input id=(name) name=(name) type=(kind) value=(value) min=[(kind == "number").then_some("0")]
                    placeholder=[(!placeholder.is_empty()).then_some(placeholder)]
                    aria-invalid=[bad] aria-describedby=[described];
                (field_error(errors, name))
            }
            input type="hidden" name="credits_was" value=(options.credits_was);
        }
    }
}
