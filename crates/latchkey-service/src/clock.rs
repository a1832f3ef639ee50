//! Time as a dependency: the server asks a `Clock`, so tests can move time forward
//! (expiry at the boundary second, rotation grace) without sleeping.

use chrono::{DateTime, Duration, Utc};
use parking_lot::Mutex;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to. For tests.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn starting_now() -> Self {
        Self(Mutex::new(Utc::now()))
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock() += by;
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock() = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock()
    }
}
