//! Verification: `client.verify(&request)` asks `POST /api/v1/verify` whether a key may
//! make a request, and `Refusal` reads its answer's `code` in Latchkey's one vocabulary,
//! with the status and message that Latchkey's own error table gives each refusal.

use crate::client::Client;
use crate::error::ClientError;
use crate::keys::{KeyId, Permission};
use crate::secret::ApiKey;
use crate::sites::SiteId;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::IpAddr;

/// What to check: the key, and what the request needs of it. `Debug` redacts the key.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyRequest {
    pub key: ApiKey,
    /// The least level the key must have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<Permission>,
    /// Scopes the key must all hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The site the request is for; a Master key fits every site.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_id: Option<SiteId>,
    /// The end client's address, for keys with an IP allowlist; without it Latchkey
    /// checks the address of whoever calls `/verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// Credits this request spends, for keys with usage credits (Latchkey's default: 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<u64>,
}

impl VerifyRequest {
    /// Any valid key passes; add requirements with the methods below.
    pub fn new(key: impl Into<ApiKey>) -> Self {
        Self { key: key.into(), permission: None, scopes: Vec::new(), site_id: None, ip: None, cost: None }
    }

    pub fn require(self, permission: Permission) -> Self {
        Self { permission: Some(permission), ..self }
    }

    pub fn require_scopes(self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { scopes: scopes.into_iter().map(Into::into).collect(), ..self }
    }

    pub fn for_site(self, site: &SiteId) -> Self {
        Self { site_id: Some(site.clone()), ..self }
    }

    pub fn from_ip(self, ip: IpAddr) -> Self {
        Self { ip: Some(ip), ..self }
    }

    pub fn costing(self, cost: u64) -> Self {
        Self { cost: Some(cost), ..self }
    }
}

/// Latchkey's verdict. `valid` says whether to let the request through, `code` why not.
#[derive(Clone, Debug, Deserialize)]
pub struct VerifyAnswer {
    pub valid: bool,
    /// `valid`, or the refusal's code (see [`Refusal`]).
    pub code: String,
    /// The key's metadata, whenever the key exists (even when it is refused).
    #[serde(flatten)]
    pub key: Option<VerifiedKey>,
    /// Credits left after this request, for keys with usage credits.
    pub remaining: Option<u64>,
    /// Where the key stands in its rate-limit window, for keys with a rate limit (from
    /// Latchkey versions that say so; `None` from older ones).
    #[serde(default)]
    pub ratelimit: Option<RateLimitStanding>,
}

/// A key's rate-limit window after a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct RateLimitStanding {
    /// Verifications allowed per window.
    pub limit: u32,
    /// Verifications left in this window.
    pub remaining: u32,
    /// Seconds until the window ends; for a `rate_limited` refusal, when to retry.
    pub reset: u64,
}

impl VerifyAnswer {
    /// Why the key was refused; `None` when it is valid.
    pub fn refusal(&self) -> Option<Refusal> {
        (!self.valid).then(|| Refusal::from_code(&self.code))
    }
}

/// Who a verified key is: what a guarded handler gets (as the `VerifiedKey` extractor with
/// feature `middleware`). Never the key itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifiedKey {
    #[serde(rename = "key_id")]
    pub id: KeyId,
    pub name: String,
    /// `None` for a Master key, which belongs to no site (and fits every site).
    pub site_id: Option<SiteId>,
    pub permission: Permission,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The platform's own user or customer id, if the key has one.
    pub owner_id: Option<String>,
    /// The free JSON object stored with the key.
    pub metadata: Option<Value>,
}

/// Why a key may not make a request, in Latchkey's one vocabulary: the same word in
/// `/verify`'s `code` and in the error body's `code`, with the same status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    code: String,
}

