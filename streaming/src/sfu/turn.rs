//! Short-lived TURN credentials in coturn's REST-API scheme (`use-auth-secret`): the
//! username is `<unix expiry>:<id>` and the password base64(HMAC-SHA1(secret, username)).
//! coturn recomputes the password from its `static-auth-secret` and refuses expired
//! usernames, so nothing is stored per credential. Pure: the time is an argument.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The shared secret and how long each credential lives. `Debug` hides the secret.
#[derive(Clone)]
pub struct TurnRest {
    secret: String,
    pub ttl_secs: u64,
}

impl fmt::Debug for TurnRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnRest")
            .field("secret", &"[redacted]")
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

impl TurnRest {
    pub fn new(secret: String, ttl_secs: u64) -> TurnRest {
        TurnRest { secret, ttl_secs }
    }

    /// A `(username, credential)` pair valid until `now_unix + ttl_secs`; `id` tells
    /// sessions apart in coturn's logs (random, never a person).
    pub fn credentials(&self, now_unix: u64, id: &str) -> (String, String) {
        let username = format!("{}:{id}", now_unix.saturating_add(self.ttl_secs));
        let credential = credential(&self.secret, &username);
        (username, credential)
    }
}

/// coturn's password for `username`: base64(HMAC-SHA1(secret, username)).
pub fn credential(secret: &str, username: &str) -> String {
    // HMAC accepts keys of any length; the error case cannot happen.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_matches_coturns_scheme() {
        // printf '%s' '1700003600:gongkai' \
        //   | openssl dgst -sha1 -hmac 'north' -binary | base64
        assert_eq!(
            credential("north", "1700003600:gongkai"),
            "GcD/9yrnqAg5URMJyTichDeuR08="
        );
        let rest = TurnRest::new("north".into(), 3600);
        let (username, password) = rest.credentials(1_700_000_000, "gongkai");
        assert_eq!(username, "1700003600:gongkai");
        assert_eq!(password, credential("north", &username));
        assert!(!format!("{rest:?}").contains("north"));
    }
}
