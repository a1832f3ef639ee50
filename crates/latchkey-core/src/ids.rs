//! Identifiers. Each is a ULID with a type prefix (`key_…`, `site_…`, `evt_…`), so ids
//! sort by creation time (newest-first pagination is an index scan) and a mixed-up id
//! is visibly wrong in a log.

use std::fmt;
use std::sync::Mutex;

/// One generator for the process, so ids made in the same millisecond still sort in
/// creation order (a plain `Ulid::new()` is random within a millisecond).
static GENERATOR: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());

fn next_ulid() -> ulid::Ulid {
    let mut generator = GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Overflow needs 2^80 ids in one millisecond; fall back to a random one regardless.
    generator.generate().unwrap_or_else(|_| ulid::Ulid::new())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $type:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $type(String);

        impl $type {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, next_ulid()))
            }

            /// Accepts any string of the right shape; unknown ids are the store's business.
            pub fn parse(raw: &str) -> Option<Self> {
                let ulid = raw.strip_prefix($prefix)?;
                ulid::Ulid::from_string(ulid).ok()?;
                Some(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id without its type prefix, as 16 bytes (compact, for caches).
            pub fn ulid(&self) -> ulid::Ulid {
                ulid::Ulid::from_string(&self.0[$prefix.len()..]).expect("ids are built valid")
            }

            pub fn from_ulid(ulid: ulid::Ulid) -> Self {
                Self(format!("{}{}", $prefix, ulid))
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// Identifies a key. Not secret: it appears in listings, audit records and URLs.
    KeyId,
    "key_"
);
id_type!(
    /// Identifies a site (the Forja seed's unit of ownership).
    SiteId,
    "site_"
);
id_type!(
    /// Identifies an audit event.
    EventId,
    "evt_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_other_kinds() {
        let id = KeyId::generate();
        assert_eq!(KeyId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(SiteId::parse(id.as_str()), None);
        assert_eq!(KeyId::parse("key_nope"), None);
        assert_eq!(KeyId::from_ulid(id.ulid()), id);
    }
}
