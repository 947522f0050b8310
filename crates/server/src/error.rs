//! The error body every endpoint answers with, and the request extractors that produce it.
//!
//! Each service has its own error enum (`events::EventError`, `tokens::TokenError`); all of
//! them render through [`error_response`], so every failure is `{"error", "message"}` with a
//! stable code. [`Json`] replaces axum's extractor so that even a malformed body gets that shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use protocol::{ErrorBody, ErrorCode, ParseError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest request body any endpoint accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Renders the one error body.
///
/// The code also goes into the response's extensions, where the metrics middleware reads the
/// result of an answer without parsing its body.
pub fn error_response(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    let mut response = (status, axum::Json(ErrorBody::new(code, message))).into_response();
    response.extensions_mut().insert(code);
    response
}

/// A request could not be read: its body, content type or path parameters are wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The body is not the JSON the endpoint takes.
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// The body is not `application/json`.
    #[error("expected a body with Content-Type: application/json")]
    UnsupportedMediaType,
    /// The body is over [`MAX_BODY_BYTES`].
    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    /// The body did not arrive within the body read timeout.
    #[error("the request body did not arrive within the server's body read timeout")]
    BodyReadTimeout,
    /// A UUID is malformed.
    #[error("{0}")]
    InvalidUuid(ParseError),
    /// A key is malformed.
    #[error("{0}")]
    InvalidKey(ParseError),
    /// Something else the request needs is missing or wrong.
    #[error("{0}")]
    InvalidRequest(String),
}

impl RequestError {
    /// The status and code this error answers with.
    pub fn status_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            Self::InvalidJson(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidJson),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorCode::UnsupportedMediaType)
            }
            Self::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::BodyTooLarge),
            Self::BodyReadTimeout => (StatusCode::REQUEST_TIMEOUT, ErrorCode::RequestTimeout),
            Self::InvalidUuid(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidUuid),
            Self::InvalidKey(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidKey),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
        }
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        error_response(status, code, self.to_string())
    }
}

impl From<JsonRejection> for RequestError {
    fn from(rejection: JsonRejection) -> Self {
        if crate::http::is_body_read_timeout(&rejection) {
            return Self::BodyReadTimeout;
        }
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::BytesRejection(_)
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Self::BodyTooLarge
            }
            other => {
                let text = other.body_text();
                // serde's messages name the field and the reason ("invalid UUID", "invalid key");
                // promote those to their own codes so clients can branch on them.
                if text.contains("invalid UUID") {
                    Self::InvalidUuid(ParseError::InvalidUuid(text))
                } else if text.contains("invalid key") || text.contains("invalid base64") {
                    Self::InvalidKey(ParseError::InvalidBase64(text))
                } else {
                    Self::InvalidJson(text)
                }
            }
        }
    }
}

/// `axum::Json`, but a rejection answers with the app's error body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = RequestError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Parses a path segment as a UUID newtype, answering `invalid_uuid` when it is not one.
pub fn parse_uuid<T: std::str::FromStr<Err = ParseError>>(
    segment: &str,
) -> Result<T, RequestError> {
    segment.parse().map_err(RequestError::InvalidUuid)
}
