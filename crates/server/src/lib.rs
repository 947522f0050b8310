//! The backend as a library: [`app`] builds the axum `Router`, [`run`] serves it on a listener
//! the caller bound, until `shutdown` resolves; then it drains for [`Config::drain`] (readiness
//! fails, the open streams end one by one with a `retry:` hint) and stops.
//!
//! Two services share the router and the embedded store:
//! - [`events`]: front registration, reverse streams (SSE) with the crypto handshake and
//!   activation, and direct (front → back) events — seeds 001 and 003;
//! - [`tokens`]: the VTX token exchange (seed 000) and the one-time-token login with rotating
//!   refresh tokens (seed 002).
//!
//! Around them: [`api`], the server API for the application's own backend (publishing,
//! disconnecting and presence, behind an API key); [`health`], `/healthz` and `/readyz`; [`metrics`], what the services record
//! through the `metrics` facade and its Prometheus exposition at `/metrics`.
//!
//! Embedding with a recorder of one's own: install it (any `metrics` recorder) before
//! [`AppState::open`], leave [`Config::metrics`] `None` (then `/metrics` answers 404) and call
//! [`metrics::sample`] before each render so that the stream gauges are current:
//!
//! ```no_run
//! # async fn embed(listener: tokio::net::TcpListener) -> anyhow::Result<()> {
//! let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
//! let state = server::AppState::open(server::Config::new("data")).await?;
//! let events = state.events.clone();
//! let render = move || {
//!     server::metrics::sample(&events);
//!     prometheus.render()
//! };
//! # let _ = render;
//! server::serve(listener, state, server::shutdown_signal()).await
//! # }
//! ```

pub mod api;
pub mod config;
pub mod config_file;
pub mod db;
pub mod error;
pub mod events;
pub mod health;
pub mod metrics;
pub mod redis_link;
pub mod tokens;

mod app;
mod detach;
mod http;
mod openapi;

pub use app::{AppState, app, run, serve, shutdown_signal};
pub use config::{Config, DEFAULT_DRAIN};
pub use http::{
    DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_LISTEN_BACKLOG, bind,
};