/// Latchkey's refusals: code, status, message. `tests/client/vocabulary.rs` checks this
/// table against the server's, so a change there fails here rather than in production.
const REFUSALS: [(&str, StatusCode, &str); 10] = [
    ("missing_api_key", StatusCode::UNAUTHORIZED, "send the API key in the X-API-Key header"),
    ("invalid_api_key", StatusCode::UNAUTHORIZED, "the API key is not valid"),
    ("key_blocked", StatusCode::UNAUTHORIZED, "the API key is blocked"),
    ("key_expired", StatusCode::UNAUTHORIZED, "the API key has expired"),
    ("ip_not_allowed", StatusCode::UNAUTHORIZED, "this key may not be used from this address"),
    ("insufficient_permission", StatusCode::FORBIDDEN, "this key's level is too low for this request"),
    ("missing_scope", StatusCode::FORBIDDEN, "this key lacks a scope this request needs"),
    ("wrong_site", StatusCode::FORBIDDEN, "this key belongs to another site"),
    ("rate_limited", StatusCode::TOO_MANY_REQUESTS, "this key is over its rate limit; retry later"),
    ("usage_exceeded", StatusCode::TOO_MANY_REQUESTS, "this key has no usage credits left"),
];

impl Refusal {
    pub fn from_code(code: impl Into<String>) -> Self {
        Self { code: code.into() }
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    /// The status Latchkey's error table gives this refusal: 401 for the key itself, 403
    /// for what the request needs, 429 for limits. A code this client does not know yet
    /// is still a refusal; 403 says so without claiming the key is unknown.
    pub fn status(&self) -> StatusCode {
        self.known().map_or(StatusCode::FORBIDDEN, |(_, status, _)| status)
    }

    /// A sentence safe to show to whoever presented the key.
    pub fn message(&self) -> &'static str {
        self.known().map_or("this key may not make this request", |(_, _, message)| message)
    }

    fn known(&self) -> Option<(&'static str, StatusCode, &'static str)> {
        REFUSALS.iter().copied().find(|(code, _, _)| *code == self.code)
    }
}

impl Client {
    /// `POST /api/v1/verify`. Needs no key of the client's own: the key being checked is
    /// the credential. Counts as a use of that key. A refusal is an answer, not an error;
    /// the error is for calls Latchkey will not answer (e.g. 429 when too many unknown
    /// keys came from this address).
    pub async fn verify(&self, request: &VerifyRequest) -> Result<VerifyAnswer, ClientError> {
        self.call(self.request(Method::POST, &["verify"]).json(request)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_for_an_unknown_key_has_no_key_metadata() {
        let answer: VerifyAnswer =
            serde_json::from_value(json!({ "valid": false, "code": "invalid_api_key" })).unwrap();
        assert!(answer.key.is_none());
        assert_eq!(answer.refusal().unwrap().status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn an_answer_for_a_refused_key_that_exists_keeps_its_metadata() {
        let answer: VerifyAnswer = serde_json::from_value(json!({
            "valid": false, "code": "insufficient_permission", "key_id": "key_1", "name": "reader",
            "site_id": "site_1", "permission": "read", "scopes": [], "expires_at": null,
            "owner_id": "customer-42", "metadata": null, "a_field_from_a_newer_server": 1,
        }))
        .unwrap();
        assert_eq!(answer.key.unwrap().owner_id.as_deref(), Some("customer-42"));
        assert_eq!(answer.ratelimit, None);
    }

    #[test]
    fn a_rate_limited_answer_says_when_the_window_ends() {
        let answer: VerifyAnswer = serde_json::from_value(json!({
            "valid": false, "code": "rate_limited", "key_id": "key_1", "name": "n", "site_id": null,
            "permission": "read", "scopes": [], "expires_at": null, "owner_id": null, "metadata": null,
            "ratelimit": { "limit": 10, "remaining": 0, "reset": 42 },
        }))
        .unwrap();
        assert_eq!(answer.ratelimit, Some(RateLimitStanding { limit: 10, remaining: 0, reset: 42 }));
        assert!(answer.key.is_some(), "the window does not hide the key's metadata");
    }

    #[test]
    fn a_refusal_this_client_does_not_know_is_still_refused() {
        assert_eq!(Refusal::from_code("a_future_refusal").status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn a_verify_request_debug_output_never_shows_the_key() {
        let request = VerifyRequest::new("lk_thewholesecret").require(Permission::Write);
        assert!(!format!("{request:?}").contains("thewholesecret"));
    }
}
