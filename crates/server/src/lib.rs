//! The backend as a library: [`app`] builds the axum `Router`, [`run`] serves it on a listener
//! the caller bound, until `shutdown` resolves.
//!
//! Two services share the router and the embedded store:
//! - [`events`]: front registration, reverse streams (SSE) with the crypto handshake and
//!   activation, and direct (front → back) events — seeds 001 and 003;
//! - [`tokens`]: the VTX token exchange (seed 000) and the one-time-token login with rotating
//!   refresh tokens (seed 002).

pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod tokens;

mod app;
mod http;

pub use app::{AppState, app, run, serve, shutdown_signal};
pub use config::Config;
pub use http::{DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT};
