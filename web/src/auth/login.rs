//! Logging in and out: shared by `POST /api/v1/session` and the login page.

use std::net::IpAddr;
use std::time::Duration;

use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};

use super::{
    CSRF_COOKIE, SESSION_COOKIE, hash_password, new_secret, secret_hash, verify_password_off_thread,
};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{StaffUser, now_ms};

/// A session just created: the cookie secret is only ever in this value and the
/// response that sets it.
#[derive(Debug)]
pub struct NewSession {
    pub user: StaffUser,
    pub token: String,
    pub csrf_token: String,
    pub max_age: Duration,
}

/// Checks rate limits, then the password (argon2 on a blocking thread), then creates a
/// session. Unknown users cost the same hashing work as known ones.
pub async fn login(
    state: &AppState,
    ip: IpAddr,
    username: &str,
    password: &str,
) -> Result<NewSession, ApiError> {
    let username = username.trim().to_lowercase();
    if let Err(retry_after) = state.login_per_ip.check(&ip.to_string()) {
        return Err(ApiError::TooManyRequests { retry_after });
    }
    check_account_limits(state, &username, ip)?;
    let found = state.store.user_with_password(&username).await?;
    let password = password.to_owned();
    let (user, ok) = match found {
        Some((user, hash)) => {
            let ok = verify_password_off_thread(password, hash).await?;
            (Some(user), ok)
        }
        None => {
            verify_password_off_thread(password, dummy_hash().to_owned()).await?;
            (None, false)
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        tracing::info!(outcome = "failed", "staff login");
        return Err(ApiError::InvalidCredentials);
    };
    let token = new_secret();
    let csrf_token = new_secret();
    let max_age = Duration::from_secs(state.settings.auth.session_hours * 3600);
    let now = now_ms();
    let expires = now + i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX / 2);
    state
        .store
        .create_session(&secret_hash(&token), user.id, &csrf_token, now, expires)
        .await?;
    state
        .store
        .audit(&user.username, "session.login", "{}", now)
        .await?;
    tracing::info!(user = %user.username, outcome = "ok", "staff login");
    Ok(NewSession {
        user,
        token,
        csrf_token,
        max_age,
    })
}

/// The per-username limits of password guesses (logins, and password changes from an
/// open session): per username from this address, and a softer ceiling per username over
/// all addresses. An attacker's failures from one address do not lock the real user out
/// from another.
pub fn check_account_limits(state: &AppState, username: &str, ip: IpAddr) -> Result<(), ApiError> {
    if let Err(retry_after) = state.login_per_user.check(&format!("{username}\n{ip}")) {
        return Err(ApiError::TooManyRequests { retry_after });
    }
    if let Err(retry_after) = state.login_per_account.check(username) {
        return Err(ApiError::TooManyRequests { retry_after });
    }
    Ok(())
}

pub fn set_session_cookies(state: &AppState, jar: CookieJar, session: &NewSession) -> CookieJar {
    let max_age = time_duration(session.max_age);
    let secure = state.settings.https();
    let session_cookie = Cookie::build((SESSION_COOKIE, session.token.clone()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(max_age);
    let csrf_cookie = Cookie::build((CSRF_COOKIE, session.csrf_token.clone()))
        .path("/")
        .http_only(false)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(max_age);
    jar.add(session_cookie).add(csrf_cookie)
}

pub fn clear_session_cookies(jar: CookieJar) -> CookieJar {
    jar.remove(Cookie::build(SESSION_COOKIE).path("/"))
        .remove(Cookie::build(CSRF_COOKIE).path("/"))
}

fn time_duration(d: Duration) -> time::Duration {
    time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A valid argon2id hash of a random password, computed once, so that a login for an
/// unknown username takes as long as one for a known username.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&new_secret()).unwrap_or_default())
}
