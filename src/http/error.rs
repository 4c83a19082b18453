//! API errors and the one place they become HTTP statuses: `{"error": {"code", "message"}}`.

use crate::store::StoreError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Everything a handler can fail with, classified by whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client's request is malformed (bad parameter, empty message).
    #[error("{0}")]
    BadRequest(String),
    /// No bearer token where one is required, or an unknown one.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A valid token without the scope this route needs.
    #[error("this token lacks the `{0}` scope")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// Well-formed, but nothing can be done with it (no key for the domain, no From).
    #[error("{0}")]
    Unprocessable(String),
    #[error("the verdict store is not enabled (--store or [store] path)")]
    StoreDisabled,
    #[error("the server is shutting down or overloaded")]
    Unavailable,
    /// The store's database does not answer (PostgreSQL down or restarting).
    #[error("the verdict store cannot be reached: {0}")]
    StoreUnreachable(String),
    #[error("the request took longer than {0} s")]
    Timeout(u64),
    /// A store read ran past `http.query_timeout_ms` and was stopped.
    #[error("the query ran longer than the time limit (http.query_timeout_ms) and was stopped")]
    QueryStopped,
    /// A tokenless listener asked for by a name that is not its own (DNS rebinding).
    #[error("this listener does not answer to the name `{0}` (see http.allowed_hosts)")]
    MisdirectedHost(String),
    /// A body type a browser could send cross-site without asking (or none).
    #[error("the request body must be sent as one of: {0}")]
    UnsupportedMediaType(String),
    /// Our fault: a query failed, a key could not sign.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_connection() {
            ApiError::StoreUnreachable(e.to_string())
        } else if e.is_cancelled() {
            ApiError::QueryStopped
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl ApiError {
    pub(super) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::StoreDisabled => (StatusCode::SERVICE_UNAVAILABLE, "store_disabled"),
            ApiError::Unavailable | ApiError::StoreUnreachable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ApiError::Timeout(_) | ApiError::QueryStopped => {
                (StatusCode::SERVICE_UNAVAILABLE, "timeout")
            }
            ApiError::MisdirectedHost(_) => (StatusCode::MISDIRECTED_REQUEST, "misdirected"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(error = %self, "HTTP API error");
        }
        let body = Json(json!({"error": {"code": code, "message": self.to_string()}}));
        let mut response = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: tell the client which scheme to use.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"authmilter\""),
            );
        }
        response
    }
}
