//! Who is calling: extractors that turn a session cookie or a bearer token into a
//! `StaffUser`, enforcing CSRF on cookie-authenticated state changes.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum_extra::extract::CookieJar;
use subtle::ConstantTimeEq;

use super::{Role, secret_hash};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{StaffUser, now_ms};

pub const SESSION_COOKIE: &str = "gongkai_session";
/// Readable by the page's script, which echoes it in `X-CSRF-Token` (double submit,
/// checked against the value bound to the session).
pub const CSRF_COOKIE: &str = "gongkai_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Authn {
    Session {
        token_hash: String,
        csrf_token: String,
    },
    Bearer,
}

/// An authenticated staff member. As an extractor: 401 without credentials, 403 when a
/// cookie-authenticated state-changing request lacks the CSRF token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: StaffUser,
    pub authn: Authn,
}

impl Caller {
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.user.has(role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("this needs the `{role}` role")))
        }
    }

    pub fn require_any(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.iter().any(|r| self.user.has(*r)) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::Forbidden(format!(
                "this needs one of the roles: {}",
                names.join(", ")
            )))
        }
    }

    /// For HTML form posts, whose CSRF token arrives in the body.
    pub fn check_form_csrf(&self, submitted: &str) -> Result<(), ApiError> {
        match &self.authn {
            Authn::Bearer => Ok(()),
            Authn::Session { csrf_token, .. } => {
                if bool::from(submitted.as_bytes().ct_eq(csrf_token.as_bytes())) {
                    Ok(())
                } else {
                    Err(ApiError::Csrf)
                }
            }
        }
    }

    pub fn csrf_token(&self) -> Option<&str> {
        match &self.authn {
            Authn::Session { csrf_token, .. } => Some(csrf_token),
            Authn::Bearer => None,
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let value = value
                .to_str()
                .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
            let Some(token) = value.strip_prefix("Bearer ") else {
                return Err(ApiError::Unauthorized(
                    "use `Authorization: Bearer <token>`".into(),
                ));
            };
            let user = state
                .store
                .token_user(&secret_hash(token.trim()), now_ms())
                .await?
                .ok_or_else(|| ApiError::Unauthorized("invalid or revoked token".into()))?;
            return Ok(Caller {
                user,
                authn: Authn::Bearer,
            });
        }
        let caller = session_caller(parts, state)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("log in first".into()))?;
        if !is_safe(&parts.method) {
            let submitted = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            caller.check_form_csrf(submitted)?;
        }
        Ok(caller)
    }
}

/// The staff member behind a page request, if logged in. Never rejects; form handlers
/// check CSRF themselves with `Caller::check_form_csrf`.
#[derive(Debug, Clone)]
pub struct PageCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for PageCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(PageCaller(session_caller(parts, state).await?))
    }
}

async fn session_caller(parts: &Parts, state: &AppState) -> Result<Option<Caller>, ApiError> {
    let jar = CookieJar::from_headers(&parts.headers);
    let Some(cookie) = jar.get(SESSION_COOKIE) else {
        return Ok(None);
    };
    let token_hash = secret_hash(cookie.value());
    let Some(session) = state.store.session(&token_hash, now_ms()).await? else {
        return Ok(None);
    };
    Ok(Some(Caller {
        user: session.user,
        authn: Authn::Session {
            token_hash,
            csrf_token: session.csrf_token,
        },
    }))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The client's IP: the socket peer, or the first `X-Forwarded-For` entry when the
/// deployment says a trusted proxy sets it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.settings.trust_forwarded_for
            && let Some(ip) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
        {
            return Ok(ClientIp(ip));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(ClientIp(peer))
    }
}
