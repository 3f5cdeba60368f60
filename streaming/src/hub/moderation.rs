//! Enforcement building blocks: token-bucket rate limits, bans, and who may do what.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Millis, StaffRole, ViewerId};

/// A token bucket's shape: `per_second` refill rate and `burst` capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl RateLimit {
    pub const fn new(per_second: f64, burst: f64) -> RateLimit {
        RateLimit { per_second, burst }
    }
}

/// A token bucket with time passed in. Starts full so a fresh viewer can say hello.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    updated: Millis,
}

impl TokenBucket {
    pub fn new(limit: RateLimit, now: Millis) -> TokenBucket {
        TokenBucket {
            tokens: limit.burst,
            updated: now,
        }
    }

    /// Takes `cost` tokens if available. A clock going backwards refills nothing
    /// (saturating) rather than panicking or granting a burst.
    pub fn try_take(&mut self, limit: RateLimit, now: Millis, cost: f64) -> bool {
        let elapsed = now.0.saturating_sub(self.updated.0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * limit.per_second).min(limit.burst);
        self.updated = self.updated.max(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// One ban: a viewer identity and optionally an IP address, until a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    pub viewer_id: ViewerId,
    #[serde(default)]
    pub ip: Option<IpAddr>,
    pub until: Millis,
}

impl Ban {
    /// Whether this ban applies to a viewer at `now`. An IP ban catches other identities
    /// from the same address (new cookie, private window); that is the point of it.
    pub fn applies(&self, viewer_id: &ViewerId, ip: Option<IpAddr>, now: Millis) -> bool {
        now < self.until && (self.viewer_id == *viewer_id || (self.ip.is_some() && self.ip == ip))
    }
}

/// The latest expiry among the bans that apply, if any.
pub fn banned_until(
    bans: &[Ban],
    viewer_id: &ViewerId,
    ip: Option<IpAddr>,
    now: Millis,
) -> Option<Millis> {
    bans.iter()
        .filter(|b| b.applies(viewer_id, ip, now))
        .map(|b| b.until)
        .max()
}

/// Actions that need a role. The issue: moderation is for moderators and admins;
/// broadcasters (the officials on air) may also answer questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Moderate,
    Answer,
}

pub fn permits(role: Option<StaffRole>, permission: Permission) -> bool {
    matches!(
        (role, permission),
        (Some(StaffRole::Moderator | StaffRole::Admin), _)
            | (Some(StaffRole::Broadcaster), Permission::Answer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_and_caps() {
        let limit = RateLimit::new(1.0, 2.0);
        let mut b = TokenBucket::new(limit, Millis(0));
        assert!(b.try_take(limit, Millis(0), 1.0));
        assert!(b.try_take(limit, Millis(0), 1.0));
        assert!(!b.try_take(limit, Millis(500), 1.0));
        assert!(b.try_take(limit, Millis(1000), 1.0));
        // A long pause refills to the burst, not beyond.
        assert!(b.try_take(limit, Millis(100_000), 2.0));
        assert!(!b.try_take(limit, Millis(100_000), 1.0));
        // Time going backwards grants nothing.
        assert!(!b.try_take(limit, Millis(50_000), 1.0));
    }

    #[test]
    fn bans_by_identity_and_ip_expire() {
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let bans = vec![Ban {
            viewer_id: ViewerId::from("v1"),
            ip: Some(ip),
            until: Millis(1000),
        }];
        let v1 = ViewerId::from("v1");
        let v2 = ViewerId::from("v2");
        assert_eq!(
            banned_until(&bans, &v1, None, Millis(0)),
            Some(Millis(1000))
        );
        assert_eq!(
            banned_until(&bans, &v2, Some(ip), Millis(0)),
            Some(Millis(1000))
        );
        assert_eq!(banned_until(&bans, &v2, None, Millis(0)), None);
        assert_eq!(banned_until(&bans, &v1, None, Millis(1000)), None);
    }

    #[test]
    fn roles() {
        assert!(permits(Some(StaffRole::Admin), Permission::Moderate));
        assert!(permits(Some(StaffRole::Moderator), Permission::Answer));
        assert!(!permits(Some(StaffRole::Broadcaster), Permission::Moderate));
        assert!(permits(Some(StaffRole::Broadcaster), Permission::Answer));
        assert!(!permits(None, Permission::Answer));
    }
}
