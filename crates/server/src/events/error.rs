//! The event service's errors and the HTTP status of each stable code.
//!
//! | code                     | status | when                                                          |
//! |--------------------------|--------|---------------------------------------------------------------|
//! | `invalid_uuid`           | 400    | a path or body UUID is not the hyphenated form                |
//! | `invalid_key`            | 400    | `publicKey` is not 32 bytes of standard padded base64         |
//! | `invalid_json`           | 400    | the body is not the JSON the endpoint takes                   |
//! | `invalid_request`        | 400    | body and path disagree (`frontUuid`, `meta.name`), or sealed data does not open |
//! | `unsupported_media_type` | 415    | a body without `Content-Type: application/json`               |
//! | `body_too_large`         | 413    | a body over 64 KiB                                            |
//! | `front_not_registered`   | 404    | the front UUID is unknown (the store was reset): register again |
//! | `front_key_conflict`     | 409    | the front UUID is registered with another public key         |
//! | `stream_not_found`       | 404    | no open stream of that front has that stream UUID             |
//! | `stream_already_active`  | 409    | the stream was activated already (a replayed activation)      |
//! | `bad_stamp`              | 403    | a direct event's stamp is malformed or does not verify        |
//! | `session_inactive`       | 403    | a direct event's session has no active stream                 |
//! | `stale_event`            | 403    | a direct event's `published` is further than the window from the server's clock |
//! | `invalid_event`          | 400    | a direct event's `expired` lies further ahead than the maximum |
//! | `too_many_streams`       | 429    | the front has the most active streams it may have             |
//! | `rate_limited`           | 429    | too many registrations from this client address (`Retry-After`) |
//! | `not_found`              | 404    | no handler is registered for the direct event's name          |
//! | `store_unavailable`      | 503    | the event store does not answer (Redis down); try again       |
//! | `internal`               | 500    | a handler failed, or a stored record is corrupt; details in the log |
//! | `not_ready`              | 503    | the server drains or shuts down and opens no new streams (`Retry-After`): open it on another instance |
//!
//! `front_not_registered` is 404 on every endpoint, so a client needs one rule to know that it
//! must register again. Activation answers `stream_not_found`, never "wrong front", for a stream
//! of another front, so that stream UUIDs cannot be probed.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::{ErrorCode, FrontUuid, SessionUuid};

use super::store::StoreError;
use crate::error::{RequestError, error_response};

/// Why an event endpoint refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The request itself is malformed (body, content type, UUIDs, key).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The front is unknown: the client must register again.
    #[error("front {0} is not registered: register it again")]
    FrontNotRegistered(FrontUuid),
    /// The front UUID is taken by another public key.
    #[error("front {0} is registered with another public key")]
    FrontKeyConflict(FrontUuid),
    /// No open stream of that front has that UUID.
    #[error("no open stream of this front has that stream UUID")]
    StreamNotFound,
    /// The stream was activated already.
    #[error("the stream is active already")]
    StreamAlreadyActive,
    /// The stamp of a direct event is malformed or does not verify.
    #[error("the event's stamp does not verify: {0}")]
    BadStamp(String),
    /// The session of a direct event has no active stream.
    #[error("session {0} has no active stream: open and activate one first")]
    SessionInactive(SessionUuid),
    /// A direct event's `published` is too far from the server's clock.
    #[error("the event was published {0} s away from the server's clock, more than it accepts")]
    StaleEvent(i64),
    /// A direct event's `expired` lies too far ahead.
    #[error("the event expires {0} s from now, later than the server accepts")]
    InvalidEvent(i64),
    /// The front has as many active streams as it may.
    #[error("the front has {0} active streams, the most it may have; close one first")]
    TooManyStreams(usize),
    /// Too many registrations from one client address.
    #[error("too many registrations from this address; try again in {0} s")]
    RateLimited(u64),
    /// No handler takes direct events of that name.
    #[error("no handler for direct event {0:?}")]
    UnknownEvent(String),
    /// The service drains or shuts down: it opens no new streams.
    #[error("the server is shutting down and opens no new streams; open the stream again")]
    ShuttingDown,
    /// The event store does not answer.
    #[error("the event store is unavailable; try again shortly")]
    StoreUnavailable(#[source] StoreError),
    /// The store or a handler failed; the details go to the log only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl EventError {
    /// The status and code this error answers with (see the table in the module docs).
    pub fn status_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            Self::Request(e) => e.status_code(),
            Self::FrontNotRegistered(_) => (StatusCode::NOT_FOUND, ErrorCode::FrontNotRegistered),
            Self::FrontKeyConflict(_) => (StatusCode::CONFLICT, ErrorCode::FrontKeyConflict),
            Self::StreamNotFound => (StatusCode::NOT_FOUND, ErrorCode::StreamNotFound),
            Self::StreamAlreadyActive => (StatusCode::CONFLICT, ErrorCode::StreamAlreadyActive),
            Self::BadStamp(_) => (StatusCode::FORBIDDEN, ErrorCode::BadStamp),
            Self::SessionInactive(_) => (StatusCode::FORBIDDEN, ErrorCode::SessionInactive),
            Self::StaleEvent(_) => (StatusCode::FORBIDDEN, ErrorCode::StaleEvent),
            Self::InvalidEvent(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidEvent),
            Self::TooManyStreams(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyStreams),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            Self::UnknownEvent(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            Self::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotReady),
            Self::StoreUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::StoreUnavailable)
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }
}

impl From<StoreError> for EventError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::StoreUnavailable(e),
            StoreError::Corrupt(_) => Self::Internal(e.into()),
        }
    }
}

impl IntoResponse for EventError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        match &self {
            Self::Internal(e) => tracing::error!(error = format!("{e:#}"), "event service failed"),
            // Not this request's fault, and logged once per request would flood: a warning.
            Self::StoreUnavailable(e) => tracing::warn!(error = %e, "event store unavailable"),
            _ => {}
        }
        let mut response = error_response(status, code, self.to_string());
        let retry_after = match self {
            Self::RateLimited(secs) => Some(secs),
            // A balancer (or the client, after its back-off) sends it elsewhere meanwhile.
            Self::ShuttingDown => Some(super::drain_retry_ms().div_ceil(1000)),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}
