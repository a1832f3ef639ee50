//! The optional settings a key may carry beyond name, level and scopes: who owns it,
//! free metadata, where it may be used from, how fast and how often it may be used, and
//! which key it replaced or was replaced by. All optional; a plain key has none.

use crate::ids::KeyId;
use crate::values::InvalidValue;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use std::net::IpAddr;
use std::str::FromStr;

pub const MAX_OWNER_CHARS: usize = 255;
pub const MAX_METADATA_BYTES: usize = 4096;
pub const MAX_ALLOWLIST_ENTRIES: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyOptions {
    pub owner_id: Option<OwnerId>,
    pub metadata: Option<Metadata>,
    pub ip_allowlist: Vec<IpNetwork>,
    pub ratelimit: Option<RateLimit>,
    pub credits: Option<Credits>,
    /// The key this one replaced by rotation.
    pub rotated_from: Option<KeyId>,
    /// The key that replaced this one by rotation.
    pub rotated_to: Option<KeyId>,
}

/// True when a key with this allowlist may be used from `ip`. No allowlist: anywhere. An
/// allowlist and an unknown address: nowhere.
pub fn allows_ip(allowlist: &[IpNetwork], ip: Option<IpAddr>) -> bool {
    allowlist.is_empty() || ip.is_some_and(|ip| allowlist.iter().any(|net| net.contains(ip)))
}

/// The platform's own user or customer id owning a key; opaque to Latchkey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerId(String);

