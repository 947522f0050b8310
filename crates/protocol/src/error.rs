//! Typed errors for parsing and opening wire values, and the one JSON error body of every endpoint.

use serde::{Deserialize, Serialize};

/// A value from outside did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not a hyphenated UUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
    #[error("invalid UUID {0:?}: expected the hyphenated form")]
    InvalidUuid(String),
    /// Not standard, padded base64.
    #[error("invalid base64: {0}")]
    InvalidBase64(String),
    /// A key that is not 32 bytes long.
    #[error("invalid key: expected 32 bytes, got {0}")]
    InvalidKeyLength(usize),
    /// A sealed value shorter than nonce and tag.
    #[error("sealed value too short: {0} bytes, at least 40 expected")]
    SealedTooShort(usize),
    /// Not an ISO-8601 / RFC 3339 timestamp.
    #[error("invalid timestamp {0:?}")]
    InvalidTimestamp(String),
}

/// A sealed value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The value is not a well-formed sealed box.
    #[error(transparent)]
    Malformed(#[from] ParseError),
    /// Authentication failed: wrong key, or the bytes were changed.
    #[error("decryption failed: wrong key or tampered value")]
    Decrypt,
    /// The plaintext is not the JSON that was expected.
    #[error("decrypted plaintext is not the expected JSON: {0}")]
    Plaintext(String),
    /// The plaintext opened but does not match what it should (a stamp for another event).
    #[error("sealed value does not match")]
    Mismatch,
    /// Event data marked `encrypted` is not a string, so it cannot be a sealed value.
    #[error("encrypted data is not a sealed string")]
    NotSealed,
}

/// The stable error codes of every endpoint of the product.
///
/// The string form (`snake_case`) is part of the wire contract: clients branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// A path or body UUID is malformed.
    InvalidUuid,
    /// A public key is not 32 bytes of standard base64.
    InvalidKey,
    /// The body is not the JSON the endpoint takes.
    InvalidJson,
    /// The body's content type is not the one the endpoint takes.
    UnsupportedMediaType,
    /// The body is larger than the endpoint accepts.
    BodyTooLarge,
    /// The request's body did not arrive within the server's body read timeout.
    RequestTimeout,
    /// The front is unknown (the backend's store was reset): register again.
    FrontNotRegistered,
    /// The front UUID is registered with another public key.
    FrontKeyConflict,
    /// No stream waits for activation under that front and stream UUID.
    StreamNotFound,
    /// The stream was activated already.
    StreamAlreadyActive,
    /// The stamp of a direct event does not verify.
    BadStamp,
    /// The session of a direct event has no active stream.
    SessionInactive,
    /// A direct event's `published` is too far from the server's clock (a replayed capture, or
    /// a front whose clock is far off).
    StaleEvent,
    /// A direct event that breaks a rule of its own (its `expired` lies too far ahead).
    InvalidEvent,
    /// The front has as many active streams as it may.
    TooManyStreams,
    /// Too many requests from this client: try again after `Retry-After` seconds.
    RateLimited,
    /// The venue user has no `ecoid` claim.
    NotProvisioned,
    /// The venue session is gone (login page, 401, or no XSRF token).
    VenueSessionExpired,
    /// A hop of the token chain failed (network, timeout, 5xx).
    TokenAcquisitionFailed,
    /// A token is malformed, forged, or for someone else.
    InvalidToken,
    /// A token has expired.
    TokenExpired,
    /// The login session is past its validity.
    SessionExpired,
    /// A superseded refresh token was used again: the session is revoked.
    RefreshReused,
    /// More than one refresh-token cookie came with the request (one may have been planted by
    /// a sibling domain): nothing was rotated.
    AmbiguousCookie,
    /// The caller lacks the permission for the route.
    AccessDenied,
    /// A cross-site request to an endpoint that refuses them.
    CrossSiteRequest,
    /// The request is missing something it needs.
    InvalidRequest,
    /// Nothing is at that path.
    NotFound,
    /// The server's store does not answer (Redis down): try again shortly.
    StoreUnavailable,
    /// A stream could not resume exactly: events sent before may be lost.
    EventsLost,
    /// The server failed; details are in its log.
    Internal,
    /// The server API: no tab of that front has that session UUID (never activated, or
    /// forgotten after the session TTL).
    SessionNotFound,
    /// The server API: the `X-API-Key` header is missing or wrong.
    InvalidApiKey,
    /// The server API: a publish with that `idempotencyKey` is still under way; try again.
    IdempotencyInProgress,
    /// `/readyz`: a store does not answer, or the server is shutting down.
    NotReady,
}

