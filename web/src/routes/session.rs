//! `/api/v1/session` (log in, log out) and `/api/v1/me`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use serde::Deserialize;
use serde_json::json;

use super::extract::ApiJson;
use crate::auth::login::{clear_session_cookies, login, set_session_cookies};
use crate::auth::{Authn, Caller, ClientIp};
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/session", post(create).delete(delete))
        .route("/me", get(me))
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
