//! Viewer identity without accounts: a nickname and a random viewer id in a cookie
//! signed with HMAC-SHA256, so chat can attribute, rate-limit and ban viewers.

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::get;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use crate::error::ApiError;
use crate::routes::extract::ApiJson;
use crate::state::AppState;

pub const VIEWER_COOKIE: &str = "gongkai_viewer";
pub const MAX_NICKNAME_CHARS: usize = 20;

/// The HMAC key for viewer cookies (shared by all nodes via the database).
#[derive(Clone)]
pub struct ViewerKey(Vec<u8>);

impl std::fmt::Debug for ViewerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ViewerKey(..)")
    }
}

impl ViewerKey {
    pub fn new(secret: &str) -> ViewerKey {
        ViewerKey(secret.as_bytes().to_vec())
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; the error case cannot happen.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(payload.as_bytes());
        mac
    }

    pub fn sign(&self, identity: &ViewerIdentity) -> String {
        let payload = format!(
            "{}.{}",
            identity.viewer_id,
            URL_SAFE_NO_PAD.encode(identity.nickname.as_bytes())
        );
        let tag = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    pub fn verify(&self, cookie: &str) -> Option<ViewerIdentity> {
        let (payload, tag) = cookie.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(payload).verify_slice(&tag).ok()?;
        let (viewer_id, nick) = payload.split_once('.')?;
        let nickname = String::from_utf8(URL_SAFE_NO_PAD.decode(nick).ok()?).ok()?;
        Some(ViewerIdentity {
            viewer_id: viewer_id.to_owned(),
            nickname,
        })
    }
}

/// What a signed, expiring event grant allows. Each has its own token prefix and its own
/// MAC domain, so one kind never passes for another (or for a viewer cookie).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// WHEP for an unlisted event (`gkv1.<unix expiry>.<tag>`).
    View,
    /// WHIP for the broadcaster page (`gks1.<unix expiry>.<tag>`): a short-lived publish
    /// credential beside the event's long-lived publish token, which it never rotates.
    Publish,
    /// WHEP for the event's staff (`gkw1.<unix expiry>.<tag>`): a preview that may watch a
    /// rehearsal, which the public may not.
    Preview,
}

impl Grant {
    pub fn prefix(self) -> &'static str {
        match self {
            Grant::View => "gkv1",
            Grant::Publish => "gks1",
            Grant::Preview => "gkw1",
        }
    }

    /// The longest lifetime a grant of this kind is issued with: one claiming more was
    /// not issued here (a forged one, with a leaked key), and is refused.
    pub const fn max_ttl_secs(self) -> u64 {
        match self {
            Grant::View => 90 * 24 * 3600,
            Grant::Publish | Grant::Preview => 12 * 3600,
        }
    }

    fn domain(self) -> &'static str {
        match self {
            Grant::View => "gongkai-view-token/1",
            Grant::Publish => "gongkai-publish-credential/1",
            Grant::Preview => "gongkai-preview-credential/1",
        }
    }
}

/// Why a grant was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// Not a token of this kind, another event's token, or a forged tag.
    Invalid,
    /// Well-formed and signed for this event, but past its expiry.
    Expired,
}

