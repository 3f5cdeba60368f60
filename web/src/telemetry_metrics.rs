//! Prometheus metrics: requests by route and status, latencies, open WebSockets and the
//! database pool. Handlers and libraries record through the `metrics` facade; this module
//! installs the process-wide recorder once and renders `/metrics`.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

pub const HTTP_REQUESTS: &str = "gongkai_http_requests_total";
pub const HTTP_DURATION: &str = "gongkai_http_request_duration_seconds";
pub const WEBSOCKETS_OPEN: &str = "gongkai_websockets_open";
pub const DB_POOL: &str = "gongkai_db_pool_connections";

#[derive(Clone)]
pub struct Metrics {
    handle: Option<PrometheusHandle>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Installs the global recorder on first use; later calls share it (tests build
    /// several apps in one process).
    pub fn install() -> Metrics {
        static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
        let handle = HANDLE.get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_DURATION.to_owned()),
                    &[
                        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ],
                )
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests by route, method and status");
            metrics::describe_histogram!(
                HTTP_DURATION,
                metrics::Unit::Seconds,
                "HTTP request latency by route"
            );
            metrics::describe_gauge!(WEBSOCKETS_OPEN, "Open WebSocket connections");
            metrics::describe_gauge!(DB_POOL, "Database pool connections by state (open, idle)");
            metrics::gauge!(WEBSOCKETS_OPEN).set(0.0);
            Some(handle)
        });
        Metrics {
            handle: handle.clone(),
        }
    }

    pub fn render(&self) -> String {
        self.handle.as_ref().map(|h| h.render()).unwrap_or_default()
    }
}

/// Middleware recording every request. The route label is the matched route template
/// (`/api/v1/events/{id}`), never the raw path, so IDs do not explode cardinality or
/// leak into metrics.
pub async fn track(State(_state): State<AppState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(start.elapsed().as_secs_f64());
    response
}

/// The method as a label: the standard ones by name, anything else as `other` (a client
/// may send any token as a method, and each would otherwise be a series forever).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::method_label;

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let made_up = Method::from_bytes("Z".repeat(206).as_bytes()).unwrap();
        assert_eq!(method_label(&made_up), "other");
        assert_eq!(
            method_label(&Method::from_bytes(b"PROPFIND").unwrap()),
            "other"
        );
    }
}
