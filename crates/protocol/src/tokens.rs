//! Token bodies: the service worker's `/uc/session/vtx` answer and messages, the venue token
//! exchange (RFC 8693), the one-time-token login of seed 002, and the claims of each JWT.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// The payload of a compact JWT as text, not verified (the service worker and the page read
/// claims to decide when to renew; the server that receives a token verifies it). Padded
/// base64url is accepted, as some encoders write it despite RFC 7515. The error says why the
/// token is not a JWT.
pub fn jwt_payload(token: &str) -> Result<String, String> {
    let mut parts = token.trim().split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWT (three dot-separated parts)".to_owned());
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| format!("JWT payload is not base64url: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("JWT payload is not JSON claims: {e}"))
}

/// `issued_token_type` and `subject_token_type` of the exchange: a JWT.
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// `grant_type` of an RFC 8693 token exchange.
pub const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The service worker's `200` answer to `GET /uc/session/vtx`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionTokens {
    /// The EID JWT from the token exchange.
    pub eid_jwt: String,
    /// The venue JWT it was exchanged from.
    pub venue_jwt: String,
    /// The EID JWT's `exp`.
    pub eid_expires_at: Timestamp,
    /// The venue JWT's `exp`.
    pub venue_expires_at: Timestamp,
}

/// The hop of the token chain that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainStage {
    /// `GET /Dashboard` for the XSRF token.
    Xsrf,
    /// `GET /Auth/Authorize` for the venue JWT.
    Authorize,
    /// `GET /vtx/token` for the EID JWT.
    Vtx,
}

/// The service worker's error answer to `/uc/session/vtx`: the error body plus the stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionError {
    /// A stable code ([`crate::ErrorCode`]).
    pub error: String,
    /// A sentence for people.
    pub message: String,
    /// The failing hop.
    pub stage: ChainStage,
}

/// Messages between the service worker and the pages (`postMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SwMessage {
    /// Worker → tabs: a worker version took control.
    SwActivated {
        /// The worker's version.
        version: String,
    },
    /// Worker → tabs: token acquisition failed.
    SessionError(SessionError),
    /// Worker → tabs: the worker dropped its tokens (a venue sign-out, a `session-clear`, a
    /// refused venue JWT) or took a venue JWT it cannot tell is the same user's (another user's,
    /// or the first one since it started): a tab drops the copy of the tokens it keeps.
    SessionChanged,
    /// Page → worker: drop the cached tokens (logout).
    SessionClear,
    /// Page → worker: a waiting worker should take over now.
    SkipWaiting,
}

/// The venue's `/Auth/Authorize` JSON answer (a bare JWT text is accepted too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeResponse {
    /// The venue JWT.
    pub token: String,
}

/// Claims of a venue JWT, as the venue issues them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VenueClaims {
    /// The venue user.
    pub sub: String,
    /// The issuer (the venue).
    pub iss: String,
    /// The audience (the token exchange).
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The ECS identity; absent for users not provisioned for ECS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecoid: Option<String>,
}

/// Claims of the EID JWT that the token exchange issues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EidClaims {
    /// The venue user.
    pub sub: String,
    /// The ECS identity.
    pub ecoid: String,
    /// This server.
    pub iss: String,
    /// Who the EID JWT is for.
    pub aud: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch; never past the venue JWT's.
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
}

/// RFC 8693 token-exchange request (`POST /vtx/token`, form-encoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenExchangeRequest {
    /// Must be [`GRANT_TYPE_TOKEN_EXCHANGE`].
    pub grant_type: String,
    /// The venue JWT.
    pub subject_token: String,
    /// Must be [`TOKEN_TYPE_JWT`].
    pub subject_token_type: String,
}

/// RFC 8693 token-exchange answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenExchangeResponse {
    /// The EID JWT.
    pub access_token: String,
    /// Always [`TOKEN_TYPE_JWT`].
    pub issued_token_type: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until `exp`.
    pub expires_in: i64,
}

/// RFC 6749 §5.2 error body, used by the RFC 8693 form of the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_grant`, `unsupported_grant_type`, …
    pub error: String,
    /// A sentence for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// What the enterprise token store keeps under a one-time token (seed 002's `TokenClaims`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OneTimeTokenClaims {
    /// The user.
    pub user_id: String,
    /// The sponsor.
    pub sponsor_id: String,
    /// The subscriber.
    pub subscriber_id: String,
    /// What the user may do.
    pub permissions: Vec<String>,
    /// The end of the whole login session.
    pub valid_until: Timestamp,
}

/// `POST /api/auth/authenticate` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthenticateRequest {
    /// The one-time token from the login link.
    pub token: String,
}

/// `POST /api/auth/authenticate` answer. The refresh token travels in an `HttpOnly` cookie; it
/// is in the body only when the server's compatibility setting asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    /// The access JWT.
    pub access_token: String,
    /// Only with the compatibility setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Seconds until the access JWT expires.
    pub expires_in: i64,
    /// The end of the whole login session.
    pub session_expires_at: Timestamp,
    /// What the user may do.
    pub permissions: Vec<String>,
    /// The sponsor.
    pub sponsor_id: String,
    /// The subscriber.
    pub subscriber_id: String,
}

/// `POST /api/auth/refresh` answer (the new refresh token is in the cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RefreshResponse {
    /// The new access JWT.
    pub access_token: String,
    /// Only with the compatibility setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Seconds until the access JWT expires.
    pub expires_in: i64,
    /// The end of the whole login session.
    pub session_expires_at: Timestamp,
    /// What the user may do.
    pub permissions: Vec<String>,
}

/// A plain `{"message": …}` answer (logout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageBody {
    /// A sentence for people.
    pub message: String,
}

/// Claims of the access JWT of seed 002.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessClaims {
    /// The user.
    pub user_id: String,
    /// The sponsor.
    pub sponsor_id: String,
    /// The subscriber.
    pub subscriber_id: String,
    /// What the user may do.
    pub permissions: Vec<String>,
    /// Issuer.
    pub iss: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
}

/// The `200` answer of the demo routes behind a permission guard (`GET /api/dashboard`,
/// `GET /api/reports`): what the access token said about the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProtectedResource {
    /// Which demo resource this is (`dashboard`, `reports`).
    pub resource: String,
    /// The permission the guard checked.
    pub permission: String,
    /// The user.
    pub user_id: String,
    /// The sponsor.
    pub sponsor_id: String,
    /// The subscriber.
    pub subscriber_id: String,
}
