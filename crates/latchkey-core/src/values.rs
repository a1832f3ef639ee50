//! Value types that can only be built valid ("parse, don't validate"): once a handler
//! holds a `KeyName` or a `Scope`, no other layer re-checks it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a value was refused. The message is safe to show to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidValue {
    pub field: &'static str,
    pub message: String,
}

impl InvalidValue {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidValue {}

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
pub const MAX_SCOPES: usize = 64;
pub const MAX_SCOPE_CHARS: usize = 100;

fn parse_name(field: &'static str, raw: &str) -> Result<String, InvalidValue> {
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err(InvalidValue::new(field, "must not be empty"));
    }
    if chars > MAX_NAME_CHARS {
        return Err(InvalidValue::new(field, format!("must be at most {MAX_NAME_CHARS} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(InvalidValue::new(field, "must not contain control characters"));
    }
    if trimmed.chars().any(is_invisible_format_char) {
        return Err(InvalidValue::new(field, "must not contain invisible or text-direction characters"));
    }
    Ok(trimmed.to_owned())
}

/// Characters that change how text around them is shown without being seen themselves:
/// bidirectional overrides and isolates (a name like "admin\u{202E}txt.exe" reads as
/// something else on the dashboard) and zero-width characters (two names that look the
/// same but differ).
pub fn is_invisible_format_char(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' // zero-width space, joiners, LRM, RLM
        | '\u{202A}'..='\u{202E}' // embeddings and overrides
        | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}' // isolates
        | '\u{FEFF}' // zero-width no-break space
        | '\u{061C}' // Arabic letter mark
    )
}

macro_rules! name_type {
    ($(#[$doc:meta])* $type:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $type(String);

        impl $type {
            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                parse_name($field, raw).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A key's descriptive name, 1 to 100 characters ("Astro blog frontend").
    KeyName,
    "name"
);
name_type!(
    /// A site's name, 1 to 100 characters.
    SiteName,
    "name"
);

/// Free text explaining a key's purpose, up to 1000 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(InvalidValue::new(
                "description",
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        if raw.chars().any(is_invisible_format_char) {
            return Err(InvalidValue::new("description", "must not contain invisible or text-direction characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The four levels of the Forja seed, ordered: Read < Write < Admin < Master.
///
/// Deliberately not `PartialOrd`: only the policy in this crate compares levels (through
/// the crate-private [`Permission::rank`]), so no handler can decide on its own that a
/// level is "high enough". Ask `Caller` or `Requirement` instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
    Admin,
    /// System-wide: a Master key belongs to no site and reaches every site.
    Master,
}

impl Permission {
    pub const ALL: [Permission; 4] = [Permission::Read, Permission::Write, Permission::Admin, Permission::Master];

    /// The level's place in the order; visible to the policy only.
    pub(crate) fn rank(self) -> u8 {
        self as u8
    }

    /// True when this level includes everything `other` may do.
    pub(crate) fn includes(self, other: Permission) -> bool {
        self.rank() >= other.rank()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
            Permission::Master => "master",
        }
    }
}

impl FromStr for Permission {
    type Err = InvalidValue;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == raw)
            .ok_or_else(|| InvalidValue::new("permission", "must be one of read, write, admin, master"))
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a key may be used at all. Blocking keeps the record (the Forja seed's Block).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Blocked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Blocked => "blocked",
        }
    }
}

impl FromStr for Status {
    type Err = InvalidValue;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "active" => Ok(Status::Active),
            "blocked" => Ok(Status::Blocked),
            _ => Err(InvalidValue::new("status", "must be active or blocked")),
        }
    }
}

/// A fine-grained permission (the Forjinn seed's "execute flows"): `resource:action`,
/// each part of `[a-z0-9_-]`, e.g. `flows:execute`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(String);

impl Scope {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let valid_part = |part: &str| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        };
        match raw.split_once(':') {
            Some((resource, action)) if raw.len() <= MAX_SCOPE_CHARS && valid_part(resource) && valid_part(action) => {
                Ok(Self(raw.to_owned()))
            }
            _ => {
                Err(InvalidValue::new("scopes", format!("{raw:?} is not of the form resource:action using [a-z0-9_-]")))
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key's set of scopes: sorted and without duplicates, at most 64.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scopes(Vec<Scope>);

/// Written as a list of strings (`["flows:execute"]`).
impl Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|scope| scope.as_str()))
    }
}

impl Scopes {
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, InvalidValue> {
        if raw.len() > MAX_SCOPES {
            return Err(InvalidValue::new("scopes", format!("at most {MAX_SCOPES} scopes")));
        }
        let mut scopes = raw.iter().map(|s| Scope::parse(s.as_ref())).collect::<Result<Vec<_>, _>>()?;
        scopes.sort();
        scopes.dedup();
        Ok(Self(scopes))
    }

    pub fn contains_all(&self, required: &Scopes) -> bool {
        required.0.iter().all(|scope| self.0.binary_search(scope).is_ok())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|s| s.0.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_descriptions_refuse_text_direction_and_zero_width_characters() {
        for sneaky in ["admin\u{202E}txt.exe", "ci\u{200B}deploy", "\u{2066}x\u{2069}", "a\u{FEFF}b"] {
            assert!(KeyName::parse(sneaky).is_err(), "{sneaky:?}");
            assert!(SiteName::parse(sneaky).is_err(), "{sneaky:?}");
            assert!(Description::parse(sneaky).is_err(), "{sneaky:?}");
        }
        assert!(KeyName::parse("Café déploiement ✓").is_ok(), "ordinary non-ASCII text is fine");
        assert!(KeyName::parse("עברית").is_ok(), "right-to-left scripts are fine; only the controls are refused");
    }

    #[test]
    fn names_are_trimmed_and_limited_to_100_characters() {
        assert_eq!(KeyName::parse("  CI deploy ").unwrap().as_str(), "CI deploy");
        assert!(KeyName::parse("   ").is_err());
        assert!(KeyName::parse(&"é".repeat(100)).is_ok());
        assert!(KeyName::parse(&"é".repeat(101)).is_err());
        assert!(KeyName::parse("a\nb").is_err());
    }

    #[test]
    fn permissions_are_ordered_as_in_the_seed() {
        assert!(Permission::Write.includes(Permission::Read) && !Permission::Read.includes(Permission::Write));
        assert!(Permission::Admin.includes(Permission::Write) && !Permission::Write.includes(Permission::Admin));
        assert!(Permission::Master.includes(Permission::Admin) && !Permission::Admin.includes(Permission::Master));
        assert_eq!("admin".parse::<Permission>().unwrap(), Permission::Admin);
        assert!("owner".parse::<Permission>().is_err());
    }

    #[test]
    fn scopes_must_be_resource_colon_action() {
        assert!(Scope::parse("flows:execute").is_ok());
        assert!(Scope::parse("view_logs:read-all").is_ok());
        for bad in ["flows", ":execute", "flows:", "Flows:execute", "flows:ex:ecute", "flows:ex ecute"] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_are_sorted_deduplicated_and_checked_as_a_set() {
        let held = Scopes::parse(&["logs:view", "flows:execute", "logs:view"]).unwrap();
        assert_eq!(held.to_strings(), ["flows:execute", "logs:view"]);
        assert!(held.contains_all(&Scopes::parse(&["logs:view"]).unwrap()));
        assert!(!held.contains_all(&Scopes::parse(&["deployments:manage"]).unwrap()));
    }
}
