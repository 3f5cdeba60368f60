//! The WebSocket opening handshake (RFC 6455 §4.2), server side.
//!
//! Done here rather than with axum's `WebSocketUpgrade` because the hub needs the
//! upgraded connection itself: the socket task writes frames framed once for every
//! viewer (`wire`, `outbox`) straight into it, which axum's `WebSocket` does not allow.
//! HTTP/1.1 only: browsers reach the server through the TLS proxy (`infra/`), which
//! speaks HTTP/1.1 upstream; WebSockets over HTTP/2 (RFC 8441) would need TLS here.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::error::ApiError;

/// A valid upgrade request, not yet answered.
pub struct WsUpgrade {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// The upgraded connection, as the socket task reads and writes it.
pub type Connection = TokioIo<Upgraded>;

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let accept = accept_key(&parts.headers)?;
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or_else(|| {
            ApiError::BadRequest("this connection cannot be upgraded to a WebSocket".into())
        })?;
        Ok(WsUpgrade { accept, on_upgrade })
    }
}

impl WsUpgrade {
    /// Answers `101 Switching Protocols` and runs `serve` on the connection once the
    /// client has it too (a failed upgrade is logged and dropped).
    pub fn on_upgrade<F, Fut>(self, serve: F) -> Response
    where
        F: FnOnce(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => serve(TokioIo::new(upgraded)).await,
                Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
            }
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, self.accept),
            ],
        )
            .into_response()
    }
}

/// Checks the handshake's headers; the `Sec-WebSocket-Accept` value for the answer.
fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    let bad = |message: &str| ApiError::BadRequest(message.to_owned());
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(bad("a WebSocket request needs `Connection: upgrade`"));
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(bad("a WebSocket request needs `Upgrade: websocket`"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(bad("only WebSocket version 13 is supported"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| bad("a WebSocket request needs `Sec-WebSocket-Key`"))?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| bad("invalid `Sec-WebSocket-Key`"))
}

/// Whether the comma-separated header lists `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    header::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn answers_the_rfc_example_and_refuses_incomplete_requests() {
        let good = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        // RFC 6455 §1.3's worked example.
        assert_eq!(
            accept_key(&request(&good)).expect("valid"),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        for missing in 0..good.len() {
            let mut partial = good.to_vec();
            partial.remove(missing);
            let error = accept_key(&request(&partial)).expect_err("incomplete");
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        }
        let mut old = good;
        old[2] = ("sec-websocket-version", "8");
        assert!(accept_key(&request(&old)).is_err());
    }
}
