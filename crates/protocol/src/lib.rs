//! The wire: every type that crosses between the browser, the service worker and the backend.
//!
//! This crate is the compatibility boundary of the product. JSON bodies ([`messages`], [`event`],
//! [`tokens`]), the Server-Sent-Events framing ([`sse`]) and the NaCl sealed-box format
//! ([`sealed`]) are defined here once and compiled both for the host and for `wasm32`. Values
//! that arrive from outside are parsed into validated newtypes ([`ids`], [`keys`], [`Sealed`]),
//! so that a malformed UUID, key or ciphertext is a typed [`ParseError`] and never a panic.

pub mod api;
pub mod error;
pub mod event;
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod json;
pub mod keys;
pub mod messages;
#[cfg(feature = "openapi")]
mod openapi;
pub mod sealed;
pub mod sse;
pub mod steps;
pub mod time;
pub mod tokens;

pub use error::{ErrorBody, ErrorCode, OpenError, ParseError};
pub use event::{DirectEvent, DirectMeta, EventMeta, ReverseEvent};
pub use ids::{BackUuid, EventUuid, FrontUuid, SessionUuid, StreamUuid};
pub use keys::{KeyPair, PublicKey, SecretKey};
pub use sealed::{Peer, Sealed};
pub use steps::{ChallengeError, DirectDraft};
pub use time::Timestamp;

/// Paths of the event endpoints, as the TeqFw web-event front and back name them.
pub mod paths {
    /// `POST {REGISTER}/{frontUuid}`: register a front.
    pub const REGISTER: &str = "/web-event-front-reg";
    /// `GET {STREAM_OPEN}/{frontUuid}/{sessionUuid}`: open the reverse stream.
    pub const STREAM_OPEN: &str = "/web-event-stream-open";
    /// The query of a stream open that asks for every event of the front (the tab that holds
    /// the stream for the others): front-wide events and those for any of its sessions.
    pub const STREAM_SCOPE_FRONT_QUERY: &str = "scope=front";
    /// The response header (lower case) with which the backend says it honoured
    /// [`STREAM_SCOPE_FRONT_QUERY`]: its value is `front`.
    pub const STREAM_SCOPE_HEADER: &str = "x-web-event-scope";
    /// `POST {STREAM_ACTIVATE}`: activate a reverse stream (trailing segments are ignored).
    pub const STREAM_ACTIVATE: &str = "/web-event-stream-act";
    /// `POST {DIRECT}/{eventName}`: a front-to-back event.
    pub const DIRECT: &str = "/web-event-direct";
    /// The service worker's token endpoint.
    pub const SESSION_VTX: &str = "/uc/session/vtx";
    /// The venue token exchange.
    pub const VTX_TOKEN: &str = "/vtx/token";
    /// The server's published signing keys.
    pub const JWKS: &str = "/.well-known/jwks.json";
    /// One-time-token login.
    pub const AUTH_AUTHENTICATE: &str = "/api/auth/authenticate";
    /// Access-token refresh (refresh-token cookie).
    pub const AUTH_REFRESH: &str = "/api/auth/refresh";
    /// Logout.
    pub const AUTH_LOGOUT: &str = "/api/auth/logout";
    /// The path the refresh-token cookie is scoped to.
    pub const AUTH_COOKIE_PATH: &str = "/api/auth";
    /// The name of the refresh-token cookie.
    pub const REFRESH_COOKIE: &str = "refreshToken";
    /// The name of the readable marker cookie (`1`, path `/`) that lives exactly as long as
    /// the refresh-token cookie: a page reads it to learn that there is no login session
    /// without a request that fails.
    pub const SESSION_MARKER_COOKIE: &str = "websessionLoggedIn";
    /// Demo route guarded by the `CanAccessDashboard` permission.
    pub const API_DASHBOARD: &str = "/api/dashboard";
    /// Demo route guarded by the `CanViewReports` permission.
    pub const API_REPORTS: &str = "/api/reports";
    /// The server API: publish an event (header [`crate::api::API_KEY_HEADER`]).
    pub const API_PUBLISH: &str = "/api/events/publish";
    /// The server API: end the streams of a front or of one tab.
    pub const API_DISCONNECT: &str = "/api/events/disconnect";
    /// The server API: `GET {API_PRESENCE}/{frontUuid}`, a front's tabs and their streams.
    pub const API_PRESENCE: &str = "/api/events/presence";
    /// Liveness: the process serves HTTP.
    pub const HEALTHZ: &str = "/healthz";
    /// Readiness: the stores answer and the server is not shutting down.
    pub const READYZ: &str = "/readyz";
    /// Prometheus metrics (text exposition format).
    pub const METRICS: &str = "/metrics";
}

/// Keys the browser stores under, shared by the page client and the service worker.
pub mod storage {
    /// IndexedDB key of the front identity (see [`crate::messages::Identity`]).
    pub const IDENTITY_KEY: &str = "@teqfw/web-event/identity";
    /// `sessionStorage` key of the per-tab session UUID.
    pub const SESSION_UUID_KEY: &str = "@teqfw/web-event/sessionUuid";
}
