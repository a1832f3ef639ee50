//! Throttling of failed verifications per client address.
//!
//! Only failures are counted and only failures are refused: a client over the limit gets
//! 429 with `Retry-After` instead of 401, while its requests with a valid key still pass.
//! That keeps a shared NAT address usable for well-behaved clients and still makes
//! guessing slow and loud. Successful requests never touch this map.

use dashmap::DashMap;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug)]
pub struct ThrottleConfig {
    /// Failures allowed per window and address; 0 turns throttling off.
    pub max_failures: u32,
    pub window_seconds: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self { max_failures: 60, window_seconds: 60 }
    }
}

pub struct FailureThrottle {
    config: ThrottleConfig,
    /// address → (window number, failures in it)
    windows: DashMap<IpAddr, (i64, u32)>,
}

impl FailureThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self { config, windows: DashMap::new() }
    }

    /// Counts a failure; returns `Some(retry_after_seconds)` when the address is over its limit.
    pub fn record_failure(&self, ip: Option<IpAddr>, now_seconds: i64) -> Option<u64> {
        let ip = ip?;
        if self.config.max_failures == 0 {
            return None;
        }
        let window = i64::from(self.config.window_seconds.max(1));
        let current = now_seconds.div_euclid(window);
        let mut entry = self.windows.entry(ip).or_insert((current, 0));
        if entry.0 != current {
            *entry = (current, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        (entry.1 > self.config.max_failures).then(|| ((current + 1) * window - now_seconds).max(1) as u64)
    }

    /// The limit itself, for the `RateLimit-Policy` header of a refusal.
    pub fn limit(&self) -> latchkey_core::RateLimit {
        latchkey_core::RateLimit { limit: self.config.max_failures, window_seconds: self.config.window_seconds }
    }

    /// Forgets windows that have ended, so the map holds only recently failing addresses.
    pub fn prune(&self, now_seconds: i64) {
        let current = now_seconds.div_euclid(i64::from(self.config.window_seconds.max(1)));
        self.windows.retain(|_, (window, _)| *window == current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_throttled_after_its_limit_until_the_window_ends() {
        let throttle = FailureThrottle::new(ThrottleConfig { max_failures: 2, window_seconds: 60 });
        let ip = Some("192.0.2.7".parse().unwrap());
        assert_eq!(throttle.record_failure(ip, 600), None);
        assert_eq!(throttle.record_failure(ip, 610), None);
        assert_eq!(throttle.record_failure(ip, 620), Some(40));
        assert_eq!(throttle.record_failure(Some("192.0.2.8".parse().unwrap()), 620), None);
        assert_eq!(throttle.record_failure(ip, 660), None, "a new window starts afresh");
        let off = FailureThrottle::new(ThrottleConfig { max_failures: 0, window_seconds: 60 });
        assert!((0..100).all(|_| off.record_failure(ip, 600).is_none()));
    }
}
