//! Keyed rate limiters (per username, per IP, per child ID ...) answering "allowed, or
//! retry after this long".

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Allows `per_minute` events per key per minute, with a burst of the same size.
#[derive(Debug)]
pub struct KeyedLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl KeyedLimiter {
    pub fn per_minute(per_minute: u32) -> KeyedLimiter {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        KeyedLimiter {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)),
            clock: DefaultClock::default(),
        }
    }

    /// Allows `per_hour` events per key per hour, with a burst of the same size.
    pub fn per_hour(per_hour: u32) -> KeyedLimiter {
        let n = NonZeroU32::new(per_hour.max(1)).unwrap_or(NonZeroU32::MIN);
        KeyedLimiter {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_hour(n)),
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` when allowed; `Err(wait)` with the time until the next event is allowed.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets keys whose limits have fully recovered (called periodically).
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key() {
        let l = KeyedLimiter::per_minute(2);
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        let wait = l.check("a").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        assert!(l.check("b").is_ok(), "keys are independent");
    }
}
