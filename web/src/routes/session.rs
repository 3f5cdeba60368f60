//! `/api/v1/session` (log in, log out), `/api/v1/me` and `/api/v1/me/password`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum_extra::extract::CookieJar;
use serde::Deserialize;
use serde_json::json;

use super::extract::ApiJson;
use crate::auth::login::{check_account_limits, clear_session_cookies, login, set_session_cookies};
use crate::auth::{
    Authn, Caller, ClientIp, hash_password_off_thread, validate_password,
    verify_password_off_thread,
};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{ApiTokens, now_ms};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/session", post(create).delete(delete))
        .route("/me", get(me))
        .route("/me/password", put(change_password))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
}

async fn create(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<impl IntoResponse, ApiError> {
    if body.username.trim().is_empty() {
        return Err(ApiError::validation("username", "username is required"));
    }
    if body.password.is_empty() {
        return Err(ApiError::validation("password", "password is required"));
    }
    let session = login(&state, ip, &body.username, &body.password).await?;
    let jar = set_session_cookies(&state, jar, &session);
    let body = json!({"user": session.user, "csrf_token": session.csrf_token});
    Ok((jar, axum::Json(body)))
}

async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    jar: CookieJar,
) -> Result<impl IntoResponse, ApiError> {
    if let Authn::Session { token_hash, .. } = &caller.authn {
        state.store.delete_session(token_hash).await?;
    }
    Ok((clear_session_cookies(jar), StatusCode::NO_CONTENT))
}

async fn me(caller: Caller) -> impl IntoResponse {
    axum::Json(json!({"user": caller.user, "csrf_token": caller.csrf_token()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// `PUT /api/v1/me/password`: a staff member replaces their own password (say, the one
/// an administrator set for them). Every session of theirs ends, this one included.
async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    crate::auth::ClientIp(ip): crate::auth::ClientIp,
    jar: CookieJar,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<impl IntoResponse, ApiError> {
    let username = caller.user.username;
    validate_password(&body.new_password).map_err(|m| ApiError::validation("new_password", m))?;
    // Guessing the current password from a session left open is limited like logging in.
    check_account_limits(&state, &username, ip)?;
    let Some((_, hash)) = state.store.user_with_password(&username).await? else {
        return Err(ApiError::Unauthorized(
            "the account no longer exists".into(),
        ));
    };
    if !verify_password_off_thread(body.current_password, hash).await? {
        return Err(ApiError::validation(
            "current_password",
            "the current password is not right",
        ));
    }
    let hash = hash_password_off_thread(body.new_password).await?;
    let now = now_ms();
    state
        .store
        .set_password(&username, &hash, ApiTokens::Keep, now)
        .await?;
    state
        .store
        .audit(&username, "user.change_password", "{}", now)
        .await?;
    Ok((clear_session_cookies(jar), StatusCode::NO_CONTENT))
}
