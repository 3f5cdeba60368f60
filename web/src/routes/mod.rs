//! The HTTP surface: one router for the API (`/api/v1`), pages, assets and probes.
//!
//! # Layout
//! - `extract`: `ApiJson` (JSON bodies with JSON errors), `LangQuery`
//! - `health`: `/healthz`, `/readyz`, `/metrics`
//! - `session`: `/api/v1/session`, `/api/v1/me`
//! - `tokens`: `/api/v1/tokens`
//! - `users`: `/api/v1/users` (administrators)
//! - `draws`: `/api/v1/draws`, the draw ceremony (applications, witnesses, proofs,
//!   lookups, transcripts, countersignatures)
//! - `pages`: home, login, staff dashboard
//! - `user_pages`: `/staff/users`, staff accounts (administrators)
//! - `draw_pages`: the draw ceremony's pages (`/draws/...`, `/staff/draws/...`)
//! - `media`: WHIP/WHEP (`/whip/{event}`, `/whep/{event}`) and `/api/v1/events/{id}/media`

mod draw_pages;
pub mod draws;
pub mod events;
pub mod extract;
mod health;
pub mod media;
mod pages;
mod session;
mod tokens;
mod user_pages;
mod users;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::pages::Lang;
use crate::state::AppState;
use crate::telemetry_metrics;

/// Only our own origin may load scripts, styles, media or open sockets; no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' ws: wss:; font-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(session::routes())
        .merge(tokens::routes())
        .merge(users::routes())
        .merge(events::routes())
        .merge(draws::routes())
        .merge(crate::viewer::routes())
        .merge(crate::hub_shell::api_routes())
        .merge(media::api_routes())
        .fallback(api_not_found);
    Router::new()
        .nest("/api/v1", api)
        .merge(health::routes())
        .merge(crate::hub_shell::ws_routes())
        .merge(media::routes())
        .merge(pages::routes())
        .merge(user_pages::routes())
        .merge(draw_pages::routes())
        .route("/assets/{name}", get(crate::pages::assets::serve))
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            telemetry_metrics::track,
        ))
        .with_state(state)
}

async fn api_not_found() -> ApiError {
    ApiError::NotFound("API route".into())
}

async fn security_headers(request: Request, next: Next) -> Response {
    // API answers are per caller or live (sessions' CSRF tokens, API tokens, user lists,
    // audit logs): no browser or proxy may keep them, so Back after a logout shows nothing.
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let fixed: [(HeaderName, &str); 4] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(self), microphone=(self), geolocation=()",
        ),
    ];
    for (name, value) in fixed {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    if is_html || api {
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    response
}

/// For handlers that render either a page or an error page.
pub fn page_error(state: &AppState, lang: Lang, status: StatusCode) -> Response {
    match status {
        StatusCode::NOT_FOUND => {
            state
                .pages
                .error_page(status, lang, "not_found", "not_found_message")
        }
        StatusCode::FORBIDDEN => state
            .pages
            .error_page(status, lang, "forbidden", "error_message"),
        _ => state
            .pages
            .error_page(status, lang, "error_title", "error_message"),
    }
    .into_response()
}

#[cfg(test)]
mod tests;