impl ErrorCode {
    /// Every code, in declaration order (for documentation and tests).
    pub const ALL: [Self; 35] = [
        Self::InvalidUuid,
        Self::InvalidKey,
        Self::InvalidJson,
        Self::UnsupportedMediaType,
        Self::BodyTooLarge,
        Self::RequestTimeout,
        Self::FrontNotRegistered,
        Self::FrontKeyConflict,
        Self::StreamNotFound,
        Self::StreamAlreadyActive,
        Self::BadStamp,
        Self::SessionInactive,
        Self::StaleEvent,
        Self::InvalidEvent,
        Self::TooManyStreams,
        Self::RateLimited,
        Self::NotProvisioned,
        Self::VenueSessionExpired,
        Self::TokenAcquisitionFailed,
        Self::InvalidToken,
        Self::TokenExpired,
        Self::SessionExpired,
        Self::RefreshReused,
        Self::AmbiguousCookie,
        Self::AccessDenied,
        Self::CrossSiteRequest,
        Self::InvalidRequest,
        Self::NotFound,
        Self::StoreUnavailable,
        Self::EventsLost,
        Self::Internal,
        Self::SessionNotFound,
        Self::InvalidApiKey,
        Self::IdempotencyInProgress,
        Self::NotReady,
    ];

    /// The stable string form, as it appears in `{"error": …}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidUuid => "invalid_uuid",
            Self::InvalidKey => "invalid_key",
            Self::InvalidJson => "invalid_json",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BodyTooLarge => "body_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::FrontNotRegistered => "front_not_registered",
            Self::FrontKeyConflict => "front_key_conflict",
            Self::StreamNotFound => "stream_not_found",
            Self::StreamAlreadyActive => "stream_already_active",
            Self::BadStamp => "bad_stamp",
            Self::SessionInactive => "session_inactive",
            Self::StaleEvent => "stale_event",
            Self::InvalidEvent => "invalid_event",
            Self::TooManyStreams => "too_many_streams",
            Self::RateLimited => "rate_limited",
            Self::NotProvisioned => "not_provisioned",
            Self::VenueSessionExpired => "venue_session_expired",
            Self::TokenAcquisitionFailed => "token_acquisition_failed",
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::SessionExpired => "session_expired",
            Self::RefreshReused => "refresh_reused",
            Self::AmbiguousCookie => "ambiguous_cookie",
            Self::AccessDenied => "access_denied",
            Self::CrossSiteRequest => "cross_site_request",
            Self::InvalidRequest => "invalid_request",
            Self::NotFound => "not_found",
            Self::StoreUnavailable => "store_unavailable",
            Self::EventsLost => "events_lost",
            Self::Internal => "internal",
            Self::SessionNotFound => "session_not_found",
            Self::InvalidApiKey => "invalid_api_key",
            Self::IdempotencyInProgress => "idempotency_in_progress",
            Self::NotReady => "not_ready",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one error body: `{"error": "<stable_code>", "message": "<human text>"}`.
///
/// `error` is kept as a string so that a client built against an older list of codes still
/// reads a newer server's errors; [`ErrorBody::code`] maps it back to an [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The stable code.
    pub error: String,
    /// A sentence for people; never parsed.
    pub message: String,
}

impl ErrorBody {
    /// An error body for `code` with a human message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { error: code.as_str().to_owned(), message: message.into() }
    }

    /// The code, if it is one this build knows.
    pub fn code(&self) -> Option<ErrorCode> {
        // Read by the derived `Deserialize` from the bare string: no JSON `Value` (whose
        // deserialiser the wasm modules would otherwise carry for this alone).
        let text = serde::de::value::StrDeserializer::<serde::de::value::Error>::new(&self.error);
        ErrorCode::deserialize(text).ok()
    }
}
