//! `/api/v1/users`: administrators manage staff accounts from the web (the
//! `/staff/users` page drives this API) as well as from `gongkai admin`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use serde::Deserialize;
use serde_json::json;

use super::extract::ApiJson;
use crate::auth::{Caller, Role, hash_password_off_thread, validate_password, validate_username};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{ApiTokens, now_ms};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{username}/roles", put(set_roles))
        .route("/users/{username}/password", put(reset_password))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    username: String,
    password: String,
    roles: Vec<Role>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRoles {
    roles: Vec<Role>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetPassword {
    password: String,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Admin)?;
    Ok(axum::Json(
        json!({"users": state.store.list_users().await?}),
    ))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Admin)?;
    validate_username(&body.username).map_err(|m| ApiError::validation("username", m))?;
    validate_password(&body.password).map_err(|m| ApiError::validation("password", m))?;
    let hash = hash_password_off_thread(body.password).await?;
    let now = now_ms();
    let user = state
        .store
        .create_user(&body.username, &hash, &body.roles, now)
        .await?;
    state
        .store
        .audit(
            &caller.user.username,
            "user.create",
            &json!({"username": user.username, "roles": user.roles}).to_string(),
            now,
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(json!({"user": user}))))
}

async fn set_roles(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    ApiJson(body): ApiJson<SetRoles>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Admin)?;
    if username == caller.user.username && !body.roles.contains(&Role::Admin) {
        return Err(ApiError::Conflict(
            "you cannot remove your own admin role".into(),
        ));
    }
    let now = now_ms();
    let Some(revoked) = state.store.set_roles(&username, &body.roles, now).await? else {
        return Err(ApiError::NotFound("user".into()));
    };
    state
        .store
        .audit(
            &caller.user.username,
            "user.roles",
            &json!({"username": username, "roles": body.roles, "tokens_revoked": revoked})
                .to_string(),
            now,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/v1/users/{username}/password`: an administrator sets a new password for a
/// staff member who lost theirs; every session of that user ends.
async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    ApiJson(body): ApiJson<ResetPassword>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Admin)?;
    validate_password(&body.password).map_err(|m| ApiError::validation("password", m))?;
    let hash = hash_password_off_thread(body.password).await?;
    let now = now_ms();
    let Some(revoked) = state
        .store
        .set_password(&username, &hash, ApiTokens::Revoke, now)
        .await?
    else {
        return Err(ApiError::NotFound("user".into()));
    };
    state
        .store
        .audit(
            &caller.user.username,
            "user.reset_password",
            &json!({"username": username, "tokens_revoked": revoked}).to_string(),
            now,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