impl ViewerKey {
    /// A `grant` for `event_id`, valid until `expires_unix` (seconds). Stateless: the tag is
    /// HMAC-SHA256 over a domain-separated message (never a cookie payload, which has no
    /// newline), so nothing is stored per token and every node can check it.
    pub fn sign_grant(&self, grant: Grant, event_id: &str, expires_unix: u64) -> String {
        let tag = self
            .grant_mac(grant, event_id, expires_unix)
            .finalize()
            .into_bytes();
        format!(
            "{}.{expires_unix}.{}",
            grant.prefix(),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Checks a `grant` token for `event_id` at `now_unix` (seconds).
    pub fn verify_grant(
        &self,
        grant: Grant,
        event_id: &str,
        token: &str,
        now_unix: u64,
    ) -> Result<(), GrantError> {
        let mut parts = token.split('.');
        let (Some(prefix), Some(expires), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(GrantError::Invalid);
        };
        if prefix != grant.prefix() {
            return Err(GrantError::Invalid);
        }
        let expires: u64 = expires.parse().map_err(|_| GrantError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| GrantError::Invalid)?;
        self.grant_mac(grant, event_id, expires)
            .verify_slice(&tag)
            .map_err(|_| GrantError::Invalid)?;
        if expires <= now_unix {
            return Err(GrantError::Expired);
        }
        // A minute of slack for clocks of nodes that differ a little.
        if expires > now_unix + grant.max_ttl_secs() + 60 {
            return Err(GrantError::Invalid);
        }
        Ok(())
    }

    fn grant_mac(&self, grant: Grant, event_id: &str, expires_unix: u64) -> Hmac<Sha256> {
        self.mac(&format!("{}\n{event_id}\n{expires_unix}", grant.domain()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ViewerIdentity {
    pub viewer_id: String,
    pub nickname: String,
}

/// The viewer behind a request, if they have chosen a nickname.
#[derive(Debug, Clone)]
pub struct MaybeViewer(pub Option<ViewerIdentity>);

impl FromRequestParts<AppState> for MaybeViewer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        Ok(MaybeViewer(
            jar.get(VIEWER_COOKIE)
                .and_then(|c| state.viewer_key.verify(c.value())),
        ))
    }
}

pub fn clean_nickname(raw: &str) -> Result<String, ApiError> {
    let cleaned: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_owned();
    let n = cleaned.chars().count();
    if n == 0 || n > MAX_NICKNAME_CHARS {
        return Err(ApiError::validation(
            "nickname",
            format!("nickname must have 1 to {MAX_NICKNAME_CHARS} characters"),
        ));
    }
    Ok(cleaned)
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/viewer", get(show).post(choose))
}

async fn show(MaybeViewer(viewer): MaybeViewer) -> impl IntoResponse {
    axum::Json(json!({ "viewer": viewer }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Choose {
    nickname: String,
}

/// Sets (or renames) the viewer's nickname, keeping their viewer id.
/// A new identity counts against `[limits] viewer_identities_per_ip_per_hour` of the
/// client's address (every per-viewer limit of the hub would otherwise be a fresh cookie
/// away); renaming one's identity does not.
async fn choose(
    State(state): State<AppState>,
    MaybeViewer(existing): MaybeViewer,
    crate::auth::ClientIp(ip): crate::auth::ClientIp,
    jar: CookieJar,
    ApiJson(body): ApiJson<Choose>,
) -> Result<impl IntoResponse, ApiError> {
    let nickname = clean_nickname(&body.nickname)?;
    let viewer_id = match existing {
        Some(viewer) => viewer.viewer_id,
        None => {
            state
                .viewers_per_ip
                .check(&ip.to_string())
                .map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
            format!("v{}", &crate::auth::new_secret()[..16])
        }
    };
    let identity = ViewerIdentity {
        viewer_id,
        nickname,
    };
    let cookie = Cookie::build((VIEWER_COOKIE, state.viewer_key.sign(&identity)))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.settings.https())
        .max_age(time::Duration::days(365));
    Ok((jar.add(cookie), axum::Json(json!({ "viewer": identity }))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_identity_roundtrips_and_rejects_tampering() {
        let key = ViewerKey::new("k");
        let id = ViewerIdentity {
            viewer_id: "vabc".into(),
            nickname: "网友.甲".into(),
        };
        let signed = key.sign(&id);
        assert_eq!(key.verify(&signed), Some(id));
        let mut tampered = signed.clone();
        tampered.replace_range(1..2, "X");
        assert_eq!(key.verify(&tampered), None);
        assert_eq!(ViewerKey::new("other").verify(&signed), None);
        assert!(clean_nickname("  ").is_err());
        assert_eq!(clean_nickname(" 甲\u{7} ").unwrap(), "甲");
    }

    #[test]
    fn grants_are_bound_to_their_kind_event_key_and_expiry() {
        let key = ViewerKey::new("k");
        let token = key.sign_grant(Grant::View, "ev1", 1_000);
        assert!(token.starts_with("gkv1.1000."), "{token}");
        assert_eq!(key.verify_grant(Grant::View, "ev1", &token, 999), Ok(()));
        assert_eq!(
            key.verify_grant(Grant::View, "ev1", &token, 1_000),
            Err(GrantError::Expired)
        );
        let invalid = Err(GrantError::Invalid);
        assert_eq!(key.verify_grant(Grant::View, "ev2", &token, 0), invalid);
        assert_eq!(
            ViewerKey::new("x").verify_grant(Grant::View, "ev1", &token, 0),
            invalid
        );
        // A view token is no publish credential, even with the prefix swapped.
        assert_eq!(key.verify_grant(Grant::Publish, "ev1", &token, 0), invalid);
        let swapped = token.replacen("gkv1", "gks1", 1);
        assert_eq!(
            key.verify_grant(Grant::Publish, "ev1", &swapped, 0),
            invalid
        );
        let publish = key.sign_grant(Grant::Publish, "ev1", 1_000);
        assert_eq!(key.verify_grant(Grant::Publish, "ev1", &publish, 0), Ok(()));
        // Signed with the key but for longer than any grant of its kind is issued (a
        // forgery with a leaked key): refused.
        let ten_years = 10 * 365 * 24 * 3600;
        let forged = key.sign_grant(Grant::Publish, "ev1", 1_000 + ten_years);
        assert_eq!(
            key.verify_grant(Grant::Publish, "ev1", &forged, 1_000),
            invalid
        );
        let longest = key.sign_grant(Grant::View, "ev1", 1_000 + Grant::View.max_ttl_secs());
        assert_eq!(
            key.verify_grant(Grant::View, "ev1", &longest, 1_000),
            Ok(())
        );
        // A later expiry with the old tag is a forgery, not an extension.
        let extended = token.replacen("1000", "9000", 1);
        assert_eq!(key.verify_grant(Grant::View, "ev1", &extended, 0), invalid);
        for garbage in [
            "",
            "gkv1",
            "gkv1.1000",
            "gkv2.1000.AAAA",
            "gkv1.x.AAAA",
            "gkv1.1.A.B",
        ] {
            assert_eq!(
                key.verify_grant(Grant::View, "ev1", garbage, 0),
                invalid,
                "{garbage}"
            );
        }
    }
}
