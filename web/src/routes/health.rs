//! Probes and metrics for operators and orchestrators.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry_metrics::DB_POOL;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is alive and serving HTTP.
async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// The process can do its work: the database answers and (with NATS) the bus is
/// connected. A node without its bus serves its own viewers, but viewers on other nodes
/// do not see what happens here until it is back.
async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::Unavailable("shutting down".into()));
    }
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check: database unreachable");
        ApiError::Unavailable("database unreachable".into())
    })?;
    let bus = state.hub.bus();
    let link = match (bus.is_shared(), bus.connected()) {
        (false, _) => "local",
        (true, true) => "connected",
        (true, false) => "disconnected",
    };
    if link == "disconnected" {
        let body = json!({
            "status": "unavailable",
            "database": "ok",
            "bus": link,
            "error": {"code": "unavailable", "message": "the message bus (NATS) is disconnected"},
        });
        return Ok((StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response());
    }
    Ok(axum::Json(json!({"status": "ready", "database": "ok", "bus": link})).into_response())
}

async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &state.settings.metrics_token {
        use secrecy::ExposeSecret;
        use subtle::ConstantTimeEq;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes())) {
            return ApiError::Unauthorized("Authorization: Bearer <metrics token> required".into())
                .into_response();
        }
    }
    let (open, idle) = state.store.pool_stats();
    metrics::gauge!(DB_POOL, "state" => "open").set(f64::from(open));
    metrics::gauge!(DB_POOL, "state" => "idle").set(idle as f64);
    super::media::record_metrics(&state).await;
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
