//! `/staff/users`: administrators list staff accounts, create them, change their roles
//! and reset a forgotten password (the page drives `/api/v1/users`).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::CookieJar;
use minijinja::context;

use super::page_error;
use super::pages::{PageQuery, page_lang};
use crate::auth::{PageCaller, Role};
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/staff/users", get(staff_users))
}

async fn staff_users(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let (lang, jar) = page_lang(&query, &headers, jar);
    let Some(caller) = caller else {
        return Redirect::to("/login?next=/staff/users").into_response();
    };
    if !caller.user.has(Role::Admin) {
        return (jar, page_error(&state, lang, StatusCode::FORBIDDEN)).into_response();
    }
    let users = match state.store.list_users().await {
        Ok(users) => users,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let ctx = context! {
        user => minijinja::Value::from_serialize(&caller.user),
        csrf_token => caller.csrf_token(),
        users => minijinja::Value::from_serialize(&users),
        all_roles => Role::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
    };
    (
        jar,
        state
            .pages
            .respond(StatusCode::OK, "staff_users.html", lang, ctx),
    )
        .into_response()
}
