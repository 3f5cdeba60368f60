//! `/api/v1/tokens`: personal API tokens of the caller.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::json;

use super::extract::ApiJson;
use crate::auth::{Caller, new_api_token, secret_hash};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{id}", delete(revoke))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
}

pub fn validate_token_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::validation(
            "name",
            "name must have 1 to 64 characters",
        ));
    }
    Ok(name.to_owned())
}

/// Creates a token for the caller; the secret is returned only here.
pub async fn create_for(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<(i64, String, String), ApiError> {
    let name = validate_token_name(name)?;
    let token = new_api_token();
    let now = now_ms();
    let info = state
        .store
        .create_token(caller.user.id, &name, &secret_hash(&token), now)
        .await?;
    state
        .store
        .audit(
            &caller.user.username,
            "token.create",
            &json!({"id": info.id, "name": name}).to_string(),
            now,
        )
        .await?;
    Ok((info.id, name, token))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<impl IntoResponse, ApiError> {
    let (id, name, token) = create_for(&state, &caller, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"id": id, "name": name, "token": token})),
    ))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    let tokens = state.store.list_tokens(caller.user.id).await?;
    Ok(axum::Json(json!({ "tokens": tokens })))
}

pub async fn revoke_for(state: &AppState, caller: &Caller, id: i64) -> Result<(), ApiError> {
    let now = now_ms();
    if !state.store.revoke_token(caller.user.id, id, now).await? {
        return Err(ApiError::NotFound("token".into()));
    }
    state
        .store
        .audit(
            &caller.user.username,
            "token.revoke",
            &json!({"id": id}).to_string(),
            now,
        )
        .await?;
    Ok(())
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::validation("id", "token id must be a number"))?;
    revoke_for(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
