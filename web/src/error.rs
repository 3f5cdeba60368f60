//! `ApiError`: every failure an HTTP handler can return, mapped to a status and the JSON
//! body `{"error": {"code", "message"}}` that all clients rely on.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a field is invalid; `field` names it.
    #[error("{message}")]
    Validation {
        field: Option<String>,
        message: String,
    },
    /// 400: the body is not the JSON (or form) the endpoint expects.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error("missing or wrong CSRF token")]
    Csrf,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// 409 with its own code: the resource is in a state that refuses the request
    /// (`not_live`, `ended`, `reopen_window_passed`); `retry_after` when waiting helps.
    #[error("{message}")]
    State {
        code: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("too many requests")]
    TooManyRequests { retry_after: Duration },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 422: a well-formed upload with bad content; `rows` names each bad line and field.
    #[error("{message}")]
    InvalidRows {
        message: String,
        rows: Vec<serde_json::Value>,
    },
    /// 500: anything unexpected. Logged once; the client sees a generic message.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation { .. } | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Csrf => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::State { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InvalidRows { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => "validation",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Csrf => "csrf",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::State { code, .. } => code,
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::InvalidRows { .. } => "invalid_rows",
            ApiError::Unexpected(_) => "internal",
        }
    }

    /// The message shown to the client: never internal details for a 500.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Unexpected(_) => "internal server error".to_owned(),
            other => other.to_string(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Unexpected(anyhow::Error::new(e).context("database"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Unexpected(err) = &self {
            tracing::error!(error = ?err, "request failed");
        }
        let mut error = json!({"code": self.code(), "message": self.public_message()});
        if let ApiError::Validation {
            field: Some(field), ..
        } = &self
        {
            error["field"] = json!(field);
        }
        if let ApiError::InvalidRows { rows, .. } = &self {
            error["rows"] = json!(rows);
        }
        let mut response = (self.status(), axum::Json(json!({ "error": error }))).into_response();
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after }
            | ApiError::State {
                retry_after: Some(retry_after),
                ..
            } => Some(*retry_after),
            _ => None,
        };
        if let Some(retry_after) = retry_after {
            let secs = retry_after.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
