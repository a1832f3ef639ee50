//! Per-key rate limits: at most `limit` verifications per fixed window of
//! `window_seconds`, counted in memory on this instance (O(1): one map entry per
//! rate-limited key). With N instances behind a load balancer the effective limit is up
//! to N × `limit`; see docs/SCALING.md.

use dashmap::DashMap;
use latchkey_core::{RateLimit, Ulid};

/// What an admitted request leaves of its key's window (`/verify` reports it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowLeft {
    pub remaining: u32,
    /// Seconds until the window ends and the count starts again.
    pub reset_seconds: u64,
}

#[derive(Default)]
pub struct KeyRateLimiter {
    /// key → (end of its current window in Unix seconds, verifications counted in it)
    windows: DashMap<Ulid, (i64, u32)>,
}

impl KeyRateLimiter {
    /// Counts one verification of `key` at `now_seconds`: `Ok` with what is left of the
    /// window, `Err(retry_after_seconds)` when the key is over its limit (the refused
    /// attempt is not counted).
    pub fn admit(&self, key: Ulid, limit: RateLimit, now_seconds: i64) -> Result<WindowLeft, u64> {
        let window = i64::from(limit.window_seconds.max(1));
        let window_end = (now_seconds.div_euclid(window) + 1) * window;
        let mut entry = self.windows.entry(key).or_insert((window_end, 0));
        if entry.0 != window_end {
            *entry = (window_end, 0);
        }
        if entry.1 >= limit.limit {
            return Err((window_end - now_seconds).max(1) as u64);
        }
        entry.1 += 1;
        Ok(WindowLeft { remaining: limit.limit - entry.1, reset_seconds: (window_end - now_seconds).max(1) as u64 })
    }

    /// Forgets windows that have ended, so only recently used keys are held.
    pub fn prune(&self, now_seconds: i64) {
        self.windows.retain(|_, (window_end, _)| *window_end > now_seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_limited_within_its_window_and_free_again_after_it() {
        let limiter = KeyRateLimiter::default();
        let key = Ulid::new();
        let limit = RateLimit::new(2, 60).unwrap();
        assert_eq!(limiter.admit(key, limit, 120), Ok(WindowLeft { remaining: 1, reset_seconds: 60 }));
        assert_eq!(limiter.admit(key, limit, 150), Ok(WindowLeft { remaining: 0, reset_seconds: 30 }));
        assert_eq!(limiter.admit(key, limit, 179), Err(1));
        assert_eq!(limiter.admit(key, limit, 180), Ok(WindowLeft { remaining: 1, reset_seconds: 60 }), "a new window");
    }
}
