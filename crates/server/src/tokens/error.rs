//! What can go wrong in the token services, and how each failure answers: the app's
//! `{"error", "message"}` body everywhere, except the RFC 8693 form of the exchange, which
//! answers RFC 6749's `{"error", "error_description"}` ([`OAuthError`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::ErrorCode;
use protocol::tokens::OAuthErrorBody;

use super::store::StoreError;
use crate::error::{RequestError, error_response};

/// A failure of the token services.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// A token is malformed, forged, for someone else, unknown or revoked.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// A token was genuine but its time is up.
    #[error("{0}")]
    TokenExpired(&'static str),
    /// The venue JWT has no `ecoid` claim.
    #[error("Venue user is not provisioned for ECS")]
    NotProvisioned,
    /// The login session is past its `validUntil`.
    #[error("Session has expired")]
    SessionExpired,
    /// No refresh-token cookie came with a refresh: the browser dropped it when the session ended
    /// (its `Max-Age` is the session's), or there never was a session.
    #[error("Session has expired: no refresh-token cookie was sent")]
    NoRefreshCookie,
    /// A superseded refresh token came back after the grace window; the session is revoked.
    #[error("Refresh token was used again after it was replaced; the session is revoked")]
    RefreshReused,
    /// More than one refresh-token cookie came with a refresh (see `cookie::get`).
    #[error(
        "more than one refreshToken cookie was sent (one may have been set by another site of \
         the same domain); nothing was rotated"
    )]
    AmbiguousCookie,
    /// The access token lacks the permission the route needs.
    #[error("Access Denied")]
    AccessDenied,
    /// A cross-site request to refresh or logout.
    #[error("cross-site requests are refused here: {0}")]
    CrossSite(String),
    /// The request lacks something or has it in the wrong form.
    #[error("{0}")]
    InvalidRequest(String),
    /// The body could not be read (bad JSON, wrong content type).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The venue's keys cannot be had: not configured, or the JWKS URL does not answer.
    #[error("venue keys unavailable: {0}")]
    VenueKeysUnavailable(String),
    /// A store failed (Redis down, SQLite error).
    #[error("token store: {0}")]
    Store(#[from] StoreError),
    /// Anything else that is the server's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl TokenError {
    /// The status and stable code this error answers with.
    pub fn status_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            Self::InvalidToken(_) => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken),
            Self::TokenExpired(_) => (StatusCode::UNAUTHORIZED, ErrorCode::TokenExpired),
            Self::NotProvisioned => (StatusCode::FORBIDDEN, ErrorCode::NotProvisioned),
            Self::SessionExpired | Self::NoRefreshCookie => {
                (StatusCode::UNAUTHORIZED, ErrorCode::SessionExpired)
            }
            Self::RefreshReused => (StatusCode::UNAUTHORIZED, ErrorCode::RefreshReused),
            Self::AmbiguousCookie => (StatusCode::UNAUTHORIZED, ErrorCode::AmbiguousCookie),
            Self::AccessDenied => (StatusCode::FORBIDDEN, ErrorCode::AccessDenied),
            Self::CrossSite(_) => (StatusCode::FORBIDDEN, ErrorCode::CrossSiteRequest),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            Self::Request(err) => err.status_code(),
            Self::VenueKeysUnavailable(_) | Self::Store(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal)
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }

    /// The sentence for the client. Server-side failures say only where to look: their details
    /// (addresses, SQL, Redis replies) go to the log.
    fn public_message(&self) -> String {
        match self {
            Self::Store(_) => "The token store is unavailable; see the server log.".to_owned(),
            Self::Internal(_) => "The token service failed; see the server log.".to_owned(),
            Self::VenueKeysUnavailable(_) => {
                format!("{self}. The server needs --venue-jwks-url or --venue-jwks-file.")
            }
            other => other.to_string(),
        }
    }

    fn log(&self) {
        match self {
            Self::Store(_) | Self::Internal(_) | Self::VenueKeysUnavailable(_) => {
                tracing::error!(error = %self, "token service failed");
            }
            other => tracing::debug!(error = %other, "token request refused"),
        }
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        self.log();
        let (status, code) = self.status_code();
        let mut response = error_response(status, code, self.public_message());
        if status == StatusCode::UNAUTHORIZED {
            // RFC 7235: a 401 names the scheme that would work.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A [`TokenError`] of the RFC 8693 form endpoint (`POST /vtx/token`), rendered as RFC 6749
/// §5.2 requires.
#[derive(Debug)]
pub struct OAuthError(pub TokenError);

impl OAuthError {
    /// The status and RFC 6749 / RFC 8693 error code.
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        match &self.0 {
            // RFC 8693 §2.2.2: "invalid_request" when the subject token is invalid for any
            // reason or unacceptable by policy (expired, not provisioned).
            TokenError::InvalidToken(_)
            | TokenError::TokenExpired(_)
            | TokenError::NotProvisioned
            | TokenError::InvalidRequest(_)
            | TokenError::Request(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            TokenError::VenueKeysUnavailable(_) | TokenError::Store(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }
}

impl From<TokenError> for OAuthError {
    fn from(err: TokenError) -> Self {
        Self(err)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        self.0.log();
        let (status, error) = self.status_code();
        let body = OAuthErrorBody {
            error: error.to_owned(),
            error_description: Some(self.0.public_message()),
        };
        let mut response = oauth_response(status, &body);
        // The product's own code, for the metrics (the body keeps the RFC's).
        response.extensions_mut().insert(self.0.status_code().1);
        response
    }
}

/// An RFC 6749 error with its own code (`unsupported_grant_type`, …).
pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body =
        OAuthErrorBody { error: error.to_owned(), error_description: Some(description.to_owned()) };
    let mut response = oauth_response(status, &body);
    response.extensions_mut().insert(ErrorCode::InvalidRequest);
    response
}

fn oauth_response(status: StatusCode, body: &OAuthErrorBody) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    no_store(&mut response);
    response
}

/// RFC 6749 §5.1: token answers must not be cached.
pub(crate) fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
