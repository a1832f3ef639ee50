//! Why a presented key may not make a request: one vocabulary for every path that takes a
//! key (management API, verify, forward-auth, dashboard, CLI, middleware), so that the
//! `code` a service reads from `/verify` is the same word the error table uses.

use crate::options::RateLimit;
use crate::policy::Unmet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No key was presented.
    MissingKey,
    /// Malformed, bad checksum, or unknown: deliberately indistinguishable.
    InvalidKey,
    Blocked,
    Expired,
    /// The key has an IP allowlist and the client's address is not on it.
    IpNotAllowed,
    InsufficientPermission,
    MissingScope,
    WrongSite,
    /// The key is over its own rate limit.
    RateLimited {
        retry_after_seconds: u64,
        limit: RateLimit,
    },
    /// The key has no usage credits left.
    UsageExceeded,
    /// Too many unknown keys from this client address: guessing is slowed down.
    Throttled {
        retry_after_seconds: u64,
        limit: RateLimit,
    },
}

impl Refusal {
    /// One of each kind (retry times 1 s), for tables and tests that must cover them all.
    pub const EVERY_KIND: [Refusal; 11] = [
        Refusal::MissingKey,
        Refusal::InvalidKey,
        Refusal::Blocked,
        Refusal::Expired,
        Refusal::IpNotAllowed,
        Refusal::InsufficientPermission,
        Refusal::MissingScope,
        Refusal::WrongSite,
        Refusal::RateLimited { retry_after_seconds: 1, limit: RateLimit { limit: 1, window_seconds: 1 } },
        Refusal::UsageExceeded,
        Refusal::Throttled { retry_after_seconds: 1, limit: RateLimit { limit: 1, window_seconds: 1 } },
    ];

    /// The stable machine name, shared by `/verify`'s `code` and the error body's `code`.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::MissingKey => "missing_api_key",
            Refusal::InvalidKey => "invalid_api_key",
            Refusal::Blocked => "key_blocked",
            Refusal::Expired => "key_expired",
            Refusal::IpNotAllowed => "ip_not_allowed",
            Refusal::InsufficientPermission => "insufficient_permission",
            Refusal::MissingScope => "missing_scope",
            Refusal::WrongSite => "wrong_site",
            Refusal::RateLimited { .. } | Refusal::Throttled { .. } => "rate_limited",
            Refusal::UsageExceeded => "usage_exceeded",
        }
    }

    /// The names `/verify` used before the vocabulary was unified, for clients that ask
    /// for them (`?codes=legacy`). Only these three changed.
    pub fn legacy_code(self) -> &'static str {
        match self {
            Refusal::InvalidKey => "not_found",
            Refusal::Blocked => "blocked",
            Refusal::Expired => "expired",
            other => other.code(),
        }
    }

    /// A sentence safe to show to whoever presented the key.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::MissingKey => "send the API key in the X-API-Key header",
            Refusal::InvalidKey => "the API key is not valid",
            Refusal::Blocked => "the API key is blocked",
            Refusal::Expired => "the API key has expired",
            Refusal::IpNotAllowed => "this key may not be used from this address",
            Refusal::InsufficientPermission => "this key's level is too low for this request",
            Refusal::MissingScope => "this key lacks a scope this request needs",
            Refusal::WrongSite => "this key belongs to another site",
            Refusal::RateLimited { .. } => "this key is over its rate limit; retry later",
            Refusal::UsageExceeded => "this key has no usage credits left",
            Refusal::Throttled { .. } => "too many failed verifications from this address; retry later",
        }
    }

    pub fn retry_after_seconds(self) -> Option<u64> {
        self.exceeded_limit().map(|(retry_after_seconds, _)| retry_after_seconds)
    }

    /// For the limits: when a request may succeed again, and the limit that was reached
    /// (what the `RateLimit-Policy` header describes).
    pub fn exceeded_limit(self) -> Option<(u64, RateLimit)> {
        match self {
            Refusal::RateLimited { retry_after_seconds, limit } | Refusal::Throttled { retry_after_seconds, limit } => {
                Some((retry_after_seconds, limit))
            }
            _ => None,
        }
    }
}

impl From<Unmet> for Refusal {
    fn from(unmet: Unmet) -> Self {
        match unmet {
            Unmet::InsufficientPermission => Refusal::InsufficientPermission,
            Unmet::MissingScope => Refusal::MissingScope,
            Unmet::WrongSite => Refusal::WrongSite,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_codes_differ_from_the_legacy_verify_vocabulary() {
        let renamed: Vec<_> =
            Refusal::EVERY_KIND.iter().filter(|r| r.code() != r.legacy_code()).map(|r| r.legacy_code()).collect();
        assert_eq!(renamed, ["not_found", "blocked", "expired"]);
    }
}
