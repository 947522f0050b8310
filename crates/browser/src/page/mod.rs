//! The page client: the front identity, the encrypted reverse stream, direct events, the
//! service worker's session tokens and the one-time-token login, for scripts in a page.
//!
//! - [`front`]: [`Front`], the public face and its state; `front/connection.rs` the connection
//!   loop (registration, handshake, back-off, delivery), `front/relay.rs` the sharing of one
//!   stream between tabs, `front/direct.rs` direct events and the flush of the queue;
//!   `stream.rs` one connection (fetch + SSE parser + heartbeat watchdog), `queue.rs` the
//!   offline queue in IndexedDB, `session.rs` the tab's session UUID, `locks.rs` Web Locks and
//!   `BroadcastChannel`, `http.rs` the backend calls, `js.rs` timers and JSON at the boundary.
//! - [`auth`]: [`Auth`], the login of seed 002.
//! - [`tokens`]: `sessionTokens()` and the worker's messages.
//! - `bindings.rs`: the JavaScript classes and functions with their TypeScript types.
//!
//! Errors are [`PageError`] inside and a JavaScript `Error` named `WebSessionError` with a
//! stable `code` outside.

pub mod auth;
pub mod bindings;
pub mod error;
pub mod front;
pub mod tokens;

mod http;
mod js;
mod locks;
mod queue;
mod session;
mod stream;
#[cfg(test)]
mod ts_tidy;

pub use auth::{Auth, AuthOptions, LoginInfo};
pub use error::PageError;
pub use front::{
    Delivery, Front, FrontOptions, RequestOptions, Role, SendOptions, StreamState, Subscription,
};

use crate::identity::RegisterError;

/// A failed registration as the page client reports it: the backend's answer keeps its code, so
/// `front_key_conflict` stays recognisable.
pub(crate) fn identity_register_error(e: RegisterError) -> PageError {
    match e {
        RegisterError::Network(e) => e.into(),
        RegisterError::KeyConflict(body) => {
            PageError::Http { status: 409, code: body.error, message: body.message }
        }
        RegisterError::Rejected { status, body: Some(body) } => {
            PageError::Http { status, code: body.error, message: body.message }
        }
        RegisterError::Rejected { status, body: None } => PageError::Http {
            status,
            code: format!("http_{status}"),
            message: "registration refused".to_owned(),
        },
        RegisterError::InvalidAnswer(detail) => {
            PageError::BadResponse { what: "registration", detail }
        }
        other => PageError::Identity(other.to_string()),
    }
}
