//! The page client's one error type and its JavaScript form.
//!
//! Every promise of the package rejects with a JavaScript `Error` whose `name` is
//! `"WebSessionError"` and whose `code` is a stable string: the backend's [`ErrorCode`] when the
//! backend answered with one, or one of the client's own codes ([`PageError::code`]). Scripts
//! branch on `code`, never on `message`.

use protocol::tokens::{ChainStage, SessionError};
use protocol::{ErrorBody, ErrorCode};
use wasm_bindgen::JsValue;

use super::js;

/// The `name` of every error the package throws.
pub const ERROR_NAME: &str = "WebSessionError";

/// What went wrong in the page client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PageError {
    /// The request did not reach the server or no answer came back (offline, DNS, CORS, reset).
    #[error("network error: {0}")]
    Network(String),
    /// The server answered with an error status; `code` is its stable code (or `http_<status>`
    /// when the body was not the error body).
    #[error("{message} ({status} {code})")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The stable code from the error body.
        code: String,
        /// The server's sentence for people.
        message: String,
    },
    /// The server answered 2xx with a body that is not what the endpoint promises.
    #[error("unexpected answer from {what}: {detail}")]
    BadResponse {
        /// Which endpoint.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// No answer within the time allowed (`request()` waiting for its reply, or a handshake).
    #[error("no answer within {0} ms")]
    Timeout(u32),
    /// The front, or the auth client, was closed.
    #[error("closed")]
    Closed,
    /// The front identity could not be read, created or registered.
    #[error("front identity: {0}")]
    Identity(String),
    /// The backend could not resume the stream exactly (its store was reset): events sent
    /// before may be lost. The stream goes on.
    #[error("events may be lost: {0}")]
    EventsLost(String),
    /// IndexedDB (the offline queue) failed.
    #[error("storage: {0}")]
    Storage(String),
    /// An argument from JavaScript had the wrong shape.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The backend broke the stream protocol (no `authenticate` first, a challenge that does not
    /// open with this front's key).
    #[error("stream protocol: {0}")]
    Protocol(String),
    /// `auth.fetch` or `auth.logout` without a login.
    #[error("not logged in")]
    NotLoggedIn,
    /// The service worker answered `/uc/session/vtx` with an error.
    #[error("{}: {} (at {:?})", .0.error, .0.message, .0.stage)]
    Session(SessionError),
    /// No service worker controls this page, so `/uc/session/vtx` has nobody to answer it.
    #[error("no service worker controls this page: register /sw.js first")]
    NoServiceWorker,
    /// The browser lacks an API the client needs.
    #[error("this browser lacks {0}")]
    Unsupported(&'static str),
}

impl PageError {
    /// The stable code: the server's code for [`PageError::Http`] and [`PageError::Session`],
    /// else one of `network_error`, `bad_response`, `timeout`, `closed`, `identity_error`,
    /// `events_lost`,
    /// `storage_error`, `invalid_argument`, `protocol_error`, `not_logged_in`,
    /// `no_service_worker`, `unsupported`.
    pub fn code(&self) -> &str {
        match self {
            Self::Network(_) => "network_error",
            Self::Http { code, .. } => code,
            Self::BadResponse { .. } => "bad_response",
            Self::Timeout(_) => "timeout",
            Self::Closed => "closed",
            Self::Identity(_) => "identity_error",
            Self::EventsLost(_) => "events_lost",
            Self::Storage(_) => "storage_error",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::Protocol(_) => "protocol_error",
            Self::NotLoggedIn => "not_logged_in",
            Self::Session(e) => &e.error,
            Self::NoServiceWorker => "no_service_worker",
            Self::Unsupported(_) => "unsupported",
        }
    }

    /// The server's code, when the server answered with a known one.
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Http { code, .. } => {
                ErrorBody { error: code.clone(), message: String::new() }.code()
            }
            _ => None,
        }
    }

    /// The HTTP status, for [`PageError::Http`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: the network, a 5xx, a timeout. A 4xx is the
    /// caller's problem and is not retried.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network(_) | Self::Timeout(_) => true,
            Self::Http { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            _ => false,
        }
    }

    /// An error answer: the body's code and message when it is the error body.
    pub(crate) fn from_answer(status: u16, body: &str) -> Self {
        match protocol::json::from_str::<ErrorBody>(body) {
            Ok(b) => Self::Http { status, code: b.error, message: b.message },
            Err(_) => Self::Http {
                status,
                code: format!("http_{status}"),
                message: body.chars().take(200).collect(),
            },
        }
    }

    /// The JavaScript `Error` this becomes: `name`, `message`, `code`, and `status` or `stage`
    /// when they apply.
    pub fn to_js(&self) -> JsValue {
        let error = js_sys::Error::new(&self.to_string());
        error.set_name(ERROR_NAME);
        let value: JsValue = error.into();
        js::set(&value, "code", &JsValue::from_str(self.code()));
        if let Some(status) = self.status() {
            js::set(&value, "status", &JsValue::from(status));
        }
        if let Self::Session(e) = self {
            let stage = match e.stage {
                ChainStage::Xsrf => "xsrf",
                ChainStage::Authorize => "authorize",
                ChainStage::Vtx => "vtx",
            };
            js::set(&value, "stage", &JsValue::from_str(stage));
        }
        value
    }
}

impl From<PageError> for JsValue {
    fn from(e: PageError) -> Self {
        e.to_js()
    }
}
