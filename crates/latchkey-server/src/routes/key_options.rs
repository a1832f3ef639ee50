//! JSON shapes of a key's optional settings (owner, metadata, IP allowlist, rate limit,
//! credits, rotation links) and their conversion to and from the core's `KeyOptions`.

use crate::error::ApiError;
use latchkey_core::options::parse_allowlist;
use latchkey_core::{CreditsEdit, KeyOptions, Metadata, OwnerId, RateLimit, Refill};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBody {
    /// Verifications allowed per window (per instance).
    pub limit: u32,
    /// 1 to 86400.
    pub window_seconds: u32,
}

#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefillBody {
    /// `daily` or `monthly` (UTC).
    pub interval: String,
    pub amount: u64,
}

#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditsBody {
    /// Uses left; each successful verification spends its `cost` (default 1).
    pub remaining: u64,
    pub refill: Option<RefillBody>,
}

/// The optional settings as shown on a key.
#[derive(Serialize, ToSchema)]
pub struct KeyOptionsView {
    pub owner_id: Option<String>,
    /// A free JSON object.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    pub ip_allowlist: Vec<String>,
    pub ratelimit: Option<RateLimitBody>,
    pub credits: Option<CreditsBody>,
    pub rotated_from: Option<String>,
    pub rotated_to: Option<String>,
}

pub fn metadata_value(metadata: &Metadata) -> Value {
    serde_json::from_str(metadata.as_str()).unwrap_or(Value::Null)
}

impl KeyOptionsView {
    pub fn of(options: &KeyOptions) -> Self {
        Self {
            owner_id: options.owner_id.as_ref().map(|o| o.as_str().to_owned()),
            metadata: options.metadata.as_ref().map(metadata_value),
            ip_allowlist: options.ip_allowlist.iter().map(ToString::to_string).collect(),
            ratelimit: options.ratelimit.map(|r| RateLimitBody { limit: r.limit, window_seconds: r.window_seconds }),
            credits: options.credits.map(|c| CreditsBody {
                remaining: c.remaining,
                refill: c.refill.map(|r| RefillBody { interval: r.interval.as_str().to_owned(), amount: r.amount }),
            }),
            rotated_from: options.rotated_from.as_ref().map(ToString::to_string),
            rotated_to: options.rotated_to.as_ref().map(ToString::to_string),
        }
    }
}

pub fn parse_owner(raw: &str) -> Result<OwnerId, ApiError> {
    Ok(OwnerId::parse(raw)?)
}

pub fn parse_metadata(object: &Map<String, Value>) -> Result<Metadata, ApiError> {
    Ok(Metadata::parse(&Value::Object(object.clone()).to_string())?)
}

pub fn parse_ratelimit(body: &RateLimitBody) -> Result<RateLimit, ApiError> {
    Ok(RateLimit::new(body.limit, body.window_seconds)?)
}

/// The balance and refill plan a body asks for; the service decides the refill period.
pub fn parse_credits(body: &CreditsBody) -> Result<CreditsEdit, ApiError> {
    let refill = body
        .refill
        .as_ref()
        .map(|r| Ok::<_, ApiError>(Refill { interval: r.interval.parse()?, amount: r.amount }))
        .transpose()?;
    Ok(CreditsEdit { remaining: body.remaining, refill: Some(refill) })
}

pub fn parse_ip_allowlist(raw: &[String]) -> Result<Vec<latchkey_core::IpNetwork>, ApiError> {
    Ok(parse_allowlist(raw)?)
}
