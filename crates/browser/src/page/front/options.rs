//! The settings and the small value types of the front.

use protocol::SessionUuid;
use serde::{Deserialize, Serialize};

/// Settings of [`Front::open`]; `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct FrontOptions {
    /// The backend's origin (`https://api.example.com`), or empty for the page's own origin.
    pub base: String,
    /// Share one stream between the tabs of the front (see the module docs). Default `true`.
    pub share: bool,
    /// The backend's heartbeat interval; two intervals without a byte mean the connection is
    /// dead. `0` turns the watchdog off. Default 15 000 ms (the backend's default).
    pub heartbeat_ms: f64,
    /// The first reconnect delay. Default 500 ms.
    pub backoff_initial_ms: f64,
    /// The longest reconnect delay. Default 30 000 ms.
    pub backoff_max_ms: f64,
    /// How long `request` waits for its answer unless told otherwise. Default 8 000 ms.
    pub request_timeout_ms: f64,
    /// How long a tab waits for a Web Lock (the offline queue's, the stream's leadership)
    /// before it goes on without it, so that a holder that never lets go cannot freeze the
    /// queue or the stream. `0` waits for ever. Default 10 000 ms.
    pub lock_timeout_ms: f64,
    /// The tab's session UUID instead of the one in `sessionStorage` (tests, embedding).
    pub session_uuid: Option<SessionUuid>,
}

impl Default for FrontOptions {
    fn default() -> Self {
        Self {
            base: String::new(),
            share: true,
            heartbeat_ms: 15_000.0,
            backoff_initial_ms: 500.0,
            backoff_max_ms: 30_000.0,
            request_timeout_ms: 8_000.0,
            lock_timeout_ms: crate::page::locks::DEFAULT_LOCK_TIMEOUT_MS,
            session_uuid: None,
        }
    }
}

/// The state of the reverse stream, as this tab sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// Registering the front or opening the first stream.
    Connecting,
    /// The stream is open; the `authenticate` challenge is being answered.
    Authenticating,
    /// The stream is activated: events flow.
    Active,
    /// The stream was lost (or the browser is offline); waiting to open it again.
    Reconnecting,
    /// [`Front::close`] was called, or a fatal error ended the front.
    Closed,
}

impl StreamState {
    /// The lower-case name used in JavaScript.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Authenticating => "authenticating",
            Self::Active => "active",
            Self::Reconnecting => "reconnecting",
            Self::Closed => "closed",
        }
    }
}

/// This tab's part in sharing the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The tab has its own stream (sharing is off, unsupported, or the backend lacks it).
    Solo,
    /// The tab holds the front's stream and relays it.
    Leader,
    /// The tab receives the front's stream from the leader.
    Follower,
}

impl Role {
    /// The lower-case name used in JavaScript.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Solo => "solo",
            Self::Leader => "leader",
            Self::Follower => "follower",
        }
    }
}

/// What happened to a direct event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// The backend accepted it.
    Sent,
    /// It waits in the offline queue and goes out after the next activation.
    Queued,
}

impl Delivery {
    /// `"sent"` or `"queued"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Queued => "queued",
        }
    }
}

/// Options of [`Front::send`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SendOptions {
    /// Milliseconds until the event expires (and a queued copy is dropped). Default 60 000.
    pub expires_in_ms: Option<f64>,
    /// Seal `data` with the front's key and the back's key.
    pub encrypted: bool,
}

/// Options of [`Front::request`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions {
    /// Milliseconds to wait for the answer. Default [`FrontOptions::request_timeout_ms`].
    pub timeout_ms: Option<f64>,
    /// As in [`SendOptions`].
    pub expires_in_ms: Option<f64>,
    /// As in [`SendOptions`].
    pub encrypted: bool,
}