impl OwnerId {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let chars = raw.chars().count();
        // Shown on the dashboard and matched exactly: no control, text-direction or
        // zero-width characters, which would make two owners look alike.
        let hidden = |c: char| c.is_control() || crate::values::is_invisible_format_char(c);
        if chars == 0 || chars > MAX_OWNER_CHARS || raw.chars().any(hidden) {
            return Err(InvalidValue {
                field: "owner_id",
                message: format!(
                    "must be 1 to {MAX_OWNER_CHARS} characters without control, text-direction or zero-width characters"
                ),
            });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A JSON object as text (the HTTP layer checks it is an object), at most 4 KiB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata(String);

impl Metadata {
    pub fn parse(json_object: &str) -> Result<Self, InvalidValue> {
        if json_object.len() > MAX_METADATA_BYTES {
            return Err(InvalidValue {
                field: "metadata",
                message: format!("must be at most {MAX_METADATA_BYTES} bytes"),
            });
        }
        Ok(Self(json_object.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNetwork {
    address: IpAddr,
    prefix_len: u8,
}

impl IpNetwork {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_matches(&net.octets(), &ip.octets(), self.prefix_len),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_matches(&net.octets(), &ip.octets(), self.prefix_len),
            (IpAddr::V6(net), IpAddr::V4(ip)) => {
                prefix_matches(&net.octets(), &ip.to_ipv6_mapped().octets(), self.prefix_len)
            }
            (IpAddr::V4(_), IpAddr::V6(ip)) => ip.to_ipv4_mapped().is_some_and(|v4| self.contains(IpAddr::V4(v4))),
        }
    }
}

fn prefix_matches(network: &[u8], ip: &[u8], prefix_len: u8) -> bool {
    let full = usize::from(prefix_len / 8);
    let rest = prefix_len % 8;
    network[..full] == ip[..full] && (rest == 0 || (network[full] ^ ip[full]) >> (8 - rest) == 0)
}

impl FromStr for IpNetwork {
    type Err = InvalidValue;

    fn from_str(raw: &str) -> Result<Self, InvalidValue> {
        let invalid =
            || InvalidValue { field: "ip_allowlist", message: format!("{raw:?} is not an IP address or CIDR") };
        let (address, prefix) = raw.split_once('/').map_or((raw, None), |(a, p)| (a, Some(p)));
        let address: IpAddr = address.trim().parse().map_err(|_| invalid())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(invalid)?,
            None => max,
        };
        Ok(Self { address, prefix_len })
    }
}

impl std::fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

pub fn parse_allowlist<S: AsRef<str>>(raw: &[S]) -> Result<Vec<IpNetwork>, InvalidValue> {
    if raw.len() > MAX_ALLOWLIST_ENTRIES {
        return Err(InvalidValue {
            field: "ip_allowlist",
            message: format!("at most {MAX_ALLOWLIST_ENTRIES} entries"),
        });
    }
    raw.iter().map(|entry| entry.as_ref().parse()).collect()
}

/// At most `limit` verifications per `window_seconds`, per instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub window_seconds: u32,
}

impl RateLimit {
    pub fn new(limit: u32, window_seconds: u32) -> Result<Self, InvalidValue> {
        if limit == 0 || !(1..=86_400).contains(&window_seconds) {
            return Err(InvalidValue {
                field: "ratelimit",
                message: "limit must be at least 1 and window_seconds between 1 and 86400".into(),
            });
        }
        Ok(Self { limit, window_seconds })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefillInterval {
    Daily,
    Monthly,
}

impl RefillInterval {
    pub fn as_str(self) -> &'static str {
        match self {
            RefillInterval::Daily => "daily",
            RefillInterval::Monthly => "monthly",
        }
    }

    /// The start (UTC) of the refill period that contains `at`.
    pub fn period_start(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let day = at.date_naive();
        let start = match self {
            RefillInterval::Daily => day,
            RefillInterval::Monthly => day.with_day(1).expect("every month has a first day"),
        };
        Utc.from_utc_datetime(&start.and_hms_opt(0, 0, 0).expect("midnight exists"))
    }
}

impl FromStr for RefillInterval {
    type Err = InvalidValue;

    fn from_str(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "daily" => Ok(RefillInterval::Daily),
            "monthly" => Ok(RefillInterval::Monthly),
            _ => Err(InvalidValue { field: "credits", message: "refill interval must be daily or monthly".into() }),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refill {
    pub interval: RefillInterval,
    pub amount: u64,
}

/// A number of uses left (Unkey's `remaining`), optionally refilled every day or month.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credits {
    pub remaining: u64,
    pub refill: Option<Refill>,
    /// The start of the refill period the balance belongs to.
    pub refilled_at: Option<DateTime<Utc>>,
}

impl Credits {
    /// Spends `cost` at `now`: refills first if a new period began. `None` when the
    /// balance cannot cover the cost (nothing is spent then).
    pub fn spend(&self, cost: u64, now: DateTime<Utc>) -> Option<Credits> {
        let mut next = *self;
        if let Some(refill) = self.refill {
            let period = refill.interval.period_start(now);
            if self.refilled_at.is_none_or(|at| at < period) {
                next.remaining = refill.amount;
                next.refilled_at = Some(period);
            }
        }
        next.remaining = next.remaining.checked_sub(cost)?;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_ids_refuse_characters_that_hide_what_they_say() {
        assert!(OwnerId::parse("customer-42").is_ok());
        for sneaky in ["cust\u{200B}omer", "a\u{202E}b", "a\u{0007}b", ""] {
            assert!(OwnerId::parse(sneaky).is_err(), "{sneaky:?}");
        }
    }

    #[test]
    fn allowlists_match_ipv4_and_ipv6_networks() {
        let list = parse_allowlist(&["10.0.0.0/8", "::1/128"]).unwrap();
        assert!(allows_ip(&list, Some("10.20.30.40".parse().unwrap())));
        assert!(allows_ip(&list, Some("::1".parse().unwrap())));
        assert!(!allows_ip(&list, Some("11.0.0.1".parse().unwrap())));
        assert!(!allows_ip(&list, Some("::2".parse().unwrap())));
        assert!(!allows_ip(&list, None));
        assert!(allows_ip(&[], None));
        assert!("10.0.0.0/33".parse::<IpNetwork>().is_err());
        assert!("192.168.0.0/23".parse::<IpNetwork>().unwrap().contains("192.168.1.9".parse().unwrap()));
    }

    #[test]
    fn credits_are_spent_and_refilled_per_period() {
        let day1 = Utc.with_ymd_and_hms(2026, 1, 31, 23, 0, 0).unwrap();
        let credits = Credits {
            remaining: 2,
            refill: Some(Refill { interval: RefillInterval::Daily, amount: 5 }),
            refilled_at: Some(RefillInterval::Daily.period_start(day1)),
        };
        let spent = credits.spend(2, day1).unwrap();
        assert_eq!(spent.remaining, 0);
        assert_eq!(spent.spend(1, day1), None);
        let day2 = day1 + chrono::Duration::hours(2);
        assert_eq!(spent.spend(1, day2).unwrap().remaining, 4);
        assert_eq!(RefillInterval::Monthly.period_start(day2), Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap());
    }
}
